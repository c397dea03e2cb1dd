"""Training the fusion network from a TOML config (``emostream train --config FILE``).

The shared data has no utterance with both audio and a dialogue transcript, so training mixes
three kinds of windows (see the model card):

* text windows: a dialogue turn and its context, text only (IEMOCAP, MELD, DailyDialog, ...);
* audio windows: one acted clip, audio only (TurEV-DB, EmoDB, ...);
* pseudo-pairs (``pseudo_pairs = true``): a text window whose target utterance is given the audio
  of a random training clip with the same label, redrawn every epoch.

Modality dropout hides the target's audio or text of a pseudo-pair with probability
``modality_dropout`` each (never both). With ``spoken_text`` a window's texts are, with that
probability, in the form Whisper tends to write them (:func:`models.whisper_style.whisper_form`,
one draw per utterance and seed); with
``heard_text`` they are what the pipeline's transcriber heard of the rendered turns
(``heard_text_file``, from ``scripts/heard_text.py``). Alignment and matching losses use the
windows whose target has both modalities.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from models.errors import UserError

from .audio_norm import NormPrior, normalise_sessions, sample_sessions
from .checkpoint import Checkpoint
from .data import load_dataset
from .data.sample import Sample, dialogues, parse_split
from .labels import LabelSet, fold_matrix, label_set
from .losses import (
    LossWeights, hard_negative_matching_loss, label_alignment_loss, partial_cross_entropy,
    probability_mse, soft_cross_entropy, total_loss,
)
from .metrics import Scores, score
from .networks import FusionConfig, build_network, count_parameters
from .predictor import pick_device, predict_windows
from .training_config import DatasetSpec, TrainConfig
from .whisper_style import whisper_form
from .windows import MISSING, Window, build_windows, collate, pseudo_pairs, support_mask

log = logging.getLogger(__name__)


@dataclass
class Corpus:
    """Feature tables and the windows over them, for one run."""

    text_table: torch.Tensor  # [Nt, 384]
    audio_table: torch.Tensor  # [Na, Da] standardised
    audio_mean: torch.Tensor  # [Da]
    audio_std: torch.Tensor  # [Da]
    train: dict[str, list[Window]]  # dataset name -> training windows
    epoch_sizes: dict[str, int]  # dataset name -> windows drawn per epoch (0 = all)
    valid: dict[str, list[Window]]  # dataset name -> validation windows (in valid_sets' labels)
    valid_sets: dict[str, LabelSet]  # dataset name -> the label set its validation is scored in
    audio_train: list[Window]  # single-clip audio windows usable for pseudo-pairs
    counts: dict[str, dict[str, int]]
    spoken_rows: dict[int, int]  # text row -> row of its spoken form, where that differs
    heard_rows: dict[int, int] = field(default_factory=dict)  # text row -> row of what the pipeline heard of it
    speaker_norm: dict | None = None  # Checkpoint.speaker_norm: the prior of per-speaker online normalisation
    balanced: frozenset[str] = frozenset()  # dataset names whose epoch draw has the same count per class
    synthetic_rows: frozenset[int] = frozenset()  # audio rows of synthetic voices (DatasetSpec.synthetic)


def load_heard(path: Path) -> dict[str, dict[str, str]]:
    """What the pipeline heard of training turns (``scripts/heard_text.py``'s JSONL): dataset name ->
    sample id -> transcript. Turns Whisper heard nothing of are left out (their text stays)."""
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise UserError(f"heard_text_file {path}: {err.strerror}") from None
    heard: dict[str, dict[str, str]] = {}
    for row in map(json.loads, lines):
        if row["heard"].strip():
            heard.setdefault(row["dataset"], {})[row["id"]] = row["heard"]
    return heard


def add_forms(samples: Sequence[Sample], rows: Sequence[int], forms: dict[str, str], encoder,
              text_parts: list[np.ndarray], n_text: int, alternative: dict[int, int]) -> int:
    """Embed the other form of each sample's text (``forms``: sample id -> text) where it differs
    from the text, append the embeddings to ``text_parts`` (rows from ``n_text`` on), record
    text row -> row of the other form in ``alternative``, and return the new row count.

    An encoder tuned in context reads each other form after its dialogue's past turns in their
    other forms too, as the runtime reads what it heard after what it heard before."""
    from .features import embed_inputs, text_inputs

    changed = [j for j, s in enumerate(samples) if s.id in forms and forms[s.id] != (s.text or "")]
    if changed:
        other = [replace(s, text=forms.get(s.id, s.text)) for s in samples]
        inputs = text_inputs(other, encoder.context_turns)
        text_parts.append(embed_inputs([inputs[j] for j in changed], encoder))
        alternative.update({rows[j]: n_text + k for k, j in enumerate(changed)})
    return n_text + len(changed)


def in_split(sample: Sample, names: Sequence[str]) -> bool:
    return sample.split is not None and sample.split in {parse_split(n, "training config") for n in names}


def draw_dialogues(samples: list[Sample], limit: int, seed: int) -> list[Sample]:
    """The samples of at most ``limit`` dialogues drawn at random (all when limit is 0)."""
    groups = dialogues(samples)
    if not limit or len(groups) <= limit:
        return samples
    return [s for group in random.Random(seed).sample(groups, limit) for s in group]


def split_draw(samples: list[Sample], splits: Sequence[str], limit: int, seed: int) -> list[Sample]:
    """The samples of the named splits, at most ``limit`` dialogues of them (:func:`draw_dialogues`)."""
    return draw_dialogues([s for s in samples if in_split(s, splits)], limit, seed)


def build_corpus(config: TrainConfig, max_context: int, frontends: dict) -> Corpus:
    """Load every dataset, compute (cached) features and cut train/valid windows."""
    from .features import text_matrix

    labels = config.labels
    text_parts, audio_parts = [], []
    n_text = n_audio = 0
    train: dict[str, list[Window]] = {}
    audio_train: list[Window] = []
    valid: dict[str, list[Window]] = {}
    valid_sets: dict[str, LabelSet] = {}
    counts: dict[str, dict[str, int]] = {}
    spoken_rows: dict[int, int] = {}
    heard_rows: dict[int, int] = {}
    heard = load_heard(Path(config.heard_text_file)) if config.heard_text else {}
    audio_sessions: list[tuple[list[str], bool]] = []
    synthetic_rows: list[int] = []
    for spec in config.datasets:
        samples = load_dataset(spec.name, spec.path, keep_unlabelled=True).samples
        if not spec.valid_speakers:  # text corpora: only what is trained or validated on
            samples = (split_draw(samples, spec.train, spec.max_dialogues, config.seed)
                       + split_draw(samples, spec.valid, spec.max_dialogues, config.seed))
        text_rows = audio_rows = None
        if spec.modality in ("text", "both"):
            text_parts.append(text_matrix(samples, frontends["text"]))
            text_rows = list(range(n_text, n_text + len(samples)))
            n_text += len(samples)
            if config.spoken_text:
                said = {s.id: whisper_form(s.text or "", random.Random(f"{config.seed}:{s.id}"))
                        for s in samples if in_split(s, spec.train)}  # validation windows keep their text
                n_text = add_forms(samples, text_rows, said, frontends["text"], text_parts, n_text, spoken_rows)
            if config.heard_text:
                n_text = add_forms(samples, text_rows, heard.get(spec.name, {}), frontends["text"], text_parts,
                                   n_text, heard_rows)
        if spec.modality in ("audio", "both"):
            samples, matrix = with_augmented_copies(samples, spec, frontends["audio"])
            audio_parts.append(matrix)
            audio_sessions.append(sample_sessions(samples))
            audio_rows = list(range(n_audio, n_audio + len(samples)))
            n_audio += len(samples)
            if spec.synthetic:
                synthetic_rows += audio_rows
        position = {id(s): i for i, s in enumerate(samples)}

        valid_sets[spec.name] = label_set(spec.valid_labels) if spec.valid_labels else labels

        def windows_of(subset: list[Sample], target_set: LabelSet, partial: bool) -> tuple[list[Window], int]:
            pick = [position[id(s)] for s in subset]
            return build_windows(
                subset, target_set, max_context,
                [text_rows[i] for i in pick] if text_rows else None,
                [audio_rows[i] for i in pick] if audio_rows else None,
                partial=partial,
            )

        if spec.valid_speakers:
            held, unseen = set(spec.valid_speakers), set(spec.test_speakers)
            tr_samples = [s for s in samples if s.speaker not in held | unseen]
            va_samples = [s for s in samples if s.speaker in held]
        else:
            tr_samples = [s for s in samples if in_split(s, spec.train)]
            va_samples = [s for s in samples if in_split(s, spec.valid)]
        tr, ex_tr = windows_of(tr_samples, labels, config.loss == "partial-ce")
        va, ex_va = windows_of(va_samples, valid_sets[spec.name], False)
        train[spec.name] = tr
        valid[spec.name] = va
        if spec.modality == "audio":
            audio_train += tr
        counts[spec.name] = {
            "train": len(tr), "valid": len(va), "excluded_by_label_set": ex_tr + ex_va,
        }
        log.info("%s: %d train / %d valid windows", spec.name, len(tr), len(va))
    text_table = torch.from_numpy(np.concatenate(text_parts)) if text_parts else torch.zeros(0, 384)
    audio = np.concatenate(audio_parts) if audio_parts else np.zeros((0, 768), np.float32)
    train_audio_rows = sorted({w.audio_rows[-1] for w in audio_train})
    speaker_norm = None
    if config.speaker_norm and train_audio_rows:  # the prior: the raw statistics of the training clips
        prior = NormPrior.of(audio[train_audio_rows], config.speaker_norm_clips, config.speaker_norm_raw,
                             config.speaker_norm_session)
        audio = normalise_corpus(audio, audio_sessions, prior, config.seed)
        speaker_norm = {"mean": torch.from_numpy(prior.mean).float(), "std": torch.from_numpy(prior.std).float(),
                        "prior_clips": prior.clips, "keep_raw": prior.keep_raw, "session_clips": prior.session_clips}
    mean = audio[train_audio_rows].mean(0) if train_audio_rows else np.zeros(audio.shape[1], np.float32)
    std = audio[train_audio_rows].std(0) + 1e-5 if train_audio_rows else np.ones(audio.shape[1], np.float32)
    return Corpus(
        text_table=text_table,
        audio_table=torch.from_numpy((audio - mean) / std).float(),
        audio_mean=torch.from_numpy(mean).float(), audio_std=torch.from_numpy(std).float(),
        train=train, epoch_sizes={d.name: d.epoch_size or config.corpus_epoch_size for d in config.datasets},
        balanced=frozenset(d.name for d in config.datasets if d.balance_classes),
        synthetic_rows=frozenset(synthetic_rows),
        valid=valid, valid_sets=valid_sets, audio_train=audio_train, counts=counts,
        spoken_rows=spoken_rows, heard_rows=heard_rows, speaker_norm=speaker_norm,
    )


def with_augmented_copies(samples: list[Sample], spec: DatasetSpec, encoder) -> tuple[list[Sample], np.ndarray]:
    """An audio corpus's samples and acoustic vectors [N, D], followed by ``spec.augment_copies``
    augmented copies of every training speaker's clip. A copy of speaker "03" is speaker "03~aug1"
    (and so on): for the per-speaker normalisation a voice moved by speed and pitch is another voice,
    and it is never a validation or test speaker."""
    from .features import audio_matrix

    matrix = audio_matrix(samples, encoder)
    if not spec.augment_copies:
        return samples, matrix
    if spec.modality != "audio":
        raise UserError(f"{spec.name}: augment_copies is for audio corpora (its text rows would not match)")
    from .augment import Augmentation

    held = set(spec.valid_speakers) | set(spec.test_speakers)
    train = [s for s in samples if s.speaker not in held]
    out, parts = list(samples), [matrix]
    for copy in range(1, spec.augment_copies + 1):
        parts.append(audio_matrix(train, encoder, augmentation=Augmentation(copy=copy)))
        out += [replace(s, id=f"{s.id}~aug{copy}", speaker=f"{s.speaker}~aug{copy}") for s in train]
    return out, np.concatenate(parts)


def normalise_corpus(audio: np.ndarray, sessions: Sequence[tuple[list[str], bool]], prior: NormPrior,
                     seed: int) -> np.ndarray:
    """Raw acoustic vectors [Na, Da], the concatenation of parts with
    :func:`models.audio_norm.sample_sessions` ``sessions``, normalised per speaker as sessions (:func:`models.audio_norm.normalise_sessions`)."""
    parts, start = [], 0
    for keys, ordered in sessions:
        parts.append(normalise_sessions(audio[start : start + len(keys)], keys, prior, seed, ordered))
        start += len(keys)
    return np.concatenate(parts) if parts else audio


def truncate_context(windows: Sequence[Window], p: float, rng: random.Random) -> list[Window]:
    """With probability p, keep only the last k utterances of a window, k uniform in 1..T.

    Against emotional inertia: a network that always sees long, emotionally steady contexts learns
    to copy the context's emotion onto the target.
    """
    out = []
    for w in windows:
        if p > 0 and len(w.text_rows) > 1 and rng.random() < p:  # p = 0 draws nothing: runs stay reproducible
            k = rng.randint(1, len(w.text_rows))
            w = replace(w, text_rows=w.text_rows[-k:], audio_rows=w.audio_rows[-k:], speakers=w.speakers[-k:])
        out.append(w)
    return out


def speak_windows(windows: Sequence[Window], spoken_rows: dict[int, int], p: float,
                  rng: random.Random) -> list[Window]:
    """With probability p, a window's texts in another form (``spoken_rows``: text row -> row of
    that form; Whisper's style of :func:`models.whisper_style.whisper_form`, or what the pipeline
    heard), all of them at once, as the runtime's transcripts of one conversation would be."""
    if p <= 0 or not spoken_rows:  # draws nothing: runs without it stay reproducible
        return list(windows)
    return [replace(w, text_rows=tuple(spoken_rows.get(r, r) for r in w.text_rows)) if rng.random() < p else w
            for w in windows]


