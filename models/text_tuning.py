"""Fine-tuning a sentence encoder's top layers for emotion (``emostream tune-text --config FILE --out F``).

The frozen sentence encoder was trained for topic similarity, not emotion: "I am really sorry"
and "I am really glad" sit close together. This trains the top ``tune_layers`` transformer layers of
the config's ``text_encoder`` (a base name of :data:`models.frontends.text.BASES`, MiniLM-L6 when
empty; or a tuned file, tuned further) and a linear classifier that is then thrown away, on single utterances of every text corpus in
the config, through the one label table with partial labels (:func:`partial_cross_entropy`), so
each corpus teaches only the classes it names. Every epoch draws at most ``corpus_epoch_size``
utterances per corpus, classes weighted by 1/sqrt(frequency) within a corpus, so neither a big
corpus nor a majority class (DailyDialog's 80 % neutral) sets the embedding's habits.

The layers below the tuned ones are frozen, so their output is computed once per distinct
utterance (without dropout) and the tuned layers run on it (:func:`models.frontends.text.top_layers`); the embedding
is the same as the whole model's (a test checks it). With ``spoken_text`` an utterance is
trained, with that probability each time it is drawn, in the form Whisper tends to write it
(:func:`models.whisper_style.whisper_form`, one form per utterance); with ``heard_text`` in what
the pipeline heard of it (``heard_text_file``, where it was rendered), so the embedding stops
keying on marks that speech does not carry. With ``context_turns`` K > 0 each utterance is read
with the previous K turns of its dialogue (past only, as the runtime streams), after it, each
marked same or other speaker (:class:`models.frontends.text.ContextReader`), the whole cut to
``context_tokens`` from the oldest end; the embedding is the mean over the target's tokens only,
so a turn's embedding is "this turn, read in its dialogue". The output is a safetensors file with the
tuned layers only (fp16, 3.5 MB per MiniLM layer, 14 MB per MPNet layer) and the base's name in its
metadata; the runtime loads it over that base (:class:`models.frontends.text.TextEncoder`). The fusion
model is then trained on the tuned embeddings (``text_encoder`` in its config). Without
``context_turns`` utterances are encoded alone, as the runtime encodes them, and the dialogue
context is the fusion model's job.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .data import load_dataset
from .data.sample import Sample
from .errors import UserError
from .features import in_context
from .frontends.text import ContextReader, InContext, TextEncoder, mean_pool, prefix_mask, token_states, top_layers
from .labels import LabelSet, fold_matrix, label_set
from .losses import partial_cross_entropy
from .metrics import Scores, score
from .training import load_heard, split_draw
from .training_config import TrainConfig
from .whisper_style import whisper_form

log = logging.getLogger(__name__)

HEAD_LR = 1e-3  # the throw-away classifier learns faster than the pretrained layers


@dataclass(frozen=True)
class Example:
    """One utterance, the past turns it is read with, and its training target (``LabelSet.partial_target``)."""

    text: str
    label: int  # class index, -1 for a partial label
    target: tuple[float, ...]  # [C]
    support: tuple[bool, ...]  # [C]
    spoken: str = ""  # the text as Whisper tends to write it ("" when not made)
    heard: str = ""  # what the pipeline heard of it ("" when it was not rendered)
    past: tuple[tuple[bool, str], ...] = ()  # InContext.past: (same speaker, text) of earlier turns

    def read(self) -> InContext:
        """The encoder's input for this example."""
        return InContext(self.text, self.past)


def tuning_samples(name: str, path: Path, context_turns: int) -> list[Sample]:
    """A corpus's samples for tuning. Read alone, only the labelled ones (the seeded dialogue draws
    of the utterance-level configs stay as they were). Read with ``context_turns`` > 0 past turns,
    the unlabelled ones too (``label`` None; e.g. EmoContext's first two turns): they are part of the
    dialogue, as ``emostream train`` and ``evaluate`` read it, and are never trained on."""
    return load_dataset(name, path, keep_unlabelled=context_turns > 0).samples


def training_examples(samples: list[Sample], labels: LabelSet, seed: int | None = None,
                      heard: dict[str, str] | None = None, context_turns: int = 0) -> list[Example]:
    """Labelled, non-empty utterances the label set can represent, with their partial targets and
    up to ``context_turns`` past turns; with a ``seed``, each one's Whisper-style form; with
    ``heard`` (sample id -> transcript), what the pipeline heard of it."""
    out = []
    for s, read in zip(samples, in_context(samples, context_turns)):
        if s.label is None or not (s.text or "").strip():
            continue
        made = labels.partial_target(s.label, s.dataset)
        if made is not None:
            spoken = whisper_form(s.text, random.Random(f"{seed}:{s.id}")) if seed is not None else ""
            out.append(Example(s.text, *made, spoken=spoken, heard=(heard or {}).get(s.id, ""), past=read.past))
    return out


