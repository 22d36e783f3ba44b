"""scripts/gpu_check.sh, dry run: `stage` then `run` on CPU with tiny data, no GPU needed.

What the GPU run does, at tiny size: the stage copies the atomic files and the intent artefacts
(without their caches) into the stage folder; the run records the stack, runs the speed benchmark,
runs two benchmark processes at once into one --out (a model name the registry lacks is skipped,
not fatal), rebuilds one table from the run records and packs everything into one archive under
$OUT (the device tool brings back 8 files at most).
"""
import json
import os
import subprocess
import sys
import tarfile

import yaml

from conftest import base_config, write_fake_intents, write_tiny_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "gpu_check.sh")


def test_gpu_check_dry_run(tmp_path):
    data = str(tmp_path / "data")
    write_tiny_dataset(data)
    iroot = tmp_path / "intent_root"
    write_fake_intents(str(iroot / "tiny" / "default"))
    os.makedirs(iroot / "tiny" / "default" / "cache")
    (iroot / "tiny" / "default" / "cache" / "embeddings.bin").write_bytes(b"x" * 1000)  # must not travel
    cfg = base_config(data)
    for key in ("data_path", "checkpoint_dir", "intent_dir", "epochs"):
        cfg.pop(key)
    with open(tmp_path / "tiny.yaml", "w") as f:
        yaml.safe_dump(cfg, f)
    stage = tmp_path / "stage"
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               GPU_CHECK_DATASET="tiny", GPU_CHECK_STAGE_DIR=str(stage), GPU_CHECK_SKIP_WHEELS="1",
               GPU_CHECK_DATA_SRC=data, GPU_CHECK_INTENT_ROOT=str(iroot),
               GPU_CHECK_MODELS="SAERec,SASRec,LLMInit,NoSuchVariant", OUT=str(tmp_path / "out"))

    staged = subprocess.run(["bash", SCRIPT, "stage"], env=env, capture_output=True, text=True, timeout=300)
    assert staged.returncode == 0, staged.stdout + staged.stderr
    assert (stage / "dataset" / "tiny" / "tiny.inter").is_file()
    assert (stage / "intents" / "tiny" / "default" / "manifest.json").is_file()
    assert not (stage / "intents" / "tiny" / "default" / "cache").exists()
    assert "skipping NoSuchVariant" in staged.stdout
    # the text control's vectors are built here and named by a path relative to the repository
    text_path = (stage / "intents" / "tiny" / "item_text" / "path").read_text()
    assert os.path.isfile(os.path.join(REPO, text_path)) and not os.path.isabs(text_path)

    env.update(GPU_CHECK_DRY_RUN="1", GPU_CHECK_PROCS="2", GPU_CHECK_BENCH_S="200", GPU_CHECK_SPEED_S="120",
               GPU_CHECK_BENCH_ARGS=f"--config_files={tmp_path / 'tiny.yaml'}",
               GPU_CHECK_SPEED_ARGS="--max_len=10 --hidden=16 --inner=32 --batch=16 --eval_batch=64 "
               + "--config=" + json.dumps({"load_col": cfg["load_col"], "intent_encoder": "test-encoder"}, separators=(",", ":")))
    ran = subprocess.run(["bash", SCRIPT, "run"], env=env, capture_output=True, text=True, timeout=500)
    out = tmp_path / "out"
    log = (out / "gpu_check.log").read_text()
    assert ran.returncode == 0, log
    env_facts = json.loads((out / "env.json").read_text())
    assert env_facts["numpy"] and env_facts["recbole"] == "1.2.1"
    assert "skipping NoSuchVariant" in log
    assert (out / "speed.csv").is_file(), log
    speed = (out / "speed.csv").read_text()
    assert "SASRec" in speed and "SAERec" in speed
    table = (out / "results.md").read_text()
    assert "SAERec" in table and "SASRec" in table, log
    with tarfile.open(out / "gpu_check.tar.gz") as tar:
        names = tar.getnames()
    assert any(n.endswith("runs/SAERec__seed2020.json") for n in names), names
    assert any(n.endswith("runs/SASRec__seed2020.json") for n in names), names
    assert any(n.endswith("runs/LLMInit__seed2020.json") for n in names), names
    assert len(os.listdir(out)) <= 8  # what the device tool brings back
