"""What the speed benchmark measures with: peak memory, and the alternated train / eval / epoch timings."""
import contextlib
import statistics
import threading
import time

import torch

# ----------------------------------------------------------------------------- memory
class PeakRSS:
    """Peak resident memory of this process during a `with` block (CPU), sampled every 5 ms."""

    def __init__(self, interval=0.005):
        import psutil

        self.proc = psutil.Process()
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self):
        self.start = self.proc.memory_info().rss
        self.peak = self.start
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


@contextlib.contextmanager
def peak_memory(device, record):
    """record['peak_mb'] (RSS on CPU, max allocated on GPU) and record['delta_mb'] (peak - start)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        yield
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        with PeakRSS() as rss:
            yield
        start, peak = rss.start, rss.peak
    record["peak_mb"] = max(record.get("peak_mb", 0), peak / 2**20)
    record["delta_mb"] = max(record.get("delta_mb", 0), (peak - start) / 2**20)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def median(xs):
    return statistics.median(xs) if xs else float("nan")


# ----------------------------------------------------------------------------- timing
def train_step(model, optimizer, batch):
    optimizer.zero_grad(set_to_none=True)
    loss = model.calculate_loss(batch)
    loss.backward()
    optimizer.step()
    return loss


def _write_profile(prof, path, device, by_shape=False):
    key = "cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    with open(path, "w") as f:
        f.write(prof.key_averages().table(sort_by=key, row_limit=40))
        if by_shape:
            f.write("\n\nby input shape:\n")
            f.write(prof.key_averages(group_by_input_shape=True).table(sort_by=key, row_limit=30))


def _activities(device):
    from torch.profiler import ProfilerActivity

    return [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])


def profile_eval(trainer, eval_data, path, device):
    from torch.profiler import profile

    with profile(activities=_activities(device)) as prof:
        trainer.evaluate(eval_data, load_best_model=False, show_progress=False)
        sync(device)
    _write_profile(prof, path, device)


def profile_steps(model, optimizer, batches, path, device, n=5):
    from torch.profiler import profile

    model.train()
    with profile(activities=_activities(device), record_shapes=True) as prof:
        for batch in batches[:n]:
            train_step(model, optimizer, batch)
        sync(device)
    _write_profile(prof, path, device, by_shape=True)


def new_records(models):
    return {name: {"step_s": [], "step_cpu_s": [], "eval_s": [], "eval_cpu_s": [], "mem_train": {}, "mem_eval": {}}
            for name in models}


def time_epoch_setup(built, records, train_data):
    """A model's once-per-epoch work before training (``before_train_epoch``: ICLRec / ICSRec cluster
    their training samples), run once and timed; then its steps include the terms that need it."""
    for name, b in built.items():
        hook = getattr(b["model"], "before_train_epoch", None)
        if hook is not None:
            t0 = time.perf_counter()
            hook(train_data, 0)
            records[name]["setup_s"] = time.perf_counter() - t0


def warm_up(built, records, batches, device):
    """Untimed steps per model (include compilation when asked); their wall time goes to the JSON."""
    for name, b in built.items():
        b["model"].train()
        t0 = time.perf_counter()
        for batch in batches:
            train_step(b["model"], b["optimizer"], batch)
        sync(device)
        records[name]["warmup_s"] = time.perf_counter() - t0


def time_train(built, records, models, timed, rounds, device):
    """Each round runs every model over the same batches; the order flips every round."""
    for r in range(rounds):
        for name in (models if r % 2 == 0 else models[::-1]):
            b, rec = built[name], records[name]
            b["model"].train()
            with peak_memory(device, rec["mem_train"]):
                for batch in timed:
                    t0, c0 = time.perf_counter(), time.process_time()
                    train_step(b["model"], b["optimizer"], batch)
                    sync(device)
                    rec["step_s"].append(time.perf_counter() - t0)
                    rec["step_cpu_s"].append(time.process_time() - c0)
            print(f"[bench] round {r + 1} {name:7s} train: median {median(rec['step_s'][-len(timed):]) * 1e3:.0f} "
                  f"ms/step wall, {median(rec['step_cpu_s'][-len(timed):]) * 1e3:.0f} ms/step CPU", flush=True)


def time_eval(built, records, models, test_data, rounds, device):
    """Full-sort evaluation of ALL test users through RecBole's Trainer.evaluate, alternating the same way."""
    for r in range(rounds):
        for name in (models if r % 2 == 0 else models[::-1]):
            b, rec = built[name], records[name]
            with peak_memory(device, rec["mem_eval"]):
                t0, c0 = time.perf_counter(), time.process_time()
                result = b["trainer"].evaluate(test_data, load_best_model=False, show_progress=False)
                sync(device)
                rec["eval_s"].append(time.perf_counter() - t0)
                rec["eval_cpu_s"].append(time.process_time() - c0)
            rec["eval_result"] = {k: round(float(v), 4) for k, v in result.items()}
            print(f"[bench] round {r + 1} {name:7s} eval : {rec['eval_s'][-1]:.2f} s wall, "
                  f"{rec['eval_cpu_s'][-1]:.2f} s CPU", flush=True)


def time_full_epoch(built, records, train_data, device):
    for name, b in built.items():
        b["model"].train()
        t0 = time.perf_counter()
        for batch in train_data:
            train_step(b["model"], b["optimizer"], batch.to(device))
        sync(device)
        records[name]["full_epoch_s"] = time.perf_counter() - t0
        print(f"[bench] {name} full epoch: {records[name]['full_epoch_s']:.1f} s", flush=True)
