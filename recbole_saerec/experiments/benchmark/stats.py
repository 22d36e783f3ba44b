"""Per-user metrics (RecBole's own formulas) and the paired significance tests over seeds and users."""
import numpy as np

from recbole_saerec.metrics import hit_ndcg_per_user

from recbole_saerec.experiments.benchmark.records import load_per_user


def per_user_from_topk(topk_matrix, ks):
    """Per-user Hit@K and NDCG@K from RecBole's `rec.topk` rows (top-K hit flags + number of positives)."""
    topk_matrix = np.asarray(topk_matrix)
    return hit_ndcg_per_user(topk_matrix[:, :-1], topk_matrix[:, -1], ks)


def metric_keys(records):
    keys = list(records[0]["test_result"]) if records else []
    kinds = [k.split("@")[0] for k in keys]
    return sorted(keys, key=lambda k: (int(k.split("@")[1]), kinds.index(k.split("@")[0])))


def summarize(records):
    """variant -> {metric: (mean, std, n)}, std = sample std (ddof=1; 0 with one seed)."""
    summary = {}
    for metric in metric_keys(records):
        for r in records:
            summary.setdefault(r["variant"], {})
        for variant in summary:
            values = [r["test_result"][metric] for r in records if r["variant"] == variant]
            std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            summary[variant][metric] = (float(np.mean(values)), std, len(values))
    return summary


def paired_seed_test(ours, theirs):
    """Paired t-test over seeds: lists of (seed, value). Returns dict with n, mean diff, t, p."""
    from scipy import stats

    a, b = dict(ours), dict(theirs)
    common = sorted(set(a) & set(b))
    x, y = np.array([a[s] for s in common]), np.array([b[s] for s in common])
    out = {"n": len(common), "mean_diff": float(np.mean(x - y)) if common else float("nan"),
           "t": float("nan"), "p": float("nan")}
    if len(common) >= 2 and np.std(x - y) > 0:
        res = stats.ttest_rel(x, y)
        out.update(t=float(res.statistic), p=float(res.pvalue))
    return out


def paired_user_test(ours, theirs):
    """Per-user paired tests: `ours`/`theirs` map user token -> value (already averaged over seeds).

    Paired t-test (scipy ttest_rel) and Wilcoxon signed-rank (zero differences dropped,
    scipy's default) over the users both models were evaluated on.
    """
    from scipy import stats

    users = sorted(set(ours) & set(theirs))
    x, y = np.array([ours[u] for u in users]), np.array([theirs[u] for u in users])
    d = x - y
    out = {"n_users": len(users), "mean_diff": float(d.mean()) if len(d) else float("nan"),
           "t": float("nan"), "p_t": float("nan"), "ci95": [float("nan"), float("nan")], "p_wilcoxon": float("nan")}
    if len(d) >= 2 and d.std() > 0:
        res = stats.ttest_rel(x, y)
        half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
        out.update(t=float(res.statistic), p_t=float(res.pvalue), ci95=[float(d.mean() - half), float(d.mean() + half)])
        if np.count_nonzero(d) > 0:
            out["p_wilcoxon"] = float(stats.wilcoxon(x, y).pvalue)
    return out


def seed_averaged_per_user(runs_dir, records, metric):
    """user token -> mean over this variant's seeds of its per-user metric."""
    total, count = {}, {}
    for r in records:
        data = load_per_user(runs_dir, r["run_id"])
        if data is None:
            continue
        for user, value in zip(data["users"].tolist(), data[metric].tolist()):
            total[user] = total.get(user, 0.0) + value
            count[user] = count.get(user, 0) + 1
    return {u: total[u] / count[u] for u in total}


def compare(runs_dir, records, ours, theirs, metric, summary=None):
    """Variant `ours` against variant `theirs` on one test metric: seed-paired and user-paired tests."""
    summary = summary or summarize(records)
    mine = [r for r in records if r["variant"] == ours]
    other = [r for r in records if r["variant"] == theirs]
    seed = paired_seed_test([(r["seed"], r["test_result"][metric]) for r in mine],
                            [(r["seed"], r["test_result"][metric]) for r in other])
    user = paired_user_test(seed_averaged_per_user(runs_dir, mine, metric),
                            seed_averaged_per_user(runs_dir, other, metric))
    m_ours, m_theirs = summary[ours][metric][0], summary[theirs][metric][0]
    return {"metric": metric, "ours": ours, "theirs": theirs, "ours_mean": m_ours, "theirs_mean": m_theirs,
            "rel_gain": (m_ours - m_theirs) / m_theirs if m_theirs else float("nan"),
            "seed_n": seed["n"], "seed_t": seed["t"], "seed_p": seed["p"],
            "user_n": user["n_users"], "user_mean_diff": user["mean_diff"], "user_ci95": user["ci95"],
            "user_t": user["t"], "user_p_t": user["p_t"], "user_p_wilcoxon": user["p_wilcoxon"]}


def significance(runs_dir, records, ours="SAERec"):
    """SAERec against the best BASELINE (by mean test value) per metric: seed-paired and user-paired."""
    summary = summarize(records)
    roles = {r["variant"]: r.get("role", "baseline") for r in records}
    baselines = [v for v in summary if roles.get(v) == "baseline" and v != ours]
    if ours not in summary or not baselines:
        return []
    rows = []
    for metric in metric_keys(records):
        best = max(baselines, key=lambda v: summary[v][metric][0])
        row = compare(runs_dir, records, ours, best, metric, summary)
        # the keys the tables and significance.json have always used for this comparison
        row["best_baseline"], row["baseline_mean"] = row.pop("theirs"), row.pop("theirs_mean")
        rows.append(row)
    return rows


def against_references(runs_dir, records, references):
    """Each variant against each reference it names (registry key `against`: variant -> list of
    names), where both have runs: what one change (a feature added, a component removed) does."""
    summary = summarize(records)
    return [compare(runs_dir, records, variant, ref, metric, summary)
            for variant, refs in references.items() if variant in summary
            for ref in refs if ref in summary
            for metric in metric_keys(records)]
