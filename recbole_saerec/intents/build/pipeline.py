"""``build_intents``: the stages in order, under a lock per intent directory, then the artefacts.

Each stage is a function of the config and of what the earlier stages returned, and returns what it
made: the corpus, the embeddings, the latents (:class:`Latents`), their words (:class:`LatentWords`),
the judge's decision (:class:`Judgement`) and the catalogue rows (:class:`Catalogue`). ``_build``
calls them in order and :func:`write_build` writes the result, the manifest last.
"""
import json
import os
import time
from collections import Counter
from logging import getLogger
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from filelock import FileLock

from recbole_saerec.artefacts import MANIFEST, items_sha1, resolve_intent_dir, save_artefacts
from recbole_saerec.intents.build.grounding_stage import (GROUNDING_KEYS, ground_latents, grounding_fields,
                                                          grounding_summary, widen_hint, write_grounding_plot)
from recbole_saerec.intents.build.outputs import write_catalogue_tables, write_itemintent, write_plot
from recbole_saerec.intents.build.sources import source_hashes
from recbole_saerec.intents.build.stages import (IntentBuildError, codes_matrix, fit_codes, item_activations, say,
                                                 top_examples)
from recbole_saerec.intents.corpus import build_corpus
from recbole_saerec.intents.encode import cache_key, encode_cached, make_encoder
from recbole_saerec.intents.judge import keep_rule, make_judge, parse_keep_rule
from recbole_saerec.settings import setting


def build_intents(config, intent_dir=None, progress=True):
    """Build the intent artefacts for ``config``'s dataset; returns the manifest dict.

    ``config`` is the plugin's Config (model SAERec, so the intent and judge
    keys are there); ``intent_dir`` defaults to ``resolve_intent_dir(config)``.
    One build per directory at a time: a second waits for the first's lock.
    """
    intent_dir = os.path.abspath(intent_dir) if intent_dir else resolve_intent_dir(config)
    os.makedirs(intent_dir, exist_ok=True)
    manifest_path = os.path.join(intent_dir, MANIFEST)
    existed = os.path.isfile(manifest_path)
    with FileLock(os.path.join(intent_dir, ".build.lock")):
        if not existed and os.path.isfile(manifest_path):  # another process built it while this one waited
            getLogger().info(f"[intents] {intent_dir} was built by another process meanwhile: using that build")
            with open(manifest_path, encoding="utf-8") as f:
                return json.load(f)
        return _build(config, intent_dir, progress)


@dataclass
class Latents:
    """Stage 3: the dictionary learned over the text embeddings (a TopK SAE, or KMeans-Intent's centroids)."""

    method: str               # 'sae' | 'kmeans'
    directions: torch.Tensor  # [M, d_t]: what words are matched against and what becomes the intent vectors
    center: torch.Tensor      # [d_t]: subtracted from word embeddings before matching (SAE b_dec; KMeans: mean)
    metrics: dict             # fvu, l0, dead_fraction, frequency, k ... (sae_trainer / kmeans)
    text_codes: object        # scipy CSR [n_texts, M]: each text's activations
    frequency: np.ndarray     # [M]: share of texts each latent fires on
    alive: list               # the latents that fire on at least one text

    @property
    def n_latents(self):
        return self.directions.shape[0]


@dataclass
class LatentWords:
    """Stage 4: the vocabulary, its embeddings, and the top words of each live latent (``alive`` order)."""

    vocab: list
    word_emb: np.ndarray  # [V, d_t], the same encoder as the texts
    words: list           # per live latent: its top words
    scores: torch.Tensor  # per live latent: the words' scores


@dataclass
class Judgement:
    """Stage 5: verdicts and grounding per live latent, and the latents the keep rule keeps."""

    judge_name: str
    verdicts: list      # per live latent: {"summary", "verdict", ...} (the fragment guard applied)
    grounding: list     # per live latent: {"detection_auc", "grounded", "fragments", ...}
    shuffled_auc: object  # the median AUROC with every latent explained by another's words (chance level)
    kept: list          # latent ids kept, in increasing order: row r of the intents is latent kept[r]


