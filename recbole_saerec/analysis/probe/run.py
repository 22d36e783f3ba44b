"""The probe from checkpoint to outputs, one function per step of the package docstring (1-6).

The steps share one seeded ``numpy`` generator, drawn from in one fixed order (held-out users,
base-rate sample, negatives per latent): the same seed gives the same concepts.
"""
import math
import os
import time
from logging import getLogger

import numpy as np
import torch

from recbole_saerec.analysis.probe.adapters import make_adapter
from recbole_saerec.analysis.probe.autoencoders import fit_autoencoders, fvu, sae_transform
from recbole_saerec.analysis.probe.cases import (collect_cases, evaluate, item_text_array, load_probed,
                                                 masked_scores, test_batches)
from recbole_saerec.analysis.probe.concepts import (concept_masks, latent_segments, lm_concepts, presence,
                                                    similarity, sparse_codes, term_concepts, top_items,
                                                    top_unique_users, verify_concept)
from recbole_saerec.analysis.probe.report import write_outputs

DEFAULT_SCALES = (-10, -5, -1, 0, 1, 2, 5, 10)


def probe(checkpoint, out=None, latents_mult=16, n_latents=None, k=8, seed=2020, sae_steps=None,
          sae_batch_size=1024, tied=False, n_top=20, n_terms=3, min_support=0.25, n_verify=20, min_verify=5,
          heldout=0.2, tune_latents=10, scales=DEFAULT_SCALES, max_tune_cases=500, data_path=None, text_fields=None,
          max_cases=None, lm_concept=False, judge_options=None, batch_size=1024, progress=False, command=None,
          trust=False):
    """Run the whole probe; write the outputs to ``out`` and return the metrics dict."""
    from recbole.utils import init_seed

    t0 = time.time()
    timings = {}
    config, dataset, train_data, test_data, model, ckpt_info = load_probed(checkpoint, data_path, judge_options,
                                                                            trust=trust)
    init_seed(seed, True)
    adapter = make_adapter(model, config)
    texts = item_text_array(config, dataset, text_fields)
    out = out or os.path.join("saved", f"probe-{config['dataset']}-{config['model']}")
    os.makedirs(out, exist_ok=True)
    timings["load"] = time.time() - t0

    t = time.time()  # 1. representation over the training cases, and the model's top-10 for each
    cases = collect(adapter, train_data, test_data, batch_size, max_cases, seed)
    reps, users, tops = cases["reps"], cases["users"], cases["tops"]
    timings["collect"] = time.time() - t
    n, d = reps.shape
    m = int(n_latents or latents_mult * d)
    print(f"[probe] {config['model']} on {config['dataset']}: {n} training cases, d={d}, {len(cases['test_reps'])} "
          f"test cases; SAE {m} latents, k={k}")

    t = time.time()  # 2. SAE and dense AE on the same data
    sae, sae_metrics, frequency, dense, dense_metrics = fit_autoencoders(reps, m, k, tied, sae_batch_size, sae_steps,
                                                                         seed, progress)
    timings["train_autoencoders"] = time.time() - t

    t = time.time()  # 3. fit / held-out users; concepts from fit cases, verified on held-out ones
    rng = np.random.default_rng(seed)
    held = heldout_mask(users, heldout, rng)
    rows, words, masks = concept_rows(sae, reps, users, tops, texts, held, frequency, rng, m, n_top=n_top,
                                      n_terms=n_terms, min_support=min_support, n_verify=n_verify,
                                      min_verify=min_verify)
    timings["concepts"] = time.time() - t

    t = time.time()  # 4. similarity: SAE latents vs raw dimensions
    sim = unit_similarity(cases["item_emb"], rows, reps, users, tops, held, n_top)
    timings["similarity"] = time.time() - t

    t = time.time()  # 5. recommendation quality with the representation replaced
    quality = reconstruction_quality(adapter, cases["batches"], cases["test_reps"], sae, dense)
    timings["quality"] = time.time() - t

    t = time.time()  # 6. targeted tuning on the test cases where the latent is active
    tuned, tuning_rows, tuning_summary = targeted_tuning(adapter, cases["batches"], cases["test_reps"], sae, rows,
                                                         masks, m, scales, tune_latents, max_tune_cases, min_verify)
    timings["tuning"] = time.time() - t

    if lm_concept and rows:
        for r, lm in zip(rows, lm_concepts(config, words, cache_path=os.path.join(out, "judge_cache.jsonl"))):
            r.update(lm)

    options = {"latents_mult": latents_mult, "n_latents": m, "k": k, "seed": seed, "sae_steps": sae_steps,
               "sae_batch_size": sae_batch_size, "tied": tied, "n_top": n_top, "n_terms": n_terms,
               "min_support": min_support, "n_verify": n_verify, "min_verify": min_verify, "heldout": heldout,
               "tune_latents": tune_latents, "scales": list(scales), "max_tune_cases": max_tune_cases,
               "max_cases": max_cases}
    metrics = probe_metrics(config, adapter, ckpt_info, command, options, cases, held, rows, sae_metrics,
                            dense_metrics, sim, quality, tuned, tuning_summary)
    metrics["timings_s"] = {k_: round(v, 1) for k_, v in timings.items()} | {"total": round(time.time() - t0, 1)}
    write_outputs(out, rows, metrics, tuning_rows)
    return metrics


