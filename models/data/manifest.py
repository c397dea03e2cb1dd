"""User manifests: a Kaldi/Foal-Net style ``.scp`` list or a JSON-lines file.

* ``.scp`` (any suffix but ``.jsonl``): one ``id path label`` line per utterance, whitespace
  separated; ``#`` starts a comment line.
* ``.jsonl``: one object a line with ``label`` and at least one of ``path`` / ``text``; optional
  ``id``, ``speaker``, ``dialogue``, ``turn``, ``split``, ``start``, ``end`` (seconds within
  ``path``) and ``votes`` (label -> count or fraction; normalized here).

Relative paths are resolved against the manifest's folder. Labels are free text mapped through
the generic table (canonical names, or e.g. ``joy``, ``anger``, ``no_emotion``).
"""

from __future__ import annotations

from pathlib import Path

from models.data.sample import (
    Sample, layout_error, normalize_votes, optional, parse_split, read_jsonl, read_lines, required,
)
from models.labels import canonical
from models.errors import UserError

TABLE = "manifest"  # not in LABEL_TABLE: canonical() falls back to the generic table
LAYOUT = "a .scp file of 'id path label' lines or a .jsonl file of {path|text, label, ...} objects"
UNKNOWN_SPEAKER = "unknown"


def load_manifest(path: Path) -> list[Sample]:
    """Read a manifest file, choosing the format by its suffix."""
    if not path.is_file():
        raise layout_error("manifest", path, LAYOUT)
    samples = read_manifest_jsonl(path) if path.suffix.lower() in (".jsonl", ".json") else _load_scp(path)
    if not samples:
        raise layout_error("manifest", path, LAYOUT)
    return samples


def _load_scp(file: Path) -> list[Sample]:
    samples = []
    for number, line in enumerate(read_lines(file), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 3:
            raise UserError(f"manifest: {file}:{number}: expected 'id path label', got {line!r}")
        sample_id, audio, raw = fields
        samples.append(Sample(
            id=sample_id, dataset="manifest", raw_label=raw, label=canonical(TABLE, raw),
            speaker=UNKNOWN_SPEAKER, audio_path=_resolve(file, audio, f"manifest: {file}:{number}"),
        ))
    return samples


def read_manifest_jsonl(file: Path, dataset: str = "manifest") -> list[Sample]:
    """The samples of a ``.jsonl`` manifest, named ``dataset`` in their records and errors."""
    samples = []
    for number, row in read_jsonl(file, dataset):
        where = f"{dataset}: {file}:{number}"
        if not row.get("path") and not row.get("text"):
            raise UserError(f"{where}: needs a 'path' or a 'text' field")
        raw = optional(row, "label", where)
        votes = row.get("votes")
        if votes is not None and not isinstance(votes, dict):
            raise UserError(f"{where}: 'votes' must be an object of label -> count")
        audio = optional(row, "path", where)
        samples.append(Sample(
            id=optional(row, "id", where) or str(number),
            dataset=dataset,
            raw_label=raw,
            label=canonical(TABLE, raw) if raw else None,
            speaker=optional(row, "speaker", where) or UNKNOWN_SPEAKER,
            dialogue=optional(row, "dialogue", where),
            turn=optional(row, "turn", where, int),
            text=optional(row, "text", where),
            audio_path=_resolve(file, audio, where) if audio else None,
            start=optional(row, "start", where, float),
            end=optional(row, "end", where, float),
            split=parse_split(optional(row, "split", where), where),
            votes=normalize_votes(
                (canonical(TABLE, str(k)), required(votes, k, where, float)) for k in votes
            ) if votes else None,
        ))
    return samples


def _resolve(manifest: Path, audio: str, where: str) -> Path:
    """``audio`` as given if absolute, else relative to the manifest's folder; it must exist."""
    path = Path(audio).expanduser()
    path = path if path.is_absolute() else manifest.parent / path
    if not path.is_file():
        raise UserError(f"{where}: audio file {path} not found")
    return path
