"""SemEval-2019 EmoContext: three-turn chats whose last turn is labelled happy/sad/angry/others.

``{train,valid,test}.txt`` with a header line and rows ``id<TAB>turn1<TAB>turn2<TAB>turn3<TAB>label``
(the declare-lab/conv-emotion copy). Turns 1 and 3 are one user, turn 2 the other (a chatbot);
turns 1 and 2 are unlabelled context. ``others`` is a *partial* label: "none of happy, sad,
angry" (:data:`models.labels.Emotion.OTHER`), which partial-label training spreads over the
remaining classes of the model.
"""

from __future__ import annotations

from pathlib import Path

from models.data.sample import Sample, Split, layout_error, read_lines
from models.errors import UserError
from models.labels import canonical

TABLE = "emocontext"
LAYOUT = "EmoContext train.txt / valid.txt / test.txt (id, turn1, turn2, turn3, label; tab-separated)"
SPLITS = {"train": Split.TRAIN, "valid": Split.VALID, "dev": Split.VALID, "test": Split.TEST}
SPEAKERS = ("user", "bot", "user")  # who wrote turn 1, 2, 3


def load_emocontext(path: Path) -> list[Sample]:
    """Read every split file present; three samples per row, the last one labelled."""
    samples: list[Sample] = []
    for name, split in SPLITS.items():
        file = path / f"{name}.txt"
        if not file.is_file():
            continue
        for number, line in enumerate(read_lines(file), start=1):
            if not line.strip() or (number == 1 and line.startswith("id\t")):
                continue
            fields = line.split("\t")
            if len(fields) != 5:
                raise UserError(f"emocontext: {file}:{number}: expected 'id<TAB>turn1<TAB>turn2<TAB>turn3<TAB>label'")
            row, *turns, raw = (f.strip() for f in fields)
            dialogue = f"{name}:{row}"
            for turn, text in enumerate(turns):
                last = turn == len(turns) - 1
                samples.append(Sample(
                    id=f"{dialogue}:{turn}", dataset="emocontext",
                    raw_label=raw if last else None, label=canonical(TABLE, raw) if last else None,
                    speaker=f"{dialogue}:{SPEAKERS[turn]}", dialogue=dialogue, turn=turn,
                    text=text, split=split,
                ))
    if not samples:
        raise layout_error("emocontext", path, LAYOUT)
    return samples
