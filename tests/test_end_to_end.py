"""The end-to-end benchmark's metrics and renderer (benchmarks/e2e_metrics.py, dialogues.py).

The figures themselves come from ``python benchmarks/end_to_end.py``; these tests check that the
measuring is right: known inputs, known answers.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from benchmarks.dialogues import SETS, read_wav, render, select_dialogues, speakable
from benchmarks.e2e_metrics import (
    MISSED,
    Span,
    TrueTurn,
    aggregate,
    corpus_wer,
    coverage,
    exclamations,
    normalise,
    normalise_basic,
    number_words,
    score_dialogue,
)
from models.audio import SAMPLE_RATE
from models.data.sample import Sample
from models.labels import Emotion

LABELS = ("neutral", "happy", "sad", "angry")
TURNS = [
    TrueTurn(0.5, 2.0, "Hello there.", "A", 0),
    TrueTurn(2.5, 4.0, "I am so happy today!", "B", 1),
    TrueTurn(4.5, 6.0, "That's wonderful.", "A", 1),
    TrueTurn(6.5, 8.0, "But I lost my keys.", "B", 2),
]


def spans_from(turns, speakers=None, emotions=None):
    """Perfect spans for ``turns``, optionally with other speakers / emotions."""
    return [
        Span(t.start, t.end, t.text, (speakers or {}).get(i, t.speaker), (emotions or {}).get(i, LABELS[t.label]))
        for i, t in enumerate(turns)
    ]


def test_number_words():
    assert number_words(0) == "zero"
    assert number_words(42) == "forty two"
    assert number_words(1000) == "one thousand"
    assert number_words(2305) == "two thousand three hundred five"


def test_normalise_basic_numbers_punctuation_case():
    assert normalise_basic("It's 5 blocks away, OK?") == "its five blocks away ok"
    assert normalise_basic("1,000 Yuan. [LAUGHTER] Well-known 3.5%") == "one thousand yuan well known three point five percent"
    assert normalise_basic("Don\u2019t") == normalise_basic("don't") == "dont"
    assert normalise_basic("$10.00 an hour") == normalise_basic("$10 an hour") == "ten dollars an hour"


def test_normalise_whisper_english_spelling_years_contractions():
    assert normalise("My favourite year: nineteen eighty-eight.") == normalise("my favorite year, 1988") == "my favorite year 1988"
    assert normalise("Marvellous colour!") == "marvelous color"
    assert normalise("Don\u2019t") == normalise("don't") == normalise("do not") == "do not"
    assert normalise("$10.00 an hour") == normalise("ten dollars an hour") == "$10 an hour"
    assert normalise("Uh, [LAUGHTER] well-known") == "well known"


def test_corpus_wer_normalisers_differ_only_in_rules():
    assert corpus_wer(["my favourite colour"], ["my favorite color"]) == 0.0
    assert corpus_wer(["my favourite colour"], ["my favorite color"], normalise_basic) == pytest.approx(2 / 3)


def test_corpus_wer():
    assert corpus_wer(["Hello, there!"], ["hello there"]) == 0.0
    # one substitution over 4 + 2 reference words, summed over the corpus
    assert corpus_wer(["a b c d", "e f"], ["a b x d", "e f"]) == pytest.approx(1 / 6)
    assert corpus_wer(["one two"], [""]) == 1.0
    assert corpus_wer(["[LAUGHTER]"], ["ha"]) == 0.0  # nothing said: skipped


def test_exclamations_count_turns_not_marks():
    said = exclamations(["Stop it! Now!", "Hello.", "Great!", "Fine."], ["Stop it. Now!", "Hello!", "Great.", "Fine."])
    assert said == {"reference": 2, "hypothesis": 2, "both": 1, "recall": 0.5, "precision": 0.5}
    assert exclamations(["Hi."], ["Hi."])["recall"] is None and exclamations(["Hi."], ["Hi."])["precision"] is None


def test_coverage_unions_overlapping_spans():
    turn = TrueTurn(1.0, 3.0, "", "A", 0)
    assert coverage(turn, [Span(0.0, 1.5, "", "A", "neutral"), Span(1.2, 2.0, "", "A", "neutral")]) == pytest.approx(0.5)
    assert coverage(turn, [Span(3.5, 4.0, "", "A", "neutral")]) == 0.0


def test_perfect_output_scores_perfectly():
    result = aggregate([score_dialogue(TURNS, spans_from(TURNS), LABELS)], LABELS)
    assert result["segmentation_recall"] == 1.0
    assert result["wer"] == 0.0
    assert result["speaker_accuracy"] == 1.0
    assert result["ua"] == 1.0 and result["wf1"] == 1.0
    assert result["change_turns"] == 2 and result["change_accuracy"] == 1.0


def test_pipeline_exclamations_read_each_turns_matched_utterance():
    spans = spans_from(TURNS)
    spans[1] = replace(spans[1], text="I am so happy today.")  # the "!" lost
    spans[3] = replace(spans[3], text="But I lost my keys!")  # one written where none was said
    result = aggregate([score_dialogue(TURNS, spans, LABELS)], LABELS)
    assert result["exclamations"] == {"reference": 1, "hypothesis": 1, "both": 0, "recall": 0.0, "precision": 0.0}
    perfect = aggregate([score_dialogue(TURNS, spans_from(TURNS), LABELS)], LABELS)["exclamations"]
    assert perfect["recall"] == perfect["precision"] == 1.0


def test_speaker_accuracy_is_swap_invariant():
    swapped = spans_from(TURNS, speakers={i: "B" if t.speaker == "A" else "A" for i, t in enumerate(TURNS)})
    one_wrong = spans_from(TURNS, speakers={0: "B"})
    assert aggregate([score_dialogue(TURNS, swapped, LABELS)], LABELS)["speaker_accuracy"] == 1.0
    assert aggregate([score_dialogue(TURNS, one_wrong, LABELS)], LABELS)["speaker_accuracy"] == 0.75


def test_revised_speaker_accuracy_reads_the_latest_revision():
    wrong_then_revised = [replace(s, speaker="A", revised_speaker="B") if i == 1 else s
                          for i, s in enumerate(spans_from(TURNS))]
    figures = aggregate([score_dialogue(TURNS, wrong_then_revised, LABELS)], LABELS)
    assert (figures["speaker_accuracy"], figures["speaker_accuracy_revised"]) == (0.75, 1.0)


def test_missed_turn_counts_wrong_and_merged_turns_share_one_span():
    missed = spans_from(TURNS)[:3]
    score = score_dialogue(TURNS, missed, LABELS)
    assert score.y_pred[-1] == MISSED
    result = aggregate([score], LABELS)
    assert result["segmentation_recall"] == 0.75 and result["missed_scored_turns"] == 1
    assert result["per_class_recall"]["sad"] == 0.0
    merged = [Span(0.4, 4.1, "hello there i am so happy today", "A", "happy")] + spans_from(TURNS)[2:]
    score = score_dialogue(TURNS, merged, LABELS)
    assert score.y_pred[:2] == (1, 1)  # both turns read the merged span's emotion
    assert aggregate([score], LABELS)["segmentation_recall"] == 1.0


def test_change_accuracy_counts_only_changes():
    wrong_on_change = spans_from(TURNS, emotions={1: "neutral"})  # turn 1 changes neutral -> happy
    result = aggregate([score_dialogue(TURNS, wrong_on_change, LABELS)], LABELS)
    assert result["change_accuracy"] == 0.5


def test_speakable_detokenises_corpus_text():
    assert speakable("Well , that ' s too far . Can you change it ?") == "Well, that's too far. Can you change it?"
    assert speakable("Okay. [BREATHING]") == "Okay."


def dialogue_of(lines: list[tuple[str, str, str, Emotion]]) -> list[Sample]:
    """One dialogue "d" of (speaker, text, raw label, emotion) lines."""
    return [
        Sample(id=f"d:{i}", dataset="t", raw_label=raw, label=label, speaker=who, dialogue="d", turn=i, text=text)
        for i, (who, text, raw, label) in enumerate(lines)
    ]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (apt install espeak-ng)")
def test_render_tiny_dialogue(tmp_path):
    samples = dialogue_of([
        ("x", "Good morning.", "neu", Emotion.NEUTRAL),
        ("y", "I am furious with you!", "ang", Emotion.ANGRY),
        ("x", "Why?", "sur", Emotion.SURPRISED),
    ])
    rec = render("tiny", samples, 0, seed=0, out_dir=tmp_path)
    (mono, rate), (stereo, _) = read_wav(rec.mono), read_wav(rec.stereo)
    mono = mono[:, 0]
    assert rate == SAMPLE_RATE and stereo.shape == (len(mono), 2)
    assert [t.speaker for t in rec.turns] == ["A", "B", "A"]
    assert [t.label for t in rec.turns] == ["neutral", "angry", None]  # surprise is not core4
    for a, b in zip(rec.turns, rec.turns[1:]):
        assert a.end < b.start
    for t in rec.turns:  # the turn boundaries are the speech boundaries; the other channel is silent
        inside = mono[round(t.start * SAMPLE_RATE) : round(t.end * SAMPLE_RATE)]
        assert np.abs(inside[:5]).max() > 1e-3 and np.abs(inside[-5:]).max() > 1e-3
        assert not stereo[round(t.start * SAMPLE_RATE) : round(t.end * SAMPLE_RATE), 1 if t.speaker == "A" else 0].any()
    gap = mono[round(rec.turns[0].end * SAMPLE_RATE) + 1 : round(rec.turns[1].start * SAMPLE_RATE) - 1]
    assert not gap.any()
    again = render("tiny", samples, 0, seed=0, out_dir=tmp_path)  # cached: same truth
    assert again.turns == rec.turns
    relabelled = [*samples[:2], replace(samples[2], raw_label="sad", label=Emotion.SAD)]
    assert render("tiny", relabelled, 0, seed=0, out_dir=tmp_path).turns[2].label == "sad"  # stale cache re-rendered
    fresh = render("tiny", samples, 0, seed=0, out_dir=tmp_path / "again")  # re-rendered: same audio
    assert np.array_equal(read_wav(fresh.mono)[0][:, 0], mono)
    # The metric code on the render: the truth scored against itself is perfect.
    truth = [TrueTurn(t.start, t.end, t.text, t.speaker, LABELS.index(t.label) if t.label else None) for t in rec.turns]
    result = aggregate([score_dialogue(truth, spans_from([t for t in truth if t.label is not None]) +
                                       [Span(truth[2].start, truth[2].end, truth[2].text, "A", "neutral")], LABELS)], LABELS)
    assert result["wer"] == 0.0 and result["segmentation_recall"] == 1.0 and result["ua"] == 1.0


def test_written_set_is_read_from_the_repository_whatever_the_data_root():
    chosen = select_dialogues(SETS["written"], Path("/nonexistent/data"), 6, seed=0)
    assert len(chosen) == 6 and len({d[0].dialogue for d in chosen}) == 6
    assert all(d[0].dataset == "written" and len({s.speaker for s in d}) == 2 for d in chosen)
    assert {s.label for d in chosen for s in d} == {Emotion.NEUTRAL, Emotion.HAPPY, Emotion.SAD, Emotion.ANGRY}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (apt install espeak-ng)")
def test_true_turn_rows_for_the_loss_split(tmp_path):
    """benchmarks/asr_dialogues.py --true-turns: the true turns with their spoken text, and with
    what the real transcriber makes of each turn's span."""
    from benchmarks.asr_dialogues import transcriber, true_turn_lines

    samples = dialogue_of([
        ("x", "Good morning, how are you?", "neu", Emotion.NEUTRAL),
        ("y", "I am really happy today.", "hap", Emotion.HAPPY),
        ("x", "Why is that?", "sur", Emotion.SURPRISED),
    ])
    rec = render("tiny", samples, 0, seed=0, out_dir=tmp_path / "tiny")
    details = [{"dialogue": rec.dialogue}]
    spoken = true_turn_lines("tiny", details, tmp_path, None)
    assert [(r["turn"], r["speaker"], r["text"], r.get("label")) for r in spoken] == [
        (0, "A", "Good morning, how are you?", "neutral"), (1, "B", "I am really happy today.", "happy"),
        (2, "A", "Why is that?", None)]  # surprise is context only
    heard = true_turn_lines("tiny", details, tmp_path, transcriber(None, None))
    assert [(r["turn"], r["speaker"], r.get("label")) for r in heard] == [(r["turn"], r["speaker"], r.get("label")) for r in spoken]
    assert corpus_wer([r["text"] for r in spoken], [r["text"] for r in heard]) < 0.5
