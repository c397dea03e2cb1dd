"""The record every dataset loader returns, and small helpers the loaders share.

A loader turns one corpus layout on disk into a flat list of :class:`Sample` s, one per labelled
utterance. Labels are mapped to a canonical :class:`~models.labels.Emotion` here; folding them
onto a model's classes (e.g. *excited* -> *happy*) is the job of a
:class:`~models.labels.LabelSet` downstream.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from models.labels import Emotion
from models.errors import UserError


class Split(str, Enum):
    """A corpus-defined partition."""

    TRAIN = "train"
    VALID = "valid"
    TEST = "test"


@dataclass(frozen=True)
class Sample:
    """One labelled utterance of a corpus (text, audio or both).

    ``start``/``end`` are seconds within ``audio_path`` and set only when that file is longer than
    the utterance (e.g. an IEMOCAP dialogue wav); otherwise the whole file is the utterance.
    ``votes`` maps canonical emotion names to their fraction of annotator votes (sums to 1).
    """

    id: str                    # unique within the dataset
    dataset: str               # loader name, e.g. "iemocap-text"
    raw_label: str | None      # label as the corpus spells it
    label: Emotion | None      # canonical emotion; None = unmappable (dropped by load_dataset)
    speaker: str               # corpus speaker id, unique within the dataset ("Ses01M", "03")
    dialogue: str | None = None
    turn: int | None = None    # 0-based order within the dialogue
    text: str | None = None
    audio_path: Path | None = None
    start: float | None = None  # seconds within audio_path
    end: float | None = None    # seconds within audio_path
    split: Split | None = None  # as the corpus defines it, else None
    votes: dict[str, float] | None = None


@dataclass(frozen=True)
class LoadResult:
    """What :func:`models.data.load_dataset` returns.

    ``excluded`` counts, per raw label, the samples dropped because their label is missing
    (key ``"<missing>"``) or has no canonical emotion (e.g. IEMOCAP ``"xxx"``).
    """

    samples: list[Sample]
    excluded: dict[str, int] = field(default_factory=dict)


MISSING_LABEL = "<missing>"


def dialogues(samples: Iterable[Sample]) -> list[list[Sample]]:
    """Group samples by dialogue, each group ordered by turn.

    Groups keep the order in which their dialogues first appear; a sample without a dialogue
    is a one-item dialogue of its own.
    """
    groups: dict[str, list[Sample]] = {}
    out: list[list[Sample]] = []
    for sample in samples:
        if sample.dialogue is None:
            out.append([sample])
            continue
        if sample.dialogue not in groups:
            groups[sample.dialogue] = []
            out.append(groups[sample.dialogue])
        groups[sample.dialogue].append(sample)
    for group in groups.values():
        group.sort(key=lambda s: -1 if s.turn is None else s.turn)
    return out


def normalize_votes(votes: Iterable[tuple[Emotion | None, float]]) -> dict[str, float] | None:
    """Sum (emotion, weight) votes and scale them to fractions summing to 1.

    Votes for unmappable labels (``None``) are ignored; ``None`` when no weight remains.
    """
    counts: dict[Emotion, float] = defaultdict(float)
    for emotion, weight in votes:
        if emotion is not None and weight > 0:
            counts[emotion] += weight
    total = sum(counts.values())
    if total <= 0:
        return None
    return {emotion.value: n / total for emotion, n in counts.items()}


def read_text(path: Path) -> str:
    """Read a corpus text file: UTF-8 (with or without BOM), else Windows-1252."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def read_lines(path: Path) -> list[str]:
    """The lines of a text file, split at "\n" only ("\r" stripped).

    ``str.splitlines`` would also split inside text at U+0085, U+2028 and other separators
    that occur in subtitles and Reddit comments.
    """
    return [line.rstrip("\r") for line in read_text(path).split("\n")]


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV file with a header line, keys stripped of surrounding spaces.

    Quoted fields may hold commas and newlines; fields beyond the header are ignored.
    """
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    return [{k.strip(): (v or "") for k, v in row.items() if k is not None} for row in reader]


def layout_error(dataset: str, path: Path, expected: str) -> UserError:
    """The one-line error for a path that does not hold the expected layout."""
    problem = "is not in the expected layout" if path.exists() else "does not exist"
    return UserError(f"{dataset}: {path} {problem}; expected {expected}")


def require_dir(dataset: str, path: Path, expected: str) -> Path:
    """``path`` if it is a directory, else a :class:`UserError` naming the expected layout."""
    if not path.is_dir():
        raise layout_error(dataset, path, expected)
    return path


_SPLIT_NAMES = {
    "train": Split.TRAIN, "valid": Split.VALID, "dev": Split.VALID, "validation": Split.VALID,
    "val": Split.VALID, "test": Split.TEST,
}


def parse_split(name: str | None, where: str) -> Split | None:
    """A corpus's split name ("train", "dev", "valid", "test", ...) as a :class:`Split`."""
    if name is None or name == "":
        return None
    try:
        return _SPLIT_NAMES[name.strip().lower()]
    except KeyError:
        raise UserError(
            f"{where}: unknown split {name!r}; use one of train, valid (or dev), test"
        ) from None


def read_jsonl(path: Path, dataset: str) -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSON-lines file."""
    rows = []
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{dataset}: {path}:{number} is not valid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise UserError(f"{dataset}: {path}:{number} is not a JSON object")
        rows.append((number, row))
    return rows


def optional(row: Mapping[str, object], key: str, where: str, kind: type = str) -> Any:
    """``kind(row[key])``; ``None`` when absent or empty, a :class:`UserError` when malformed."""
    value = row.get(key)
    if value is None or value == "":
        return None
    try:
        return kind(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise UserError(f"{where}: field {key!r} is not {kind.__name__}: {value!r}") from None


def required(row: Mapping[str, object], key: str, where: str, kind: type = str) -> Any:
    """``kind(row[key])``, or a :class:`UserError` naming the missing or malformed field."""
    value = optional(row, key, where, kind)
    if value is None:
        raise UserError(f"{where}: missing field {key!r}")
    return value
