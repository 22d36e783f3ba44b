"""One preparation, start to end: read the form's rows, order and filter them, join item text, check, write."""
import os
from collections import OrderedDict

from recbole_saerec.cli import plain_name_problem
from recbole_saerec.data.prepare_amazon.amazon2014 import read_meta, read_reviews
from recbole_saerec.data.prepare_amazon.guard import check_attribute_join, check_coherence
from recbole_saerec.data.prepare_amazon.iclrec import (read_datamaps, read_iclrec, read_item_attributes,
                                                       read_recbole_item_file)
from recbole_saerec.data.prepare_amazon.inputs import category_for, default_raw_dir, locate_inputs
from recbole_saerec.data.prepare_amazon.lines import BadLines
from recbole_saerec.data.prepare_amazon.schema import PrepareError
from recbole_saerec.data.prepare_amazon.write import build_summary, log_summary, write_atomic_files, write_summary

TEXT_FIELDS = ("title", "brand", "categories", "description")


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


def _interactions(form, inputs, bad, kcore, show_progress, raw_dir, maps):
    """The form's rows, de-duplicated, ordered and k-cored. Returns (rows, facts)."""
    if form == "amazon2014":
        rows = read_reviews(inputs["reviews"], bad, show_progress)
    else:
        rows = read_iclrec(inputs["sequences"], inputs["datamaps"], bad, show_progress, maps=maps)
    n_read = len(rows)
    rows, dups = dedup_and_order(rows)
    rows, n_kcore = kcore_filter(rows, kcore)
    if not rows:
        raise PrepareError(f"No interactions left from {raw_dir} (read {n_read}, duplicates {len(dups)}, "
                           f"bad lines skipped {bad.total}, removed by --kcore={kcore}: {n_kcore}).")
    return rows, {"n_read": n_read, "dups": dups, "n_kcore": n_kcore}


def _expected_meta(form, category):
    return f"meta_{category}.json[.gz]" if form == "amazon2014" else f"Amazon_{category}.item"


def _item_meta(form, inputs, items, bad, show_progress, category, raw_dir, notes):
    """{item: text fields} from the form's metadata file (none: {} and a note). Returns (meta, its path)."""
    meta_path = inputs.get("meta") if form == "amazon2014" else inputs.get("item_file")
    if not meta_path:
        notes.append(f"no item metadata file ({_expected_meta(form, category)}) in {raw_dir}: item text is empty")
        return {}, None
    if form == "amazon2014":
        return read_meta(meta_path, set(items), bad, show_progress), meta_path
    return read_recbole_item_file(meta_path, set(items), bad), meta_path


def _text_facts(rows, items, meta, meta_path, form, category, raw_dir, reviews_only):
    """How much text the corpus will have; no item text at all is refused unless the corpus is reviews."""
    items_with_text = sum(1 for i in items if any(meta.get(i, {}).get(f) for f in TEXT_FIELDS))
    n_reviews_with_text = sum(1 for r in rows if r["review_text"] or r["summary"])
    if not items_with_text and not reviews_only:
        expected = _expected_meta(form, category)
        raise PrepareError(
            "No item has any text (title, brand, categories, description): "
            + (f"{os.path.basename(meta_path)} matched none of the {len(items)} items." if meta_path else
               f"there is no item metadata file ({expected}) in {raw_dir}.")
            + f" Put {expected} there, or pass --reviews_only when the intent corpus is review text "
              f"({n_reviews_with_text} interactions have review text).")
    return {"items_with_text": items_with_text, "n_reviews_with_text": n_reviews_with_text,
            "missing_meta": [i for i in items if i not in meta]}


def _attribute_join(inputs, maps, meta, meta_path, allow_misjoin, notes):
    """The catalogue join checked against S3-Rec's item attributes (guard.py); None without that file."""
    if not inputs.get("attributes") or not meta:
        if maps is not None and meta:
            notes.append("no <Cat>_item2attributes.json beside the sequences: the item text's join is checked "
                         "by sequence coherence alone")
        return None
    return check_attribute_join(maps["id2item"], read_item_attributes(inputs["attributes"]), meta,
                                os.path.basename(inputs["attributes"]), os.path.basename(meta_path), allow_misjoin)


def _short_user_note(rows):
    per_user = {}
    for r in rows:
        per_user[r["user"]] = per_user.get(r["user"], 0) + 1
    short_users = sum(1 for n in per_user.values() if n < 4)
    if not short_users:
        return []
    return [f"{short_users} users have fewer than 4 interactions: leave-one-out gives them "
            "no validation item (RecBole puts their last item in test only)"]


def prepare(dataset="amazon-beauty", category=None, raw_dir=None, out="dataset", on_bad_line="error",
            form="auto", kcore=0, show_progress=True, log=print, allow_misjoin=False, reviews_only=False):
    """Prepare one Amazon category. Returns the summary dict (also written as <dataset>.prep.json)."""
    problem = plain_name_problem("dataset", dataset, folder_key="out")  # it names the output folder and files
    if problem:
        raise PrepareError(problem)
    category = category_for(dataset, category)
    raw_dir = os.path.abspath(raw_dir or default_raw_dir(dataset))
    form, inputs = locate_inputs(raw_dir, category, form)
    bad = BadLines(on_bad_line)
    notes = []
    log(f"[prepare] {dataset} <- {category} ({form}) from {raw_dir}")

    maps = read_datamaps(inputs["datamaps"]) if form == "iclrec" else None
    rows, facts = _interactions(form, inputs, bad, kcore, show_progress, raw_dir, maps)
    items = list(OrderedDict.fromkeys(r["item"] for r in rows))
    meta, meta_path = _item_meta(form, inputs, items, bad, show_progress, category, raw_dir, notes)
    facts.update(_text_facts(rows, items, meta, meta_path, form, category, raw_dir, reviews_only))
    attribute_join = _attribute_join(inputs, maps, meta, meta_path, allow_misjoin, notes)
    coherence = check_coherence(rows, meta, inputs.get("datamaps") or meta_path, allow_misjoin)
    notes += _short_user_note(rows)

    target = os.path.join(os.path.abspath(out), dataset)
    paths = write_atomic_files(target, dataset, rows, items, meta)
    counts = {"users": len(OrderedDict.fromkeys(r["user"] for r in rows)), "items": len(items),
              "interactions": len(rows)}
    summary = build_summary(dataset, category, form, raw_dir, inputs, counts, coherence, allow_misjoin, facts,
                            bad, kcore, notes, paths, attribute_join)
    write_summary(target, summary)
    log_summary(summary, paths, log)
    return summary
