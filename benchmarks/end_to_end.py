"""End to end from speech: rendered two-voice dialogues through the real pipeline, scored per turn.

    python benchmarks/end_to_end.py                       # default: 8 dialogues per set, ~10 min
    python benchmarks/end_to_end.py --sets meld --dialogues 30 --runs both:mono,both:stereo
    python benchmarks/end_to_end.py --asr-only --asr-reference --sets meld --config my_decoding.toml

Sets (train/dev splits only; ``benchmarks/dialogues.py`` says how dialogues are picked and
spoken): ``everyday`` = DailyDialog valid, ``meld`` = MELD_Dyadic dev, ``iemocap`` = IEMOCAP
valid (12-turn excerpts), ``written`` = the written everyday dialogues of this repository
(``benchmarks/data/written_dialogues.jsonl``, a dev set; it does not need ``--data``). Each recording is replayed in-process through ``build_pipeline`` and
``run_session`` (the code ``emostream replay --fast`` runs), models loaded once per modality
setting. A run is ``modalities:layout``; the default runs are both, text and audio on the mono
mix and both on the stereo file. Beside them:

- **ceiling**: the same checkpoint on the true transcripts (the corpus text) with the true speakers
  and the same dialogue context, through ``models.evaluation``'s feature and window code;
- **ASR on true segments**: each turn cut at its true bounds from the mono mix and transcribed by
  the pipeline's transcriber and by faster-whisper's standard ``WhisperModel.transcribe``
  (30 s window, beam 5), same model weights: corpus WER and milliseconds per utterance.

Metrics are defined in ``benchmarks/e2e_metrics.py``. Prints markdown tables; writes JSON to
``runs/e2e/<name>.json``. Settings come from ``config.toml`` defaults, ``--config FILE`` and the
flags, as for ``emostream``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.dialogues import SETS, Recording, read_wav, render_set  # noqa: E402
from benchmarks.e2e_metrics import (  # noqa: E402
    Span, TrueTurn, aggregate, corpus_wer, exclamations, normalise_basic, score_dialogue,
)
from models.audio import SAMPLE_RATE  # noqa: E402
from models.errors import UserError  # noqa: E402
from models.labels import LABEL_SETS, LabelSet, fold_matrix  # noqa: E402
from streamer.config import Settings, load_settings  # noqa: E402
from streamer.sinks.memory import MemorySink  # noqa: E402

log = logging.getLogger("end_to_end")

DEFAULT_RUNS = "both:mono,text:mono,audio:mono,both:stereo"
LAYOUT_CHANNELS = {"mono": 1, "stereo": 2}
SCORED = LABEL_SETS["core4"]  # every model is scored on four classes, its probabilities summed onto them


def folded(probabilities: np.ndarray, model_set: LabelSet) -> np.ndarray:
    """[N, C_model] probabilities -> [N] indices into SCORED.labels (summed, as evaluate --labels core4)."""
    return (probabilities @ fold_matrix(model_set, SCORED)).argmax(1)


def folded_labels(emotions: list[dict[str, float]], model_set: LabelSet) -> list[str]:
    """Events' ``emotions`` (label -> probability, the model's labels) -> their SCORED label each."""
    probabilities = np.array([[e[label] for label in model_set.labels] for e in emotions], np.float32)
    return [SCORED.labels[i] for i in folded(probabilities.reshape(-1, len(model_set.labels)), model_set)]


@dataclass(frozen=True)
class RunSpec:
    modalities: str  # both | text | audio
    layout: str  # mono | stereo

    @property
    def key(self) -> str:
        return f"{self.modalities}:{self.layout}"


def parse_runs(value: str) -> list[RunSpec]:
    runs = []
    for item in value.split(","):
        modalities, _, layout = item.strip().partition(":")
        if modalities not in ("both", "text", "audio") or layout not in LAYOUT_CHANNELS:
            raise UserError(f"--runs: {item!r} is not MODALITIES:LAYOUT (both|text|audio : mono|stereo)")
        runs.append(RunSpec(modalities, layout))
    return runs


def parse_decoding(items: list[str]) -> dict:
    """["repetition_penalty=1.0", ...] -> {"repetition_penalty": 1.0, ...} (values parsed as TOML)."""
    import tomllib

    values = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            values.update(tomllib.loads(f"{key.strip()} = {value.strip()}"))
        except (ValueError, tomllib.TOMLDecodeError):
            raise UserError(f"--decoding {item!r}: expected KEY=VALUE with a TOML value") from None
    return values


def true_turns(recording: Recording) -> list[TrueTurn]:
    """The recording's turns with class indices into ``SCORED.labels`` (None: not scored)."""
    return [TrueTurn(t.start, t.end, t.text, t.speaker, SCORED.index(t.emotion)) for t in recording.turns]


