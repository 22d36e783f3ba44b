"""How many epochs a sweep must give a trial before ASHA may judge it: read from converged runs.

    python -m recbole_saerec.experiments.tune.budget --runs=docs/results/beauty-converged/runs \\
        --variants=SAERec,SAERec-lr1e-3

Each variant needs several seeds of a converged benchmark run (their per-epoch VALID history).
Per epoch it prints every variant's best-so-far VALID score (what ASHA compares at a rung) as
mean and standard deviation over seeds, then, per pair of variants next to each other in the
converged order, the first epoch from which that order holds at every later epoch by more than the
standard deviation of a single-seed difference (the comparison ASHA makes): a grace period
shorter than that can stop the configuration that would have won.
"""
import argparse
import statistics
import sys

from recbole_saerec.experiments.benchmark.records import load_records


def best_so_far(history):
    out, best = [], float("-inf")
    for entry in history:
        best = max(best, entry["valid_score"])
        out.append(best)
    return out


def curves(records):
    """{variant: [best-so-far curve per seed]} (each curve carried flat past its run's last epoch)."""
    out = {}
    for record in records:
        out.setdefault(record["variant"], []).append(best_so_far(record["history"]))
    longest = max(len(c) for cs in out.values() for c in cs)
    return {v: [c + [c[-1]] * (longest - len(c)) for c in cs] for v, cs in out.items()}


def epoch_stats(runs):
    """[(epoch, {variant: (mean, std)})], epochs counted from 1."""
    n = len(next(iter(runs.values()))[0])
    rows = []
    for e in range(n):
        rows.append((e + 1, {v: (statistics.mean(c[e] for c in cs),
                                 statistics.stdev(c[e] for c in cs) if len(cs) > 1 else 0.0)
                             for v, cs in runs.items()}))
    return rows


def difference_std(stats, a, b):
    """Std of the difference of two single-seed figures (what ASHA compares): sqrt(std_a^2 + std_b^2)."""
    return (stats[a][1] ** 2 + stats[b][1] ** 2) ** 0.5


def safe_rungs(rows):
    """Per neighbouring pair in the converged order, the first epoch from which that order holds by more
    than the std of a single-seed difference, at every later epoch (None: the pair ends within it)."""
    final = rows[-1][1]
    variants = sorted(final, key=lambda v: -final[v][0])
    out = {}
    for a, b in zip(variants, variants[1:]):
        safe = None
        for epoch, stats in reversed(rows):
            if stats[a][0] - stats[b][0] <= difference_std(stats, a, b):
                break
            safe = epoch
        out[(a, b)] = safe
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m recbole_saerec.experiments.tune.budget", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", required=True, help="a benchmark results folder's runs/ (the per-seed records)")
    p.add_argument("--variants", required=True, help="comma-separated variants, each with two or more seeds")
    p.add_argument("--every", type=int, default=5, help="print every n-th epoch (default %(default)s)")
    args = p.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    runs = curves(load_records(args.runs, variants))
    thin = sorted(set(variants) - {v for v, cs in runs.items() if len(cs) > 1})
    if thin:
        raise SystemExit(f"error: {', '.join(thin)}: fewer than two seeds in {args.runs}; a spread needs several.")
    rows = epoch_stats(runs)
    print("epoch  " + "  ".join(f"{v:>24}" for v in variants) + "   (best-so-far VALID: mean ± std over seeds)")
    for epoch, stats in rows:
        if epoch % args.every == 0 or epoch == 1 or epoch == len(rows):
            print(f"{epoch:5d}  " + "  ".join(f"{stats[v][0]:>15.4f} ± {stats[v][1]:.4f}" for v in variants))
    spread = statistics.mean(rows[-1][1][v][1] for v in variants)
    print(f"seed std at convergence (mean over variants): {spread:.4f}")
    for (a, b), safe in safe_rungs(rows).items():
        gap = rows[-1][1][a][0] - rows[-1][1][b][0]
        print(f"{a} over {b} (converged gap {gap:.4f}): holds by more than the single-seed difference's std "
              f"from epoch {safe}" if safe else f"{a} over {b} (converged gap {gap:.4f}): within the spread")
    return 0


if __name__ == "__main__":
    sys.exit(main())
