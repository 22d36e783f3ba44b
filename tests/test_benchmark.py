"""The benchmark runner: table against the per-run JSONs, resume, significance on known numbers."""
import csv
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from scipy import stats

from conftest import base_config, default_keep_rule
from recbole_saerec import quick_start
from recbole_saerec.analysis.checkpoints import resolve_checkpoint
from recbole_saerec.cli import UsageError
from recbole_saerec.experiments import benchmark
from recbole_saerec.experiments.benchmark import runner


def tiny_cli(root, tmp_path):
    cfg = base_config(root, tmp_path)
    for key in ("seed", "checkpoint_dir", "epochs"):  # the runner sets these per run
        cfg.pop(key)
    return cfg


@pytest.fixture(scope="module")
def bench_out(tiny_root, tmp_path_factory):
    """SASRec and SAERec (fake intents) x 2 seeds on the tiny dataset, then a second invocation."""
    tmp = tmp_path_factory.mktemp("bench")
    out = str(tmp / "out")
    calls = {"n": 0}
    real_run = quick_start.run

    def counting_run(*args, **kwargs):
        calls["n"] += 1
        return real_run(*args, **kwargs)

    quick_start.run = counting_run
    try:
        registry = benchmark.load_registry()
        variants = [benchmark.resolve_variant(n, registry) for n in ("SASRec", "SAERec")]
        first = benchmark.Benchmark("tiny", variants, [1, 2], out, cli_config=tiny_cli(tiny_root, tmp),
                                    budget_epochs=2, work_dir=str(tmp / "work"), search=False)
        first.run_all()
        first_calls = calls["n"]
        second = benchmark.Benchmark("tiny", variants, [1, 2], out, cli_config=tiny_cli(tiny_root, tmp),
                                     budget_epochs=2, work_dir=str(tmp / "work"), search=False)
        second.run_all()
        result = benchmark.report(out, "tiny", ["SASRec", "SAERec"], registry)
    finally:
        quick_start.run = real_run
    return {"out": out, "first_calls": first_calls, "second_calls": calls["n"] - first_calls,
            "second_counter": second.calls, "result": result, "work": str(tmp / "work"), "tmp": tmp}


def test_every_run_saved_once_and_resume_skips_them(bench_out):
    assert bench_out["first_calls"] == 4  # 2 models x 2 seeds
    assert bench_out["second_calls"] == 0 and bench_out["second_counter"] == 0
    runs = os.path.join(bench_out["out"], "runs")
    for name in ("SASRec__seed1", "SASRec__seed2", "SAERec__seed1", "SAERec__seed2"):
        with open(os.path.join(runs, name + ".json")) as f:
            record = json.load(f)
        assert record["status"] == "ok" and record["config"]["epochs"] == 2
        # the best checkpoint is kept by default, so explain/steer/probe can read the run folder
        assert resolve_checkpoint(os.path.join(bench_out["work"], name)).endswith(".pth")
        assert {"versions", "machine", "seconds", "best_valid_result", "config"} <= set(record)
        # resumable runs record each epoch, how the run ended and which ranking protocol it used
        assert [h["epoch"] for h in record["history"]] == [0, 1] and record["epochs_run"] == 2
        assert record["stopped_by"] == "cap" and record["mask_history"] is False
        assert record["config"]["seed"] == record["seed"]
        # per-user rows reproduce RecBole's aggregated test metrics
        per_user = benchmark.load_per_user(runs, name)
        for metric, value in record["test_result"].items():
            assert abs(per_user[metric].mean() - value) < 1e-4
        assert len(per_user["users"]) == record["n_test_users"] > 0
        assert "users" not in np.load(os.path.join(runs, name + ".peruser.npz")).files  # stored once per folder


def test_changed_spec_is_run_again(bench_out, tiny_root, tmp_path):
    out = str(tmp_path / "copy")
    shutil.copytree(bench_out["out"], out)
    registry = benchmark.load_registry()
    variant = benchmark.resolve_variant("SASRec", registry)
    bench = benchmark.Benchmark("tiny", [variant], [1], out, cli_config=tiny_cli(tiny_root, tmp_path),
                                budget_epochs=1, work_dir=str(tmp_path / "work"))  # 1 epoch, not 2
    run_id = "SASRec__seed1"
    cfg = dict(bench.config_dict(variant, 1), checkpoint_dir=os.path.join(bench.work_dir, run_id))
    with open(os.path.join(out, "runs", run_id + ".json")) as f:
        assert benchmark.spec_hash("SASRec", "tiny", [], cfg) != json.load(f)["spec_hash"]
    assert bench.finished(run_id, benchmark.spec_hash("SASRec", "tiny", [], cfg)) is None
    assert os.path.exists(os.path.join(out, "runs", "stale", run_id + ".json"))
    assert not os.path.exists(os.path.join(out, "runs", run_id + ".peruser.npz"))


