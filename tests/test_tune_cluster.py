"""Sweeps past one machine: a real two-node Ray cluster, and the GPUs Ray assigns to trials.

`test_sweep_on_a_two_node_cluster`: `ray start --head` and `ray start --address=...` on
127.0.0.1 (one CPU each, their own temp dir and ports), then `python -m recbole_saerec.experiments.tune
--address=...` as a separate process, with storage every node sees. While the sweep runs,
the test SIGKILLs the trial process on the WORKER node after its first report; Tune's
FailureConfig restarts it from its last checkpoint. Asserts: trials reported from both nodes
(node ids in the results), the killed trial finished all epochs, resumed from its checkpoint.
The cluster's processes are stopped by process group whatever happens (never `ray stop`,
which would stop every Ray on the machine).

`test_trials_keep_the_gpu_ray_assigns`: local Ray told it has 2 GPUs (a logical resource,
no GPU needed), two trials with one GPU each: Ray sets CUDA_VISIBLE_DEVICES to 0 and 1; each
trial's RecBole gpu_id and the variable torch saw must be the assigned one, although the
config says gpu_id 0.

Run the cluster sweep by hand (writes the table committed in docs/results/tune-cluster/):
    python tests/test_tune_cluster.py docs/results/tune-cluster
"""
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_tune import write_tune_inputs  # noqa: E402

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # Ray clusters started and stopped by the tests
RAY_CLI = os.path.join(os.path.dirname(sys.executable), "ray")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_USERS = 300      # epochs long enough (~1 s) for the test to see a report before the trial ends
MAX_EPOCHS = 5
SWEEP_TIMEOUT_S = 300


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session_pids(sid):
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            with contextlib.suppress(OSError):
                if os.getsid(int(d)) == sid:
                    pids.append(int(d))
    return pids


class LocalCluster:
    """`ray start --block` per node, each in its own process session, so that stopping is exact."""

    def __init__(self, workdir):
        self.workdir = workdir
        # a short path: Ray's unix sockets live under it (108-byte limit)
        self.temp_dir = tempfile.mkdtemp(prefix="rayc-", dir="/tmp")
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.procs = []
        # Ray 2.5x+ turns token authentication on for a head that finds ~/.ray/auth_token; every node
        # and driver then needs the token. The cluster gets its own (never the user's file).
        self.env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
        self.env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), RAY_worker_niceness="0")

    def _start(self, name, *args):
        log = open(os.path.join(self.workdir, f"ray-{name}.log"), "w")
        cmd = [RAY_CLI, "start", "--block", f"--node-name={name}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
               "--num-gpus=0", "--disable-usage-stats", f"--dashboard-agent-listen-port={free_port()}",
               f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}", *args]
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        self.procs.append((name, proc, log))
        return proc

    def start(self, timeout=120):
        self._start("head", "--head", f"--port={self.port}", f"--temp-dir={self.temp_dir}",
                    "--include-dashboard=false", f"--ray-client-server-port={free_port()}")
        self._wait_port(timeout)
        self._start("worker", f"--address={self.address}")
        return self.nodes(expect=2, timeout=timeout)

    def _wait_port(self, timeout):
        end = time.time() + timeout
        while time.time() < end:
            self._check_alive()
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return
            time.sleep(0.5)
        raise TimeoutError(f"the Ray head did not open port {self.port} in {timeout}s: {self.log('head')}")

    def _check_alive(self):
        for name, proc, _ in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"`ray start` ({name}) exited with {proc.returncode}: {self.log(name)}")

    def log(self, name):
        with open(os.path.join(self.workdir, f"ray-{name}.log")) as f:
            return f.read()[-3000:]

    def nodes(self, expect, timeout):
        """{node name: node id} of the alive nodes, once `expect` of them are there (a driver of its own)."""
        code = ("import json, sys, time, ray\n"
                f"ray.init(address='{self.address}', log_to_driver=False)\n"
                f"end = time.time() + {timeout}\n"
                "while True:\n"
                "    alive = {n['NodeName']: n['NodeID'] for n in ray.nodes() if n['Alive']}\n"
                f"    if len(alive) >= {expect} or time.time() > end: break\n"
                "    time.sleep(0.5)\n"
                "print('NODES=' + json.dumps(alive))\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout + 60,
                             env=self.env)
        line = [x for x in out.stdout.splitlines() if x.startswith("NODES=")]
        if not line:
            raise RuntimeError(f"could not list the cluster's nodes: {out.stderr[-2000:]}")
        alive = json.loads(line[0][len("NODES="):])
        if len(alive) < expect:
            raise TimeoutError(f"{len(alive)} of {expect} nodes joined: {alive}; worker log: {self.log('worker')}")
        return alive

    def stop(self):
        """SIGTERM each node's `ray start --block` (it stops what it started), then SIGKILL its session."""
        for _, proc, _ in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for _, proc, log in reversed(self.procs):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=20)
            for pid in _session_pids(proc.pid):  # daemons and workers left in the node's session
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait(timeout=10)
            log.close()


