"""The rolling dyadic context: its window and its time limit."""

from __future__ import annotations

from models.predictor import ContextItem
from streamer.context import ContextConfig, DialogueContext


def item(speaker: str) -> ContextItem:
    return ContextItem(audio=None, text=None, speaker=speaker)


def test_window_keeps_the_last_utterances_and_forgets_old_ones():
    context = DialogueContext(ContextConfig(max_utterances=3, max_seconds=10.0))
    for i, start in enumerate([0.0, 2.0, 4.0, 6.0]):
        window = context.push(item("A" if i % 2 == 0 else "B"), start, start + 1.0)
    assert [w.speaker for w in window] == ["B", "A", "B"]
    assert [w.speaker for w in context.peek(item("A"), 8.0)] == ["A", "B", "A"]  # not kept
    assert len(context.push(item("A"), 30.0, 31.0)) == 1  # 10 s limit: the rest is forgotten