def test_changed_plugin_default_is_run_again(bench_out, tiny_root, tmp_path):
    """The spec hash holds the overrides, not the plugin's yaml defaults: a record made when a
    default differed (here the fusion, as when it changed from 'residual' to 'mean') is stale."""
    from recbole_saerec.config import Config

    out = str(tmp_path / "copy")
    shutil.copytree(bench_out["out"], out)
    registry = benchmark.load_registry()
    variant = benchmark.resolve_variant("SAERec", registry)
    bench = benchmark.Benchmark("tiny", [variant], [1], out, cli_config=tiny_cli(tiny_root, bench_out["tmp"]),
                                budget_epochs=2, work_dir=bench_out["work"], search=False)
    run_id = "SAERec__seed1"
    cfg = dict(bench.config_dict(variant, 1), checkpoint_dir=os.path.join(bench.work_dir, run_id))
    digest = bench.digest(variant, cfg)
    resolved = Config(model="SAERec", dataset="tiny", config_dict=cfg)
    assert bench.finished(run_id, digest, resolved) is not None  # same defaults: skipped
    path = os.path.join(out, "runs", run_id + ".json")
    with open(path) as f:
        record = json.load(f)
    assert record["spec_hash"] == digest and record["config"]["fusion"] == resolved["fusion"] == "mean"
    record["config"]["fusion"] = "residual"  # the run as it was made under the old default
    with open(path, "w") as f:
        json.dump(record, f)
    assert bench.finished(run_id, digest, resolved) is None  # same spec hash, changed default: stale
    assert os.path.exists(os.path.join(out, "runs", "stale", run_id + ".json"))


def test_a_setting_stated_otherwise_with_the_same_resolved_config_is_not_run_again(bench_out, tiny_root, tmp_path):
    """The spec hash differs when a variant states a value its default already has (or a default
    later takes an override's value); the resolved config is the same, so the record is the run."""
    out = str(tmp_path / "copy")
    shutil.copytree(bench_out["out"], out)
    run_id = "SAERec__seed1"
    with open(os.path.join(out, "runs", run_id + ".json")) as f:
        record = json.load(f)

    def check(config, exact=False):
        variant = dict(benchmark.resolve_variant("SAERec", benchmark.load_registry()), config=config)
        bench = benchmark.Benchmark("tiny", [variant], [1], out, budget_epochs=2, work_dir=bench_out["work"],
                                    cli_config=tiny_cli(tiny_root, bench_out["tmp"]), search=False)
        cfg = dict(bench.config_dict(variant, 1), checkpoint_dir=os.path.join(bench.work_dir, run_id))
        assert bench.digest(variant, cfg) != record["spec_hash"]
        return bench.finished(run_id, bench.digest(variant, cfg), bench.resolve(variant, cfg), exact=exact)

    stated = {"learning_rate": record["config"]["learning_rate"], "fusion": record["config"]["fusion"]}
    assert check(stated)["test_result"] == record["test_result"]  # reused, not retrained
    assert check(stated, exact=True) is None  # a pre-trained variant trusts its hash only
    assert os.path.exists(os.path.join(out, "runs", "stale", run_id + ".json"))
    shutil.move(os.path.join(out, "runs", "stale", run_id + ".json"), os.path.join(out, "runs", run_id + ".json"))
    assert check({"learning_rate": record["config"]["learning_rate"] / 2}) is None  # another setting: stale


def test_records_name_the_intent_set_they_read(bench_out):
    with open(os.path.join(bench_out["out"], "runs", "SAERec__seed1.json")) as f:
        intents = json.load(f)["intents"]
    with open(os.path.join(intents["dir"], "manifest.json")) as f:
        manifest = json.load(f)
    assert intents["n_intents"] == manifest["n_intents"] > 0 and intents["fingerprint"] == manifest["fingerprint"]
    with open(os.path.join(bench_out["out"], "runs", "SASRec__seed1.json")) as f:
        assert json.load(f)["intents"] is None  # a model without intents reads none


def test_table_mean_and_std_match_the_run_jsons(bench_out):
    out = bench_out["out"]
    records = {}
    for name in os.listdir(os.path.join(out, "runs")):
        if name.endswith(".json") and "__seed" in name:
            with open(os.path.join(out, "runs", name)) as f:
                r = json.load(f)
            records.setdefault(r["variant"], []).append(r["test_result"])
    with open(os.path.join(out, "results.md")) as f:
        table = f.read()
    assert "seen items NOT masked (`mask_history: False`" in table  # every table says which ranking it used
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| SA")}
    for variant in ("SASRec", "SAERec"):
        cells = re.findall(r"(\d\.\d{4}) ± (\d\.\d{4})", rows[variant])
        assert len(cells) == 4
        for (mean, std), metric in zip(cells, ["hit@10", "ndcg@10", "hit@20", "ndcg@20"]):
            values = [r[metric] for r in records[variant]]
            assert float(mean) == pytest.approx(np.mean(values), abs=6e-5)
            assert float(std) == pytest.approx(np.std(values, ddof=1), abs=6e-5)
    # best per metric is bold, exactly once per metric column
    summary = bench_out["result"]["summary"]
    for i, metric in enumerate(["hit@10", "ndcg@10", "hit@20", "ndcg@20"]):
        best = max(summary, key=lambda v: summary[v][metric][0])
        assert rows[best].split("|")[3 + i].strip().startswith("**")
    for name in ("results.csv", "summary.csv", "results.png", "significance.json"):
        assert os.path.getsize(os.path.join(out, name)) > 0
    # every epoch of every run in curves.csv; the gate's weights for the fusing model only
    with open(os.path.join(out, "curves.csv")) as f:
        curves = list(csv.DictReader(f))
    records_all = bench_out["result"]["records"]
    assert len(curves) == sum(len(r["history"]) for r in records_all)
    assert {c["variant"] for c in curves if c["fusion_entropy"]} == {"SAERec"}
    # the default 'mean' fusion weighs every user alike: no section reporting a constant
    assert "## Fusion" not in table
    # SAERec (ours) against the one baseline
    sig = bench_out["result"]["significance"]
    assert [s["best_baseline"] for s in sig] == ["SASRec"] * 4


