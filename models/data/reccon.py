"""RECCON (declare-lab): DailyDialog conversations re-annotated with per-turn emotions.

``original_annotation/dailydialog_{train,valid,test}.json`` (or that folder's parent's parent):
``{dialogue id: [[{"turn", "speaker", "utterance", "emotion", ...}, ...]]}``. Dialogue ids keep
DailyDialog's (``tr_``/``va_``/``te_`` + number), so overlap with a DailyDialog split can be
checked; ``iemocap_test.json`` (IEMOCAP Session 5 dialogues) is not read. Emotion spellings vary
("happiness", "happines", "happy"); the DailyDialog table maps them all.
"""

from __future__ import annotations

import json
from pathlib import Path

from models.data.sample import Sample, Split, layout_error, read_text
from models.errors import UserError
from models.labels import canonical

TABLE = "dailydialog"
LAYOUT = "RECCON data/original_annotation/dailydialog_{train,valid,test}.json"
SPLITS = {"train": Split.TRAIN, "valid": Split.VALID, "test": Split.TEST}


def load_reccon(path: Path) -> list[Sample]:
    """Read the DailyDialog part of RECCON, every split present."""
    root = next((p for p in (path, path / "original_annotation", path / "data" / "original_annotation")
                 if (p / "dailydialog_train.json").is_file() or (p / "dailydialog_test.json").is_file()), None)
    if root is None:
        raise layout_error("reccon", path, LAYOUT)
    samples: list[Sample] = []
    for name, split in SPLITS.items():
        file = root / f"dailydialog_{name}.json"
        if not file.is_file():
            continue
        try:
            data = json.loads(read_text(file))
        except json.JSONDecodeError as err:
            raise UserError(f"reccon: {file} is not valid JSON ({err.msg})") from None
        for dialogue, nested in data.items():
            turns = nested[0] if nested and isinstance(nested[0], list) else nested
            for index, turn in enumerate(turns):
                try:
                    raw, text, speaker = turn["emotion"], turn["utterance"], turn["speaker"]
                except (KeyError, TypeError):
                    raise UserError(f"reccon: {file}: dialogue {dialogue} turn {index + 1} lacks emotion/utterance/speaker") from None
                samples.append(Sample(
                    id=f"{name}:{dialogue}:{index}", dataset="reccon", raw_label=raw,
                    label=canonical(TABLE, raw), speaker=f"{name}:{dialogue}:{speaker}",
                    dialogue=f"{name}:{dialogue}", turn=index, text=text, split=split,
                ))
    if not samples:
        raise layout_error("reccon", path, LAYOUT)
    return samples
