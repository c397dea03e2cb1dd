"""GoEmotions (Reddit comments), Ekman grouping as released by monologg/GoEmotions-pytorch.

A folder (``ekman/`` or its parent) with ``labels.txt`` (one label name a line, its line number
the id) and ``{train,dev,test}.tsv`` rows ``text<TAB>label ids (comma-separated)<TAB>comment id``.
Rows with more than one label are kept out (counted as excluded under their joined names).
Comments carry no author or thread: every sample has speaker ``"unknown"`` and no dialogue.
"""

from __future__ import annotations

from pathlib import Path

from models.data.sample import Sample, Split, layout_error, read_lines
from models.labels import canonical
from models.errors import UserError

TABLE = "goemotions"
LAYOUT = "GoEmotions ekman/ with labels.txt and train.tsv, dev.tsv and/or test.tsv"
SPLITS = {"train": Split.TRAIN, "dev": Split.VALID, "test": Split.TEST}
UNKNOWN_SPEAKER = "unknown"


def load_goemotions(path: Path) -> list[Sample]:
    """Read every split file present."""
    root = path / "ekman" if (path / "ekman" / "labels.txt").is_file() else path
    if not (root / "labels.txt").is_file():
        raise layout_error("goemotions", path, LAYOUT)
    names = [line.strip() for line in read_lines(root / "labels.txt") if line.strip()]
    samples = []
    for split_name, split in SPLITS.items():
        file = root / f"{split_name}.tsv"
        if not file.is_file():
            continue
        for number, line in enumerate(read_lines(file), start=1):
            if not line:
                continue
            row = line.split("\t")
            if len(row) != 3:
                raise UserError(f"goemotions: {file}:{number}: expected 'text<TAB>ids<TAB>id'")
            text, ids, comment = row
            try:
                raw = ",".join(names[int(i)] for i in ids.split(","))
            except (ValueError, IndexError):
                raise UserError(f"goemotions: {file}:{number}: bad label ids {ids!r}") from None
            samples.append(Sample(
                id=f"{split_name}:{comment}", dataset="goemotions", raw_label=raw,
                label=canonical(TABLE, raw), speaker=UNKNOWN_SPEAKER, text=text, split=split,
            ))
    if not samples:
        raise layout_error("goemotions", path, LAYOUT)
    return samples
