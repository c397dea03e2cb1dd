"""Leave-one-speaker-out: per-speaker normalisation (offline and online), a second corpus in
training, and nested selection that never looks at the held-out speaker."""

from __future__ import annotations

import numpy as np
import pytest

from models.crossval import (
    leave_one_speaker_out, nested_leave_one_speaker_out, normalise_per_speaker,
)
from models.errors import UserError


def speaker_offset_corpus(n_speakers: int = 6, per_speaker: int = 60, seed: int = 0):
    """Clips whose class signal is small next to a large per-speaker offset (a voice)."""
    rng = np.random.default_rng(seed)
    D, C = 10, 3
    class_codes = rng.standard_normal((C, D))
    x, y, speakers = [], [], []
    for s in range(n_speakers):
        offset = 6.0 * rng.standard_normal(D)
        labels = rng.integers(0, C, per_speaker)
        x.append(offset + class_codes[labels] + 0.5 * rng.standard_normal((per_speaker, D)))
        y.append(labels)
        speakers += [f"s{s}"] * per_speaker
    return np.concatenate(x).astype(np.float32), np.concatenate(y), np.array(speakers)


def test_offline_normalisation_standardises_each_speaker():
    x, _, speakers = speaker_offset_corpus()
    z = normalise_per_speaker(x, speakers, online=False)
    for s in np.unique(speakers):
        np.testing.assert_allclose(z[speakers == s].mean(0), 0.0, atol=1e-4)
        np.testing.assert_allclose(z[speakers == s].std(0), 1.0, atol=1e-3)


def test_online_normalisation_uses_only_earlier_clips_of_the_session():
    """Changing one clip changes only its own output and those normalised after it (causal)."""
    x, _, speakers = speaker_offset_corpus(n_speakers=1, per_speaker=30)
    prior = (np.zeros(x.shape[1]), np.ones(x.shape[1]))
    before = normalise_per_speaker(x, speakers, online=True, prior=prior, seed=3)
    changed = x.copy()
    changed[7] += 100.0
    after = normalise_per_speaker(changed, speakers, online=True, prior=prior, seed=3)
    differs = np.any(np.abs(after - before) > 1e-4, axis=1)
    assert differs[7] and 0 < differs.sum() < len(x)  # clip 7 and the clips after it in the session


def test_speaker_normalisation_removes_voice_offsets_in_loso():
    x, y, speakers = speaker_offset_corpus()
    accuracy = {norm: np.mean(leave_one_speaker_out(x, y, speakers, normalise=norm) == y)
                for norm in ("none", "speaker", "speaker-online")}
    assert accuracy["speaker"] > accuracy["none"] + 0.2, accuracy
    assert accuracy["speaker-online"] > accuracy["none"] + 0.1, accuracy


def test_extra_corpus_joins_training_but_is_never_predicted():
    x, y, speakers = speaker_offset_corpus(n_speakers=3)
    extra = speaker_offset_corpus(n_speakers=2, seed=1)
    predicted = leave_one_speaker_out(x, y, speakers, extra=extra)
    assert predicted.shape == y.shape


def test_nested_selection_prefers_the_better_setting_without_the_held_out_speaker():
    x, y, speakers = speaker_offset_corpus()
    candidates = {"none": {"normalise": "none"}, "speaker": {"normalise": "speaker"}}
    predicted, choices = nested_leave_one_speaker_out(x, y, speakers, candidates)
    assert set(choices) == set(np.unique(speakers))
    assert list(choices.values()).count("speaker") >= 5
    assert np.mean(predicted == y) > np.mean(leave_one_speaker_out(x, y, speakers) == y)


def test_unknown_normalisation_is_a_user_error():
    x, y, speakers = speaker_offset_corpus(n_speakers=2, per_speaker=10)
    with pytest.raises(UserError, match="unknown normalisation"):
        leave_one_speaker_out(x, y, speakers, normalise="global")