@dataclass
class Catalogue:
    """Stage 6: each item's top-r intents, and one row per kept intent and per live latent."""

    top_r: int
    indices: torch.Tensor  # [n_items, r] into the kept rows, -1 = empty
    values: torch.Tensor   # [n_items, r]
    kept_rows: list        # one dict per kept intent (catalogue.json)
    all_latents: list      # one dict per live latent, kept or not (all_latents.csv)


@contextmanager
def timed(timings, key):
    """Record the block's wall time (seconds, one decimal) as ``timings[key]``."""
    start = time.time()
    yield
    timings[key] = round(time.time() - start, 1)


def _build(config, intent_dir, progress):
    """The stages in order, each given what it needs from the earlier ones."""
    start = time.time()
    rule = keep_rule_name(config)
    # Half the cores by default: on this project's shared 2-core machines a second thread
    # made the SAE ~25x SLOWER under load (1.5 s vs 0.06 s per step), spinning against others.
    threads = setting(config, "intent_num_threads") or max(1, (os.cpu_count() or 2) // 2)
    torch.set_num_threads(int(threads))
    cache_dir = os.path.abspath(setting(config, "intent_cache_dir") or os.path.join(intent_dir, "cache"))
    timings = {}
    item_tokens, corpus = read_corpus(config, progress)
    timings["corpus_s"] = round(time.time() - start, 1)
    with timed(timings, "encode_s"):
        encoder, x, emb_key = embed_texts(config, corpus.texts, cache_dir, progress)
    with timed(timings, "fit_s"):
        latents = fit_latents(config, x, emb_key, corpus.source, cache_dir, progress)
    with timed(timings, "interpret_s"):
        words = name_latents(config, latents, corpus.texts, encoder, cache_dir, progress)
    with timed(timings, "judge_s"):
        judgement = judge_latents(config, rule, latents, words, corpus.texts, x, encoder, cache_dir, progress)
    catalogue = catalogue_rows(config, corpus, item_tokens, latents, words, judgement)
    return write_build(config, intent_dir, rule, item_tokens, corpus, encoder, latents, words, judgement, catalogue,
                       timings, start, progress)


def keep_rule_name(config):
    """``intent_keep`` as the build records it; a bad rule fails here, not after encoding and SAE training."""
    rule = setting(config, "intent_keep")
    rule = "yes" if rule is True else str(rule).lower()
    parse_keep_rule(rule)
    return rule


def read_corpus(config, progress):
    """1. the corpus: training-split texts (reviews) or item texts. Returns (item tokens, corpus)."""
    from recbole.data import create_dataset

    dataset = create_dataset(config)
    item_tokens = [str(t) for t in dataset.field2id_token[dataset.iid_field][1:]]
    corpus = build_corpus(config, dataset)
    del dataset
    say(f"[intents] corpus ({corpus.source}): {len(corpus.texts)} texts, {len(corpus.entry_item)} entries, "
        f"{corpus.stats.get('items_covered')}/{len(item_tokens)} items with text", progress)
    return item_tokens, corpus


def embed_texts(config, texts, cache_dir, progress):
    """2. text embeddings, cached by content (chunked: an interrupted encoding resumes).
    Returns (encoder, embeddings [n_texts, d_t], their cache key)."""
    encoder = make_encoder(config)
    chunk = int(setting(config, "intent_encode_chunk"))
    x = encode_cached(encoder, texts, cache_dir, chunk_size=chunk, progress=progress, desc="encode texts")
    return encoder, x, cache_key(texts, encoder, chunk)


def fit_latents(config, x, emb_key, source, cache_dir, progress):
    """3. the TopK SAE (or KMeans-Intent's centroids) over the embeddings."""
    method, directions, center, codes, metrics = fit_codes(config, x, emb_key, source, cache_dir, progress)
    frequency = np.asarray(metrics["frequency"], dtype=np.float64)
    return Latents(method=method, directions=directions, center=center, metrics=metrics,
                   text_codes=codes_matrix(codes, directions.shape[0]), frequency=frequency,
                   alive=[j for j in range(directions.shape[0]) if frequency[j] > 0])


def name_latents(config, latents, texts, encoder, cache_dir, progress):
    """4. words per latent (the vocabulary embedded with the same encoder; mutual-information score)."""
    from recbole_saerec.intents.interpret import build_vocabulary, top_words_per_latent

    vocab = build_vocabulary(texts, max_words=int(setting(config, "intent_vocab_size")),
                             min_count=int(setting(config, "intent_vocab_min_count")))
    if not vocab:
        raise IntentBuildError(f"intent vocabulary of '{config['dataset']}' is empty: the corpus has no word in >= "
                               f"intent_vocab_min_count={setting(config, 'intent_vocab_min_count')} texts. Lower it.")
    word_emb = encode_cached(encoder, vocab, cache_dir, chunk_size=int(setting(config, "intent_encode_chunk")),
                             progress=progress, desc="encode words")
    directions = latents.directions if latents.method == "sae" else latents.directions - latents.center
    words, scores = top_words_per_latent(directions[latents.alive], torch.as_tensor(word_emb) - latents.center, vocab,
                                         top_n=int(setting(config, "intent_top_words")),
                                         temperature=float(setting(config, "intent_word_temperature")))
    return LatentWords(vocab=vocab, word_emb=word_emb, words=words, scores=scores)


def judge_latents(config, rule, latents, words, texts, x, encoder, cache_dir, progress):
    """5. the judge's verdicts, the grounding score, and the keep rule."""
    judge = make_judge(config, encoder=encoder, word_vectors=(words.vocab, words.word_emb))
    verdicts = judge.judge_many(words.words, cache_path=os.path.join(cache_dir, "judge.jsonl"), progress=progress)
    verdicts, grounding, shuffled_auc = ground_latents(config, judge, encoder, texts, x, latents.text_codes,
                                                       latents.directions, latents.alive, words.words, verdicts,
                                                       words.vocab, words.word_emb)
    kept = [j for j, v, g in zip(latents.alive, verdicts, grounding)
            if keep_rule(v["verdict"], rule, grounded=g["grounded"])]
    if not kept:
        raise IntentBuildError(
            f"intents for '{config['dataset']}': the judge kept none of {len(latents.alive)} live latents under "
            f"intent_keep={rule!r} (verdicts: {dict(Counter(v['verdict'] for v in verdicts))}, "
            f"{sum(g['grounded'] for g in grounding)} grounded). Fix: {widen_hint(config, rule)}")
    return Judgement(judge_name=judge.name, verdicts=verdicts, grounding=grounding, shuffled_auc=shuffled_auc,
                     kept=kept)


def catalogue_rows(config, corpus, item_tokens, latents, words, judgement):
    """6. per-item activations over the kept intents, and the catalogue rows (kept and all live latents)."""
    top_r = int(setting(config, "intent_item_topr"))
    kept = judgement.kept
    indices, values = item_activations(corpus, item_tokens, latents.text_codes, kept, top_r)
    item_has = np.zeros(len(kept))
    for row in indices.numpy():
        item_has[row[row >= 0]] += 1
    examples = top_examples(latents.text_codes, corpus.texts, kept)
    by_latent = {j: (w, v, s, g) for j, w, v, s, g in zip(latents.alive, words.words, judgement.verdicts,
                                                          words.scores.tolist(), judgement.grounding)}
    kept_rows, all_latents, kept_set = [], [], set(kept)
    for j in latents.alive:
        w, v, s, g = by_latent[j]
        all_latents.append({"latent_id": j, "kept": j in kept_set, "verdict": v["verdict"],
                            "summary": v.get("summary", ""), "frequency": float(latents.frequency[j]), "words": w,
                            **grounding_fields(g)})
    for row, j in enumerate(kept):
        w, v, s, g = by_latent[j]
        kept_rows.append({"row": row, "latent_id": int(j), "words": w, "summary": v.get("summary", ""),
                          "verdict": v["verdict"], "frequency": float(latents.frequency[j]),
                          "item_frequency": float(item_has[row] / len(item_tokens)),
                          "word_scores": [round(float(x), 6) for x in s], "examples": examples[j],
                          **grounding_fields(g)})
    return Catalogue(top_r=top_r, indices=indices, values=values, kept_rows=kept_rows, all_latents=all_latents)


def write_build(config, intent_dir, rule, item_tokens, corpus, encoder, latents, words, judgement, catalogue, timings,
                start, progress):
    """7. write: invalidate the old build first, the manifest last (save_artefacts). Returns the manifest."""
    os.makedirs(intent_dir, exist_ok=True)
    if os.path.exists(os.path.join(intent_dir, MANIFEST)):
        os.remove(os.path.join(intent_dir, MANIFEST))
    metrics, name, kept = latents.metrics, config["dataset"], judgement.kept
    n_kept, n_alive, n_latents, method = len(kept), len(latents.alive), latents.n_latents, latents.method
    k_value = metrics.get("k") if method == "sae" else None
    fingerprint = {"dataset": name, "items_sha1": items_sha1(item_tokens), "n_items": len(item_tokens),
                   "encoder": encoder.name, "layer": encoder.layer, "pooling": encoder.pooling,
                   "corpus_sha1": corpus.sha1, "method": method, "n_latents": int(n_latents), "k": k_value,
                   "keep": rule, "judge": judgement.judge_name,
                   "grounding": {k: setting(config, k) for k in GROUNDING_KEYS}}
    all_latents = catalogue.all_latents
    stats = {"fvu": metrics["fvu"], "l0": metrics["l0"], "dead_fraction": metrics["dead_fraction"],
             "n_latents": int(n_latents), "n_alive": n_alive, "n_kept": n_kept,
             "verdicts": dict(Counter(x["verdict"] for x in all_latents)),
             "grounding": {**grounding_summary(all_latents, float(setting(config, "intent_fragment_max"))),
                           "median_auc_shuffled_words": judgement.shuffled_auc},
             "corpus": corpus.stats, "vocabulary": len(words.vocab), "item_topr": catalogue.top_r,
             "bf16": encoder.bf16, "bf16_min_cos": encoder.bf16_cos, "timings": timings}
    header = (f"dataset **{name}**, corpus {corpus.source} ({len(corpus.texts)} texts), encoder "
              f"`{encoder.name}`, {method} M={n_latents} k={k_value}: FVU {metrics['fvu']:.3f}, "
              f"L0 {metrics['l0']:.1f}, dead {metrics['dead_fraction']:.1%}; judge `{judgement.judge_name}`, keep "
              f"`{rule}`: {n_kept} intents of {n_alive} live latents.")
    write_catalogue_tables(intent_dir, catalogue.kept_rows, all_latents, header)
    write_itemintent(os.path.join(intent_dir, f"{name}.itemintent"), config["ITEM_ID_FIELD"], item_tokens,
                     catalogue.indices, catalogue.values, seq_sep=setting(config, "seq_separator"))
    write_plot(os.path.join(intent_dir, "intent_catalogue.png"), all_latents,
               f"{name}: {method}, {n_kept} kept of {n_alive} live latents")
    write_grounding_plot(os.path.join(intent_dir, "grounding.png"), all_latents,
                         f"{name}: detection AUROC, intent_keep={rule}")
    with open(os.path.join(intent_dir, "sae.json"), "w") as f:
        json.dump({k: v for k, v in metrics.items() if k != "frequency"}, f, indent=1)
    extra = ["catalogue.md", "catalogue.csv", "all_latents.csv", f"{name}.itemintent",
             "intent_catalogue.png", "grounding.png", "sae.json"]
    timings["total_s"] = round(time.time() - start, 1)
    save_artefacts(intent_dir, fingerprint, latents.directions[kept], torch.as_tensor(kept), item_tokens,
                   catalogue.indices, catalogue.values, catalogue.kept_rows, stats=stats, extra_files=extra,
                   sources=source_hashes(config, corpus.source))
    with open(os.path.join(intent_dir, MANIFEST), encoding="utf-8") as f:
        manifest = json.load(f)
    t = timings
    say(f"[intents] {header}\n[intents] wrote {intent_dir} in {t['total_s']:.0f}s (corpus {t['corpus_s']}s, "
        f"encode {t['encode_s']}s, fit {t['fit_s']}s, interpret {t['interpret_s']}s, judge {t['judge_s']}s)",
        progress)
    return manifest
