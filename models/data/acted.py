"""Acted emotional speech: one wav per utterance, the label in the file or folder name.

None of these corpora defines a train/test split; split by speaker downstream (every sample
carries its speaker id), never at random.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from models.data.sample import Sample, layout_error, normalize_votes, read_csv_rows, require_dir
from models.labels import Emotion, canonical

CREMA_D_LAYOUT = (
    "CREMA-D with AudioWAV/1001_DFA_ANG_XX.wav (optional processedResults/tabulatedVotes.csv)"
)
RAVDESS_LAYOUT = "RAVDESS with Actor_01/03-01-05-01-02-01-01.wav files"
EMODB_LAYOUT = "EmoDB with wav/03a01Fa.wav files"
TUREVDB_LAYOUT = "TurEV-DB with {Angry,Calm,Happy,Sad}/1157_kz_acik.wav files"
FOLDERS_LAYOUT = "<root>/<label>/**/*.wav, one folder per emotion (angry, happy, neutral, ...)"
FOLDER_AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".m4a")

# CREMA-D's twelve sentences, by the code in the file name (second field).
CREMA_D_SENTENCES = {
    "IEO": "It's eleven o'clock.", "TIE": "That is exactly what happened.",
    "IOM": "I'm on my way to the meeting.", "IWW": "I wonder what this is about.",
    "TAI": "The airplane is almost full.", "MTI": "Maybe tomorrow it will be cold.",
    "IWL": "I would like a new alarm clock.", "ITH": "I think I have a doctor's appointment.",
    "DFA": "Don't forget a jacket.", "ITS": "I think I've seen this before.",
    "TSI": "The surface is slick.", "WSI": "We'll stop in a couple of minutes.",
}
_CREMA_D_NAME = re.compile(r"^(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_\w+$")
# tabulatedVotes.csv row names are 100000 * query type + clip number; type 1 = voice only.
_CREMA_D_VOICE_QUERY = 1

# RAVDESS statements by the fifth field; vocal channel (second field) 01 = speech, 02 = song.
RAVDESS_STATEMENTS = {"01": "Kids are talking by the door.", "02": "Dogs are sitting by the door."}
_RAVDESS_NAME = re.compile(
    r"^(?P<modality>\d\d)-(?P<channel>\d\d)-(?P<emotion>\d\d)-(?P<intensity>\d\d)"
    r"-(?P<statement>\d\d)-(?P<repetition>\d\d)-(?P<actor>\d\d)$"
)
_RAVDESS_SPEECH = "01"

# The URDU corpus (Latif et al. 2018) names its clips SM1_F10_A010.wav: S, the speaker's sex and
# number (SM1), then the file and the clip; read in the ``folders`` layout.
_URDU_NAME = re.compile(r"^(?P<speaker>S[MF]\d+)_F\d+_[A-Z]\d+$")
_EMODB_NAME = re.compile(r"^(?P<speaker>\d\d)(?P<text>[a-z]\d\d)(?P<emotion>[A-Za-z])[a-z]?$")


def load_crema_d(path: Path) -> list[Sample]:
    """CREMA-D: speaker and label from ``1001_DFA_ANG_XX.wav``; crowd votes when tabulated."""
    audio_dir = path / "AudioWAV" if (path / "AudioWAV").is_dir() else path
    votes = _crema_d_votes(path / "processedResults" / "tabulatedVotes.csv")
    samples = []
    for wav in sorted(audio_dir.glob("*.wav")):
        if not (match := _CREMA_D_NAME.match(wav.stem)):
            continue
        samples.append(_acted(
            "crema-d", wav.stem, match["emotion"], match["actor"], wav,
            text=CREMA_D_SENTENCES.get(match["sentence"]), votes=votes.get(wav.stem),
        ))
    if not samples:
        raise layout_error("crema-d", path, CREMA_D_LAYOUT)
    return samples


def _crema_d_votes(file: Path) -> dict[str, dict[str, float]]:
    """File stem -> normalized voice-only votes from tabulatedVotes.csv (empty if absent).

    Vote columns are the single-letter emotion codes (A, D, F, H, N, S). Rows whose unnamed
    first column encodes a face-only or audio-visual query are skipped; a table without that
    column is taken as it is.
    """
    if not file.is_file():
        return {}
    totals: dict[str, list[tuple[Emotion, float]]] = {}
    for row in read_csv_rows(file):
        query = row.get("", "").strip()
        if query.isdigit() and int(query) // 100_000 != _CREMA_D_VOICE_QUERY:
            continue
        stem = row.get("fileName", "").strip()
        votes = totals.setdefault(stem, [])
        for column, value in row.items():
            emotion = canonical("crema-d", column) if len(column) == 1 else None
            if emotion is not None and value.strip().isdigit():
                votes.append((emotion, float(value)))
    return {stem: v for stem, pairs in totals.items() if stem and (v := normalize_votes(pairs))}


def load_ravdess(path: Path) -> list[Sample]:
    """RAVDESS speech (songs are skipped): ``Actor_XX/03-01-05-01-02-01-12.wav`` anywhere below."""
    samples = []
    for wav in sorted(path.rglob("*.wav")):
        match = _RAVDESS_NAME.match(wav.stem)
        if match and match["channel"] == _RAVDESS_SPEECH:
            samples.append(_acted(
                "ravdess", wav.stem, match["emotion"], match["actor"], wav,
                text=RAVDESS_STATEMENTS.get(match["statement"]),
            ))
    if not samples:
        raise layout_error("ravdess", path, RAVDESS_LAYOUT)
    return samples


def load_emodb(path: Path) -> list[Sample]:
    """Berlin EmoDB: speaker = first two characters, label = sixth (German initial)."""
    audio_dir = path / "wav" if (path / "wav").is_dir() else path
    samples = [
        _acted("emodb", wav.stem, match["emotion"], match["speaker"], wav)
        for wav in sorted(audio_dir.glob("*.wav"))
        if (match := _EMODB_NAME.match(wav.stem))
    ]
    if not samples:
        raise layout_error("emodb", path, EMODB_LAYOUT)
    return samples


def load_turevdb(path: Path) -> list[Sample]:
    """TurEV-DB: label = folder, speaker = first field of ``SPK_xx_word.wav``."""
    return _label_folders(
        "turevdb", require_dir("turevdb", path, TUREVDB_LAYOUT), (".wav",),
        lambda wav: wav.stem.split("_", 1)[0], TUREVDB_LAYOUT,
    )


def load_folders(path: Path) -> list[Sample]:
    """Any ``<root>/<label>/**/<audio>`` tree; labels map through the generic table.

    Speakers are not known in this layout, except from file names of the URDU corpus
    (``SM1_F10_A010.wav`` -> speaker ``SM1``): every other sample has speaker ``"unknown"``, so
    speaker-independent splits are impossible and evaluation on it is speaker-dependent.
    """
    return _label_folders(
        "folders", require_dir("folders", path, FOLDERS_LAYOUT), FOLDER_AUDIO_SUFFIXES,
        folder_speaker, FOLDERS_LAYOUT,
    )


def folder_speaker(file: Path) -> str:
    """The speaker a ``folders`` file name tells (URDU ``SM1_F10_A010`` -> ``SM1``), else ``"unknown"``."""
    match = _URDU_NAME.match(file.stem)
    return match["speaker"] if match else "unknown"


def _label_folders(
    dataset: str, root: Path, suffixes: tuple[str, ...], speaker_of: Callable[[Path], str],
    layout: str,
) -> list[Sample]:
    """One sample per audio file below each top-level folder, labelled by that folder's name."""
    samples = [
        _acted(dataset, file.relative_to(root).with_suffix("").as_posix(), folder.name,
               speaker_of(file), file)
        for folder in sorted(p for p in root.iterdir() if p.is_dir())
        for file in sorted(folder.rglob("*"))
        if file.suffix.lower() in suffixes and not file.name.startswith(".")
    ]
    if not samples:
        raise layout_error(dataset, root, layout)
    return samples


def _acted(
    dataset: str, sample_id: str, raw: str, speaker: str, audio: Path,
    text: str | None = None, votes: dict[str, float] | None = None,
) -> Sample:
    """A Sample for one acted clip; ``dataset`` also names the label table."""
    return Sample(
        id=sample_id, dataset=dataset, raw_label=raw, label=canonical(dataset, raw),
        speaker=speaker, text=text, audio_path=audio, votes=votes,
    )
