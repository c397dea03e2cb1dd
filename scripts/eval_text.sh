#!/bin/bash
# Text figures of a checkpoint for the model card: IEMOCAP S5 (core4), MELD dev and DailyDialog
# valid (seven classes and core4) and the written everyday dialogues (dev set, core4), each with
# its context and with --context 1, in three parallel groups.
# usage: bash scripts/eval_text.sh CHECKPOINT TAG  -> runs/eval-TAG-*.json (+ MELD predictions)
ck=$1; tag=$2; D=../shared/data/text
ev() { out=runs/eval-$tag-$1.json; shift; nice -n 10 emostream evaluate --checkpoint $ck --modalities text --json "$@" > $out 2>>runs/eval-$tag.log; }
g1() { for c in 16 1; do ev iemocap-core4-c$c --dataset iemocap-text --data $D/iemocap/iemocap_text.jsonl --split test --labels core4 --context $c; done; }
g2() { for c in 16 1; do ev meld-dev-c$c --dataset meld --data $D/meld/MELD --split valid --context $c --predictions runs/pred-$tag-meld-c$c.jsonl; ev meld-dev-core4-c$c --dataset meld --data $D/meld/MELD --split valid --labels core4 --context $c; done; }
g3() { for c in 16 1; do ev dd-valid-core4-c$c --dataset dailydialog --data $D/dailydialog --split valid --labels core4 --context $c; ev dd-valid-c$c --dataset dailydialog --data $D/dailydialog --split valid --context $c; ev written-core4-c$c --dataset written --data benchmarks/data/written_dialogues.jsonl --split valid --labels core4 --context $c; done; }
g1 & g2 & g3 & wait
python - "$tag" <<'PY'
import json, glob, sys
tag = sys.argv[1]
for f in sorted(glob.glob(f"runs/eval-{tag}-*.json")):
    d = json.load(open(f)); s = d["subsets"].get("shift", {})
    print(f"{f.split(tag+'-')[1][:-5]:<22} n {d['n']:>5}  WA {100*d['wa']:.2f} UA {100*d['ua']:.2f} WF1 {100*d['wf1']:.2f} UWF1 {100*d['uwf1']:.2f} | shift n {s.get('n')} WA {100*s.get('wa',0):.2f} WF1 {100*s.get('wf1',0):.2f}")
PY