def collect(adapter, train_data, test_data, batch_size, max_cases, seed):
    """Step 1: training cases, test batches, the item matrix, and whether scores = rep @ items^T."""
    reps, users, tops = collect_cases(adapter, train_data, batch_size, max_cases=max_cases, seed=seed)
    batches, test_reps = test_batches(adapter, test_data)
    first = batches[0][0]
    item_emb = adapter.item_matrix(first)
    s0, r0 = adapter.run(first)
    scoring_check = bool(torch.allclose(s0, r0 @ item_emb.T, rtol=1e-4, atol=1e-4))
    if not scoring_check:
        getLogger().warning("probe: scores != representation @ item_matrix.T; similarity uses the item matrix anyway")
    return {"reps": reps, "users": users, "tops": tops, "batches": batches, "test_reps": test_reps,
            "item_emb": item_emb, "scoring_check": scoring_check}


def heldout_mask(users, heldout, rng):
    """[n] bool: the case's user is in the held-out share (seeded, by user, not by case)."""
    uniq = np.unique(users)
    held_users = set(rng.choice(uniq, max(1, int(round(heldout * len(uniq)))), replace=False).tolist())
    return np.array([u in held_users for u in users.tolist()])


def concept_rows(sae, reps, users, tops, texts, held, frequency, rng, m, n_top, n_terms, min_support, n_verify,
                 min_verify):
    """Step 3: one row per latent with enough fit cases: its terms, base rate and verification.

    Returns (rows, words: up to 10 TF-IDF words per row for the LM concept, masks [rows, n_items]).
    """
    case, lat, _act = sparse_codes(sae, reps)
    lo, hi = latent_segments(lat, m)
    fit_top, held_pos = {}, {}
    for j in range(m):
        cs = case[lo[j]:hi[j]]
        fit_top[j] = top_unique_users(cs[~held[cs]], users, n_top)
        held_pos[j] = top_unique_users(cs[held[cs]], users, n_verify)
    live = [j for j in range(m) if len(fit_top[j]) >= min_verify]
    docs = [" ".join(texts[tops[fit_top[j]].reshape(-1)]) for j in live]
    words, vec = (term_concepts(docs, max(n_terms, 10), texts, [tops[fit_top[j]] for j in live], min_support)
                  if live else ([], None))
    terms = [w[:n_terms] for w in words]
    masks = concept_masks(texts, vec, terms) if live else np.zeros((0, len(texts)), bool)
    fit_idx = np.flatnonzero(~held)
    base_sample = fit_idx if len(fit_idx) <= 20000 else rng.choice(fit_idx, 20000, replace=False)
    held_idx = np.flatnonzero(held)
    rows = []
    for c, j in enumerate(live):
        base_rate = float(presence(masks[c], tops[base_sample]).mean())
        pos = held_pos[j]
        if len(pos) >= min_verify and terms[c]:
            off = held_idx[~np.isin(held_idx, case[lo[j]:hi[j]])]
            neg = rng.choice(off, min(len(pos), len(off)), replace=False) if len(off) else np.zeros(0, int)
            ver = verify_concept(masks[c], tops[pos], tops[neg], base_rate)
        else:
            ver = {"confidence": float("nan"), "tp": 0, "tn": 0, "n_pos": len(pos), "n_neg": 0}
        rows.append(_concept_row(j, frequency, fit_top[j], terms[c], masks[c], base_rate, ver, tops, texts,
                                 min_verify))
    return rows, words, masks


