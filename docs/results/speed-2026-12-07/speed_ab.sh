#!/usr/bin/env bash
# Old defaults (commit 663319c, the code before the speed levers) and the new code, alternating, same data.
# RecBole's SASRec runs in both: the common yardstick across the two processes.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1
COMMON="--dataset=amazon-beauty --data_path=/root/saerec-work/dataset/ --threads=1 --steps=20 --warmup=3 --rounds=2 --eval_rounds=1"
for r in 1 2 3; do
  (cd /root/old663 && .venv/bin/python -m recbole_saerec.experiments.speed $COMMON --models=SASRec,PackedSASRec,SAERec --out=/root/saerec-work/speedab/old$r) > /root/saerec-work/speedab/old$r.log 2>&1
  (cd /work/main && .venv/bin/python -m recbole_saerec.experiments.speed $COMMON --models=SASRec,PackedSASRec,SAERec,ICSRec,ICLRec,DuoRec,CL4SRec,SASRecTextFeat,LLMInit --config='{"intent_root": "/root/saerec-work/saved_intents"}' --out=/root/saerec-work/speedab/new$r) > /root/saerec-work/speedab/new$r.log 2>&1
done
