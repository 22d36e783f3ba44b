"""Guided item embeddings: the offline part of GuidedRec (its attribution CLI: analysis/attribution.py).

Guided embedding refinement (Jia et al. 2025; docs/method.md, "Guided embedding refinement"): every item
gets one text vector PER interpretable attribute (category, brand, price band,
use/audience words, era ...), written from templates in yaml and encoded with the
plugin's text encoder (:mod:`recbole_saerec.intents.encode`). Keeping one vector per
attribute (not one vector for the whole text) keeps every model dimension
attributable to one attribute.

Attributes (``guided_templates``, name -> template):

* ``{field}`` is a column of the raw ``<dataset>.item`` file (cleaned as the intent
  corpus cleans it); ``{a|b}`` takes the first non-empty of ``a`` and ``b``, so one
  template serves Amazon (``categories``) and MovieLens (``class``).
* derived fields: ``{price_band}`` (quantile band of ``guided_price_field``, named by
  ``guided_price_bands``), ``{year_band}`` (decade of ``guided_year_field``),
  ``{use_words}`` (the words of ``guided_text_fields`` found in the
  ``guided_use_words`` lexicon: use / audience / skin type ...), and
  ``{categories}`` without the category levels that more than
  ``guided_category_max_share`` of the items share (the root "Beauty").
* An item whose template has an empty field has NO value for that attribute: its
  block is the zero vector (nothing is invented). With ``guided_fill: True`` and an
  LM judge backend (``judge_backend: openai`` / ``llama_cpp``, see intents/judge.py)
  the LM is asked for the missing value from the item's text; answers are cached.
* An attribute that no item has (e.g. brand on ml-100k) is dropped, with a log line.

Artefact (the contract: :mod:`recbole_saerec.artefacts`, "GuidedRec's contract"):
``<guided_cache_dir>/<dataset>/guided-<fingerprint>.pt``, built here before the model
exists (``quick_start.ensure_guided``) and read by the model from ``guided_path``; the fingerprint
hashes the dataset's item set, the templates, every attribute text and the encoder
settings, so a change of any of them rebuilds, and the same inputs always give the
same tensors (the encoder runs in fp32 by default: ``guided_encode_bf16: False``).

The attribution CLI lives in :mod:`recbole_saerec.analysis.attribution`.
"""
import hashlib
import json
import os
import re
from logging import getLogger

import numpy as np
import torch

from recbole_saerec.artefacts import GUIDED_FORMAT_VERSION, guided_file, items_sha1
from recbole_saerec.data.text import BadLines, iter_lines
from recbole_saerec.fileio import save_tensor_file_atomic
from recbole_saerec.intents.corpus import (as_list, atomic_file, clean_value, file_format, read_atomic,
                                           read_atomic_header)
from recbole_saerec.settings import setting

_FIELD = re.compile(r"\{([^{}]+)\}")
_WORD = re.compile(r"[a-z0-9][a-z0-9'\-]*")


# ---------------------------------------------------------------------------- attributes
def _split_levels(value):
    sep = "|" if "|" in value else ","
    return [p.strip() for p in value.split(sep) if p.strip()]


def derived_fields(config, rows):
    """Add ``price_band``, ``year_band``, ``use_words`` and the trimmed ``categories`` to each row (in place)."""
    price_field = setting(config, "guided_price_field")
    bands = as_list(setting(config, "guided_price_bands"))
    prices = {}
    for tok, row in rows.items():
        try:
            p = float(row.get(price_field, ""))
            if np.isfinite(p) and p > 0:
                prices[tok] = p
        except ValueError:
            pass
    if prices and bands:
        edges = np.quantile(np.array(list(prices.values())), np.linspace(0, 1, len(bands) + 1)[1:-1])
        for tok, p in prices.items():
            rows[tok]["price_band"] = bands[int(np.searchsorted(edges, p, side="right"))]
    year_field = setting(config, "guided_year_field")
    for row in rows.values():
        m = re.search(r"(1[89]|20)\d\d", row.get(year_field, ""))
        if m:
            row["year_band"] = f"{m.group(0)[:3]}0s"
    lexicon = [w.lower() for w in as_list(setting(config, "guided_use_words"))]
    text_fields = as_list(setting(config, "guided_text_fields"))
    max_words = int(setting(config, "guided_max_use_words"))
    if lexicon:
        single = {w for w in lexicon if " " not in w}
        phrases = [w for w in lexicon if " " in w]
        for row in rows.values():
            text = " ".join(row.get(f, "") for f in text_fields).lower()
            found = [p for p in phrases if p in text]
            found += [w for w in _WORD.findall(text) if w in single]
            row["use_words"] = ", ".join(list(dict.fromkeys(found))[:max_words])
    if any("categories" in row for row in rows.values()):
        max_share = float(setting(config, "guided_category_max_share"))
        levels = {tok: _split_levels(row.get("categories", "")) for tok, row in rows.items()}
        counts = {}
        for lv in levels.values():
            for name in set(lv):
                counts[name] = counts.get(name, 0) + 1
        for tok, lv in levels.items():
            kept = [x for x in lv if counts[x] <= max_share * len(rows)]
            rows[tok]["categories"] = ", ".join(dict.fromkeys(kept))


