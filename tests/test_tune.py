"""Ray Tune sweeps (recbole_saerec.experiments.tune): real Tune, CPU, tiny data, 2 trials per sweep.

One module-scoped local Ray (2 CPUs, no dashboard). Sweep A: a good and a bad
learning rate under ASHA (grace 1, max 4 epochs), run one after the other, so
the bad one meets the good one's rung and is stopped; its best config is then
retrained through quick_start.run. Sweep B: two intent builds (sae_k 2 and 3),
interrupted (SIGUSR1, as Ctrl+C) while the second trial runs, then --resume.
"""
import json
import os
import signal

import pytest
import torch
import yaml

from conftest import base_config, write_fake_intents, write_tiny_dataset

ray = pytest.importorskip("ray")
from ray import tune  # noqa: E402

from recbole_saerec.experiments import tune as sweep  # noqa: E402
from recbole_saerec.quick_start import run  # noqa: E402

N_USERS = 150


@pytest.fixture(scope="module")
def local_ray():
    # Ray runs its trial workers at niceness 15: beside any other CPU work (a benchmark on the same
    # cores) they starve, and these tests took 20+ minutes instead of a few. Normal priority here.
    saved = os.environ.get("RAY_worker_niceness")
    os.environ["RAY_worker_niceness"] = "0"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    if saved is None:
        os.environ.pop("RAY_worker_niceness", None)
    else:
        os.environ["RAY_worker_niceness"] = saved


@pytest.fixture(scope="module")
def tune_data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("tune"))
    return root, write_tune_inputs(root)


def write_tune_inputs(root, n_users=N_USERS, **overrides):
    """Tiny data + hand-made intents under `root`, and the sweep's fixed keys as `root`/base.yaml."""
    write_tiny_dataset(root, n_users=n_users)
    write_fake_intents(os.path.join(root, "intents"))
    cfg = base_config(root, intent_root=os.path.join(root, "intent_root"), state="ERROR",
                      train_batch_size=32, intents_retrieved=2, **overrides)
    for key in ("epochs", "checkpoint_dir"):
        cfg.pop(key)
    config_file = os.path.join(root, "base.yaml")
    with open(config_file, "w") as f:
        yaml.safe_dump(cfg, f)
    return config_file


