"""What every fusion network shares: the batch records, input encoding, attention, readout.

A network is ``FusionNetwork(config, mixer, pooling)``: the input encoder projects each modality
of every utterance to ``d_model``, a swappable mixer (:mod:`.mcaf` or :mod:`.mha`) attends over
the utterance sequence, and the target utterance's two modality states are pooled and classified.

Shapes: B batch, T utterances per window (the target is the last, index T-1), D = d_model,
h heads, dk = D / h, C classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.networks.config import FusionConfig


@dataclass
class FusionBatch:
    """A batch of dialogue windows, each ending at its target utterance; LEFT-padded.

    audio: [B, T, Da] float, per-utterance acoustic vector.
    text: [B, T, Dt] float, per-utterance sentence embedding.
    audio_present, text_present: [B, T] bool, False where that vector is missing (its values are
        ignored, NaN included, and a learned placeholder takes its place).
    speaker: [B, T] long, 0 = same speaker as the target utterance, 1 = the other speaker.
    valid: [B, T] bool, False at left padding; ``valid[:, -1]`` is always True.
    """

    audio: Tensor
    text: Tensor
    audio_present: Tensor
    text_present: Tensor
    speaker: Tensor
    valid: Tensor

    def to(self, device: torch.device | str) -> "FusionBatch":
        return FusionBatch(
            self.audio.to(device), self.text.to(device), self.audio_present.to(device),
            self.text_present.to(device), self.speaker.to(device), self.valid.to(device),
        )


@dataclass
class FusionOutput:
    """What a network returns for a batch.

    logits: [B, C] for the target utterance.
    audio_emb, text_emb: [B, D], the target utterance's projected inputs before any mixing (for
        the alignment and matching losses). Where a modality is missing at the target they hold
        the learned placeholder: pass ``batch.*_present[:, -1]`` to those losses as presence masks.
    """

    logits: Tensor
    audio_emb: Tensor
    text_emb: Tensor
    audio_gate: Tensor | None = None  # [B] in [0, 1], the target's audio gate (networks with one)
    utterance_logits: Tensor | None = None  # [B, C], the target-only path (``target_residual``)


class Pooling(str, Enum):
    """How the target's two modality states [.., D] become one vector [.., 2D]."""

    CONCAT = "concat"  # [audio, text]
    STATS = "stats"    # [mean, std] over the modality axis (statistical pooling)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters (scalars) in ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def attention_mask(valid: Tensor, causal: bool) -> Tensor:
    """Boolean mask, True where query i may attend to key j.

    valid: [B, T] bool. Returns [B, 1, T, T] (broadcast over heads). Padded keys are masked;
    with ``causal`` so is every key j > i. Each position may always attend to itself, so a padded
    query's row is never empty (no NaN); valid queries never see padded keys, so whatever a padded
    position computes cannot reach a valid one.
    """
    B, T = valid.shape
    mask = valid[:, None, None, :].expand(B, 1, T, T)  # [B, 1, T(query), T(key)]
    if causal:
        mask = mask & torch.ones(T, T, dtype=torch.bool, device=valid.device).tril()
    return mask | torch.eye(T, dtype=torch.bool, device=valid.device)


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, dropout: float = 0.0) -> Tensor:
    """Scaled dot-product attention, softmax(q k^T / sqrt(dk) + mask) v; shared by all mixers.

    q, k, v: [B, h, T, dk]; mask: [B, 1, T, T] bool (True = attend); dropout on the weights.
    Returns [B, h, T, dk].
    """
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)


class MultiHeadAttention(nn.Module):
    """Multi-head attention of queries from one sequence over keys/values from another (or the
    same) sequence. :meth:`project` and :meth:`combine` are exposed for mixers that edit the
    heads in between (MCAF mixes keys across modalities)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)

    def project(self, x_q: Tensor, x_kv: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x_q, x_kv: [B, T, D] -> q, k, v: [B, h, T, dk] each."""
        return self._split(self.query(x_q)), self._split(self.key(x_kv)), self._split(self.value(x_kv))

    def _split(self, x: Tensor) -> Tensor:
        B, T, D = x.shape
        return x.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2)  # [B, h, T, dk]

    def combine(self, heads: Tensor) -> Tensor:
        """heads: [B, h, T, dk] -> [B, T, D] through the output projection."""
        B, h, T, dk = heads.shape
        return self.out(heads.transpose(1, 2).reshape(B, T, h * dk))  # [B, T, D]

    def forward(self, x_q: Tensor, x_kv: Tensor, mask: Tensor) -> Tensor:
        """x_q, x_kv: [B, T, D]; mask: [B, 1, T, T] bool. Returns [B, T, D]."""
        q, k, v = self.project(x_q, x_kv)
        return self.combine(attend(q, k, v, mask, self.dropout if self.training else 0.0))