def test_seed_paired_test_matches_scipy_and_hand_computation():
    ours = [(1, 0.110), (2, 0.104), (3, 0.101)]
    theirs = [(1, 0.100), (2, 0.099), (3, 0.097), (4, 0.5)]  # seed 4 has no partner: ignored
    got = benchmark.paired_seed_test(ours, theirs)
    d = np.array([0.010, 0.005, 0.004])
    t_hand = d.mean() / (d.std(ddof=1) / np.sqrt(3))
    assert got["n"] == 3
    assert got["t"] == pytest.approx(t_hand)
    assert got["p"] == pytest.approx(2 * stats.t.sf(abs(t_hand), df=2))
    assert got["p"] == pytest.approx(stats.ttest_rel([0.110, 0.104, 0.101], [0.100, 0.099, 0.097]).pvalue)


def test_user_paired_test_matches_scipy():
    rng = np.random.default_rng(0)
    theirs = {f"u{i}": float(v) for i, v in enumerate(rng.random(200) < 0.2)}
    ours = {u: (1.0 if rng.random() < 0.15 else v) for u, v in theirs.items()}
    ours["extra"] = 1.0  # only users both models saw are paired
    got = benchmark.paired_user_test(ours, theirs)
    users = sorted(theirs)
    x, y = np.array([ours[u] for u in users]), np.array([theirs[u] for u in users])
    assert got["n_users"] == 200
    assert got["mean_diff"] == pytest.approx((x - y).mean())
    assert got["p_t"] == pytest.approx(stats.ttest_rel(x, y).pvalue)
    assert got["p_wilcoxon"] == pytest.approx(stats.wilcoxon(x, y).pvalue)
    lo, hi = got["ci95"]
    assert lo < got["mean_diff"] < hi


def test_identical_models_give_no_p_value():
    same = {"a": 1.0, "b": 0.0}
    assert np.isnan(benchmark.paired_user_test(same, same)["p_t"])
    assert np.isnan(benchmark.paired_seed_test([(1, 0.1), (2, 0.2)], [(1, 0.1), (2, 0.2)])["p"])


def test_per_user_metrics_follow_recbole_formulas():
    # rows: top-3 hit flags + number of positives (RecBole's rec.topk layout)
    topk = np.array([[1, 0, 0, 1], [0, 0, 1, 1], [0, 0, 0, 1], [0, 1, 1, 2]])
    got = benchmark.per_user_from_topk(topk, [1, 3])
    assert got["hit@1"].tolist() == [1, 0, 0, 0]
    assert got["hit@3"].tolist() == [1, 1, 0, 1]
    assert got["ndcg@3"][1] == pytest.approx(1 / np.log2(4))
    ideal2 = 1 + 1 / np.log2(3)
    assert got["ndcg@3"][3] == pytest.approx((1 / np.log2(3) + 1 / np.log2(4)) / ideal2)


def test_registry_has_the_named_variants(capsys):
    registry = benchmark.load_registry()
    for name in ("SAERec-noPer", "SAERec-noPub", "SAERec-noFus", "SAERec-noEMA", "SAERec-noIde",
                 "KMeans-Intent", "SASRec-CE"):
        assert name in registry
    assert registry["SAERec-noIde"]["config"]["intent_keep"] == "none"
    assert registry["KMeans-Intent"]["config"]["intent_method"] == "kmeans"
    assert registry["SAERec-noIde"]["config"]["intent_tag"] != registry["KMeans-Intent"]["config"]["intent_tag"]
    assert benchmark.resolve_variant("GRU4Rec", registry)["model"] == "GRU4Rec"
    capsys.readouterr()
    assert benchmark.resolve_variant("NARM", registry)["config"] == {}  # a bare model: the shared protocol, its own sizes
    assert "NARM' is not a variant" in capsys.readouterr().out  # so the user hears which settings are its own
    with pytest.raises(ValueError, match="Unknown model"):
        benchmark.resolve_variant("SASRecc", registry)


def test_search_selects_on_valid_and_reuses_the_first_seed(tiny_root, tmp_path, monkeypatch):
    """Candidates run on the first seed; the best VALID score wins even when its test score is worse."""
    valid = {0.0005: 0.30, 0.002: 0.50}  # neither is SASRec's default lr (that candidate would be its own run)
    test = {0.0005: 0.9, 0.002: 0.1}
    calls = []

    def fake_execute(self, run_id, variant, seed, cfg):
        calls.append(run_id)
        lr = cfg["learning_rate"]
        record = {"run_id": run_id, "variant": variant["name"], "seed": seed, "status": "ok", "role": "baseline",
                  "best_valid_score": valid[lr], "valid_metric": "NDCG@10", "test_result": {"ndcg@10": test[lr]},
                  "seconds": 1.0, "best_epoch": 1, "spec_hash": "x"}
        benchmark.write_json_atomic(self.run_path(run_id), record)
        return record, True

    monkeypatch.setattr(benchmark.Benchmark, "execute", fake_execute)
    variant = {"name": "Toy", "model": "SASRec", "role": "baseline", "config": {},
               "search": [{"learning_rate": 0.0005}, {"learning_rate": 0.002}]}
    bench = benchmark.Benchmark("tiny", [variant], [5, 6], str(tmp_path / "out"), search=True)
    chosen, index = bench.select(variant)
    assert chosen == {"learning_rate": 0.002} and index == 1
    assert calls == ["Toy@cand0__seed5", "Toy@cand1__seed5"]
    with open(os.path.join(bench.runs_dir, "Toy.search.json")) as f:
        assert json.load(f)["selected_on"] == "valid"