def trained_form(example: Example, spoken: float, heard: float, rng: random.Random) -> Example:
    """The example as trained this time: in its heard form with probability ``heard`` (where it has
    one), else in its Whisper-style form with probability ``spoken``, else as written."""
    if heard and example.heard and rng.random() < heard:
        return replace(example, text=example.heard)
    if spoken and example.spoken and rng.random() < spoken:
        return replace(example, text=example.spoken)
    return example


def balanced_draw(examples: list[Example], n: int, rng: random.Random) -> list[Example]:
    """``n`` examples (all when n is 0 or covers them) drawn with weights 1/sqrt(class frequency)."""
    if not n or n >= len(examples):
        return list(examples)
    freq = Counter(e.label for e in examples)
    weights = [freq[e.label] ** -0.5 for e in examples]
    return rng.choices(examples, weights=weights, k=n)


def length_batches(examples: list[Example], batch_size: int, rng: random.Random) -> list[list[Example]]:
    """Shuffled batches of similar lengths: sorted within pools of 50 batches (less padding)."""
    rng.shuffle(examples)
    pool = 50 * batch_size
    batches = []
    for i in range(0, len(examples), pool):
        chunk = sorted(examples[i : i + pool], key=lambda e: e.read().chars)
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


class Tuner(torch.nn.Module):
    """A sentence encoder with its bottom layers frozen, and a linear head on the embedding pooled
    over the target's tokens (:class:`ContextReader`; an input without past is the utterance alone).

    Call :meth:`precompute` with every input before ``forward`` sees it: the frozen layers' output
    is computed there once per distinct input.
    """

    def __init__(self, encoder: TextEncoder, n_classes: int, tune_layers: int, context_tokens: int = 128) -> None:
        super().__init__()
        n_layers = encoder.base.n_layers
        if not 1 <= tune_layers <= n_layers:
            raise UserError(f"tune_layers must be 1..{n_layers} for {encoder.base.name}, got {tune_layers}")
        self.read = ContextReader(encoder.tokenize, context_tokens)
        self.model = encoder.model
        self.first = n_layers - tune_layers
        self.prefixes = tuple(f"encoder.layer.{i}." for i in range(self.first, n_layers))
        for name, p in self.model.named_parameters():
            p.requires_grad = name.startswith(self.prefixes)
        self.head = torch.nn.Linear(encoder.dim, n_classes)
        self.scale = 20.0  # the embedding has unit length: logits need a wider range
        # input -> ([L, D] states entering layer ``first``, number of target tokens)
        self.frozen: dict[InContext, tuple[torch.Tensor, int]] = {}

    @torch.no_grad()
    def precompute(self, items: list[InContext], batch_size: int = 64) -> None:
        """The frozen layers' output for each input not yet seen (eval mode: no dropout)."""
        todo = sorted({t for t in items if t not in self.frozen}, key=lambda t: t.chars)
        training = self.model.training
        self.model.eval()
        for i in range(0, len(todo), batch_size):
            chunk = todo[i : i + batch_size]
            ids, mask, n_target = self.read(chunk)
            states = token_states(self.model, ids, mask, upto=self.first)  # [b, L, D]
            for item, row, n, k in zip(chunk, states, mask.sum(1).tolist(), n_target.tolist()):
                self.frozen[item] = (row[:n].clone(), k)
        self.model.train(training)

    def forward(self, items: list[InContext]) -> torch.Tensor:
        """inputs (B) -> logits [B, C]."""
        rows = [self.frozen[t] for t in items]
        states = torch.nn.utils.rnn.pad_sequence([r for r, _ in rows], batch_first=True)  # [B, L, D]
        mask = prefix_mask(torch.tensor([len(r) for r, _ in rows]), states.shape[1])  # [B, L]
        out = top_layers(self.model, states, mask, self.first)  # [B, L, D]
        target = prefix_mask(torch.tensor([k for _, k in rows]), states.shape[1])  # [B, L]
        return self.head(self.scale * mean_pool(out, target))

    def tuned_state(self) -> dict[str, torch.Tensor]:
        """The tuned layers' weights, fp16, as the runtime loads them."""
        return {k: v.detach().to(torch.float16).contiguous() for k, v in self.model.state_dict().items()
                if k.startswith(self.prefixes)}


