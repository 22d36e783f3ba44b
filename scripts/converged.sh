#!/usr/bin/env bash
# A converged table (docs/results/<name>-converged/) for any prepared dataset, on a CPU: two benchmark
# processes at once, one torch thread each, early stopping on VALID NDCG@10 (patience 10, cap 200),
# seen items masked (the amazon-* yamls), search off by default (each variant's `config` alone;
# SEARCH=on runs the variants' searches, below). DATASET picks the dataset (amazon-beauty).
# Resumable at two levels: finished runs are skipped, and an interrupted run continues from its last
# finished epoch (resume_state). Rerun the same command after a kill.
#
#   WORK=/somewhere/big bash scripts/converged.sh            # both slots in the background
#   SLOT_A="SAERec-paper,SAERec" SLOT_B="SASRec-CE" SEEDS=3 bash scripts/converged.sh
#   SLOT_A="SAERec:2021 SAERec-paper:2021" SLOT_B="SASRec-CE:2021" bash scripts/converged.sh
#   SLOT_A="SAERec-mean:2021" SLOT_B= bash scripts/converged.sh     # one slot only
#   SEARCH=on SLOT_A="SASRec-CE:2020,2021,2022" SLOT_B= bash scripts/converged.sh
#       # the variant's small lr/dropout search (variants.yaml `search`) on VALID of seed 2020;
#       # a candidate equal to the table's settings reuses the run already made, so it adds two runs
#       # per variant, plus the other seeds again if another candidate wins
#   DATASET=amazon-toys SEARCH=on SLOT_A="SAERec:2020" SLOT_B="SASRec-CE:2020" bash scripts/converged.sh
#       # another dataset: its own folders (docs/results/toys-converged, $WORK/dataset/amazon-toys ...)
#   THREADS=2 SLOT_A="BERT4Rec:2020" SLOT_B= bash scripts/converged.sh   # one run, two threads
#   SEARCH=on SLOT_A="SAERec:2021" SLOT_B="SAERec:2022" bash scripts/converged.sh
#       # later seeds of a searched variant, one per slot: each call reuses the seed-2020 search
#       # (--search_seed defaults to --seed_base) and trains its seed with the winner
#
# A slot is either a comma list of variants (each run for SEEDS seeds from 2020) or a space-separated
# queue of variant:seed entries, run one after the other (one benchmark call each).
#
# Needs the prepared data in $WORK/dataset (prepare_amazon --out=$WORK/dataset) or builds it from RAW.
# The checkpoints and resume states live in $WORK/ckpt/<dataset>; the records in $OUT (commit them).
set -euo pipefail
cd "$(dirname "$0")/.."
DATASET=${DATASET:-amazon-beauty}
WORK=${WORK:-$HOME/saerec-work}
RAW=${RAW:-../shared/datasets/$DATASET/raw}
SEEDS=${SEEDS:-1}
SEARCH=${SEARCH:-off}
THREADS=${THREADS:-1}   # torch threads per run; two runs at once, so 1 on a 2-core machine
SLOT_A=${SLOT_A-SAERec-paper,SAERec,SAERec-adaptive,SAERec-paper-residual,SAERec-mean}
SLOT_B=${SLOT_B-SASRec-CE,SASRec+IntentFeat,SAERec-noEMA,SAERec-noFus,SAERec-noPer,SAERec-noPub}
OUT=${OUT:-docs/results/${DATASET#amazon-}-converged}
# Beauty's checkpoints stay where its first runs put them ($WORK/ckpt); other datasets get their own folder
CKPT=$WORK/ckpt; [ "$DATASET" = amazon-beauty ] || CKPT=$WORK/ckpt/$DATASET
LOG=$WORK/logs/${DATASET#amazon-}
mkdir -p "$LOG"
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=.venv/bin/python
[ -f "$WORK/dataset/$DATASET/$DATASET.inter" ] || \
  $PY -m recbole_saerec.data.prepare_amazon --dataset="$DATASET" --raw_dir="$RAW" --out="$WORK/dataset" --no_progress
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)  # the label names this machine's CPU
slot() {  # $1 = the slot's list (empty: nothing); runs it in the foreground
  [ -n "$1" ] || return 0
  if [[ "$1" == *:* ]]; then
    for entry in $1; do
      $PY -m recbole_saerec.experiments.benchmark "${common[@]}" --models="${entry%%:*}" --seeds="${entry##*:},"
    done
  else
    $PY -m recbole_saerec.experiments.benchmark "${common[@]}" --seeds="$SEEDS" --models="$1"
  fi
}
common=(--dataset="$DATASET" --seed_base=2020 --out="$OUT" --work_dir="$CKPT" --search="$SEARCH"
        --keep_checkpoints --data_path="$WORK/dataset/" --intent_root="$WORK/saved_intents"
        --machine="${MACHINE:-$(nproc --all)-core $cpu VM, no GPU, $THREADS torch thread(s) per run, $([ -n "$SLOT_B" ] && echo two runs || echo one run) at once}")
# slot A first: it builds the shared intent artefacts; slot B starts once they exist (no two builds at once)
slot "$SLOT_A" >> "$LOG/A.log" 2>&1 &
needs_intents() {  # does any variant of the slot read intent artefacts? (then slot A builds them first)
  $PY - "$1" <<'EOF_PY'
import sys
from recbole_saerec.experiments.benchmark.registry import load_registry, resolve_variant
from recbole_saerec.utils import get_model
names = {e.split(":")[0] for part in sys.argv[1].split() for e in part.split(",") if e}
registry = load_registry()
sys.exit(0 if any(getattr(get_model(resolve_variant(n, registry)["model"]), "needs_intents", False) for n in names) else 1)
EOF_PY
}
if [ -n "$SLOT_A" ] && needs_intents "$SLOT_A"; then
  until [ -f "$WORK/saved_intents/$DATASET/default/manifest.json" ]; do sleep 10; done
fi
slot "$SLOT_B" >> "$LOG/B.log" 2>&1 &
names=$(echo "$SLOT_A $SLOT_B" | tr ' ' '\n' | sed 's/:.*//' | awk 'NF && !seen[$0]++' | paste -sd,)  # "Model:seeds" entries -> model names
echo "running: logs in $LOG/{A,B}.log; progress: $PY -m recbole_saerec.experiments.benchmark --dataset=$DATASET --work_dir=$CKPT --progress; table: $PY -m recbole_saerec.experiments.benchmark --dataset=$DATASET --out=$OUT --report_only --models=$names"
wait
