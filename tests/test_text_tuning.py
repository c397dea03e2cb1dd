"""tune-text on a tiny generated corpus: real MiniLM layers trained, written, loaded and identified."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from models.errors import UserError
from models.frontends.text import TextEncoder, text_encoder_for
from models.text_tuning import tune_text
from models.training_config import TrainConfig

HAPPY = ["I am so happy today", "What wonderful news", "This is great, thank you", "I love it so much"]
SAD = ["I feel terrible about it", "I miss her so much", "That is so sad", "I am really sorry he died"]


def _corpus(path: Path) -> Path:
    """An iemocap-text jsonl: the same happy and sad lines in train and valid dialogues."""
    rows = []
    for split in ("train", "valid"):
        for i, (h, s) in enumerate(zip(HAPPY, SAD)):
            dialog = f"Ses0{1 if split == 'train' else 2}F_impro0{i}"
            rows += [{"dialog": dialog, "turn": 0, "speaker": "F", "text": h, "label": "hap", "split": split},
                     {"dialog": dialog, "turn": 1, "speaker": "M", "text": s, "label": "sad", "split": split}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def tuned(tmp_path_factory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("tune")
    config_path = tmp / "tune.toml"
    config_path.write_text(f"""
name = "tiny"
label_set = "core4"
loss = "partial-ce"
tune_layers = 1
[optim]
epochs = 3
batch_size = 4
lr = 1e-4
patience = 3
[[datasets]]
name = "iemocap-text"
path = "{_corpus(tmp / 'iemocap.jsonl')}"
""")
    out = tmp / "tiny-emo.safetensors"
    report = tune_text(TrainConfig.from_toml(config_path), out)
    return out, report


def test_only_the_top_layers_are_written_in_fp16(tuned):
    path, report = tuned
    tensors = load_file(str(path))
    assert tensors and all(k.startswith("encoder.layer.5.") for k in tensors)
    assert {str(t.dtype) for t in tensors.values()} == {"torch.float16"}
    losses = [h["train_loss"] for h in report["history"]]
    assert losses[-1] < losses[0]  # the classifier and the tuned layer learned the two classes
    assert report["history"][-1]["iemocap-text_ua"] > 0.5


def test_tuned_encoder_differs_from_the_base_and_is_found_by_its_identity(tuned):
    path, _ = tuned
    base, encoder = TextEncoder(), TextEncoder(path)
    a, b = base.embed(["I feel terrible about it"]), encoder.embed(["I feel terrible about it"])
    assert a.shape == b.shape == (1, 384)
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(a, b, atol=1e-3)
    identity = encoder.identity()
    assert identity["tuned"] == path.name and identity["sha256"] != base.identity()["sha256"]
    again = text_encoder_for({**identity, "tuned": str(path)})
    assert np.allclose(again.embed(["I feel terrible about it"]), b)
    assert text_encoder_for(base.identity()).tuned is None


def test_wrong_or_broken_tuned_files_are_user_errors(tuned, tmp_path):
    path, _ = tuned
    with pytest.raises(UserError, match="not the one available"):
        text_encoder_for({"name": "minilm-l6-v2+x", "sha256": "0" * 64, "tuned": str(path)})
    with pytest.raises(UserError, match="not found"):
        TextEncoder(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="not a tuned text encoder"):
        TextEncoder(junk)
    alien = tmp_path / "alien.safetensors"
    save_file({"encoder.layer.5.output.dense.weight": torch.zeros(2, 2)}, str(alien))
    with pytest.raises(UserError, match="do not fit"):
        TextEncoder(alien)
