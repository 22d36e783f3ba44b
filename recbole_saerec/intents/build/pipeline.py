"""``build_intents``: the stages in order, under a lock per intent directory, then the artefacts."""
import json
import os
import time
from collections import Counter
from types import SimpleNamespace

import numpy as np
import torch
from filelock import FileLock

from recbole_saerec.artefacts import MANIFEST, items_sha1, resolve_intent_dir, save_artefacts
from recbole_saerec.intents.build.grounding import (GROUNDING_KEYS, _grounding_fields, _widen_hint, ground_latents,
                                                    grounding_summary, write_grounding_plot)
from recbole_saerec.intents.build.outputs import write_catalogue_tables, write_itemintent, write_plot
from recbole_saerec.intents.build.sources import source_hashes
from recbole_saerec.intents.build.stages import (IntentBuildError, _say, codes_matrix, fit_codes, item_activations,
                                                 top_examples)
from recbole_saerec.intents.corpus import build_corpus
from recbole_saerec.intents.encode import cache_key, encode_cached, make_encoder
from recbole_saerec.settings import setting

def build_intents(config, intent_dir=None, progress=True):
    """Build the intent artefacts for ``config``'s dataset; returns the manifest dict.

    ``config`` is the plugin's Config (model SAERec, so the intent and judge
    keys are there); ``intent_dir`` defaults to ``resolve_intent_dir(config)``.
    One build per directory at a time: a second waits for the first's lock.
    """
    intent_dir = os.path.abspath(intent_dir) if intent_dir else resolve_intent_dir(config)
    os.makedirs(intent_dir, exist_ok=True)
    with FileLock(os.path.join(intent_dir, ".build.lock")):
        return _build_locked(config, intent_dir, progress)


