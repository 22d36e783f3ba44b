#!/usr/bin/env bash
# One prepared script for the lent GPU machine: the speed table and the converged
# amazon-beauty runs, several processes at once on the one GPU, records under $OUT, < 9 minutes.
#
#   bash scripts/gpu_check.sh stage   # HERE: wheels -> .whl/, atomic files + intent artefacts -> .gpu/
#   bash scripts/gpu_check.sh run     # THERE, through the device tool:
#         run(command="bash scripts/gpu_check.sh run", carry=[".whl", ".gpu"], timeout_s=600)
#   GPU_CHECK_DRY_RUN=1 OUT=/tmp/o bash scripts/gpu_check.sh run   # CPU, tiny budgets (tests/test_gpu_check.py)
#
# The GPU machine (docs/FINDINGS.md): Python 3.12, torch 2.11 CUDA, numpy 2.x, pandas, scipy,
# colorama, tensorboard, tqdm, pyyaml; no recbole, no ray, no internet. So `stage` downloads
# RecBole and the two small requirements missing there (colorlog, texttable) as cp312 wheels
# (the device README's pip line), and the intent artefacts are built HERE (no encoder there).
# Ray is not carried: its cp312 wheel alone is larger than what may travel (docs/tune.md), so
# there is no Tune sweep on that machine, only the benchmark and the speed table.
#
# Knobs (environment; the defaults are the GPU run):
#   GPU_CHECK_DATASET (amazon-beauty)   GPU_CHECK_MODELS (comma list; names missing from the
#   benchmark registry are skipped and logged)   GPU_CHECK_PROCS (6: benchmark processes at once)
#   GPU_CHECK_SEEDS (1: seeds per model) GPU_CHECK_SEED_BASE (2020)   GPU_CHECK_BENCH_S (330: wall-clock cap of the benchmark phase)
#   GPU_CHECK_SPEED_S (100: cap of the speed phase)   GPU_CHECK_BENCH_ARGS (extra benchmark flags)
#   GPU_CHECK_SPEED_ARGS (extra bench_speed flags)   GPU_CHECK_STAGE_DIR (.gpu)   PYTHON
#   stage only: GPU_CHECK_RAW (/work/shared/datasets/<dataset>/raw), GPU_CHECK_INTENT_ROOT (saved_intents)
set -uo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-run}
DATASET=${GPU_CHECK_DATASET:-amazon-beauty}
STAGE=${GPU_CHECK_STAGE_DIR:-.gpu}
case "$STAGE" in /*) ;; *) STAGE=$PWD/$STAGE ;; esac
DRY=${GPU_CHECK_DRY_RUN:-0}
# in priority order: the headline pair and the strongest baselines first (ICSRec, the text controls,
# the other contrastive models), then the attribution rows and the ablations
DEFAULT_MODELS=SAERec,SASRec-CE,ICSRec,SASRec+TextFeat,SAERec-paper-lr5e-4,SASRec+IntentFeat-lr5e-4,ICLRec,DuoRec,CL4SRec,LLMInit,ICSRec-official,ICLRec-official,DuoRec-official,CL4SRec-wd0,SASRec-CE-wd0,SAERec-noIde,SAERec-noPer,SAERec-noPub,SAERec-noFus,SAERec-noEMA,KMeans-Intent,GuidedRec,GRU4Rec
MODELS=${GPU_CHECK_MODELS:-$DEFAULT_MODELS}
WHEELS="recbole==1.2.1 colorlog==4.7.2 texttable==1.7.0"
MAX_CARRY_MB=64

stage() {
    PY=${PYTHON:-.venv/bin/python}
    mkdir -p .whl "$STAGE/dataset" "$STAGE/intents/$DATASET"
    if [ "${GPU_CHECK_SKIP_WHEELS:-0}" != 1 ]; then
        # the device README's line: cp312 manylinux wheels, no dependencies resolved (each is named)
        $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            -d .whl $WHEELS || { echo "[stage] pip download failed"; return 1; }
    fi
    if [ -n "${GPU_CHECK_DATA_SRC:-}" ]; then
        cp -r "$GPU_CHECK_DATA_SRC/$DATASET" "$STAGE/dataset/"
    elif [ ! -f "$STAGE/dataset/$DATASET/$DATASET.inter" ]; then
        $PY -m recbole_saerec.data.prepare_amazon --dataset="$DATASET" --no_progress \
            --raw_dir="${GPU_CHECK_RAW:-/work/shared/datasets/$DATASET/raw}" --out="$STAGE/dataset" || return 1
    fi
    # Every intent set the models read (default, noide, kmeans, ...), built here by the benchmark's
    # own ensure_intents (encoding on this machine's CPU), then copied without the caches.
    local root=${GPU_CHECK_INTENT_ROOT:-saved_intents}
    $PY - "$DATASET" "$MODELS" "$STAGE/dataset" "$root" "$STAGE/intents" <<'EOF' || return 1
import os, shutil, sys, tempfile
from recbole_saerec.artefacts import MANIFEST
from recbole_saerec.experiments.benchmark import Benchmark, load_registry, resolve_variant
dataset, models, data_path, root, dest = sys.argv[1:6]
registry = load_registry()
variants = []
for m in models.split(","):
    try:
        variants.append(resolve_variant(m, registry))
    except Exception as e:  # noqa: BLE001 -- a name the registry does not have yet: the run skips it too
        print(f"[stage] skipping {m}: {e}")
b = Benchmark(dataset, variants, [2020], tempfile.mkdtemp(), cli_config={"data_path": data_path, "intent_root": root})
b.ensure_intents([(None, v, 2020, b.config_dict(v, 2020)) for v in variants])
src = os.path.join(root, dataset)
for tag in sorted(os.listdir(src)):
    if os.path.isfile(os.path.join(src, tag, MANIFEST)):
        target = os.path.join(dest, dataset, tag)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(os.path.join(src, tag), target, ignore=shutil.ignore_patterns("cache"))
        print(f"[stage] intents {tag} -> {target}")
# The text controls' item-text vectors, built here (no encoder there); the run names the file.
from recbole.data import create_dataset
from recbole_saerec.config import Config
from recbole_saerec.intents.item_text import build_item_text
from recbole_saerec.utils import get_model
for v in variants:
    if getattr(get_model(v["model"]), "needs_item_text", False):
        config = Config(model=v["model"], dataset=dataset, config_dict=b.config_dict(v, 2020))
        built = build_item_text(config, list(create_dataset(config).field2id_token["item_id"][1:]))
        target = os.path.join(dest, dataset, "item_text", os.path.basename(built["path"]))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(built["path"], target)
        with open(os.path.join(dest, dataset, "item_text", "path"), "w") as f:
            f.write(os.path.relpath(target, os.getcwd()))
        print(f"[stage] item text -> {target}")
        break
EOF
    git rev-parse HEAD > "$STAGE/commit" 2>/dev/null || true
    local mb
    mb=$(du -sm .whl "$STAGE" | awk '{s += $1} END {print s}')
    echo "[stage] carry .whl + $STAGE: ${mb} MiB (limit ${MAX_CARRY_MB} MiB with the working tree)"
    du -sh .whl "$STAGE"/dataset/* "$STAGE"/intents/*/* 2>/dev/null
    [ "$mb" -lt "$MAX_CARRY_MB" ] || { echo "[stage] too large to travel"; return 1; }
}