def write_sweep_inputs(root):
    config_file = write_tune_inputs(root, n_users=N_USERS, stopping_step=10)
    space = os.path.join(root, "space.yaml")
    with open(space, "w") as f:
        f.write("learning_rate: {grid: [1.0e-2, 3.0e-3]}\n")
    return config_file, space


def _results(trial_dirs):
    """Every report written so far: (trial dir, result dict)."""
    out = []
    for d in trial_dirs:
        with contextlib.suppress(OSError):
            with open(os.path.join(d, "result.json")) as f:
                out += [(d, json.loads(line)) for line in f if line.strip()]
    return out


def run_cluster_sweep(workdir, out):
    """Cluster up, sweep through the CLI, kill the worker's trial once, cluster down. Returns facts."""
    config_file, space = write_sweep_inputs(workdir)
    storage = os.path.join(workdir, "storage")  # one path every node sees: the shared storage
    cluster = LocalCluster(workdir)
    try:
        t0 = time.time()
        node_ids = cluster.start()
        cluster_start_s = time.time() - t0
        cmd = [sys.executable, "-m", "recbole_saerec.experiments.tune", f"--address={cluster.address}", "--dataset=tiny",
               f"--space={space}", f"--config_files={config_file}", f"--max_epochs={MAX_EPOCHS}",
               f"--grace_period={MAX_EPOCHS}", "--cpus_per_trial=1", f"--storage_path={storage}", "--name=cluster",
               f"--out={out}", "--verbose=0"]
        env = dict(cluster.env, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=REPO)
        driver_log = open(os.path.join(workdir, "driver.log"), "w")
        t0 = time.time()
        driver = subprocess.Popen(cmd, cwd=workdir, stdout=driver_log, stderr=subprocess.STDOUT, env=env)
        killed = None
        exp = os.path.join(storage, "cluster")
        try:
            while driver.poll() is None:
                if time.time() - t0 > SWEEP_TIMEOUT_S:
                    raise TimeoutError(f"the sweep ran past {SWEEP_TIMEOUT_S}s")
                if killed is None and os.path.isdir(exp):
                    dirs = [os.path.join(exp, d) for d in os.listdir(exp) if os.path.isdir(os.path.join(exp, d))]
                    for d, r in _results(dirs):
                        if r.get("node_id") == node_ids["worker"] and r["epoch"] < MAX_EPOCHS - 1:
                            os.kill(r["pid"], signal.SIGKILL)  # the trial process on the worker node dies
                            killed = {"trial_id": r["trial_id"], "pid": r["pid"], "after_epoch": r["epoch"]}
                            break
                time.sleep(0.2)
        finally:
            if driver.poll() is None:
                driver.kill()
            driver.wait()
            driver_log.close()
        sweep_s = time.time() - t0
        with open(os.path.join(workdir, "driver.log")) as f:
            driver_out = f.read()
    finally:
        cluster.stop()
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    return {"returncode": driver.returncode, "node_ids": node_ids, "killed": killed, "summary": summary,
            "driver_log": driver_out[-4000:], "cluster_start_s": round(cluster_start_s, 1),
            "sweep_s": round(sweep_s, 1), "command": " ".join(cmd[1:]), "cluster": cluster}


def _ray_start_works():
    return os.path.isfile(RAY_CLI) and os.access(RAY_CLI, os.X_OK)


