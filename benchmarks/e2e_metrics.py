"""Metrics of the end-to-end benchmark: what the pipeline said against what was spoken.

Definitions (also in docs/benchmarks.md, "End to end from speech"):

- **segmentation recall**: share of true turns covered for at least ``MIN_COVER`` (50 %) of their
  duration by the union of the emitted utterances' [start, end] spans.
- **match**: each true turn takes the emitted utterance that overlaps it most in time; a turn
  overlapped by none is *missed*. Speaker and emotion are read from the matched utterance (one
  utterance can serve two turns when the VAD merged them).
- **corpus WER**: per dialogue, the reference is the spoken turns joined in order and the
  hypothesis the emitted texts joined in time order, both normalised by :func:`normalise` (Whisper's
  English normaliser); errors are summed over the corpus (jiwer) and divided by the reference
  words. ``wer_basic`` is the same with :func:`normalise_basic`, the normaliser used before round 4.
- **"!" recall / precision**: of the turns whose spoken text has an exclamation mark, the share
  whose transcript has one too; of the transcripts with one, the share whose spoken text has one
  (per turn, not per mark). On the true segments the transcript is the turn's own; in a pipeline
  run it is the matched utterance's (which may hold a neighbouring turn the VAD merged with it).
- **speaker accuracy**: share of matched turns whose speaker is right under the better of the two
  labelings (A/B as is, or swapped) of each dialogue, as each utterance was emitted; **revised**:
  the same with the speakers as the stream's later ``speaker_revisions`` name them.
- **UA / WF1**: over the turns whose corpus label the model's label set holds; a missed turn counts
  as wrong (predicted class -1). **change accuracy**: accuracy on the scored turns whose class
  differs from the previous scored turn's in the same dialogue.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

MIN_COVER = 0.5  # a turn is found when emitted utterances cover this share of it
MISSED = -1  # predicted class of a turn no utterance overlaps

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
         "fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


@dataclass(frozen=True)
class Span:
    """What the pipeline emitted for one utterance (times in seconds of the recording)."""

    start: float
    end: float
    text: str
    speaker: str
    emotion: str
    revised_speaker: str | None = None  # the speaker the stream's latest revision names; None: unrevised


@dataclass(frozen=True)
class TrueTurn:
    """What was spoken: times in seconds; ``label`` the class index, or None when not scored."""

    start: float
    end: float
    text: str
    speaker: str
    label: int | None


def number_words(n: int) -> str:
    """Non-negative integer as spoken ("1000" -> "one thousand"); up to 999,999,999."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    for size, name in ((10**6, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            rest = n % size
            return f"{number_words(n // size)} {name}" + ("" if rest == 0 else " " + number_words(rest))
    raise AssertionError("unreachable")


def _spoken_number(match: re.Match[str]) -> str:
    whole, _, fraction = match.group(0).replace(",", "").partition(".")
    words = number_words(int(whole)) if len(whole) <= 9 else " ".join(_ONES[int(d)] for d in whole)
    return words + ("" if not fraction else " point " + " ".join(_ONES[int(d)] for d in fraction))


@cache
def _english_normaliser() -> Callable[[str], str]:
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalise(text: str) -> str:
    """Text for WER: Whisper's English normaliser (``whisper-normalizer``, the rules and the
    British->American spelling map of OpenAI's ``EnglishTextNormalizer``): lowercase; spelled-out
    numbers as digits ("nineteen eighty-eight" -> "1988", "ten dollars" -> "$10"); contractions
    expanded ("don't" -> "do not"); "favourite" -> "favorite"; fillers ("uh", "hmm") and bracketed
    noises dropped; punctuation becomes spaces. A curly apostrophe is read as a straight one (the
    normaliser would split "don’t" into "don t")."""
    return _english_normaliser()(text.replace("\u2019", "'"))


def normalise_basic(text: str) -> str:
    """Text for WER as scored before round 4 (``wer_basic``): lowercase; numbers as spoken
    ("5" -> "five", "3.5" -> "three point five", "1,000" -> "one thousand", "%" -> "percent",
    "$10.00" -> "ten dollars"); apostrophes dropped ("don't" -> "dont"); hyphens, other
    punctuation and bracketed noises ("[LAUGHTER]") become spaces. No spelling map."""
    text = text.lower().replace("\u2019", "'").replace("%", " percent ")
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\$(\d[\d,]*)(\.00)?", r"\1 dollars", text)
    text = re.sub(r"\d[\d,]*(\.\d+)?", lambda m: " " + _spoken_number(m) + " ", text)
    text = text.replace("'", "")
    text = re.sub(r"[^a-z ]+", " ", text)
    return " ".join(text.split())


def corpus_wer(references: Sequence[str], hypotheses: Sequence[str],
               normaliser: Callable[[str], str] = normalise) -> float:
    """Word errors summed over all pairs / reference words, after ``normaliser``.

    Pairs whose normalised reference is empty are skipped (nothing was said to get right).
    """
    import jiwer

    pairs = [(normaliser(r), normaliser(h)) for r, h in zip(references, hypotheses, strict=True)]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        return 0.0
    refs, hyps = zip(*pairs)
    return float(jiwer.wer(list(refs), list(hyps)))


def exclamations(references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, float | int | None]:
    """How the hypotheses' "!" meet the references', per pair (turn): counts of pairs with "!" in
    the reference, in the hypothesis, in both; recall = both / reference, precision = both /
    hypothesis (None when the denominator is 0)."""
    said = [("!" in r, "!" in h) for r, h in zip(references, hypotheses, strict=True)]
    reference, written, both = (sum(r for r, _ in said), sum(h for _, h in said), sum(r and h for r, h in said))
    return {
        "reference": reference, "hypothesis": written, "both": both,
        "recall": both / reference if reference else None, "precision": both / written if written else None,
    }


