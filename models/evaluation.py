"""``emostream evaluate``: a checkpoint on a labelled dataset, scored as in the papers' tables.

Besides a dataset on its own, a text dataset can be evaluated *paired* with an audio dataset
(``pair_with``): each audio clip is given to a random turn of the text dataset with the same
label (the construction the trainer uses for pseudo-pairs). The shared data has no real
utterance with both, so this is how the fusion ablation is measured; the model card says so.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from models.errors import UserError

from .audio_norm import sample_sessions
from .checkpoint import Checkpoint, load_checkpoint
from .data import load_dataset
from .data.sample import Sample, dialogues, parse_split
from .labels import LabelSet, fold_matrix, label_set
from .frontends.identity import same_frontend
from .metrics import Scores, score
from .predictor import load_network, pick_device, predict_windows
from .windows import MISSING, Window, build_windows, pseudo_pairs

log = logging.getLogger(__name__)

MODALITIES = ("audio", "text", "both")


def check_frontend(expected: dict[str, str], actual: dict[str, str], kind: str) -> None:
    """Refuse features from another frontend than the one the checkpoint was trained on."""
    if not same_frontend(expected, actual):
        raise UserError(
            f"the checkpoint's {kind} features came from {expected.get('name')} "
            f"({expected.get('sha256', '?')[:12]}, {expected.get('window', '')}), but "
            f"{actual.get('name')} ({actual.get('sha256', '?')[:12]}, {actual.get('window', '')}) "
            "is loaded: use the matching frontend"
        )


def select_samples(dataset: str, data: Path, split: str | None, speakers: Sequence[str] | None) -> list[Sample]:
    """The dataset's samples in ``split`` (when it has splits) and of ``speakers`` (when given)."""
    samples = load_dataset(dataset, data, keep_unlabelled=True).samples
    wanted = parse_split(split, "--split") if split else None
    if wanted is not None and any(s.split is not None for s in samples):
        samples = [s for s in samples if s.split == wanted]
    elif wanted is not None:
        log.info("%s has no splits: using all %d samples", dataset, len(samples))
    if speakers:
        samples = [s for s in samples if s.speaker in set(speakers)]
    if not samples:
        raise UserError(f"{dataset}: no samples at {data} for split {split!r} and speakers {speakers or 'all'}")
    return samples


def text_features(samples: list[Sample], checkpoint: Checkpoint) -> tuple[list[int], torch.Tensor]:
    """Rows (MISSING where no text) and the MiniLM table [N, 384]."""
    from .features import text_matrix
    from .frontends.text import text_encoder_for

    encoder = text_encoder_for(checkpoint.frontends.get("text", {}))
    rows = [i if s.text else MISSING for i, s in enumerate(samples)]
    return rows, torch.from_numpy(text_matrix(samples, encoder))


def audio_features(samples: list[Sample], checkpoint: Checkpoint, asr_model: str | None) -> tuple[list[int], torch.Tensor]:
    """Rows (MISSING where no audio) and the standardised Whisper table [N_audio, 768] (normalised
    per speaker first where the checkpoint wants it, as training did: each speaker's clips one
    session in a seeded random order, all clips of speaker "unknown" one session, a dialogue's
    speaker one session in turn order; :func:`models.audio_norm.sample_sessions`)."""
    from .features import audio_matrix
    from .frontends.audio import audio_frontend_for

    encoder = audio_frontend_for(checkpoint.frontends.get("audio", {}), asr_model)
    check_frontend(checkpoint.frontends.get("audio", {}), encoder.identity(), "audio")
    with_audio = [s for s in samples if s.audio_path]
    counter = iter(range(len(with_audio)))
    rows = [next(counter) if s.audio_path else MISSING for s in samples]
    return rows, checkpoint.prepare_audio(audio_matrix(with_audio, encoder), *sample_sessions(with_audio))