# --- the pipeline ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Replay:
    spans: list[Span]
    latency_ms: list[float]  # the events' own latency_ms (end-of-speech decision -> event)
    end_to_event_ms: list[float]  # --realtime: end of speech (stream) -> event (wall clock)


class _TimedSink(MemorySink):
    """A memory sink that also notes the monotonic time each event was emitted."""

    def __init__(self) -> None:
        super().__init__()
        self.emitted: list[float] = []

    def emit(self, event) -> None:
        super().emit(event)
        self.emitted.append(time.monotonic())


def replay(path: Path, pipeline, settings: Settings, realtime: bool, model_set: LabelSet) -> Replay:
    """Run one file through ``run_session`` as ``emostream replay`` does (fast or real-time clock)."""
    from streamer.records import latest_speakers
    from streamer.session import run_session
    from streamer.sinks.base import RunState, Sinks
    from streamer.sources import FastClock, RealTimeClock, open_file, paced

    sink = _TimedSink()
    origin: list[float] = []  # monotonic time of stream time 0 (real-time clock only)

    def blocks():
        for block in paced(open_file(path).blocks(settings.input.block_s), RealTimeClock() if realtime else FastClock()):
            if not origin:
                origin.append(time.monotonic() - (block.start + block.duration))
            yield block

    run_session(blocks(), pipeline, Sinks([sink]), settings, RunState.REPLAYING, speed=1.0 if realtime else None)
    emotions = folded_labels([e.emotions for e in sink.events], model_set)
    revised = latest_speakers(sink.events)
    spans = [Span(e.start, e.end, e.text, e.speaker.value, emotion, r.speaker.value)
             for e, r, emotion in zip(sink.events, revised, emotions)]
    delays = [1000 * (t - origin[0] - e.end) for e, t in zip(sink.events, sink.emitted)] if realtime else []
    return Replay(spans, [e.latency_ms for e in sink.events], delays)


def run_pipeline(spec: RunSpec, settings: Settings, recordings: dict[str, list[Recording]], realtime: bool) -> dict:
    """One run over every set: figures per set."""
    from streamer.session import load_models, make_pipeline

    settings = settings.updated({"model": {"modalities": spec.modalities}})
    channels = LAYOUT_CHANNELS[spec.layout]
    models = load_models(settings)
    model_set = models.predictor.checkpoint.label_set
    out = {}
    for name, recs in recordings.items():
        started, cpu = time.perf_counter(), time.process_time()
        scores, latency, delays, texts = [], [], [], []
        for rec in recs:
            result = replay(rec.mono if spec.layout == "mono" else rec.stereo,
                            make_pipeline(models, settings, channels), settings, realtime, model_set)
            scores.append(score_dialogue(true_turns(rec), result.spans, SCORED.labels))
            latency += result.latency_ms
            delays += result.end_to_event_ms
            texts.append({"dialogue": rec.dialogue, "reference": scores[-1].reference, "hypothesis": scores[-1].hypothesis,
                          "spans": [asdict(s) for s in result.spans], "latency_ms": result.latency_ms})
        figures = aggregate(scores, SCORED.labels)
        figures.update(
            latency_p50_ms=_pct(latency, 50), latency_p95_ms=_pct(latency, 95),
            audio_s=round(sum(r.duration for r in recs), 1),
            wall_s=round(time.perf_counter() - started, 1), cpu_s=round(time.process_time() - cpu, 1),
            details=texts,
        )
        if realtime:
            figures.update(speech_end_to_event_p50_ms=_pct(delays, 50), speech_end_to_event_p95_ms=_pct(delays, 95))
        out[name] = figures
        log.info("%s %s: %s", spec.key, name, {k: v for k, v in figures.items() if k != "details"})
    return out


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


# --- the ceiling ----------------------------------------------------------------------------