def recording_execute(valid, calls):
    """Benchmark.execute without training: records each call; a run's VALID score is valid[its lr]."""
    def execute(self, run_id, variant, seed, cfg):
        calls.append(run_id)
        record = {"run_id": run_id, "variant": variant["name"], "seed": seed, "status": "ok", "role": "baseline",
                  "best_valid_score": valid[cfg["learning_rate"]], "valid_metric": "NDCG@10",
                  "test_result": {"ndcg@10": 0.1}, "seconds": 1.0, "best_epoch": 1, "spec_hash": "x"}
        benchmark.write_json_atomic(self.run_path(run_id), record)
        return record, True
    return execute


def test_two_calls_share_one_search_through_search_candidates(tiny_root, tmp_path, monkeypatch):
    """--search_candidates: each call trains its candidates and selects nothing until all have records."""
    valid = {0.0005: 0.30, 0.002: 0.50, 0.003: 0.40}
    calls = []

    monkeypatch.setattr(benchmark.Benchmark, "execute", recording_execute(valid, calls))
    variant = {"name": "Toy", "model": "SASRec", "role": "baseline", "config": {},
               "search": [{"learning_rate": 0.0005}, {"learning_rate": 0.002}, {"learning_rate": 0.003}]}
    out = str(tmp_path / "out")
    first = benchmark.Benchmark("tiny", [variant], [5], out, search=True, search_candidates=[0, 2])
    assert first.select(variant) == (None, None)  # candidate 1 has no record: no pick yet
    assert calls == ["Toy@cand0__seed5", "Toy@cand2__seed5"]
    assert not os.path.isfile(os.path.join(first.runs_dir, "Toy.search.json"))
    second = benchmark.Benchmark("tiny", [variant], [5], out, search=True, search_candidates=[1])
    assert second.select(variant) == ({"learning_rate": 0.002}, 1)  # all three have records now
    assert calls[2:] == ["Toy@cand0__seed5", "Toy@cand1__seed5", "Toy@cand2__seed5"]  # (this fake reruns all)


def test_a_run_another_live_process_is_training_is_left_to_it(tiny_root, tmp_path, monkeypatch):
    """Two queues sharing a work folder: a run whose in-flight marker names a live process on this
    host is neither trained again nor selected on; a marker of a dead process is resumed as usual."""
    valid = {0.0005: 0.30, 0.002: 0.50}
    calls = []

    monkeypatch.setattr(benchmark.Benchmark, "execute", recording_execute(valid, calls))
    variant = {"name": "Toy", "model": "SASRec", "role": "baseline", "config": {},
               "search": [{"learning_rate": 0.0005}, {"learning_rate": 0.002}]}
    bench = benchmark.Benchmark("tiny", [variant], [5, 6], str(tmp_path / "out"), search=True,
                                work_dir=str(tmp_path / "work"))

    def mark(run_id, pid, started=None):
        os.makedirs(os.path.join(bench.work_dir, run_id), exist_ok=True)
        benchmark.write_json_atomic(os.path.join(bench.work_dir, run_id, "in_flight.json"),
                                    {"run_id": run_id, "pid": pid, "host": platform.node(),
                                     "started_unix": time.time() if started is None else started})

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        mark("Toy@cand1__seed5", other.pid)
        assert bench.select(variant) == (None, None)  # candidate 1 is being trained elsewhere: no pick yet
        assert calls == ["Toy@cand0__seed5"]
        mark("Toy@cand1__seed5", other.pid, started=time.time() - 3600)  # its pid, reused by a later process
        assert bench.trained_elsewhere("Toy@cand1__seed5") is None
        mark("Toy@cand1__seed5", 2 ** 22 + 1)  # beyond pid_max: that process is gone, the run is resumed here
        assert bench.select(variant) == ({"learning_rate": 0.002}, 1)
        mark("Toy__seed6", other.pid)
        monkeypatch.setattr(benchmark.Benchmark, "copy_selected", lambda *a: None)
        bench.run_all()
        assert "Toy__seed6" not in calls and "Toy__seed5" in calls
    finally:
        other.kill()
        other.wait()


def fake_resumable_execute(valid, calls):
    """Benchmark.execute without training: a run's record (its test score = its lr) unless it finished before."""
    def execute(self, run_id, variant, seed, cfg):
        digest = self.digest(variant, dict(cfg, checkpoint_dir=os.path.join(self.work_dir, run_id)))
        old = self.finished(run_id, digest)
        if old is not None:
            return old, False
        calls.append(run_id)
        lr = cfg["learning_rate"]
        record = {"run_id": run_id, "variant": variant["name"], "seed": seed, "status": "ok", "role": "baseline",
                  "best_valid_score": valid[lr], "valid_metric": "NDCG@10", "test_result": {"ndcg@10": lr},
                  "seconds": 1.0, "best_epoch": 1, "spec_hash": digest, "config": {"learning_rate": lr}}
        benchmark.write_json_atomic(self.run_path(run_id), record)
        np.savez(os.path.join(self.runs_dir, f"{run_id}.peruser.npz"), ndcg=np.array([lr]))
        return record, True
    return execute