run() {
    OUT=${OUT:-$PWD/gpu_out}
    mkdir -p "$OUT"
    WORK=$(mktemp -d)
    trap 'rm -rf "$WORK"' EXIT
    exec > >(tee -a "$OUT/gpu_check.log") 2>&1
    local t0=$SECONDS
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} MKL_NUM_THREADS=${MKL_NUM_THREADS:-2} PYTHONUNBUFFERED=1
    if [ "$DRY" = 1 ]; then
        PY=${PYTHON:-.venv/bin/python}
        DEVICE=cpu
        SPEED_ARGS="--steps=2 --warmup=1 --rounds=1 --no_eval"
        BENCH_ARGS="--budget_epochs=1 --use_gpu=False"
        PROCS=${GPU_CHECK_PROCS:-2}
    else
        PY=${PYTHON:-python3}
        DEVICE=cuda
        $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
            || { echo "[gpu_check] wheel install failed"; exit 1; }
        export PYTHONPATH=/tmp/site
        SPEED_ARGS="--steps=30 --warmup=5 --rounds=3 --full_epoch"
        BENCH_ARGS="--use_gpu=True"   # the default budget: early stopping patience, epochs cap (variants.yaml)
        PROCS=${GPU_CHECK_PROCS:-6}
    fi
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
    DATA="$STAGE/dataset"
    IROOT="$STAGE/intents"
    echo "[gpu_check] $(date -u +%FT%TZ) commit $(cat "$STAGE/commit" 2>/dev/null || git rev-parse HEAD 2>/dev/null) dry_run=$DRY"
    # 1. the stack as it is there (numpy 2, pandas, torch/CUDA, the GPU), before anything runs on it
    $PY - "$OUT/env.json" <<'EOF' || { echo "[gpu_check] the plugin does not import"; exit 1; }