def _concept_row(j, frequency, fit_top, terms, mask, base_rate, ver, tops, texts, min_verify):
    ti = top_items(tops[fit_top])
    return {
        "latent": j, "frequency": round(float(frequency[j]), 5), "n_top_cases": int(len(fit_top)),
        "terms": terms, "item_share": round(float(mask.mean()), 4), "base_rate": round(base_rate, 4),
        "confidence": None if math.isnan(ver["confidence"]) else round(ver["confidence"], 4),
        "n_pos": ver["n_pos"], "n_neg": ver["n_neg"], "tp": ver["tp"], "tn": ver["tn"],
        "verified": bool(ver["n_pos"] >= min_verify and ver["confidence"] >= 0.8),
        "top_items": [str(texts[i])[:80] for i in ti[:5]], "_items": ti,
    }


def unit_similarity(item_emb, rows, reps, users, tops, held, n_top):
    """Step 4: intra/inter cosine of the units' top items, SAE latents vs raw dimensions (sets row intra_sim)."""
    intra, inter, per_unit = similarity(item_emb, [r["_items"] for r in rows])
    for r, v in zip([r for r in rows if len(r["_items"]) >= 2], per_unit):
        r["intra_sim"] = round(v, 4)
    d = reps.shape[1]
    base_items = []
    for i in range(d):
        order = np.argsort(-reps[:, i].numpy(), kind="stable")
        order = order[~held[order]]
        base_items.append(top_items(tops[top_unique_users(order, users, n_top)]))
    b_intra, b_inter, _ = similarity(item_emb, base_items)
    return {"sae_intra": round(intra, 4), "sae_inter": round(inter, 4), "base_intra": round(b_intra, 4),
            "base_inter": round(b_inter, 4), "n_sae_units": len(rows), "n_base_units": d,
            "top_items_per_unit": 10, "top_cases_per_unit": n_top}


@torch.no_grad()
def reconstruction_quality(adapter, batches, test_reps, sae, dense):
    """Step 5: HR/NDCG untouched, through the SAE and through the dense AE; the test FVUs."""
    return {
        "original": evaluate(adapter, batches),
        "sae_reconstruction": evaluate(adapter, batches, sae_transform(sae)),
        "dense_ae_reconstruction": evaluate(adapter, batches, lambda x: dense(x)),
        "test_fvu_sae": round(fvu(test_reps, sae_transform(sae)(test_reps)), 4),
        "test_fvu_dense_ae": round(fvu(test_reps, dense(test_reps)), 4),
    }


