"""``emostream evaluate``: a checkpoint on a labelled dataset, scored as in the papers' tables."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from streamer.errors import UserError

from .checkpoint import load_checkpoint
from .data import load_dataset
from .data.sample import parse_split
from .frontends.identity import same_frontend
from .metrics import Scores, score
from .predictor import load_network, pick_device, predict_windows
from .windows import build_windows

log = logging.getLogger(__name__)

MODALITIES = ("audio", "text", "both")


def check_frontend(expected: dict[str, str], actual: dict[str, str], kind: str) -> None:
    """Refuse features from another frontend than the one the checkpoint was trained on."""
    if not same_frontend(expected, actual):
        raise UserError(
            f"the checkpoint's {kind} features came from {expected.get('name')} "
            f"({expected.get('sha256', '?')[:12]}), but {actual.get('name')} "
            f"({actual.get('sha256', '?')[:12]}) is loaded: use the matching frontend"
        )


def evaluate(
    dataset: str,
    data: Path,
    split: str | None = "test",
    checkpoint_path: Path | None = None,
    modalities: str = "both",
    max_context: int | None = None,
    device: str = "auto",
    asr_model: str | None = None,
) -> Scores:
    """Score ``checkpoint_path`` (default: shipped) on ``dataset`` at ``data``.

    split: the corpus split to use; ignored (with a log line) for corpora without splits.
    modalities: which inputs the network is given ("audio", "text" or "both"), where the data has
    them. max_context: cut the dialogue context to this many utterances (1 = no context).
    """
    if modalities not in MODALITIES:
        raise UserError(f"--modalities must be one of {', '.join(MODALITIES)}")
    checkpoint, _ = load_checkpoint(checkpoint_path)
    dev = pick_device(device)
    network = load_network(checkpoint, dev)
    loaded = load_dataset(dataset, data, keep_unlabelled=True)
    samples = loaded.samples
    wanted = parse_split(split, "--split") if split else None
    if wanted is not None and any(s.split is not None for s in samples):
        samples = [s for s in samples if s.split == wanted]
    elif wanted is not None:
        log.info("%s has no splits: evaluating all %d samples", dataset, len(samples))
    if not samples:
        raise UserError(f"{dataset}: no samples in split {split!r} at {data}")

    text_rows = audio_rows = None
    text_table = torch.zeros(0, network.config.text_dim)
    audio_table = torch.zeros(0, network.config.audio_dim)
    if modalities in ("text", "both") and any(s.text for s in samples):
        from .features import text_matrix
        from .frontends.text import TextEncoder

        encoder = TextEncoder()
        check_frontend(checkpoint.frontends.get("text", {}), encoder.identity(), "text")
        text_table = torch.from_numpy(text_matrix(samples, encoder))
        text_rows = [i if s.text else -1 for i, s in enumerate(samples)]
    if modalities in ("audio", "both") and any(s.audio_path for s in samples):
        from .features import audio_matrix
        from .frontends.whisper import WhisperEncoder

        encoder = WhisperEncoder(asr_model, compute_type="int8")
        check_frontend(checkpoint.frontends.get("audio", {}), encoder.identity(), "audio")
        with_audio = [s for s in samples if s.audio_path]
        rows = iter(range(len(with_audio)))
        audio_rows = [next(rows) if s.audio_path else -1 for s in samples]
        audio = torch.from_numpy(audio_matrix(with_audio, encoder))
        audio_table = (audio - checkpoint.audio_mean) / checkpoint.audio_std
    if text_rows is None and audio_rows is None:
        raise UserError(f"{dataset}: the data has none of the requested modalities ({modalities})")
    context = min(max_context or network.config.max_context, network.config.max_context)
    windows, excluded = build_windows(samples, checkpoint.label_set, context, text_rows, audio_rows)
    if not windows:
        raise UserError(f"{dataset}: no sample has a label in {checkpoint.label_set.labels}")
    probs = predict_windows(network, windows, text_table, audio_table, dev)
    y_true = np.array([w.label for w in windows])
    return score(y_true, probs.argmax(1), checkpoint.label_set.labels,
                 n_excluded=excluded)
