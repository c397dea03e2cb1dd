"""Self- and cross-attention mixers, after the UCL study of attention fusion with statistical
pooling (written from its description).

self-mha: each modality attends over its own utterance sequence.
cross-mha: audio queries attend over text keys/values and text queries over audio keys/values.
Both read out the target's two modality states with statistical pooling (mean and standard
deviation over the modality axis, :class:`~models.networks.common.Pooling.STATS`). Layers are
pre-LN like :mod:`.mcaf`.
"""

from __future__ import annotations

from torch import Tensor

from models.networks.common import LayerStack, TwoStreamLayer
from models.networks.config import FusionConfig


class AttentionLayer(TwoStreamLayer):
    """One layer of per-modality attention; ``cross`` picks the other modality as keys/values."""

    def __init__(self, config: FusionConfig, cross: bool):
        super().__init__(config)
        self.cross = cross

    def forward(self, audio: Tensor, text: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """audio, text: [B, T, D]; mask: [B, 1, T, T] bool. Returns (audio, text), [B, T, D]."""
        B, T, _ = audio.shape
        xa, xt = self.audio_norm1(audio), self.text_norm1(text)
        audio_kv, text_kv = (xt, xa) if self.cross else (xa, xt)
        audio = audio + self.audio_attn(xa, audio_kv, mask)
        text = text + self.text_attn(xt, text_kv, mask)
        return self.feed_forward(audio, text)


def attention_mixer(config: FusionConfig, cross: bool) -> LayerStack:
    """``n_layers`` attention layers: (audio, text) [B, T, D] -> (audio, text) [B, T, D]."""
    return LayerStack([AttentionLayer(config, cross) for _ in range(config.n_layers)])
