"""The intent corpus: the texts the SAE learns intents from (docs/method.md, stage 1, step 1).

Two sources, chosen by ``intent_corpus``:

* ``reviews``: one text per interaction (``intent_review_text_fields`` of the raw
  ``<dataset>.inter`` file, e.g. ``summary`` + ``review_text``). Only interactions
  of the TRAINING split contribute: an interaction whose (user, item) pair is a
  validation or test target of RecBole's own split (``dataset.build()``, which is
  what ``data_preparation`` uses) is dropped, and so is every other interaction
  of the same (user, item) pair -- conservative, and independent of timestamp
  normalisation. Interactions RecBole filtered out are dropped too.
  ``intent_corpus_leaky: True`` keeps the held-out reviews (the authors' code
  did; only for measuring how much that leak is worth).
* ``items``: one text per item (``intent_item_text_fields`` of the raw
  ``<dataset>.item`` file: title, brand, categories, genres ...). Item text is
  not user-specific, so it cannot leak a held-out interaction.
* ``both``: the two together; ``auto``: reviews when the ``.inter`` file has a
  review column, item text otherwise.

Text is read from the RAW atomic files, not from RecBole's loaded fields:
RecBole tokenises ``token_seq`` fields (ml-100k's ``movie_title`` loses its
punctuation), while the encoder wants natural text. Items and users without
text are fine; they just get no intent activations.
"""
import csv
import hashlib
import html
import io
import os
import re
from dataclasses import dataclass, field
from logging import getLogger

import numpy as np
import pandas as pd

from recbole_saerec.data.text import BadLines, read_text
from recbole_saerec.settings import setting

CORPUS_MODES = ("auto", "reviews", "items", "both")


class CorpusError(ValueError):
    """The configured text fields are missing, or no text was found."""


@dataclass
class Corpus:
    """Unique texts plus the (text, item, user) entries they came from.

    The SAE trains on ``texts`` (deduplicated); an item's activation is the mean
    code over its ``entries`` (an item with one review three times counts it
    three times, as the reviews do).
    """
    texts: list
    entry_text: np.ndarray          # [n_entries] index into texts
    entry_item: list                # item token per entry
    entry_user: list                # user token per entry ("" for item text)
    source: str                     # "reviews" | "items" | "both"
    stats: dict = field(default_factory=dict)

    @property
    def sha1(self):
        """Identity of the corpus (texts and who they belong to), for cache keys and the fingerprint."""
        h = hashlib.sha1()
        for t in self.texts:
            h.update(t.encode("utf-8"))
            h.update(b"\0")
        for t, i, u in zip(self.entry_text.tolist(), self.entry_item, self.entry_user):
            h.update(f"{t}\t{i}\t{u}\n".encode("utf-8"))
        return h.hexdigest()[:16]

    def item_entries(self):
        """item token -> list of text indices (one per entry)."""
        out = {}
        for t, i in zip(self.entry_text.tolist(), self.entry_item):
            out.setdefault(i, []).append(t)
        return out


def as_list(value):
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value)


def atomic_file(config, suffix):
    """Path of a raw atomic file of the configured dataset (``<data_path>/<dataset>.<suffix>``)."""
    return os.path.join(config["data_path"], f"{config['dataset']}.{suffix}")


def corpus_sources(config, source):
    """The raw atomic files a corpus of ``source`` ("reviews" | "items" | "both") reads its text from."""
    suffixes = {"reviews": ["inter"], "items": ["item"], "both": ["inter", "item"]}[source]
    return [atomic_file(config, s) for s in suffixes]


def read_atomic_header(path, sep="\t", encoding="utf-8", on_bad_line="error"):
    """name -> type of an atomic file's columns (``title:token_seq`` -> {"title": "token_seq"}).

    The header is read strictly whatever ``on_bad_line`` says: without it the file cannot be read.
    """
    with open(path, "rb") as f:
        head = BadLines("error", error=CorpusError).decode(f.readline(), path, 1, encoding).rstrip("\r\n")
    return dict(col.split(":", 1) if ":" in col else (col, "token") for col in head.split(sep))


