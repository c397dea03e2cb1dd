"""A BERT encoder for sentence embeddings, in plain torch: MiniLM-L6's network without ``transformers``.

Why our own: importing ``transformers``' BERT costs 2.5-2.8 s of CPU (it pulls in torch's
compiler and distributed packages), paid before every ``batch`` worker and every cold start; a
one-sentence MiniLM pass also took 12.0 ms through it and takes 10.3 ms here, on 1 thread of a
busy machine (docs/benchmarks.md, "Text encoder per utterance"). The network is small and standard; the
parameter names are ``transformers.BertModel``'s, so the released ``model.safetensors`` and the
tuned-layer files of ``emostream tune-text`` load unchanged, and a test checks the outputs
against ``transformers`` on the same weights.

Tokenisation uses the model's own ``tokenizer.json`` through the ``tokenizers`` library (the
engine ``transformers``' fast tokenizers wrap).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


class BertEmbeddings(nn.Module):
    """Token ids [B, L] -> embeddings [B, L, D]: word + position + segment 0, layer norm, dropout."""

    def __init__(self, vocab: int, dim: int, max_positions: int, type_vocab: int, eps: float, dropout: float) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, dim)
        self.position_embeddings = nn.Embedding(max_positions, dim)
        self.token_type_embeddings = nn.Embedding(type_vocab, dim)
        self.LayerNorm = nn.LayerNorm(dim, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions) + self.token_type_embeddings.weight[0]
        return self.dropout(self.LayerNorm(x))


class SelfAttention(nn.Module):
    """The query, key and value projections (named as in ``BertSelfAttention``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)


class DenseNorm(nn.Module):
    """Dense, dropout, then layer norm over the residual sum (``BertSelfOutput`` / ``BertOutput``)."""

    def __init__(self, d_in: int, dim: int, eps: float, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, dim)
        self.LayerNorm = nn.LayerNorm(dim, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class Attention(nn.Module):
    def __init__(self, dim: int, eps: float, dropout: float) -> None:
        super().__init__()
        self.self = SelfAttention(dim)
        self.output = DenseNorm(dim, dim, eps, dropout)


class Intermediate(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.dense = nn.Linear(dim, hidden)


class BertLayer(nn.Module):
    """One post-norm transformer layer: [B, L, D] (with a key mask [B, L]) -> [B, L, D]."""

    def __init__(self, dim: int, heads: int, hidden: int, eps: float, dropout: float, attention_dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.attention_dropout = attention_dropout
        self.attention = Attention(dim, eps, dropout)
        self.intermediate = Intermediate(dim, hidden)
        self.output = DenseNorm(hidden, dim, eps, dropout)

    def forward(self, x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """x [B, L, D]; keys: bool [B, 1, 1, L], True where a token may be attended to."""
        B, L, D = x.shape
        q, k, v = (p(x).view(B, L, self.heads, D // self.heads).transpose(1, 2)  # [B, H, L, D/H]
                   for p in (self.attention.self.query, self.attention.self.key, self.attention.self.value))
        dropout = self.attention_dropout if self.training else 0.0
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=keys, dropout_p=dropout)
        x = self.attention.output(context.transpose(1, 2).reshape(B, L, D), x)
        return self.output(F.gelu(self.intermediate.dense(x)), x)


class LayerStack(nn.Module):
    """``encoder.layer`` as ``BertModel`` names it."""

    def __init__(self, layers: list[BertLayer]) -> None:
        super().__init__()
        self.layer = nn.ModuleList(layers)


class BertEncoder(nn.Module):
    """BERT without its pooler: token ids [B, L] and attention mask [B, L] -> token states [B, L, D].

    ``config``: the model's ``config.json`` (``hidden_size``, ``num_hidden_layers``,
    ``num_attention_heads``, ``intermediate_size``, ``vocab_size``, ``max_position_embeddings``,
    ``type_vocab_size``, ``layer_norm_eps``, dropout probabilities; GELU activation).
    """

    def __init__(self, config: dict) -> None:
        super().__init__()
        if config.get("hidden_act", "gelu") != "gelu" or config.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("BertEncoder covers BERT with GELU and absolute positions")
        dim, eps = config["hidden_size"], config.get("layer_norm_eps", 1e-12)
        dropout = config.get("hidden_dropout_prob", 0.1)
        self.embeddings = BertEmbeddings(config["vocab_size"], dim, config["max_position_embeddings"],
                                         config.get("type_vocab_size", 2), eps, dropout)
        self.encoder = LayerStack([
            BertLayer(dim, config["num_attention_heads"], config["intermediate_size"], eps, dropout,
                      config.get("attention_probs_dropout_prob", 0.1))
            for _ in range(config["num_hidden_layers"])
        ])

    @classmethod
    def from_pretrained(cls, model_dir: Path) -> "BertEncoder":
        """The network of a ``BertModel`` directory (``config.json``, ``model.safetensors``)."""
        from safetensors.torch import load_file

        network = cls(json.loads((model_dir / "config.json").read_text()))
        tensors = load_file(str(model_dir / "model.safetensors"))
        own = network.state_dict()
        missing = [k for k in own if k not in tensors]
        if missing:
            raise ValueError(f"{model_dir}: weights lack {', '.join(missing[:3])}")
        network.load_state_dict({k: tensors[k] for k in own})  # the pooler and position ids are not used
        return network.eval()

    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        """The states entering layer ``upto`` (default: after the last layer), [B, L, D]."""
        return self.layers(self.embeddings(input_ids), attention_mask, 0, upto)

    def layers(self, states: torch.Tensor, attention_mask: torch.Tensor, first: int = 0,
               upto: int | None = None) -> torch.Tensor:
        """Layers ``first..upto-1`` over ``states`` [B, L, D] (what layer ``first - 1`` put out)."""
        keys = attention_mask.bool()[:, None, None, :]  # [B, 1, 1, L]
        for layer in self.encoder.layer[first:upto]:
            states = layer(states, keys)
        return states

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.hidden(input_ids, attention_mask)


class Tokenizer:
    """A model directory's ``tokenizer.json``: texts -> (input ids, attention mask), int64 [B, L],
    padded to the longest text of the batch, each cut to ``max_tokens`` (special tokens included)."""

    def __init__(self, model_dir: Path, max_tokens: int) -> None:
        from tokenizers import Tokenizer as Engine

        self.engine = Engine.from_file(str(model_dir / "tokenizer.json"))
        self.engine.enable_truncation(max_tokens)
        pad = self.engine.padding or {}
        self.engine.enable_padding(pad_id=pad.get("pad_id", 0), pad_token=pad.get("pad_token", "[PAD]"))

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        encodings = self.engine.encode_batch(texts)
        ids = torch.tensor([e.ids for e in encodings], dtype=torch.long)
        mask = torch.tensor([e.attention_mask for e in encodings], dtype=torch.long)
        return ids, mask
