"""Per-speaker online normalisation (models/audio_norm.py) and where it is used: checkpoints,
the predictor's per-session state, training's simulated sessions, the ``folders`` speakers."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from models.audio_norm import NormPrior, SpeakerNormaliser, normalise_sessions
from models.checkpoint import Checkpoint, load_checkpoint
from models.errors import UserError
from models.labels import label_set
from models.predictor import ContextItem, EmotionPredictor, SessionAudio


def _prior(dim: int = 3, clips: float = 10.0) -> NormPrior:
    return NormPrior(np.zeros(dim), np.ones(dim), clips)


def test_running_statistics_shrink_towards_the_prior():
    """Clip i is standardised by (prior x clips + clips 0..i) pooled: written out by hand."""
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 2.0, (6, 3))
    normaliser = SpeakerNormaliser(_prior())
    for i in range(len(x)):
        seen = x[: i + 1]
        k = 10 + i + 1
        mean = seen.sum(0) / k
        var = (10 * 1.0 + (seen ** 2).sum(0)) / k - mean ** 2
        expected = (x[i] - mean) / (np.sqrt(var) + 1e-5)
        np.testing.assert_allclose(normaliser.normalise("a", x[i]), expected, rtol=1e-5)
    assert normaliser.clips_of("a") == 6 and normaliser.clips_of("b") == 0


def test_a_long_session_approaches_the_speakers_own_standardisation():
    rng = np.random.default_rng(1)
    x = rng.normal(4.0, 3.0, (3000, 2))  # away from the prior (0, 1)
    z = normalise_sessions(x, ["s"] * len(x), _prior(2), ordered=True)
    own = (x - x.mean(0)) / x.std(0)
    np.testing.assert_allclose(z[-1000:], own[-1000:], atol=0.1)
    assert np.abs(z[:3] - own[:3]).max() > 0.3  # the first clips lean on the prior


def test_update_false_leaves_the_statistics_and_speakers_are_apart():
    normaliser = SpeakerNormaliser(_prior())
    first = normaliser.normalise("a", np.full(3, 4.0))
    provisional = normaliser.normalise("a", np.full(3, 9.0), update=False)
    assert normaliser.clips_of("a") == 1
    np.testing.assert_array_equal(normaliser.normalise("b", np.full(3, 4.0)), first)  # b starts afresh
    np.testing.assert_array_equal(normaliser.normalise("a", np.full(3, 9.0)), provisional)


def test_keep_raw_puts_the_raw_vector_beside_the_normalised_one(tmp_path):
    x = np.random.default_rng(3).normal(2.0, 1.0, (5, 3))
    plain = normalise_sessions(x, ["s"] * 5, _prior(), seed=1)
    both = normalise_sessions(x, ["s"] * 5, NormPrior(np.zeros(3), np.ones(3), 10.0, keep_raw=True), seed=1)
    assert both.shape == (5, 6)
    np.testing.assert_allclose(both[:, :3], x, rtol=1e-6)
    np.testing.assert_array_equal(both[:, 3:], plain)
    norm = {"mean": torch.zeros(3), "std": torch.ones(3), "prior_clips": 10.0, "keep_raw": True}
    path = tmp_path / "raw.pt"
    Checkpoint(network={}, label_set=label_set("core4"), frontends={}, state_dict={"w": torch.ones(2)},
               audio_mean=torch.zeros(6), audio_std=torch.ones(6), speaker_norm=norm).save(path)
    loaded, _ = load_checkpoint(path)
    assert loaded.norm_prior().keep_raw
    assert loaded.prepare_audio(x.astype(np.float32), ["s"] * 5, seed=1).shape == (5, 6)


def test_sessions_are_causal_seeded_and_ordered_on_request():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 4))
    keys = np.array(["a", "b"] * 20)
    z = normalise_sessions(x, keys, _prior(4), seed=5)
    np.testing.assert_array_equal(z, normalise_sessions(x, keys, _prior(4), seed=5))
    assert not np.allclose(z, normalise_sessions(x, keys, _prior(4), seed=6))
    changed = x.copy()
    changed[np.flatnonzero(keys == "b")] += 50.0  # another session's clips never move a's
    np.testing.assert_array_equal(normalise_sessions(changed, keys, _prior(4), seed=5)[keys == "a"], z[keys == "a"])
    ordered = normalise_sessions(x, keys, _prior(4), ordered=True)
    normaliser = SpeakerNormaliser(_prior(4))
    np.testing.assert_allclose(ordered[0], normaliser.normalise("a", x[0]))
    np.testing.assert_allclose(ordered[2], normaliser.normalise("a", x[2]))


def test_through_the_session_speakers_shrink_towards_every_speaker_heard():
    """session_clips: the session's statistics (all speakers) shrink towards the prior as
    session_clips clips, a speaker's towards the session's as clips clips: written out by hand."""
    x = np.random.default_rng(4).normal(3.0, 2.0, (5, 3))
    speakers = ["a", "a", "b", "a", "b"]
    normaliser = SpeakerNormaliser(NormPrior(np.zeros(3), np.ones(3), clips=2.0, session_clips=4.0))
    for i, key in enumerate(speakers):
        heard, mine = x[: i + 1], x[[j for j in range(i + 1) if speakers[j] == key]]
        mean1 = heard.sum(0) / (4 + len(heard))
        second1 = (4 * 1.0 + (heard ** 2).sum(0)) / (4 + len(heard))
        mean = (2 * mean1 + mine.sum(0)) / (2 + len(mine))
        second = (2 * second1 + (mine ** 2).sum(0)) / (2 + len(mine))
        expected = (x[i] - mean) / (np.sqrt(second - mean ** 2) + 1e-5)
        np.testing.assert_allclose(normaliser.normalise(key, x[i]), expected, rtol=1e-5)
    assert normaliser.clips_of("a") == 3 and normaliser.clips_of("b") == 2


def test_a_new_speaker_of_a_shifted_session_starts_from_the_session_not_the_prior():
    """A recording chain the prior never heard moves every voice alike (here by 8 prior standard
    deviations): by the prior alone a new speaker's first clip reads about +1 on every dimension,
    whatever it holds (so every first clip looks alike); through the session it reads near the
    session's own centre."""
    rng = np.random.default_rng(5)
    x = rng.normal(8.0, 0.2, (31, 4))
    keys = np.array([f"corpus|s{i // 5}" for i in range(30)] + ["corpus|new"])
    z = {}
    for session_clips in (0.0, 10.0):
        prior = NormPrior(np.zeros(4), np.ones(4), clips=1.0, session_clips=session_clips)
        z[session_clips] = normalise_sessions(x, keys, prior, ordered=True)[-1]
    assert np.abs(z[10.0]).max() < 0.5 and np.abs(z[0.0] - 1.0).max() < 0.05


