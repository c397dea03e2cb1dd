"""The ``emostream`` command line: listen, replay, train, evaluate, crossval.

Everything a user can get wrong is checked before any model loads, and this module imports no
torch, faster-whisper or transformers at the top: ``--help``, ``--version``, bad flags, bad files,
``--print-config`` and ``--list-devices`` answer in well under a second. The run functions import
the heavy modules when they need them (:func:`_load_torch`).
"""

from __future__ import annotations

import argparse
import difflib
import itertools
import json
import logging
import os
import re
import signal
import sys
import tempfile
import threading
from importlib import metadata
from pathlib import Path
from typing import NoReturn

from .errors import UserError

log = logging.getLogger("emostream")

DESCRIPTION = (
    "Recognise emotions in a two-person conversation as it happens: speech is cut into "
    "utterances, transcribed by Whisper, attributed to speaker A or B and scored by an "
    "audio+text model. JSON lines go to stdout, the live display to stderr."
)
EPILOG = "Run `emostream COMMAND --help` for a command's options."
PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".eps", ".ps")


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``emostream: error: ...``, exit 2) and "did you mean"."""

    def error(self, message: str) -> None:  # type: ignore[override]
        unknown = re.search(r"unrecognized arguments: (\S+)", message)
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        hint = ""
        if unknown and unknown.group(1).startswith("-"):
            hint = _did_you_mean(unknown.group(1), _option_strings(self))
        elif choice:
            hint = _did_you_mean(choice.group(1), re.findall(r"'([^']*)'", choice.group(2)))
        raise UserError(f"{message}{hint} (see `{self.prog} --help`)")


class CommandParser(Parser):
    """A subcommand's parser: rejects what it does not know itself, so the error and the "did you
    mean" name this command's options, not another command's."""

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


def _option_strings(parser: argparse.ArgumentParser) -> list[str]:
    """Every option string of ``parser`` and of its subcommands."""
    options = []
    for action in parser._actions:
        options += action.option_strings
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                options += _option_strings(sub)
    return sorted(set(options))


