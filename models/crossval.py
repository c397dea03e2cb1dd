"""Leave-one-speaker-out cross-validation of acoustic features on an audio corpus.

Every fold trains on all speakers but one and predicts the held-out speaker; predictions of all
folds are pooled and scored once (so each clip is predicted exactly once, by a model that never
heard its speaker). The classifier is the same for every feature set: standardisation + logistic
regression, so the comparison is between features.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from models.errors import UserError

from .data import load_dataset
from .labels import LABEL_SETS
from .metrics import Scores, score

log = logging.getLogger(__name__)

FEATURES = ("whisper", "egemaps")


def feature_matrix(kind: str, samples, asr_model: str | None = None) -> np.ndarray:
    """float32 [N, D] acoustic vectors of one kind for the samples (cached on disk)."""
    from .features import audio_matrix, egemaps_matrix

    if kind == "whisper":
        from .frontends.whisper import WhisperEncoder

        return audio_matrix(samples, WhisperEncoder(asr_model, compute_type="int8"))
    if kind == "egemaps":
        return egemaps_matrix(samples)
    raise UserError(f"unknown features {kind!r}; one of {', '.join(FEATURES)}")


def leave_one_speaker_out(x: np.ndarray, y: np.ndarray, speakers: np.ndarray, c: float = 1.0,
                          seed: int = 0) -> np.ndarray:
    """Pooled LOSO predictions. x: [N, D]; y, speakers: [N]. Returns predicted classes [N]."""
    predicted = np.empty_like(y)
    for speaker in np.unique(speakers):
        test = speakers == speaker
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, random_state=seed))
        model.fit(x[~test], y[~test])
        predicted[test] = model.predict(x[test])
    return predicted


def crossvalidate(dataset: str, data: Path, label_set: str, features: str = "whisper",
                  c: float = 1.0, asr_model: str | None = None) -> Scores:
    """LOSO figures of ``features`` + logistic regression on ``dataset`` with ``label_set``."""
    labels = LABEL_SETS.get(label_set)
    if labels is None:
        raise UserError(f"unknown label set {label_set!r}; one of {sorted(LABEL_SETS)}")
    loaded = load_dataset(dataset, data)
    samples = [s for s in loaded.samples if s.audio_path is not None]
    keep = np.array([labels.index(s.label) is not None for s in samples], dtype=bool)
    excluded = int((~keep).sum()) + sum(loaded.excluded.values())
    speakers = np.array([s.speaker for s in samples])[keep]
    if len(np.unique(speakers)) < 2:
        raise UserError(f"{dataset}: leave-one-speaker-out needs at least two speakers")
    y = np.array([labels.index(s.label) for s, k in zip(samples, keep) if k])
    x = feature_matrix(features, samples, asr_model)[keep]  # all clips: one cache for every label set
    log.info("%s: %d clips, %d speakers, %s features %s", dataset, len(y), len(np.unique(speakers)), features, x.shape)
    return score(y, leave_one_speaker_out(x, y, speakers, c), labels.labels, n_excluded=excluded)