def evaluate(
    dataset: str,
    data: Path,
    split: str | None = "test",
    checkpoint_path: Path | None = None,
    modalities: str = "both",
    max_context: int | None = None,
    device: str = "auto",
    asr_model: str | None = None,
    speakers: Sequence[str] | None = None,
    pair_with: tuple[str, Path] | None = None,
    seed: int = 0,
    labels: str | None = None,
    predictions: Path | None = None,
) -> Scores:
    """Score ``checkpoint_path`` (default: shipped) on ``dataset`` at ``data``.

    split: the corpus split; ignored (with a log line) for corpora without splits. modalities:
    what the network is given ("audio", "text" or "both"), where the data has it. max_context:
    cut the dialogue context to this many utterances (1 = no context). speakers: keep only these
    speakers (of both datasets). pair_with: (audio dataset, path) whose clips are paired with
    same-label turns of ``dataset`` (seeded by ``seed``); only the pairs are scored, and
    ``n_excluded`` counts the clips left unpaired. With ``modalities="audio"`` each clip is scored
    alone; with ``"text"`` its partner turn is, in its dialogue context. labels: score in this
    label set (e.g. "core4"): targets are folded onto it and the model's probabilities summed onto
    its classes (:func:`models.labels.fold_matrix`; classes that fold onto none drop out).
    predictions: write one JSON line per scored utterance there. The scores carry a "shift"
    subset: turns whose emotion differs from the previous turn's in the same dialogue.
    """
    if modalities not in MODALITIES:
        raise UserError(f"--modalities must be one of {', '.join(MODALITIES)}")
    if max_context is not None and max_context < 1:
        raise UserError(f"--context must be at least 1 (the scored utterance itself), got {max_context}")
    checkpoint, _ = load_checkpoint(checkpoint_path)
    target_set = label_set(labels) if labels else checkpoint.label_set
    dev = pick_device(device, "--device")
    network = load_network(checkpoint, dev)
    cfg = network.config
    context = cfg.max_context if max_context is None else min(max_context, cfg.max_context)
    samples = select_samples(dataset, data, split, None if pair_with else speakers)
    use_text = modalities in ("text", "both")
    use_audio = modalities in ("audio", "both")

    text_rows = audio_rows = None
    text_table, audio_table = torch.zeros(0, cfg.text_dim), torch.zeros(0, cfg.audio_dim)
    if use_text and any(s.text for s in samples):
        text_rows, text_table = text_features(samples, checkpoint)
    if pair_with is None and use_audio and any(s.audio_path for s in samples):
        audio_rows, audio_table = audio_features(samples, checkpoint, asr_model)
    windows, excluded = build_windows(samples, target_set, context, text_rows, audio_rows)

    if pair_with is not None:
        clips = [s for s in select_samples(*pair_with, None, speakers) if s.audio_path]
        clip_rows, clip_table = audio_features(clips, checkpoint, asr_model)
        clip_windows, _ = build_windows(clips, target_set, 1, None, clip_rows)
        windows = pseudo_pairs(windows, clip_windows, random.Random(seed))
        excluded = len(clips) - len(windows)  # clips outside the label set or without a partner
        if not use_text:  # the clip alone, as the audio corpus is scored on its own
            windows = [replace(w, text_rows=(MISSING,), audio_rows=w.audio_rows[-1:], speakers=w.speakers[-1:]) for w in windows]
        if use_audio:
            audio_table = clip_table
        else:  # the same pairs, audio withheld
            windows = [w.with_target_audio(MISSING) for w in windows]
    elif text_rows is None and audio_rows is None:
        raise UserError(f"{dataset}: the data has none of the requested modalities ({modalities})")
    if not windows:
        raise UserError(f"{dataset}: no sample has a label in {target_set.labels}")
    folded = predict_windows(network, windows, text_table, audio_table, dev) @ fold_matrix(checkpoint.label_set, target_set)
    probs = folded / np.clip(folded.sum(1, keepdims=True), 1e-12, None)  # [N, C_target]
    y_true = np.array([w.label for w in windows])
    scores = score(y_true, probs.argmax(1), target_set.labels, n_excluded=excluded, probs=probs)
    if pair_with is not None:
        return scores
    shifts = shift_turns(samples, target_set)
    is_shift = np.array([w.key in shifts for w in windows])
    if predictions is not None:
        write_predictions(predictions, samples, windows, probs, target_set)
    if not is_shift.any():  # clips without dialogues (acted corpora, folders): no turn follows another
        return scores
    return scores.with_subsets({"shift": score(y_true[is_shift], probs[is_shift].argmax(1), target_set.labels, probs=probs[is_shift])})


def shift_turns(samples: Sequence[Sample], labels: LabelSet) -> set[str]:
    """Ids of the labelled turns whose emotion (folded onto ``labels`` where it can be) differs
    from the previous turn's in the same dialogue; turns after an unlabelled one are left out."""
    def folded(sample: Sample) -> object:
        index = labels.index(sample.label)
        return sample.label.value if index is None else index

    return {
        turn.id
        for dialogue in dialogues(samples)
        for previous, turn in zip(dialogue, dialogue[1:])
        if previous.label is not None and turn.label is not None and folded(previous) != folded(turn)
    }


def write_predictions(path: Path, samples: Sequence[Sample], windows: Sequence[Window],
                      probs: np.ndarray, labels: LabelSet) -> None:
    """One JSON line per scored window: dialogue, turn, speaker, text, label, prediction,
    probabilities (label -> probability, 4 decimals). probs: float [N, C]."""
    by_id = {s.id: s for s in samples}
    try:
        with open(path, "w", encoding="utf-8") as out:
            for window, row in zip(windows, probs):
                sample = by_id[window.key]
                out.write(json.dumps({
                    "dialogue": sample.dialogue, "turn": sample.turn, "speaker": sample.speaker,
                    "text": sample.text, "label": labels.labels[window.label],
                    "prediction": labels.labels[int(row.argmax())],
                    "probabilities": {name: round(float(p), 4) for name, p in zip(labels.labels, row)},
                }, ensure_ascii=False) + "\n")
    except OSError as err:
        raise UserError(f"cannot write predictions to {path}: {err.strerror}") from None
