"""Emotion label names and the one table that maps every dataset's labels onto them.

Each corpus spells its classes its own way (IEMOCAP ``exc``, MELD ``joy``, EmoDB ``F`` for
*Freude*). Loaders translate raw labels to a canonical :class:`Emotion` with :func:`canonical`;
a model's :class:`LabelSet` then folds canonical emotions onto its classes (e.g. the common
IEMOCAP 4-class protocol counts *excited* as *happy*). Whatever a label set cannot represent is
excluded from training and evaluation and counted, never silently relabelled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from models.errors import UserError


class Emotion(str, Enum):
    """Canonical emotion names used across datasets, checkpoints and the JSON output."""

    NEUTRAL = "neutral"
    HAPPY = "happy"
    SAD = "sad"
    ANGRY = "angry"
    EXCITED = "excited"
    FRUSTRATED = "frustrated"
    SURPRISED = "surprised"
    FEARFUL = "fearful"
    DISGUSTED = "disgusted"
    BORED = "bored"
    CALM = "calm"
    OTHER = "other"  # a partial label: "none of the corpus's named emotions" (EmoContext "others")


# dataset -> raw label (lower-cased) -> canonical emotion. Raw labels missing here are
# excluded (e.g. IEMOCAP "xxx"/"oth": no majority or "other").
LABEL_TABLE: dict[str, dict[str, Emotion]] = {
    "iemocap": {
        "neu": Emotion.NEUTRAL, "hap": Emotion.HAPPY, "exc": Emotion.EXCITED, "sad": Emotion.SAD,
        "ang": Emotion.ANGRY, "fru": Emotion.FRUSTRATED, "sur": Emotion.SURPRISED,
        "fea": Emotion.FEARFUL, "dis": Emotion.DISGUSTED,
        # Spelled-out evaluator labels in EmoEvaluation files ("Neutral state; Frustration; ...").
        "neutral state": Emotion.NEUTRAL, "neutral": Emotion.NEUTRAL,
        "happiness": Emotion.HAPPY, "excited": Emotion.EXCITED, "sadness": Emotion.SAD,
        "anger": Emotion.ANGRY, "frustration": Emotion.FRUSTRATED, "surprise": Emotion.SURPRISED,
        "fear": Emotion.FEARFUL, "disgust": Emotion.DISGUSTED,
    },
    "meld": {
        "neutral": Emotion.NEUTRAL, "joy": Emotion.HAPPY, "sadness": Emotion.SAD,
        "anger": Emotion.ANGRY, "surprise": Emotion.SURPRISED, "fear": Emotion.FEARFUL,
        "disgust": Emotion.DISGUSTED,
    },
    "dailydialog": {
        "no_emotion": Emotion.NEUTRAL, "neutral": Emotion.NEUTRAL, "happiness": Emotion.HAPPY,
        "happines": Emotion.HAPPY, "happy": Emotion.HAPPY, "sadness": Emotion.SAD,
        "anger": Emotion.ANGRY, "angry": Emotion.ANGRY, "surprise": Emotion.SURPRISED,
        "surprised": Emotion.SURPRISED, "fear": Emotion.FEARFUL, "disgust": Emotion.DISGUSTED,
        "excited": Emotion.EXCITED,
    },
    "crema-d": {
        "neu": Emotion.NEUTRAL, "hap": Emotion.HAPPY, "sad": Emotion.SAD, "ang": Emotion.ANGRY,
        "fea": Emotion.FEARFUL, "dis": Emotion.DISGUSTED,
        # vote-table letters (tabulatedVotes.csv: A, D, F, H, N, S)
        "n": Emotion.NEUTRAL, "h": Emotion.HAPPY, "s": Emotion.SAD, "a": Emotion.ANGRY,
        "f": Emotion.FEARFUL, "d": Emotion.DISGUSTED,
    },
    "ravdess": {
        "01": Emotion.NEUTRAL, "02": Emotion.CALM, "03": Emotion.HAPPY, "04": Emotion.SAD,
        "05": Emotion.ANGRY, "06": Emotion.FEARFUL, "07": Emotion.DISGUSTED,
        "08": Emotion.SURPRISED,
    },
    "emodb": {
        "w": Emotion.ANGRY, "l": Emotion.BORED, "e": Emotion.DISGUSTED, "a": Emotion.FEARFUL,
        "f": Emotion.HAPPY, "t": Emotion.SAD, "n": Emotion.NEUTRAL,
    },
    "turevdb": {
        "angry": Emotion.ANGRY, "calm": Emotion.CALM, "happy": Emotion.HAPPY, "sad": Emotion.SAD,
    },
    "goemotions": {
        "anger": Emotion.ANGRY, "disgust": Emotion.DISGUSTED, "fear": Emotion.FEARFUL,
        "joy": Emotion.HAPPY, "neutral": Emotion.NEUTRAL, "sadness": Emotion.SAD,
        "surprise": Emotion.SURPRISED,
    },
}
LABEL_TABLE["emocontext"] = {
    "happy": Emotion.HAPPY, "sad": Emotion.SAD, "angry": Emotion.ANGRY, "others": Emotion.OTHER,
}
# The emotions a corpus can name, by loader name; a corpus absent here may name any class.
# Partial-label training computes a corpus's loss over the classes it can name only (IEMOCAP's
# transcripts never say surprise, fear or disgust, so they are neither right nor wrong there), and
# spreads Emotion.OTHER over the classes the corpus does not name.
CORPUS_EMOTIONS: dict[str, frozenset[Emotion]] = {
    "iemocap-text": frozenset({Emotion.NEUTRAL, Emotion.HAPPY, Emotion.EXCITED, Emotion.SAD,
                               Emotion.ANGRY, Emotion.FRUSTRATED}),
    "emocontext": frozenset({Emotion.HAPPY, Emotion.SAD, Emotion.ANGRY, Emotion.OTHER}),
    "turevdb": frozenset({Emotion.ANGRY, Emotion.CALM, Emotion.HAPPY, Emotion.SAD}),
    "emodb": frozenset({Emotion.ANGRY, Emotion.BORED, Emotion.DISGUSTED, Emotion.FEARFUL,
                        Emotion.HAPPY, Emotion.SAD, Emotion.NEUTRAL}),
}
# Layouts whose labels are free text (folders, manifests) use canonical names or any of these.
# "other" is not among them: it is a partial label that only means something where a corpus says
# which emotions it names (EmoContext), so a free-text "other" is excluded and counted.
GENERIC_TABLE: dict[str, Emotion] = {
    **{e.value: e for e in Emotion if e is not Emotion.OTHER},
    **LABEL_TABLE["meld"], **LABEL_TABLE["dailydialog"], **LABEL_TABLE["turevdb"],
    "happiness": Emotion.HAPPY, "anger": Emotion.ANGRY, "sadness": Emotion.SAD,
    "fearful": Emotion.FEARFUL, "disgusted": Emotion.DISGUSTED, "boredom": Emotion.BORED,
    "fear": Emotion.FEARFUL, "disgust": Emotion.DISGUSTED,
}


def canonical(dataset: str, raw: str) -> Emotion | None:
    """Map a dataset's raw label to a canonical emotion; ``None`` when it has no mapping."""
    table = LABEL_TABLE.get(dataset, GENERIC_TABLE)
    return table.get(raw.strip().lower())