def test_with_session_clips_the_speakers_of_one_conversation_share_it_and_no_other():
    x = np.random.default_rng(6).normal(size=(30, 3))
    keys = np.array(["c1|a", "c1|b", "c2|a"] * 10)
    prior = NormPrior(np.zeros(3), np.ones(3), clips=1.0, session_clips=5.0)
    z = normalise_sessions(x, keys, prior, seed=3)
    np.testing.assert_array_equal(z, normalise_sessions(x, keys, prior, seed=3))
    changed = x.copy()
    changed[keys == "c1|b"] += 50.0
    moved = normalise_sessions(changed, keys, prior, seed=3)
    assert not np.allclose(moved[keys == "c1|a"], z[keys == "c1|a"])  # b's clips move a's session
    np.testing.assert_array_equal(moved[keys == "c2|a"], z[keys == "c2|a"])  # another conversation's do not


def test_sessions_of_samples_dialogue_speakers_in_order_else_speakers_shuffled():
    from models.audio_norm import sample_sessions
    from models.data.sample import Sample

    turns = [Sample(f"t{i}", "manifest", "neu", None, "AB"[i % 2], dialogue=f"d{i // 4}", turn=i % 4) for i in range(8)]
    keys, ordered = sample_sessions(turns)
    assert ordered and keys[:3] == ["manifest|d0|A", "manifest|d0|B", "manifest|d0|A"] and keys[4] == "manifest|d1|A"
    clips = [Sample(f"c{i}", "folders", "sad", None, "unknown") for i in range(3)]
    assert sample_sessions(clips) == (["folders|unknown"] * 3, False)


def _checkpoint(speaker_norm: dict | None) -> Checkpoint:
    return Checkpoint(network={}, label_set=label_set("core4"), frontends={}, state_dict={"w": torch.ones(2)},
                      audio_mean=torch.full((3,), 0.5), audio_std=torch.full((3,), 2.0), speaker_norm=speaker_norm)


def _payload_checkpoint(tmp_path: Path, speaker_norm: dict | None) -> Path:
    path = tmp_path / "c.pt"
    _checkpoint(speaker_norm).save(path)
    return path


