"""Fusion networks: shapes, masking (padding, causality, missing modality), MCAF factors, training."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models.networks import (
    FusionBatch,
    FusionConfig,
    NetworkKind,
    build_network,
    count_parameters,
)
from models.networks.common import attention_mask
from models.networks.mcaf import MCAFLayer
from streamer.errors import UserError

KINDS = list(NetworkKind)


def tiny_config(kind: NetworkKind = NetworkKind.MCAF, **overrides) -> FusionConfig:
    values = dict(n_classes=4, network=kind, audio_dim=12, text_dim=8, d_model=16, n_heads=2,
                  n_layers=2, dropout=0.0, max_context=8)
    return FusionConfig(**{**values, **overrides})


def random_batch(config: FusionConfig, B: int = 3, T: int = 6, seed: int = 0) -> FusionBatch:
    """Row 0 is left-padded by 2; some context vectors are missing; the targets are complete."""
    g = torch.Generator().manual_seed(seed)
    valid = torch.ones(B, T, dtype=torch.bool)
    valid[0, :2] = False
    audio_present = torch.rand(B, T, generator=g) > 0.2
    text_present = torch.rand(B, T, generator=g) > 0.2
    audio_present[:, -1] = text_present[:, -1] = True
    return FusionBatch(
        audio=torch.randn(B, T, config.audio_dim, generator=g),
        text=torch.randn(B, T, config.text_dim, generator=g),
        audio_present=audio_present, text_present=text_present,
        speaker=torch.randint(0, 2, (B, T), generator=g), valid=valid,
    )


def replace(batch: FusionBatch, **fields) -> FusionBatch:
    values = {name: getattr(batch, name).clone() for name in
              ("audio", "text", "audio_present", "text_present", "speaker", "valid")}
    return FusionBatch(**{**values, **fields})


def position_logits(network, batch: FusionBatch) -> torch.Tensor:
    """Logits read out at every position, [B, T, C]."""
    _, _, audio, text = network.states(batch)
    return network.classify(audio, text)


@pytest.mark.parametrize("kind", KINDS)
def test_output_shapes(kind):
    torch.manual_seed(0)
    config = tiny_config(kind)
    network = build_network(config).eval()
    out = network(random_batch(config))
    assert out.logits.shape == (3, 4)
    assert out.audio_emb.shape == out.text_emb.shape == (3, 16)
    assert network.match_logits(out.audio_emb, out.text_emb).shape == (3,)
    assert torch.isfinite(out.logits).all()


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("kind", KINDS)
def test_padded_positions_cannot_change_output(kind, causal):
    torch.manual_seed(0)
    config = tiny_config(kind, causal=causal)
    network = build_network(config).eval()
    batch = random_batch(config)
    pad = ~batch.valid
    perturbed = replace(
        batch,
        audio=batch.audio.masked_fill(pad[..., None], float("nan")),
        text=batch.text + 5.0 * pad[..., None],
        audio_present=batch.audio_present | pad, text_present=batch.text_present & ~pad,
        speaker=torch.where(pad, 1 - batch.speaker, batch.speaker),
    )
    assert torch.equal(network(batch).logits, network(perturbed).logits)
    # The same perturbation at a valid context position does change the output.
    moved = replace(batch, text=batch.text + 5.0 * (torch.arange(6) == 3)[None, :, None])
    assert not torch.allclose(network(batch).logits[0], network(moved).logits[0])


@pytest.mark.parametrize("kind", KINDS)
def test_future_position_cannot_change_earlier_states(kind):
    torch.manual_seed(0)
    batch = random_batch(tiny_config(kind))
    j = 3
    later = replace(batch, audio=batch.audio + 3.0 * (torch.arange(6) == j)[None, :, None],
                    text=batch.text - 3.0 * (torch.arange(6) == j)[None, :, None])
    for causal in (True, False):
        network = build_network(tiny_config(kind, causal=causal)).eval()
        before, after = position_logits(network, batch), position_logits(network, later)
        assert not torch.allclose(before[:, j:], after[:, j:])
        assert torch.equal(before[:, :j], after[:, :j]) is causal


def reference_mcaf_layer(layer: MCAFLayer, audio, text, mask, mix: bool):
    """The layer written out with explicit softmax; ``mix=False`` is plain per-modality
    self-attention from the same Q/K/V weights (no correlation factors at all)."""
    h = layer.w_fa.shape[0]

    def heads(x, linear):
        B, T, D = x.shape
        return linear(x).view(B, T, h, D // h).transpose(1, 2)  # [B, h, T, dk]

    def attention(q, k, v, attn):
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # [B, h, T, T]
        weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        o = (weights @ v).transpose(1, 2).flatten(2)  # [B, T, D]
        return attn.out(o)

    xa, xt = layer.audio_norm1(audio), layer.text_norm1(text)
    qa, ka, va = (heads(xa, lin) for lin in (layer.audio_attn.query, layer.audio_attn.key,
                                             layer.audio_attn.value))
    qt, kt, vt = (heads(xt, lin) for lin in (layer.text_attn.query, layer.text_attn.key,
                                             layer.text_attn.value))
    if mix:
        ka = ka + torch.einsum("bhtd,hde->bhte", kt, layer.w_fa)
        kt = kt + torch.einsum("bhtd,hde->bhte", ka, layer.w_ft)
    audio = audio + attention(qa, ka, va, layer.audio_attn)
    text = text + attention(qt, kt, vt, layer.text_attn)
    return (audio + layer.audio_ffn(layer.audio_norm2(audio)),
            text + layer.text_ffn(layer.text_norm2(text)))


def test_mcaf_layer_matches_reference_with_and_without_factors():
    torch.manual_seed(0)
    config = tiny_config()
    layer = MCAFLayer(config).eval()
    audio, text = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    valid = torch.tensor([[False, True, True, True, True], [True] * 5])
    mask = attention_mask(valid, causal=True)
    with torch.no_grad():
        layer.w_fa.normal_(0, 0.3)
        layer.w_ft.normal_(0, 0.3)
        mixed = layer(audio, text, mask)
        torch.testing.assert_close(mixed, reference_mcaf_layer(layer, audio, text, mask, mix=True))
        plain = reference_mcaf_layer(layer, audio, text, mask, mix=False)
        assert not torch.allclose(mixed[0], plain[0])
        layer.w_fa.zero_()
        layer.w_ft.zero_()
        torch.testing.assert_close(layer(audio, text, mask), plain)


def test_zeroed_factors_make_audio_stream_independent_of_text():
    torch.manual_seed(0)
    config = tiny_config()
    network = build_network(config).eval()
    batch = random_batch(config)
    other_text = replace(batch, text=torch.randn_like(batch.text))
    with torch.no_grad():
        audio_states = network.states(batch)[2]  # [B, T, D]
        assert not torch.allclose(audio_states, network.states(other_text)[2])
        factors = [p for name, p in network.named_parameters() if name.endswith(("w_fa", "w_ft"))]
        assert len(factors) == 2 * config.n_layers
        for p in factors:
            p.zero_()
        torch.testing.assert_close(network.states(batch)[2], network.states(other_text)[2])


@pytest.mark.parametrize("kind", KINDS)
def test_missing_vector_is_ignored_and_replaced_by_placeholder(kind):
    torch.manual_seed(0)
    config = tiny_config(kind)
    network = build_network(config).eval()
    batch = random_batch(config)
    batch.audio_present[:, -1] = False
    batch.text_present[1, 2] = False
    garbage = replace(
        batch, audio=batch.audio.masked_fill(~batch.audio_present[..., None], float("nan")),
        text=batch.text.masked_fill(~batch.text_present[..., None], 1e3),
    )
    out, out_garbage = network(batch), network(garbage)
    assert torch.equal(out.logits, out_garbage.logits)
    placeholder = network.audio_in.placeholder.expand(3, -1)
    torch.testing.assert_close(out_garbage.audio_emb, placeholder)
    out_garbage.logits.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in network.parameters() if p.grad is not None)
    # Marked present, the same vector does count.
    all_present = replace(batch, audio_present=torch.ones(3, 6, dtype=torch.bool))
    assert not torch.allclose(out.logits, network(all_present).logits)


@pytest.mark.parametrize("use_speaker", [True, False])
def test_speaker_embedding_follows_config(use_speaker):
    torch.manual_seed(0)
    config = tiny_config(use_speaker=use_speaker)
    network = build_network(config).eval()
    batch = random_batch(config)
    swapped = replace(batch, speaker=1 - batch.speaker)
    assert torch.equal(network(batch).logits, network(swapped).logits) is not use_speaker


def separable_problem(config: FusionConfig, n: int = 64, T: int = 4, seed: int = 0):
    """Each target's audio and text are a noisy copy of its class prototype; context is noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, config.n_classes, (n,), generator=g)
    audio = torch.randn(n, T, config.audio_dim, generator=g)
    text = torch.randn(n, T, config.text_dim, generator=g)
    audio_prototypes = torch.randn(config.n_classes, config.audio_dim, generator=g)
    text_prototypes = torch.randn(config.n_classes, config.text_dim, generator=g)
    audio[:, -1] = 0.5 * audio[:, -1] + 2.0 * audio_prototypes[labels]
    text[:, -1] = 0.5 * text[:, -1] + 2.0 * text_prototypes[labels]
    ones = torch.ones(n, T, dtype=torch.bool)
    speaker = torch.randint(0, 2, (n, T), generator=g)
    batch = FusionBatch(audio, text, ones, ones.clone(), speaker, ones.clone())
    return batch, labels


