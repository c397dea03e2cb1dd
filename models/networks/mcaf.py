"""MCAF mixer: multi-head attention with mutual correlation attentive factors.

After Gu et al. 2019 (written from the paper's description). Each modality has its own
query/key/value projections split into h heads ("sub-views"). Before attending, keys are mixed
across modalities per head by learnable factors W_Fa, W_Ft of shape [h, dk, dk]:

    K_a' = K_a + K_t W_Fa
    K_t' = K_t + K_a' W_Ft          (uses the already-updated K_a')

and each modality attends with its own queries over its modified keys and its own values:
softmax(Q_m K_m'^T / sqrt(dk) + mask) V_m. With W_F = 0 the layer is two independent
self-attention layers. Layers are pre-LN (x + attn(LN(x)), x + FFN(LN(x))); the final LayerNorm
lives in :class:`~models.networks.common.FusionNetwork`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.networks.common import LayerStack, TwoStreamLayer, attend
from models.networks.config import FusionConfig


class MCAFLayer(TwoStreamLayer):
    """One MCAF layer over both modality sequences.

    ``w_fa``, ``w_ft``: [h, dk, dk] mutual correlation factors (initialised N(0, 0.02)).
    """

    def __init__(self, config: FusionConfig):
        super().__init__(config)
        h, dk = config.n_heads, config.d_model // config.n_heads
        self.w_fa = nn.Parameter(torch.randn(h, dk, dk) * 0.02)
        self.w_ft = nn.Parameter(torch.randn(h, dk, dk) * 0.02)

    def forward(self, audio: Tensor, text: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """audio, text: [B, T, D]; mask: [B, 1, T, T] bool. Returns (audio, text), [B, T, D]."""
        B, T, _ = audio.shape
        xa, xt = self.audio_norm1(audio), self.text_norm1(text)
        qa, ka, va = self.audio_attn.project(xa, xa)  # [B, h, T, dk] each
        qt, kt, vt = self.text_attn.project(xt, xt)   # [B, h, T, dk] each
        ka = ka + kt @ self.w_fa                      # [B, h, T, dk] @ [h, dk, dk] -> [B, h, T, dk]
        kt = kt + ka @ self.w_ft                      # with the updated K_a'
        p = self.audio_attn.dropout if self.training else 0.0
        audio = audio + self.audio_attn.combine(attend(qa, ka, va, mask, p))
        text = text + self.text_attn.combine(attend(qt, kt, vt, mask, p))
        return self.feed_forward(audio, text)


def mcaf_mixer(config: FusionConfig) -> LayerStack:
    """``n_layers`` MCAF layers: (audio, text) [B, T, D] -> (audio, text) [B, T, D]."""
    return LayerStack([MCAFLayer(config) for _ in range(config.n_layers)])
