"""An utterance read with its past turns (tune-text ``context_turns``): the input builder, its
left truncation, speaker marks and target-only pooling, on the real MiniLM tokenizer and network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.data.sample import Sample
from models.errors import UserError
from models.frontends.text import (
    OTHER_SPEAKER, SAME_SPEAKER, ContextReader, InContext, TextEncoder, mean_pool, prefix_mask, token_states,
)
from models.labels import Emotion
from models.features import in_context
from models.text_tuning import Tuner
from models.training_config import TrainConfig


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder(max_tokens=16)


def _sample(turn: int, speaker: str, text: str, dialogue: str = "d1") -> Sample:
    return Sample(id=f"{dialogue}-{turn}", dataset="iemocap-text", raw_label="neu", label=Emotion.NEUTRAL,
                  speaker=speaker, dialogue=dialogue, turn=turn, text=text)


def _tokens(encoder: TextEncoder, ids: torch.Tensor) -> list[str]:
    return [encoder.tokenize.engine.id_to_token(i) for i in ids.tolist() if i]


def test_the_target_comes_first_whole_then_the_newest_past_turns_cut_from_the_oldest_end(encoder):
    target = "I feel terrible."
    past = ((True, "one two three four five six"), (False, "seven eight nine"))
    read = ContextReader(encoder.tokenize, context_tokens=14)
    ids, mask, n_target = read([InContext(target, past)])
    alone, _ = encoder.tokenize([target])
    tokens = _tokens(encoder, ids[0])
    assert n_target.tolist() == [alone.shape[1]]  # [CLS] i feel terrible . [SEP]: 6 tokens
    assert torch.equal(ids[0, : alone.shape[1]], alone[0])  # the target is tokenised as the utterance alone
    assert len(tokens) == mask.sum() == 14
    # 14 = 6 target + 7 past + the closing [SEP]: the oldest words went, the newest turn is whole
    assert tokens[6:] == ["five", "six", "other", ":", "seven", "eight", "nine", "[SEP]"]


def test_a_long_target_stays_whole_and_the_past_gives_way(encoder):
    target = "word " * 30  # cut to max_tokens = 16 as the utterance alone is
    read = ContextReader(encoder.tokenize, context_tokens=16)
    ids, mask, n_target = read([InContext(target, ((False, "anything at all"),))])
    assert n_target.tolist() == [16] and mask.sum() == 16  # no room left: no past, no second [SEP]
    assert torch.equal(ids, encoder.tokenize([target])[0])


def test_past_turns_are_the_dialogues_earlier_ones_marked_same_or_other_speaker():
    d = [_sample(0, "F", "Hello."), _sample(1, "M", "Hi there."), _sample(2, "F", "  "),
         _sample(3, "F", "How are you?"), _sample(4, "M", "Fine.")]
    other = [_sample(0, "M", "Elsewhere.", dialogue="d2")]
    reads = in_context(other + list(reversed(d)), turns=2)
    by_text = {r.text: r for r in reads}
    assert by_text["Elsewhere."].past == ()  # another dialogue's turns are never its past
    assert by_text["Hello."].past == ()
    # the empty turn is skipped; at most two turns, oldest first, marked relative to the target's speaker
    assert by_text["How are you?"].past == ((True, "Hello."), (False, "Hi there."))
    assert by_text["Fine."].past == ((True, "Hi there."), (False, "How are you?"))
    assert all(r.past == () for r in in_context(d, turns=0))


def test_the_marks_are_words_the_frozen_embeddings_know(encoder):
    vocab = encoder.tokenize.engine.get_vocab()
    for mark in (SAME_SPEAKER, OTHER_SPEAKER):
        assert all(t in vocab for t in encoder.tokenize.engine.encode(mark, add_special_tokens=False).tokens)


def test_without_past_the_embedding_is_the_utterance_levels_bit_for_bit(encoder):
    texts = ["I feel terrible about it.", "Okay.", "word " * 30]
    assert np.array_equal(encoder.embed_in_context([InContext(t) for t in texts], 128), encoder.embed(texts))


def test_the_embedding_pools_the_target_tokens_only_and_the_past_changes_it(encoder):
    item = InContext("I feel terrible.", ((False, "It failed again."), (True, "I am so sorry.")))
    got = encoder.embed_in_context([item], 64)
    ids, mask, n_target = ContextReader(encoder.tokenize, 64)([item])
    with torch.no_grad():
        states = token_states(encoder.model, ids, mask)  # [1, L, D]
    target_only = mean_pool(states[:, : n_target[0]], mask[:, : n_target[0]]).numpy()
    whole = mean_pool(states, mask).numpy()
    assert np.allclose(got, target_only, atol=1e-6) and not np.allclose(got, whole, atol=1e-3)
    assert not np.allclose(got, encoder.embed([item.text]), atol=1e-3)  # the target was read in its dialogue


def test_the_tuner_on_precomputed_layers_gives_the_whole_models_embedding(encoder):
    """Tuning runs the top layers on the frozen layers' stored output: the head sees the runtime's embedding."""
    items = [InContext("I feel terrible.", ((False, "It failed again."),)), InContext("Okay.")]
    tuner = Tuner(encoder, n_classes=2, tune_layers=2, context_tokens=64)
    tuner.precompute(items)
    tuner.eval()
    with torch.no_grad():
        tuner.head.weight.copy_(torch.eye(2, encoder.dim))  # logits = 20 x the first two values
        tuner.head.bias.zero_()
        logits = tuner(items)
    expected = 20.0 * encoder.embed_in_context(items, 64)[:, :2]
    assert np.allclose(logits.numpy(), expected, atol=1e-4)
    assert prefix_mask(torch.tensor([2, 0]), 3).tolist() == [[1, 1, 0], [0, 0, 0]]


def test_a_negative_context_is_a_user_error(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('name = "x"\ncontext_turns = -1\n[[datasets]]\nname = "iemocap-text"\npath = "x"\n')
    with pytest.raises(UserError, match="context_turns must be at least 0"):
        TrainConfig.from_toml(path)


def _dialogue() -> list[Sample]:
    return [_sample(0, "F", "It failed again."), _sample(1, "M", "Oh no, I am so sorry."), _sample(2, "F", "I feel terrible.")]


def test_tuning_in_context_writes_layers_the_features_read_in_context(tmp_path):
    """tune-text with context_turns: its file says so, and text_matrix embeds each turn with its
    past, in a store whose keys never meet the utterance-level ones."""
    import json

    from models.features import text_matrix
    from models.training import add_forms
    from models.text_tuning import tune_text

    rows = [{"dialog": f"Ses0{1 if split == 'train' else 2}F_impro0{i}", "turn": t, "speaker": "FM"[t % 2],
             "text": text, "label": label, "split": split}
            for split in ("train", "valid") for i in range(2)
            for t, (text, label) in enumerate([("What wonderful news", "hap"), ("I miss her so much", "sad")])]
    data = tmp_path / "iemocap.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = tmp_path / "c.toml"
    config.write_text(f'name = "t"\nlabel_set = "core4"\nloss = "partial-ce"\ntune_layers = 1\ncontext_turns = 2\n'
                      f'context_tokens = 32\n[optim]\nepochs = 1\nbatch_size = 4\n'
                      f'[[datasets]]\nname = "iemocap-text"\npath = "{data}"\n')
    out = tmp_path / "ctx.safetensors"
    report = tune_text(TrainConfig.from_toml(config), out)
    assert report["context_turns"] == 2
    encoder = TextEncoder(out)
    assert (encoder.context_turns, encoder.context_tokens) == (2, 32)
    assert encoder.identity()["context"] == "2 turns, 32 tokens"
    samples = _dialogue()
    x = text_matrix(samples, encoder, cache_dir=tmp_path / "cache")
    expected = encoder.embed_in_context(in_context(samples, 2), 32)
    assert np.allclose(x, expected, atol=1e-6)
    with pytest.raises(UserError, match="reads each utterance with its past 2 turns"):
        encoder.embed([samples[0].text])  # e.g. a runtime that does not feed it the past yet
    alone = encoder.embed_in_context([InContext(s.text) for s in samples], 32)  # = embed (test above)
    assert np.allclose(x[0], alone[0], atol=1e-6)  # the first turn has no past
    assert not np.allclose(x[2], alone[2], atol=1e-3)
    # Another form of two turns (e.g. what Whisper heard) is read after its dialogue's past in
    # those forms, whatever subset of the dialogue has one.
    heard = {samples[1].id: "oh no I'm so sorry", samples[2].id: "I feel terrible."}  # turn 2's form is its text
    parts, alternative = [], {}
    n = add_forms(samples, [10, 11, 12], heard, encoder, parts, 13, alternative)
    assert (n, alternative) == (14, {11: 13})
    said = [(s.speaker, s.text) for s in samples]
    expected = encoder.embed_in_context([InContext.after("oh no I'm so sorry", "M", said[:1], 2)], 32)
    assert np.allclose(parts[0], expected, atol=1e-6)
    encoder.context_turns = 0  # the same weights read utterances alone: other keys, other rows
    assert np.allclose(text_matrix(samples, encoder, cache_dir=tmp_path / "cache"), alone, atol=1e-6)


def test_in_context_tuning_reads_unlabelled_turns_as_the_past(tmp_path):
    """An unlabelled turn is never trained on, but with context_turns it is part of the next turn's
    past (as train/evaluate read the dialogue); read alone, the corpus keeps its labelled turns only."""
    import json

    from models.labels import LABEL_SETS
    from models.text_tuning import training_examples, tuning_samples

    rows = [{"dialog": "Ses01F_impro01", "turn": t, "speaker": "FM"[t % 2], "text": text, "label": label,
             "split": "train"} for t, (text, label) in enumerate([("The results came back.", "xxx"),
                                                                   ("That is wonderful news!", "hap")])]
    data = tmp_path / "iemocap.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [s.text for s in tuning_samples("iemocap-text", data, 0)] == ["That is wonderful news!"]
    samples = tuning_samples("iemocap-text", data, 2)
    (example,) = training_examples(samples, LABEL_SETS["core4"], context_turns=2)
    assert example.text == "That is wonderful news!" and example.past == ((False, "The results came back."),)
