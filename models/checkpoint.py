"""Self-describing checkpoints: weights + network config + labels + frontends + version.

Saved with ``torch.save`` as a dict of tensors and plain values, loaded with
``torch.load(weights_only=True)`` (no pickle of arbitrary objects). A ``<name>.sha256`` file beside
the checkpoint holds its digest; loading checks it, so a truncated or swapped file is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.errors import UserError

from .audio_norm import NormPrior, normalise_sessions
from .checks import check_checkpoint_file
from .frontends.identity import sha256_of
from .labels import LabelSet
from .networks.config import FusionConfig

FORMAT = "emostream-checkpoint"
FORMAT_VERSION = 1
DEFAULT_CHECKPOINT = Path(__file__).parent / "checkpoints" / "default.pt"
# What a payload must hold, and of which type (checked at load, before anything is built).
PAYLOAD_TYPES: dict[str, type] = {
    "network": dict, "labels": list, "label_set": str, "label_merge": dict, "frontends": dict,
    "training": dict, "audio_mean": torch.Tensor, "audio_std": torch.Tensor, "state_dict": dict, "version": str,
}


@dataclass(frozen=True)
class Checkpoint:
    """Everything needed to rebuild a trained fusion network and feed it the right features.

    network: FusionConfig.to_dict(); frontends: {"audio": identity, "text": identity} of the
    feature extractors the network was trained on; audio_mean/audio_std: float32 [audio_dim]
    standardisation of the acoustic vectors; training: free-form record of how it was trained.
    speaker_norm: None when the audio branch reads raw vectors (every checkpoint before round 7);
    else {"mean": float32 [audio_dim], "std": float32 [audio_dim], "prior_clips": float}, the
    training speakers' raw statistics that per-speaker online normalisation (models.audio_norm)
    starts from, and optionally "keep_raw": True and "session_clips": float > 0 (round 11: speakers
    shrink towards the session's statistics, those towards the prior); the network then reads normalised vectors (with
    keep_raw: raw and normalised side by side), standardised by audio_mean/audio_std.
    """

    network: dict
    label_set: LabelSet
    frontends: dict[str, dict[str, str]]
    state_dict: dict[str, torch.Tensor]
    audio_mean: torch.Tensor
    audio_std: torch.Tensor
    training: dict = field(default_factory=dict)
    version: str = "0.1.0"
    speaker_norm: dict | None = None

    @property
    def name(self) -> str:
        return self.training.get("name", "custom")

    def with_network(self, **changes: Any) -> "Checkpoint":
        """The same checkpoint with some network settings changed (inference-only ones, such as
        ``prior_correction`` or ``gate_threshold``; checked by :class:`FusionConfig`)."""
        return replace(self, network=replace(FusionConfig.from_dict(self.network), **changes).to_dict())

    def standardise_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """Acoustic vectors [N, audio_dim] scaled as in training (zero mean, unit variance); with
        ``speaker_norm`` they must have been normalised per speaker first (:meth:`prepare_audio`)."""
        return (audio - self.audio_mean) / self.audio_std

    def norm_prior(self) -> NormPrior | None:
        """The per-speaker normalisation's prior, or None when the audio branch reads raw vectors."""
        if self.speaker_norm is None:
            return None
        return NormPrior(self.speaker_norm["mean"].double().numpy(), self.speaker_norm["std"].double().numpy(),
                         float(self.speaker_norm["prior_clips"]), bool(self.speaker_norm.get("keep_raw", False)),
                         float(self.speaker_norm.get("session_clips", 0.0)))

    def prepare_audio(self, raw: np.ndarray, sessions: list[str], ordered: bool = False, seed: int = 0) -> torch.Tensor:
        """A clip set's raw acoustic vectors [N, audio_dim] as the network reads them: with
        ``speaker_norm``, normalised per session key (:func:`models.audio_norm.sample_sessions`:
        a speaker, or a dialogue's speaker) in a seeded random order or, with ``ordered``, in the
        given order; then standardised. Returns float32 [N, audio_dim]."""
        prior = self.norm_prior()
        x = normalise_sessions(raw, sessions, prior, seed, ordered) if prior is not None and len(raw) else raw
        return self.standardise_audio(torch.from_numpy(np.asarray(x, dtype=np.float32)))

    def save(self, path: Path) -> str:
        """Write the checkpoint and its ``.sha256`` sidecar; returns the digest."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "version": self.version,
            "network": self.network,
            "labels": list(self.label_set.labels),
            "label_set": self.label_set.name,
            "label_merge": dict(self.label_set.merge),
            "frontends": self.frontends,
            "training": self.training,
            "audio_mean": self.audio_mean.float().contiguous(),
            "audio_std": self.audio_std.float().contiguous(),
            "state_dict": {k: v.detach().cpu().contiguous() for k, v in self.state_dict.items()},
        }
        if self.speaker_norm is not None:
            payload["speaker_norm"] = {"mean": self.speaker_norm["mean"].float().contiguous(),
                                       "std": self.speaker_norm["std"].float().contiguous(),
                                       "prior_clips": float(self.speaker_norm["prior_clips"]),
                                       "keep_raw": bool(self.speaker_norm.get("keep_raw", False))}
            if self.speaker_norm.get("session_clips"):  # round 11; a file without it reads as 0
                payload["speaker_norm"]["session_clips"] = float(self.speaker_norm["session_clips"])
        torch.save(payload, path)
        digest = sha256_of(path)
        path.with_suffix(path.suffix + ".sha256").write_text(f"{digest}  {path.name}\n")
        return digest


def load_checkpoint(path: Path | None = None) -> tuple[Checkpoint, str]:
    """Load a checkpoint (default: the shipped one); returns it with its SHA-256.

    Raises UserError for a missing or unreadable file, a digest that does not match the
    ``.sha256`` sidecar, a file that is not an emostream checkpoint, or a damaged one (see
    :func:`check_payload`). That the weights fit the network is checked when it is built
    (``models.predictor.load_network``).
    """
    path = Path(path) if path else DEFAULT_CHECKPOINT
    digest = check_checkpoint_file(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a bad file; all mean "not a checkpoint"
        raise UserError(f"{path} is not a readable checkpoint (torch.load: {type(err).__name__})") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path} is not an emostream checkpoint")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise UserError(f"{path} needs a newer emostream (format {payload['format_version']})")
    check_payload(payload, path)
    checkpoint = Checkpoint(
        network=payload["network"],
        label_set=LabelSet(payload["label_set"], tuple(payload["labels"]), dict(payload["label_merge"])),
        frontends=payload["frontends"],
        state_dict=payload["state_dict"],
        audio_mean=payload["audio_mean"],
        audio_std=payload["audio_std"],
        training=payload["training"],
        version=payload["version"],
        speaker_norm=payload.get("speaker_norm"),
    )
    return checkpoint, digest


def check_payload(payload: dict, path: Path) -> None:
    """UserError unless the payload has every key with its type, a non-empty list of distinct
    string labels, finite weights, and a finite, positive audio standardisation of one shape."""
    for key, kind in PAYLOAD_TYPES.items():
        if key not in payload:
            raise UserError(f"checkpoint {path} is damaged: it has no {key!r}")
        if not isinstance(payload[key], kind):
            raise UserError(f"checkpoint {path} is damaged: {key!r} is not a {kind.__name__}")
    labels = payload["labels"]
    if not labels or not all(isinstance(label, str) and label for label in labels) or len(set(labels)) < len(labels):
        raise UserError(f"checkpoint {path} is damaged: its labels must be distinct names, got {labels!r}")
    for name, tensor in payload["state_dict"].items():
        if not isinstance(tensor, torch.Tensor):
            raise UserError(f"checkpoint {path} is damaged: weight {name!r} is not a tensor")
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise UserError(f"checkpoint {path} is damaged: weight {name!r} holds NaN or infinite values")
    mean, std = payload["audio_mean"], payload["audio_std"]
    if mean.ndim != 1 or mean.shape != std.shape:
        raise UserError(f"checkpoint {path} is damaged: audio_mean {list(mean.shape)} and audio_std "
                        f"{list(std.shape)} must be vectors of one length")
    if not (torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()):
        raise UserError(f"checkpoint {path} is damaged: audio_std must be finite and > 0, audio_mean finite")
    check_speaker_norm(payload.get("speaker_norm"), mean.shape, path)


def check_speaker_norm(norm: object, shape: torch.Size, path: Path) -> None:
    """UserError unless ``norm`` is absent (None) or {"mean", "std": finite vectors of ``shape``
    (half of it with "keep_raw": the network reads raw and normalised side by side), std >= 0;
    "prior_clips": a number > 0; "session_clips", where present, a number >= 0}."""
    if norm is None:
        return
    if isinstance(norm, dict) and norm.get("keep_raw") is True:
        shape = torch.Size([shape[0] // 2])
    if not isinstance(norm, dict) or not all(isinstance(norm.get(k), torch.Tensor) for k in ("mean", "std")):
        raise UserError(f"checkpoint {path} is damaged: speaker_norm must hold tensors 'mean' and 'std'")
    mean, std, clips = norm["mean"], norm["std"], norm.get("prior_clips")
    if mean.shape != shape or std.shape != shape:
        raise UserError(f"checkpoint {path} is damaged: speaker_norm mean {list(mean.shape)} and std "
                        f"{list(std.shape)} must match the audio vectors {list(shape)}")
    if not (torch.isfinite(mean).all() and torch.isfinite(std).all() and (std >= 0).all()):
        raise UserError(f"checkpoint {path} is damaged: speaker_norm must be finite, its std >= 0")
    if isinstance(clips, bool) or not isinstance(clips, (int, float)) or not clips > 0:
        raise UserError(f"checkpoint {path} is damaged: speaker_norm prior_clips must be a number > 0")
    session = norm.get("session_clips", 0.0)
    if isinstance(session, bool) or not isinstance(session, (int, float)) or not session >= 0:
        raise UserError(f"checkpoint {path} is damaged: speaker_norm session_clips must be a number >= 0")