@pytest.mark.parametrize("kind", KINDS)
def test_a_few_steps_lower_the_loss(kind):
    torch.manual_seed(0)
    config = tiny_config(kind)
    network = build_network(config)
    batch, labels = separable_problem(config)
    optimizer = torch.optim.Adam(network.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(network(batch).logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


def test_count_parameters_counts_trainable_scalars():
    linear = torch.nn.Linear(3, 2)
    assert count_parameters(linear) == 3 * 2 + 2
    linear.bias.requires_grad_(False)
    assert count_parameters(linear) == 6
    network = build_network(tiny_config())
    assert count_parameters(network) == sum(p.numel() for p in network.parameters())


def test_config_round_trip_and_bad_values():
    config = tiny_config(NetworkKind.CROSS_MHA, causal=False)
    assert config.to_dict()["network"] == "cross-mha"
    assert FusionConfig.from_dict(config.to_dict()) == config
    assert FusionConfig(n_classes=4, network="self-mha").network is NetworkKind.SELF_MHA
    with pytest.raises(UserError, match="unknown network"):
        FusionConfig(n_classes=4, network="lstm")
    with pytest.raises(UserError, match="divisible"):
        FusionConfig(n_classes=4, d_model=10, n_heads=4)
    with pytest.raises(UserError, match="unknown fusion config keys: colour"):
        FusionConfig.from_dict({**config.to_dict(), "colour": "red"})


def test_window_longer_than_max_context_is_rejected():
    config = tiny_config(max_context=4)
    with pytest.raises(ValueError, match="max_context"):
        build_network(config)(random_batch(config, T=5))


@pytest.mark.requires_cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind", KINDS)
def test_forward_backward_on_cuda(kind):
    torch.manual_seed(0)
    config = tiny_config(kind)
    network = build_network(config).cuda()
    out = network(random_batch(config).to("cuda"))
    loss = out.logits.logsumexp(-1).mean() + network.match_logits(out.audio_emb, out.text_emb).mean()
    loss.backward()
    assert out.logits.device.type == "cuda"
    assert all(torch.isfinite(p.grad).all() for p in network.parameters() if p.grad is not None)


def test_prior_correction_shifts_inference_logits_only():
    offset = (0.5, -1.0, 0.0, 2.0)
    plain = build_network(tiny_config())
    corrected = build_network(tiny_config(prior_correction=offset))
    corrected.load_state_dict(plain.state_dict())  # the offset is config, not a weight
    batch = random_batch(plain.config)
    plain.eval(), corrected.eval()
    with torch.no_grad():
        assert torch.allclose(corrected(batch).logits, plain(batch).logits - torch.tensor(offset))
    plain.train(), corrected.train()
    torch.manual_seed(0)
    train_plain = plain(batch).logits
    torch.manual_seed(0)
    assert torch.allclose(corrected(batch).logits, train_plain)  # training sees no offset
    assert FusionConfig.from_dict(tiny_config(prior_correction=offset).to_dict()).prior_correction == offset
    assert FusionConfig.from_dict({"n_classes": 4}).prior_correction == ()  # checkpoints without one
    for bad in ((1.0, 2.0), (0.0, 0.0, float("nan"), 0.0)):
        with pytest.raises(UserError, match="prior_correction"):
            tiny_config(prior_correction=bad)


def test_context_weight_scales_the_context_path_at_inference_only():
    """network.context_weight: 0 leaves the target utterance's own logits, 1 is the trained sum."""
    full = build_network(tiny_config(target_residual=True))
    full.eval()
    batch = random_batch(full.config)
    with torch.no_grad():
        trained = full(batch)
        context = trained.logits - trained.utterance_logits  # the context path's logits
        for weight in (0.0, 0.5):
            scaled = build_network(tiny_config(target_residual=True, context_weight=weight))
            scaled.load_state_dict(full.state_dict())  # the weight is config, not a parameter
            scaled.eval()
            assert torch.allclose(scaled(batch).logits, trained.utterance_logits + weight * context, atol=1e-6)
            scaled.train()
            torch.manual_seed(0)
            train_scaled = scaled(batch).logits
            full.train()
            torch.manual_seed(0)
            assert torch.allclose(train_scaled, full(batch).logits)  # training sees the whole context
            full.eval()
    for bad in (-0.1, 1.5):
        with pytest.raises(UserError, match="context_weight"):
            tiny_config(context_weight=bad)
