"""Where model files shipped by registry packages are assembled, and how split files are joined.

Some models come split over several packages (Whisper base in two, all-mpnet-base-v2 in five);
they are joined once into the emostream cache and loaded from there. Nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence


def cache_root() -> Path:
    """``$EMOSTREAM_CACHE``, or ``~/.cache/emostream``."""
    return Path(os.environ.get("EMOSTREAM_CACHE", Path.home() / ".cache" / "emostream"))


def join_files(pieces: Sequence[Path], out: Path) -> None:
    """Write the pieces one after another into ``out``, in 4 MiB blocks."""
    with open(out, "wb") as sink:
        for piece in pieces:
            with open(piece, "rb") as f:
                while block := f.read(1 << 22):
                    sink.write(block)
