"""bench_speed: one tiny run end to end (same batches for both models, the table, the files)."""
import csv
import json

from recbole_saerec.experiments import speed as bench_speed
from recbole_saerec.experiments.speed import cli as speed_cli  # main looks shared_config up here


def test_tiny_run_times_both_models_on_the_same_batches_and_writes_its_files(tiny_root, tmp_path, monkeypatch):
    shared = bench_speed.shared_config
    monkeypatch.setattr(speed_cli, "shared_config",  # the tiny .inter needs its timestamp column loaded
                        lambda args: dict(shared(args), load_col={"inter": ["user_id", "item_id", "timestamp"]}))
    out = tmp_path / "out"
    report = bench_speed.main(["--dataset=tiny", f"--data_path={tiny_root}", "--steps=2", "--warmup=1", "--rounds=2",
                               "--eval_rounds=1", "--synthetic_m=16", "--synthetic_dim=8", "--synthetic_per_item=3",
                               "--hidden=16", "--inner=32", "--batch=16", "--eval_batch=64", "--max_len=10",
                               "--device=cpu", f"--out={out}"])
    rows = {r["model"]: r for r in csv.DictReader(open(out / "speed.csv"))}
    assert set(rows) == {"SASRec", "SAERec"}
    assert rows["SAERec"]["intents"] == "synthetic" and rows["SASRec"]["intents"] == "-"
    for row in rows.values():
        assert int(row["steps_timed"]) == 2 * 2  # --steps x --rounds
        assert float(row["step_ms_median"]) > 0 and int(row["params"]) > 0
    # the ratio is the median over rounds of SAERec's median step over SASRec's in the same round
    raw = report["raw"]
    ratios = bench_speed.per_round_ratio(raw["SAERec"]["step_s"], raw["SASRec"]["step_s"], 2, 2)
    assert float(rows["SAERec"]["step_ratio_vs_ref"]) == round(bench_speed.median(ratios), 3)
    assert rows["SASRec"]["reference"] == "SASRec" and rows["SASRec"]["step_ratio_vs_ref"] == ""
    saved = json.load(open(out / "speed.json"))
    assert saved["intents"] == {"source": "synthetic"} and saved["seed"] == 2020
    assert {"torch", "recbole", "host", "cpu_count"} <= set(saved["machine"])
    assert set(saved["raw"]["SAERec"]["eval_result"]) >= {"hit@10", "ndcg@10"}
    assert not list(out.glob("*.tmp"))  # atomic writes left no temporaries


def test_intent_build_times_come_from_the_build_s_own_manifest(monkeypatch):
    import recbole_saerec.intents.build as build

    manifest = {"stats": {"timings": {"corpus_s": 1.0, "encode_s": 2.0, "total_s": 3.5}}}
    monkeypatch.setattr(build, "build_intents", lambda config, intent_dir=None: manifest)
    info = bench_speed.time_intent_build(None, "unused")
    assert info["stages_s"] == {"corpus_s": 1.0, "encode_s": 2.0}
    assert info["build_reported_timings"]["total_s"] == 3.5 and info["total_s"] >= 0


def test_any_model_against_a_reference_with_its_epoch_setup(tiny_root, tmp_path, monkeypatch):
    shared = bench_speed.shared_config
    monkeypatch.setattr(speed_cli, "shared_config",
                        lambda args: dict(shared(args), load_col={"inter": ["user_id", "item_id", "timestamp"]},
                                          cluster_k=4))
    out = tmp_path / "out"
    variants = '{"PackedSASRec-plain": {"model": "PackedSASRec", "pack_attention": false, "fused_ce": false}}'
    bench_speed.main(["--dataset=tiny", f"--data_path={tiny_root}", "--steps=2", "--warmup=1", "--rounds=2",
                      "--no_eval", "--hidden=16", "--inner=32", "--batch=16", "--max_len=10", "--device=cpu",
                      "--models=PackedSASRec,ICSRec", f"--variants={variants}", f"--out={out}"])
    rows = {r["model"]: r for r in csv.DictReader(open(out / "speed.csv"))}
    assert set(rows) == {"PackedSASRec", "ICSRec", "PackedSASRec-plain"}
    assert all(r["reference"] == "PackedSASRec" for r in rows.values())
    assert float(rows["ICSRec"]["step_ratio_vs_ref"]) > 0 and float(rows["PackedSASRec-plain"]["step_ratio_vs_ref"]) > 0
    # measured (a k-means on the tiny set may round to 0.0 s) for ICSRec only
    assert float(rows["ICSRec"]["epoch_setup_s"]) >= 0 and rows["PackedSASRec"]["epoch_setup_s"] == ""
    saved = json.load(open(out / "speed.json"))
    assert saved["config"]["PackedSASRec-plain"]["pack_attention"] is False
    assert saved["config"]["PackedSASRec"]["pack_attention"] is True and saved["config"]["ICSRec"]["fused_ce"] is True