@dataclass(frozen=True)
class LabelSet:
    """The classes a model predicts, in output order, and how other emotions fold onto them.

    ``merge`` sends an emotion that is not itself a class onto one that is (``excited`` ->
    ``happy`` in the IEMOCAP 4-class protocol); any other emotion is out of the set.
    """

    name: str
    labels: tuple[str, ...]
    merge: dict[str, str] = field(default_factory=dict)

    def index(self, emotion: Emotion | str | None) -> int | None:
        """Class index of ``emotion`` in this set, or ``None`` when the set excludes it."""
        if emotion is None:
            return None
        name = emotion.value if isinstance(emotion, Emotion) else emotion
        name = self.merge.get(name, name)
        return self.labels.index(name) if name in self.labels else None

    def with_merge(self, extra: dict[str, str]) -> "LabelSet":
        """The same classes with more emotions folded onto them (e.g. frustrated -> angry)."""
        if not extra:
            return self
        for source, target in extra.items():
            if target not in self.labels or GENERIC_TABLE.get(source) is None:
                raise UserError(f"label set {self.name}: cannot merge {source!r} into {target!r}")
        return LabelSet(self.name, self.labels, {**self.merge, **extra})

    def partial_target(self, emotion: Emotion, corpus: str) -> tuple[int, tuple[float, ...], tuple[bool, ...]] | None:
        """Training target of one utterance of ``corpus``, as (label, target [C], support [C]).

        support: the classes the corpus can name (all when it is not in :data:`CORPUS_EMOTIONS`,
        or when it has an "other" label); the loss ignores the rest. target: one-hot, or for
        Emotion.OTHER uniform over the supported classes the corpus does not name, with label
        -1 (no single class). ``None`` when this set cannot represent the emotion.
        """
        everything = set(range(len(self.labels)))
        named = CORPUS_EMOTIONS.get(corpus)
        named_classes = {i for i in map(self.index, named or ()) if i is not None}
        support = everything if named is None or Emotion.OTHER in named else named_classes
        if emotion is Emotion.OTHER:
            candidates, label = everything - named_classes, -1
        else:
            label = self.index(emotion)
            candidates = {label} if label is not None else set()
        if not candidates or (label is not None and label >= 0 and label not in support):
            return None
        target = tuple(1.0 / len(candidates) if i in candidates else 0.0 for i in range(len(self.labels)))
        return label, target, tuple(i in support for i in range(len(self.labels)))


