"""The audio reliability gate: closed = text-only mode, open without text, learns which audio to
ignore; and the calibration error of probabilities."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.metrics import expected_calibration_error, score
from models.networks import FusionConfig, NetworkKind, build_network
from tests.test_networks import random_batch, replace, tiny_config


def _set_gate(network, logit: float) -> None:
    """Make the gate output sigmoid(logit) for every input."""
    last = network.audio_gate.net[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(logit)


@pytest.mark.parametrize("kind", list(NetworkKind))
@pytest.mark.parametrize("residual", [False, True])
def test_closed_gate_is_the_text_only_mode(kind, residual):
    torch.manual_seed(0)
    network = build_network(tiny_config(kind, audio_gate=True, target_residual=residual)).eval()
    batch = random_batch(network.config)
    batch = replace(batch, text_present=torch.ones_like(batch.text_present))  # the gate needs text
    _set_gate(network, -1e4)  # sigmoid = 0
    no_audio = replace(batch, audio_present=torch.zeros_like(batch.audio_present))
    torch.testing.assert_close(network(batch).logits, network(no_audio).logits)
    assert torch.all(network(batch).audio_gate == 0)


def test_open_gate_passes_the_audio_and_differs_from_text_only():
    torch.manual_seed(0)
    network = build_network(tiny_config(audio_gate=True)).eval()
    batch = random_batch(network.config)
    no_audio = replace(batch, audio_present=torch.zeros_like(batch.audio_present))
    _set_gate(network, 1e4)  # sigmoid = 1
    plain = build_network(tiny_config()).eval()
    plain.load_state_dict({k: v for k, v in network.state_dict().items() if not k.startswith("audio_gate.")})
    torch.testing.assert_close(network(batch).logits, plain(batch).logits)
    assert not torch.allclose(network(batch).logits, network(no_audio).logits)


def test_gate_is_held_open_where_text_is_missing():
    torch.manual_seed(0)
    network = build_network(tiny_config(audio_gate=True)).eval()
    batch = random_batch(network.config)
    audio_only = replace(batch, text_present=torch.zeros_like(batch.text_present))
    _set_gate(network, -1e4)
    assert torch.all(network(audio_only).audio_gate == 1)
    _set_gate(network, 1e4)
    opened = network(audio_only).logits
    _set_gate(network, -1e4)
    torch.testing.assert_close(network(audio_only).logits, opened)


def test_checkpoint_configs_without_the_key_have_no_gate():
    values = tiny_config().to_dict()
    del values["audio_gate"]
    network = build_network(FusionConfig.from_dict(values))
    assert network.audio_gate is None and network(random_batch(network.config)).audio_gate is None


def test_gate_learns_to_close_on_uninformative_audio():
    """Two audio 'voices': in one the audio carries the label, in the other it is noise while the
    text carries the label. After a few hundred steps the gate is lower on the noisy voice."""
    torch.manual_seed(0)
    config = tiny_config(audio_gate=True, max_context=1)
    network = build_network(config)
    optimizer = torch.optim.Adam(network.parameters(), lr=3e-3)
    B, C = 64, config.n_classes
    audio_codes, text_codes = torch.randn(C, config.audio_dim), torch.randn(C, config.text_dim)

    def make(informative: bool):
        y = torch.randint(0, C, (B,))
        voice = torch.zeros(B, config.audio_dim)
        voice[:, 0] = 3.0 if informative else -3.0  # what tells the two voices apart
        label_part = audio_codes[y] if informative else audio_codes[torch.randint(0, C, (B,))]
        audio = voice + label_part + 0.3 * torch.randn(B, config.audio_dim)
        text = text_codes[y] + 2.0 * torch.randn(B, config.text_dim)  # text: a noisy cue
        ones = torch.ones(B, 1, dtype=torch.bool)
        batch = random_batch(config, B=B, T=1)
        return replace(batch, audio=audio[:, None], text=text[:, None], audio_present=ones,
                       text_present=ones, valid=ones), y

    for _ in range(300):
        for informative in (True, False):
            batch, y = make(informative)
            loss = F.cross_entropy(network(batch).logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    network.eval()
    with torch.no_grad():
        good = network(make(True)[0]).audio_gate.mean()
        bad = network(make(False)[0]).audio_gate.mean()
    assert bad < good - 0.3, (float(good), float(bad))


def test_calibration_error_on_known_cases():
    y = np.array([0, 1, 0, 1])
    perfect = np.eye(2)[y]  # confident and right
    assert expected_calibration_error(perfect, y) == 0.0
    wrong = np.eye(2)[1 - y]  # confident and wrong
    assert expected_calibration_error(wrong, y) == 1.0
    half = np.full((4, 2), 0.5)  # argmax 0: right on half, confidence .5
    assert expected_calibration_error(half, y) == pytest.approx(0.0)
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])  # bins .9 (1 of 2 right), .6 (1 of 2)
    assert expected_calibration_error(probs, y) == pytest.approx(0.5 * 0.4 + 0.5 * 0.1)
    scores = score(y, probs.argmax(1), ("a", "b"), probs=probs)
    assert scores.ece == pytest.approx(0.25) and scores.to_dict()["ece"] == pytest.approx(0.25)
    assert score(y, probs.argmax(1), ("a", "b")).ece is None


def test_gate_threshold_closes_a_half_open_gate_at_inference_only():
    torch.manual_seed(0)
    network = build_network(tiny_config(audio_gate=True, gate_threshold=0.5)).eval()
    batch = random_batch(network.config)
    batch = replace(batch, text_present=torch.ones_like(batch.text_present))
    no_audio = replace(batch, audio_present=torch.zeros_like(batch.audio_present))
    _set_gate(network, -1.0)  # sigmoid(-1) = 0.27 < 0.5: closed, the text-only mode
    torch.testing.assert_close(network(batch).logits, network(no_audio).logits)
    assert torch.all(network(batch).audio_gate == 0)
    network.train()  # training sees the soft gate
    assert torch.allclose(network(batch).audio_gate, torch.sigmoid(torch.tensor(-1.0)))
    network.eval()
    _set_gate(network, 1.0)  # 0.73 >= 0.5: kept as it is
    assert torch.allclose(network(batch).audio_gate, torch.sigmoid(torch.tensor(1.0)))
    with pytest.raises(Exception, match="gate_threshold"):
        tiny_config(gate_threshold=1.5)
