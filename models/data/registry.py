"""Every dataset layout by name, and the one entry point that loads any of them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

from models.data.acted import load_crema_d, load_emodb, load_folders, load_ravdess, load_turevdb
from models.data.dailydialog import load_dailydialog
from models.data.emocontext import load_emocontext
from models.data.goemotions import load_goemotions
from models.data.iemocap import load_iemocap, load_iemocap_text
from models.data.manifest import load_manifest
from models.data.meld import load_meld
from models.data.reccon import load_reccon
from models.data.sample import MISSING_LABEL, LoadResult, Sample, parse_split
from models.data.written import load_written
from models.errors import UserError

Loader = Callable[[Path], list[Sample]]

DATASETS: dict[str, Loader] = {
    "iemocap-text": load_iemocap_text,
    "iemocap": load_iemocap,
    "meld": load_meld,
    "dailydialog": load_dailydialog,
    "goemotions": load_goemotions,
    "emocontext": load_emocontext,
    "reccon": load_reccon,
    "crema-d": load_crema_d,
    "ravdess": load_ravdess,
    "emodb": load_emodb,
    "turevdb": load_turevdb,
    "folders": load_folders,
    "manifest": load_manifest,
    "written": load_written,
}


def load_dataset(
    name: str, path: Path, split: str | None = None, keep_unlabelled: bool = False,
) -> LoadResult:
    """Load dataset ``name`` from ``path``, keeping only labelled samples of ``split``.

    ``split`` is "train", "valid" (or "dev") or "test" as the corpus defines it; ``None``
    keeps all. Samples with a missing or unmappable label are counted per raw label in
    ``LoadResult.excluded`` and dropped, unless ``keep_unlabelled`` keeps them (with
    ``label=None``) as dialogue context for their neighbours.

    Raises :class:`UserError` for an unknown name, a path without the expected layout, a split
    the corpus does not define, or duplicate sample ids.
    """
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    wanted = parse_split(split, f"{name}: --split")
    samples = DATASETS[name](Path(path).expanduser())
    _check_unique_ids(name, samples)
    if wanted is not None:
        present = {s.split for s in samples}
        if wanted not in present:
            have = ", ".join(sorted(s.value for s in present if s is not None)) or "none"
            raise UserError(f"{name}: {path} has no {wanted.value!r} split (splits: {have})")
        samples = [s for s in samples if s.split == wanted]
    kept = samples if keep_unlabelled else [s for s in samples if s.label is not None]
    excluded = Counter(s.raw_label or MISSING_LABEL for s in samples if s.label is None)
    return LoadResult(samples=kept, excluded=dict(excluded))


def _check_unique_ids(name: str, samples: list[Sample]) -> None:
    seen: set[str] = set()
    for sample in samples:
        if sample.id in seen:
            raise UserError(f"{name}: sample id {sample.id!r} occurs more than once")
        seen.add(sample.id)
