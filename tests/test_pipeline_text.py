"""The pipeline's text path with a text encoder tuned on utterances read with their past turns
(tune-text ``context_turns``): each utterance is read with the session's last turns, marked by
whether its own speaker said them, as training read each corpus turn (models.features.in_context).

Real models (the session-wide `recognizer` fixture) and the example dialogue.
"""

from __future__ import annotations

import pytest

from models.frontends.text import InContext, TextEncoder
from streamer.config import Settings
from streamer.pipeline import Pipeline
from streamer.sources import open_file
from tests.conftest import EXAMPLES, utterances
from tests.test_partials import replay


@pytest.mark.slow
def test_a_text_encoder_tuned_in_context_reads_the_last_turns_of_the_session(recognizer) -> None:
    read: list[InContext] = []

    def in_context(pipeline: Pipeline) -> None:
        encoder = TextEncoder(recognizer.models.text_encoder.tuned)  # the default's weights (same size)
        encoder.context_turns, encoder.context_tokens = 2, 64
        embed = encoder.embed_in_context

        def spy(items, context_tokens, batch_size=32):
            read.extend(items)
            return embed(items, context_tokens, batch_size)

        encoder.embed_in_context = spy
        pipeline.text_encoder = encoder

    audio = next(open_file(EXAMPLES / "dialogue.wav").blocks(1e6)).samples[:, 0]
    events = utterances(replay(recognizer, audio, Settings().updated({"partials": {"every_s": 0}}), speed=None,
                               prepare=in_context))
    assert len(events) >= 6 and len(read) == len([e for e in events if e["text"]])
    spoken = [e for e in events if e["text"]]
    for i, (event, item) in enumerate(zip(spoken, read)):
        past = [(e["speaker"] == event["speaker"], e["text"]) for e in spoken[max(0, i - 2) : i]]
        assert item == InContext(event["text"], tuple(past))
    assert any(same for item in read for same, _ in item.past) and any(not same for item in read for same, _ in item.past)