def test_checkpoint_carries_the_prior_and_old_ones_read_raw_vectors(tmp_path):
    norm = {"mean": torch.tensor([1.0, 2.0, 3.0]), "std": torch.tensor([1.0, 0.5, 2.0]), "prior_clips": 10.0}
    loaded, _ = load_checkpoint(_payload_checkpoint(tmp_path, norm))
    assert torch.equal(loaded.speaker_norm["mean"], norm["mean"]) and loaded.speaker_norm["prior_clips"] == 10.0
    raw = np.arange(12, dtype=np.float32).reshape(4, 3)
    speakers = ["unknown"] * 4
    expected = normalise_sessions(raw, speakers, loaded.norm_prior(), seed=0)
    torch.testing.assert_close(loaded.prepare_audio(raw, speakers), (torch.from_numpy(expected) - 0.5) / 2.0)

    assert loaded.norm_prior().session_clips == 0.0  # checkpoints before round 11
    through, _ = load_checkpoint(_payload_checkpoint(tmp_path, {**norm, "session_clips": 10.0}))
    assert through.norm_prior().session_clips == 10.0

    old, _ = load_checkpoint(_payload_checkpoint(tmp_path, None))
    assert "speaker_norm" not in torch.load(tmp_path / "c.pt", weights_only=True)
    assert old.norm_prior() is None
    torch.testing.assert_close(old.prepare_audio(raw, speakers), (torch.from_numpy(raw) - 0.5) / 2.0)


@pytest.mark.parametrize("norm", [
    {"mean": torch.zeros(2), "std": torch.ones(2), "prior_clips": 10.0},             # wrong length
    {"mean": torch.zeros(3), "std": -torch.ones(3), "prior_clips": 10.0},            # negative std
    {"mean": torch.full((3,), float("nan")), "std": torch.ones(3), "prior_clips": 1.0},
    {"mean": torch.zeros(3), "std": torch.ones(3), "prior_clips": 0.0},
    {"mean": [0.0, 0.0, 0.0], "std": torch.ones(3), "prior_clips": 10.0},
    {"mean": torch.zeros(3), "std": torch.ones(3), "prior_clips": 1.0, "session_clips": -1.0},
])
def test_a_damaged_speaker_norm_is_refused(tmp_path, norm):
    path = _payload_checkpoint(tmp_path, {"mean": torch.zeros(3), "std": torch.ones(3), "prior_clips": 10.0})
    payload = torch.load(path, weights_only=True)
    payload["speaker_norm"] = norm
    torch.save(payload, path)
    path.with_suffix(".pt.sha256").unlink()
    with pytest.raises(UserError, match="speaker_norm"):
        load_checkpoint(path)


def test_session_audio_normalises_per_speaker_or_passes_through():
    prior = NormPrior(np.full(3, 10.0), np.ones(3), 1.0)
    session = SessionAudio(prior)
    item = ContextItem(audio=np.full(3, 10.0, np.float32), text=None, speaker="A")
    out = session.item(item)
    np.testing.assert_allclose(out.audio, 0.0, atol=1e-4)
    assert out.speaker == "A" and session.normaliser.clips_of("A") == 1
    session.item(ContextItem(audio=np.full(3, 30.0, np.float32), text=None, speaker="B"), update=False)
    assert session.normaliser.clips_of("B") == 0
    assert session.item(ContextItem(None, np.ones(2, np.float32), "A")).audio is None
    assert SessionAudio(None).item(item) is item


def _write_wav(path: Path, audio: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())


def test_folders_reads_urdu_speakers_from_file_names(tmp_path):
    from models.data import load_dataset

    for name in ("Angry/SM1_F10_A010.wav", "Happy/SF12_F3_H002.wav", "Sad/clip.wav"):
        _write_wav(tmp_path / name, np.zeros(1600))
    speakers = {s.id: s.speaker for s in load_dataset("folders", tmp_path).samples}
    assert speakers == {"Angry/SM1_F10_A010": "SM1", "Happy/SF12_F3_H002": "SF12", "Sad/clip": "unknown"}


