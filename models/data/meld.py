"""MELD: multi-party dialogues from the *Friends* TV series (declare-lab/MELD).

A folder with any of ``{train,dev,test}_sent_emo.csv`` (or the ``*_sent_emo_dya.csv`` files of
MELD_Dyadic). The per-utterance clips of MELD.Raw are picked up when they sit beside the CSVs
(``train_splits/dia0_utt0.mp4``, ``dev_splits_complete/``, ``output_repeated_splits_test/``, or
``<split>/dia0_utt0.wav``).
"""

from __future__ import annotations

from pathlib import Path

from models.data.sample import Sample, Split, layout_error, read_csv_rows, required
from models.labels import canonical

TABLE = "meld"
LAYOUT = "a MELD folder with train_sent_emo.csv, dev_sent_emo.csv and/or test_sent_emo.csv"
SPLITS = {"train": Split.TRAIN, "dev": Split.VALID, "test": Split.TEST}
# Clip folders of MELD.Raw per split file name, and simpler renamings users make.
_AUDIO_DIRS = {
    "train": ("train_splits", "train"),
    "dev": ("dev_splits_complete", "dev_splits", "dev"),
    "test": ("output_repeated_splits_test", "test_splits", "test"),
}
_AUDIO_SUFFIXES = (".wav", ".mp4")  # in order of preference


def load_meld(path: Path) -> list[Sample]:
    """Read every MELD split CSV found in ``path``."""
    found = False
    samples = []
    for name, split in SPLITS.items():
        csv_file = next(
            (f for f in (path / f"{name}_sent_emo.csv", path / f"{name}_sent_emo_dya.csv")
             if f.is_file()),
            None,
        )
        if csv_file is None:
            continue
        found = True
        clips = _clip_index(path, name)
        for number, row in enumerate(read_csv_rows(csv_file), start=1):
            where = f"meld: {csv_file} row {number}"
            dia = required(row, "Dialogue_ID", where, int)
            utt = required(row, "Utterance_ID", where, int)
            raw = row.get("Emotion", "").strip() or None
            samples.append(Sample(
                id=f"{name}_dia{dia}_utt{utt}",
                dataset="meld",
                raw_label=raw,
                label=canonical(TABLE, raw) if raw else None,
                speaker=f"meld:{row.get('Speaker', '').strip()}",
                dialogue=f"{name}_dia{dia}",
                turn=utt,
                text=row.get("Utterance", "").strip(),
                audio_path=clips.get(f"dia{dia}_utt{utt}"),
                split=split,
            ))
    if not found:
        raise layout_error("meld", path, LAYOUT)
    return samples


def _clip_index(root: Path, split_name: str) -> dict[str, Path]:
    """Clip stem ("dia0_utt0") -> file, over the clip folders of one split present in ``root``."""
    index: dict[str, Path] = {}
    for folder in _AUDIO_DIRS[split_name]:
        if not (root / folder).is_dir():
            continue
        for suffix in _AUDIO_SUFFIXES:
            for clip in (root / folder).glob(f"dia*_utt*{suffix}"):
                index.setdefault(clip.stem, clip)
    return index