def read_atomic(path, columns, sep="\t", encoding="utf-8", on_bad_line="error"):
    """The given columns of a raw atomic file as strings (NaN-free), keyed by bare field names.

    Lines whose bytes are not valid in ``encoding`` follow ``on_bad_line`` (data/text.py): stop
    with file:line, leave the line out, or keep it with U+FFFD; skipped or repaired lines are
    reported in one warning.
    """
    header = read_atomic_header(path, sep, encoding)
    full = {name: f"{name}:{ftype}" for name, ftype in header.items()}
    bad = BadLines(on_bad_line, error=CorpusError)
    text = read_text(path, bad, encoding)
    df = pd.read_csv(io.StringIO(text), sep=sep, usecols=[full[c] for c in columns], dtype=str,
                     quoting=csv.QUOTE_NONE, keep_default_na=False, na_filter=False)
    bad.report(f"reading {os.path.basename(path)}")
    return df.rename(columns={full[c]: c for c in columns})[list(columns)]  # requested order, not file order


_QUOTED = re.compile(r"'([^']*)'")
_ARTICLE = re.compile(r"^(.+), (The|A|An)$")


def clean_value(value):
    """Natural text from one raw field value.

    ``'Beauty', 'Makeup', 'Face'`` (Amazon category lists) -> ``Beauty, Makeup, Face``;
    ``Usual Suspects, The`` (MovieLens titles) -> ``The Usual Suspects``; HTML entities unescaped.
    """
    value = html.unescape(value).strip()  # Amazon titles carry "&amp;", "&quot;" ...
    if value.startswith("'") and value.endswith("'"):
        parts = _QUOTED.findall(value)
        if parts:
            value = ", ".join(p.strip() for p in parts if p.strip())
    m = _ARTICLE.match(value)
    if m:
        value = f"{m.group(2)} {m.group(1)}"
    return value


def join_fields(values):
    """Join field values into one text: ``Toy Story. Animation Children's Comedy``."""
    parts = [clean_value(v) for v in values]
    return ". ".join(p for p in parts if p)


def _missing_fields_error(kind, path, key, wanted, header):
    return CorpusError(
        f"intent corpus ({kind}): {path} has none of the text columns {key}={wanted} "
        f"(its columns: {sorted(header)}). Fix: name the text columns of that file, e.g. "
        f"--{key}=\"{[c for c, t in header.items() if t in ('token', 'token_seq')][1:3]}\" on the command "
        f"line or `{key}: [...]` in the "
        f"dataset yaml; or choose another source with --intent_corpus=items|reviews."
    )


def file_format(config):
    """(field separator, encoding, on_bad_line) of the atomic files: RecBole's sample.yaml and the plugin's
    overall.yaml."""
    return setting(config, "field_separator"), setting(config, "encoding"), setting(config, "on_bad_line")


def _present_fields(kind, path, key, wanted, config):
    sep, enc, _ = file_format(config)
    if not os.path.isfile(path):
        raise CorpusError(f"intent corpus ({kind}): {path} does not exist. Fix: provide it, or choose "
                          f"another source with --intent_corpus=items|reviews.")
    header = read_atomic_header(path, sep, enc)
    present = [f for f in wanted if f in header]
    if not present:
        raise _missing_fields_error(kind, path, key, wanted, header)
    absent = [f for f in wanted if f not in header]
    if absent:
        getLogger().info(f"intent corpus: {os.path.basename(path)} has no {absent}; using {present}")
    return present


def _has_any(path, fields, config):
    if not fields or not os.path.isfile(path):
        return False
    header = read_atomic_header(path, *file_format(config))
    return any(f in header for f in fields)


def resolve_mode(config):
    """Which source ``intent_corpus`` means for this dataset (``auto`` decided by the .inter header)."""
    mode = str(setting(config, "intent_corpus")).lower()
    if mode not in CORPUS_MODES:
        raise CorpusError(f"intent_corpus={mode!r}: choose one of {CORPUS_MODES}.")
    if mode == "auto":
        review_fields = as_list(setting(config, "intent_review_text_fields"))
        mode = "reviews" if _has_any(atomic_file(config, "inter"), review_fields, config) else "items"
    return mode


def item_texts(config, item_tokens):
    """item token -> text, for the dataset's items that have any (raw ``.item`` file)."""
    path = atomic_file(config, "item")
    key = "intent_item_text_fields"
    fields = _present_fields("items", path, key, as_list(setting(config, key)), config)
    iid = config["ITEM_ID_FIELD"]
    df = read_atomic(path, [iid] + fields, *file_format(config))
    wanted = set(item_tokens)
    out = {}
    for row in df.itertuples(index=False):
        tok = str(row[0])
        if tok not in wanted:
            continue
        text = join_fields(row[1:])
        if text:
            out[tok] = text
    return out