def targeted_tuning(adapter, batches, test_reps, sae, rows, masks, m, scales, tune_latents, max_tune_cases,
                    min_verify):
    """Step 6: scale each of the most confident latents; its concept's presence vs the others'.

    Returns (tuned latents, one row per (latent, scale), summary per scale).
    """
    t_case, t_lat, _ = sparse_codes(sae, test_reps)
    t_lo, t_hi = latent_segments(t_lat, m)
    by_latent = {r["latent"]: c for c, r in enumerate(rows)}
    candidates = [r for r in rows if (t_hi[r["latent"]] - t_lo[r["latent"]]) >= min_verify
                  and r["confidence"] is not None]
    candidates.sort(key=lambda r: (-(r["confidence"] or 0), -(t_hi[r["latent"]] - t_lo[r["latent"]])))
    tuned = [r["latent"] for r in candidates[:tune_latents]]
    offsets = np.cumsum([0] + [len(b[0]) for b in batches])
    tuning_rows = []
    for j in tuned:
        cases_j = np.sort(t_case[t_lo[j]:t_hi[j]])[:max_tune_cases]
        others = [by_latent[o] for o in tuned if o != j]
        for s in scales:
            lists = _tuned_top10(adapter, batches, offsets, cases_j, sae_transform(sae, j, float(s)))
            own = float(presence(masks[by_latent[j]], lists).mean())
            other = float(np.mean([presence(masks[o], lists).mean() for o in others])) if others else float("nan")
            tuning_rows.append({"latent": j, "scale": s, "n_cases": len(lists), "own_presence": round(own, 4),
                                "other_presence": round(other, 4)})
    tuning_summary = {}
    for s in scales:
        sel = [r for r in tuning_rows if r["scale"] == s]
        if sel:
            tuning_summary[str(s)] = {"own_presence": round(float(np.mean([r["own_presence"] for r in sel])), 4),
                                      "other_presence": round(float(np.nanmean([r["other_presence"] for r in sel])), 4)}
    return tuned, tuning_rows, tuning_summary


def _tuned_top10(adapter, batches, offsets, cases, transform):
    """[len(cases), 10] top-10 lists of the given test cases (global indices) under a transform."""
    lists = []
    for b, (interaction, history_index, _pu, _pi) in enumerate(batches):
        sel = cases[(cases >= offsets[b]) & (cases < offsets[b + 1])] - offsets[b]
        if len(sel) == 0:
            continue
        scores = masked_scores(adapter, interaction, history_index, transform)
        lists.append(scores[torch.as_tensor(sel)].topk(10, dim=1).indices.numpy())
    return np.concatenate(lists)


def probe_metrics(config, adapter, ckpt_info, command, options, cases, held, rows, sae_metrics, dense_metrics, sim,
                  quality, tuned, tuning_summary):
    """metrics.json (without the timings): options, per-step results, and where it ran."""
    from recbole_saerec.environment import run_environment

    n, d = cases["reps"].shape
    verifiable = [r for r in rows if r["n_pos"] >= options["min_verify"]]
    options = dict(options, text_fields=list(config["intent_item_text_fields"] or []),
                   concept_items="the model's top-10 recommendations for the latent's top cases",
                   verification_rule="activating iff presence of the concept terms in the case's top-10 > "
                                     "the concept's base rate over fit cases")
    return {
        "command": command, "checkpoint": ckpt_info, "model": config["model"], "dataset": config["dataset"],
        "family": adapter.family, "representation_dim": d, "n_training_cases": n,
        "n_test_cases": len(cases["test_reps"]), "n_fit_cases": int((~held).sum()),
        "n_heldout_cases": int(held.sum()), "scoring_check": cases["scoring_check"], "options": options,
        "sae": sae_metrics, "dense_ae": dense_metrics,
        "concepts": {"n_latents": options["n_latents"], "n_with_concept": len(rows), "n_verifiable": len(verifiable),
                     "n_verified": sum(r["verified"] for r in rows),
                     "mean_confidence": round(float(np.mean([r["confidence"] for r in verifiable])), 4)
                     if verifiable else None},
        "similarity": sim, "quality": quality,
        "tuning": {"latents": tuned, "summary": tuning_summary},
        **run_environment(),  # versions + machine: the one record every tool writes (environment.run_environment)
    }
