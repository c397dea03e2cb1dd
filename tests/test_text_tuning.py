"""tune-text on a tiny generated corpus: real MiniLM layers trained, written, loaded and identified."""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from models.errors import UserError
from models.frontends import text
from models.frontends.text import TextEncoder, base_encoder, text_encoder_for, token_states, top_layers
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


def test_the_tuned_layers_run_alone_give_the_whole_models_states():
    """Tuning runs only the top layers on the frozen layers' stored output: same states as the whole model."""
    encoder = TextEncoder()
    ids, mask = encoder.tokenize(["I feel terrible about it", "Okay."])
    with torch.no_grad():
        whole = token_states(encoder.model, ids, mask)
        tail = top_layers(encoder.model, token_states(encoder.model, ids, mask, upto=4), mask, 4)
    assert torch.allclose(tail[mask.bool()], whole[mask.bool()], atol=1e-5)


def test_our_bert_gives_the_states_and_tokens_of_transformers_bert():
    """models.frontends.bert replaces transformers' BertModel and tokenizer at run time: same ids,
    same token states (to float rounding) on MiniLM's released weights, padding included."""
    from transformers import AutoModel, AutoTokenizer

    encoder = TextEncoder()
    texts = ["Oh, that is wonderful. I am so happy!", "no.", "Why   would you DO that?? " * 30]
    reference_tokenizer = AutoTokenizer.from_pretrained(encoder.model_dir, local_files_only=True)
    batch = reference_tokenizer(texts, padding=True, truncation=True, max_length=encoder.max_tokens, return_tensors="pt")
    ids, mask = encoder.tokenize(texts)
    assert torch.equal(ids, batch["input_ids"]) and torch.equal(mask, batch["attention_mask"])
    reference = AutoModel.from_pretrained(encoder.model_dir, local_files_only=True).eval()
    with torch.no_grad():
        expected = reference(**batch).last_hidden_state
        ours = token_states(encoder.model, ids, mask)
    assert torch.allclose(ours[mask.bool()], expected[mask.bool()], atol=1e-4)


def test_unknown_or_missing_base_encoders_are_user_errors(monkeypatch):
    with pytest.raises(UserError, match="unknown text encoder"):
        base_encoder("bert-huge")
    monkeypatch.setattr(text, "MPNET_PARTS", ("emostream-no-such-package",))
    with pytest.raises(UserError, match=r"pip install 'emostream\[text-large\]'"):
        TextEncoder("mpnet-base-v2")


def test_a_minilm_identity_or_file_never_runs_on_another_base(tuned, tmp_path):
    path, _ = tuned
    minilm = TextEncoder().identity()
    assert minilm["base"] == "minilm-l6-v2"
    old = {"name": "minilm-l6-v2", "sha256": minilm["sha256"]}  # checkpoints written before bases were named
    assert text_encoder_for(old).base.name == "minilm-l6-v2"
    moved = tmp_path / "moved.safetensors"
    save_file(load_file(str(path)), str(moved), metadata={"base": "mpnet-base-v2"})
    if not _has_mpnet():
        pytest.skip("all-mpnet-base-v2 is not installed (pip install 'emostream[text-large]')")
    with pytest.raises(UserError, match="not the one available"):
        text_encoder_for({**minilm, "base": "mpnet-base-v2"})
    with pytest.raises(UserError, match="do not fit"):
        TextEncoder(moved)


def _has_mpnet() -> bool:
    try:
        text._package_file(text.MPNET_PARTS[0], ".zip.")
        return True
    except (PackageNotFoundError, UserError):
        return False


@pytest.mark.skipif(not _has_mpnet(), reason="all-mpnet-base-v2 is not installed (pip install 'emostream[text-large]')")
def test_mpnet_base_embeds_in_768_dims_and_is_found_by_its_identity():
    encoder = TextEncoder("mpnet-base-v2")
    identity = encoder.identity()
    assert identity["name"] == identity["base"] == "mpnet-base-v2" and encoder.dim == 768
    a = encoder.embed(["I am so happy today", "I feel terrible about it"])
    assert a.shape == (2, 768) and np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert float(a[0] @ a[1]) < 0.9  # two different sentences, two different directions
    assert np.allclose(text_encoder_for(identity).embed(["I am so happy today"]), a[:1], atol=1e-6)