def _did_you_mean(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _writable_file(path: Path, option: str, suffixes: tuple[str, ...] = ()) -> Path:
    """``path`` when a file can be written there (checked before any work); UserError otherwise."""
    if path.is_dir():
        raise UserError(f"{option} {path} is a directory; give a file name")
    if suffixes and path.suffix.lower() not in suffixes:
        raise UserError(f"{option} {path}: the file name must end in one of {', '.join(suffixes)}")
    parent = next((p for p in (path.parent, *path.parent.parents) if p.exists()), Path("."))
    try:  # a real write: permission bits do not tell (root, read-only mounts, /proc)
        if not parent.is_dir():
            raise NotADirectoryError(f"{parent} is not a directory")
        tempfile.TemporaryFile(dir=parent).close()
        if path.exists():
            with open(path, "ab"):
                pass
    except OSError as err:
        raise UserError(f"{option} {path}: cannot write there ({err.strerror or err})") from None
    return path


def _load_torch(args: argparse.Namespace) -> None:
    """Import torch once the arguments are known to be good, and configure it."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(max(1, args.threads))
    # numpy's OpenBLAS spin-waits like OpenMP: the speaker clustering's SVD at 160 utterances took
    # 1.3 s with 2 BLAS threads on the busy 2-core machine, 21 ms with one.
    threadpool_limits(max(1, args.threads), user_api="blas")


def _load_pipeline(args: argparse.Namespace, settings, channels: int):
    """Start loading the models (seconds) in a background thread, so that the input can open at
    once; a Future of the stream's pipeline (``streamer.session.run_session`` waits for it)."""
    from .session import load_in_background

    def load():
        _load_torch(args)
        from .api import Recognizer

        return Recognizer(settings).pipeline(channels)

    return load_in_background(load)


def _add_config_command(sub: argparse._SubParsersAction, name: str, run, *, help: str, description: str,
                        config_help: str, out_help: str, example: str) -> None:
    """A command driven by a TOML config: --config, --out and repeatable --set overrides."""
    parser = sub.add_parser(name, help=help, description=description)
    parser.add_argument("--config", type=Path, required=True, help=config_help)
    parser.add_argument("--out", type=Path, required=True, help=out_help)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a config value, e.g. --set {example} (repeatable)")
    parser.set_defaults(run=run)


def _add_model_commands(sub: argparse._SubParsersAction) -> None:
    _add_config_command(
        sub, "train", run_train, help="train a fusion network from a TOML config",
        description="Train a fusion network as a TOML config describes; the validation-best epoch is "
                    "saved with its SHA-256 beside it.",
        config_help="training config (models/configs/*.toml)",
        out_help="checkpoint to write (.pt; a .sha256 goes beside it)", example="network.max_context=1",
    )
    _add_config_command(
        sub, "tune-text", run_tune_text,
        help="fine-tune MiniLM's top layers for emotion (the text encoder a config names)",
        description="Fine-tune the top MiniLM-L6 layers on the text corpora of a TOML config "
                    "(models/configs/text_encoder.toml); the validation-best layers are written as safetensors.",
        config_help="tuning config (models/configs/text_encoder.toml)",
        out_help="layers to write (.safetensors)", example="optim.epochs=1",
    )

    ev = sub.add_parser(
        "evaluate", help="score a checkpoint on a labelled dataset",
        description="Score a checkpoint on a labelled dataset: WA, UA, weighted and unweighted F1, "
                    "and the confusion matrix.",
    )
    ev.add_argument("--dataset", required=True, help="loader name (iemocap-text, iemocap, meld, emodb, ...)")
    ev.add_argument("--data", type=Path, required=True, help="the dataset's file or folder")
    ev.add_argument("--split", default="test", help="corpus split (train, valid, test); 'all' for every sample")
    ev.add_argument("--checkpoint", type=Path, default=None, help="default: the shipped checkpoint")
    ev.add_argument("--modalities", default="both", choices=["audio", "text", "both"],
                    help="inputs the model is given (ablation; default both)")
    ev.add_argument("--context", type=_positive_int, default=None,
                    help="cut the dialogue context to N >= 1 utterances, the scored one included (default: the network's)")
    ev.add_argument("--speakers", help="comma-separated speaker ids to keep (e.g. held-out test speakers)")
    ev.add_argument("--pair-with", nargs=2, metavar=("DATASET", "PATH"),
                    help="pair every clip of this audio dataset with a same-label turn of --dataset "
                         "(pseudo-pairs: the shared data has no real audio+text pairs)")
    ev.add_argument("--device", default="auto", help="torch device: auto (CUDA when present), cpu, cuda, cuda:N")
    ev.add_argument("--labels", metavar="LABEL_SET",
                    help="score in this label set, the model's probabilities summed onto its classes "
                         "(e.g. core4: neutral, happy, sad, angry); default: the checkpoint's own")
    ev.add_argument("--predictions", type=Path, metavar="FILE.jsonl",
                    help="write one JSON line per scored utterance: dialogue, turn, speaker, text, "
                         "label, prediction, probabilities")
    ev.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    ev.set_defaults(run=run_evaluate)

    cv = sub.add_parser(
        "crossval", help="leave-one-speaker-out cross-validation of acoustic features",
        description="Score acoustic features with a logistic regression in leave-one-speaker-out folds.",
    )
    cv.add_argument("--dataset", required=True, help="an audio loader (turevdb, emodb, crema-d, ravdess, folders)")
    cv.add_argument("--data", type=Path, required=True, help="the dataset's folder")
    cv.add_argument("--labels", default="core4", help="label set (core4, turevdb4, emodb7, ...)")
    cv.add_argument("--features", default="whisper", choices=["whisper", "egemaps"],
                    help="Whisper encoder statistics or eGeMAPS (default whisper)")
    cv.add_argument("--normalise", default="none", choices=["none", "speaker", "speaker-online"],
                    help="standardise each speaker's features by its own statistics: over all its clips "
                         "(speaker) or running over a session (speaker-online); default none")
    cv.add_argument("--with-dataset", nargs=2, metavar=("DATASET", "PATH"), default=None,
                    help="another audio corpus added to every fold's training data (never scored)")
    cv.add_argument("--select", action="store_true",
                    help="choose per fold, on its training speakers only, between no and online "
                         "per-speaker normalisation, with and without --with-dataset")
    cv.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    cv.set_defaults(run=run_crossval)


def _add_stream_options(p: argparse.ArgumentParser) -> None:
    """Flags shared by listen and replay: output, then the settings."""
    out = p.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="JSON lines on stdout (default when stdout is not a terminal)")
    out.add_argument("--no-display", action="store_true", help="no live display on stderr")
    out.add_argument("--plot", type=Path, metavar="FILE.png", help="write an emotion-over-time chart at the end")
    _add_settings_options(p)


