"""IEMOCAP: the original release (``IEMOCAP_full_release``) and the COSMIC text conversion.

Both give dyadic dialogues; a speaker id is the session plus the actor's gender ("Ses01M"), so
the ten actors stay distinct across sessions. The release's test session is Session 5.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from models.data.sample import (
    Sample, Split, layout_error, normalize_votes, parse_split, read_jsonl, read_lines, required,
)
from models.labels import canonical

TABLE = "iemocap"
TEXT_FILE = "iemocap_text.jsonl"
TEXT_LAYOUT = f"{TEXT_FILE} (JSON lines with dialog, turn, speaker M/F, text, label, split)"
RELEASE_LAYOUT = (
    "IEMOCAP_full_release with Session1..5/dialog/EmoEvaluation/*.txt "
    "(and optionally dialog/transcriptions, sentences/wav)"
)
TEST_SESSION = "Session5"

# "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]"
_TURN_RE = re.compile(
    r"^\[(?P<start>[\d.]+)\s*-\s*(?P<end>[\d.]+)\]\s+(?P<utt>\S+)\s+(?P<label>\S+)"
)
# "C-E2:\tFrustration; Anger;\t(comment)": one evaluator's categorical labels
_EVALUATOR_RE = re.compile(r"^C-[^:]+:\s*(?P<labels>[^\t(]*)")
# "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me."
_TRANSCRIPT_RE = re.compile(r"^(?P<utt>\S+)\s+\[[\d.\s-]+\]:\s?(?P<text>.*)$")


def load_iemocap_text(path: Path) -> list[Sample]:
    """Read the JSON-lines text conversion; ``path`` is the file or the folder holding it."""
    file = path / TEXT_FILE if path.is_dir() else path
    if not file.is_file():
        raise layout_error("iemocap-text", path, TEXT_LAYOUT)
    samples = []
    for number, row in read_jsonl(file, "iemocap-text"):
        where = f"iemocap-text: {file}:{number}"
        dialog = required(row, "dialog", where)
        turn = required(row, "turn", where, int)
        raw = str(row["label"]) if row.get("label") else None
        samples.append(Sample(
            id=f"{dialog}:{turn}",
            dataset="iemocap-text",
            raw_label=raw,
            label=canonical(TABLE, raw) if raw else None,
            speaker=f"{dialog[:5]}{required(row, 'speaker', where)}",
            dialogue=dialog,
            turn=turn,
            text=str(row.get("text", "")),
            split=parse_split(row.get("split"), where),
        ))
    return samples


@dataclass
class _Turn:
    """One evaluated turn of an EmoEvaluation file while it is being read."""

    utt: str
    raw_label: str
    start: float  # seconds within the dialogue wav
    end: float
    evaluators: list[list[str]] = field(default_factory=list)  # each evaluator's labels


def load_iemocap(path: Path) -> list[Sample]:
    """Read ``IEMOCAP_full_release``: labels, evaluator votes, transcripts and wav paths."""
    sessions = sorted(p for p in path.glob("Session*") if (p / "dialog" / "EmoEvaluation").is_dir())
    if not sessions:
        raise layout_error("iemocap", path, RELEASE_LAYOUT)
    samples = []
    for session in sessions:
        split = Split.TEST if session.name == TEST_SESSION else Split.TRAIN
        for evaluation in sorted((session / "dialog" / "EmoEvaluation").glob("*.txt")):
            if evaluation.name.startswith("."):
                continue  # macOS resource forks ("._Ses01F_impro01.txt")
            dialog = evaluation.stem
            texts = _transcripts(session / "dialog" / "transcriptions" / evaluation.name)
            turns = sorted(_evaluated_turns(read_lines(evaluation)), key=lambda t: t.start)
            for index, turn in enumerate(turns):
                samples.append(_release_sample(session, dialog, index, turn, texts, split))
    return samples


def _evaluated_turns(lines: list[str]) -> list[_Turn]:
    """The turns of one EmoEvaluation file with their evaluators' categorical labels."""
    turns: list[_Turn] = []
    for line in lines:
        if match := _TURN_RE.match(line):
            turns.append(_Turn(
                match["utt"], match["label"], float(match["start"]), float(match["end"]),
            ))
        elif turns and (match := _EVALUATOR_RE.match(line)):
            labels = [label.strip() for label in match["labels"].split(";")]
            turns[-1].evaluators.append([label for label in labels if label])
    return turns


def _transcripts(file: Path) -> dict[str, str]:
    """Utterance id -> transcript from a transcriptions file (empty when it is absent)."""
    if not file.is_file():
        return {}
    lines = (_TRANSCRIPT_RE.match(line) for line in read_lines(file))
    return {m["utt"]: m["text"].strip() for m in lines if m}


def _release_sample(
    session: Path, dialog: str, index: int, turn: _Turn, texts: dict[str, str], split: Split,
) -> Sample:
    """A Sample for one evaluated turn; audio is the sentence wav, else a span of the dialog wav."""
    gender = turn.utt.rsplit("_", 1)[-1][:1]
    sentence_wav = session / "sentences" / "wav" / dialog / f"{turn.utt}.wav"
    dialog_wav = session / "dialog" / "wav" / f"{dialog}.wav"
    audio, start, end = None, None, None
    if sentence_wav.is_file():
        audio = sentence_wav
    elif dialog_wav.is_file():
        audio, start, end = dialog_wav, turn.start, turn.end
    # Each evaluator has one vote, shared equally among the labels they chose.
    votes = normalize_votes(
        (canonical(TABLE, label), 1.0 / len(labels))
        for labels in turn.evaluators for label in labels
    )
    return Sample(
        id=turn.utt,
        dataset="iemocap",
        raw_label=turn.raw_label,
        label=canonical(TABLE, turn.raw_label),
        speaker=f"{turn.utt[:5]}{gender}",
        dialogue=dialog,
        turn=index,
        text=texts.get(turn.utt),
        audio_path=audio,
        start=start,
        end=end,
        split=split,
        votes=votes,
    )
