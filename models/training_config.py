"""What a training run depends on, read from models/configs/*.toml: no torch, so that a bad value
(``emostream train --set optim.epochs=abc``) is an error within a second, before any work."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Sequence

from .audio_norm import PRIOR_CLIPS
from .checks import check_type
from .errors import UserError
from .labels import LabelSet, label_set


@dataclass(frozen=True)
class DatasetSpec:
    """One corpus in a training config.

    modality: "text", "audio" or "both" (which feature tables to build).
    train/valid: corpus splits to use (text corpora); valid_speakers: speakers held out for
    validation, test_speakers: speakers never used (audio corpora without splits). Paths are
    relative to the working directory. max_dialogues: train on at most this many dialogues of the
    train splits (a seeded draw; 0 = all), and validate on at most this many (to bound feature
    extraction on big corpora). valid_labels: the label set the validation figures are computed
    in, the model's output folded onto it (EmoContext: "emocontext4"); default: the model's own.
    epoch_size: training windows drawn from this corpus per epoch, instead of the config's
    ``corpus_epoch_size`` (0 = that). balance_classes: draw them with the same number of windows
    per class (a class with few clips repeats within the epoch). synthetic: its audio carries no
    emotion (espeak-ng renders); with ``objectives.gate_loss`` the audio gate is taught to close on
    it and to open on every other corpus's audio. augment_copies: audio corpora: this many augmented
    copies (:class:`models.augment.Augmentation`, copies 1..N: speed, pitch, room, noise) of every
    training speaker's clip join the training clips (validation and test speakers stay clean).
    """

    name: str
    path: Path
    modality: str = "text"
    train: tuple[str, ...] = ("train",)
    valid: tuple[str, ...] = ("valid",)
    valid_speakers: tuple[str, ...] = ()
    test_speakers: tuple[str, ...] = ()
    max_dialogues: int = 0
    valid_labels: str = ""
    epoch_size: int = 0
    balance_classes: bool = False
    synthetic: bool = False
    augment_copies: int = 0


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (the file format is models/configs/*.toml)."""

    name: str
    datasets: tuple[DatasetSpec, ...]
    network: dict = field(default_factory=dict)
    label_set: str = "core4"
    seed: int = 13
    device: str = "auto"
    loss: str = "soft-ce"  # or "mse" (MCAF's regression on the vote distribution), "partial-ce"
    merge: dict = field(default_factory=dict)  # extra folds onto the label set, e.g. frustrated -> angry
    corpus_epoch_size: int = 0  # training windows drawn from each corpus per epoch (0 = all of them)
    utterance_loss: float = 0.0  # weight of the auxiliary loss on the target-only logits
    init_from: str = ""  # a checkpoint to start from (warm start): matching weights and classes copied
    train_only: tuple[str, ...] = ()  # with init_from: parameter name prefixes to train, the rest frozen ((): all)
    alignment: float = 0.0  # λ1
    matching: float = 0.0  # λ2
    temperature: float = 0.1
    modality_dropout: float = 0.2
    context_truncation: float = 0.0  # probability of cutting a window's context to a random length
    shift_boost: int = 0  # emotion-change targets enter each epoch's draw 1 + shift_boost times
    spoken_text: float = 0.0  # probability of a window's (tune-text: an utterance's) texts as Whisper tends to write them
    heard_text: float = 0.0  # probability of a window's texts as the pipeline heard them (heard_text_file)
    heard_text_file: str = ""  # scripts/heard_text.py's JSONL: transcripts of rendered training turns
    pseudo_pairs: bool = False
    gate_loss: float = 0.0  # weight of a binary cross-entropy teaching the gate: 0 on synthetic audio, 1 on the rest
    pseudo_pairs_drawn: bool = False  # pseudo-pairs from the epoch's drawn audio windows, not every training clip
    speaker_norm: bool = False  # audio vectors normalised per speaker with running statistics (models.audio_norm)
    speaker_norm_raw: bool = False  # with speaker_norm: the raw vector beside the normalised one (network.audio_dim x 2)
    speaker_norm_clips: float = PRIOR_CLIPS  # with speaker_norm: a speaker's statistics shrink towards the prior as this many clips
    speaker_norm_session: float = 0.0  # > 0: ... towards the session's (every speaker's) statistics, shrunk to the prior as this many clips
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-2
    patience: int = 6  # epochs without validation improvement before stopping
    select_on: tuple[str, ...] = ()  # datasets whose mean validation score chooses the epoch (() = all)
    select_metric: str = "uwf1"  # that score: uwf1, ua, wf1 or wa
    text_encoder: str = ""  # a base (minilm-l6-v2, mpnet-base-v2) or tuned layers in models/checkpoints; "" = MiniLM
    audio_frontend: str = ""  # models.frontends.audio: "" = Whisper tiny.en (the ASR pass), "base-layers" = every layer of base
    tune_layers: int = 2  # tune-text: how many top layers of the encoder are trained
    max_tokens: int = 64  # tune-text: utterances are cut to this many tokens
    context_turns: int = 0  # tune-text: each utterance read with up to this many past turns of its dialogue
    context_tokens: int = 128  # tune-text: an utterance with its past turns is cut to this many tokens (oldest first)

    def __post_init__(self) -> None:
        """Types and ranges, so a bad value (``--set optim.epochs=abc``) stops the run before any work."""
        for f in fields(self):
            check_type(f, getattr(self, f.name), f.name)
        for name in ("shift_boost", "context_turns"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} must be at least 0, got {getattr(self, name)}")
        for name in ("epochs", "batch_size", "patience", "tune_layers", "max_tokens", "context_tokens"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.speaker_norm_clips > 0 or not self.speaker_norm_session >= 0:
            raise UserError(f"speaker_norm_clips must be > 0 and speaker_norm_session >= 0, got "
                            f"{self.speaker_norm_clips} and {self.speaker_norm_session}")
        for name in ("modality_dropout", "context_truncation", "spoken_text", "heard_text"):
            if not 0 <= getattr(self, name) <= 1:
                raise UserError(f"{name} must be a probability in [0, 1], got {getattr(self, name)}")
        if self.heard_text and not self.heard_text_file:
            raise UserError("heard_text needs heard_text_file (scripts/heard_text.py's output)")
        if not self.lr > 0:
            raise UserError(f"lr must be > 0, got {self.lr}")
        if not isinstance(self.train_only, (list, tuple)) or not all(isinstance(p, str) and p for p in self.train_only):
            raise UserError(f"train_only must be a list of parameter name prefixes, got {self.train_only!r}")
        if not isinstance(self.select_on, (list, tuple)) or not all(isinstance(n, str) for n in self.select_on):
            raise UserError(f"select_on must be a list of dataset names, got {self.select_on!r}")
        unknown = set(self.select_on) - {d.name for d in self.datasets}
        if unknown:
            raise UserError(f"select_on: no dataset named {', '.join(sorted(map(repr, unknown)))}")
        if self.select_metric not in ("uwf1", "ua", "wf1", "wa"):
            raise UserError(f"select_metric must be uwf1, ua, wf1 or wa, got {self.select_metric!r}")
        if self.train_only and not self.init_from:
            raise UserError("train_only needs init_from: the frozen weights come from that checkpoint")

    @classmethod
    def from_toml(cls, path: Path, overrides: Sequence[str] = ()) -> "TrainConfig":
        """Read a config file; ``overrides`` are ``key.sub=<TOML value>`` strings (``--set``)."""
        try:
            raw = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise UserError(f"training config not found: {path}") from None
        except tomllib.TOMLDecodeError as err:
            raise UserError(f"{path}: invalid TOML ({err})") from None
        for item in overrides:
            apply_override(raw, item)
        specs = []
        dropped = raw.pop("drop_datasets", [])  # e.g. --set 'drop_datasets=["turevdb"]': the config without them
        if not isinstance(dropped, list) or not all(isinstance(n, str) for n in dropped):
            raise UserError(f"drop_datasets must be a list of dataset names, got {dropped!r}")
        unknown = set(dropped) - {d.get("name") for d in raw.get("datasets", [])}
        if unknown:
            raise UserError(f"drop_datasets: no dataset named {', '.join(sorted(map(repr, unknown)))}")
        for d in raw.pop("datasets", []):
            if d.get("name") in dropped:
                continue
            d = dict(d)
            for key in ("train", "valid", "valid_speakers", "test_speakers"):
                if key in d:
                    d[key] = tuple(str(v) for v in d[key])
            specs.append(DatasetSpec(**{**d, "path": Path(d["path"])}))
        if not specs:
            raise UserError(f"{path}: no [[datasets]] to train on")
        flat = {**raw.pop("objectives", {}), **raw.pop("optim", {})}
        try:
            return cls(datasets=tuple(specs), **raw, **flat)
        except TypeError as err:
            raise UserError(f"{path}: {err}") from None

    @property
    def labels(self) -> LabelSet:
        return label_set(self.label_set).with_merge(self.merge)


def apply_override(raw: dict, item: str) -> None:
    """Set ``raw[a][b] = value`` for ``item = "a.b=value"``; value is TOML (bare words as strings). In an
    array of tables a part names an entry: ``datasets.emodb.epoch_size=300``."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set {item!r}: expected key=value, e.g. network.max_context=1")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    *parents, leaf = key.strip().split(".")
    node = raw
    for name in parents:
        if isinstance(node, list):  # an array of tables (datasets.emodb.epoch_size): the entry of that name
            node = next((t for t in node if isinstance(t, dict) and t.get("name") == name), None)
            if node is None:
                raise UserError(f"--set {item!r}: no entry named {name!r}")
        else:
            node = node.setdefault(name, {})
    if isinstance(node, list):
        raise UserError(f"--set {item!r}: name an entry, e.g. datasets.NAME.{leaf}=...")
    node[leaf] = parsed