def write_space(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


class FakeBuilder:
    """Stands in for intents.build.build_intents (driver side): records each build."""

    def __init__(self):
        self.calls = []

    def __call__(self, config, intent_dir=None, progress=True):
        self.calls.append((config["sae_k"], intent_dir))
        write_fake_intents(intent_dir, seed=int(config["sae_k"]), k=int(config["sae_k"]))


class InterruptOnce(tune.Callback):
    """Ctrl+C equivalent: once a trial has finished, interrupt at another trial's 2nd epoch."""

    def __init__(self):
        self.completed, self.sent = 0, False

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.completed += 1

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if self.completed and not self.sent and result["training_iteration"] >= 2:
            self.sent = True
            os.kill(os.getpid(), signal.SIGUSR1)  # Tune's handler: stop, save the experiment state


def test_space_format_and_intent_tags(tmp_path):
    path = write_space(tmp_path / "s.yaml", "a: {grid: [1, 2]}\nlearning_rate: {loguniform: [1e-4, 1e-2]}\n"
                                            "sae_k: {choice: [8, 16]}\nMAX_ITEM_LIST_LENGTH: 20\n")
    swept, fixed, design = sweep.load_space(path)
    assert design == "grid"
    assert swept == {"a": ("grid", [1, 2]), "learning_rate": ("loguniform", [1e-4, 1e-2]),
                     "sae_k": ("choice", [8, 16])}
    assert fixed == {"MAX_ITEM_LIST_LENGTH": 20}
    assert sweep.intent_combinations(swept) == [{"sae_k": 8}, {"sae_k": 16}]
    assert not sweep.is_intent_key("intent_dir") and not sweep.is_intent_key("intents_retrieved")
    tag = sweep.intent_tag({"sae_k": 8, "sae_n_latents": 512}, {})
    assert tag.startswith("k8-m512-")
    assert sweep.intent_tag({"sae_k": 8, "sae_n_latents": 512}, {"intent_encoder": "other"}) != tag
    with pytest.raises(ValueError, match="grid or choice"):
        sweep.load_space(write_space(tmp_path / "bad.yaml", "sae_k: {uniform: [4, 16]}\n"))
    default_swept, _, _ = sweep.load_space(sweep.DEFAULT_SPACE)
    assert set(default_swept) == {"intents_retrieved", "ema_decay", "sae_k"}


@pytest.fixture(scope="module")
def asha_sweep(local_ray, tune_data, tmp_path_factory):
    root, config_file = tune_data
    tmp = tmp_path_factory.mktemp("asha")
    space = write_space(tmp / "space.yaml", "learning_rate: {grid: [1.0e-2, 1.0e-6]}\nhidden_dropout_prob: 0.1\n")
    summary = sweep.run_sweep([
        "--dataset=tiny", f"--space={space}", f"--config_files={config_file}", "--max_epochs=4",
        "--grace_period=1", "--reduction_factor=2", "--max_concurrent_trials=1", "--cpus_per_trial=1",
        f"--storage_path={tmp / 'runs'}", "--name=asha", f"--out={tmp / 'out'}", "--verbose=0",
        "--stopping_step=10",
    ])
    return summary, tmp


@pytest.mark.slow  # a local Ray cluster
def test_trials_ran_and_asha_stopped_the_bad_one(asha_sweep):
    summary, tmp = asha_sweep
    rows = {r["learning_rate"]: r for r in summary["rows"]}
    assert set(rows) == {1e-2, 1e-6} and summary["finished"]
    good, bad = rows[1e-2], rows[1e-6]
    assert good["epochs_run"] == 4 and good["stopped_early"] == "no"
    assert bad["epochs_run"] == 1 and bad["stopped_early"] == "asha"
    assert good["best_ndcg@10"] > bad["best_ndcg@10"]
    # the first-rung column (epoch 1, reached by both): the stopped trial's equals its best
    assert bad["ndcg@10_epoch1"] == bad["best_ndcg@10"] and good["ndcg@10_epoch1"] <= good["best_ndcg@10"]
    assert good["ndcg@10_epoch1"] > bad["ndcg@10_epoch1"]
    assert summary["best"]["params"] == {"learning_rate": 1e-2}
    for name in ("results.csv", "results.md", "best.yaml", "best_test.json", "metric_vs_params.png",
                 "summary.json"):
        assert os.path.isfile(tmp / "out" / name) and os.path.isfile(tmp / "runs" / "asha" / name), name
    test = json.load(open(tmp / "out" / "best_test.json"))
    assert set(test["test"]) == {"hit@10", "hit@20", "ndcg@10", "ndcg@20"}
    # the reloaded best-epoch weights give back the validation score the trial reported
    assert test["valid"]["ndcg@10"] == pytest.approx(summary["best"]["valid_ndcg@10"], abs=1e-4)


@pytest.mark.slow  # a local Ray cluster
def test_best_yaml_reproduces_the_validation_score(asha_sweep, tmp_path):
    summary, tmp = asha_sweep
    best_yaml = str(tmp / "out" / "best.yaml")
    cfg = yaml.safe_load(open(best_yaml))
    assert cfg["learning_rate"] == 1e-2 and cfg["epochs"] == 4 and os.path.isabs(cfg["data_path"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the trial (cpus_per_trial=1): same float reductions
    try:
        result = run(model=cfg["model"], dataset=cfg["dataset"], config_file_list=[best_yaml],
                     config_dict={"checkpoint_dir": str(tmp_path), "use_gpu": False, "show_progress": False})
    finally:
        torch.set_num_threads(threads)
    assert result["best_valid_score"] == pytest.approx(summary["best"]["valid_ndcg@10"], abs=1e-4)


@pytest.mark.slow  # a local Ray cluster
def test_interrupted_sweep_resumes_without_rerunning_finished_trials(local_ray, tune_data, tmp_path):
    root, config_file = tune_data
    space = write_space(tmp_path / "space.yaml", "sae_k: {grid: [2, 3]}\n")
    builder = FakeBuilder()
    common = [f"--storage_path={tmp_path / 'runs'}", "--name=resume", "--verbose=0"]
    first = sweep.run_sweep(["--dataset=tiny", f"--space={space}", f"--config_files={config_file}",
                             "--max_epochs=3", "--grace_period=3", "--max_concurrent_trials=1", *common],
                            callbacks=[InterruptOnce()], intent_builder=builder)
    # each distinct k built once, before the trials, under <intent_root>/tiny/<tag>
    assert sorted(k for k, _ in builder.calls) == [2, 3]
    assert all(os.path.basename(d).startswith(f"k{k}-") for k, d in builder.calls)
    assert not first["finished"]
    done = [r for r in first["rows"] if r["status"] == "TERMINATED"]
    assert len(done) == 1 and done[0]["epochs_run"] == 3
    done_trial = done[0]["trial_id"]
    (done_dir,) = [tmp_path / "runs" / "resume" / d for d in os.listdir(tmp_path / "runs" / "resume")
                   if done_trial in d]
    lines_before = open(done_dir / "result.json").read()

    second = sweep.run_sweep(["--resume", *common], intent_builder=builder)
    assert second["finished"] and len(builder.calls) == 2  # no rebuild on resume
    rows = {r["trial_id"]: r for r in second["rows"]}
    assert len(rows) == 2 and all(r["epochs_run"] == 3 and r["status"] == "TERMINATED" for r in rows.values())
    assert open(done_dir / "result.json").read() == lines_before  # not rerun
    (other,) = [r for t, r in rows.items() if t != done_trial]
    assert other["resumed_from_epoch"] >= 1  # continued from its last saved checkpoint, not from scratch
    assert {r["sae_k"] for r in rows.values()} == {2, 3}
    best = yaml.safe_load(open(tmp_path / "runs" / "resume" / "best.yaml"))
    assert os.path.basename(best["intent_dir"]).startswith(f"k{best['sae_k']}-")


def test_one_at_a_time_design_varies_each_key_around_the_first_values(tmp_path):
    path = write_space(tmp_path / "oat.yaml", "design: one_at_a_time\nintents_retrieved: {grid: [5, 3, 10]}\n"
                                              "sae_k: {grid: [8, 16]}\nMAX_ITEM_LIST_LENGTH: 20\n")
    swept, fixed, design = sweep.load_space(path)
    assert design == "one_at_a_time" and fixed == {"MAX_ITEM_LIST_LENGTH": 20}
    points = sweep.one_at_a_time_points(swept)
    assert points == [{"intents_retrieved": 5, "sae_k": 8}, {"intents_retrieved": 3, "sae_k": 8},
                      {"intents_retrieved": 10, "sae_k": 8}, {"intents_retrieved": 5, "sae_k": 16}]
    # only the intent sets the points use are built (here both k; never a k the design skips)
    assert sweep.intent_combinations(swept, points) == [{"sae_k": 8}, {"sae_k": 16}]
    assert sweep.load_space(write_space(tmp_path / "g.yaml", "a: {grid: [1, 2]}\n"))[2] == "grid"
    with pytest.raises(ValueError, match="not a grid"):
        sweep.load_space(write_space(tmp_path / "bad.yaml", "design: one_at_a_time\nlr: {uniform: [0.1, 1]}\n"))
    with pytest.raises(ValueError, match="design"):
        sweep.load_space(write_space(tmp_path / "bad2.yaml", "design: latin\na: {grid: [1]}\n"))


@pytest.mark.slow  # a local Ray cluster
def test_a_one_at_a_time_sweep_runs_exactly_its_points(local_ray, tune_data, tmp_path):
    root, config_file = tune_data
    # sae_seed fixed: the intent sets get tags of their own (another test of this module builds k 2 and 3)
    space = write_space(tmp_path / "oat.yaml", "design: one_at_a_time\nsae_k: {grid: [2, 3]}\n"
                                               "intents_retrieved: {grid: [1, 2]}\nsae_seed: 7\n")
    common = ["--dataset=tiny", f"--space={space}", f"--config_files={config_file}", "--max_epochs=1",
              "--grace_period=1", "--max_concurrent_trials=1", f"--storage_path={tmp_path / 'runs'}",
              "--verbose=0", "--no_test", "--seed_spread=0.001", f"--out={tmp_path / 'out'}"]
    with pytest.raises(SystemExit, match="num_samples must be 1"):
        sweep.run_sweep([*common, "--num_samples=2", "--name=refused"], intent_builder=FakeBuilder())
    builder = FakeBuilder()
    summary = sweep.run_sweep([*common, "--name=oat"], intent_builder=builder)
    assert summary["finished"] and sorted(k for k, _ in builder.calls) == [2, 3]
    ran = sorted((r["sae_k"], r["intents_retrieved"]) for r in summary["rows"])
    assert ran == [(2, 1), (2, 2), (3, 1)]  # the centre, then each key alone: not the 2 x 2 grid
    assert os.path.isfile(tmp_path / "out" / "metric_vs_params.png")


def test_budget_finds_the_epoch_from_which_a_slow_starter_stays_ahead(tmp_path):
    """Hand-made histories: 'slow' trails 'fast' until epoch 4, then leads by far more than the seed spread."""
    import json

    from recbole_saerec.experiments.tune import budget

    runs = tmp_path / "runs"
    runs.mkdir()
    curves = {"fast": [0.30, 0.50, 0.60, 0.61, 0.61, 0.61], "slow": [0.10, 0.30, 0.50, 0.65, 0.70, 0.70]}
    for variant, curve in curves.items():
        for seed, jitter in ((1, 0.0), (2, 0.002)):
            record = {"variant": variant, "seed": seed, "status": "ok",
                      "history": [{"epoch": e, "valid_score": v + jitter} for e, v in enumerate(curve)]}
            (runs / f"{variant}__seed{seed}.json").write_text(json.dumps(record))
    rows = budget.epoch_stats(budget.curves(budget.load_records(str(runs), ["fast", "slow"])))
    assert rows[0][1]["fast"][0] == pytest.approx(0.301) and rows[0][1]["fast"][1] == pytest.approx(0.0014142, abs=1e-6)
    assert budget.safe_rungs(rows) == {("slow", "fast"): 4}  # an ASHA rung before epoch 4 would stop 'slow'
    with pytest.raises(SystemExit, match="fewer than two seeds"):
        budget.main([f"--runs={runs}", "--variants=fast,absent"])