import json, platform, sys
import numpy, pandas, scipy, torch, recbole
from recbole_saerec.config import Config  # installs the numpy-2 aliases RecBole needs
env = {"python": platform.python_version(), "numpy": numpy.__version__, "pandas": pandas.__version__,
       "scipy": scipy.__version__, "torch": torch.__version__, "cuda": torch.version.cuda, "recbole": recbole.__version__,
       "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "cpus": __import__("os").cpu_count()}
try:
    import ray
    env["ray"] = ray.__version__
except ImportError:
    env["ray"] = None  # not carried: no Tune sweep on this machine
json.dump(env, open(sys.argv[1], "w"), indent=1)
print("[gpu_check] env", json.dumps(env))
EOF
    MACHINE=$($PY -c "import json,sys; e=json.load(open(sys.argv[1])); print(f\"{e['gpu'] or 'CPU'}, {e['cpus']} cores, torch {e['torch']}, numpy {e['numpy']}\")" "$OUT/env.json")

    # 2. the speed table: SASRec vs SAERec, one process alone on the GPU (timings)
    local sdir="$WORK/speed"
    timeout "${GPU_CHECK_SPEED_S:-100}" $PY -m recbole_saerec.experiments.speed --dataset="$DATASET" --data_path="$DATA" \
        --intent_dir="$IROOT/$DATASET/default" --device=$DEVICE --out="$sdir" $SPEED_ARGS ${GPU_CHECK_SPEED_ARGS:-} \
        || echo "[gpu_check] speed benchmark failed or ran past its cap (rc $?)"
    [ -f "$sdir/speed.csv" ] && cp "$sdir/speed.csv" "$OUT/speed.csv"

    # 3. the converged runs: PROCS benchmark processes at once, the models dealt round-robin, one --out
    local known
    known=$($PY - "$MODELS" <<'EOF'
import sys
from recbole_saerec.experiments.benchmark import load_registry
from recbole_saerec.utils import get_model
registry = load_registry()
keep = []
for m in sys.argv[1].split(","):
    try:
        m in registry or get_model(m)
        keep.append(m)
    except Exception as e:  # noqa: BLE001
        print(f"[gpu_check] skipping {m}: {e}", file=sys.stderr)
print(",".join(keep))
EOF
)
    IFS=, read -r -a names <<< "$known"
    local text_path=""  # the staged item-text vectors (relative to the repository), for the text controls
    [ -f "$IROOT/$DATASET/item_text/path" ] && text_path="--item_text_path=$(cat "$IROOT/$DATASET/item_text/path")"
    local bdir="$WORK/$DATASET" budget=${GPU_CHECK_BENCH_S:-330} pids=()
    for ((p = 0; p < PROCS && p < ${#names[@]}; p++)); do
        local group=""
        for ((i = p; i < ${#names[@]}; i += PROCS)); do group+="${group:+,}${names[$i]}"; done
        timeout --signal=TERM --kill-after=15 "$budget" $PY -m recbole_saerec.experiments.benchmark --dataset="$DATASET" \
            --models="$group" --seeds="${GPU_CHECK_SEEDS:-1}" --seed_base="${GPU_CHECK_SEED_BASE:-2020}" --out="$bdir" --work_dir="$WORK/saved$p" \
            --machine="$MACHINE" --search=off --data_path="$DATA" --intent_root="$IROOT" $text_path $BENCH_ARGS \
            ${GPU_CHECK_BENCH_ARGS:-} > "$WORK/bench$p.log" 2>&1 &
        pids+=($!)
        echo "[gpu_check] benchmark process $p (pid $!): $group"
    done
    for pid in "${pids[@]}"; do wait "$pid" || echo "[gpu_check] benchmark pid $pid ended with $? (124: its cap)"; done
    # one table from every finished run record (runs cut by the cap leave no record)
    $PY -m recbole_saerec.experiments.benchmark --dataset="$DATASET" --models="$known" --out="$bdir" --report_only \
        --data_path="$DATA" --intent_root="$IROOT" > "$WORK/report.log" 2>&1 || echo "[gpu_check] report failed"
    [ -f "$bdir/results.md" ] && cp "$bdir/results.md" "$OUT/results.md"
    echo "[gpu_check] run records: $(ls "$bdir/runs" 2>/dev/null | grep -c '\.json$')"
    tail -n 3 "$WORK"/bench*.log
    # $OUT brings back 8 files at most: everything else travels as one archive
    tar -czf "$OUT/gpu_check.tar.gz" -C "$WORK" --exclude='saved*' . && echo "[gpu_check] $OUT/gpu_check.tar.gz"
    echo "[gpu_check] done in $((SECONDS - t0)) s"
}

case "$MODE" in
    stage) stage ;;
    run) run ;;
    *) echo "usage: bash scripts/gpu_check.sh stage|run"; exit 2 ;;
esac