@pytest.mark.parametrize("own_wins", [False, True])
def test_search_reuses_a_run_made_before_it_and_replaces_it_with_the_winner(tiny_root, tmp_path, monkeypatch,
                                                                           own_wins):
    """A candidate equal to the variant's own settings is its first-seed run (no second training);
    when another candidate wins, its run becomes the first-seed run and the old one goes to stale/;
    when the own settings win, the runs stay as they are."""
    valid = {0.001: 0.30 + 0.4 * own_wins, 0.002: 0.50}
    calls = []
    monkeypatch.setattr(benchmark.Benchmark, "execute", fake_resumable_execute(valid, calls))
    monkeypatch.setattr(runner, "report", lambda *a, **k: None)  # the table itself is tested elsewhere
    variant = {"name": "Toy", "model": "SASRec", "role": "baseline", "config": {"learning_rate": 0.001},
               "search": [{"learning_rate": 0.001}, {"learning_rate": 0.002}]}
    out = str(tmp_path / "out")
    benchmark.Benchmark("tiny", [variant], [5, 6], out, search=False).run_all()  # the table before the search
    assert calls == ["Toy__seed5", "Toy__seed6"]
    bench = benchmark.Benchmark("tiny", [variant], [5, 6], out, search=True)
    bench.run_all()
    with open(bench.run_path("Toy__seed5")) as f:
        first = json.load(f)
    with open(bench.run_path("Toy__seed6")) as f:
        second = json.load(f)
    if own_wins:  # candidate 0 was the run made before; nothing else trains again
        assert calls == ["Toy__seed5", "Toy__seed6", "Toy@cand1__seed5"]
        assert first["test_result"] == second["test_result"] == {"ndcg@10": 0.001} and "selected_from" not in first
    else:  # the winner's run is the first seed; the second seed trains again with its settings
        assert calls == ["Toy__seed5", "Toy__seed6", "Toy@cand1__seed5", "Toy__seed6"]
        assert first["selected_from"] == "Toy@cand1__seed5" and first["test_result"] == {"ndcg@10": 0.002}
        assert second["test_result"] == {"ndcg@10": 0.002}
        assert sorted(os.listdir(os.path.join(bench.runs_dir, "stale"))) == [  # the lr-0.001 runs, kept aside
            "Toy__seed5.json", "Toy__seed5.peruser.npz", "Toy__seed6.json", "Toy__seed6.peruser.npz"]
    with open(bench.run_path("Toy@cand0__seed5")) as f:  # the own-settings run, adopted by the search
        assert json.load(f)["same_run_as"] == "Toy__seed5"
    trained = list(calls)
    benchmark.Benchmark("tiny", [variant], [5, 6], out, search=True).run_all()  # a resumed search
    assert calls == trained  # trains nothing again, whichever candidate won


def test_a_search_keeps_the_runs_made_at_the_own_settings_under_keep_own_as(tiny_root, tmp_path, monkeypatch):
    """keep_own_as: when another candidate wins, the runs made before the search take the pinned
    name (numbers, per-user rows, the reason) instead of going to stale/; a resumed search renames nothing more."""
    calls = []
    monkeypatch.setattr(benchmark.Benchmark, "execute", fake_resumable_execute({0.001: 0.30, 0.002: 0.50}, calls))
    monkeypatch.setattr(runner, "report", lambda *a, **k: None)
    extra = tmp_path / "variants.yaml"
    extra.write_text("Toy:\n  model: SASRec\n  config: {learning_rate: 0.001}\n  keep_own_as: Toy-lr1e-3\n"
                     "  search: [{learning_rate: 0.001}, {learning_rate: 0.002}]\n"
                     "Toy-lr1e-3:\n  model: SASRec\n  role: ablation\n  config: {learning_rate: 0.001}\n")
    registry = benchmark.load_registry(extra=[str(extra)])
    variant = benchmark.resolve_variant("Toy", registry)
    out = str(tmp_path / "out")
    benchmark.Benchmark("tiny", [variant], [5, 6], out, search=False, registry=registry).run_all()
    bench = benchmark.Benchmark("tiny", [variant], [5, 6], out, search=True, registry=registry)
    bench.run_all()
    assert calls == ["Toy__seed5", "Toy__seed6", "Toy@cand1__seed5", "Toy__seed6"]
    assert not os.path.exists(os.path.join(bench.runs_dir, "stale"))
    for seed in (5, 6):
        with open(bench.run_path(f"Toy-lr1e-3__seed{seed}")) as f:
            kept = json.load(f)
        with open(bench.run_path(f"Toy__seed{seed}")) as f:
            searched = json.load(f)
        assert kept["variant"] == "Toy-lr1e-3" and kept["role"] == "ablation"
        assert kept["test_result"] == {"ndcg@10": 0.001}
        assert "picked Toy candidate 1" in kept["renamed"][0]["why"]
        assert searched["test_result"] == {"ndcg@10": 0.002}
        assert os.path.exists(os.path.join(bench.runs_dir, f"Toy-lr1e-3__seed{seed}.peruser.npz"))
    benchmark.Benchmark("tiny", [variant], [5, 6], out, search=True, registry=registry).run_all()
    assert len(calls) == 4 and os.path.exists(bench.run_path("Toy-lr1e-3__seed5"))  # resumed: nothing more
    extra.write_text("Toy:\n  model: SASRec\n  keep_own_as: Nowhere\n")
    with pytest.raises(UsageError, match="keep_own_as: 'Nowhere' must be a variant of the same model"):
        benchmark.load_registry(extra=[str(extra)])


