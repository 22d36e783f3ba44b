"""Input form ``iclrec``: the ICLRec/S3-Rec/P5 sequence file + datamaps.json, item text from RecBole's item file."""
import csv
import json
import os

from recbole_saerec.data.prepare_amazon.lines import (BadLines, clean_text, decode_line, iter_lines, join_categories,
                                                      open_text, to_float)
from recbole_saerec.data.prepare_amazon.schema import PrepareError


def read_datamaps(maps_path):
    """P5's datamaps.json (at least 'id2user' and 'id2item')."""
    try:
        with open_text(maps_path) as f:
            maps = json.load(f)
        maps["id2user"], maps["id2item"]  # noqa: B018 - both must be there
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PrepareError(f"{maps_path}: cannot read P5 datamaps (need 'id2user' and 'id2item'): {exc}") from exc
    return maps


def read_item_attributes(path):
    """S3-Rec's item2attributes.json: sequence-file item id -> list of attribute ids."""
    try:
        with open_text(path) as f:
            attributes = json.load(f)
        if not isinstance(attributes, dict) or not all(isinstance(v, list) for v in attributes.values()):
            raise ValueError("expected {item id: [attribute id, ...]}")
    except (OSError, ValueError) as exc:
        raise PrepareError(f"{path}: cannot read S3-Rec's item attributes: {exc}") from exc
    return attributes


def read_iclrec(seq_path, maps_path, bad, show_progress=True, maps=None):
    """ICLRec sequences -> rows with position timestamps, ids mapped to reviewerID/ASIN."""
    maps = maps or read_datamaps(maps_path)
    id2user, id2item = maps["id2user"], maps["id2item"]
    rows, seen_users = [], {}
    for lineno, line in iter_lines(seq_path, show_progress, desc=f"sequences {os.path.basename(seq_path)}"):
        text = decode_line(line, seq_path, lineno, bad)
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


def _decoded_lines(path, bad, where):
    """The file's lines as text under the --on_bad_line policy (the header always strictly);
    ``where[0]`` follows the line number in the file, which skipped lines keep right."""
    header = BadLines("error")
    for lineno, raw in iter_lines(path, show_progress=False):
        where[0] = lineno
        line = (header if lineno == 1 else bad).decode(raw, path, lineno)
        if line is not None:
            yield line


def read_recbole_item_file(path, wanted, bad):
    """RecBole atomic item file keyed by ASIN (title, brand, categories, price...)."""
    meta = {}
    where = [0]
    reader = csv.reader(_decoded_lines(path, bad, where), delimiter="\t")
    try:
        header = [h.split(":")[0] for h in next(reader)]
    except StopIteration:
        return meta
    if "item_id" not in header:
        raise PrepareError(f"{path}:1: header has no item_id column: {header}")
    col = {name: i for i, name in enumerate(header)}
    for row in reader:
        lineno = where[0]
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