def fold_matrix(source: LabelSet, target: LabelSet) -> np.ndarray:
    """float32 [C_source, C_target]: 1 where a source class folds onto a target class.

    Multiplying a model's probabilities [N, C_source] by it sums them onto the target classes
    (``evaluate --labels core4`` on a seven-class model: surprise, fear and disgust fold onto none
    and drop out; the argmax is taken over what remains).
    """
    matrix = np.zeros((len(source.labels), len(target.labels)), np.float32)
    for i, name in enumerate(source.labels):
        j = target.index(GENERIC_TABLE.get(name, name))
        if j is not None:
            matrix[i, j] = 1.0
    return matrix


LABEL_SETS: dict[str, LabelSet] = {
    # The shipped default: what both the text corpora and the acted-speech corpora support.
    # TurEV-DB's "calm" is scored as neutral (documented in the model card).
    "core4": LabelSet(
        "core4", ("neutral", "happy", "sad", "angry"),
        {"excited": "happy", "calm": "neutral"},
    ),
    # IEMOCAP's six-class protocol of DialogueRNN / COSMIC.
    "iemocap6": LabelSet(
        "iemocap6", ("happy", "sad", "neutral", "angry", "excited", "frustrated"),
    ),
    # The common IEMOCAP four-class protocol (excited counted as happy).
    "iemocap4": LabelSet(
        "iemocap4", ("neutral", "happy", "sad", "angry"), {"excited": "happy"},
    ),
    # MELD / DailyDialog / GoEmotions Ekman classes.
    "ekman7": LabelSet(
        "ekman7",
        ("neutral", "happy", "sad", "angry", "surprised", "fearful", "disgusted"),
    ),
    "emodb7": LabelSet(
        "emodb7", ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "bored"),
    ),
    "turevdb4": LabelSet("turevdb4", ("calm", "happy", "sad", "angry")),
    # The shipped default: Ekman's six plus neutral, under the names users expect. IEMOCAP
    # *excited* counts as happy, TurEV-DB *calm* as neutral; IEMOCAP *frustrated* is context only
    # (the model card gives the validation comparison with frustrated -> angry).
    "emo7": LabelSet(
        "emo7", ("neutral", "happy", "sad", "angry", "surprise", "fear", "disgust"),
        {"excited": "happy", "calm": "neutral", "surprised": "surprise", "fearful": "fear",
         "disgusted": "disgust"},
    ),
    # EmoContext's own classes: everything but happy, sad and angry is "other".
    "emocontext4": LabelSet(
        "emocontext4", ("happy", "sad", "angry", "other"),
        {"excited": "happy", "neutral": "other", "surprised": "other", "fearful": "other",
         "disgusted": "other", "calm": "other", "bored": "other", "frustrated": "other"},
    ),
}


def label_set(name: str) -> LabelSet:
    """The label set called ``name``, or a :class:`UserError` listing them."""
    try:
        return LABEL_SETS[name]
    except KeyError:
        raise UserError(f"unknown label set {name!r}; one of {sorted(LABEL_SETS)}") from None