@torch.inference_mode()
def validate(tuner: Tuner, valid: dict[str, tuple[list[Sample], LabelSet]], labels: LabelSet,
             context_turns: int = 0) -> dict[str, Scores]:
    """Per-corpus scores of the classifier head, each in its corpus's validation label set, each
    utterance read with up to ``context_turns`` past turns."""
    tuner.eval()
    out = {}
    for name, (samples, valid_set) in valid.items():
        kept = [(r, valid_set.index(s.label)) for s, r in zip(samples, in_context(samples, context_turns))
                if (s.text or "").strip()]
        kept = [(r, y) for r, y in kept if y is not None]
        if not kept:
            continue
        probs = np.concatenate([
            tuner([r for r, _ in kept[i : i + 128]]).softmax(-1).numpy() for i in range(0, len(kept), 128)
        ])  # [N, C]
        folded = probs @ fold_matrix(labels, valid_set)
        out[name] = score(np.array([y for _, y in kept]), folded.argmax(1), valid_set.labels)
    tuner.train()
    return out


def tune_text(config: TrainConfig, out: Path) -> dict:
    """Fine-tune, keep the epoch with the best mean validation macro-F1, write its layers to ``out``."""
    from safetensors.torch import save_file

    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    labels = config.labels
    train: dict[str, list[Example]] = {}
    valid: dict[str, tuple[list[Sample], LabelSet]] = {}
    heard = load_heard(Path(config.heard_text_file)) if config.heard_text else {}
    for spec in config.datasets:
        if spec.modality != "text":
            raise UserError(f"tune-text trains on text corpora; {spec.name} is {spec.modality}")
        samples = tuning_samples(spec.name, spec.path, config.context_turns)
        train[spec.name] = training_examples(split_draw(samples, spec.train, spec.max_dialogues, config.seed), labels,
                                             config.seed if config.spoken_text else None, heard.get(spec.name),
                                             config.context_turns)
        va = split_draw(samples, spec.valid, spec.max_dialogues, config.seed)
        if va:
            valid[spec.name] = (va, label_set(spec.valid_labels) if spec.valid_labels else labels)
        log.info("%s: %d training utterances, %d validation", spec.name, len(train[spec.name]), len(va))
    encoder = TextEncoder(config.text_encoder or None, max_tokens=config.max_tokens)
    tuner = Tuner(encoder, len(labels.labels), config.tune_layers, config.context_tokens)
    tuner.precompute([InContext(t, e.past) for ex in train.values() for e in ex for t in (e.text, e.spoken, e.heard) if t]
                     + [r for samples, _ in valid.values() for r in in_context(samples, config.context_turns)
                        if r.text.strip()])
    optimizer = torch.optim.AdamW([
        {"params": [p for p in tuner.model.parameters() if p.requires_grad], "lr": config.lr},
        {"params": tuner.head.parameters(), "lr": HEAD_LR},
    ], weight_decay=config.weight_decay)
    best, best_state, history, stale = -1.0, None, [], 0
    for epoch in range(config.epochs):
        drawn = [trained_form(e, config.spoken_text, config.heard_text, rng)
                 for ex in train.values() for e in balanced_draw(ex, config.corpus_epoch_size, rng)]
        total = 0.0
        for i, batch in enumerate(length_batches(drawn, config.batch_size, rng)):
            logits = tuner([e.read() for e in batch])
            loss = partial_cross_entropy(logits, torch.tensor([e.target for e in batch]), torch.tensor([e.support for e in batch]))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(tuner.parameters(), 1.0)
            optimizer.step()
            total += loss.item() * len(batch)
            if i % 100 == 0:
                log.info("epoch %d batch %d loss %.4f", epoch + 1, i, loss.item())
        scores = validate(tuner, valid, labels, config.context_turns)
        mean_f1 = float(np.mean([s.uwf1 for s in scores.values()])) if scores else 0.0
        history.append({"epoch": epoch + 1, "train_loss": round(total / len(drawn), 4),
                        **{f"{k}_uwf1": round(s.uwf1, 4) for k, s in scores.items()},
                        **{f"{k}_ua": round(s.ua, 4) for k, s in scores.items()},
                        **{f"{k}_wf1": round(s.wf1, 4) for k, s in scores.items()}})
        log.info("epoch %d loss %.4f valid %s", epoch + 1, total / len(drawn),
                 " ".join(f"{k}={100 * s.uwf1:.1f}/{100 * s.ua:.1f}" for k, s in scores.items()))
        if mean_f1 > best:
            best, best_state, stale = mean_f1, tuner.tuned_state(), 0
        else:
            stale += 1
            if stale >= config.patience:
                break
    report = {"name": config.name, "base": encoder.base.name, "tune_layers": config.tune_layers, "label_set": labels.name,
              "spoken_text": config.spoken_text, "heard_text": config.heard_text,
              "heard_text_file": config.heard_text_file,
              "heard_utterances": sum(bool(e.heard) for ex in train.values() for e in ex),
              "context_turns": config.context_turns, "context_tokens": config.context_tokens,
              "best_valid_uwf1": round(best, 4), "history": history}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(best_state, str(out), metadata={"base": encoder.base.name, "training": json.dumps(report),
                                                 "context_turns": str(config.context_turns),
                                                 "context_tokens": str(config.context_tokens)})
    return report
