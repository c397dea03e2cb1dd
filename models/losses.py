"""Training objectives for the fusion networks.

Classification: :func:`soft_cross_entropy` (on hard labels as one-hot or on annotator vote
distributions) or :func:`probability_mse` (MCAF's regression on the vote distribution).
Auxiliary, on the target utterance's per-modality embeddings (``FusionOutput.audio_emb`` /
``text_emb``; pass ``batch.audio_present[:, -1]`` and ``batch.text_present[:, -1]`` as the
presence masks so placeholders take no part):
:func:`label_alignment_loss` pulls same-emotion audio and text together across modalities, and
:func:`hard_negative_matching_loss` trains ``network.match_logits`` on hard negatives.
:func:`total_loss` combines them: classification + λ1·alignment + λ2·matching.

Shapes: B or N rows, C classes, E embedding size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from models.networks.common import FusionNetwork


def soft_cross_entropy(logits: Tensor, target_probs: Tensor) -> Tensor:
    """Cross-entropy against a target distribution, averaged over the batch.

    logits: [B, C]; target_probs: [B, C], rows summing to 1. Returns a scalar. Equals
    ``F.cross_entropy`` when the targets are one-hot.
    """
    return -(target_probs * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def partial_cross_entropy(logits: Tensor, target_probs: Tensor, support: Tensor) -> Tensor:
    """Partial-label cross-entropy over each example's supported classes, averaged over the batch.

    logits: [B, C]; target_probs: [B, C], rows summing to 1 over candidate classes; support:
    [B, C] bool, the classes the example's corpus can name (the candidates among them). With p the
    softmax over the supported classes only, the loss is -log sum_c target_c p_c: cross-entropy
    for a one-hot target, and for a partial label ("none of happy, sad, angry") the likelihood that
    the class is one of its candidates, which leaves the split among them to the other corpora.
    Unsupported classes get no gradient from the example. Returns a scalar.
    """
    log_p = F.log_softmax(logits.masked_fill(~support, float("-inf")), dim=-1)  # [B, C]
    log_t = torch.log(target_probs.clamp(min=0.0))                              # [B, C], -inf at 0
    return -torch.logsumexp(torch.where(support, log_p + log_t, float("-inf")), dim=-1).mean()


def probability_mse(logits: Tensor, target_probs: Tensor) -> Tensor:
    """Mean squared error between softmax(logits) and the target distribution.

    logits, target_probs: [B, C]. Returns a scalar, the mean over all B*C entries.
    """
    return F.mse_loss(logits.softmax(dim=-1), target_probs)


def label_alignment_loss(
    audio_emb: Tensor, text_emb: Tensor, labels: Tensor, temperature: float = 0.1,
    audio_present: Tensor | None = None, text_present: Tensor | None = None,
) -> Tensor:
    """Supervised contrastive loss across modalities (emotion alignment).

    audio_emb, text_emb: [N, E] (row i is one utterance); labels: [N] long; audio_present,
    text_present: [N] bool, default all True (a missing embedding is neither anchor nor
    candidate). Embeddings are L2-normalised and s_ij = audio_i · text_j / temperature. For an
    anchor audio_i the candidates are the present texts and the positives those among them with
    labels[j] == labels[i] (j = i included, not only it):

        loss_i = -mean_{j in P(i)} log softmax_{j over candidates}(s_i.)

    The same from each text anchor over the audios; the result (a scalar) is the mean of the two
    directions. An anchor with no positive (its own text missing and no other text of its label)
    is skipped; with no anchor left at all the loss is 0, still attached to the graph.
    """
    audio_present, text_present = _presence(labels, audio_present, text_present)
    audio = F.normalize(audio_emb, dim=-1)                                     # [N, E]
    text = F.normalize(text_emb, dim=-1)                                       # [N, E]
    sim = audio @ text.T / temperature                                         # [N(audio), N(text)]
    candidate = audio_present[:, None] & text_present[None, :]                 # [N, N]
    positive = candidate & (labels[:, None] == labels[None, :])                # [N, N]
    return 0.5 * (_contrastive(sim, candidate, positive)
                  + _contrastive(sim.T, candidate.T, positive.T))


def _presence(labels: Tensor, audio_present: Tensor | None,
              text_present: Tensor | None) -> tuple[Tensor, Tensor]:
    """The [N] bool presence masks, all True where not given."""
    everything = torch.ones_like(labels, dtype=torch.bool)
    return (everything if audio_present is None else audio_present,
            everything if text_present is None else text_present)


def _contrastive(sim: Tensor, candidate: Tensor, positive: Tensor) -> Tensor:
    """Row-wise supervised contrastive loss. sim: [N, N] logits; candidate, positive: [N, N]
    bool. Returns the mean over rows with at least one positive (0 with grad when none)."""
    rows = positive.any(dim=-1)                                                # [N]
    if not rows.any():
        return sim.sum() * 0.0
    logits = sim[rows].masked_fill(~candidate[rows], float("-inf"))            # [R, N]
    log_prob = logits.log_softmax(dim=-1)                                      # [R, N]
    pos = positive[rows]                                                       # [R, N]
    per_row = -torch.where(pos, log_prob, 0.0).sum(dim=-1) / pos.sum(dim=-1)  # [R]
    return per_row.mean()


def hard_negative_matching_loss(
    network: FusionNetwork, audio_emb: Tensor, text_emb: Tensor, labels: Tensor,
    audio_present: Tensor | None = None, text_present: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Binary matching on hard negatives: does this (audio, text) pair carry the same emotion?

    audio_emb, text_emb: [N, E]; labels: [N] long; audio_present, text_present: [N] bool,
    default all True. For each present audio_i, chosen without gradient by cosine similarity:
    the positive is text_i when present, else the least similar present text of its label; the
    negative is the MOST similar present text of a different label. Anchors lacking either are
    skipped. Returns (loss, accuracy): the BCE of ``network.match_logits`` over the 2K pairs
    (scalar), and the fraction of pairs on the right side of logit 0 (scalar, no grad). With no
    usable anchor the loss is 0 (attached) and the accuracy NaN.
    """
    audio_present, text_present = _presence(labels, audio_present, text_present)
    with torch.no_grad():
        sim = F.normalize(audio_emb, dim=-1) @ F.normalize(text_emb, dim=-1).T  # [N, N]
        candidate = audio_present[:, None] & text_present[None, :]              # [N, N]
        same = labels[:, None] == labels[None, :]                               # [N, N]
        positive_ok, negative_ok = candidate & same, candidate & ~same           # [N, N]
        anchors = (positive_ok.any(dim=-1) & negative_ok.any(dim=-1)).nonzero().squeeze(-1)  # [K]
        least_similar = sim.masked_fill(~positive_ok, float("inf")).argmin(dim=-1)         # [N]
        own = torch.arange(len(labels), device=labels.device)                              # [N]
        positive = torch.where(positive_ok.diagonal(), own, least_similar)[anchors]         # [K]
        negative = sim.masked_fill(~negative_ok, float("-inf")).argmax(dim=-1)[anchors]    # [K]
    if len(anchors) == 0:
        return audio_emb.sum() * 0.0, torch.tensor(float("nan"))
    audio = audio_emb[anchors].repeat(2, 1)                                      # [2K, E]
    text = torch.cat([text_emb[positive], text_emb[negative]])                   # [2K, E]
    target = torch.cat([torch.ones(len(anchors)), torch.zeros(len(anchors))]).to(audio_emb)  # [2K]
    logits = network.match_logits(audio, text)                                   # [2K]
    loss = F.binary_cross_entropy_with_logits(logits, target)
    accuracy = ((logits.detach() > 0) == (target > 0.5)).float().mean()
    return loss, accuracy


@dataclass(frozen=True)
class LossWeights:
    """λ1 (alignment) and λ2 (matching) of :func:`total_loss`; 0 switches a term off."""

    alignment: float = 0.1
    matching: float = 0.1


def total_loss(classification: Tensor, alignment: Tensor, matching: Tensor,
               weights: LossWeights) -> Tensor:
    """classification + λ1·alignment + λ2·matching; all scalars."""
    return classification + weights.alignment * alignment + weights.matching * matching
