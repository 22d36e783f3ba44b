"""What a preparation writes: the atomic .inter / .item files, the <dataset>.prep.json summary, the log lines."""
import csv
import datetime
import json
import os
from collections import OrderedDict

from recbole_saerec.data.prepare_amazon.guard import MIN_ATTRIBUTE_AGREEMENT, MIN_COHERENCE_RATIO
from recbole_saerec.fileio import atomic_path
from recbole_saerec.data.prepare_amazon.schema import (CATEGORY_JOINER, INTER_COLUMNS, ITEM_COLUMNS, PAPER_COUNTS,
                                                       SCHEMA_VERSION)


def _fmt_float(v):
    if v is None:
        return ""
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def _write_atomic_tsv(path, columns, rows):
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t", quotechar='"', quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        w.writerow([f"{name}:{typ}" for name, typ in columns])
        w.writerows(rows)


def write_atomic_files(target, dataset, rows, items, meta):
    """<target>/<dataset>.inter (rows) and .item (one row per item; no metadata: empty text). Returns both paths."""
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
    return inter_path, item_path


def build_summary(dataset, category, form, raw_dir, inputs, counts, coherence, allow_misjoin, facts, bad, kcore,
                  notes, paths, attribute_join=None):
    """The <dataset>.prep.json content. `facts`: n_reviews_with_text, items_with_text, missing_meta, n_read,
    dups, n_kcore (what the pipeline counted on the way)."""
    corpus = "reviews+item_text" if facts["n_reviews_with_text"] else "item_text"
    paper = PAPER_COUNTS.get(dataset)
    dups, missing_meta = facts["dups"], facts["missing_meta"]
    return OrderedDict([
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
        ("attribute_join", None if attribute_join is None else
         dict(attribute_join, min_sharing=MIN_ATTRIBUTE_AGREEMENT, allowed_below=bool(allow_misjoin))),
        ("corpus_note", "review text, summary and rating are in the .inter file; item text in the .item file"
         if corpus != "item_text" else
         "no review text in this input: the intent corpus is item text (title, brand, categories)"),
        ("interactions_with_review_text", facts["n_reviews_with_text"]),
        ("items_with_text", facts["items_with_text"]),
        ("items_missing_metadata", len(missing_meta)),
        ("items_missing_metadata_examples", missing_meta[:10]),
        ("records_read", facts["n_read"]),
        ("duplicate_interactions_dropped", len(dups)),
        ("duplicate_examples", [f"{d['user']} {d['item']} (line {d['line']})" for d in dups[:10]]),
        ("bad_lines_skipped", dict(bad.counts)),
        ("bad_lines_replaced", dict(bad.replaced)),
        ("bad_line_examples", bad.examples),
        ("kcore", kcore),
        ("removed_by_kcore", facts["n_kcore"]),
        ("timestamp", "unixReviewTime (seconds)" if form == "amazon2014"
         else "1-based position in the user's sequence (the source has no timestamps; line order is time order)"),
        ("ordering", "per user by (timestamp, source line order); duplicates (user, item): first kept"),
        ("inter_columns", [f"{n}:{t}" for n, t in INTER_COLUMNS]),
        ("item_columns", [f"{n}:{t}" for n, t in ITEM_COLUMNS]),
        ("category_joiner", CATEGORY_JOINER),
        ("files", {"inter": os.path.basename(paths[0]), "item": os.path.basename(paths[1])}),
        ("notes", notes),
        ("created", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")),
    ])


def write_summary(target, summary):
    with open(os.path.join(target, f"{summary['dataset']}.prep.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, ensure_ascii=False)
        f.write("\n")


def log_summary(summary, paths, log):
    """The closing log lines, all read from the summary."""
    counts, paper, coherence = summary["counts"], summary["paper_counts"], summary["sequence_coherence"]
    log(f"[prepare] users {counts['users']:,}  items {counts['items']:,}  interactions {counts['interactions']:,}")
    if paper:
        verdict = "match" if counts == paper else "DIFFER from"
        log(f"[prepare] these counts {verdict} the paper's ({paper['users']:,} / {paper['items']:,} / "
            f"{paper['interactions']:,})")
    log(f"[prepare] duplicates dropped {summary['duplicate_interactions_dropped']}; bad lines skipped "
        f"{sum(summary['bad_lines_skipped'].values())}, kept with U+FFFD for bad bytes "
        f"{sum(summary['bad_lines_replaced'].values())}; removed by k-core {summary['removed_by_kcore']}; "
        f"items without metadata {summary['items_missing_metadata']}; items with text {summary['items_with_text']}")
    if coherence["ratio"] is not None:
        log(f"[prepare] consecutive items sharing brand/category: {coherence['consecutive']:.1%} vs random "
            f"{coherence['random']:.1%} (ratio {coherence['ratio']:.2f}; below {MIN_COHERENCE_RATIO} = mis-joined)")
    join = summary["attribute_join"]
    if join and join["sharing"] is not None:
        log(f"[prepare] items sharing an attribute id that share a brand/category name: {join['sharing']:.1%} vs "
            f"random {join['random']:.1%} (below {MIN_ATTRIBUTE_AGREEMENT:.0%} = text attached to the wrong items)")
    corpus = summary["corpus"]
    log(f"[prepare] corpus = {corpus}" + (" (no review text: the intent corpus is item text)"
                                          if corpus == "item_text" else ""))
    for note in summary["notes"]:
        log(f"[prepare] note: {note}")
    log(f"[prepare] wrote {paths[0]}, {paths[1]} and {summary['dataset']}.prep.json")
