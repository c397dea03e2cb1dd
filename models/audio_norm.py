"""Per-speaker online normalisation of acoustic vectors, as a live session can compute it.

Across speakers and languages an emotion classifier on raw acoustic vectors collapses onto one or
two classes: each voice (and each corpus) shifts the vectors as a whole. Standardising every
speaker's vectors by that speaker's own statistics removes the shift (issue 9.5, model card
section 2: +8 UA across languages). A live session knows only the utterances heard so far, so the
statistics are *running* ones, shrunk towards the training speakers' statistics, which count as
``prior_clips`` clips of every new speaker: the first utterance of a speaker is standardised
almost by the prior alone, later ones more and more by the speaker's own. Labels are never used.

One implementation serves every door: :class:`SpeakerNormaliser` is fed one utterance at a time
(the streaming pipeline, key = the attributed speaker), and :func:`normalise_sessions` feeds it
whole clip sets in a seeded random order per speaker (training, ``evaluate``, cross-validation).
No I/O here.

Since round 11 the shrinking can go through the session (``NormPrior.session_clips`` > 0): a
speaker's statistics shrink towards the running statistics of every utterance the session has
heard (all its speakers), and only those shrink towards the training prior. A recording chain or a
language the training clips never had moves every speaker's vectors alike, so a new speaker's
first utterances are then standardised by what this session sounds like, not by what the training
corpora sounded like (model card, "Round 11, audio": with 10-clip speakers and the prior alone,
an unseen language collapsed onto one class).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .data.sample import Sample

PRIOR_CLIPS = 10.0  # the training statistics count as this many clips of every speaker
EPS = 1e-5  # added to standard deviations


@dataclass(frozen=True)
class NormPrior:
    """Training speakers' statistics: mean [D] and standard deviation [D] of the raw vectors,
    and how many clips of a new speaker they count as. keep_raw: the output is the raw vector
    and the normalised one side by side [2D] (a reader such as the audio gate keeps the cues
    that normalisation removes). session_clips: 0 = a speaker's statistics shrink towards these
    as ``clips`` clips; > 0 = they shrink (as ``clips`` clips) towards the session's running
    statistics over every speaker, which shrink towards these as ``session_clips`` clips."""

    mean: np.ndarray
    std: np.ndarray
    clips: float = PRIOR_CLIPS
    keep_raw: bool = False
    session_clips: float = 0.0

    @classmethod
    def of(cls, x: np.ndarray, clips: float = PRIOR_CLIPS, keep_raw: bool = False,
           session_clips: float = 0.0) -> "NormPrior":
        """The pooled statistics of raw vectors x [N, D]."""
        x = np.asarray(x, dtype=np.float64)
        return cls(x.mean(0), x.std(0), clips, keep_raw, session_clips)


class SpeakerNormaliser:
    """Running mean and variance per speaker key, shrunk towards a prior (directly, or through
    the session's statistics over every key: ``NormPrior.session_clips``); one per session.

    ``normalise(key, x)`` standardises one raw vector x [D] of speaker ``key`` by the statistics
    of that speaker's vectors so far, this one included (``update=True`` adds it; ``False``
    leaves the statistics as they were, for a provisional result). Returns float32 [D], or
    [2D] (raw, normalised) with ``prior.keep_raw``.
    """

    SESSION = object()  # the key of the session's statistics over every speaker

    def __init__(self, prior: NormPrior) -> None:
        self.prior = prior
        self._n: dict[Hashable, int] = {}
        self._sum: dict[Hashable, np.ndarray] = {}  # [D] float64
        self._sum_sq: dict[Hashable, np.ndarray] = {}  # [D] float64

    def _shrunk(self, key: Hashable, x: np.ndarray, update: bool, clips: float, mean: np.ndarray,
                second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and second moment [D] of ``key``'s vectors so far with x [D], pooled with
        (mean, second) counted as ``clips`` vectors; ``update`` adds x to ``key``'s sums."""
        n = self._n.get(key, 0) + 1
        total = self._sum.get(key, 0.0) + x
        total_sq = self._sum_sq.get(key, 0.0) + x * x
        if update:
            self._n[key], self._sum[key], self._sum_sq[key] = n, total, total_sq
        return (clips * mean + total) / (clips + n), (clips * second + total_sq) / (clips + n)

    def normalise(self, key: Hashable, x: np.ndarray, update: bool = True) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        p = self.prior
        mean, second = p.mean, p.std ** 2 + p.mean ** 2
        if p.session_clips:
            mean, second = self._shrunk(self.SESSION, x, update, p.session_clips, mean, second)
        mean, second = self._shrunk(key, x, update, p.clips, mean, second)
        std = np.sqrt(np.maximum(second - mean ** 2, 0.0)) + EPS
        z = (x - mean) / std
        return (np.concatenate([x, z]) if p.keep_raw else z).astype(np.float32)

    def clips_of(self, key: Hashable) -> int:
        """How many vectors of ``key`` the statistics hold."""
        return self._n.get(key, 0)


def sample_sessions(samples: Sequence["Sample"]) -> tuple[list[str], bool]:
    """How a live session meets a corpus's clips: each sample's session key, and whether the
    order of ``samples`` is the sessions' order (for :func:`normalise_sessions`). Dialogues
    (e.g. rendered ones): one session per dialogue and speaker, in the corpus's turn order;
    clips without a dialogue (acted corpora, folders): one session per speaker, in a random
    order (a speaker "unknown" is one session over all such clips). The keys are
    ``dataset|speaker`` and ``dataset|dialogue|speaker``: :func:`session_of` reads the
    conversation they belong to (a dialogue; a corpus of clips is heard as one)."""
    if all(s.dialogue is not None for s in samples):
        return [f"{s.dataset}|{s.dialogue}|{s.speaker}" for s in samples], True
    return [f"{s.dataset}|{s.speaker}" for s in samples], False


def session_of(key: Hashable) -> str:
    """The conversation a :func:`sample_sessions` key is a speaker of: the key without its last
    ``|`` part ("emodb|03" -> "emodb", "manifest|d7|A" -> "manifest|d7"); a key without one is
    a conversation of its own."""
    return str(key).rsplit("|", 1)[0]


def normalise_sessions(x: np.ndarray, keys: Sequence[Hashable], prior: NormPrior, seed: int = 0,
                       ordered: bool = False) -> np.ndarray:
    """Every key's vectors as one session each: x [N, D], keys [N] -> float32 [N, D] ([N, 2D]
    with ``prior.keep_raw``).

    Each key's rows are fed to a :class:`SpeakerNormaliser` in a seeded random order (a file
    order often sorts by label, which would leak into the running statistics), or in the given
    order with ``ordered`` (e.g. the turns of a dialogue). Keys are sessions apart: one key's
    clips never move another's statistics. With ``prior.session_clips`` the keys of one
    conversation (:func:`session_of`) share a normaliser, whose session statistics they all
    feed: all of that conversation's rows in one seeded random order (or the given order), its
    speakers taking turns.
    """
    keys = np.asarray(keys)
    out = np.empty((len(x), x.shape[1] * (2 if prior.keep_raw else 1)), dtype=np.float32)
    rng = np.random.default_rng(seed)
    # One normaliser per speaker, or per conversation when speakers shrink towards its statistics.
    groups = np.array([session_of(k) for k in keys]) if prior.session_clips else keys
    for group in np.unique(groups):
        normaliser = SpeakerNormaliser(prior)
        rows = np.flatnonzero(groups == group)
        for row in rows if ordered else rows[rng.permutation(len(rows))]:
            out[row] = normaliser.normalise(keys[row], x[row])
    return out
