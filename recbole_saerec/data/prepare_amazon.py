"""Amazon (2014 release) -> RecBole atomic files for the SAERec protocol.

    python -m recbole_saerec.data.prepare_amazon --dataset=amazon-beauty
    python -m recbole_saerec.data.prepare_amazon --dataset=amazon-sports --raw_dir=/data/amazon2014
    python -m recbole_saerec.data.prepare_amazon --category=Beauty --dataset=amazon-beauty \\
        --raw_dir=/data/amazon2014 --out=dataset --on_bad_line=skip

Writes ``<out>/<dataset>/<dataset>.inter``, ``<dataset>.item`` and ``<dataset>.prep.json``
(a summary: counts, source form, which text corpus is available). Two input forms,
detected from the files in ``--raw_dir`` (``--form`` forces one):

``amazon2014``  the public review dump: ``reviews_<Cat>_5.json[.gz]`` (one strict JSON
                object per line: reviewerID, asin, reviewText, summary, overall,
                unixReviewTime) and, optionally, ``meta_<Cat>.json[.gz]`` (one
                Python-literal dict per line in the 2014 release; strict JSON is accepted
                too). Review text, summary and rating go into the .inter file.
``iclrec``      the ICLRec/S3-Rec sequence file ``<Cat>.txt`` (``user item item ...``,
                time order = line order, no timestamps; P5's copy of the same file is
                ``sequential_data.txt``, also accepted, as is ``sequential.txt``) + the
                ``datamaps.json`` that numbering was made with (ids -> reviewerID / ASIN;
                written by S3-Rec's ``data_process.py`` next to ``sequential_data.txt`` and
                shipped in P5's data archive under ``data/<category>/``) + optionally RecBole's
                ``Amazon_<Cat>.item`` (item text keyed by ASIN). No review text: the text
                corpus is item text. A sequence file numbered by another release's map joins
                every item to another item's ASIN; the mis-join guard refuses it.

Column contract (tab-separated, header ``name:type``; fields that contain a double quote
are quoted CSV-style, ``"`` doubled; tabs/newlines inside text are replaced by spaces, so
``pandas.read_csv(path, sep="\\t")`` or ``csv.reader(f, delimiter="\\t")`` reads the
raw text back; empty = unknown):

``.inter``: user_id:token (reviewerID), item_id:token (ASIN), timestamp:float (ordering
key: unixReviewTime for amazon2014, the 1-based position in the user's sequence for
iclrec), rating:float, review_text:token_seq, summary:token_seq. Rows are grouped by
user (first appearance) and sorted by (timestamp, line number in the source file): ties
in unixReviewTime keep the review file's line order (RecBole sorts stably).

``.item``: item_id:token (ASIN), title:token_seq, brand:token, categories:token_seq
(category names, de-duplicated in order, joined with " | "), price:float,
description:token_seq (amazon2014 meta only). One row per item of the .inter file; items
without metadata have empty text.

The dataset yaml loads only user_id, item_id, timestamp; the intent corpus builder reads
the text columns from these files itself (keys ``intent_item_text_fields`` and
``intent_review_text_fields``).
"""
import argparse
import ast
import csv
import datetime
import gzip
import io
import json
import math
import os
import re
import sys
from collections import OrderedDict

from recbole_saerec.artefacts import atomic_path

SCHEMA_VERSION = 1

# dataset name -> Amazon 2014 category file stem
CATEGORIES = {
    "amazon-beauty": "Beauty",
    "amazon-sports": "Sports_and_Outdoors",
    "amazon-toys": "Toys_and_Games",
}

# Published counts of the 5-core sequence data (SAERec / ICLRec / S3-Rec / P5), checked when a
# dataset of that name is prepared (a mismatch is reported, not refused: k-core and duplicate
# handling legitimately differ between releases).
PAPER_COUNTS = {
    "amazon-beauty": {"users": 22363, "items": 12101, "interactions": 198502},
    "amazon-sports": {"users": 35598, "items": 18357, "interactions": 296337},
    "amazon-toys": {"users": 19412, "items": 11924, "interactions": 167597},
    "yelp": {"users": 30431, "items": 20033, "interactions": 316354},
}

