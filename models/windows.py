"""Dialogue windows: the unit the fusion networks see, built from samples and feature tables.

A window is the target utterance and up to ``max_context - 1`` utterances before it in the same
dialogue, stored as row indices into feature tables (``-1``: the modality is missing). Training,
evaluation and the streaming predictor all turn windows into a ``FusionBatch`` through
:func:`collate`, so the three see exactly the same input layout.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import random

import numpy as np
import torch

from .data.sample import Sample, dialogues
from .labels import LabelSet
from .networks.common import FusionBatch

MISSING = -1  # row index meaning "this modality is absent for this utterance"


@dataclass(frozen=True)
class Window:
    """One training/evaluation example; all tuples have the window length T (target last).

    text_rows/audio_rows: rows into the text/audio tables or MISSING.
    speakers: corpus speaker ids, used to mark same/other speaker relative to the target.
    label: class index of the target in the label set (-1: a partial label, see ``target``);
    target: soft target [C] (one-hot, votes, or uniform over a partial label's candidate classes).
    support: the classes the target's corpus can name [C] (None: all); the partial-label loss
    ignores the others. key: the target sample's id (for per-utterance output).
    shift: the target's class differs from the previous turn's (both labelled): an emotion change.
    """

    text_rows: tuple[int, ...]
    audio_rows: tuple[int, ...]
    speakers: tuple[str, ...]
    label: int
    target: tuple[float, ...]
    support: tuple[bool, ...] | None = None
    key: str = ""
    shift: bool = False

    def with_target_audio(self, row: int) -> "Window":
        """The same window with the target utterance's audio replaced by ``row``."""
        return replace(self, audio_rows=self.audio_rows[:-1] + (row,))


def soft_target(sample: Sample, label: int, label_set: LabelSet) -> tuple[float, ...]:
    """Vote distribution folded onto the label set when votes exist, else one-hot [C].

    Votes for emotions outside the set are dropped and the rest renormalised; when nothing
    remains the target is one-hot on the majority label.
    """
    target = np.zeros(len(label_set.labels), np.float64)
    for name, fraction in (sample.votes or {}).items():
        index = label_set.index(name)
        if index is not None:
            target[index] += fraction
    if target.sum() <= 0:
        target[label] = 1.0
    return tuple((target / target.sum()).tolist())


def build_windows(
    samples: Sequence[Sample],
    label_set: LabelSet,
    max_context: int,
    text_rows: Sequence[int] | None,
    audio_rows: Sequence[int] | None,
    partial: bool = False,
) -> tuple[list[Window], int]:
    """Windows for every sample whose label the set can represent.

    ``text_rows[i]``/``audio_rows[i]`` give sample i's row in the feature tables (None: that
    modality is absent for all). Samples outside the label set still serve as context.
    ``partial`` (training): targets and supports from :meth:`LabelSet.partial_target`, so a
    corpus's partial labels (EmoContext "others") become targets too.
    Returns the windows and the number of samples excluded as targets.
    """
    index = {id(s): i for i, s in enumerate(samples)}
    windows: list[Window] = []
    excluded = 0
    for dialogue in dialogues(samples):
        for position, sample in enumerate(dialogue):
            if partial and sample.label is not None:
                found = label_set.partial_target(sample.label, sample.dataset)
                label, target, support = found if found else (None, None, None)
            else:
                label, support = label_set.index(sample.label), None
            if label is None:
                excluded += 1
                continue
            if label >= 0 and (not partial or sample.votes):
                target = soft_target(sample, label, label_set)
            previous = label_set.index(dialogue[position - 1].label) if position and dialogue[position - 1].label else None
            context = dialogue[max(0, position - max_context + 1) : position + 1]
            rows = [index[id(s)] for s in context]
            windows.append(Window(
                text_rows=tuple(text_rows[r] for r in rows) if text_rows is not None else (MISSING,) * len(rows),
                audio_rows=tuple(audio_rows[r] for r in rows) if audio_rows is not None else (MISSING,) * len(rows),
                speakers=tuple(s.speaker for s in context),
                label=label,
                target=target,
                support=support,
                key=sample.id,
                shift=label >= 0 and previous is not None and previous != label,
            ))
    return windows, excluded


def _gather(table: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """table [N, D], rows [B, T] long (MISSING allowed) -> vectors [B, T, D], present [B, T]."""
    present = rows >= 0
    vectors = table[rows.clamp(min=0)] if len(table) else torch.zeros(*rows.shape, table.shape[1])
    return vectors * present.unsqueeze(-1), present


def collate(
    windows: Sequence[Window], text_table: torch.Tensor, audio_table: torch.Tensor
) -> tuple[FusionBatch, torch.Tensor, torch.Tensor]:
    """Left-pad windows to a batch.

    text_table: [Nt, Dt]; audio_table: [Na, Da] (already standardised).
    Returns the batch, labels [B] long and soft targets [B, C] float.
    """
    B, T = len(windows), max(len(w.text_rows) for w in windows)
    text_rows = torch.full((B, T), MISSING, dtype=torch.long)
    audio_rows = torch.full((B, T), MISSING, dtype=torch.long)
    speaker = torch.zeros((B, T), dtype=torch.long)
    valid = torch.zeros((B, T), dtype=torch.bool)
    for b, w in enumerate(windows):
        n = len(w.text_rows)
        text_rows[b, T - n :] = torch.tensor(w.text_rows)
        audio_rows[b, T - n :] = torch.tensor(w.audio_rows)
        speaker[b, T - n :] = torch.tensor([int(s != w.speakers[-1]) for s in w.speakers])
        valid[b, T - n :] = True
    text, text_present = _gather(text_table, text_rows)  # [B, T, Dt], [B, T]
    audio, audio_present = _gather(audio_table, audio_rows)  # [B, T, Da], [B, T]
    batch = FusionBatch(audio, text, audio_present, text_present, speaker, valid)
    labels = torch.tensor([w.label for w in windows], dtype=torch.long)
    targets = torch.tensor([w.target for w in windows], dtype=torch.float32)
    return batch, labels, targets


def support_mask(windows: Sequence[Window], n_classes: int) -> torch.Tensor:
    """bool [B, C]: the classes each window's corpus can name (all where not given)."""
    return torch.tensor([w.support or (True,) * n_classes for w in windows], dtype=torch.bool)


def pseudo_pairs(text_windows: Sequence[Window], audio_windows: Sequence[Window], rng: random.Random) -> list[Window]:
    """One pseudo-pair per audio clip: a random text window of the same label given that clip's
    audio at its target."""
    by_label: dict[int, list[Window]] = {}
    for w in text_windows:
        if w.label >= 0:
            by_label.setdefault(w.label, []).append(w)
    return [
        rng.choice(by_label[a.label]).with_target_audio(a.audio_rows[-1])
        for a in audio_windows if a.label in by_label
    ]
