#!/usr/bin/env bash
# Reproduces every figure of models/MODEL_CARD.md (about 1.5 h on a 2-core CPU; features are cached
# under ~/.cache/emostream after the first run). Run from the project root with ../shared beside it:
#   bash scripts/experiments.sh [text|audio|fusion|all]
# Checkpoints and JSON results go to runs/ (ignored by git); `python scripts/results_table.py`
# prints the model card's fusion tables from them.
set -euo pipefail
part=${1:-all}
DATA=../shared/data
IEMOCAP=$DATA/text/iemocap/iemocap_text.jsonl
mkdir -p runs

train() {  # train NAME CONFIG [--set ...]
  local name=$1 config=$2; shift 2
  [ -f "runs/$name.pt" ] || emostream train --config "$config" --out "runs/$name.pt" "$@" 2> "runs/$name.log"
}
evaluate() {  # evaluate NAME CHECKPOINT [evaluate args...] -> runs/NAME.json
  local name=$1 checkpoint=$2; shift 2
  emostream evaluate --checkpoint "$checkpoint" --json "$@" > "runs/$name.json" 2>> runs/evaluate.log
}

if [[ $part == text || $part == all ]]; then
  # 1. IEMOCAP 6-class protocol (DialogueRNN / COSMIC): text + context, Session 5 = test.
  for net in mcaf self-mha cross-mha; do
    train "iemocap6-$net" models/configs/iemocap6.toml --set "network.network=\"$net\""
    evaluate "iemocap6-$net.test" "runs/iemocap6-$net.pt" --dataset iemocap-text --data $IEMOCAP --split test
  done
  train iemocap6-mcaf-nocontext models/configs/iemocap6.toml --set network.max_context=1
  evaluate iemocap6-mcaf-nocontext.test runs/iemocap6-mcaf-nocontext.pt --dataset iemocap-text --data $IEMOCAP --split test
  train iemocap6-mcaf-d03 models/configs/iemocap6.toml --set network.dropout=0.3
  train iemocap6-mcaf-d03-lr5e4 models/configs/iemocap6.toml --set network.dropout=0.3 --set optim.lr=5e-4
  for name in iemocap6-mcaf-d03 iemocap6-mcaf-d03-lr5e4; do
    evaluate "$name.test" "runs/$name.pt" --dataset iemocap-text --data $IEMOCAP --split test
  done
fi

if [[ $part == audio || $part == all ]]; then
  # 2. Leave-one-speaker-out, Whisper-encoder features vs eGeMAPS, same folds, same classifier.
  for features in whisper egemaps; do
    emostream crossval --dataset turevdb --data $DATA/audio/turevdb --labels turevdb4 --features $features --json > runs/loso-turevdb4-$features.json
    emostream crossval --dataset emodb --data $DATA/audio/emodb --labels emodb7 --features $features --json > runs/loso-emodb7-$features.json
    emostream crossval --dataset emodb --data $DATA/audio/emodb --labels core4 --features $features --json > runs/loso-emodb4-$features.json
  done
fi

if [[ $part == fusion || $part == all ]]; then
  # The shipped model (default.toml: λ1 = λ2 = 0, chosen on validation) and its ablations.
  ALIGN=(--set objectives.alignment=0.1 --set objectives.matching=0.1)
  train default models/configs/default.toml
  train default-nocontext models/configs/default.toml --set network.max_context=1
  train align models/configs/default.toml "${ALIGN[@]}"
  train align-nocontext models/configs/default.toml "${ALIGN[@]}" --set network.max_context=1
  train align-nopairs models/configs/default.toml "${ALIGN[@]}" --set objectives.pseudo_pairs=false
  # Against emotional inertia (model card): cut half the training contexts to a random length.
  train default-ctxtrunc models/configs/default.toml --set objectives.context_truncation=0.5
  evaluate default-ctxtrunc.iemocap runs/default-ctxtrunc.pt --dataset iemocap-text --data $IEMOCAP --split test
  for name in default default-nocontext align align-nocontext align-nopairs; do
    ck=runs/$name.pt
    evaluate "$name.iemocap" $ck --dataset iemocap-text --data $IEMOCAP --split test
    evaluate "$name.meld-dev" $ck --dataset meld --data $DATA/text/meld/MELD --split valid
    evaluate "$name.turevdb-test" $ck --dataset turevdb --data $DATA/audio/turevdb --speakers 1358
    evaluate "$name.emodb-test" $ck --dataset emodb --data $DATA/audio/emodb --speakers 15,16
    for m in both text; do  # audio alone on the same clips = the *-test rows above
      evaluate "$name.pairs-turevdb.$m" $ck --dataset iemocap-text --data $IEMOCAP --split test \
        --pair-with turevdb $DATA/audio/turevdb --speakers 1358 --modalities $m
      evaluate "$name.pairs-emodb.$m" $ck --dataset iemocap-text --data $IEMOCAP --split test \
        --pair-with emodb $DATA/audio/emodb --speakers 15,16 --modalities $m
    done
  done
fi
