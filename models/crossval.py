"""Leave-one-speaker-out cross-validation of acoustic features on an audio corpus.

Every fold trains on all speakers but one and predicts the held-out speaker; predictions of all
folds are pooled and scored once (so each clip is predicted exactly once, by a model that never
heard its speaker). The classifier is the same for every feature set: standardisation + logistic
regression, so the comparison is between features.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from models.errors import UserError

from .audio_norm import PRIOR_CLIPS, NormPrior, normalise_sessions
from .augment import Augmentation, clip_matrix
from .data import load_dataset
from .frontends.whisper import TAIL_PAD_S
from .labels import LABEL_SETS, LabelSet
from .metrics import Scores, score

log = logging.getLogger(__name__)

FEATURES = ("whisper", "egemaps", "tiny-layers", "base-layers")
LAYERED = {"tiny-layers": ("tiny.en", TAIL_PAD_S), "base-layers": ("base", 0.0)}  # model, tail (s)
NORMALISATIONS = ("none", "speaker", "speaker-online")


def feature_matrix(kind: str, samples, asr_model: str | None = None,
                   augmentation: Augmentation | None = None) -> np.ndarray:
    """float32 acoustic vectors of one kind for the samples, clean or augmented (cached on disk).

    "whisper": the runtime's CTranslate2 encoder (``asr_model``, default tiny.en, int8), mean+std
    of its last layer [N, 2d]; "egemaps": [N, 88]; "tiny-layers" / "base-layers": mean+std of
    every layer of Whisper tiny.en (2 s tail, as at run time) or of the multilingual Whisper base
    (no tail: it would be a pass of its own) [N, n_layers + 1, 2d]; pick one with :func:`pick_layer`.
    """
    if kind == "whisper":
        from .frontends.whisper import WhisperEncoder, pool_mean_std

        encoder = WhisperEncoder(asr_model, compute_type="int8")
        return clip_matrix(f"whisper-{encoder.identity()['window']}", encoder.identity(), samples,
                           lambda audio: pool_mean_std(encoder.encode(audio).states), augmentation)
    if kind == "egemaps":
        from .frontends.egemaps import EgemapsExtractor

        extractor = EgemapsExtractor()
        return clip_matrix("egemaps", extractor.identity(), samples, extractor, augmentation)
    if kind in LAYERED:
        from .frontends.whisper_layers import WhisperLayers

        layers = WhisperLayers(*LAYERED[kind])
        return clip_matrix(f"layers-{layers.identity()['window']}", layers.identity(), samples,
                           layers.pooled, augmentation)
    raise UserError(f"unknown features {kind!r}; one of {', '.join(FEATURES)}")


def pick_layer(x: np.ndarray, layer: str) -> np.ndarray:
    """One view of layered features x [N, L + 1, 2d] -> [N, 2d]: "last", a layer number
    ("0" = after the embedding) or "mean" (the average of every layer's mean+std vector); or
    "all" -> [N, (L + 1) * 2d], every layer side by side (the classifier weights the layers)."""
    if layer == "last":
        return x[:, -1]
    if layer == "mean":
        return x.mean(axis=1)
    if layer == "all":
        return x.reshape(len(x), -1)
    if layer.isdigit() and int(layer) < x.shape[1]:
        return x[:, int(layer)]
    raise UserError(f"layer {layer!r}: last, mean, all or 0..{x.shape[1] - 1}")


def normalise_per_speaker(x: np.ndarray, speakers: np.ndarray, online: bool,
                          prior: tuple[np.ndarray, np.ndarray] | None = None,
                          seed: int = 0) -> np.ndarray:
    """Standardise every speaker's vectors by that speaker's own statistics (labels unused).

    x: [N, D]; speakers: [N]. Offline (``online=False``): each speaker's mean and standard
    deviation over all of its clips. Online: the runtime's own stage
    (:func:`models.audio_norm.normalise_sessions`): each speaker's clips in a seeded random order
    (a session), standardised by running statistics shrunk towards ``prior`` = (mean [D], std [D])
    of other speakers' clips (default: all of x), which counts as :data:`PRIOR_CLIPS` clips; this
    is what a live session can compute. Returns float32 [N, D].
    """
    if online:
        mean0, std0 = prior if prior is not None else (x.mean(0), x.std(0))
        return normalise_sessions(x, speakers, NormPrior(mean0, std0, PRIOR_CLIPS), seed)
    out = np.empty_like(x, dtype=np.float64)
    for speaker in np.unique(speakers):
        rows = np.flatnonzero(speakers == speaker)
        mine = x[rows].astype(np.float64)                                   # [n, D]
        out[rows] = (mine - mine.mean(0)) / (mine.std(0) + 1e-5)
    return out.astype(np.float32)


def fit_predict(x_train: np.ndarray, y_train: np.ndarray, s_train: np.ndarray, x_test: np.ndarray,
                s_test: np.ndarray, c: float = 1.0, seed: int = 0, normalise: str = "none") -> np.ndarray:
    """Train standardisation + logistic regression on one fold and predict its test clips.

    x_*: [N, D]; y_train: [N]; s_*: [N] speakers. normalise: one of :data:`NORMALISATIONS`,
    applied per speaker on both sides (online statistics start from the training clips' pooled
    statistics). Returns predicted classes [N_test].
    """
    if normalise not in NORMALISATIONS:
        raise UserError(f"unknown normalisation {normalise!r}; one of {', '.join(NORMALISATIONS)}")
    if normalise != "none":
        online = normalise == "speaker-online"
        prior = (x_train.mean(0), x_train.std(0))
        x_train = normalise_per_speaker(x_train, s_train, online, prior, seed)
        x_test = normalise_per_speaker(x_test, s_test, online, prior, seed)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, random_state=seed))
    model.fit(x_train, y_train)
    return model.predict(x_test)


Extra = tuple[np.ndarray, np.ndarray, np.ndarray]  # x [M, D], y [M], speakers [M] of another corpus


def leave_one_speaker_out(x: np.ndarray, y: np.ndarray, speakers: np.ndarray, c: float = 1.0,
                          seed: int = 0, normalise: str = "none", extra: Extra | None = None) -> np.ndarray:
    """Pooled LOSO predictions. x: [N, D]; y, speakers: [N]. Returns predicted classes [N].

    normalise: see :func:`fit_predict`. extra: another corpus added to every fold's training
    data and never predicted (e.g. the other language).
    """
    predicted = np.empty_like(y)
    for speaker in np.unique(speakers):
        test = speakers == speaker
        train = with_extra(x[~test], y[~test], speakers[~test], extra)
        predicted[test] = fit_predict(*train, x[test], speakers[test], c, seed, normalise)
    return predicted


def with_extra(x: np.ndarray, y: np.ndarray, speakers: np.ndarray, extra: Extra | None) -> Extra:
    """A fold's training clips with another corpus appended (its speakers prefixed "extra:")."""
    if extra is None:
        return x, y, speakers
    return (np.concatenate([x, extra[0]]), np.concatenate([y, extra[1]]),
            np.concatenate([speakers.astype(str), np.char.add("extra:", extra[2].astype(str))]))


def cross_corpus(train: Extra, test: Extra, c: float = 1.0, seed: int = 0, normalise: str = "none",
                 augmented: Sequence[np.ndarray] = ()) -> np.ndarray:
    """Train on every clip of one corpus, predict every clip of another (another language).

    train, test: (x [N, D], y [N], speakers [N]); test labels are not used here. augmented:
    features [N_train, D] of augmented copies of the training clips (same rows, labels and
    speakers), added to the training data only. Returns predicted classes [N_test].
    """
    x, y, speakers = train
    copies = 1 + len(augmented)
    x = np.concatenate([x, *augmented]) if augmented else x
    return fit_predict(x, np.tile(y, copies), np.tile(speakers, copies), test[0], test[2], c, seed, normalise)


def choose_layer(x: np.ndarray, y: np.ndarray, speakers: np.ndarray, c: float = 1.0,
                 normalise: str = "none") -> tuple[str, dict[str, float]]:
    """The layer view of x [N, L + 1, 2d] (a layer number, "mean" or "all", see
    :func:`pick_layer`) with the best LOSO UA on this corpus, and every view's UA. Run it on
    training data only."""
    labels = tuple(str(i) for i in range(int(y.max()) + 1))
    views = [str(i) for i in range(x.shape[1])] + ["mean", "all"]
    uas = {view: score(y, leave_one_speaker_out(pick_layer(x, view), y, speakers, c, normalise=normalise),
                       labels).ua for view in views}
    return max(uas, key=uas.get), uas


def nested_leave_one_speaker_out(
    x: np.ndarray, y: np.ndarray, speakers: np.ndarray, candidates: dict[str, dict], c: float = 1.0,
) -> tuple[np.ndarray, dict[str, str]]:
    """LOSO where each outer fold chooses its setting on its own training speakers only.

    candidates: name -> keyword arguments of :func:`leave_one_speaker_out` (``normalise``,
    ``extra``). For every held-out speaker, each candidate is scored (UA) by an inner LOSO over
    the remaining speakers; the best one is trained on all of them and predicts the held-out
    speaker, who never influences the choice. Returns predictions [N] and speaker -> choice.
    """
    predicted, choices = np.empty_like(y), {}
    n_classes = int(y.max()) + 1
    labels = tuple(str(i) for i in range(n_classes))
    for speaker in np.unique(speakers):
        test, rest = speakers == speaker, speakers != speaker
        inner = {name: score(y[rest], leave_one_speaker_out(x[rest], y[rest], speakers[rest], c, **kw),
                             labels).ua for name, kw in candidates.items()}
        best = max(inner, key=inner.get)
        choices[str(speaker)] = best
        log.info("held out %s: inner UA %s -> %s", speaker,
                 " ".join(f"{k}={100 * v:.1f}" for k, v in inner.items()), best)
        chosen = candidates[best]
        train = with_extra(x[rest], y[rest], speakers[rest], chosen.get("extra"))
        predicted[test] = fit_predict(*train, x[test], speakers[test], c,
                                      normalise=chosen.get("normalise", "none"))
    return predicted, choices


def labelled_features(dataset: str, data: Path, labels: LabelSet, features: str,
                      asr_model: str | None = None, augmentation: Augmentation | None = None,
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The clips of ``dataset`` that ``labels`` can represent: x [N, ...] (clean, or through
    ``augmentation``), y [N], speakers [N], and the number of clips excluded."""
    loaded = load_dataset(dataset, data)
    samples = [s for s in loaded.samples if s.audio_path is not None]
    keep = np.array([labels.index(s.label) is not None for s in samples], dtype=bool)
    excluded = int((~keep).sum()) + sum(loaded.excluded.values())
    speakers = np.array([s.speaker for s in samples])[keep]
    y = np.array([labels.index(s.label) for s, k in zip(samples, keep) if k])
    x = feature_matrix(features, samples, asr_model, augmentation)[keep]  # all clips: one cache for every label set
    return x, y, speakers, excluded


def crossvalidate(dataset: str, data: Path, label_set: str, features: str = "whisper",
                  c: float = 1.0, asr_model: str | None = None, normalise: str = "none",
                  with_dataset: tuple[str, Path] | None = None, select: bool = False,
                  layer: str = "last") -> Scores:
    """LOSO figures of ``features`` + logistic regression on ``dataset`` with ``label_set``.

    normalise: per-speaker feature normalisation (:data:`NORMALISATIONS`); with_dataset: another
    corpus (name, path) whose clips join every fold's training data. select: instead, choose per
    fold on its training speakers (:func:`nested_leave_one_speaker_out`) between no and online
    per-speaker normalisation, each with and without ``with_dataset``. layer: the view of
    layered features (:func:`pick_layer`).
    """
    labels = LABEL_SETS.get(label_set)
    if labels is None:
        raise UserError(f"unknown label set {label_set!r}; one of {sorted(LABEL_SETS)}")
    def view(x: np.ndarray) -> np.ndarray:
        return pick_layer(x, layer) if features in LAYERED else x

    x, y, speakers, excluded = labelled_features(dataset, data, labels, features, asr_model)
    x = view(x)
    if len(np.unique(speakers)) < 2:
        raise UserError(f"{dataset}: leave-one-speaker-out needs at least two speakers")
    extra = None
    if with_dataset is not None:
        x_extra, y_extra, s_extra, _ = labelled_features(*with_dataset, labels, features, asr_model)
        extra = (view(x_extra), y_extra, s_extra)
    log.info("%s: %d clips, %d speakers, %s features %s", dataset, len(y), len(np.unique(speakers)), features, x.shape)
    if select:
        candidates = {norm: {"normalise": norm} for norm in ("none", "speaker-online")}
        if extra is not None:
            candidates |= {f"{norm}+{with_dataset[0]}": {"normalise": norm, "extra": extra}
                           for norm in ("none", "speaker-online")}
        predicted, choices = nested_leave_one_speaker_out(x, y, speakers, candidates, c)
        log.info("chosen per held-out speaker: %s", choices)
    else:
        predicted = leave_one_speaker_out(x, y, speakers, c, normalise=normalise, extra=extra)
    return score(y, predicted, labels.labels, n_excluded=excluded)