def fill_template(template, row):
    """The template with its fields filled; None when a field is empty for this item."""
    values = {}
    for spec in _FIELD.findall(template):
        value = next((row.get(f.strip(), "").strip() for f in spec.split("|") if row.get(f.strip(), "").strip()), "")
        if not value:
            return None
        values[spec] = value
    return _FIELD.sub(lambda m: values[m.group(1)], template)


def item_rows(config, item_tokens):
    """item token -> {column: cleaned text} from the raw ``.item`` file (empty rows when there is none)."""
    rows = {tok: {} for tok in item_tokens}
    path = atomic_file(config, "item")
    if not os.path.isfile(path):
        getLogger().warning(f"GuidedRec: no {path}; every guided attribute is empty")
        return rows
    sep, enc, on_bad_line = file_format(config)
    columns = list(read_atomic_header(path, sep, enc))
    iid = config["ITEM_ID_FIELD"]
    df = read_atomic(path, columns, sep, enc, on_bad_line)
    for rec in df.to_dict("records"):
        tok = str(rec[iid])
        if tok in rows:
            rows[tok] = {k: clean_value(str(v)) for k, v in rec.items() if k != iid}
    return rows


def fill_missing(config, rows, texts, templates, cache_dir):
    """Ask the configured LM for attributes that an item lacks (``guided_fill: True``); cached JSONL."""
    from recbole_saerec.intents.judge import LMJudge, make_judge

    judge = make_judge(config)
    if not isinstance(judge, LMJudge):
        getLogger().warning("GuidedRec: guided_fill needs an LM judge backend (judge_backend: openai | llama_cpp); "
                            "missing attributes stay empty")
        return texts, None
    path = os.path.join(cache_dir, f"fill-{hashlib.sha1(judge.model.encode()).hexdigest()[:10]}.jsonl")
    cache = {}
    if os.path.isfile(path):
        bad = BadLines(judge.on_bad_line)  # the config's on_bad_line, as make_judge read it
        for _, line in iter_lines(path, bad):
            try:
                rec = json.loads(line)
                cache[rec["key"]] = rec["answer"]
            except (ValueError, KeyError, TypeError):  # a line cut by an interruption: asked again
                continue
        bad.report("GuidedRec fill cache (those attributes are asked again)")
    fields = as_list(setting(config, "guided_text_fields")) or ["title"]
    with open(path, "a", encoding="utf-8") as out:
        for tok, row in rows.items():
            source = ". ".join(row.get(f, "") for f in fields if row.get(f, ""))
            for name, template in templates.items():
                if texts[tok][name] is not None or not source:
                    continue
                key = hashlib.sha1(f"{name}\0{template}\0{source}".encode()).hexdigest()
                if key not in cache:
                    messages = [{"role": "user", "content": (
                        f"Item: {source}\nIn at most 6 words, what is this item's {name}? Answer with the words "
                        "only, or 'unknown'.")}]
                    lines = (judge.complete(messages) or "").strip().splitlines()
                    cache[key] = lines[0].strip(" .\"'") if lines else ""
                    out.write(json.dumps({"key": key, "answer": cache[key]}) + "\n")
                    out.flush()
                answer = cache[key]
                if answer and answer.lower() != "unknown":
                    texts[tok][name] = fill_template(template, {**row, **{f: answer for f in _FIELD.findall(template)}})
    return texts, judge.model