def ceiling(recordings: list[Recording], checkpoint_path: str | None) -> dict:
    """The checkpoint on true transcripts, true speakers, same dialogue context (text only)."""
    import torch

    from models.checkpoint import load_checkpoint
    from models.data.sample import Sample
    from models.evaluation import text_features
    from models.labels import Emotion
    from models.predictor import load_network, pick_device, predict_windows
    from models.windows import build_windows

    checkpoint, _ = load_checkpoint(Path(checkpoint_path) if checkpoint_path else None)
    device = pick_device("cpu")
    network = load_network(checkpoint, device)
    samples = [
        Sample(id=f"{rec.dialogue}:{t.turn}", dataset="e2e", raw_label=t.raw_label,
               label=Emotion(t.emotion) if t.emotion else None, speaker=t.speaker,
               dialogue=rec.dialogue, turn=t.turn, text=t.corpus_text)
        for rec in recordings for t in rec.turns
    ]
    rows, table = text_features(samples, checkpoint)
    windows, _ = build_windows(samples, SCORED, network.config.max_context, rows, None)
    probabilities = predict_windows(network, windows, table, torch.zeros(0, network.config.audio_dim), device)
    predicted = iter(folded(probabilities, checkpoint.label_set))
    scores = []
    for rec in recordings:
        turns = true_turns(rec)
        spans = [Span(t.start, t.end, t.text, t.speaker, SCORED.labels[next(predicted)] if t.label is not None else "")
                 for t in turns]
        scores.append(score_dialogue(turns, spans, SCORED.labels))
    return aggregate(scores, SCORED.labels)


# --- ASR on the true segments ---------------------------------------------------------------


def text_figures(references: list[str], hypotheses: list[str]) -> dict:
    """Transcripts against what was spoken, per turn: WER by both normalisers and the "!" counts."""
    return {"wer": corpus_wer(references, hypotheses), "wer_basic": corpus_wer(references, hypotheses, normalise_basic),
            "exclamations": exclamations(references, hypotheses)}


def asr_on_true_segments(recordings: list[Recording], settings: Settings, reference: bool) -> dict:
    """WER and ms per utterance of the pipeline's transcriber and, with ``reference``, of
    faster-whisper's standard transcribe (30 s window, beam 5), on each turn's true span."""
    from models.frontends.whisper import WhisperEncoder
    from streamer.transcriber import Transcriber

    encoder = WhisperEncoder(settings.asr.model, settings.asr.device, settings.asr.compute_type)
    ours = Transcriber(encoder, settings.asr.decoding)
    segments, references = [], []  # segments: (audio, index of the dialogue's first segment)
    for rec in recordings:
        audio = read_wav(rec.mono)[0][:, 0]
        first = len(segments)
        for t in rec.turns:
            segments.append((audio[round(t.start * SAMPLE_RATE) : round(t.end * SAMPLE_RATE)], first))
            references.append(t.text)

    def measure(transcribe: Callable[[np.ndarray, str], str]) -> dict:
        """transcribe(audio, what was transcribed before it in the same dialogue) -> text."""
        hyps, wall, cpu = [], [], []
        for audio, first in segments:
            w, c = time.perf_counter(), time.process_time()
            hyps.append(transcribe(audio, " ".join(hyps[first:])))
            wall.append(time.perf_counter() - w)
            cpu.append(time.process_time() - c)
        return {
            **text_figures(references, hyps), "segments": len(segments),
            "wall_ms_per_utt": round(1000 * float(np.mean(wall)), 1), "cpu_ms_per_utt": round(1000 * float(np.mean(cpu)), 1),
            "hypotheses": hyps,
        }

    out = {"ours": measure(lambda a, previous: ours.transcribe(a, previous).text), "references": references}
    if reference:
        whisper = encoder.whisper

        def standard(audio: np.ndarray, previous: str) -> str:  # each segment on its own, as before
            parts, _ = whisper.transcribe(audio, beam_size=5, language="en")
            return " ".join(p.text.strip() for p in parts)

        out["faster_whisper_beam5"] = measure(standard)
    return out


# --- report ---------------------------------------------------------------------------------