def _build_locked(config, intent_dir, progress):
    """The stages in order; each reads what the earlier ones left on ``b`` (one build's state)."""
    rule = setting(config, "intent_keep")
    rule = "yes" if rule is True else str(rule).lower()
    from recbole_saerec.intents.judge import parse_keep_rule

    parse_keep_rule(rule)  # a bad rule fails here, not after encoding and SAE training
    # Half the cores by default: on this project's shared 2-core machines a second thread
    # made the SAE ~25x SLOWER under load (1.5 s vs 0.06 s per step), spinning against others.
    threads = setting(config, "intent_num_threads") or max(1, (os.cpu_count() or 2) // 2)
    torch.set_num_threads(int(threads))
    b = SimpleNamespace(rule=rule, t0=time.time(), timings={}, dataset_name=config["dataset"],
                        cache_dir=os.path.abspath(setting(config, "intent_cache_dir")
                                                  or os.path.join(intent_dir, "cache")))
    for stage in (_corpus, _embed, _fit, _words, _judge, _catalogue):
        stage(config, b, progress)
    return _write(config, b, intent_dir, progress)


def _corpus(config, b, progress):
    """1. the corpus: training-split texts (reviews) or item texts."""
    from recbole.data import create_dataset

    dataset = create_dataset(config)
    b.item_tokens = [str(t) for t in dataset.field2id_token[dataset.iid_field][1:]]
    b.corpus = build_corpus(config, dataset)
    del dataset
    _say(f"[intents] corpus ({b.corpus.source}): {len(b.corpus.texts)} texts, {len(b.corpus.entry_item)} entries, "
         f"{b.corpus.stats.get('items_covered')}/{len(b.item_tokens)} items with text", progress)
    b.timings["corpus_s"] = round(time.time() - b.t0, 1)


def _embed(config, b, progress):
    """2. text embeddings, cached by content (chunked: an interrupted encoding resumes)."""
    t = time.time()
    b.encoder = make_encoder(config)
    b.chunk = int(setting(config, "intent_encode_chunk"))
    b.x = encode_cached(b.encoder, b.corpus.texts, b.cache_dir, chunk_size=b.chunk, progress=progress,
                        desc="encode texts")
    b.emb_key = cache_key(b.corpus.texts, b.encoder, b.chunk)
    b.timings["encode_s"] = round(time.time() - t, 1)


def _fit(config, b, progress):
    """3. the TopK SAE (or KMeans-Intent's centroids) over the embeddings."""
    t = time.time()
    b.method, b.directions, b.center, codes, b.metrics = fit_codes(config, b.x, b.emb_key, b.corpus.source,
                                                                   b.cache_dir, progress)
    b.n_latents = b.directions.shape[0]
    b.text_codes = codes_matrix(codes, b.n_latents)
    b.freq = np.asarray(b.metrics["frequency"], dtype=np.float64)
    b.alive = [j for j in range(b.n_latents) if b.freq[j] > 0]
    b.timings["fit_s"] = round(time.time() - t, 1)


def _words(config, b, progress):
    """4. words per latent (the vocabulary embedded with the same encoder; mutual-information score)."""
    from recbole_saerec.intents.interpret import build_vocabulary, top_words_per_latent

    t = time.time()
    b.vocab = build_vocabulary(b.corpus.texts, max_words=int(setting(config, "intent_vocab_size")),
                               min_count=int(setting(config, "intent_vocab_min_count")))
    if not b.vocab:
        raise IntentBuildError(f"intent vocabulary of '{b.dataset_name}' is empty: the corpus has no word in >= "
                               f"intent_vocab_min_count={setting(config, 'intent_vocab_min_count')} texts. Lower it.")
    b.word_emb = encode_cached(b.encoder, b.vocab, b.cache_dir, chunk_size=b.chunk, progress=progress,
                               desc="encode words")
    dir_for_words = b.directions if b.method == "sae" else b.directions - b.center
    b.words, b.scores = top_words_per_latent(dir_for_words[b.alive], torch.as_tensor(b.word_emb) - b.center, b.vocab,
                                             top_n=int(setting(config, "intent_top_words")),
                                             temperature=float(setting(config, "intent_word_temperature")))
    b.timings["interpret_s"] = round(time.time() - t, 1)


def _judge(config, b, progress):
    """5. the judge's verdicts, the grounding score, and the keep rule."""
    from recbole_saerec.intents.judge import keep_rule, make_judge

    t = time.time()
    b.judge = make_judge(config, encoder=b.encoder, word_vectors=(b.vocab, b.word_emb))
    verdicts = b.judge.judge_many(b.words, cache_path=os.path.join(b.cache_dir, "judge.jsonl"), progress=progress)
    b.verdicts, b.grounding, b.shuffled_auc = ground_latents(config, b.judge, b.encoder, b.corpus.texts, b.x,
                                                             b.text_codes, b.directions, b.alive, b.words, verdicts,
                                                             b.vocab, b.word_emb)
    kept_mask = [keep_rule(v["verdict"], b.rule, grounded=g["grounded"]) for v, g in zip(b.verdicts, b.grounding)]
    b.kept = [j for j, k in zip(b.alive, kept_mask) if k]
    b.timings["judge_s"] = round(time.time() - t, 1)
    if not b.kept:
        raise IntentBuildError(
            f"intents for '{b.dataset_name}': the judge kept none of {len(b.alive)} live latents under "
            f"intent_keep={b.rule!r} (verdicts: {dict(Counter(v['verdict'] for v in b.verdicts))}, "
            f"{sum(g['grounded'] for g in b.grounding)} grounded). Fix: {_widen_hint(config, b.rule)}")


def _catalogue(config, b, progress):
    """6. per-item activations over the kept intents, and the catalogue rows (kept and all live latents)."""
    b.top_r = int(setting(config, "intent_item_topr"))
    b.indices, b.values = item_activations(b.corpus, b.item_tokens, b.text_codes, b.kept, b.top_r)
    item_has = np.zeros(len(b.kept))
    for row in b.indices.numpy():
        item_has[row[row >= 0]] += 1
    examples = top_examples(b.text_codes, b.corpus.texts, b.kept)
    by_latent = {j: (w, v, s, g) for j, w, v, s, g in zip(b.alive, b.words, b.verdicts, b.scores.tolist(),
                                                          b.grounding)}
    b.catalogue, b.all_latents, kept_set = [], [], set(b.kept)
    for j in b.alive:
        w, v, s, g = by_latent[j]
        b.all_latents.append({"latent_id": j, "kept": j in kept_set, "verdict": v["verdict"],
                              "summary": v.get("summary", ""), "frequency": float(b.freq[j]), "words": w,
                              **_grounding_fields(g)})
    for row, j in enumerate(b.kept):
        w, v, s, g = by_latent[j]
        b.catalogue.append({"row": row, "latent_id": int(j), "words": w, "summary": v.get("summary", ""),
                            "verdict": v["verdict"], "frequency": float(b.freq[j]),
                            "item_frequency": float(item_has[row] / len(b.item_tokens)),
                            "word_scores": [round(float(x), 6) for x in s], "examples": examples[j],
                            **_grounding_fields(g)})


def _write(config, b, intent_dir, progress):
    """7. write: invalidate the old build first, the manifest last (save_artefacts)."""
    os.makedirs(intent_dir, exist_ok=True)
    if os.path.exists(os.path.join(intent_dir, MANIFEST)):
        os.remove(os.path.join(intent_dir, MANIFEST))
    metrics, name, n_kept, n_alive = b.metrics, b.dataset_name, len(b.kept), len(b.alive)
    k_value = metrics.get("k") if b.method == "sae" else None
    fingerprint = {"dataset": name, "items_sha1": items_sha1(b.item_tokens), "n_items": len(b.item_tokens),
                   "encoder": b.encoder.name, "layer": b.encoder.layer, "pooling": b.encoder.pooling,
                   "corpus_sha1": b.corpus.sha1, "method": b.method, "n_latents": int(b.n_latents), "k": k_value,
                   "keep": b.rule, "judge": b.judge.name,
                   "grounding": {k: setting(config, k) for k in GROUNDING_KEYS}}
    stats = {"fvu": metrics["fvu"], "l0": metrics["l0"], "dead_fraction": metrics["dead_fraction"],
             "n_latents": int(b.n_latents), "n_alive": n_alive, "n_kept": n_kept,
             "verdicts": dict(Counter(x["verdict"] for x in b.all_latents)),
             "grounding": {**grounding_summary(b.all_latents, float(setting(config, "intent_fragment_max"))),
                           "median_auc_shuffled_words": b.shuffled_auc},
             "corpus": b.corpus.stats, "vocabulary": len(b.vocab), "item_topr": b.top_r, "bf16": b.encoder.bf16,
             "bf16_min_cos": b.encoder.bf16_cos, "timings": b.timings}
    header = (f"dataset **{name}**, corpus {b.corpus.source} ({len(b.corpus.texts)} texts), encoder "
              f"`{b.encoder.name}`, {b.method} M={b.n_latents} k={k_value}: FVU {metrics['fvu']:.3f}, "
              f"L0 {metrics['l0']:.1f}, dead {metrics['dead_fraction']:.1%}; judge `{b.judge.name}`, keep "
              f"`{b.rule}`: {n_kept} intents of {n_alive} live latents.")
    write_catalogue_tables(intent_dir, b.catalogue, b.all_latents, header)
    write_itemintent(os.path.join(intent_dir, f"{name}.itemintent"), config["ITEM_ID_FIELD"], b.item_tokens,
                     b.indices, b.values, seq_sep=setting(config, "seq_separator"))
    write_plot(os.path.join(intent_dir, "intent_catalogue.png"), b.all_latents,
               f"{name}: {b.method}, {n_kept} kept of {n_alive} live latents")
    write_grounding_plot(os.path.join(intent_dir, "grounding.png"), b.all_latents,
                         f"{name}: detection AUROC, intent_keep={b.rule}")
    with open(os.path.join(intent_dir, "sae.json"), "w") as f:
        json.dump({k: v for k, v in metrics.items() if k != "frequency"}, f, indent=1)
    extra = ["catalogue.md", "catalogue.csv", "all_latents.csv", f"{name}.itemintent",
             "intent_catalogue.png", "grounding.png", "sae.json"]
    b.timings["total_s"] = round(time.time() - b.t0, 1)
    save_artefacts(intent_dir, fingerprint, b.directions[b.kept], torch.as_tensor(b.kept), b.item_tokens, b.indices,
                   b.values, b.catalogue, stats=stats, extra_files=extra, sources=source_hashes(config, b.corpus.source))
    with open(os.path.join(intent_dir, MANIFEST), encoding="utf-8") as f:
        manifest = json.load(f)
    t = b.timings
    _say(f"[intents] {header}\n[intents] wrote {intent_dir} in {t['total_s']:.0f}s (corpus {t['corpus_s']}s, "
         f"encode {t['encode_s']}s, fit {t['fit_s']}s, interpret {t['interpret_s']}s, judge {t['judge_s']}s)",
         progress)
    return manifest
