"""The ``emostream`` command line: listen, replay, train, evaluate, crossval."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .errors import UserError

log = logging.getLogger("emostream")


def _add_model_commands(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train a fusion network from a TOML config")
    train.add_argument("--config", type=Path, required=True, help="training config (models/configs/*.toml)")
    train.add_argument("--out", type=Path, required=True, help="checkpoint to write (.pt; a .sha256 goes beside it)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set network.max_context=1 (repeatable)")
    train.set_defaults(run=run_train)

    ev = sub.add_parser("evaluate", help="score a checkpoint on a labelled dataset")
    ev.add_argument("--dataset", required=True, help="loader name (iemocap-text, iemocap, meld, emodb, ...)")
    ev.add_argument("--data", type=Path, required=True, help="the dataset's file or folder")
    ev.add_argument("--split", default="test", help="corpus split (train, valid, test); 'all' for every sample")
    ev.add_argument("--checkpoint", type=Path, default=None, help="default: the shipped checkpoint")
    ev.add_argument("--modalities", default="both", choices=["audio", "text", "both"])
    ev.add_argument("--context", type=int, default=None, help="cut the dialogue context to N utterances")
    ev.add_argument("--speakers", help="comma-separated speaker ids to keep (e.g. held-out test speakers)")
    ev.add_argument("--pair-with", nargs=2, metavar=("DATASET", "PATH"),
                    help="pair every clip of this audio dataset with a same-label turn of --dataset "
                         "(pseudo-pairs: the shared data has no real audio+text pairs)")
    ev.add_argument("--device", default="auto")
    ev.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    ev.set_defaults(run=run_evaluate)

    cv = sub.add_parser("crossval", help="leave-one-speaker-out cross-validation of acoustic features")
    cv.add_argument("--dataset", required=True, help="an audio loader (turevdb, emodb, crema-d, ravdess, folders)")
    cv.add_argument("--data", type=Path, required=True)
    cv.add_argument("--labels", default="core4", help="label set (core4, turevdb4, emodb7, ...)")
    cv.add_argument("--features", default="whisper", choices=["whisper", "egemaps"])
    cv.add_argument("--json", action="store_true")
    cv.set_defaults(run=run_crossval)


def _add_stream_options(p: argparse.ArgumentParser) -> None:
    """Flags shared by listen and replay; each overrides one config.toml setting."""
    out = p.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="JSON lines on stdout (default when stdout is not a terminal)")
    out.add_argument("--no-display", action="store_true", help="no live display on stderr")
    out.add_argument("--plot", type=Path, metavar="FILE.png", help="write an emotion-over-time chart at the end")
    cfg = p.add_argument_group("settings (override config.toml)")
    cfg.add_argument("--config", type=Path, help="a TOML file laid out like config.toml")
    cfg.add_argument("--print-config", action="store_true", help="print the effective settings as JSON and exit")
    cfg.add_argument("--max-seconds", type=float, help="stop after this much audio (seconds)")
    cfg.add_argument("--asr-model", help="faster-whisper model name or directory (default: embedded tiny.en)")
    cfg.add_argument("--asr-device", help="auto, cpu or cuda")
    cfg.add_argument("--compute-type", help="CTranslate2 compute type (int8, float16, float32, ...)")
    cfg.add_argument("--checkpoint", help="fusion checkpoint (default: the shipped one)")
    cfg.add_argument("--model-device", help="torch device for the fusion model: auto, cpu, cuda")
    cfg.add_argument("--modalities", choices=["both", "audio", "text"], help="what the fusion model is given")
    cfg.add_argument("--speakers", type=int, choices=[1, 2], help="1: no speaker attribution (everyone is A)")
    cfg.add_argument("--swap-channels", action="store_true", default=None, help="stereo: right channel is speaker A")
    cfg.add_argument("--vad-aggressiveness", type=int, choices=[0, 1, 2, 3], help="webrtcvad mode")
    cfg.add_argument("--context", type=int, help="utterances in the rolling context, the new one included")


def _add_stream_commands(sub: argparse._SubParsersAction) -> None:
    listen = sub.add_parser("listen", help="recognise emotions live from a microphone")
    listen.add_argument("--device", dest="input_device", metavar="NAME|INDEX", help="input device (see --list-devices)")
    listen.add_argument("--list-devices", action="store_true", help="list input devices and exit")
    listen.add_argument("--channels", type=int, choices=[1, 2], help="2: one speaker per channel")
    _add_stream_options(listen)
    listen.set_defaults(run=run_listen)

    replay = sub.add_parser("replay", help="run a recording through the same streaming path")
    replay.add_argument("file", type=Path, help="audio file (wav, flac, mp3, ogg, m4a, ...)")
    pace = replay.add_mutually_exclusive_group()
    pace.add_argument("--fast", action="store_true", default=None, help="as fast as possible")
    pace.add_argument("--speed", type=float, help="pace as a multiple of real time (default 1 with a display)")
    _add_stream_options(replay)
    replay.set_defaults(run=run_replay)


def settings_from_args(args: argparse.Namespace):
    """config.toml defaults <- --config FILE <- flags."""
    from .config import load_settings

    speakers_mode = {1: "single", 2: None, None: None}[args.speakers]
    return load_settings(args.config).updated({
        "input": {
            "device": getattr(args, "input_device", None), "channels": getattr(args, "channels", None),
            "speed": getattr(args, "speed", None), "fast": getattr(args, "fast", None),
            "max_seconds": args.max_seconds,
        },
        "vad": {"aggressiveness": args.vad_aggressiveness},
        "speakers": {"mode": speakers_mode, "swap_channels": args.swap_channels},
        "asr": {"model": args.asr_model, "device": args.asr_device, "compute_type": args.compute_type},
        "context": {"max_utterances": args.context},
        "model": {"checkpoint": args.checkpoint, "device": args.model_device, "modalities": args.modalities},
    })


def _sinks(args: argparse.Namespace):
    """JSON lines when asked or when stdout is not a terminal; the display only on a terminal."""
    from .sinks.base import Sinks
    from .sinks.jsonl import JsonlSink
    from .sinks.summary import SummaryTableSink

    sinks = []
    if args.json or not sys.stdout.isatty():
        sinks.append(JsonlSink(sys.stdout))
    display = not args.no_display and sys.stderr.isatty()
    if display:
        from .sinks.display import LiveDisplaySink

        sinks.append(LiveDisplaySink())
    sinks.append(SummaryTableSink())
    return Sinks(sinks), display


def _finish(result, args: argparse.Namespace) -> int:
    if args.plot:
        from .sinks.plot import write_plot

        write_plot(result.events, args.plot)
    return 130 if result.interrupted else 0


def run_replay(args: argparse.Namespace) -> int:
    from .session import build_pipeline, run_session
    from .sinks.base import RunState
    from .sources import FastClock, RealTimeClock, open_file, paced

    settings = settings_from_args(args)
    if args.print_config:
        print(json.dumps(settings.to_dict(), indent=2), flush=True)
        return 0
    source = open_file(args.file)
    sinks, display = _sinks(args)
    fast = settings.input.fast or (not display and args.speed is None)
    clock = FastClock() if fast else RealTimeClock(settings.input.speed)
    pipeline = build_pipeline(settings, min(source.channels, 2))
    result = run_session(
        paced(source.blocks(settings.input.block_s), clock), pipeline, sinks, settings,
        RunState.REPLAYING, speed=None if fast else settings.input.speed,
    )
    return _finish(result, args)


def run_listen(args: argparse.Namespace) -> int:
    from .session import build_pipeline, run_session
    from .sinks.base import RunState

    if args.list_devices:
        from .devices import list_input_devices

        for d in list_input_devices():
            print(json.dumps(d), flush=True)
        return 0
    settings = settings_from_args(args)
    if args.print_config:
        print(json.dumps(settings.to_dict(), indent=2), flush=True)
        return 0
    from .sources import MicrophoneSource

    device = settings.input.device
    mic = MicrophoneSource(
        int(device) if device is not None and str(device).isdigit() else device,
        settings.input.channels, settings.input.block_s, settings.input.queue_blocks,
    )
    pipeline = build_pipeline(settings, settings.input.channels)
    sinks, _ = _sinks(args)
    try:
        result = run_session(
            mic.blocks(), pipeline, sinks, settings, RunState.LISTENING, speed=1.0,
            input_health=lambda: (mic.queue_depth, mic.dropped_blocks, sum(mic.status_counts.values())),
        )
    finally:
        mic.stop()
    return _finish(result, args)


def run_train(args: argparse.Namespace) -> int:
    from models.frontends.text import TextEncoder
    from models.frontends.whisper import WhisperEncoder
    from models.training import TrainConfig, train

    config = TrainConfig.from_toml(args.config, args.set)
    modalities = {d.modality for d in config.datasets}
    frontends = {}
    if modalities & {"text", "both"}:
        frontends["text"] = TextEncoder()
    if modalities & {"audio", "both"}:
        frontends["audio"] = WhisperEncoder(compute_type="int8")
    checkpoint = train(config, frontends, args.out)
    print(json.dumps({"checkpoint": str(args.out), "best_valid_uwf1": checkpoint.training["best_valid_uwf1"],
                      "parameters": checkpoint.training["parameters"]}), flush=True)
    return 0


def _print_scores(scores, as_json: bool) -> None:
    from models.metrics import format_scores

    if as_json:
        d = scores.to_dict()
        print(json.dumps({k: d[k] for k in ("wa", "ua", "wf1", "uwf1", "n", "n_excluded", "labels", "confusion", "per_class")}), flush=True)
    else:
        print(format_scores(scores), flush=True)


def run_evaluate(args: argparse.Namespace) -> int:
    from models.evaluation import evaluate

    split = None if args.split == "all" else args.split
    scores = evaluate(
        args.dataset, args.data, split, args.checkpoint, args.modalities, args.context, args.device,
        speakers=args.speakers.split(",") if args.speakers else None,
        pair_with=(args.pair_with[0], Path(args.pair_with[1])) if args.pair_with else None,
    )
    _print_scores(scores, args.json)
    return 0


def run_crossval(args: argparse.Namespace) -> int:
    from models.crossval import crossvalidate

    _print_scores(crossvalidate(args.dataset, args.data, args.labels, args.features), args.json)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emostream", description=__doc__)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="debug log output on stderr")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch CPU threads (default 1: the fusion network and MiniLM work on tiny tensors, where "
             "OpenMP synchronisation costs more than it gains, up to 100x on a busy 2-core machine; "
             "Whisper has its own CTranslate2 threads)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_stream_commands(sub)
    _add_model_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: one line on stderr and exit 2 for user errors, 130 for Ctrl-C."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr,
    )
    import torch
    from transformers.utils import logging as transformers_logging

    torch.set_num_threads(max(1, args.threads))
    transformers_logging.disable_progress_bar()  # "Loading weights" bars are noise on stderr
    try:
        return args.run(args)
    except UserError as err:
        print(f"emostream: error: {err}", file=sys.stderr, flush=True)
        return err.exit_code
    except KeyboardInterrupt:
        print("emostream: interrupted", file=sys.stderr, flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
