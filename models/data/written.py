"""Written everyday dialogues: the hand-written two-person dev set in ``benchmarks/data``.

A JSON-lines manifest, one turn a line: ``dialogue``, ``turn`` (0-based), ``speaker`` (A/B),
``text`` and ``label`` (neutral, happy, sad or angry). ``benchmarks/data/README.md`` says who
wrote it and how. It is a dev set (tuning on it is allowed): every turn is in the ``valid`` split,
so a training config can select epochs on it. Speaker ids are made unique per dialogue
("w01-work:A"), as IEMOCAP's are per session.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from models.data.manifest import read_manifest_jsonl
from models.data.sample import Sample, Split, layout_error

NAME = "written"
LAYOUT = "a .jsonl file of {dialogue, turn, speaker, text, label} objects, one per turn"


def load_written(path: Path) -> list[Sample]:
    """Read the JSON-lines file; every line needs a dialogue, a turn and a text."""
    if not path.is_file():
        raise layout_error(NAME, path, LAYOUT)
    samples = read_manifest_jsonl(path, NAME)
    if not samples or any(s.dialogue is None or s.turn is None or not s.text for s in samples):
        raise layout_error(NAME, path, LAYOUT)
    return [replace(s, id=f"{s.dialogue}:{s.turn}", speaker=f"{s.dialogue}:{s.speaker}", split=Split.VALID)
            for s in samples]