def test_a_call_for_later_seeds_reuses_the_search_made_on_the_search_seed(tiny_root, tmp_path, monkeypatch):
    """Adding seed 6 to a table searched on seed 5 trains seed 6 with the winner, and no candidate
    on seed 6 (the search is not made again on whichever seed a call happens to list first)."""
    calls = []
    monkeypatch.setattr(benchmark.Benchmark, "execute", fake_resumable_execute({0.001: 0.30, 0.002: 0.50}, calls))
    monkeypatch.setattr(runner, "report", lambda *a, **k: None)
    variant = {"name": "Toy", "model": "SASRec", "role": "baseline", "config": {"learning_rate": 0.001},
               "search": [{"learning_rate": 0.001}, {"learning_rate": 0.002}]}
    out = str(tmp_path / "out")
    benchmark.Benchmark("tiny", [variant], [5], out, search=True).run_all()
    assert calls == ["Toy@cand0__seed5", "Toy@cand1__seed5"]
    benchmark.Benchmark("tiny", [variant], [6], out, search=True, search_seed=5).run_all()
    assert calls[2:] == ["Toy__seed6"]
    with open(os.path.join(out, "runs", "Toy__seed6.json")) as f:
        assert json.load(f)["config"] == {"learning_rate": 0.002}  # the winner's settings
    # the command line searches on --seed_base unless told otherwise
    seen = {}
    monkeypatch.setattr(benchmark.Benchmark, "run_all", lambda self: seen.update(seed=self.search_seed))
    benchmark.main(["--dataset=tiny", "--models=SASRec", "--seeds=2021,2022", f"--out={out}"])
    assert seen["seed"] == 2020
    benchmark.main(["--dataset=tiny", "--models=SASRec", "--seeds=2021,", "--search_seed=2021", f"--out={out}"])
    assert seen["seed"] == 2021


def test_cli_parses_config_keys():
    args, cli = benchmark.parse_args(["--dataset=tiny", "--models=SASRec,SAERec", "--seeds=2",
                                      "--MAX_ITEM_LIST_LENGTH=20", "--use_gpu=False", "--topk=[10,20]"])
    assert cli == {"MAX_ITEM_LIST_LENGTH": 20, "use_gpu": False, "topk": [10, 20]}
    assert args.models == "SASRec,SAERec" and args.keep_checkpoints
    assert not benchmark.parse_args(["--dataset=tiny", "--models=SASRec", "--drop_checkpoints"])[0].keep_checkpoints


def test_a_capped_table_says_not_converged_in_its_headline_and_checks_no_target(bench_out):
    with open(os.path.join(bench_out["out"], "results.md")) as f:
        table = f.read()
    first = table.split("\n| model")[0]
    # 2 epochs, patience 10: every run hit the cap
    assert "at most 2 epochs per run" in first and "NOT CONVERGED: all 4 runs stopped at the epochs cap" in first
    rows = [line for line in table.splitlines() if line.startswith("| SA")]
    assert all("2/2 of 2 **not converged**" in row for row in rows)
    target = table.split("## SAERec relative to")[1]
    assert "Not compared with the target" in target and "within at most 2 epochs per run" in target and "%)" not in target.split("##")[0]


def test_the_target_compares_with_sasrec_ce_and_only_converged_runs():
    from recbole_saerec.experiments.benchmark.report import markdown

    def rec(variant, seed, hr, stopped="patience"):
        return {"variant": variant, "role": "ours" if variant == "SAERec" else "baseline", "seed": seed,
                "test_result": {"hit@10": hr, "ndcg@10": hr / 2}, "best_valid_result": {}, "best_epoch": 4,
                "epochs_run": 15, "epochs_cap": 200, "stopping_step": 10, "stopped_by": stopped, "seconds": 60,
                "train_eval_seconds": 60, "config": {"fusion": "mean"}, "run_id": f"{variant}__seed{seed}"}

    records = [rec(v, s, hr) for v, hr in (("SAERec", 0.11), ("SASRec", 0.05), ("SASRec-CE", 0.10)) for s in (1, 2)]
    table = markdown(records, [], "tiny")
    assert "All 6 runs stopped early on VALID" in table and "not converged" not in table
    assert "## SAERec relative to SASRec-CE" in table and "+10.0%" in table  # not the weaker RecBole SASRec
    records[-1]["stopped_by"] = "cap"
    table = markdown(records, [], "tiny")
    assert "1 of 6 runs stopped at the epochs cap" in table and "**1 not converged**" in table
    assert "Not compared with the target: SASRec-CE stopped at the epochs cap" in table
    # a per-user fusion has its section; 'mean' had none
    for r in records:
        r["config"] = {"fusion": "adaptive"}
        r["history"] = [{"epoch": 4, "fusion_self": 0.2, "fusion_personal": 0.5, "fusion_public": 0.3,
                         "fusion_entropy": 0.9, "fusion_collapsed_share": 0.0}]
    assert "## Fusion" in markdown(records, [], "tiny")
    # a row that selects its epoch on another metric is named in the budget line
    for r in records:
        r["valid_metric"] = "NDCG@20" if r["variant"] == "SASRec" else "NDCG@10"
    assert "improvement of valid NDCG@10 (NDCG@20 for SASRec)." in markdown(records, [], "tiny")
    # rows trained and selected on the authors' leaky protocol are named before the table
    assert "authors_leaky" not in markdown(records, [], "tiny")
    records[0]["config"] = {"fusion": "adaptive", "protocol": "authors_leaky"}
    assert "**Protocol authors_leaky for SAERec: trained on the validation item, the epoch selected on the TEST item" \
        in markdown(records, [], "tiny")


