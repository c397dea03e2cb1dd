"""Windows, a few real training steps, checkpoint round trip, predictor and metrics on tiny data.

The feature frontends are replaced by small deterministic tables (the frontends themselves are
exercised in the streaming tests); everything else is the real code path.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint
from models.data.sample import Sample, Split
from models.labels import LABEL_SETS, Emotion
from models.metrics import score
from models.predictor import ContextItem, EmotionPredictor
from models.training_config import TrainConfig, apply_override
from models.windows import MISSING, build_windows, collate, pseudo_pairs
from streamer.errors import UserError

CORE4 = LABEL_SETS["core4"]


def _sample(i: int, label: Emotion | None, dialogue: str = "d0", speaker: str = "M") -> Sample:
    return Sample(id=f"u{i}", dataset="t", raw_label=None, label=label, speaker=speaker,
                  dialogue=dialogue, turn=i, text=f"utterance {i}", split=Split.TRAIN)


def test_windows_left_context_and_exclusion():
    labels = [Emotion.HAPPY, Emotion.FRUSTRATED, Emotion.SAD, Emotion.EXCITED]
    samples = [_sample(i, label, speaker="MF"[i % 2]) for i, label in enumerate(labels)]
    windows, excluded = build_windows(samples, CORE4, 3, list(range(4)), None)
    assert excluded == 1  # frustrated is not in core4 ...
    assert [w.text_rows for w in windows] == [(0,), (0, 1, 2), (1, 2, 3)]  # ... but stays as context
    assert [CORE4.labels[w.label] for w in windows] == ["happy", "sad", "happy"]  # excited -> happy
    assert windows[0].audio_rows == (MISSING,)


def test_votes_become_soft_targets_on_the_label_set():
    s = Sample(id="v", dataset="t", raw_label="neu", label=Emotion.NEUTRAL, speaker="M",
               votes={"neutral": 0.5, "frustrated": 0.25, "excited": 0.25})
    (window,), _ = build_windows([s], CORE4, 4, [0], None)
    assert window.target == pytest.approx((2 / 3, 1 / 3, 0.0, 0.0))


def test_collate_left_pads_and_marks_speakers():
    samples = [_sample(i, Emotion.NEUTRAL, speaker="MF"[i % 2]) for i in range(3)]
    windows, _ = build_windows(samples, CORE4, 4, [0, 1, 2], None)
    text = torch.arange(3 * 2, dtype=torch.float32).reshape(3, 2)
    batch, labels, targets = collate(windows, text, torch.zeros(0, 5))
    assert batch.valid.tolist() == [[False, False, True], [False, True, True], [True, True, True]]
    assert batch.speaker[2].tolist() == [0, 1, 0]  # relative to the target (M)
    assert batch.text[2].tolist() == text.tolist()
    assert not batch.audio_present.any() and batch.audio.shape == (3, 3, 5)
    assert targets.sum(1).tolist() == [1.0, 1.0, 1.0]


def test_pseudo_pairs_keep_the_label():
    import random

    text = [_sample(i, e) for i, e in enumerate([Emotion.HAPPY, Emotion.SAD, Emotion.SAD])]
    tw, _ = build_windows(text, CORE4, 4, [0, 1, 2], None)
    audio = [Sample(id=f"a{i}", dataset="a", raw_label=None, label=e, speaker="x")
             for i, e in enumerate([Emotion.SAD, Emotion.ANGRY])]
    aw, _ = build_windows(audio, CORE4, 4, None, [7, 8])
    pairs = pseudo_pairs(tw, aw, random.Random(0))
    assert len(pairs) == 1  # no angry text to pair with
    assert pairs[0].label == CORE4.index("sad") and pairs[0].audio_rows[-1] == 7
    assert pairs[0].text_rows[-1] in (1, 2)


def test_override_parses_toml_values():
    raw: dict = {"network": {"max_context": 16}}
    apply_override(raw, "network.max_context=1")
    apply_override(raw, "network.network=self-mha")
    assert raw["network"] == {"max_context": 1, "network": "self-mha"}
    with pytest.raises(UserError):
        apply_override(raw, "no-equals-sign")


def test_shipped_configs_parse():
    root = Path(__file__).resolve().parent.parent / "models" / "configs"
    for path in root.glob("*.toml"):
        config = TrainConfig.from_toml(path)
        assert config.labels.labels and config.datasets


class _Frontend:
    """A deterministic stand-in frontend: label-dependent vectors plus noise."""

    def __init__(self, dim: int, name: str) -> None:
        self.dim, self.name = dim, name

    def identity(self) -> dict[str, str]:
        return {"name": self.name, "sha256": "0" * 64}


def _jsonl_corpus(tmp_path: Path) -> Path:
    rows = []
    rng = np.random.default_rng(0)
    words = {"neu": "okay fine", "hap": "great wonderful", "sad": "sorry miss", "ang": "hate stupid"}
    for d in range(24):
        for t in range(6):
            label = rng.choice(list(words))
            rows.append({"dialog": f"Ses0{1 + d % 4}F_d{d}", "turn": t, "speaker": "MF"[t % 2],
                         "text": f"{words[label]} {t}", "label": label,
                         "split": "valid" if d % 6 == 0 else "train"})
    path = tmp_path / "tiny.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


class _TextFrontend(_Frontend):
    """Texts containing a label's cue words map near that label's direction."""

    CUES = {"okay": 0, "great": 1, "sorry": 2, "hate": 3}
    context_turns = context_tokens = 0  # reads utterances alone, as TextEncoder does by default

    def embed(self, texts):
        out = np.random.default_rng(1).normal(0, 0.3, (len(texts), self.dim)).astype(np.float32)
        for i, t in enumerate(texts):
            out[i, self.CUES[t.split()[0]]] += 2.0
        return out


def _tiny_config(tmp_path: Path, device: str = "cpu", epochs: int = 12) -> TrainConfig:
    """A small text-only training config over :func:`_jsonl_corpus`."""
    data = _jsonl_corpus(tmp_path)
    config_path = tmp_path / "c.toml"
    config_path.write_text(f"""