def overlap(a_start: float, a_end: float, b_start: float, b_end: float) -> float:
    """Seconds that [a_start, a_end] and [b_start, b_end] share."""
    return max(0.0, min(a_end, b_end) - max(a_start, b_start))


def coverage(turn: TrueTurn, spans: Sequence[Span]) -> float:
    """Share of the turn's duration covered by the union of ``spans`` (0..1)."""
    pieces = sorted((max(s.start, turn.start), min(s.end, turn.end)) for s in spans if overlap(s.start, s.end, turn.start, turn.end) > 0)
    covered, reach = 0.0, turn.start
    for start, end in pieces:
        covered += max(0.0, end - max(start, reach))
        reach = max(reach, end)
    return covered / max(turn.end - turn.start, 1e-9)


def best_match(turn: TrueTurn, spans: Sequence[Span]) -> int | None:
    """Index of the span overlapping ``turn`` most, or None when none overlaps it."""
    best, most = None, 0.0
    for i, span in enumerate(spans):
        shared = overlap(span.start, span.end, turn.start, turn.end)
        if shared > most:
            best, most = i, shared
    return best


@dataclass(frozen=True)
class DialogueScore:
    """Per-turn outcomes for one dialogue, in turn order (aggregated by :func:`aggregate`)."""

    found: tuple[bool, ...]  # covered >= MIN_COVER
    speaker_correct: int  # matched turns with the right speaker, best A/B mapping
    speaker_matched: int  # matched turns
    revised_speaker_correct: int  # the same, with the speakers as finally revised
    y_true: tuple[int, ...]  # scored turns only
    y_pred: tuple[int, ...]  # MISSED where no span overlaps
    change: tuple[bool, ...]  # scored turn whose class differs from the previous scored turn's
    reference: str  # the spoken text, turns joined
    matched_texts: tuple[tuple[str, str], ...]  # (turn's text, its matched utterance's text) per matched turn
    hypothesis: str  # the emitted text, spans joined in time order


def score_dialogue(turns: Sequence[TrueTurn], spans: Sequence[Span], labels: Sequence[str]) -> DialogueScore:
    """Compare one dialogue's emitted spans with its true turns. labels: the model's classes."""
    spans = sorted(spans, key=lambda s: s.start)
    matches = [best_match(t, spans) for t in turns]
    matched = sum(m is not None for m in matches)

    def correct(speaker_of: Callable[[Span], str]) -> int:
        """Matched turns whose speaker is right, under the better of the two A/B labelings."""
        same = sum(speaker_of(spans[m]) == t.speaker for t, m in zip(turns, matches) if m is not None)
        return max(same, matched - same)

    y_true, y_pred, change, previous = [], [], [], None
    for turn, m in zip(turns, matches):
        if turn.label is None:
            continue
        emotion = spans[m].emotion if m is not None else None
        y_true.append(turn.label)
        y_pred.append(labels.index(emotion) if emotion in labels else MISSED)
        change.append(previous is not None and turn.label != previous)
        previous = turn.label
    return DialogueScore(
        found=tuple(coverage(t, spans) >= MIN_COVER for t in turns),
        speaker_correct=correct(lambda span: span.speaker), speaker_matched=matched,
        revised_speaker_correct=correct(lambda span: span.revised_speaker or span.speaker),
        y_true=tuple(y_true), y_pred=tuple(y_pred), change=tuple(change),
        reference=" ".join(t.text for t in turns), hypothesis=" ".join(s.text for s in spans),
        matched_texts=tuple((t.text, spans[m].text) for t, m in zip(turns, matches) if m is not None),
    )


def aggregate(scores: Sequence[DialogueScore], labels: Sequence[str]) -> dict[str, float | int]:
    """Set-level figures from per-dialogue scores (module docstring: definitions)."""
    from models.metrics import score

    found = [f for s in scores for f in s.found]
    y_true = np.array([y for s in scores for y in s.y_true], dtype=int)
    y_pred = np.array([y for s in scores for y in s.y_pred], dtype=int)
    change = np.array([c for s in scores for c in s.change], dtype=bool)
    emotion = score(y_true, y_pred, tuple(labels))
    matched = sum(s.speaker_matched for s in scores)
    pairs = [pair for s in scores for pair in s.matched_texts]
    return {
        "dialogues": len(scores),
        "turns": len(found),
        "scored_turns": int(len(y_true)),
        "change_turns": int(change.sum()),
        "segmentation_recall": float(np.mean(found)) if found else 0.0,
        "wer": corpus_wer([s.reference for s in scores], [s.hypothesis for s in scores]),
        "wer_basic": corpus_wer([s.reference for s in scores], [s.hypothesis for s in scores], normalise_basic),
        "speaker_accuracy": sum(s.speaker_correct for s in scores) / matched if matched else 0.0,
        "speaker_accuracy_revised": sum(s.revised_speaker_correct for s in scores) / matched if matched else 0.0,
        "ua": emotion.ua,
        "wf1": emotion.wf1,
        "change_accuracy": float(np.mean(y_true[change] == y_pred[change])) if change.any() else 0.0,
        "missed_scored_turns": int((y_pred == MISSED).sum()),
        "exclamations": exclamations([r for r, _ in pairs], [h for _, h in pairs]),
        "per_class_recall": {k: v["recall"] for k, v in emotion.per_class.items()},
    }
