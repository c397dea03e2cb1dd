"""Identities of feature frontends, so a checkpoint can tell which frontend made its features."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path


def sha256_of(path: Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@lru_cache(maxsize=16)
def _cached_sha256(path: Path, mtime_ns: int, size: int) -> str:
    return sha256_of(path)


def file_sha256(path: Path) -> str:
    """:func:`sha256_of`, computed once per process for an unchanged file (model weights are
    hashed at every load to identify the frontend)."""
    stat = Path(path).stat()
    return _cached_sha256(Path(path), stat.st_mtime_ns, stat.st_size)


def same_frontend(expected: dict[str, str], actual: dict[str, str]) -> bool:
    """Do two frontend identities give interchangeable features (same weights, same window, and
    the same ``layers``: absent for a one-layer encoder)?"""
    return all(expected.get(k) == actual.get(k) for k in ("sha256", "window", "layers"))