name = "tiny"
seed = 3
label_set = "iemocap4"
device = "{device}"
[network]
d_model = 16
n_heads = 2
n_layers = 1
max_context = 4
text_dim = 8
[optim]
epochs = {epochs}
batch_size = 16
lr = 0.01
patience = 12
[[datasets]]
name = "iemocap-text"
path = "{data}"
modality = "text"
""")
    return TrainConfig.from_toml(config_path)


def test_training_learns_and_checkpoint_round_trips(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOSTREAM_CACHE", str(tmp_path / "cache"))
    from models.training import train

    config = _tiny_config(tmp_path)
    checkpoint = train(config, {"text": _TextFrontend(8, "fake-text")}, tmp_path / "m.pt")
    history = checkpoint.training["history"]
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    assert checkpoint.training["best_valid_uwf1"] > 0.9  # the cue words make it separable

    loaded, digest = load_checkpoint(tmp_path / "m.pt")
    assert (tmp_path / "m.pt.sha256").read_text().split()[0] == digest
    assert loaded.label_set.labels == ("neutral", "happy", "sad", "angry")
    assert loaded.network == checkpoint.network
    for key, value in checkpoint.state_dict.items():
        assert torch.equal(loaded.state_dict[key], value)

    # the predictor scores a context the same way evaluation would
    predictor = EmotionPredictor(tmp_path / "m.pt", device="cpu")
    frontend = _TextFrontend(8, "fake-text")
    vectors = frontend.embed(["okay a", "hate b", "hate c"])
    probs = predictor.predict([ContextItem(None, v, s) for v, s in zip(vectors, "ABA")])
    assert set(probs) == {"neutral", "happy", "sad", "angry"}
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
    assert max(probs, key=probs.get) == "angry"

    # a second run with the same seed gives the same weights
    again = train(config, {"text": _TextFrontend(8, "fake-text")}, tmp_path / "m2.pt")
    assert all(torch.equal(again.state_dict[k], v) for k, v in checkpoint.state_dict.items())


def test_train_only_trains_the_named_parameters_and_freezes_the_rest(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOSTREAM_CACHE", str(tmp_path / "cache"))
    from dataclasses import replace

    from models.training import train

    config = _tiny_config(tmp_path, epochs=2)
    start = train(config, {"text": _TextFrontend(8, "fake-text")}, tmp_path / "m.pt")
    with pytest.raises(UserError, match="needs init_from"):
        replace(config, train_only=("classifier",))
    with pytest.raises(UserError, match="no parameter starts with 'nothing'"):
        train(replace(config, init_from=str(tmp_path / "m.pt"), train_only=("nothing",)),
              {"text": _TextFrontend(8, "fake-text")}, tmp_path / "x.pt")
    tuned = train(replace(config, init_from=str(tmp_path / "m.pt"), train_only=("classifier",)),
                  {"text": _TextFrontend(8, "fake-text")}, tmp_path / "f.pt")
    changed = {k for k, v in tuned.state_dict.items() if not torch.equal(v, start.state_dict[k])}
    assert changed and all(k.startswith("classifier") for k in changed)
    assert tuned.training["objectives"]["train_only"] == ["classifier"]
    assert tuned.training["parameters"] == start.training["parameters"]


@pytest.mark.requires_cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_and_prediction_on_cuda(tmp_path, monkeypatch):
    from models.training import train

    monkeypatch.setenv("EMOSTREAM_CACHE", str(tmp_path / "cache"))
    train(_tiny_config(tmp_path, device="cuda", epochs=2), {"text": _TextFrontend(8, "fake-text")}, tmp_path / "m.pt")
    predictor = EmotionPredictor(tmp_path / "m.pt", device="auto")
    assert predictor.device.type == "cuda"
    vector = _TextFrontend(8, "fake-text").embed(["hate it"])[0]
    assert sum(predictor.predict([ContextItem(None, vector, "A")]).values()) == pytest.approx(1.0, abs=1e-5)


def test_corrupt_or_foreign_checkpoint_is_refused(tmp_path):
    path = tmp_path / "x.pt"
    torch.save({"format": "something-else"}, path)
    with pytest.raises(UserError, match="not an emostream checkpoint"):
        load_checkpoint(path)
    path.with_suffix(".pt.sha256").write_text("0" * 64 + "  x.pt\n")
    with pytest.raises(UserError, match="SHA-256"):
        load_checkpoint(path)
    with pytest.raises(UserError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_scores_on_known_predictions():
    y = np.array([0, 0, 0, 1, 1, 2])
    p = np.array([0, 0, 1, 1, 1, 0])
    s = score(y, p, ("a", "b", "c"), n_excluded=2)
    assert s.wa == pytest.approx(4 / 6)
    assert s.ua == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert s.confusion == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    f1_a, f1_b = 2 * (2 / 3 * 2 / 3) / (4 / 3), 2 * (2 / 3 * 1) / (5 / 3)
    assert s.uwf1 == pytest.approx((f1_a + f1_b + 0) / 3)
    assert s.wf1 == pytest.approx((3 * f1_a + 2 * f1_b) / 6)
    assert s.n == 6 and s.n_excluded == 2


def test_context_truncation_keeps_the_target_and_p0_is_a_no_op():
    import random

    from models.training import truncate_context

    samples = [_sample(i, Emotion.NEUTRAL, speaker="MF"[i % 2]) for i in range(6)]
    windows, _ = build_windows(samples, CORE4, 6, list(range(6)), None)
    rng = random.Random(0)
    assert truncate_context(windows, 0.0, rng) == windows
    assert rng.random() == random.Random(0).random()  # p = 0 drew nothing
    cut = truncate_context(windows, 1.0, random.Random(1))
    assert all(c.text_rows == w.text_rows[-len(c.text_rows):] for c, w in zip(cut, windows))
    assert all(c.label == w.label and c.speakers[-1] == w.speakers[-1] for c, w in zip(cut, windows))
    assert any(len(c.text_rows) < len(w.text_rows) for c, w in zip(cut, windows))


def test_shift_marks_emotion_changes_and_the_boost_repeats_them():
    import random

    from models.training import Corpus, epoch_windows

    labels = [Emotion.HAPPY, Emotion.HAPPY, Emotion.SAD, Emotion.EXCITED, Emotion.FRUSTRATED, Emotion.SAD]
    samples = [_sample(i, label, speaker="MF"[i % 2]) for i, label in enumerate(labels)]
    windows, _ = build_windows(samples, CORE4, 3, list(range(6)), None)
    # excited folds to happy (a change after sad); after the unscored "frustrated" nothing is known
    assert [w.shift for w in windows] == [False, False, True, True, False]
    empty = torch.zeros(0)
    corpus = Corpus(text_table=empty, audio_table=empty, audio_mean=empty, audio_std=empty,
                    train={"t": windows}, epoch_sizes={"t": 0}, valid={}, valid_sets={}, audio_train=[],
                    counts={}, spoken_rows={})
    assert epoch_windows(corpus, random.Random(0)) == windows
    boosted = epoch_windows(corpus, random.Random(0), shift_boost=2)
    assert len(boosted) == len(windows) + 2 * 2 and sum(w.shift for w in boosted) == 3 * 2


def test_speak_windows_swaps_whole_windows():
    import random

    from models.training import speak_windows

    samples = [_sample(i, Emotion.NEUTRAL, speaker="MF"[i % 2]) for i in range(4)]
    windows, _ = build_windows(samples, CORE4, 4, list(range(4)), None)
    spoken_rows = {1: 11, 3: 13}
    assert speak_windows(windows, spoken_rows, 0.0, random.Random(0)) == windows
    spoken = speak_windows(windows, spoken_rows, 1.0, random.Random(0))
    assert [w.text_rows for w in spoken] == [(0,), (0, 11), (0, 11, 2), (0, 11, 2, 13)]
    assert [w.label for w in spoken] == [w.label for w in windows]


def test_heard_text_rows_point_at_the_transcripts_of_rendered_turns(tmp_path, monkeypatch):
    """build_corpus embeds what the pipeline heard (scripts/heard_text.py's JSONL) as extra rows;
    turns heard as nothing, heard as written, or never rendered keep their own row only."""
    import dataclasses

    from models.data import load_dataset
    from models.training import build_corpus

    monkeypatch.setenv("EMOSTREAM_CACHE", str(tmp_path / "cache"))
    config = _tiny_config(tmp_path)
    samples = load_dataset("iemocap-text", config.datasets[0].path, keep_unlabelled=True).samples
    train = [s for s in samples if s.split == Split.TRAIN]
    heard = {train[0].id: "hate it when it rains", train[1].id: "", train[2].id: train[2].text,
             train[3].id: "sorry about that"}
    path = tmp_path / "heard.jsonl"
    path.write_text("".join(json.dumps({"dataset": "iemocap-text", "id": i, "heard": h}) + "\n" for i, h in heard.items()))
    with pytest.raises(UserError, match="heard_text_file"):
        dataclasses.replace(config, heard_text=0.5)
    config = dataclasses.replace(config, heard_text=0.5, heard_text_file=str(path))
    frontend = _TextFrontend(8, "fake-text")
    corpus = build_corpus(config, 4, {"text": frontend})
    valid = [s for s in samples if s.split == Split.VALID]
    rows = {s.id: i for i, s in enumerate(train + valid)}  # the corpus's own rows: train, then valid
    assert set(corpus.heard_rows) == {rows[train[0].id], rows[train[3].id]}
    heard_table = corpus.text_table[[corpus.heard_rows[rows[train[0].id]], corpus.heard_rows[rows[train[3].id]]]]
    assert heard_table.argmax(1).tolist() == [3, 2]  # the cue words of the heard texts: hate, sorry


class _AudioFrontend(_Frontend):
    """Frame energies as 'states': [n // 320, 2] (log energy, zero-crossing share) per 20 ms."""

    def identity(self) -> dict[str, str]:
        return {**super().identity(), "window": "utterance+0s"}

    def encode(self, audio: np.ndarray):
        from models.frontends.whisper import EncoderPass

        frames = audio[: len(audio) // 320 * 320].reshape(-1, 320)
        states = np.stack([np.log(1e-6 + (frames**2).mean(1)), (np.diff(np.sign(frames), axis=1) != 0).mean(1)], 1)
        return EncoderPass(output=None, states=states.astype(np.float32))


def test_augmented_copies_are_training_speakers_of_their_own(tmp_path, monkeypatch):
    """augment_copies adds N augmented copies of every training speaker's clip (validation and
    test speakers stay clean), each copy a speaker of its own, with features of the changed audio
    (cached under the augmentation's name: a second call computes nothing)."""
    import shutil
    import wave

    from models.training import with_augmented_copies
    from models.training_config import DatasetSpec

    if shutil.which("sox") is None:
        pytest.skip("pitch augmentation needs sox")
    monkeypatch.setenv("EMOSTREAM_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    samples = []
    for speaker in ("a", "b", "v", "t"):
        for i in range(2):
            path = tmp_path / f"{speaker}{i}.wav"
            tone = np.sin(2 * np.pi * (150 + 50 * i) * np.arange(16000) / 16000) * np.hanning(16000)
            pcm = (0.5 * tone + 0.01 * rng.standard_normal(16000)) * 32767
            with wave.open(str(path), "wb") as f:
                f.setnchannels(1), f.setsampwidth(2), f.setframerate(16000)
                f.writeframes(pcm.astype("<i2").tobytes())
            samples.append(Sample(f"{speaker}{i}", "acted", "W", Emotion.ANGRY, speaker, audio_path=path))
    spec = DatasetSpec("acted", tmp_path, modality="audio", valid_speakers=("v",), test_speakers=("t",),
                       augment_copies=2)
    out, x = with_augmented_copies(samples, spec, _AudioFrontend(4, "fake-audio"))
    assert len(out) == len(x) == 8 + 2 * 4
    assert out[:8] == samples
    assert [s.speaker for s in out[8:]] == ["a~aug1"] * 2 + ["b~aug1"] * 2 + ["a~aug2"] * 2 + ["b~aug2"] * 2
    assert len({s.id for s in out}) == len(out)
    clean = {s.id: row for s, row in zip(out, x)}
    for s, row in zip(out[8:], x[8:]):
        assert not np.allclose(row, clean[s.id.split("~")[0]])  # the copy's audio was changed
    assert not np.allclose(x[8:12], x[12:16])  # two copies, two draws

    def refuse(*args):
        raise AssertionError("computed again")

    monkeypatch.setattr(_AudioFrontend, "encode", refuse)
    np.testing.assert_array_equal(with_augmented_copies(samples, spec, _AudioFrontend(4, "fake-audio"))[1], x)
    with pytest.raises(UserError, match="augment_copies is for audio corpora"):
        from dataclasses import replace

        with_augmented_copies(samples, replace(spec, modality="both"), _AudioFrontend(4, "fake-audio"))