INTER_COLUMNS = [
    ("user_id", "token"),
    ("item_id", "token"),
    ("timestamp", "float"),
    ("rating", "float"),
    ("review_text", "token_seq"),
    ("summary", "token_seq"),
]
ITEM_COLUMNS = [
    ("item_id", "token"),
    ("title", "token_seq"),
    ("brand", "token"),
    ("categories", "token_seq"),
    ("price", "float"),
    ("description", "token_seq"),
]
CATEGORY_JOINER = " | "

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))


class PrepareError(Exception):
    """Input that cannot be prepared (missing files, malformed lines under --on_bad_line=error)."""


# --------------------------------------------------------------------------- paths
def shared_dir():
    """The shared data folder: $RECBOLE_SAEREC_SHARED, else ``<repo>/../shared``."""
    env = os.environ.get("RECBOLE_SAEREC_SHARED")
    return os.path.abspath(env) if env else os.path.abspath(os.path.join(REPO_ROOT, "..", "shared"))


def default_raw_dir(dataset):
    return os.path.join(shared_dir(), "datasets", dataset, "raw")


def category_for(dataset, category=None):
    if category:
        return category
    if dataset in CATEGORIES:
        return CATEGORIES[dataset]
    raise PrepareError(
        f"Unknown dataset '{dataset}': pass --category=<Amazon 2014 category file stem> "
        f"(e.g. Beauty). Known names: {', '.join(f'{d} <- {c}' for d, c in CATEGORIES.items())}."
    )


def _first_existing(raw_dir, names):
    for name in names:
        path = os.path.join(raw_dir, name)
        if os.path.isfile(path):
            return path
    return None


def locate_inputs(raw_dir, category, form="auto"):
    """Find the input files; returns (form, {role: path or None})."""
    if not os.path.isdir(raw_dir):
        raise PrepareError(f"Raw data folder not found: {raw_dir} (pass --raw_dir=<folder with the files>).")
    reviews = _first_existing(raw_dir, [f"reviews_{category}_5.json.gz", f"reviews_{category}_5.json",
                                        f"reviews_{category}.json.gz", f"reviews_{category}.json"])
    meta = _first_existing(raw_dir, [f"meta_{category}.json.gz", f"meta_{category}.json"])
    seq = _first_existing(raw_dir, [f"{category}.txt", f"{category}.txt.gz", "sequential_data.txt",
                                    "sequential.txt"])
    maps = _first_existing(raw_dir, ["datamaps.json", "datamaps.json.gz"])
    itemfile = _first_existing(raw_dir, [f"Amazon_{category}.item", f"Amazon_{category}.item.gz"])
    if form == "auto":
        form = "amazon2014" if reviews else ("iclrec" if seq and maps else None)
    if form == "amazon2014" and reviews:
        return form, {"reviews": reviews, "meta": meta}
    if form == "iclrec" and seq and maps:
        return form, {"sequences": seq, "datamaps": maps, "item_file": itemfile}
    present = sorted(os.listdir(raw_dir))
    raise PrepareError(
        f"No usable input for category '{category}' in {raw_dir}.\n"
        f"  form amazon2014 needs: reviews_{category}_5.json[.gz] (meta_{category}.json[.gz] optional)\n"
        f"  form iclrec needs:     {category}.txt (or P5's sequential_data.txt) and datamaps.json "
        f"(Amazon_{category}.item optional)\n"
        f"  found: {', '.join(present) if present else '(empty folder)'}"
    )


# --------------------------------------------------------------------------- reading
def _progress(total, desc, enabled):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, leave=False,
                file=sys.stderr)


def iter_lines(path, show_progress=True, desc=None):
    """Yield (line_number, raw bytes line) of a plain or gzip file (detected by its magic bytes),
    with a byte-level progress bar over the file on disk."""
    size = os.path.getsize(path)
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw) if gz else raw
        bar = _progress(size, desc or os.path.basename(path), show_progress)
        done = lineno = 0
        try:
            for lineno, line in enumerate(stream, 1):
                if bar is not None and lineno % 2000 == 0:
                    pos = raw.tell()
                    bar.update(pos - done)
                    done = pos
                yield lineno, line
        except (OSError, EOFError) as exc:  # truncated / corrupt gzip
            raise PrepareError(f"{path}: cannot read past line {lineno} (truncated or corrupt file?): {exc}") from exc
        finally:
            if bar is not None:
                bar.update(size - done)
                bar.close()


def open_text(path):
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
    if gz:
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, "r", encoding="utf-8", newline="")


