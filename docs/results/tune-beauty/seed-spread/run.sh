#!/usr/bin/env bash
# Seed spread of the committed 2-epoch Beauty sweep (docs/results/tune-beauty): its top two trials
# (S=7, k=15, decay 0.9 / 0.99) retrained at the sweep's budget (2 epochs, unmasked ranking as the
# sweep was), seeds 2020 (reproduction) and 2021. Logs and checkpoints under $WORK/spread/;
# results.csv here was read from those logs ("best valid" and "test result" lines).
set -euo pipefail
cd "$(dirname "$0")/../../../.."   # the repository root
W=${WORK:-$HOME/saerec-work}        # prepared data (prepare_amazon --out=$W/dataset) and intents
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p $W/spread
common=(--dataset=amazon-beauty --data_path=$W/dataset/ --intent_root=$W/saved_intents
        --intent_cache_dir=$W/saved_intents/amazon-beauty/default/cache --sae_k=15)
[ -f $W/saved_intents/amazon-beauty/k15/manifest.json ] || \
  .venv/bin/python -m recbole_saerec.intents build "${common[@]}" --intent_dir=$W/saved_intents/amazon-beauty/k15 --quiet
for decay in 0.9 0.99; do for seed in 2020 2021; do
  tag=S7-k15-d$decay-seed$seed
  [ -f $W/spread/$tag.done ] && continue
  .venv/bin/python run_recbole_saerec.py --model=SAERec "${common[@]}" --intent_dir=$W/saved_intents/amazon-beauty/k15 \
     --intents_retrieved=7 --ema_decay=$decay --epochs=2 --mask_history=False --seed=$seed --show_progress=False \
     --checkpoint_dir=$W/spread/ckpt > $W/spread/$tag.log 2>&1
  touch $W/spread/$tag.done
done; done