def drop_modalities(batch, p: float, generator: torch.Generator) -> None:
    """Where the target has both modalities, hide its audio (prob p) or else its text (prob p)."""
    both = batch.audio_present[:, -1] & batch.text_present[:, -1]  # [B]
    u = torch.rand(both.shape, generator=generator)
    batch.audio_present[:, -1] &= ~(both & (u < p))
    batch.text_present[:, -1] &= ~(both & (u >= p) & (u < 2 * p))


def validate(network, corpus: Corpus, device, labels: LabelSet) -> dict[str, Scores]:
    """Per-corpus validation scores, each in its corpus's validation label set."""
    scores = {}
    for name, ws in corpus.valid.items():
        if ws:
            probs = predict_windows(network, ws, corpus.text_table, corpus.audio_table, device)
            folded = probs @ fold_matrix(labels, corpus.valid_sets[name])  # [N, C_valid]
            scores[name] = score(np.array([w.label for w in ws]), folded.argmax(1), corpus.valid_sets[name].labels)
    return scores


def balanced_draw(windows: Sequence[Window], size: int, rng: random.Random) -> list[Window]:
    """``size`` windows, the labels taking turns (equal counts, within one); each label's windows
    are drawn without replacement until all are used, then reshuffled, so a rare class repeats."""
    by_label: dict[int, list[Window]] = {}
    for w in windows:
        by_label.setdefault(w.label, []).append(w)
    labels = sorted(by_label)
    pools: dict[int, list[Window]] = {label: [] for label in labels}
    drawn = []
    for i in range(size):
        label = labels[i % len(labels)]
        if not pools[label]:
            pools[label] = rng.sample(by_label[label], len(by_label[label]))
        drawn.append(pools[label].pop())
    return drawn