class BadLines:
    """--on_bad_line policy: raise with file and line number, or skip and count."""

    def __init__(self, mode):
        if mode not in ("error", "skip"):
            raise PrepareError(f"--on_bad_line must be 'error' or 'skip', not '{mode}'.")
        self.mode = mode
        self.counts = OrderedDict()
        self.examples = []

    def __call__(self, path, lineno, reason):
        if self.mode == "error":
            raise PrepareError(f"{path}:{lineno}: malformed line: {reason} "
                               "(pass --on_bad_line=skip to skip and count such lines)")
        name = os.path.basename(path)
        self.counts[name] = self.counts.get(name, 0) + 1
        if len(self.examples) < 10:
            self.examples.append(f"{name}:{lineno}: {reason}")

    @property
    def total(self):
        return sum(self.counts.values())


def _decode(line, path, lineno, bad):
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad(path, lineno, f"not UTF-8 ({exc})")
        return None


_WS = re.compile(r"\s+")


def clean_text(value):
    """One line of text: tabs/newlines/runs of spaces -> one space; None -> ''."""
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, (list, tuple)):
        value = " ".join(clean_text(v) for v in value)
    return _WS.sub(" ", str(value)).strip()


def join_categories(value):
    """2014 meta `categories` is a list of category paths (lists); RecBole's item file a
    Python-literal list body. -> names de-duplicated in order, joined with ' | '."""
    if value is None:
        return ""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return ""
        try:
            value = ast.literal_eval("[" + text + "]") if not text.startswith("[") else ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return clean_text(text)
    names = []

    def walk(v):
        if isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
        else:
            name = clean_text(v)
            if name and name not in names:
                names.append(name)

    walk(value)
    return CATEGORY_JOINER.join(names)


def to_float(value):
    if value is None or value == "":
        return None
    try:
        out = float(str(value).replace("$", "").replace(",", "").strip())
    except ValueError:
        return None
    return out if math.isfinite(out) else None


