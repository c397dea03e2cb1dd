"""How Whisper writes what was spoken: the punctuation and word-drop rates behind models.whisper_style.

    python scripts/whisper_style_table.py runs/r7/heard-*.jsonl

Reads ``scripts/heard_text.py``'s JSONL (``spoken``: the text espeak-ng read, ``heard``: the
pipeline's transcript of it; train splits only), aligns each turn's words (difflib on lower-cased
words) and counts, for every word that Whisper wrote back, which punctuation follows it in the
transcript given the punctuation that followed it in the spoken text, apart for a turn's last word
("final") and the others ("inner"); a final word counts only where it is the transcript's last too.
Prints the rows of :data:`models.whisper_style.PUNCTUATION` and the share of each filler word that
the transcript drops (:data:`models.whisper_style.DROPPED`). Nothing is written.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.whisper_style import DROPPED, split_words  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", type=Path, nargs="+", help="scripts/heard_text.py outputs")
    args = p.parse_args()
    try:
        rows = [json.loads(line) for f in args.files for line in f.read_text().splitlines()]
    except OSError as err:
        print(f"emostream: error: {err.filename}: {err.strerror}", file=sys.stderr)
        return 2
    table: dict[tuple[str, str], Counter] = defaultdict(Counter)
    dropped, seen = Counter(), Counter()
    for row in rows:
        spoken, heard = split_words(row["spoken"]), split_words(row["heard"])
        if not spoken or not heard:
            continue
        sw, hw = [w.lower() for w, _ in spoken], [w.lower() for w, _ in heard]
        kept = set()
        for a, b, n in difflib.SequenceMatcher(a=sw, b=hw, autojunk=False).get_matching_blocks():
            for i, j in zip(range(a, a + n), range(b, b + n)):
                kept.add(i)
                final = i == len(sw) - 1
                if final and j != len(hw) - 1:
                    continue
                table[("final" if final else "inner", spoken[i][1])][heard[j][1]] += 1
        for i, w in enumerate(sw):
            seen[w] += 1
            dropped[w] += i not in kept
    print(f"{len(rows)} turns")
    for key in sorted(table):
        total = sum(table[key].values())
        shares = {mark: round(n / total, 2) for mark, n in table[key].most_common() if n / total >= 0.005}
        print(f"{key}: {shares},  # n {total}")
    print("dropped (share, n):", {w: (round(dropped[w] / seen[w], 2), seen[w]) for w in sorted(DROPPED) if seen[w]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
