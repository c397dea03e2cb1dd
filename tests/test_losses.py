"""Losses on small hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models.losses import (
    LossWeights,
    hard_negative_matching_loss,
    label_alignment_loss,
    probability_mse,
    soft_cross_entropy,
    total_loss,
)
from models.networks import FusionConfig, build_network

E0, E1, E2 = torch.eye(3)


def tiny_network():
    torch.manual_seed(0)
    return build_network(FusionConfig(n_classes=2, audio_dim=4, text_dim=4, d_model=3, n_heads=1,
                                      n_layers=1, dropout=0.0))


def test_soft_cross_entropy_equals_cross_entropy_on_one_hot():
    logits = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 3, 1, 1, 2])
    torch.testing.assert_close(soft_cross_entropy(logits, F.one_hot(labels, 4).float()),
                               F.cross_entropy(logits, labels))
    # Uniform target on equal logits: log 2.
    uniform = soft_cross_entropy(torch.zeros(1, 2), torch.tensor([[0.5, 0.5]]))
    assert uniform.item() == pytest.approx(math.log(2))


def test_probability_mse_on_known_input():
    # softmax(0, 0) = (0.5, 0.5); against (1, 0): ((0.5)^2 + (0.5)^2) / 2 entries.
    assert probability_mse(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]])).item() == pytest.approx(0.25)
    confident = probability_mse(torch.tensor([[0.0, 20.0]]), torch.tensor([[0.0, 1.0]]))
    assert confident.item() == pytest.approx(0.0, abs=1e-12)


def test_alignment_hand_computed_two_classes():
    # Orthogonal unit embeddings, audio == text, temperature 1: each anchor scores 1 against its
    # own pair and 0 against the other, so every direction is -log(e / (e + 1)).
    loss = label_alignment_loss(torch.stack([E0, E1]), torch.stack([E0, E1]), torch.tensor([0, 1]), 1.0)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)))


def test_alignment_counts_every_same_label_pair_as_positive():
    # Same label: both texts are positives of each audio: mean_j (logsumexp - s_ij) = log(e+1) - 1/2.
    loss = label_alignment_loss(torch.stack([E0, E1]), torch.stack([E0, E1]), torch.tensor([0, 0]), 1.0)
    assert loss.item() == pytest.approx(math.log(math.e + 1) - 0.5)


def test_alignment_lower_when_same_label_embeddings_coincide():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    noise = 0.01 * torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    audio = torch.stack([E0, E0, E1, E1, E2, E2]) + noise
    aligned = label_alignment_loss(audio, audio.clone(), labels)
    shuffled = label_alignment_loss(audio, audio[[2, 4, 0, 5, 1, 3]], labels)
    # Two equally similar positives per anchor: the floor is log 2.
    assert aligned.item() == pytest.approx(math.log(2), abs=0.01)
    assert shuffled > aligned + 5.0


def test_alignment_skips_a_row_without_positive():
    # Text 1 is missing: audio anchor 1 (label 1) has no positive and is skipped; audio anchor 0
    # has one candidate (log-prob 0); text anchor 0 sees audios (s = 1, 0): log(1 + e^-1).
    audio = torch.stack([E0, E1]).requires_grad_()
    loss = label_alignment_loss(audio, torch.stack([E0, E1]), torch.tensor([0, 1]), 1.0,
                                text_present=torch.tensor([True, False]))
    assert loss.item() == pytest.approx(0.5 * math.log(1 + math.exp(-1)))
    loss.backward()
    assert torch.isfinite(audio.grad).all()


def test_alignment_without_any_anchor_is_zero_and_differentiable():
    audio = torch.randn(3, 4, requires_grad=True)
    loss = label_alignment_loss(audio, torch.randn(3, 4), torch.tensor([0, 1, 2]),
                                text_present=torch.zeros(3, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(audio.grad, torch.zeros(3, 4))


def expected_matching(network, audio, text, anchor, positive, negative):
    logits = network.match_logits(audio[[anchor, anchor]], text[[positive, negative]])
    return F.binary_cross_entropy_with_logits(logits, torch.tensor([1.0, 0.0]))


def test_matching_picks_the_hardest_negative():
    network = tiny_network()
    # Audio 0 (label 0) is closer to text 2 than to text 1, both of label 1; the others (label 1)
    # only have text 0 as a negative.
    audio = torch.stack([E0, E1, E1])
    text = torch.stack([E0, E1, E0 + 0.2 * E2])
    labels = torch.tensor([0, 1, 1])
    loss, accuracy = hard_negative_matching_loss(network, audio, text, labels)
    hardest = (expected_matching(network, audio, text, 0, 0, 2)
               + expected_matching(network, audio, text, 1, 1, 0)
               + expected_matching(network, audio, text, 2, 2, 0)) / 3
    easiest = (expected_matching(network, audio, text, 0, 0, 1)
               + expected_matching(network, audio, text, 1, 1, 0)
               + expected_matching(network, audio, text, 2, 2, 0)) / 3
    torch.testing.assert_close(loss, hardest)
    assert not torch.allclose(loss, easiest)
    assert 0.0 <= accuracy.item() <= 1.0


def test_matching_positive_falls_back_to_least_similar_same_label_text():
    network = tiny_network()
    audio = torch.stack([E0, E0, E1, E1])
    text = torch.stack([E0, E0 + E2, E0 + 0.1 * E2, E1])
    labels = torch.tensor([0, 0, 0, 1])
    text_present = torch.tensor([False, True, True, True])
    audio_present = torch.tensor([True, False, False, False])
    loss, _ = hard_negative_matching_loss(network, audio, text, labels, audio_present, text_present)
    # Anchor 0: its own text is missing; of texts 1 and 2 (label 0) text 1 is less similar.
    torch.testing.assert_close(loss, expected_matching(network, audio, text, 0, 1, 3))


def test_matching_without_negatives_is_zero():
    network = tiny_network()
    audio = torch.randn(3, 3, requires_grad=True)
    one_label = torch.zeros(3, dtype=torch.long)
    loss, accuracy = hard_negative_matching_loss(network, audio, torch.randn(3, 3), one_label)
    assert loss.item() == 0.0 and math.isnan(accuracy.item())
    loss.backward()


def test_matching_head_learns_hard_negatives():
    network = tiny_network()
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(3).repeat(4)
    audio = torch.eye(3)[labels] + 0.1 * torch.randn(12, 3, generator=g)
    text = torch.eye(3)[labels] + 0.1 * torch.randn(12, 3, generator=g)
    optimizer = torch.optim.Adam(network.matcher.parameters(), lr=1e-2)
    for _ in range(100):
        loss, accuracy = hard_negative_matching_loss(network, audio, text, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert accuracy.item() == 1.0


def test_total_loss_weights_the_terms():
    total = total_loss(torch.tensor(1.0), torch.tensor(2.0), torch.tensor(3.0), LossWeights(0.1, 0.5))
    assert total.item() == pytest.approx(1.0 + 0.2 + 1.5)
