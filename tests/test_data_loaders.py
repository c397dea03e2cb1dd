"""Dataset loaders on tiny hand-written fixtures in each corpus's real layout.

Text fixtures live in tests/fixtures/data; wav files are generated per test (0.05 s of 16 kHz
silence), since the loaders read only their names and paths.
"""

from __future__ import annotations

import shutil
import wave
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.data import DATASETS, Sample, Split, dialogues, load_dataset
from models.data.sample import normalize_votes
from models.labels import Emotion
from streamer.errors import UserError

FIXTURES = Path(__file__).parent / "fixtures" / "data"


def write_wav(path: Path, seconds: float = 0.05) -> Path:
    """A mono 16-bit 16 kHz wav of silence at ``path`` (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16_000)
        out.writeframes(np.zeros(int(16_000 * seconds), dtype=np.int16).tobytes())
    return path


def fixture_copy(name: str, tmp_path: Path) -> Path:
    """A writable copy of fixture folder ``name`` (so a test can add wavs to it)."""
    return Path(shutil.copytree(FIXTURES / name, tmp_path / name))


def by_id(samples: list[Sample]) -> dict[str, Sample]:
    return {s.id: s for s in samples}


# --- iemocap-text ---------------------------------------------------------------------------


def test_iemocap_text_reads_fields_and_excludes_unmappable():
    result = load_dataset("iemocap-text", FIXTURES / "iemocap_text")
    samples = by_id(result.samples)
    assert set(samples) == {
        "Ses01F_impro01:0", "Ses01F_impro01:1", "Ses02M_script01_1:0",
        "Ses05F_impro03:0", "Ses05F_impro03:1",
    }
    assert result.excluded == {"xxx": 1}
    first = samples["Ses01F_impro01:1"]
    assert (first.speaker, first.label, first.raw_label, first.text, first.split) == (
        "Ses01M", Emotion.FRUSTRATED, "fru", "Do you have your forms?", Split.TRAIN
    )
    assert samples["Ses02M_script01_1:0"].label is Emotion.EXCITED


def test_iemocap_text_accepts_the_file_itself_and_filters_by_split():
    result = load_dataset("iemocap-text", FIXTURES / "iemocap_text" / "iemocap_text.jsonl", "test")
    assert [s.id for s in result.samples] == ["Ses05F_impro03:1", "Ses05F_impro03:0"]
    assert result.excluded == {}
    valid = load_dataset("iemocap-text", FIXTURES / "iemocap_text", "dev").samples
    assert [s.split for s in valid] == ["valid"]


# --- iemocap (full release) -----------------------------------------------------------------


def test_iemocap_release_labels_votes_text_and_turn_order():
    result = load_dataset("iemocap", FIXTURES / "iemocap")
    assert result.excluded == {"xxx": 1}
    samples = by_id(result.samples)
    assert set(samples) == {"Ses01F_impro01_F000", "Ses01F_impro01_M000", "Ses05M_script02_2_M000"}
    neutral, frustrated = samples["Ses01F_impro01_F000"], samples["Ses01F_impro01_M000"]
    # Turns follow start time; the excluded F001 (10.01 s) still took turn 2.
    assert (neutral.turn, frustrated.turn) == (0, 1)
    assert frustrated.speaker == "Ses01M" and neutral.speaker == "Ses01F"
    assert frustrated.text == "Do you have your forms?"
    assert neutral.votes == {"neutral": 1.0}
    # E1 splits its vote between two labels, E3 and M1 vote once, E4's "Other" maps to nothing.
    assert frustrated.votes == pytest.approx({"frustrated": 2.5 / 3, "angry": 0.5 / 3})
    assert frustrated.split == Split.TRAIN and frustrated.dialogue == "Ses01F_impro01"
    sad = samples["Ses05M_script02_2_M000"]
    assert (sad.split, sad.label, sad.speaker) == (Split.TEST, Emotion.SAD, "Ses05M")
    assert sad.votes == pytest.approx({"sad": 2 / 3, "neutral": 1 / 3})
    assert all(s.audio_path is None for s in result.samples)


def test_unlabelled_samples_can_stay_as_dialogue_context():
    result = load_dataset("iemocap", FIXTURES / "iemocap", "train", keep_unlabelled=True)
    assert result.excluded == {"xxx": 1}
    assert [(s.turn, s.label) for s in dialogues(result.samples)[0]] == [
        (0, Emotion.NEUTRAL), (1, Emotion.FRUSTRATED), (2, None),
    ]
    assert dialogues(result.samples)[0][2].votes == {"neutral": 0.5, "angry": 0.5}


def test_iemocap_release_prefers_sentence_wavs_and_falls_back_to_dialog_spans(tmp_path):
    root = fixture_copy("iemocap", tmp_path)
    sentence = write_wav(root / "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav")
    dialog = write_wav(root / "Session1/dialog/wav/Ses01F_impro01.wav")
    samples = by_id(load_dataset("iemocap", root, "train").samples)
    assert samples["Ses01F_impro01_F000"].audio_path == sentence
    assert samples["Ses01F_impro01_F000"].start is None
    spanned = samples["Ses01F_impro01_M000"]
    assert (spanned.audio_path, spanned.start, spanned.end) == (dialog, 8.62, 9.91)


def test_iemocap_release_has_no_valid_split():
    with pytest.raises(UserError, match="no 'valid' split"):
        load_dataset("iemocap", FIXTURES / "iemocap", "valid")


# --- meld -----------------------------------------------------------------------------------


def test_meld_reads_utf8_and_cp1252_csvs():
    result = load_dataset("meld", FIXTURES / "meld")
    samples = by_id(result.samples)
    assert result.excluded == {"<missing>": 1}
    assert samples["train_dia0_utt1"].text == "Oh my God, you\u2019re kidding!"
    assert samples["train_dia0_utt1"].speaker == "meld:The Interviewer"
    assert samples["train_dia0_utt1"].label is Emotion.SURPRISED
    assert samples["train_dia0_utt2"].label is Emotion.HAPPY
    dev = samples["dev_dia0_utt0"]
    assert (dev.split, dev.dialogue) == (Split.VALID, "dev_dia0")
    assert dev.text == "Oh my God, he\u2019s lost it."
    train = load_dataset("meld", FIXTURES / "meld", "train").samples
    assert [len(d) for d in dialogues(train)] == [3, 2]
    # A quoted field may hold a newline and U+2028 without splitting the row.
    assert samples["train_dia1_utt1"].text == "Wait\u2026\u2028what?\nNo."


def test_meld_attaches_clips_when_present(tmp_path):
    root = fixture_copy("meld", tmp_path)
    clip = write_wav(root / "train_splits" / "dia0_utt1.wav")
    (root / "dev_splits_complete").mkdir()
    (root / "dev_splits_complete" / "dia0_utt0.mp4").write_bytes(b"\x00")
    samples = by_id(load_dataset("meld", root).samples)
    assert samples["train_dia0_utt1"].audio_path == clip
    assert samples["dev_dia0_utt0"].audio_path == root / "dev_splits_complete" / "dia0_utt0.mp4"
    assert samples["train_dia0_utt0"].audio_path is None


# --- dailydialog ----------------------------------------------------------------------------


def test_dailydialog_tsv_layout_maps_codes_and_skips_train_without_text():
    result = load_dataset("dailydialog", FIXTURES / "dailydialog")
    samples = by_id(result.samples)
    assert {s.split for s in result.samples} == {Split.VALID, Split.TEST}
    assert len(samples) == 7 and result.excluded == {}
    assert samples["va_0:2"].label is Emotion.ANGRY and samples["va_0:2"].raw_label == "anger"
    assert samples["va_1:1"].label is Emotion.SURPRISED
    assert samples["va_0:1"].speaker == "va_0:1"
    assert samples["va_0:1"].text == "There is one . 5 blocks away from here ?"
    assert samples["te_0:0"].label is Emotion.FEARFUL


def test_dailydialog_mismatched_files_raise(tmp_path):
    root = fixture_copy("dailydialog", tmp_path)
    (root / "dailydialog_test_emotion.tsv").write_text("te_0\t3\n")
    with pytest.raises(UserError, match="te_0 has 2 turns but 1 emotion labels"):
        load_dataset("dailydialog", root)


def test_dailydialog_original_ijcnlp_layout(tmp_path):
    result = load_dataset("dailydialog", FIXTURES / "dailydialog_ijcnlp")
    samples = by_id(result.samples)
    assert [s.label for s in result.samples] == [
        Emotion.DISGUSTED, Emotion.NEUTRAL, Emotion.NEUTRAL, Emotion.ANGRY, Emotion.HAPPY,
    ]
    assert samples["all_1:2"].text == "Come on , you can at least try a little ."
    assert samples["all_1:2"].speaker == "all_1:0" and samples["all_1:2"].split is None
    split_root = tmp_path / "ijcnlp"
    (split_root / "validation").mkdir(parents=True)
    shutil.copy(FIXTURES / "dailydialog_ijcnlp/dialogues_text.txt",
                split_root / "validation/dialogues_validation.txt")
    shutil.copy(FIXTURES / "dailydialog_ijcnlp/dialogues_emotion.txt",
                split_root / "validation/dialogues_emotion_validation.txt")
    valid = load_dataset("dailydialog", split_root, "valid").samples
    assert len(valid) == 5 and valid[0].id == "valid_0:0"


# --- goemotions -----------------------------------------------------------------------------


def test_goemotions_keeps_single_label_rows():
    result = load_dataset("goemotions", FIXTURES / "goemotions")
    assert result.excluded == {"joy,neutral": 1}
    assert [(s.id, s.label, s.split) for s in result.samples] == [
        ("train:eebbqej", Emotion.NEUTRAL, Split.TRAIN),
        ("train:eezlygj", Emotion.ANGRY, Split.TRAIN),
        ("dev:edcu99z", Emotion.SAD, Split.VALID),
    ]


# --- acted speech ---------------------------------------------------------------------------


def test_crema_d_names_text_and_voice_only_votes(tmp_path):
    root = fixture_copy("crema_d", tmp_path)
    for stem in ("1001_DFA_ANG_XX", "1001_IEO_HAP_LO", "1002_TSI_XYZ_XX"):
        write_wav(root / "AudioWAV" / f"{stem}.wav")
    write_wav(root / "AudioWAV" / "notes.wav")  # not a CREMA-D name: ignored
    result = load_dataset("crema-d", root)
    samples = by_id(result.samples)
    assert set(samples) == {"1001_DFA_ANG_XX", "1001_IEO_HAP_LO"}
    assert result.excluded == {"XYZ": 1}
    angry = samples["1001_DFA_ANG_XX"]
    assert (angry.label, angry.speaker) == (Emotion.ANGRY, "1001")
    assert angry.text == "Don't forget a jacket."
    # Only the voice-only row (100001) counts; the face and audio-visual rows are skipped.
    assert angry.votes == pytest.approx(
        {"angry": 0.6, "disgusted": 0.2, "neutral": 0.1, "sad": 0.1}
    )
    assert samples["1001_IEO_HAP_LO"].votes == pytest.approx({"happy": 1 / 3, "neutral": 2 / 3})


def test_ravdess_actor_speaker_and_songs_skipped(tmp_path):
    write_wav(tmp_path / "Audio_Speech_Actors_01-24/Actor_12/03-01-05-01-02-01-12.wav")
    write_wav(tmp_path / "Audio_Speech_Actors_01-24/Actor_01/03-01-02-02-01-02-01.wav")
    write_wav(tmp_path / "Audio_Song_Actors_01-24/Actor_01/03-02-03-01-01-01-01.wav")
    samples = load_dataset("ravdess", tmp_path).samples
    assert [(s.id, s.speaker, s.label, s.text) for s in samples] == [
        ("03-01-02-02-01-02-01", "01", Emotion.CALM, "Kids are talking by the door."),
        ("03-01-05-01-02-01-12", "12", Emotion.ANGRY, "Dogs are sitting by the door."),
    ]


def test_emodb_speaker_and_label_from_name(tmp_path):
    for stem in ("03a01Fa", "16b10Wb", "08a02Ac"):
        write_wav(tmp_path / "wav" / f"{stem}.wav")
    samples = load_dataset("emodb", tmp_path).samples
    assert [(s.id, s.speaker, s.label) for s in samples] == [
        ("03a01Fa", "03", Emotion.HAPPY), ("08a02Ac", "08", Emotion.FEARFUL),
        ("16b10Wb", "16", Emotion.ANGRY),
    ]


def test_turevdb_label_from_folder_speaker_from_name(tmp_path):
    write_wav(tmp_path / "Calm" / "1234_sk_acik.wav")
    write_wav(tmp_path / "Sad" / "1157_hl_algi.wav")
    samples = load_dataset("turevdb", tmp_path).samples
    assert [(s.id, s.speaker, s.label, s.raw_label) for s in samples] == [
        ("Calm/1234_sk_acik", "1234", Emotion.CALM, "Calm"),
        ("Sad/1157_hl_algi", "1157", Emotion.SAD, "Sad"),
    ]


def test_folders_generic_labels_nested_files_and_unknown_folders(tmp_path):
    write_wav(tmp_path / "happy" / "a.wav")
    write_wav(tmp_path / "Anger" / "take2" / "b.wav")
    write_wav(tmp_path / "confused" / "c.wav")
    (tmp_path / "happy" / "notes.txt").write_text("not audio")
    result = load_dataset("folders", tmp_path)
    assert [(s.id, s.label, s.speaker) for s in result.samples] == [
        ("Anger/take2/b", Emotion.ANGRY, "unknown"), ("happy/a", Emotion.HAPPY, "unknown"),
    ]
    assert result.excluded == {"confused": 1}


# --- manifest -------------------------------------------------------------------------------


def test_manifest_scp_resolves_paths_relative_to_the_manifest(tmp_path):
    root = fixture_copy("manifest", tmp_path)
    for name in ("utt1", "utt2", "utt3"):
        write_wav(root / "audio" / f"{name}.wav")
    result = load_dataset("manifest", root / "train.scp")
    assert [(s.id, s.label, s.audio_path) for s in result.samples] == [
        ("utt1", Emotion.ANGRY, root / "audio/utt1.wav"),
        ("utt2", Emotion.HAPPY, root / "audio/utt2.wav"),
    ]
    assert result.excluded == {"other": 1}


def test_manifest_jsonl_fields_votes_and_missing_label(tmp_path):
    root = fixture_copy("manifest", tmp_path)
    write_wav(root / "audio" / "utt1.wav")
    result = load_dataset("manifest", root / "dialogues.jsonl")
    assert result.excluded == {"<missing>": 1}
    first, second = result.samples
    assert (first.speaker, first.dialogue, first.turn, first.text, first.split) == (
        "alice", "d1", 0, "We won!", Split.TRAIN
    )
    assert first.votes == pytest.approx({"happy": 0.75, "surprised": 0.25})
    assert (second.audio_path, second.split, second.label) == (None, Split.VALID, Emotion.NEUTRAL)


def test_manifest_missing_audio_and_duplicate_ids_raise(tmp_path):
    with pytest.raises(UserError, match=r"train.scp:2: audio file .*utt1.wav not found"):
        load_dataset("manifest", FIXTURES / "manifest" / "train.scp")
    write_wav(tmp_path / "a.wav")
    (tmp_path / "dup.scp").write_text("x a.wav angry\nx a.wav sad\n")
    with pytest.raises(UserError, match="'x' occurs more than once"):
        load_dataset("manifest", tmp_path / "dup.scp")


# --- written (the hand-written dev set) -----------------------------------------------------

WRITTEN = Path(__file__).parents[1] / "benchmarks" / "data" / "written_dialogues.jsonl"


def test_written_dev_set_is_thirty_balanced_shift_rich_dyadic_dialogues():
    result = load_dataset("written", WRITTEN)
    assert result.excluded == {}
    groups = dialogues(result.samples)
    assert len(groups) == 30
    for group in groups:
        assert 8 <= len(group) <= 12
        assert [s.turn for s in group] == list(range(len(group)))
        assert [s.speaker for s in group] == [f"{group[0].dialogue}:{'AB'[k % 2]}" for k in range(len(group))]
    n = len(result.samples)
    core4 = (Emotion.NEUTRAL, Emotion.HAPPY, Emotion.SAD, Emotion.ANGRY)
    counts = {e: sum(s.label == e for s in result.samples) for e in core4}
    assert sum(counts.values()) == n and min(counts.values()) >= 0.15 * n
    shifts = sum(a.label != b.label for group in groups for a, b in zip(group, group[1:]))
    assert 0.4 * n <= shifts <= 0.6 * n
    assert len({s.text for s in result.samples}) == n


def test_written_ids_speakers_and_incomplete_lines(tmp_path):
    file = tmp_path / "mine.jsonl"
    file.write_text('{"dialogue": "d1", "turn": 0, "speaker": "A", "text": "Hi.", "label": "neutral"}\n'
                    '{"dialogue": "d1", "turn": 1, "speaker": "B", "text": "Go away!", "label": "anger"}\n')
    first, second = load_dataset("written", file).samples
    assert (first.id, first.speaker, first.dataset) == ("d1:0", "d1:A", "written")
    assert (second.id, second.speaker, second.label) == ("d1:1", "d1:B", Emotion.ANGRY)
    file.write_text('{"turn": 0, "speaker": "A", "text": "Hi.", "label": "neutral"}\n')
    with pytest.raises(UserError, match=r"^written: .*expected a \.jsonl file of \{dialogue"):
        load_dataset("written", file)
    file.write_text('{"dialogue": "d1", "turn": "first", "text": "Hi."}\n')
    with pytest.raises(UserError, match=r"^written: .*mine.jsonl:1: field 'turn' is not int"):
        load_dataset("written", file)


# --- errors, grouping, votes ----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_missing_path_raises_user_error_naming_the_layout(name, tmp_path):
    with pytest.raises(UserError, match=rf"^{name}: .*does not exist; expected "):
        load_dataset(name, tmp_path / "nowhere")


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_wrong_layout_raises_user_error(name, tmp_path):
    (tmp_path / "readme.txt").write_text("nothing here\n")
    target = tmp_path / "readme.txt" if name == "manifest" else tmp_path
    with pytest.raises(UserError, match=rf"^{name}: .*(expected|id path label)"):
        load_dataset(name, target)


def test_unknown_dataset_and_split_raise():
    with pytest.raises(UserError, match="unknown dataset 'imdb'"):
        load_dataset("imdb", FIXTURES)
    with pytest.raises(UserError, match="unknown split 'holdout'"):
        load_dataset("iemocap-text", FIXTURES / "iemocap_text", "holdout")
    with pytest.raises(UserError, match=r"no 'test' split \(splits: train, valid\)"):
        load_dataset("goemotions", FIXTURES / "goemotions", "test")


def test_dialogues_groups_by_dialogue_in_turn_order():
    samples = load_dataset("iemocap-text", FIXTURES / "iemocap_text").samples
    alone = Sample("solo", "x", "neu", Emotion.NEUTRAL, "s")
    groups = dialogues([*samples, alone])
    assert [[s.id for s in g] for g in groups] == [
        ["Ses01F_impro01:0", "Ses01F_impro01:1"],
        ["Ses02M_script01_1:0"],
        ["Ses05F_impro03:0", "Ses05F_impro03:1"],
        ["solo"],
    ]


@given(st.lists(
    st.tuples(st.sampled_from([*Emotion, None]), st.floats(0, 100, allow_nan=False)),
    max_size=12,
))
def test_normalized_votes_sum_to_one(votes):
    result = normalize_votes(votes)
    if sum(w for e, w in votes if e is not None) <= 0:
        assert result is None
    else:
        assert sum(result.values()) == pytest.approx(1.0)
        assert set(result) <= {e.value for e in Emotion}