def gate_loss(gate: torch.Tensor, has_audio: torch.Tensor, windows: Sequence[Window],
              synthetic_rows: frozenset[int]) -> torch.Tensor:
    """Binary cross-entropy of the target's audio gate ([B] in [0, 1]) against 0 for synthetic-voice
    audio and 1 for any other, over the windows whose target has audio (``has_audio``, [B] bool)."""
    real = torch.tensor([w.audio_rows[-1] not in synthetic_rows for w in windows], dtype=gate.dtype,
                        device=gate.device)  # [B]
    if not has_audio.any():
        return gate.sum() * 0.0
    return torch.nn.functional.binary_cross_entropy(gate[has_audio].clamp(1e-6, 1 - 1e-6), real[has_audio])


def epoch_windows(corpus: Corpus, rng: random.Random, shift_boost: int = 0) -> list[Window]:
    """Training windows of one epoch: per corpus all of them, or at most its epoch size, redrawn
    each epoch, so that no corpus outweighs the others by its size; for a corpus in
    ``corpus.balanced`` its epoch size (all: its window count) with the classes equally drawn.

    shift_boost: each emotion-change window (``Window.shift``) enters its corpus's pool
    1 + shift_boost times, against emotional inertia: most turns of the dialogue corpora repeat
    the previous turn's emotion, so a network trained on them learns to copy it.
    """
    epoch = []
    for name, ws in corpus.train.items():
        if shift_boost:
            ws = ws + [w for w in ws if w.shift] * shift_boost
        size = corpus.epoch_sizes[name]
        if name in corpus.balanced:
            epoch += balanced_draw(ws, size or len(ws), rng)
        else:
            epoch += rng.sample(ws, size) if 0 < size < len(ws) else ws
    return epoch