def attribute_texts(config, item_tokens, cache_dir=None):
    """(attribute names kept, {token: {name: text or None}}, fill model or None)."""
    templates = dict(setting(config, "guided_templates") or {})
    if not templates:
        raise ValueError("GuidedRec: guided_templates is empty; name at least one attribute template.")
    rows = item_rows(config, item_tokens)
    derived_fields(config, rows)
    texts = {tok: {name: fill_template(t, row) for name, t in templates.items()} for tok, row in rows.items()}
    fill_model = None
    if setting(config, "guided_fill"):
        texts, fill_model = fill_missing(config, rows, texts, templates, cache_dir)
    kept = []
    for name in templates:
        n = sum(texts[tok][name] is not None for tok in item_tokens)
        if n == 0:
            getLogger().info(f"GuidedRec: attribute '{name}' is empty for every item: dropped")
        else:
            getLogger().info(f"GuidedRec: attribute '{name}' present for {n}/{len(item_tokens)} items")
            kept.append(name)
    if not kept:
        raise ValueError(f"GuidedRec: no item has any attribute of guided_templates={templates} "
                         f"(columns of {atomic_file(config, 'item')}?)")
    return kept, texts, fill_model


# ---------------------------------------------------------------------------- encoding + cache
def encoder_spec(config):
    name = setting(config, "guided_encoder") or setting(config, "intent_encoder")
    layer = setting(config, "intent_encoder_layer")
    return {"encoder": str(name), "layer": None if layer is None else int(layer),
            "pooling": setting(config, "intent_pooling"), "normalize": bool(setting(config, "intent_normalize")),
            "max_length": int(setting(config, "intent_max_length")),
            "bf16": bool(setting(config, "guided_encode_bf16"))}


def build_guided(config, item_tokens, encoder=None):
    """Per attribute: unique texts' vectors and each item's row (0 = attribute missing).

    Returns a dict: ``names`` [A], ``vectors`` list of float32 [T_a + 1, d_t] (row 0 zeros),
    ``index`` int64 [n_items, A] into them (item order = ``item_tokens``), ``texts``
    list of the T_a texts per attribute, ``fingerprint``, and ``path``: the file it is
    saved in (the artefact GuidedRec reads). A build with the same fingerprint is reused.
    """
    item_tokens = [str(t) for t in item_tokens]
    cache_root = setting(config, "guided_cache_dir")
    cache_dir = os.path.join(cache_root, str(config["dataset"]))
    os.makedirs(cache_dir, exist_ok=True)
    names, texts, fill_model = attribute_texts(config, item_tokens, cache_dir)
    unique = {name: sorted({texts[t][name] for t in item_tokens if texts[t][name] is not None}) for name in names}
    spec = encoder_spec(config)
    h = hashlib.sha1(json.dumps({"v": GUIDED_FORMAT_VERSION, "dataset": str(config["dataset"]), "encoder": spec,
                                 "items": items_sha1(item_tokens), "fill": fill_model}, sort_keys=True).encode())
    for tok in item_tokens:
        h.update(json.dumps([tok] + [texts[tok][n] for n in names]).encode("utf-8"))
    fingerprint = h.hexdigest()[:16]
    path = guided_file(cache_root, config["dataset"], fingerprint)
    if os.path.isfile(path):
        return {**torch.load(path, weights_only=True), "path": path}
    from recbole_saerec.intents.encode import TextEncoder, encode_cached

    if encoder is None:
        encoder = TextEncoder(name=spec["encoder"], layer=spec["layer"], pooling=spec["pooling"],
                              normalize=spec["normalize"], bf16=spec["bf16"], max_length=spec["max_length"],
                              device="cuda" if torch.cuda.is_available() and setting(config, "use_gpu") else "cpu")
    flat = [t for name in names for t in unique[name]]
    emb = torch.from_numpy(encode_cached(encoder, flat, cache_dir, progress=False, desc="guided attributes"))
    vectors, index, start = [], torch.zeros(len(item_tokens), len(names), dtype=torch.long), 0
    for a, name in enumerate(names):
        block = emb[start:start + len(unique[name])]
        start += len(unique[name])
        vectors.append(torch.cat([torch.zeros(1, emb.shape[1]), block]).contiguous())
        row_of = {t: r + 1 for r, t in enumerate(unique[name])}
        index[:, a] = torch.tensor([row_of.get(texts[t][name], 0) for t in item_tokens])
    out = {"names": names, "vectors": vectors, "index": index, "texts": [unique[n] for n in names],
           "item_tokens": item_tokens, "fingerprint": fingerprint, "encoder": spec,
           "dataset": str(config["dataset"]), "format_version": GUIDED_FORMAT_VERSION}
    save_tensor_file_atomic(path, out)
    return {**out, "path": path}
