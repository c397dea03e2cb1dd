"""Identities of feature frontends, so a checkpoint can tell which frontend made its features."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=16)
def file_sha256(path: Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB blocks (cached per path for the process)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def same_frontend(expected: dict[str, str], actual: dict[str, str]) -> bool:
    """Do two frontend identities give interchangeable features (same weights, same window)?"""
    return expected.get("sha256") == actual.get("sha256") and expected.get("window") == actual.get("window")