class _LoudnessFrontend:
    """Frames of 1,600 samples -> [log RMS, zero-crossing rate]: a real (if crude) acoustic
    vector from the decoded clip, so the speaker's gain shifts it as a voice shifts Whisper's."""

    dim = 4

    def identity(self) -> dict[str, str]:
        return {"name": "loudness", "sha256": "1" * 64, "window": "utterance"}

    def encode(self, audio: np.ndarray):
        frames = audio[: len(audio) // 1600 * 1600].reshape(-1, 1600)
        rms = np.log(np.sqrt((frames ** 2).mean(1)) + 1e-4)
        zcr = (np.diff(np.sign(frames), axis=1) != 0).mean(1)
        return type("Pass", (), {"states": np.stack([rms, zcr], 1).astype(np.float32)})()


@pytest.mark.parametrize("norm_options", ["", "speaker_norm_clips = 1.0\nspeaker_norm_session = 10.0"])
def test_training_simulates_sessions_and_the_checkpoint_keeps_the_prior(tmp_path, monkeypatch, norm_options):
    """A TurEV-DB-shaped corpus whose speakers differ by gain (label: pitch): trained with
    speaker_norm, the checkpoint carries the raw training statistics as its prior (and how fast a
    speaker leaves it, directly or through the session), and the predictor normalises a
    session's utterances with them."""
    from models.training import train
    from models.training_config import TrainConfig

    monkeypatch.setenv("EMOSTREAM_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    pitch = {"Angry": 900.0, "Calm": 150.0, "Happy": 600.0, "Sad": 300.0}
    for speaker, gain in (("1001", 0.05), ("1002", 0.2), ("1003", 0.6), ("1004", 0.3)):
        for label, hz in pitch.items():
            for i in range(4):
                audio = gain * np.sin(2 * np.pi * hz * (1 + 0.03 * rng.normal()) * t) + 0.003 * rng.normal(size=len(t))
                _write_wav(tmp_path / "tv" / label / f"{speaker}_x_w{i}.wav", audio)
    (tmp_path / "c.toml").write_text(f"""
name = "tiny-audio"
seed = 1
label_set = "core4"
device = "cpu"
[network]
d_model = 16
n_heads = 2
n_layers = 1
max_context = 2
audio_dim = 4
text_dim = 384
[objectives]
speaker_norm = true
{norm_options}
[optim]
epochs = 2
batch_size = 8
[[datasets]]
name = "turevdb"
path = "{tmp_path / 'tv'}"
modality = "audio"
valid_speakers = ["1004"]
""")
    config = TrainConfig.from_toml(tmp_path / "c.toml")
    checkpoint = train(config, {"audio": _LoudnessFrontend()}, tmp_path / "m.pt")
    assert checkpoint.training["objectives"]["speaker_norm"] is True
    from models.data import load_dataset
    from models.features import load_sample_audio
    from models.frontends.whisper import pool_mean_std

    frontend = _LoudnessFrontend()
    train_rows = np.stack([pool_mean_std(frontend.encode(load_sample_audio(s)).states)
                           for s in load_dataset("turevdb", tmp_path / "tv").samples if s.speaker != "1004"])
    loaded, _ = load_checkpoint(tmp_path / "m.pt")
    prior = loaded.norm_prior()
    assert (prior.clips, prior.session_clips) == ((1.0, 10.0) if norm_options else (10.0, 0.0))
    np.testing.assert_allclose(loaded.speaker_norm["mean"].numpy(), train_rows.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(loaded.speaker_norm["std"].numpy(), train_rows.std(0), rtol=1e-3, atol=1e-5)
    # the network was fitted on normalised vectors (raw ones: mean about -2 in log RMS, std 1e-3 in ZCR)
    assert np.abs(loaded.audio_mean.numpy()).max() < 0.2 and bool((loaded.audio_std > 0.1).all())
    predictor = EmotionPredictor(tmp_path / "m.pt", device="cpu")
    session = predictor.session_audio()
    vector = ContextItem(train_rows[0].astype(np.float32), None, "A")
    np.testing.assert_allclose(session.item(vector).audio,
                               SpeakerNormaliser(loaded.norm_prior()).normalise("A", train_rows[0]), rtol=1e-5)
    assert sum(predictor.predict([session.item(vector)]).values()) == pytest.approx(1.0, abs=1e-5)


def test_evaluate_scores_a_folders_tree_audio_only(tmp_path, monkeypatch, capsys):
    """The check a user runs on their own corpus: clips without dialogues (no 'shift' subset),
    speakers from URDU file names, the shipped checkpoint, audio only, core4."""
    from streamer.cli import main

    monkeypatch.setenv("EMOSTREAM_CACHE", str(tmp_path / "cache"))
    t = np.arange(16000) / 16000
    for i, (label, hz) in enumerate([("Angry", 220.0), ("Happy", 330.0), ("Neutral", 180.0), ("Sad", 140.0)] * 2):
        _write_wav(tmp_path / "urdu" / label / f"S{'MF'[i % 2]}{i % 3 + 1}_F1_{label[0]}{i:03d}.wav",
                   0.3 * np.sin(2 * np.pi * hz * t) * np.hanning(len(t)))
    code = main(["evaluate", "--dataset", "folders", "--data", str(tmp_path / "urdu"), "--modalities", "audio",
                 "--labels", "core4", "--json"])
    assert code in (0, None)
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 8 and result["labels"] == ["neutral", "happy", "sad", "angry"]
    assert sum(map(sum, result["confusion"])) == 8
