"""Balancing audio corpora in training (issue 9.5, round 8): class-balanced epoch draws, the
config's drop_datasets and the epoch choice on named validation sets (select_on, select_metric)."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
import torch

from models.data.sample import Sample
from models.labels import LABEL_SETS, Emotion
from models.training import Corpus, balanced_draw, epoch_windows
from models.training_config import TrainConfig
from models.windows import build_windows
from streamer.errors import UserError

CORE4 = LABEL_SETS["core4"]


def _clips(labels: list[Emotion], prefix: str) -> list:
    """Single-clip audio windows (one per label), as an acted corpus gives them."""
    samples = [Sample(id=f"{prefix}{i}", dataset=prefix, raw_label=None, label=label, speaker="s",
                      dialogue=f"{prefix}{i}") for i, label in enumerate(labels)]
    windows, _ = build_windows(samples, CORE4, 1, None, list(range(len(samples))))
    return windows


def test_balanced_draw_gives_each_class_the_same_count_and_uses_every_clip():
    windows = _clips([Emotion.ANGRY] * 12 + [Emotion.SAD] * 3 + [Emotion.HAPPY] * 1, "a")
    drawn = balanced_draw(windows, 30, random.Random(0))
    assert Counter(CORE4.labels[w.label] for w in drawn) == {"angry": 10, "sad": 10, "happy": 10}
    assert {w.audio_rows for w in drawn if CORE4.labels[w.label] == "sad"} == {(12,), (13,), (14,)}
    assert len({w.audio_rows for w in drawn if CORE4.labels[w.label] == "angry"}) == 10  # no repeat before all are used
    assert balanced_draw(windows, 30, random.Random(0)) == drawn  # seeded


def test_epoch_windows_balances_only_the_named_corpora():
    big = _clips([Emotion.ANGRY] * 20 + [Emotion.SAD] * 4, "big")
    small = _clips([Emotion.ANGRY] * 6 + [Emotion.SAD] * 2, "small")
    empty = torch.zeros(0)
    corpus = Corpus(text_table=empty, audio_table=empty, audio_mean=empty, audio_std=empty,
                    train={"big": big, "small": small}, epoch_sizes={"big": 8, "small": 0}, valid={},
                    valid_sets={}, audio_train=big + small, counts={}, spoken_rows={}, balanced=frozenset({"big"}))
    epoch = epoch_windows(corpus, random.Random(1))
    from_big = [w for w in epoch if w in big]
    assert len(from_big) == 8 and Counter(w.label for w in from_big) == {CORE4.labels.index("angry"): 4,
                                                                         CORE4.labels.index("sad"): 4}
    assert epoch[8:] == small  # not balanced, epoch size 0: all of it as it is


def _config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "c.toml"
    path.write_text(f"""
name = "t"
{extra}
[optim]
select_on = ["a"]
select_metric = "ua"
[[datasets]]
name = "a"
path = "x"
modality = "audio"
balance_classes = true
[[datasets]]
name = "b"
path = "y"
modality = "audio"
""")
    return path


def test_drop_datasets_and_select_on_are_checked(tmp_path):
    config = TrainConfig.from_toml(_config(tmp_path))
    assert [d.name for d in config.datasets] == ["a", "b"] and config.datasets[0].balance_classes
    assert config.select_on == ["a"] and config.select_metric == "ua"
    dropped = TrainConfig.from_toml(_config(tmp_path), ['drop_datasets=["b"]'])
    assert [d.name for d in dropped.datasets] == ["a"]
    with pytest.raises(UserError, match="drop_datasets: no dataset named 'c'"):
        TrainConfig.from_toml(_config(tmp_path), ['drop_datasets=["c"]'])
    with pytest.raises(UserError, match="select_on: no dataset named 'a'"):
        TrainConfig.from_toml(_config(tmp_path), ['drop_datasets=["a"]'])
    with pytest.raises(UserError, match="select_metric must be"):
        TrainConfig.from_toml(_config(tmp_path), ["optim.select_metric=accuracy"])


def test_set_reaches_a_dataset_by_name(tmp_path):
    config = TrainConfig.from_toml(_config(tmp_path), ["datasets.b.epoch_size=7", "datasets.a.balance_classes=false"])
    assert [(d.epoch_size, d.balance_classes) for d in config.datasets] == [(0, False), (7, False)]
    with pytest.raises(UserError, match="no entry named 'c'"):
        TrainConfig.from_toml(_config(tmp_path), ["datasets.c.epoch_size=7"])
    with pytest.raises(UserError, match="name an entry"):
        TrainConfig.from_toml(_config(tmp_path), ["datasets.epoch_size=7"])


def test_gate_loss_teaches_closed_on_synthetic_and_open_on_acted_audio():
    from models.training import gate_loss

    windows = _clips([Emotion.SAD, Emotion.ANGRY, Emotion.HAPPY], "g")  # audio rows 0, 1, 2
    has_audio = torch.tensor([True, True, False])
    right = gate_loss(torch.tensor([0.01, 0.99, 0.5]), has_audio, windows, frozenset({0}))
    wrong = gate_loss(torch.tensor([0.99, 0.01, 0.5]), has_audio, windows, frozenset({0}))
    assert right < 0.02 < 4 < wrong  # row 0 synthetic (gate -> 0), row 1 acted (gate -> 1), row 2 unscored
    assert gate_loss(torch.tensor([0.3, 0.3, 0.3]), torch.zeros(3, dtype=torch.bool), windows, frozenset()) == 0
