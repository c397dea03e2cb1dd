"""Inference: a trained checkpoint as a network, and the small interface the runtime calls.

``EmotionPredictor.predict(context)`` takes the rolling dialogue context (oldest first, the
utterance to score last) and returns a probability per label.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .audio_norm import NormPrior, SpeakerNormaliser
from .checkpoint import Checkpoint, load_checkpoint
from .checks import check_torch_device
from .errors import UserError
from .networks import FusionConfig, FusionNetwork, build_network
from .windows import MISSING, Window, collate


def pick_device(device: str = "auto", name: str = "device") -> torch.device:
    """``auto`` -> CUDA when present, else CPU; otherwise "cpu", "cuda" or "cuda:N" as given.

    name: how the user set it (e.g. ``--model-device``), for the UserError when the value is not
    a device or CUDA is asked for where this torch cannot use it.
    """
    check_torch_device(device, name)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"{name} {device}: this torch build has no CUDA ({torch.__version__}); use cpu or auto")
        index = torch.device(device).index or 0
        if index >= torch.cuda.device_count():
            raise UserError(f"{name} {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    return torch.device(device)


def load_network(checkpoint: Checkpoint, device: torch.device) -> FusionNetwork:
    """The checkpoint's network with its weights, in eval mode on ``device``.

    UserError when the stored network config is not valid, or the labels, the audio
    standardisation or the weights do not fit the network it describes.
    """
    try:
        network = build_network(FusionConfig.from_dict(checkpoint.network))
    except (TypeError, ValueError, UserError) as err:
        raise UserError(f"the checkpoint's network config is not valid: {err}") from None
    cfg = network.config
    labels = checkpoint.label_set.labels
    if len(labels) != cfg.n_classes:
        raise UserError(f"the checkpoint has {len(labels)} labels for a network of {cfg.n_classes} classes")
    if checkpoint.audio_mean.shape != (cfg.audio_dim,):
        raise UserError(f"the checkpoint's audio standardisation has {checkpoint.audio_mean.shape[0]} values "
                        f"for a network reading {cfg.audio_dim}")
    _check_weights(network.state_dict(), checkpoint.state_dict)
    network.load_state_dict(checkpoint.state_dict)
    return network.to(device).eval()


def _check_weights(expected: dict[str, torch.Tensor], stored: dict[str, torch.Tensor]) -> None:
    """UserError naming the first missing, unexpected or wrongly shaped weight, if any."""
    problems = [f"{name} is missing" for name in expected if name not in stored]
    problems += [f"{name} is not part of the network" for name in stored if name not in expected]
    problems += [
        f"{name} is {list(stored[name].shape)}, the network needs {list(tensor.shape)}"
        for name, tensor in expected.items() if name in stored and stored[name].shape != tensor.shape
    ]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UserError(f"the checkpoint's weights do not fit its network: {problems[0]}{more}")


@torch.no_grad()
def predict_windows(network: FusionNetwork, windows: Sequence[Window], text_table: torch.Tensor,
                    audio_table: torch.Tensor, device: torch.device, batch_size: int = 256) -> np.ndarray:
    """Class probabilities for windows: float32 [N, C]. Tables as in :func:`collate`."""
    network.eval()
    out = []
    for i in range(0, len(windows), batch_size):
        batch, _, _ = collate(windows[i : i + batch_size], text_table, audio_table)
        out.append(network(batch.to(device)).logits.softmax(-1).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, network.config.n_classes), np.float32)


@dataclass(frozen=True)
class ContextItem:
    """One utterance of the rolling context.

    audio: float32 [audio_dim] acoustic vector from the checkpoint's audio frontend (not yet
    standardised; normalised per speaker by :class:`SessionAudio` where the checkpoint wants it), or None; text: float32 [text_dim] sentence embedding, or None; speaker: any
    hashable speaker tag ("A"/"B").
    """

    audio: np.ndarray | None
    text: np.ndarray | None
    speaker: str


class SessionAudio:
    """The acoustic vectors of one session (a dialogue, a stream) as the checkpoint's audio branch
    reads them: normalised per speaker with the running statistics of that speaker's utterances
    so far (:class:`models.audio_norm.SpeakerNormaliser`) when it was trained so, else unchanged.
    One per session: speakers of different sessions never share statistics."""

    def __init__(self, prior: NormPrior | None) -> None:
        self.normaliser = SpeakerNormaliser(prior) if prior is not None else None

    def item(self, item: ContextItem, update: bool = True) -> ContextItem:
        """``item`` with its audio normalised by its speaker's statistics; ``update`` adds the
        utterance to them (False for a provisional result of an utterance still in progress)."""
        if self.normaliser is None or item.audio is None:
            return item
        return replace(item, audio=self.normaliser.normalise(item.speaker, item.audio, update))


class EmotionPredictor:
    """A loaded checkpoint that scores the last utterance of a dialogue context."""

    def __init__(self, checkpoint: Path | None = None, device: str = "auto") -> None:
        self.checkpoint, self.sha256 = load_checkpoint(checkpoint)
        self.device = pick_device(device, "model.device (--model-device)")
        self.network = load_network(self.checkpoint, self.device)
        self.labels = self.checkpoint.label_set.labels
        self.max_context = self.network.config.max_context

    @property
    def frontends(self) -> dict[str, dict[str, str]]:
        """Identities of the feature extractors the checkpoint was trained with."""
        return self.checkpoint.frontends

    def session_audio(self) -> SessionAudio:
        """A fresh per-session audio state: pass every new utterance through its ``item`` before
        it joins the context given to :meth:`predict`."""
        return SessionAudio(self.checkpoint.norm_prior())

    def identity(self) -> dict[str, str]:
        """What goes into every event so it can be reproduced."""
        return {
            "name": self.checkpoint.name,
            "network": self.network.config.network.value,
            "sha256": self.sha256,
            "labels": ",".join(self.labels),
        }

    def predict(self, context: Sequence[ContextItem]) -> dict[str, float]:
        """Probabilities for the last item of ``context`` (older items beyond max_context ignored)."""
        items = list(context)[-self.max_context :]
        texts = [i.text for i in items if i.text is not None]
        audios = [i.audio for i in items if i.audio is not None]
        text_rows, audio_rows, t, a = [], [], 0, 0
        for item in items:
            text_rows.append(t if item.text is not None else MISSING)
            audio_rows.append(a if item.audio is not None else MISSING)
            t += item.text is not None
            a += item.audio is not None
        cfg = self.network.config
        text_table = torch.from_numpy(np.stack(texts)).float() if texts else torch.zeros(0, cfg.text_dim)
        audio_table = (
            self.checkpoint.standardise_audio(torch.from_numpy(np.stack(audios)).float())
            if audios else torch.zeros(0, cfg.audio_dim)
        )
        window = Window(tuple(text_rows), tuple(audio_rows), tuple(i.speaker for i in items), 0, (1.0,))
        probs = predict_windows(self.network, [window], text_table, audio_table, self.device)[0]
        return {label: float(p) for label, p in zip(self.labels, probs)}