def _add_settings_options(p: argparse.ArgumentParser) -> None:
    """Flags shared by listen, replay, serve and batch; each overrides one config.toml setting."""
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
    listen = sub.add_parser(
        "listen", help="recognise emotions live from a microphone",
        description="Recognise emotions live from an input device (PortAudio). Ctrl-C or SIGTERM "
                    "ends the session; the summary is still written.",
    )
    listen.add_argument("--device", dest="input_device", metavar="NAME|INDEX", help="input device (see --list-devices)")
    listen.add_argument("--list-devices", action="store_true", help="list input devices and exit")
    listen.add_argument("--channels", type=int, choices=[1, 2], help="2: one speaker per channel")
    _add_stream_options(listen)
    listen.set_defaults(run=run_listen)

    replay = sub.add_parser(
        "replay", help="run a recording through the same streaming path",
        description="Run an audio file through the same streaming path as the microphone: in real "
                    "time with the live display, as fast as possible without it (--fast), or at --speed X.",
    )
    replay.add_argument("file", type=Path, help="audio file (wav, flac, mp3, ogg, m4a, ...)")
    pace = replay.add_mutually_exclusive_group()
    pace.add_argument("--fast", action="store_true", default=None,
                      help="as fast as possible (default when no display is shown)")
    pace.add_argument("--speed", type=float, help="pace as a multiple of real time (default 1 with a display)")
    _add_stream_options(replay)
    replay.set_defaults(run=run_replay)

    serve = sub.add_parser(
        "serve", help="a WebSocket server for many concurrent streams, with a browser page",
        description="Serve recognition over WebSocket: each connection streams audio in and gets the "
                    "JSON lines of its own session back; a browser page records from the microphone.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    serve.add_argument("--port", type=int, default=8765, help="TCP port (default 8765)")
    serve.add_argument("--workers", type=_positive_int, default=2,
                       help="pipeline jobs run at once, whatever the number of streams (default 2: one job's "
                            "speaker and text models run beside another's Whisper)")
    serve.add_argument("--max-streams", type=_positive_int, default=16, help="concurrent streams; more are refused (1013)")
    _add_settings_options(serve)
    serve.set_defaults(run=run_serve)

    batch = sub.add_parser(
        "batch", help="many recordings, one JSONL each (the events of replay --fast)",
        description="Run many recordings through the pipeline, each as replay --fast would, in worker "
                    "processes; one JSONL file per recording and an index.jsonl. A rerun skips what is done.",
    )
    batch.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                       help="audio files, folders (searched recursively) or manifests (.csv with a 'path' "
                            "column, .jsonl with a 'path' key, .txt one path per line)")
    batch.add_argument("--out", type=Path, required=True, help="folder for the JSONL files and index.jsonl")
    batch.add_argument("--workers", type=_positive_int, default=2, help="local worker processes, each loading the models once")
    batch.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                       help="run the workers as Ray actors: a local Ray without ADDRESS, else that cluster "
                            "(pip install -e '.[ray]')")
    _add_settings_options(batch)
    batch.set_defaults(run=run_batch)


def _print_config(settings) -> int:
    """--print-config: the effective settings as JSON on stdout; exit code 0."""
    print(json.dumps(settings.to_dict(), indent=2), flush=True)
    return 0


def settings_from_args(args: argparse.Namespace):
    """config.toml defaults <- --config FILE <- flags."""
    from .config import load_settings

    speakers_mode = {1: "single", 2: None, None: None}[args.speakers]
    if args.config is not None and not str(args.config):
        args.config = None
    settings = load_settings(args.config).updated(_unset_empty({
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
    }))
    if getattr(args, "plot", None) is not None:  # serve and batch have no --plot
        _writable_file(args.plot, "--plot", PLOT_SUFFIXES)
    return settings


def _unset_empty(values: dict[str, dict]) -> dict[str, dict]:
    """A flag given as "" means "unset", as "" does in config files (``--device ""``): skipped."""
    return {section: {k: None if v == "" else v for k, v in keys.items()} for section, keys in values.items()}


def _sinks(args: argparse.Namespace):
    """JSON lines when asked or when stdout is not a terminal; the display only on a terminal."""
    from .sinks.base import Sinks
    from .sinks.jsonl import JsonlSink
    from .sinks.summary_table import SummaryTableSink

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
    return 128 + result.stopped_by if result.stopped_by else 0  # 130: Ctrl-C, 143: SIGTERM


