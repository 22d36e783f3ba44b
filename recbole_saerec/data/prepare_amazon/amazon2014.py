"""Input form ``amazon2014``: the review dump (reviews_<Cat>_5.json[.gz]) and its item metadata (meta_<Cat>)."""
import ast
import json
import os
import re

from recbole_saerec.data.prepare_amazon.lines import clean_text, decode_line, iter_lines, join_categories, to_float


def read_reviews(path, bad, show_progress=True):
    """-> list of dicts (user, item, time, line, rating, review_text, summary), in file order."""
    rows = []
    for lineno, line in iter_lines(path, show_progress, desc=f"reviews {os.path.basename(path)}"):
        text = decode_line(line, path, lineno, bad)
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
        text = decode_line(line, path, lineno, bad)
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
