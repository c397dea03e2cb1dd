"""Text as the pipeline's transcriber tends to write it: a training augmentation measured from data.

Whisper (tiny.en, as the pipeline runs it) rarely writes "!" from speech, often runs two
sentences together with a comma, sometimes misses a question, adds a "!" of its own now and then,
and leaves out most "uh"s and "um"s. A text model trained on corpus text learns "!" as its cue for
anger and joy and loses it end to end (round 5: written dev UA .756 as written, .690 with every
"!" turned into "."). :func:`whisper_form` rewrites a training text the way Whisper tends to:
every punctuation mark after a word is redrawn from :data:`PUNCTUATION`, and the filler words of
:data:`DROPPED` are left out at their measured rates.

Both tables are measured, not guessed: ``python scripts/whisper_style_table.py runs/r6/heard-all.jsonl``
aligns the text espeak-ng read with Whisper's transcript of it for the 2,015 turns of training
dialogues of round 6 (``scripts/heard_text.py``: IEMOCAP, MELD, DailyDialog and RECCON train splits), and
prints the share of each transcript mark given the spoken mark. Words themselves (misheard words)
are not imitated: only the pipeline's own transcripts (``objectives.heard_text``) have those.
"""

from __future__ import annotations

import random
import re

# (position, mark after the word in the text) -> {mark Whisper writes there: share}. Marks: "" (none),
# ",", ".", "!", "?", "..."; ";", ":" and dashes count as ","; "final" is a turn's last word.
PUNCTUATION: dict[tuple[str, str], dict[str, float]] = {
    ("final", ""): {".": 0.48, "...": 0.25, "": 0.15, "!": 0.08, "?": 0.03},  # n 60
    ("final", "."): {".": 0.75, "!": 0.13, "": 0.07, "...": 0.02, "?": 0.01},  # n 934
    ("final", "!"): {".": 0.66, "!": 0.15, "": 0.13, "...": 0.03, "?": 0.02},  # n 124
    ("final", "?"): {"?": 0.75, ".": 0.16, "": 0.04, "...": 0.03, "!": 0.02, ",": 0.01},  # n 347
    ("final", ","): {"...": 0.48, ".": 0.29, "": 0.14, "?": 0.07, "!": 0.02},  # n 42 (mostly dashes)
    ("final", "..."): {"": 0.29, "...": 0.29, ",": 0.14, "?": 0.14, ".": 0.14},  # n 7
    ("inner", "."): {".": 0.54, ",": 0.32, "": 0.10, "!": 0.03},  # n 728
    ("inner", "!"): {".": 0.42, ",": 0.36, "!": 0.19, "": 0.03},  # n 129
    ("inner", "?"): {"?": 0.60, ",": 0.23, "": 0.10, ".": 0.08},  # n 124
    ("inner", ","): {",": 0.59, "": 0.32, ".": 0.07, "?": 0.01, "!": 0.01},  # n 1097
    ("inner", "..."): {"": 0.38, ",": 0.31, ".": 0.19, "...": 0.06, "?": 0.06},  # n 16
    ("inner", ""): {"": 0.99, ",": 0.01},  # n 13888
}

# filler word (lower case) -> share of its occurrences the transcript leaves out
DROPPED: dict[str, float] = {"uh": 0.88, "um": 0.73, "umm": 1.0, "hmm": 1.0}  # n 32, 22, 14, 6

_TOKEN = re.compile(r"\[[^\]]*\]|[A-Za-z0-9]+(?:'[A-Za-z]+)*|[.!?,;:\-]+")


def _mark(run: str) -> str:
    """The mark class of a punctuation run: "?!" -> "?", "!!" -> "!", "..." -> "...", ";" -> ","."""
    if "?" in run:
        return "?"
    if "!" in run:
        return "!"
    if run.startswith(".."):
        return "..."
    return "." if run.startswith(".") else ","


def split_words(text: str) -> list[tuple[str, str]]:
    """(word, mark after it) pairs of a text; corpus tokenisation ("it ' s", "Hello , sir .") and
    typographic apostrophes undone, bracketed noises ("[LAUGHTER]") and marks before any word dropped."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\x92", "'").replace("\u2026", "...")
    text = re.sub(r"\s*'\s*(s|t|re|ve|ll|d|m)\b", r"'\1", text)
    out: list[tuple[str, str]] = []
    for token in _TOKEN.findall(text):
        if token[0].isalnum():
            out.append((token, ""))
        elif token[0] != "[" and out and not out[-1][1]:
            out[-1] = (out[-1][0], _mark(token))
    return out


def _draw(shares: dict[str, float], rng: random.Random) -> str:
    return rng.choices(list(shares), weights=list(shares.values()))[0]


def whisper_form(text: str, rng: random.Random) -> str:
    """``text`` as Whisper tends to write it when it hears it spoken (module docstring); the text
    itself where it has no words. Deterministic for a given ``rng`` state."""
    words = []
    for word, mark in split_words(text):
        if word.lower() in DROPPED and rng.random() < DROPPED[word.lower()]:
            if mark and words and not words[-1][1]:
                words[-1] = (words[-1][0], mark)  # "Well, uh... no" -> "Well... no"
            continue
        words.append((word, mark))
    if not words:
        return text
    out = []
    for i, (word, mark) in enumerate(words):
        shares = PUNCTUATION.get(("final" if i == len(words) - 1 else "inner", mark))
        out.append(word + (_draw(shares, rng) if shares else mark))
    return " ".join(out)