def run_replay(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if args.print_config:
        return _print_config(settings)
    from .sources import FastClock, RealTimeClock, open_file, paced

    source = open_file(args.file)
    settings.check_devices()
    # A file does not run away: its models load before the session starts, so that a model that
    # cannot be loaded is an error before any output, not after a `session` line.
    pipeline = _load_pipeline(args, settings, min(source.channels, 2)).result()
    from .session import run_session
    from .sinks.base import RunState

    sinks, display = _sinks(args)
    fast = settings.input.fast or (not display and args.speed is None)
    clock = FastClock() if fast else RealTimeClock(settings.input.speed)
    result = run_session(
        paced(source.blocks(settings.input.block_s), clock), pipeline, sinks, settings,
        RunState.REPLAYING, speed=None if fast else settings.input.speed,
    )
    return _finish(result, args)


def run_listen(args: argparse.Namespace) -> int:
    if args.list_devices:
        from .devices import list_input_devices

        devices = list_input_devices()
        if not devices:
            raise UserError(
                "PortAudio sees no audio input device; connect one, or on a headless Linux machine "
                "start a PulseAudio server (README: Troubleshooting)"
            )
        for d in devices:
            print(json.dumps(d), flush=True)
        return 0
    settings = settings_from_args(args)
    if args.print_config:
        return _print_config(settings)
    from .sources import MicrophoneSource

    device = settings.input.device
    mic = MicrophoneSource(
        int(device) if device is not None and str(device).isdigit() else device,
        settings.input.channels, settings.input.block_s, settings.input.queue_blocks,
    )
    settings.check_devices()
    from .session import run_session
    from .sinks.base import RunState

    sinks, _ = _sinks(args)
    blocks = mic.blocks()
    try:
        # The input first ("recording from", its first block), then the models in the background:
        # importing torch in a thread while the input opens slowed the opening by ~0.5 s.
        first = next(blocks, None)  # None: the input ended at once (run_session reports nothing)
        pipeline = _load_pipeline(args, settings, settings.input.channels)
        result = run_session(
            itertools.chain([first] if first is not None else [], blocks), pipeline, sinks, settings,
            RunState.LISTENING, speed=1.0,
            input_health=lambda: (mic.queue_depth, mic.dropped_blocks, sum(mic.status_counts.values())),
        )
    finally:
        mic.stop()
    return _finish(result, args)


def run_serve(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if args.print_config:
        return _print_config(settings)
    settings.check_devices()
    from .server import ServerConfig, check_address, serve

    check_address(args.host, args.port)
    _load_torch(args)
    from .api import Recognizer

    serve(Recognizer(settings), args.host, args.port, ServerConfig(workers=args.workers, max_streams=args.max_streams))
    return 0


def run_batch(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if args.print_config:
        return _print_config(settings)
    settings.check_devices()
    from .batch import run_batch as batch

    report = batch(args.inputs, args.out, settings, workers=args.workers, ray_address=args.ray, threads=args.threads)
    return 0 if report.failed == 0 else 1


def run_train(args: argparse.Namespace) -> int:
    from models.training_config import TrainConfig

    config = TrainConfig.from_toml(args.config, args.set)
    _writable_file(args.out, "--out", (".pt",))
    _load_torch(args)
    from models.frontends.audio import audio_frontend
    from models.frontends.text import TextEncoder
    from models.training import train

    modalities = {d.modality for d in config.datasets}
    frontends = {}
    if modalities & {"text", "both"}:
        frontends["text"] = TextEncoder(config.text_encoder or None)
    if modalities & {"audio", "both"}:
        frontends["audio"] = audio_frontend(config.audio_frontend)
    checkpoint = train(config, frontends, args.out)
    print(json.dumps({"checkpoint": str(args.out), "best_valid_uwf1": checkpoint.training["best_valid_uwf1"],
                      "parameters": checkpoint.training["parameters"]}), flush=True)
    return 0


def run_tune_text(args: argparse.Namespace) -> int:
    from models.training_config import TrainConfig

    config = TrainConfig.from_toml(args.config, args.set)
    _writable_file(args.out, "--out", (".safetensors",))
    _load_torch(args)
    from models.text_tuning import tune_text

    report = tune_text(config, args.out)
    print(json.dumps({"layers": str(args.out), "best_valid_uwf1": report["best_valid_uwf1"]}), flush=True)
    return 0


def _print_scores(scores, as_json: bool) -> None:
    from models.metrics import format_scores

    if as_json:
        d = scores.to_dict()
        print(json.dumps({k: d[k] for k in ("wa", "ua", "wf1", "uwf1", "ece", "n", "n_excluded", "labels", "confusion", "per_class", "subsets") if k in d}), flush=True)
    else:
        print(format_scores(scores), flush=True)


def run_evaluate(args: argparse.Namespace) -> int:
    from models.checks import check_torch_device

    check_torch_device(args.device, "--device")
    if args.labels:
        from models.labels import label_set

        label_set(args.labels)  # an unknown name fails before any model loads
    _load_torch(args)
    from models.evaluation import evaluate

    split = None if args.split == "all" else args.split
    scores = evaluate(
        args.dataset, args.data, split, args.checkpoint, args.modalities, args.context, args.device,
        speakers=args.speakers.split(",") if args.speakers else None,
        pair_with=(args.pair_with[0], Path(args.pair_with[1])) if args.pair_with else None,
        labels=args.labels, predictions=args.predictions,
    )
    _print_scores(scores, args.json)
    return 0


def run_crossval(args: argparse.Namespace) -> int:
    _load_torch(args)
    from models.crossval import crossvalidate

    with_dataset = (args.with_dataset[0], Path(args.with_dataset[1])) if args.with_dataset else None
    _print_scores(crossvalidate(args.dataset, args.data, args.labels, args.features,
                                normalise=args.normalise, with_dataset=with_dataset,
                                select=args.select), args.json)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="emostream", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"emostream {_version()}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="debug log output on stderr")
    parser.add_argument(
        "--threads", type=_positive_int, default=1,
        help="torch CPU threads (default 1: the fusion network and MiniLM work on tiny tensors, where "
             "OpenMP synchronisation costs more than it gains, up to 100x on a busy 2-core machine; "
             "Whisper has its own CTranslate2 threads; in batch, each worker's torch, CTranslate2 and BLAS threads)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=CommandParser,
                                help="what to do (each has its own --help)")
    _add_stream_commands(sub)
    _add_model_commands(sub)
    return parser


def _version() -> str:
    try:
        return metadata.version("emostream")
    except metadata.PackageNotFoundError:  # run from a checkout that was never pip-installed
        return "unknown (not installed)"


class _Terminated(Exception):
    """SIGTERM outside a session (start-up, model loading)."""


def _terminated(signum: int, frame: object) -> None:
    raise _Terminated


def main(argv: list[str] | None = None) -> int:
    """Entry point: one line on stderr and exit 2 for user errors, 130 for Ctrl-C, 143 for SIGTERM.

    Bare ``emostream`` prints the help. Run as the program (``argv`` None), a session stopped by
    a signal exits at once (:func:`_exit_now`).
    """
    code = _main(sys.argv[1:] if argv is None else argv)
    if argv is None and code in (128 + signal.SIGINT, 128 + signal.SIGTERM):
        _exit_now(code)
    return code


def _exit_now(code: int) -> NoReturn:
    """Leave without the interpreter's teardown, which frees the models for seconds (6 s measured
    after a replay on a loaded 2-core machine): whoever pressed Ctrl-C or sent SIGTERM wants the
    process gone. Everything written so far is flushed first."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing more can be delivered
            pass
    os._exit(code)


def _main(argv: list[str]) -> int:
    parser = build_parser()
    if not argv:
        parser.print_help()
        return 0
    if threading.current_thread() is not threading.main_thread():
        return _run(parser, argv)
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        return _run(parser, argv)
    finally:  # an in-process caller (tests, an embedding program) gets its own handling back
        signal.signal(signal.SIGTERM, previous)


def _run(parser: argparse.ArgumentParser, argv: list[str]) -> int:
    try:
        args = parser.parse_args(argv)
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.INFO,
            format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr,
        )
        return args.run(args)
    except UserError as err:
        print(f"emostream: error: {err}", file=sys.stderr, flush=True)
        return err.exit_code
    except KeyboardInterrupt:
        print("emostream: interrupted", file=sys.stderr, flush=True)
        return 128 + signal.SIGINT
    except _Terminated:
        print("emostream: terminated", file=sys.stderr, flush=True)
        return 128 + signal.SIGTERM
    except BrokenPipeError:  # the reader of --print-config or --list-devices went away (| head)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout at exit
        return 0


if __name__ == "__main__":
    sys.exit(main())