def split_pairs(dataset):
    """(all (user, item) token pairs of the loaded dataset, held-out pairs of valid + test).

    Uses RecBole's own split (``dataset.build()``, as ``data_preparation`` does), so
    the held-out set is exactly what the model is evaluated on. Mutates
    ``dataset`` (build() converts and sorts it): pass a dataset made for this.
    """
    uid, iid = dataset.uid_field, dataset.iid_field
    feat = dataset.inter_feat
    users = np.asarray(feat[uid]).astype(np.int64)
    items = np.asarray(feat[iid]).astype(np.int64)
    utok, itok = dataset.field2id_token[uid], dataset.field2id_token[iid]
    all_pairs = set(zip(utok[users].tolist(), itok[items].tolist()))
    held = set()
    for part in dataset.build()[1:]:
        f = part.inter_feat
        held.update(zip(utok[f[uid].numpy()].tolist(), itok[f[iid].numpy()].tolist()))
    return all_pairs, held


def review_entries(config, dataset, leaky=False):
    """[(user token, item token, text)] of training interactions with review text, and counts."""
    path = atomic_file(config, "inter")
    key = "intent_review_text_fields"
    fields = _present_fields("reviews", path, key, as_list(setting(config, key)), config)
    uid, iid = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]
    df = read_atomic(path, [uid, iid] + fields, *file_format(config))
    all_pairs, held = split_pairs(dataset)
    out, n_held, n_unknown, n_empty = [], 0, 0, 0
    for row in df.itertuples(index=False):
        u, i = str(row[0]), str(row[1])
        if (u, i) not in all_pairs:
            n_unknown += 1  # filtered out by RecBole: not part of what the model sees
            continue
        if (u, i) in held and not leaky:
            n_held += 1
            continue
        text = join_fields(row[2:])
        if not text:
            n_empty += 1
            continue
        out.append((u, i, text))
    stats = {"reviews_rows": len(df), "reviews_used": len(out), "reviews_held_out_dropped": n_held,
             "reviews_not_in_dataset": n_unknown, "reviews_empty": n_empty, "reviews_leaky": bool(leaky)}
    return out, stats


def build_corpus(config, dataset):
    """The corpus for a RecBole dataset made from ``config`` (see the module docstring).

    ``dataset`` must be a fresh ``create_dataset(config)`` result; with reviews it is
    built (split) here.
    """
    requested = str(setting(config, "intent_corpus")).lower()
    mode = resolve_mode(config)
    item_tokens = [str(t) for t in dataset.field2id_token[dataset.iid_field][1:]]
    rows, stats = [], {"mode": mode}
    if mode in ("reviews", "both"):
        reviews, rstats = review_entries(config, dataset, leaky=bool(setting(config, "intent_corpus_leaky")))
        rows += reviews
        stats.update(rstats)
        if not reviews and requested == "auto":  # review columns exist but are empty (e.g. item-text-only data)
            getLogger().info("intent corpus: the review columns are empty; using item text (intent_corpus=auto)")
            mode = stats["mode"] = "items"
    if mode in ("items", "both"):
        texts = item_texts(config, item_tokens)
        rows += [("", tok, texts[tok]) for tok in item_tokens if tok in texts]
        stats["items_with_text"] = len(texts)
    if not rows:
        raise CorpusError(
            f"intent corpus ({mode}) for dataset '{config['dataset']}' is empty: no item/interaction of the "
            f"dataset has text in {atomic_file(config, 'item' if mode == 'items' else 'inter')} (fields "
            f"{setting(config, 'intent_item_text_fields' if mode == 'items' else 'intent_review_text_fields')}). "
            "Fix: point intent_item_text_fields / intent_review_text_fields at non-empty columns."
        )
    index, texts, entry_text = {}, [], []
    for _, _, text in rows:
        if text not in index:
            index[text] = len(texts)
            texts.append(text)
        entry_text.append(index[text])
    corpus = Corpus(texts=texts, entry_text=np.asarray(entry_text, dtype=np.int64),
                    entry_item=[r[1] for r in rows], entry_user=[r[0] for r in rows], source=mode, stats=stats)
    stats.update(n_entries=len(rows), n_texts=len(texts), n_items=len(item_tokens),
                 items_covered=len(set(corpus.entry_item)))
    return corpus