def test_sweep_on_a_two_node_cluster(tmp_path):
    if not _ray_start_works():
        pytest.skip(f"no `ray` command next to {sys.executable}: a cluster cannot be started here")
    try:
        facts = run_cluster_sweep(str(tmp_path), str(tmp_path / "out"))
    except RuntimeError as e:
        if "`ray start`" in str(e):
            pytest.skip(f"`ray start` cannot run here: {e}")
        raise
    assert facts["returncode"] == 0, facts["driver_log"]
    short = {name: nid[:8] for name, nid in facts["node_ids"].items()}
    rows = facts["summary"]["rows"]
    assert len(rows) == 2 and all(r["status"] == "TERMINATED" for r in rows), rows
    seen = {n for r in rows for n in r["nodes"].split(">")}
    assert short["worker"] in seen, f"no trial ran on the worker node {short}: {rows}"
    assert short["head"] in seen, f"no trial ran on the head node {short}: {rows}"
    # the trial killed on the worker was restarted by Tune (FailureConfig) from its checkpoint and finished
    assert facts["killed"] is not None, "the test never saw a worker trial's report in time to kill it"
    (victim,) = [r for r in rows if r["trial_id"] == facts["killed"]["trial_id"]]
    assert victim["epochs_run"] == MAX_EPOCHS and victim["stopped_early"] == "no"
    assert victim["resumed_from_epoch"] >= 1, victim
    assert {n["node"] for n in facts["summary"]["nodes"]} == set(short.values())
    # nothing of the cluster is left running
    for _, proc, _ in facts["cluster"].procs:
        assert proc.poll() is not None and not _session_pids(proc.pid)


def test_trials_keep_the_gpu_ray_assigns(tmp_path, monkeypatch):
    """Two trials x 1 logical GPU of 2: each trial's RecBole gpu_id is the GPU Ray gave it."""
    from recbole_saerec.experiments import tune as sweep

    # earlier CPU runs in this process leave CUDA_VISIBLE_DEVICES="" (RecBole writes gpu_id there),
    # and Ray refuses to announce GPUs that the variable hides
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    config_file, space = write_sweep_inputs(str(tmp_path))
    with open(config_file) as f:
        cfg = yaml.safe_load(f)
    cfg.update(use_gpu=True, gpu_id="0")  # RecBole's default: every trial would move to GPU 0
    with open(config_file, "w") as f:
        yaml.safe_dump(cfg, f)
    monkeypatch.setenv("RAY_worker_niceness", "0")  # trial workers at normal priority (test_tune.local_ray)
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = sweep.run_sweep(["--dataset=tiny", f"--space={space}", f"--config_files={config_file}",
                                   "--max_epochs=1", "--grace_period=1", "--cpus_per_trial=1", "--gpus_per_trial=1",
                                   f"--storage_path={tmp_path / 'runs'}", "--name=gpus", "--verbose=0", "--no_test"])
    finally:
        ray.shutdown()
    assert summary["finished"]
    reports = []
    for d in os.listdir(tmp_path / "runs" / "gpus"):
        reports += [r for _, r in _results([str(tmp_path / "runs" / "gpus" / d)])]
    assert len(reports) == 2
    for r in reports:
        assert r["ray_gpu_ids"] in ("0", "1")
        assert r["cuda_visible_devices"] == r["ray_gpu_ids"] == r["recbole_gpu_id"], r
    assert {r["ray_gpu_ids"] for r in reports} == {"0", "1"}  # both GPUs used, each kept
    assert sorted(row["gpus"] for row in summary["rows"]) == ["0", "1"]


if __name__ == "__main__":
    out_dir = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "docs/results/tune-cluster")
    with tempfile.TemporaryDirectory(prefix="tune-cluster-") as work:
        facts = run_cluster_sweep(work, out_dir)
    facts.pop("cluster")
    with open(os.path.join(out_dir, "cluster_run.json"), "w") as f:
        json.dump(facts, f, indent=1, default=str)
    print(json.dumps({k: facts[k] for k in ("returncode", "node_ids", "killed", "cluster_start_s", "sweep_s")},
                     indent=1))