def warm_start(network, corpus: Corpus, path: Path, labels: LabelSet) -> None:
    """Start from a trained checkpoint: copy every weight whose name and shape match, and the
    rows of class-sized weights (the classifier's last layer) for the classes both label sets
    share by name; new classes and new modules keep their fresh initialisation. The corpus's
    audio table is re-standardised with the checkpoint's statistics, which its weights expect,
    unless either side normalises per speaker (then the vectors differ anyway and keep the
    corpus's own standardisation)."""
    from .checkpoint import load_checkpoint

    old, _ = load_checkpoint(path)
    rows = {i: old.label_set.labels.index(name) for i, name in enumerate(labels.labels) if name in old.label_set.labels}
    state = network.state_dict()
    copied = 0
    for key, value in old.state_dict.items():
        if key not in state:
            continue
        if state[key].shape == value.shape:
            state[key] = value.clone()
        elif value.dim() >= 1 and value.shape[0] == len(old.label_set.labels) and state[key].shape[1:] == value.shape[1:]:
            for new_row, old_row in rows.items():  # class-sized: by class name
                state[key][new_row] = value[old_row]
        else:
            continue
        copied += 1
    network.load_state_dict(state)
    if old.speaker_norm is None and corpus.speaker_norm is None:
        raw = corpus.audio_table * corpus.audio_std + corpus.audio_mean  # [Na, Da] as extracted
        corpus.audio_mean, corpus.audio_std = old.audio_mean.float(), old.audio_std.float()
        corpus.audio_table = (raw - corpus.audio_mean) / corpus.audio_std
    log.info("warm start from %s: %d of %d tensors copied", path, copied, len(state))


