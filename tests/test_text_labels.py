"""Seven labels, partial-label training, the text corpora's loaders, and evaluation's folding,
shift-turn subset and per-utterance predictions, on tiny inputs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.data import load_dataset
from models.data.sample import Sample, Split
from models.evaluation import shift_turns, write_predictions
from models.labels import LABEL_SETS, Emotion, fold_matrix, label_set
from models.losses import partial_cross_entropy, soft_cross_entropy
from models.windows import build_windows, support_mask
from streamer.errors import UserError
from tests.test_training import _TextFrontend, _tiny_config

EMO7 = LABEL_SETS["emo7"]


def test_seven_labels_by_name_and_their_folds():
    assert EMO7.labels == ("neutral", "happy", "sad", "angry", "surprise", "fear", "disgust")
    assert EMO7.index(Emotion.EXCITED) == 1 and EMO7.index(Emotion.SURPRISED) == 4
    assert EMO7.index(Emotion.FRUSTRATED) is None  # context only, unless merged
    assert EMO7.with_merge({"frustrated": "angry"}).index(Emotion.FRUSTRATED) == 3
    to_core4 = fold_matrix(EMO7, LABEL_SETS["core4"])
    assert to_core4[:4].tolist() == np.eye(4).tolist() and not to_core4[4:].any()
    probs = np.array([[0.1, 0.2, 0.1, 0.1, 0.5, 0.0, 0.0]]) @ to_core4
    assert probs.argmax() == 1  # surprise drops out; happy wins among the four
    to_ec = fold_matrix(EMO7, LABEL_SETS["emocontext4"])
    assert to_ec.sum(0).tolist() == [1, 1, 1, 4]  # neutral, surprise, fear, disgust -> other
    with pytest.raises(UserError):
        label_set("emo9")


def test_partial_targets_follow_what_the_corpus_can_name():
    label, target, support = EMO7.partial_target(Emotion.HAPPY, "iemocap-text")
    assert label == 1 and target[1] == 1.0 and support == (True,) * 4 + (False,) * 3
    label, target, support = EMO7.partial_target(Emotion.OTHER, "emocontext")
    assert label == -1 and all(support)
    assert target == pytest.approx((0.25, 0, 0, 0, 0.25, 0.25, 0.25))
    assert EMO7.partial_target(Emotion.SURPRISED, "meld")[2] == (True,) * 7
    assert EMO7.partial_target(Emotion.FRUSTRATED, "iemocap-text") is None


def test_partial_cross_entropy():
    logits = torch.randn(3, 4, requires_grad=True)
    onehot = torch.eye(4)[:3]
    everything = torch.ones(3, 4, dtype=torch.bool)
    assert partial_cross_entropy(logits, onehot, everything).item() == pytest.approx(
        soft_cross_entropy(logits, onehot).item(), rel=1e-5)
    support = everything.clone()
    support[0, 3] = False
    candidates = onehot.clone()
    candidates[1] = torch.tensor([0.5, 0.0, 0.0, 0.5])
    partial_cross_entropy(logits, candidates, support).backward()
    assert logits.grad[0, 3] == 0  # an unsupported class learns nothing from that example
    p = logits.detach()[1].softmax(-1)
    single = partial_cross_entropy(logits.detach()[1:2], candidates[1:2], support[1:2])
    assert single.item() == pytest.approx(-torch.log(p[0] + p[3]).item() + np.log(2.0), rel=1e-5)


def test_emocontext_and_reccon_loaders(tmp_path):
    (tmp_path / "ec").mkdir()
    (tmp_path / "ec" / "train.txt").write_text(
        "id\tturn1\tturn2\tturn3\tlabel\n0\tHi\tHello\tI hate you\tangry\n1\tok\tsure\tfine\tothers\n")
    samples = load_dataset("emocontext", tmp_path / "ec", keep_unlabelled=True).samples
    assert [s.text for s in samples[:3]] == ["Hi", "Hello", "I hate you"]
    assert [s.label for s in samples] == [None, None, Emotion.ANGRY, None, None, Emotion.OTHER]
    assert samples[0].speaker == samples[2].speaker != samples[1].speaker
    windows, _ = build_windows(samples, EMO7, 4, list(range(6)), None, partial=True)
    assert [w.label for w in windows] == [3, -1] and windows[0].text_rows == (0, 1, 2)
    assert support_mask(windows, 7).all()
    rec = tmp_path / "reccon" / "data" / "original_annotation"
    rec.mkdir(parents=True)
    turns = [{"turn": 1, "speaker": "A", "utterance": "We won !", "emotion": "happines"},
             {"turn": 2, "speaker": "B", "utterance": "Really ?", "emotion": "surprise"}]
    (rec / "dailydialog_train.json").write_text(json.dumps({"tr_1": [turns]}))
    samples = load_dataset("reccon", tmp_path / "reccon", keep_unlabelled=True).samples
    assert [(s.label, s.split, s.dialogue) for s in samples] == [
        (Emotion.HAPPY, Split.TRAIN, "train:tr_1"), (Emotion.SURPRISED, Split.TRAIN, "train:tr_1")]
    with pytest.raises(UserError, match="reccon"):
        load_dataset("reccon", tmp_path / "ec")


def _turn(i: int, label: Emotion | None) -> Sample:
    return Sample(id=f"u{i}", dataset="t", raw_label=None, label=label, speaker="AB"[i % 2],
                  dialogue="d", turn=i, text=f"text {i}")


def test_shift_turns_and_predictions_file(tmp_path):
    labels = [Emotion.HAPPY, Emotion.EXCITED, Emotion.SAD, None, Emotion.SAD, Emotion.FRUSTRATED]
    samples = [_turn(i, e) for i, e in enumerate(labels)]
    core4 = LABEL_SETS["core4"]
    # excited folds onto happy (no change); frustrated is outside core4 but still a change
    assert shift_turns(samples, core4) == {"u2", "u5"}
    windows, _ = build_windows(samples, core4, 3, list(range(6)), None)
    probs = np.tile([[0.1, 0.6, 0.2, 0.1]], (len(windows), 1))
    write_predictions(tmp_path / "p.jsonl", samples, windows, probs, core4)
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["turn"] for r in rows] == [0, 1, 2, 4]
    assert rows[2] == {"dialogue": "d", "turn": 2, "speaker": "A", "text": "text 2", "label": "sad",
                       "prediction": "happy",
                       "probabilities": {"neutral": 0.1, "happy": 0.6, "sad": 0.2, "angry": 0.1}}


def test_partial_label_training_with_target_residual(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOSTREAM_CACHE", str(tmp_path / "cache"))
    from models.training import train

    config = _tiny_config(tmp_path, epochs=8)
    config = dataclasses.replace(
        config, label_set="emo7", loss="partial-ce", utterance_loss=0.5, corpus_epoch_size=60,
        network={**config.network, "target_residual": True},
    )
    checkpoint = train(config, {"text": _TextFrontend(8, "fake-text")}, tmp_path / "m.pt")
    assert checkpoint.label_set.labels == EMO7.labels
    assert checkpoint.training["best_valid_uwf1"] > 0.6  # the four cue words are learnable
    state = checkpoint.state_dict
    assert any(k.startswith("utterance.") for k in state)


def test_warm_start_copies_weights_and_shared_classes(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOSTREAM_CACHE", str(tmp_path / "cache"))
    from models.training import train

    frontend = {"text": _TextFrontend(8, "fake-text")}
    base = dataclasses.replace(_tiny_config(tmp_path, epochs=1), label_set="core4")
    old = train(base, frontend, tmp_path / "old.pt")
    # one epoch at a negligible learning rate: the warm-started weights as they are
    warm = dataclasses.replace(base, label_set="emo7", lr=1e-12, init_from=str(tmp_path / "old.pt"),
                               network={**base.network, "target_residual": True})
    new = train(warm, frontend, tmp_path / "new.pt")
    out_old, out_new = old.state_dict["classifier.3.weight"], new.state_dict["classifier.3.weight"]
    assert out_new.shape[0] == 7 and torch.allclose(out_new[:4], out_old, atol=1e-6)  # the four shared classes
    assert torch.allclose(new.state_dict["text_in.proj.weight"], old.state_dict["text_in.proj.weight"], atol=1e-6)
    assert new.training["objectives"]["init_from"] == str(tmp_path / "old.pt")