# --------------------------------------------------------------------------- amazon2014
def read_reviews(path, bad, show_progress=True):
    """-> list of dicts (user, item, time, line, rating, review_text, summary), in file order."""
    rows = []
    for lineno, line in iter_lines(path, show_progress, desc=f"reviews {os.path.basename(path)}"):
        text = _decode(line, path, lineno, bad)
        if text is None:
            continue
        if not text.strip():
            continue  # blank line (e.g. a trailing newline): not a record
        try:
            rec = json.loads(text)
        except json.JSONDecodeError as exc:
            bad(path, lineno, f"invalid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(rec, dict):
            bad(path, lineno, f"expected a JSON object, got {type(rec).__name__}")
            continue
        missing = [k for k in ("reviewerID", "asin", "unixReviewTime") if rec.get(k) in (None, "")]
        if missing:
            bad(path, lineno, f"missing field(s) {', '.join(missing)}")
            continue
        t = rec["unixReviewTime"]
        if isinstance(t, bool) or to_float(t) is None:
            bad(path, lineno, f"unixReviewTime is not a number: {t!r}")
            continue
        rows.append({
            "user": clean_text(rec["reviewerID"]),
            "item": clean_text(rec["asin"]),
            "time": to_float(t),
            "line": lineno,
            "rating": to_float(rec.get("overall")),
            "review_text": clean_text(rec.get("reviewText")),
            "summary": clean_text(rec.get("summary")),
        })
    return rows


_ASIN_RE = re.compile(r"""['"]asin['"]\s*:\s*['"]([^'"]+)['"]""")


def read_meta(path, wanted, bad, show_progress=True):
    """-> {asin: item text dict} for the asins in `wanted`. Lines are Python literals
    (2014 release) or strict JSON; lines whose asin is not wanted are not parsed."""
    meta = {}
    for lineno, line in iter_lines(path, show_progress, desc=f"meta {os.path.basename(path)}"):
        text = _decode(line, path, lineno, bad)
        if text is None or not text.strip():
            continue
        m = _ASIN_RE.search(text)
        if m and (m.group(1) not in wanted or m.group(1) in meta):
            continue  # not an item of the interactions (or a repeated one: first wins)
        try:
            rec = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            try:
                rec = json.loads(text)
            except json.JSONDecodeError as exc:
                bad(path, lineno, f"neither a Python literal nor JSON ({exc.msg} at column {exc.colno})")
                continue
        if not isinstance(rec, dict) or not rec.get("asin"):
            bad(path, lineno, "expected a dict with an 'asin'")
            continue
        asin = clean_text(rec["asin"])
        if asin not in wanted or asin in meta:
            continue
        meta[asin] = {
            "title": clean_text(rec.get("title")),
            "brand": clean_text(rec.get("brand")),
            "categories": join_categories(rec.get("categories")),
            "price": to_float(rec.get("price")),
            "description": clean_text(rec.get("description")),
        }
    return meta


# --------------------------------------------------------------------------- iclrec
def read_iclrec(seq_path, maps_path, bad, show_progress=True):
    """ICLRec sequences -> rows with position timestamps, ids mapped to reviewerID/ASIN."""
    try:
        with open_text(maps_path) as f:
            maps = json.load(f)
        id2user, id2item = maps["id2user"], maps["id2item"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PrepareError(f"{maps_path}: cannot read P5 datamaps (need 'id2user' and 'id2item'): {exc}") from exc
    rows, seen_users = [], {}
    for lineno, line in iter_lines(seq_path, show_progress, desc=f"sequences {os.path.basename(seq_path)}"):
        text = _decode(line, seq_path, lineno, bad)
        if text is None or not text.strip():
            continue
        toks = text.split()
        if len(toks) < 2:
            bad(seq_path, lineno, "expected 'user_id item_id [item_id ...]'")
            continue
        uid, items = toks[0], toks[1:]
        if uid not in id2user:
            bad(seq_path, lineno, f"user id {uid} is not in datamaps.json id2user")
            continue
        unknown = [i for i in items if i not in id2item]
        if unknown:
            bad(seq_path, lineno, f"item id(s) {', '.join(unknown[:5])} not in datamaps.json id2item")
            continue
        if uid in seen_users:
            bad(seq_path, lineno, f"user id {uid} already has a sequence (line {seen_users[uid]})")
            continue
        seen_users[uid] = lineno
        user = id2user[uid]
        for pos, iid in enumerate(items, 1):
            rows.append({"user": user, "item": id2item[iid], "time": float(pos), "line": lineno,
                         "rating": None, "review_text": "", "summary": ""})
    return rows


def read_recbole_item_file(path, wanted, bad):
    """RecBole atomic item file keyed by ASIN (title, brand, categories, price...)."""
    meta = {}
    with open_text(path) as f:
        reader = csv.reader(f, delimiter="\t")
        try:
            header = [h.split(":")[0] for h in next(reader)]
        except StopIteration:
            return meta
        if "item_id" not in header:
            raise PrepareError(f"{path}:1: header has no item_id column: {header}")
        col = {name: i for i, name in enumerate(header)}
        for row in reader:
            lineno = reader.line_num
            if not row:
                continue
            if len(row) != len(header):
                bad(path, lineno, f"{len(row)} fields, header has {len(header)}")
                continue
            asin = row[col["item_id"]].strip()
            if asin not in wanted or asin in meta:
                continue

            def get(name):
                return row[col[name]] if name in col else ""

            meta[asin] = {
                "title": clean_text(get("title")),
                "brand": clean_text(get("brand")),
                "categories": join_categories(get("categories")),
                "price": to_float(get("price")),
                "description": clean_text(get("description")),
            }
    return meta


# --------------------------------------------------------------------------- mis-join guard
# Consecutive items of real shopping sequences share a brand or a most specific category far
# more often than random pairs of the same items; a sequence file whose ids were relabelled
# against datamaps.json (another release's numbering) joins every item to another item's ASIN
# and text, and its consecutive pairs are then no more alike than random ones. Measured on
# Beauty (docs/hardening.md): real 7.9x, ids permuted 1.0x.
MIN_COHERENCE_RATIO = 1.5
MIN_COHERENCE_PAIRS = 200   # fewer pairs with metadata on both sides: too noisy to judge


def _item_marks(m):
    """What two items of one shop may share: the brand and the most specific category."""
    marks = set()
    if m.get("brand"):
        marks.add("brand:" + m["brand"].lower())
    if m.get("categories"):
        marks.add("leaf:" + m["categories"].split(CATEGORY_JOINER)[-1].lower())
    return marks


def sequence_coherence(rows, meta, seed=0):
    """How much more often consecutive items share a brand/leaf category than random pairs.

    ``rows`` are in user/time order (dedup_and_order). Random pairs keep each consecutive
    pair's first item and draw the second from the seconds of all pairs (same item
    frequencies). Returns {"pairs", "consecutive", "random", "ratio"} (ratio None when
    fewer than MIN_COHERENCE_PAIRS pairs have metadata on both sides).
    """
    import random

    marks = {}
    pairs = []
    for prev, cur in zip(rows, rows[1:]):
        if prev["user"] != cur["user"]:
            continue
        for item in (prev["item"], cur["item"]):
            if item not in marks:
                marks[item] = _item_marks(meta.get(item, {}))
        if marks[prev["item"]] and marks[cur["item"]]:
            pairs.append((prev["item"], cur["item"]))
    seconds = [b for _, b in pairs]
    random.Random(seed).shuffle(seconds)
    alike = sum(bool(marks[a] & marks[b]) for a, b in pairs)
    chance = sum(bool(marks[a] & marks[b]) for (a, _), b in zip(pairs, seconds))
    out = {"pairs": len(pairs), "consecutive": alike / len(pairs) if pairs else None,
           "random": chance / len(pairs) if pairs else None, "ratio": None}
    if len(pairs) >= MIN_COHERENCE_PAIRS and chance:
        out["ratio"] = round(alike / chance, 3)
    return out


# --------------------------------------------------------------------------- processing
def dedup_and_order(rows):
    """Keep the first (user, item) in source order; order each user's items by
    (time, source line, position in line). Users keep their first-appearance order."""
    seen, kept, dups = set(), [], []
    for idx, r in enumerate(rows):
        key = (r["user"], r["item"])
        if key in seen:
            dups.append(r)
            continue
        seen.add(key)
        r["_order"] = idx
        kept.append(r)
    first = {}
    for r in kept:
        first.setdefault(r["user"], len(first))
    kept.sort(key=lambda r: (first[r["user"]], r["time"], r["_order"]))
    return kept, dups


def kcore_filter(rows, k):
    """Iteratively drop users and items with fewer than k interactions (k <= 1: no-op)."""
    if k <= 1:
        return rows, 0
    before = len(rows)
    while True:
        ucount, icount = {}, {}
        for r in rows:
            ucount[r["user"]] = ucount.get(r["user"], 0) + 1
            icount[r["item"]] = icount.get(r["item"], 0) + 1
        kept = [r for r in rows if ucount[r["user"]] >= k and icount[r["item"]] >= k]
        if len(kept) == len(rows):
            return kept, before - len(kept)
        rows = kept


def _fmt_float(v):
    if v is None:
        return ""
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def _write_atomic_tsv(path, columns, rows):
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t", quotechar='"', quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        w.writerow([f"{name}:{typ}" for name, typ in columns])
        w.writerows(rows)


def prepare(dataset="amazon-beauty", category=None, raw_dir=None, out="dataset", on_bad_line="error",
            form="auto", kcore=0, show_progress=True, log=print, allow_misjoin=False, reviews_only=False):
    """Prepare one Amazon category. Returns the summary dict (also written as <dataset>.prep.json)."""
    category = category_for(dataset, category)
    raw_dir = os.path.abspath(raw_dir or default_raw_dir(dataset))
    form, inputs = locate_inputs(raw_dir, category, form)
    bad = BadLines(on_bad_line)
    notes = []
    log(f"[prepare] {dataset} <- {category} ({form}) from {raw_dir}")

    if form == "amazon2014":
        rows = read_reviews(inputs["reviews"], bad, show_progress)
    else:
        rows = read_iclrec(inputs["sequences"], inputs["datamaps"], bad, show_progress)
    n_read = len(rows)
    rows, dups = dedup_and_order(rows)
    rows, n_kcore = kcore_filter(rows, kcore)
    if not rows:
        raise PrepareError(f"No interactions left from {raw_dir} (read {n_read}, duplicates {len(dups)}, "
                           f"bad lines skipped {bad.total}, removed by --kcore={kcore}: {n_kcore}).")

    items = list(OrderedDict.fromkeys(r["item"] for r in rows))
    wanted = set(items)
    meta_path = inputs.get("meta") if form == "amazon2014" else inputs.get("item_file")
    if meta_path:
        if form == "amazon2014":
            meta = read_meta(meta_path, wanted, bad, show_progress)
        else:
            meta = read_recbole_item_file(meta_path, wanted, bad)
    else:
        meta = {}
        expected = f"meta_{category}.json[.gz]" if form == "amazon2014" else f"Amazon_{category}.item"
        notes.append(f"no item metadata file ({expected}) in {raw_dir}: item text is empty")
    missing_meta = [i for i in items if i not in meta]
    text_fields = ("title", "brand", "categories", "description")
    items_with_text = sum(1 for i in items if any(meta.get(i, {}).get(f) for f in text_fields))
    n_reviews_with_text = sum(1 for r in rows if r["review_text"] or r["summary"])
    if not items_with_text and not reviews_only:
        expected = f"meta_{category}.json[.gz]" if form == "amazon2014" else f"Amazon_{category}.item"
        raise PrepareError(
            f"No item has any text (title, brand, categories, description): "
            + (f"{os.path.basename(meta_path)} matched none of the {len(items)} items." if meta_path else
               f"there is no item metadata file ({expected}) in {raw_dir}.")
            + f" Put {expected} there, or pass --reviews_only when the intent corpus is review text "
              f"({n_reviews_with_text} interactions have review text).")
    coherence = sequence_coherence(rows, meta)
    if coherence["ratio"] is not None and coherence["ratio"] < MIN_COHERENCE_RATIO and not allow_misjoin:
        raise PrepareError(
            f"Items and metadata look mis-joined: consecutive items of a sequence share a brand or "
            f"category {coherence['consecutive']:.1%} of the time, random pairs {coherence['random']:.1%} "
            f"(ratio {coherence['ratio']:.2f} < {MIN_COHERENCE_RATIO}; real Beauty: 7.9, ids permuted: 1.0; "
            f"{coherence['pairs']} pairs). The sequence file's item ids were most likely numbered with another "
            f"map than {os.path.basename(inputs.get('datamaps') or meta_path)} (e.g. another release's "
            "numbering of the same category): use the map the sequences were made with. --allow_misjoin "
            "prepares anyway.")

    users = OrderedDict.fromkeys(r["user"] for r in rows)
    per_user = {}
    for r in rows:
        per_user[r["user"]] = per_user.get(r["user"], 0) + 1
    short_users = sum(1 for n in per_user.values() if n < 4)
    if short_users:
        notes.append(f"{short_users} users have fewer than 4 interactions: leave-one-out gives them "
                     "no validation item (RecBole puts their last item in test only)")

    target = os.path.join(os.path.abspath(out), dataset)
    os.makedirs(target, exist_ok=True)
    inter_path = os.path.join(target, f"{dataset}.inter")
    item_path = os.path.join(target, f"{dataset}.item")
    _write_atomic_tsv(inter_path, INTER_COLUMNS, (
        [r["user"], r["item"], _fmt_float(r["time"]), _fmt_float(r["rating"]), r["review_text"], r["summary"]]
        for r in rows))
    empty = {"title": "", "brand": "", "categories": "", "price": None, "description": ""}
    _write_atomic_tsv(item_path, ITEM_COLUMNS, (
        [i, m["title"], m["brand"], m["categories"], _fmt_float(m["price"]), m["description"]]
        for i, m in ((i, meta.get(i, empty)) for i in items)))

    corpus = "reviews+item_text" if n_reviews_with_text else "item_text"
    counts = {"users": len(users), "items": len(items), "interactions": len(rows)}
    paper = PAPER_COUNTS.get(dataset)
    summary = OrderedDict([
        ("schema_version", SCHEMA_VERSION),
        ("dataset", dataset),
        ("category", category),
        ("form", form),
        ("raw_dir", raw_dir),
        ("inputs", {k: (os.path.basename(v) if v else None) for k, v in inputs.items()}),
        ("counts", counts),
        ("paper_counts", paper),
        ("matches_paper", (counts == paper) if paper else None),
        ("corpus", corpus),
        ("sequence_coherence", dict(coherence, min_ratio=MIN_COHERENCE_RATIO, allowed_below=bool(allow_misjoin))),
        ("corpus_note", "review text, summary and rating are in the .inter file; item text in the .item file"
         if corpus != "item_text" else
         "no review text in this input: the intent corpus is item text (title, brand, categories)"),
        ("interactions_with_review_text", n_reviews_with_text),
        ("items_with_text", items_with_text),
        ("items_missing_metadata", len(missing_meta)),
        ("items_missing_metadata_examples", missing_meta[:10]),
        ("records_read", n_read),
        ("duplicate_interactions_dropped", len(dups)),
        ("duplicate_examples", [f"{d['user']} {d['item']} (line {d['line']})" for d in dups[:10]]),
        ("bad_lines_skipped", dict(bad.counts)),
        ("bad_line_examples", bad.examples),
        ("kcore", kcore),
        ("removed_by_kcore", n_kcore),
        ("timestamp", "unixReviewTime (seconds)" if form == "amazon2014"
         else "1-based position in the user's sequence (the source has no timestamps; line order is time order)"),
        ("ordering", "per user by (timestamp, source line order); duplicates (user, item): first kept"),
        ("inter_columns", [f"{n}:{t}" for n, t in INTER_COLUMNS]),
        ("item_columns", [f"{n}:{t}" for n, t in ITEM_COLUMNS]),
        ("category_joiner", CATEGORY_JOINER),
        ("files", {"inter": os.path.basename(inter_path), "item": os.path.basename(item_path)}),
        ("notes", notes),
        ("created", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")),
    ])
    with open(os.path.join(target, f"{dataset}.prep.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, ensure_ascii=False)
        f.write("\n")

    log(f"[prepare] users {counts['users']:,}  items {counts['items']:,}  interactions {counts['interactions']:,}")
    if paper:
        verdict = "match" if counts == paper else "DIFFER from"
        log(f"[prepare] these counts {verdict} the paper's ({paper['users']:,} / {paper['items']:,} / "
            f"{paper['interactions']:,})")
    log(f"[prepare] duplicates dropped {len(dups)}; bad lines skipped {bad.total}; removed by k-core "
        f"{n_kcore}; items without metadata {len(missing_meta)}; items with text {items_with_text}")
    if coherence["ratio"] is not None:
        log(f"[prepare] consecutive items sharing brand/category: {coherence['consecutive']:.1%} vs random "
            f"{coherence['random']:.1%} (ratio {coherence['ratio']:.2f}; below {MIN_COHERENCE_RATIO} = mis-joined)")
    log(f"[prepare] corpus = {corpus}" + (" (no review text: the intent corpus is item text)"
                                          if corpus == "item_text" else ""))
    for note in notes:
        log(f"[prepare] note: {note}")
    log(f"[prepare] wrote {inter_path}, {item_path} and {dataset}.prep.json")
    return summary


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="amazon-beauty",
                   help="output dataset name (amazon-beauty | amazon-sports | amazon-toys | any with --category)")
    p.add_argument("--category", default=None,
                   help="Amazon 2014 category file stem (Beauty, Sports_and_Outdoors, Toys_and_Games); "
                        "default from --dataset")
    p.add_argument("--raw_dir", default=None,
                   help="folder with the input files; default <repo>/../shared/datasets/<dataset>/raw "
                        "(or $RECBOLE_SAEREC_SHARED/datasets/<dataset>/raw)")
    p.add_argument("--out", default="dataset",
                   help="data_path to write into: files go to <out>/<dataset>/ (default: dataset, relative to "
                        "the working directory, the dataset yamls' data_path)")
    p.add_argument("--on_bad_line", default="error", choices=["error", "skip"],
                   help="malformed input line: stop with file:line (error) or skip and count it (skip)")
    p.add_argument("--form", default="auto", choices=["auto", "amazon2014", "iclrec"],
                   help="input form (auto: amazon2014 when a reviews_<Cat> file is present, else iclrec)")
    p.add_argument("--kcore", type=int, default=0,
                   help="iteratively keep users/items with >= k interactions (0: none; the _5 files are "
                        "already 5-core; use 5 with a full reviews_<Cat>.json)")
    p.add_argument("--no_progress", action="store_true", help="no progress bars")
    p.add_argument("--allow_misjoin", action="store_true",
                   help=f"prepare even when consecutive items are no more alike than random pairs (brand/category "
                        f"ratio < {MIN_COHERENCE_RATIO}: ids numbered with another map than datamaps.json)")
    p.add_argument("--reviews_only", action="store_true",
                   help="the intent corpus is review text: prepare even when no item has any text")
    args = p.parse_args(argv)
    try:
        prepare(dataset=args.dataset, category=args.category, raw_dir=args.raw_dir, out=args.out,
                on_bad_line=args.on_bad_line, form=args.form, kcore=args.kcore,
                show_progress=not args.no_progress, allow_misjoin=args.allow_misjoin,
                reviews_only=args.reviews_only)
    except PrepareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    from recbole_saerec.cli import run_main

    sys.exit(run_main(main, prog="python -m recbole_saerec.data.prepare_amazon"))