def test_search_is_off_unless_asked_and_announced_with_its_runs(tmp_path, capsys):
    args, _ = benchmark.parse_args(["--dataset=tiny", "--models=SAERec"])
    assert args.search == "off"
    from recbole_saerec.experiments.benchmark.cli import default_out

    assert not default_out("tiny").startswith("docs")  # trying the tool never writes into committed docs
    variant = {"name": "X", "model": "SASRec", "role": "baseline", "config": {},
               "search": [{"learning_rate": 0.001}, {"learning_rate": 0.0005}, {"learning_rate": 0.002}]}
    benchmark.Benchmark("tiny", [variant], [1], str(tmp_path / "out"), search=True).announce()
    said = capsys.readouterr().out
    assert "X tries 3 candidates on seed 1's VALID (3 not run yet" in said and "search adds up to 2 runs" in said
    benchmark.Benchmark("tiny", [variant], [1], str(tmp_path / "out"), search=False).announce()
    assert "search off" in capsys.readouterr().out


def test_progress_shows_a_run_in_its_first_epoch_and_a_dead_one(tmp_path, monkeypatch):
    from recbole_saerec.experiments.benchmark.report import IN_FLIGHT, format_progress, progress

    # this process predates the markers below (they claim a start 90 s ago)
    monkeypatch.setattr(sys.modules["recbole_saerec.experiments.benchmark.report"], "process_start", lambda pid: 0.0)

    for run_id, pid in (("A__seed1", os.getpid()), ("B__seed1", 2 ** 22 + 12345)):
        os.makedirs(tmp_path / run_id)
        benchmark.write_json_atomic(str(tmp_path / run_id / IN_FLIGHT),
                                    {"run_id": run_id, "pid": pid, "host": __import__("platform").node(),
                                     "started_unix": __import__("time").time() - 90, "epochs_cap": 1})
    rows = {r["run_id"]: format_progress(r) for r in progress(str(tmp_path))}
    assert rows["A__seed1"].startswith("A__seed1: epoch 1 of 1 in progress, started 1m3")
    assert "PAUSED" not in rows["A__seed1"] and "PAUSED: its process is gone" in rows["B__seed1"]


def test_against_tests_each_variant_against_its_reference(bench_out, tmp_path):
    out = str(tmp_path / "copy")
    shutil.copytree(bench_out["out"], out)
    extra = tmp_path / "extra.yaml"
    extra.write_text("SAERec:\n  model: SAERec\n  role: ours\n  against: SASRec\n")
    result = benchmark.main(["--dataset=tiny", "--models=SAERec,SASRec", "--seeds=1,2", f"--out={out}",
                             "--report_only", f"--variants={extra}"])
    against = result["against"]
    assert [(a["ours"], a["theirs"]) for a in against] == [("SAERec", "SASRec")] * 4
    # SASRec is the only baseline: the pair is the significance comparison, computed by the same code
    for a, s in zip(against, result["significance"]):
        assert a["metric"] == s["metric"] and a["user_p_t"] == s["user_p_t"] and a["seed_p"] == s["seed_p"]
    with open(os.path.join(out, "against.json")) as f:
        assert len(json.load(f)) == 4
    with open(os.path.join(out, "results.md")) as f:
        assert "| SAERec | SASRec | HR@10 |" in f.read()


@pytest.mark.parametrize("body, message", [
    ("X:\n  model: SAERec\n  agianst: SASRec\n", r"unknown key\(s\) \['agianst'\]"),
    ("X:\n  model: SAERec\n  against: SASRecc\n", "against: 'SASRecc' is not a variant"),
])
def test_registry_refuses_unknown_keys_and_references(tmp_path, body, message):
    path = tmp_path / "v.yaml"
    path.write_text(body)
    with pytest.raises(UsageError, match=message):
        benchmark.load_registry(extra=[str(path)])


def test_report_only_rebuilds_the_table_from_the_runs(bench_out, tmp_path):
    out = str(tmp_path / "copy")
    shutil.copytree(bench_out["out"], out)
    os.remove(os.path.join(out, "results.md"))
    result = benchmark.main(["--dataset=tiny", "--models=SAERec,SASRec", "--seeds=1,2", f"--out={out}",
                             "--report_only"])
    assert [r["variant"] for r in result["records"]] == ["SAERec", "SAERec", "SASRec", "SASRec"]
    with open(os.path.join(out, "results.md")) as f:
        assert "| SAERec | ours |" in f.read()


def test_a_call_that_runs_some_models_keeps_the_rows_the_table_already_showed(bench_out, tmp_path, monkeypatch):
    # two CPU slots share one folder: slot B's call for SAERec must not drop slot A's SASRec rows
    out = str(tmp_path / "copy")
    shutil.copytree(bench_out["out"], out)
    assert benchmark.report_names(out, ["SAERec", "BERT4Rec"]) == ["SASRec", "SAERec", "BERT4Rec"]
    monkeypatch.setattr(runner.Benchmark, "run_all", lambda self: None)  # the runs are there: nothing to train
    result = benchmark.main(["--dataset=tiny", "--models=SAERec", "--seeds=1,2", f"--out={out}", "--search=off"])
    assert [r["variant"] for r in result["records"]] == ["SASRec", "SASRec", "SAERec", "SAERec"]
    # --report_only still shows exactly what it is asked for
    result = benchmark.main(["--dataset=tiny", "--models=SAERec", "--seeds=1,2", f"--out={out}", "--report_only"])
    assert {r["variant"] for r in result["records"]} == {"SAERec"}


