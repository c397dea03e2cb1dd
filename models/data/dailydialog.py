"""DailyDialog: dyadic everyday dialogues with a per-turn emotion.

Two layouts are read:

* declare-lab/dialogue-understanding: ``dailydialog_{train,valid,test}_utterances.tsv`` (one
  dialogue a line: id, then one turn per tab-separated field), ``*_emotion.tsv`` and
  ``*_speakers.tsv`` in the same shape, and ``dailydialog_emotion.mapping`` (name, tab, code).
  A split whose utterances file is absent (train, in that release) is skipped.
* the original ijcnlp_dailydialog: ``{train,validation,test}/dialogues_<split>.txt`` (turns
  ended by ``__eou__``) with ``dialogues_emotion_<split>.txt``, or the unsplit
  ``dialogues_text.txt`` + ``dialogues_emotion.txt``.

Speakers alternate within a dialogue and are not the same people across dialogues, so a speaker
id is ``<dialogue>:<0|1>``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from models.data.sample import Sample, Split, layout_error, read_lines
from models.labels import canonical
from models.errors import UserError

log = logging.getLogger(__name__)

TABLE = "dailydialog"
LAYOUT = (
    "dailydialog_{valid,test}_utterances.tsv + _emotion.tsv + dailydialog_emotion.mapping, "
    "or ijcnlp_dailydialog's dialogues_text.txt + dialogues_emotion.txt"
)
MAPPING_FILE = "dailydialog_emotion.mapping"
_TSV_SPLITS = {"train": Split.TRAIN, "valid": Split.VALID, "test": Split.TEST}
_IJCNLP_SPLITS = {"train": Split.TRAIN, "validation": Split.VALID, "test": Split.TEST}
# ijcnlp_dailydialog's emotion codes (readme.txt of the release).
_IJCNLP_EMOTIONS = (
    "no_emotion", "anger", "disgust", "fear", "happiness", "sadness", "surprise",
)
_EOU = "__eou__"


def load_dailydialog(path: Path) -> list[Sample]:
    """Read whichever DailyDialog layout ``path`` holds."""
    if (path / MAPPING_FILE).is_file():
        return _load_tsv(path)
    if any((path / name).is_dir() for name in _IJCNLP_SPLITS) or (
        path / "dialogues_text.txt"
    ).is_file():
        return _load_ijcnlp(path)
    raise layout_error("dailydialog", path, LAYOUT)


def _load_tsv(path: Path) -> list[Sample]:
    """The declare-lab layout: parallel tab-separated files per split."""
    codes = {}
    for line in read_lines(path / MAPPING_FILE):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2:
            raise UserError(f"dailydialog: {path / MAPPING_FILE}: expected 'name<TAB>code' lines")
        codes[fields[1]] = fields[0]
    samples: list[Sample] = []
    for name, split in _TSV_SPLITS.items():
        stem = path / f"dailydialog_{name}"
        utterances = Path(f"{stem}_utterances.tsv")
        if not utterances.is_file():
            log.debug("dailydialog: no %s, split %s skipped", utterances, name)
            continue
        texts = _tsv_rows(utterances)
        emotions = _tsv_rows(Path(f"{stem}_emotion.tsv"))
        speakers_file = Path(f"{stem}_speakers.tsv")
        speakers = _tsv_rows(speakers_file) if speakers_file.is_file() else {}
        for dialogue, turns in texts.items():
            raw = [codes.get(code, code) for code in emotions.get(dialogue, [])]
            samples += _dialogue_samples(
                dialogue, turns, raw, speakers.get(dialogue), split, f"{utterances}"
            )
    if not samples:
        raise layout_error("dailydialog", path, LAYOUT)
    return samples


def _tsv_rows(file: Path) -> dict[str, list[str]]:
    """Dialogue id -> its tab-separated fields, from a declare-lab file."""
    if not file.is_file():
        raise layout_error("dailydialog", file, LAYOUT)
    rows = {}
    for line in read_lines(file):
        if line.strip():
            dialogue, *fields = line.split("\t")
            rows[dialogue] = fields
    return rows


def _load_ijcnlp(path: Path) -> list[Sample]:
    """The original release, split into folders or as one unsplit pair of files."""
    parts = [
        (split, path / name / f"dialogues_{name}.txt",
         path / name / f"dialogues_emotion_{name}.txt")
        for name, split in _IJCNLP_SPLITS.items() if (path / name).is_dir()
    ] or [(None, path / "dialogues_text.txt", path / "dialogues_emotion.txt")]
    samples: list[Sample] = []
    for split, text_file, emotion_file in parts:
        if not (text_file.is_file() and emotion_file.is_file()):
            raise layout_error("dailydialog", text_file.parent, LAYOUT)
        prefix = split.value if split else "all"
        emotion_lines = read_lines(emotion_file)
        for index, line in enumerate(read_lines(text_file)):
            if not line.strip():
                continue
            turns = [t.strip() for t in line.split(_EOU)]
            if not turns[-1]:
                turns.pop()  # the text after the last "__eou__"
            codes = emotion_lines[index].split() if index < len(emotion_lines) else []
            raw = [_IJCNLP_EMOTIONS[int(c)] if c.isdigit() and int(c) < 7 else c for c in codes]
            samples += _dialogue_samples(
                f"{prefix}_{index}", turns, raw, None, split, f"{text_file}:{index + 1}"
            )
    return samples


def _dialogue_samples(
    dialogue: str,
    texts: list[str],
    raw_labels: list[str],
    speakers: list[str] | None,
    split: Split | None,
    where: str,
) -> list[Sample]:
    """Samples for the turns of one dialogue; speakers alternate 0/1 when not given."""
    if len(raw_labels) != len(texts) or (speakers is not None and len(speakers) != len(texts)):
        raise UserError(
            f"dailydialog: {where}: dialogue {dialogue} has {len(texts)} turns but "
            f"{len(raw_labels)} emotion labels"
            + (f" and {len(speakers)} speakers" if speakers is not None else "")
        )
    return [
        Sample(
            id=f"{dialogue}:{turn}",
            dataset="dailydialog",
            raw_label=raw or None,
            label=canonical(TABLE, raw) if raw else None,
            speaker=f"{dialogue}:{speakers[turn] if speakers is not None else turn % 2}",
            dialogue=dialogue,
            turn=turn,
            text=text,
            split=split,
        )
        for turn, (text, raw) in enumerate(zip(texts, raw_labels))
    ]