def freeze_all_but(network: torch.nn.Module, prefixes: Sequence[str]) -> None:
    """Train only the parameters whose names start with one of ``prefixes`` (e.g. the audio input
    and gate after a warm start, so that every text-only output stays as the checkpoint gave it)."""
    names = [name for name, _ in network.named_parameters()]
    unknown = [p for p in prefixes if not any(name.startswith(p) for name in names)]
    if unknown:
        raise UserError(f"train_only: no parameter starts with {', '.join(map(repr, unknown))}")
    for name, parameter in network.named_parameters():
        parameter.requires_grad_(any(name.startswith(p) for p in prefixes))
    log.info("training %d of %d parameters (%s)", count_parameters(network),
             sum(p.numel() for p in network.parameters()), ", ".join(prefixes))


def train(config: TrainConfig, frontends: dict, out: Path) -> Checkpoint:
    """Train, keep the epoch with the best mean validation macro-F1, save it to ``out``."""
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    device = pick_device(config.device, "the training config's device")
    labels = config.labels
    text_dim = {"text_dim": frontends["text"].dim} if "text" in frontends else {}  # the encoder's: 384 MiniLM, 768 MPNet
    net_config = FusionConfig.from_dict({**config.network, "n_classes": len(labels.labels), **text_dim})
    corpus = build_corpus(config, net_config.max_context, frontends)
    if corpus.audio_table.shape[1] != net_config.audio_dim and len(corpus.audio_table):
        raise UserError(f"audio features have {corpus.audio_table.shape[1]} dims, network expects {net_config.audio_dim}")
    network = build_network(net_config)
    if config.init_from:
        warm_start(network, corpus, Path(config.init_from), labels)
    network = network.to(device)
    log.info("%s: %d parameters on %s", net_config.network.value, count_parameters(network), device)
    if config.train_only:
        freeze_all_but(network, config.train_only)
    optimizer = torch.optim.AdamW([p for p in network.parameters() if p.requires_grad],
                                  lr=config.lr, weight_decay=config.weight_decay)
    if config.loss not in ("soft-ce", "mse", "partial-ce"):
        raise UserError(f"objectives.loss must be soft-ce, mse or partial-ce, not {config.loss!r}")
    n_classes = len(labels.labels)

    def classify(logits: torch.Tensor, target: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
        if config.loss == "partial-ce":
            return partial_cross_entropy(logits, target, support)
        return (probability_mse if config.loss == "mse" else soft_cross_entropy)(logits, target)

    weights = LossWeights(config.alignment, config.matching)
    text_windows = [w for ws in corpus.train.values() for w in ws if w.text_rows[-1] != MISSING]

    best, best_uwf1, best_state, history, stale = -1.0, 0.0, None, [], 0
    for epoch in range(config.epochs):
        network.train()
        drawn = epoch_windows(corpus, rng, config.shift_boost)
        clips = [w for w in drawn if w.text_rows[-1] == MISSING] if config.pseudo_pairs_drawn else corpus.audio_train
        windows = truncate_context(drawn, config.context_truncation, rng)
        windows = speak_windows(windows, corpus.spoken_rows, config.spoken_text, rng)
        windows = speak_windows(windows, corpus.heard_rows, config.heard_text, rng)
        if config.pseudo_pairs:
            windows += pseudo_pairs(text_windows, clips, rng)
        rng.shuffle(windows)
        total = 0.0
        for i in tqdm(range(0, len(windows), config.batch_size), desc=f"epoch {epoch + 1}", leave=False, unit="batch", disable=None):
            chunk = windows[i : i + config.batch_size]
            batch, y, target = collate(chunk, corpus.text_table, corpus.audio_table)
            drop_modalities(batch, config.modality_dropout, generator)
            batch, y, target = batch.to(device), y.to(device), target.to(device)
            support = support_mask(chunk, n_classes).to(device)
            output = network(batch)
            loss = classify(output.logits, target, support)
            if config.utterance_loss and output.utterance_logits is not None:
                loss = loss + config.utterance_loss * classify(output.utterance_logits, target, support)
            if config.gate_loss and output.audio_gate is not None:
                loss = loss + config.gate_loss * gate_loss(output.audio_gate, batch.audio_present[:, -1], chunk,
                                                           corpus.synthetic_rows)
            paired = batch.audio_present[:, -1] & batch.text_present[:, -1]
            if (weights.alignment or weights.matching) and paired.sum() > 1:
                a, t, yp = output.audio_emb[paired], output.text_emb[paired], y[paired]
                alignment = label_alignment_loss(a, t, yp, config.temperature)
                matching, _ = hard_negative_matching_loss(network, a, t, yp)
                loss = total_loss(loss, alignment, matching, weights)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
            optimizer.step()
            total += loss.item() * len(y)
        scores = validate(network, corpus, device, labels)
        mean_f1 = float(np.mean([s.uwf1 for s in scores.values()])) if scores else 0.0
        chosen = [getattr(s, config.select_metric) for k, s in scores.items()
                  if not config.select_on or k in config.select_on]
        selection = float(np.mean(chosen)) if chosen else 0.0
        history.append({"epoch": epoch + 1, "train_loss": total / len(windows), "selection": round(selection, 4),
                        **{f"{k}_uwf1": round(s.uwf1, 4) for k, s in scores.items()}})
        log.info("epoch %d loss %.4f valid %s, selection %.1f", epoch + 1, total / len(windows),
                 " ".join(f"{k}={100 * s.uwf1:.1f}" for k, s in scores.items()), 100 * selection)
        if selection > best:
            best, best_uwf1, stale = selection, mean_f1, 0
            best_state = {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}
        else:
            stale += 1
            if stale >= config.patience:
                break
    checkpoint = Checkpoint(
        network=net_config.to_dict(),
        label_set=labels,
        frontends={k: v.identity() for k, v in frontends.items()},
        state_dict=best_state or network.state_dict(),
        audio_mean=corpus.audio_mean, audio_std=corpus.audio_std, speaker_norm=corpus.speaker_norm,
        training={
            "name": config.name, "seed": config.seed,
            "datasets": [{"name": d.name, "modality": d.modality, "train": list(d.train),
                          "valid": list(d.valid), "valid_speakers": list(d.valid_speakers),
                          "test_speakers": list(d.test_speakers)} for d in config.datasets],
            "counts": corpus.counts, "objectives": {"loss": config.loss, "alignment": config.alignment,
            "matching": config.matching, "pseudo_pairs": config.pseudo_pairs,
            "corpus_epoch_size": config.corpus_epoch_size, "utterance_loss": config.utterance_loss,
            "init_from": config.init_from, "train_only": list(config.train_only),
            "modality_dropout": config.modality_dropout, "context_truncation": config.context_truncation,
            "shift_boost": config.shift_boost, "spoken_text": config.spoken_text,
            "heard_text": config.heard_text, "heard_text_file": config.heard_text_file,
            "heard_turns": len(corpus.heard_rows), "speaker_norm": config.speaker_norm,
            "speaker_norm_raw": config.speaker_norm_raw, "speaker_norm_clips": config.speaker_norm_clips,
            "speaker_norm_session": config.speaker_norm_session, "pseudo_pairs_drawn": config.pseudo_pairs_drawn,
            "gate_loss": config.gate_loss,
            "balance_classes": sorted(corpus.balanced)},
            "selection": {"datasets": list(config.select_on) or "all", "metric": config.select_metric,
                          "best": round(best, 4)},
            "best_valid_uwf1": round(best_uwf1, 4), "history": history,
            "parameters": sum(p.numel() for p in network.parameters()),  # frozen ones (train_only) too
        },
    )
    checkpoint.save(out)
    return checkpoint