def test_the_table_rewritten_after_each_run_keeps_the_rows_it_already_showed(tmp_path, monkeypatch):
    # the same rule inside run_all, which rewrites the table after every fresh run of a long call
    out = tmp_path / "out"
    (out / "runs").mkdir(parents=True)
    (out / "results.csv").write_text("variant,seed\nOther,1\n")
    shown = []
    monkeypatch.setattr(benchmark.Benchmark, "execute", fake_resumable_execute({0.001: 0.3}, []))
    monkeypatch.setattr(runner, "report", lambda out_dir, dataset, names, registry: shown.append(names))
    variant = {"name": "Toy", "model": "SASRec", "role": "baseline", "config": {"learning_rate": 0.001}}
    benchmark.Benchmark("tiny", [variant], [5], str(out), search=False).run_all()
    assert shown == [["Other", "Toy"]]


def test_intents_are_built_once_per_tag_with_the_variant_config(tiny_root, tmp_path, monkeypatch):
    import recbole_saerec.intents.build as build

    calls = []

    def fake_build(config, intent_dir=None):
        calls.append((os.path.basename(intent_dir), config["intent_keep"], config["intent_cache_dir"]))
        os.makedirs(intent_dir, exist_ok=True)
        open(os.path.join(intent_dir, "manifest.json"), "w").write("{}")

    monkeypatch.setattr(build, "build_intents", fake_build)
    registry = benchmark.load_registry()
    variants = [benchmark.resolve_variant(n, registry) for n in ("SAERec", "SAERec-noPer", "SAERec-noIde", "SASRec")]
    cli = dict(tiny_cli(tiny_root, tmp_path), intent_dir=None, intent_autobuild=True,
               intent_root=str(tmp_path / "intents"))
    bench = benchmark.Benchmark("tiny", variants, [1, 2], str(tmp_path / "out"), cli_config=cli)
    for v in variants:
        bench.ensure_intents([(None, v, s, bench.config_dict(v, s)) for s in bench.seeds])
    shared = str(tmp_path / "intents" / "tiny" / "default" / "cache")
    assert calls == [("default", default_keep_rule(), shared), ("noide", "none", shared)]


def test_rename_moves_the_runs_of_a_changed_default_to_the_variant_they_measured(bench_out, tmp_path):
    out = str(tmp_path / "copy")
    shutil.copytree(bench_out["out"], out)
    runs = os.path.join(out, "runs")
    ran_with = json.load(open(os.path.join(runs, "SAERec__seed1.json")))["config"]
    extra = tmp_path / "extra.yaml"
    extra.write_text(f"SAERec-old:\n  model: SAERec\n  config: {{fusion: {ran_with['fusion']}, intent_tag: elsewhere}}\n"
                     "SAERec-other:\n  model: SAERec\n  config: {fusion: nonsense}\n")
    common = ["--dataset=tiny", f"--out={out}", f"--variants={extra}"]
    with pytest.raises(UsageError, match=r"SAERec__seed1 ran with fusion=.*not what 'SAERec-other' sets"):
        benchmark.main([*common, "--rename=SAERec=SAERec-other", "--why=test"])
    with pytest.raises(UsageError, match="needs --why"):
        benchmark.main([*common, "--rename=SAERec=SAERec-old"])
    assert benchmark.main([*common, "--rename=SAERec=SAERec-old", "--why=the default changed"]) == {
        "renamed": ["SAERec-old__seed1", "SAERec-old__seed2"]}
    assert not os.path.exists(os.path.join(runs, "SAERec__seed1.json"))
    record = json.load(open(os.path.join(runs, "SAERec-old__seed1.json")))
    assert record["variant"] == "SAERec-old" and record["run_id"] == "SAERec-old__seed1"
    assert record["role"] == "baseline"  # no longer 'ours': the table marks the new default
    (note,) = record["renamed"]
    assert note["from"] == "SAERec__seed1" and note["why"] == "the default changed"
    assert note["tolerated"] == {"intent_tag": {"ran": ran_with["intent_tag"], "variant": "elsewhere"}}
    # the per-user rows moved with it: the report pairs the renamed runs with SASRec user by user
    result = benchmark.main([*common, "--models=SAERec-old,SASRec", "--seeds=1,2", "--report_only"])
    assert [r["variant"] for r in result["records"]] == ["SAERec-old"] * 2 + ["SASRec"] * 2
    assert os.path.exists(os.path.join(runs, "SAERec-old__seed2.peruser.npz"))


def test_a_resumed_run_is_timed_by_all_its_epochs_not_only_its_last_call():
    from recbole_saerec.experiments.benchmark.records import epoch_seconds, run_seconds

    resumed = {"seconds": 60.0, "train_eval_seconds": 50.0,
               "history": [{"epoch": 0, "seconds": 100.0}, {"epoch": 1, "seconds": 110.0}, {"epoch": 2, "seconds": 90.0}]}
    assert epoch_seconds(resumed) == 300.0 and run_seconds(resumed) == 300.0
    whole = dict(resumed, seconds=320.0)  # an uninterrupted run: its call includes loading and the test
    assert run_seconds(whole) == 320.0
    untimed = {"seconds": 70.0, "train_eval_seconds": 65.0, "history": [{"epoch": 0}]}
    assert epoch_seconds(untimed) == 65.0 and run_seconds(untimed) == 70.0