def _f(value, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _wer(figures: dict, digits: int = 2) -> str:
    """WER with Whisper's normaliser, and in brackets with the pre-round-4 one (when recorded)."""
    basic = figures.get("wer_basic")
    return _f(figures["wer"], digits) + ("" if basic is None else f" ({_f(basic, digits)})")


def _exclaimed(figures: dict) -> str:
    """The "!" counts as ``both/reference, both/hypothesis`` (recall's and precision's fractions);
    "—" for a run recorded before they were counted."""
    e = figures.get("exclamations")
    if e is None:
        return "—"
    return f"{e['both']}/{e['reference']}, {e['both']}/{e['hypothesis']}"


def _speakers(figures: dict) -> str:
    """Speaker accuracy as emitted, and "→ revised" where the stream's revisions changed it."""
    revised = figures.get("speaker_accuracy_revised")
    if revised is None or abs(revised - figures["speaker_accuracy"]) < 5e-4:
        return _f(figures["speaker_accuracy"])
    return f"{_f(figures['speaker_accuracy'])} → {_f(revised)}"


def markdown(result: dict) -> str:
    lines = [
        '| set | run | seg. recall | WER (basic norm.) | "!" recall, precision | speaker acc. | UA | WF1 | change acc. | latency p50/p95 ms | turns (scored) |',
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, per_set in result["sets"].items():
        if "ceiling" in per_set:
            c = per_set["ceiling"]
            lines.append(f"| {name} | ceiling: true text + speakers | — | — | — | — | {_f(c['ua'])} | {_f(c['wf1'])} | "
                         f"{_f(c['change_accuracy'])} | — | {c['turns']} ({c['scored_turns']}) |")
        for key, r in per_set.get("runs", {}).items():
            extra = f" (speech end→event {_f(r['speech_end_to_event_p50_ms'], 0)}/{_f(r['speech_end_to_event_p95_ms'], 0)})" if "speech_end_to_event_p50_ms" in r else ""
            lines.append(
                f"| {name} | {key} | {_f(r['segmentation_recall'])} | {_wer(r)} | {_exclaimed(r)} | {_speakers(r)} | "
                f"{_f(r['ua'])} | {_f(r['wf1'])} | {_f(r['change_accuracy'])} | "
                f"{_f(r['latency_p50_ms'], 0)}/{_f(r['latency_p95_ms'], 0)}{extra} | {r['turns']} ({r['scored_turns']}) |"
            )
    asr_rows = [(name, s["asr"]) for name, s in result["sets"].items() if "asr" in s]
    if asr_rows:
        lines += ["", "ASR on the true segments (same tiny.en weights):", "",
                  '| set | segments | ours: WER (basic norm.) | ours: "!" recall, precision | ours: ms/utt (wall, CPU) '
                  '| faster-whisper 30 s beam 5: WER (basic) | its "!" recall, precision | its ms/utt (wall, CPU) |',
                  "|---|---|---|---|---|---|---|---|"]
        if len(asr_rows) > 1:
            asr_rows.append(("all", _pooled_asr([a for _, a in asr_rows])))
        for name, a in asr_rows:
            o, ref = a["ours"], a.get("faster_whisper_beam5")
            ref_cells = f"{_wer(ref, 3)} | {_exclaimed(ref)} | {ref['wall_ms_per_utt']:.0f}, {ref['cpu_ms_per_utt']:.0f}" if ref else "— | — | —"
            lines.append(f"| {name} | {o['segments']} | {_wer(o, 3)} | {_exclaimed(o)} | "
                         f"{o['wall_ms_per_utt']:.0f}, {o['cpu_ms_per_utt']:.0f} | {ref_cells} |")
    return "\n".join(lines)


def _pooled_asr(per_set: list[dict]) -> dict:
    """The ASR figures of several sets as one corpus: WER over all segments, mean ms per utterance."""
    references = [r for a in per_set for r in a["references"]]
    pooled = {}
    for system in ("ours", "faster_whisper_beam5"):
        if all(system in a for a in per_set):
            n = [a[system]["segments"] for a in per_set]
            hypotheses = [h for a in per_set for h in a[system]["hypotheses"]]
            pooled[system] = {
                **text_figures(references, hypotheses), "segments": sum(n),
                **{k: float(np.average([a[system][k] for a in per_set], weights=n)) for k in ("wall_ms_per_utt", "cpu_ms_per_utt")},
            }
    return pooled


def rescore_wer(result: dict) -> dict:
    """``result`` (an earlier run's JSON) with every WER recomputed from its stored texts by both
    normalisers of ``benchmarks/e2e_metrics.py`` (runs from before round 4 hold the basic one)."""
    for per_set in result["sets"].values():
        asr = per_set.get("asr", {})
        for system in ("ours", "faster_whisper_beam5"):
            if system in asr:
                hyps = asr[system]["hypotheses"]
                asr[system] |= text_figures(asr["references"], hyps)
        for run in per_set.get("runs", {}).values():
            refs, hyps = [d["reference"] for d in run["details"]], [d["hypothesis"] for d in run["details"]]
            run |= {"wer": corpus_wer(refs, hyps), "wer_basic": corpus_wer(refs, hyps, normalise_basic)}
    return result


def _machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}"


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="data root (default ../shared/data)")
    p.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, of {', '.join(SETS)}")
    p.add_argument("--dialogues", type=int, default=8, help="dialogues per set (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", default=DEFAULT_RUNS, help=f"MODALITIES:LAYOUT,... (default {DEFAULT_RUNS})")
    p.add_argument("--config", type=Path, help="a settings file laid out like config.toml (e.g. [asr.decoding])")
    p.add_argument("--decoding", action="append", default=[], metavar="KEY=VALUE",
                   help="an asr.decoding setting (TOML value), e.g. --decoding repetition_penalty=1.0; repeatable")
    p.add_argument("--checkpoint", help="fusion checkpoint (default: the shipped one)")
    p.add_argument("--asr-model", help="faster-whisper model name or CTranslate2 directory (default: embedded tiny.en)")
    p.add_argument("--asr-only", action="store_true", help="only the ASR comparison on true segments")
    p.add_argument("--asr-reference", action="store_true",
                   help="also run faster-whisper's standard decoding on the true segments (slow: ~1 s per segment)")
    p.add_argument("--realtime", action="store_true", help="replay at real-time pace and report speech end -> event delay (slow)")
    p.add_argument("--cache", type=Path, default=ROOT / "runs" / "e2e" / "renders", help="where renders are cached")
    p.add_argument("--name", default="latest", help="JSON goes to runs/e2e/NAME.json")
    p.add_argument("--show", type=Path, metavar="JSON",
                   help="print the tables of an earlier run's JSON (WER rescored by both normalisers) and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.show:
        result = rescore_wer(json.loads(args.show.read_text()))
        print(markdown(result))
        print(f"\n{result['command']} | commit {result['commit']} | {result['machine_at_end']}")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # one line per transcribe call
    try:
        import torch

        torch.set_num_threads(1)  # as `emostream` does: the tiny tensors spin-wait with more threads
        names = [s.strip() for s in args.sets.split(",") if s.strip()]
        unknown = [s for s in names if s not in SETS]
        if unknown:
            raise UserError(f"--sets: unknown {', '.join(unknown)}; choose from {', '.join(SETS)}")
        if args.dialogues < 1:
            raise UserError("--dialogues must be at least 1")
        runs = [] if args.asr_only else parse_runs(args.runs)
        settings = load_settings(args.config).updated({
            "asr": {"model": args.asr_model, "decoding": parse_decoding(args.decoding)},
            "model": {"checkpoint": args.checkpoint},
        })
        recordings = {n: render_set(n, args.data, args.dialogues, args.seed, args.cache) for n in names}
        result: dict = {
            "command": " ".join(["python", "benchmarks/end_to_end.py", *(argv if argv is not None else sys.argv[1:])]),
            "commit": _commit(), "machine_at_start": _machine(), "settings": settings.to_dict(),
            "sets": {n: {"dialogues": [r.dialogue for r in recs], "audio_s": round(sum(r.duration for r in recs), 1)}
                     for n, recs in recordings.items()},
        }
        for name, recs in recordings.items():
            if not args.asr_only:
                result["sets"][name]["ceiling"] = ceiling(recs, args.checkpoint)
            result["sets"][name]["asr"] = asr_on_true_segments(recs, settings, args.asr_reference)
        for spec in runs:
            for name, figures in run_pipeline(spec, settings, recordings, args.realtime).items():
                result["sets"][name].setdefault("runs", {})[spec.key] = figures
        result["machine_at_end"] = _machine()
    except UserError as err:
        print(f"end_to_end: error: {err}", file=sys.stderr)
        return 2
    out = ROOT / "runs" / "e2e" / f"{args.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str))
    print(markdown(result))
    print(f"\n{result['command']} | commit {result['commit']} | {result['machine_at_end']} | JSON: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
