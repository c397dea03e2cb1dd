"""Self- and cross-attention mixers, after the UCL study of attention fusion with statistical
pooling (written from its description).

self-mha: each modality attends over its own utterance sequence.
cross-mha: audio queries attend over text keys/values and text queries over audio keys/values.
Both read out the target's two modality states with statistical pooling (mean and standard
deviation over the modality axis, :class:`~models.networks.common.Pooling.STATS`). Layers are
pre-LN like :mod:`.mcaf`.
"""

from __future__ import annotations

from torch import Tensor, nn

from models.networks.common import FeedForward, MultiHeadAttention
from models.networks.config import FusionConfig


class AttentionLayer(nn.Module):
    """One layer of per-modality attention; ``cross`` picks the other modality as keys/values."""

    def __init__(self, config: FusionConfig, cross: bool):
        super().__init__()
        D, h = config.d_model, config.n_heads
        self.cross = cross
        self.audio_norm1 = nn.LayerNorm(D)
        self.text_norm1 = nn.LayerNorm(D)
        self.audio_attn = MultiHeadAttention(D, h, config.dropout)  # produces the audio update
        self.text_attn = MultiHeadAttention(D, h, config.dropout)   # produces the text update
        self.audio_norm2 = nn.LayerNorm(D)
        self.text_norm2 = nn.LayerNorm(D)
        self.audio_ffn = FeedForward(D, config.dropout)
        self.text_ffn = FeedForward(D, config.dropout)

    def forward(self, audio: Tensor, text: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """audio, text: [B, T, D]; mask: [B, 1, T, T] bool. Returns (audio, text), [B, T, D]."""
        B, T, _ = audio.shape
        xa, xt = self.audio_norm1(audio), self.text_norm1(text)
        audio_kv, text_kv = (xt, xa) if self.cross else (xa, xt)
        audio = audio + self.audio_attn(xa, audio_kv, mask)
        text = text + self.text_attn(xt, text_kv, mask)
        audio = audio + self.audio_ffn(self.audio_norm2(audio))
        text = text + self.text_ffn(self.text_norm2(text))
        return audio, text


class AttentionMixer(nn.Module):
    """``n_layers`` attention layers: (audio, text) [B, T, D] -> (audio, text) [B, T, D]."""

    def __init__(self, config: FusionConfig, cross: bool):
        super().__init__()
        self.layers = nn.ModuleList(AttentionLayer(config, cross) for _ in range(config.n_layers))

    def forward(self, audio: Tensor, text: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        for layer in self.layers:
            audio, text = layer(audio, text, mask)
        return audio, text
