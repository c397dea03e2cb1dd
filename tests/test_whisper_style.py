"""Whisper-style text (models.whisper_style) and its use in text-encoder tuning."""

import random
from collections import Counter

from models.whisper_style import PUNCTUATION, split_words, whisper_form


def test_split_words_undoes_corpus_tokenisation_and_keeps_one_mark_per_word():
    assert split_words("Absolutely . She ' s a teacher , isn ' t she ?") == [
        ("Absolutely", "."), ("She's", ""), ("a", ""), ("teacher", ","), ("isn't", ""), ("she", "?")]
    assert split_words("[LAUGHTER] Oh my God!! Really?! I don\u2019t -- know...") == [
        ("Oh", ""), ("my", ""), ("God", "!"), ("Really", "?"), ("I", ""), ("don't", ","), ("know", "...")]
    assert split_words("?!") == [] and split_words("") == []


def test_every_row_of_the_table_is_a_distribution():
    for key, shares in PUNCTUATION.items():
        assert abs(sum(shares.values()) - 1) <= 0.03, key  # shares rounded to 2 places, under 0.5 % left out


def test_whisper_form_mostly_loses_the_exclamation_mark_and_keeps_the_words():
    rng = random.Random(0)
    forms = [whisper_form("That is wonderful! I am so happy!", rng) for _ in range(2000)]
    assert all(f.replace(",", "").replace(".", "").replace("!", "").replace("?", "").split()
               == "That is wonderful I am so happy".split() for f in forms)
    last = Counter(f[-1] if f[-1] in ".!?" else "" for f in forms)
    assert 0.10 < last["!"] / len(forms) < 0.21  # the table: 15 % kept at the end
    assert 0.58 < last["."] / len(forms) < 0.74
    inner = Counter(f.split()[2][-1] for f in forms)  # after "wonderful"
    assert 0.3 < inner[","] / len(forms) < 0.45


def test_whisper_form_drops_fillers_and_is_reproducible():
    forms = [whisper_form("Well, uh, I think so.", random.Random(i)) for i in range(500)]
    assert 0.8 < sum("uh" not in f.split(" ") and "uh," not in f for f in forms) / 500 < 0.96
    text = "Well, uh, I think so."
    assert whisper_form(text, random.Random(7)) == whisper_form(text, random.Random(7))
    assert whisper_form("...", random.Random(0)) == "..."


def test_tuning_examples_carry_both_forms_and_trained_form_picks_them_at_their_rates():
    from models.data.sample import Sample
    from models.labels import Emotion, label_set
    from models.text_tuning import trained_form, training_examples

    labels = label_set("emo7")
    samples = [Sample(id=f"u{i}", dataset="meld", raw_label="anger", text="Stop it! Now!", label=Emotion.ANGRY,
                      dialogue="d", turn=i, speaker="A") for i in range(3)]
    plain = training_examples(samples, labels)
    assert [(e.spoken, e.heard) for e in plain] == [("", "")] * 3
    examples = training_examples(samples, labels, seed=13, heard={"u0": "Stop it now."})
    assert examples[0].heard == "Stop it now." and examples[1].heard == ""
    assert all(e.spoken and e.text == "Stop it! Now!" for e in examples)
    assert examples == training_examples(samples, labels, seed=13, heard={"u0": "Stop it now."})
    rng = random.Random(0)
    assert all(trained_form(e, 0.0, 0.0, rng) is e for e in examples)
    kinds = Counter()
    for _ in range(4000):
        made = trained_form(examples[0], 0.5, 0.5, rng)
        kinds["plain" if made is examples[0] else "heard" if made.text == "Stop it now." else "spoken"] += 1
    assert 0.45 < kinds["heard"] / 4000 < 0.55 and 0.2 < kinds["spoken"] / 4000 < 0.3
    assert {trained_form(examples[1], 1.0, 1.0, rng).text for _ in range(20)} == {examples[1].spoken}