class FeedForward(nn.Module):
    """Position-wise MLP, [.., D] -> [.., D] (hidden 4D, GELU)."""

    def __init__(self, d_model: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ModalityProjection(nn.Module):
    """Linear + LayerNorm from one modality's feature size to D; a learned placeholder where the
    vector is missing (or padded)."""

    def __init__(self, in_dim: int, d_model: int):
        super().__init__()
        self.proj = nn.Linear(in_dim, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.placeholder = nn.Parameter(torch.randn(d_model) * 0.02)

    def forward(self, x: Tensor, use: Tensor) -> Tensor:
        """x: [B, T, Din] float; use: [B, T] bool. Returns [B, T, D]."""
        # Zero unused inputs first so NaN there cannot reach the gradients through the Linear.
        x = x.masked_fill(~use[..., None], 0.0)
        return torch.where(use[..., None], self.norm(self.proj(x)), self.placeholder)


class AudioGate(nn.Module):
    """How far to trust an utterance's audio, judged from the audio vector alone.

    g = sigmoid(MLP(x)) in [0, 1] per utterance; the network then uses
    g * projected audio + (1 - g) * the missing-audio placeholder, so g = 0 is exactly the
    network's text-only mode for that utterance. Trained end to end: on audio whose sound says
    nothing about the label (synthetic voices paired with the text's label) closing the gate
    lowers the loss. Where the utterance has no text the gate is held open (g = 1): audio is then
    all there is, and the audio-only mode stays what it was.
    """

    def __init__(self, in_dim: int, hidden: int = 32, open_bias: float = 2.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, 1))
        nn.init.constant_(self.net[-1].bias, open_bias)  # starts mostly open: sigmoid(2) = 0.88

    def forward(self, x: Tensor, audio_present: Tensor, text_present: Tensor) -> Tensor:
        """x: [B, T, Din] audio vectors; *_present: [B, T] bool. Returns g: [B, T, 1]."""
        x = x.masked_fill(~audio_present[..., None], 0.0)  # NaN where missing must not reach grads
        gate = torch.sigmoid(self.net(x))                   # [B, T, 1]
        return torch.where((audio_present & text_present)[..., None], gate, 1.0)


class TwoStreamLayer(nn.Module):
    """Pre-LN layer over the audio and text streams: attention block, then a feed-forward block
    per stream. Subclasses define the attention block in ``forward`` and call :meth:`feed_forward`.
    """

    def __init__(self, config: FusionConfig):
        super().__init__()
        D, h = config.d_model, config.n_heads
        self.audio_norm1 = nn.LayerNorm(D)
        self.text_norm1 = nn.LayerNorm(D)
        self.audio_attn = MultiHeadAttention(D, h, config.dropout)  # produces the audio update
        self.text_attn = MultiHeadAttention(D, h, config.dropout)   # produces the text update
        self.audio_norm2 = nn.LayerNorm(D)
        self.text_norm2 = nn.LayerNorm(D)
        self.audio_ffn = FeedForward(D, config.dropout)
        self.text_ffn = FeedForward(D, config.dropout)

    def feed_forward(self, audio: Tensor, text: Tensor) -> tuple[Tensor, Tensor]:
        """Residual feed-forward block of each stream: [B, T, D] -> [B, T, D]."""
        audio = audio + self.audio_ffn(self.audio_norm2(audio))
        text = text + self.text_ffn(self.text_norm2(text))
        return audio, text


class LayerStack(nn.Module):
    """``n_layers`` two-stream layers applied in turn: (audio, text) [B, T, D] -> same shapes."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, audio: Tensor, text: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        for layer in self.layers:
            audio, text = layer(audio, text, mask)
        return audio, text


class FusionNetwork(nn.Module):
    """Input encoding -> mixer -> pooling of the target's two states -> classifier.

    ``mixer(audio [B,T,D], text [B,T,D], mask [B,1,T,T]) -> (audio [B,T,D], text [B,T,D])``.
    """

    def __init__(self, config: FusionConfig, mixer: nn.Module, pooling: Pooling):
        super().__init__()
        D = config.d_model
        self.config = config
        self.pooling = pooling
        # [C] or [0]; not a weight (kept in the config, so not in the state dict)
        self.register_buffer("prior_offset", torch.tensor(config.prior_correction, dtype=torch.float32), persistent=False)
        self.audio_in = ModalityProjection(config.audio_dim, D)
        self.text_in = ModalityProjection(config.text_dim, D)
        self.audio_gate = AudioGate(config.audio_dim) if config.audio_gate else None
        self.speaker = nn.Embedding(2, D) if config.use_speaker else None
        self.position = nn.Embedding(config.max_context, D)  # index = distance from the target
        self.drop = nn.Dropout(config.dropout)
        self.mixer = mixer
        self.audio_norm = nn.LayerNorm(D)  # final norms of the pre-LN mixer stacks
        self.text_norm = nn.LayerNorm(D)
        self.classifier = nn.Sequential(
            nn.Linear(2 * D, D), nn.GELU(), nn.Dropout(config.dropout),
            nn.Linear(D, config.n_classes),
        )
        self.matcher = nn.Sequential(nn.Linear(4 * D, D), nn.GELU(), nn.Linear(D, 1))
        # Target residual: the target utterance is classified on its own, and the context path's
        # logits are added to that, so context adjusts the target's own evidence instead of
        # replacing it (against emotional inertia; trained with an auxiliary loss on it alone).
        self.utterance = nn.Sequential(
            nn.Linear(2 * D, D), nn.GELU(), nn.Dropout(config.dropout), nn.Linear(D, config.n_classes),
        ) if config.target_residual else None

    def gate(self, batch: FusionBatch) -> Tensor | None:
        """The audio gate of every position, [B, T, 1] in [0, 1] (at inference, below
        ``config.gate_threshold`` closed to 0); None without a gate."""
        if self.audio_gate is None:
            return None
        gate = self.audio_gate(batch.audio, batch.audio_present & batch.valid,
                               batch.text_present & batch.valid)
        if self.config.gate_threshold and not self.training:
            gate = torch.where(gate < self.config.gate_threshold, 0.0, gate)
        return gate

    def states(self, batch: FusionBatch, gate: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Every position's states. Returns (audio_in, text_in, audio, text), each [B, T, D]:
        the projected inputs (before speaker/position embeddings and mixing; audio after the
        gate) and the mixer's normalised outputs. gate: ``self.gate(batch)`` when the caller
        has it already."""
        B, T, _ = batch.audio.shape
        if T > self.config.max_context:
            raise ValueError(f"window of {T} utterances exceeds max_context={self.config.max_context}")
        audio_in = self.audio_in(batch.audio, batch.audio_present & batch.valid)  # [B, T, D]
        text_in = self.text_in(batch.text, batch.text_present & batch.valid)      # [B, T, D]
        gate = self.gate(batch) if gate is None else gate                        # [B, T, 1]
        if gate is not None:  # g = 0: as if the audio were missing
            audio_in = gate * audio_in + (1 - gate) * self.audio_in.placeholder
        distance = torch.arange(T - 1, -1, -1, device=batch.audio.device)       # [T], 0 at target
        context = self.position(distance)[None]                                 # [1, T, D]
        if self.speaker is not None:
            context = context + self.speaker(batch.speaker)                      # [B, T, D]
        mask = attention_mask(batch.valid, self.config.causal)                   # [B, 1, T, T]
        audio, text = self.mixer(self.drop(audio_in + context), self.drop(text_in + context), mask)
        return audio_in, text_in, self.audio_norm(audio), self.text_norm(text)

    def classify(self, audio: Tensor, text: Tensor) -> Tensor:
        """audio, text: [.., D] modality states -> logits [.., C]."""
        if self.pooling is Pooling.CONCAT:
            pooled = torch.cat([audio, text], dim=-1)                            # [.., 2D]
        else:
            both = torch.stack([audio, text], dim=-2)                            # [.., 2, D]
            std = (both.var(dim=-2, unbiased=False) + 1e-5).sqrt()               # [.., D]
            pooled = torch.cat([both.mean(dim=-2), std], dim=-1)                 # [.., 2D]
        return self.classifier(pooled)

    def forward(self, batch: FusionBatch) -> FusionOutput:
        gate = self.gate(batch)
        audio_in, text_in, audio, text = self.states(batch, gate)
        logits = self.classify(audio[:, -1], text[:, -1])                        # [B, C]
        utterance = None
        if self.utterance is not None:
            utterance = self.utterance(torch.cat([audio_in[:, -1], text_in[:, -1]], dim=-1))  # [B, C]
            weight = 1.0 if self.training else self.config.context_weight
            logits = weight * logits + utterance
        if len(self.prior_offset) and not self.training:
            logits = logits - self.prior_offset
        return FusionOutput(logits, audio_in[:, -1], text_in[:, -1],
                            None if gate is None else gate[:, -1, 0], utterance)

    def match_logits(self, audio_emb: Tensor, text_emb: Tensor) -> Tensor:
        """Does each (audio, text) pair carry the same emotion? audio_emb, text_emb: [N, D] ->
        logits [N] (positive = same)."""
        pair = torch.cat([audio_emb, text_emb, (audio_emb - text_emb).abs(), audio_emb * text_emb],
                         dim=-1)                                                 # [N, 4D]
        return self.matcher(pair).squeeze(-1)                                    # [N]
