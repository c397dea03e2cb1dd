"""The one config dataclass that describes a fusion network; it is stored in every checkpoint."""

from __future__ import annotations

import math

from dataclasses import asdict, dataclass, fields
from enum import Enum
from typing import Any

from models.errors import UserError


class NetworkKind(str, Enum):
    """Which mixer sits between the shared input encoding and the shared classifier."""

    MCAF = "mcaf"            # mutual correlation attentive factors (Gu et al. 2019)
    SELF_MHA = "self-mha"    # per-modality self-attention + statistical pooling
    CROSS_MHA = "cross-mha"  # audio<->text cross-attention + statistical pooling


@dataclass(frozen=True)
class FusionConfig:
    """Hyper-parameters of a fusion network.

    Sizes are feature dimensions; ``max_context`` counts utterances (target included) and sizes
    the position embedding, so a window longer than it is rejected at run time.
    """

    n_classes: int
    network: NetworkKind = NetworkKind.MCAF
    audio_dim: int = 768       # acoustic vector per utterance (Whisper encoder mean+std)
    text_dim: int = 384        # sentence embedding per utterance (MiniLM)
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 2
    dropout: float = 0.1       # probability
    max_context: int = 16      # utterances per window, target included
    use_speaker: bool = True   # add a same/other speaker embedding
    causal: bool = True        # position i attends only to positions <= i
    audio_gate: bool = False   # learned reliability gate on each utterance's audio (AudioGate)
    target_residual: bool = False  # add logits from the target utterance alone (context adjusts them)
    # Prior correction: per-class offsets subtracted from the logits at inference (not in training),
    # tau * log(prior) for the class prior the training mix taught; () = none. Set after training
    # by scripts/prior_correction.py so a balanced decision does not favour the majority class.
    prior_correction: tuple[float, ...] = ()
    # Gate threshold: at inference (not in training) an audio gate below it is closed to 0, the
    # text-only mode exactly, so a voice the gate half-trusts cannot pull the text's answer away.
    # 0 = the soft gate as trained. Set after training by scripts/gate_stats.py --threshold.
    gate_threshold: float = 0.0
    # Context weight: at inference, the context path's logits are scaled by it before the target-only
    # logits (target_residual) are added; 1 = as trained, 0 = the target utterance alone.
    context_weight: float = 1.0

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "network", NetworkKind(self.network))
        except ValueError:
            kinds = ", ".join(k.value for k in NetworkKind)
            raise UserError(f"unknown network {self.network!r}; choose one of: {kinds}") from None
        for name in ("n_classes", "audio_dim", "text_dim", "d_model", "n_heads", "n_layers",
                     "max_context"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise UserError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if not 0.0 <= self.gate_threshold <= 1.0:
            raise UserError(f"gate_threshold must be in [0, 1], got {self.gate_threshold}")
        if not 0.0 <= self.context_weight <= 1.0:
            raise UserError(f"context_weight must be in [0, 1], got {self.context_weight}")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"dropout must be in [0, 1), got {self.dropout}")
        object.__setattr__(self, "prior_correction", tuple(float(v) for v in self.prior_correction))
        if self.prior_correction and (len(self.prior_correction) != self.n_classes
                                      or not all(math.isfinite(v) for v in self.prior_correction)):
            raise UserError(f"prior_correction needs {self.n_classes} finite values, got {self.prior_correction}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-safe values (the network kind as its string)."""
        return {**asdict(self), "network": self.network.value}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "FusionConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error, missing ones take defaults."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"unknown fusion config keys: {', '.join(unknown)}")
        if "n_classes" not in values:
            raise UserError("fusion config lacks n_classes")
        return cls(**values)
