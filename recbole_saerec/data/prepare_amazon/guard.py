"""The mis-join guard: refuse sequences whose item ids were numbered with another map than the one given."""
import os

from recbole_saerec.data.prepare_amazon.schema import CATEGORY_JOINER, PrepareError

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


def check_coherence(rows, meta, source_name, allow_misjoin=False):
    """sequence_coherence, refused below MIN_COHERENCE_RATIO unless allowed. `source_name`: the id map's file."""
    coherence = sequence_coherence(rows, meta)
    if coherence["ratio"] is not None and coherence["ratio"] < MIN_COHERENCE_RATIO and not allow_misjoin:
        raise PrepareError(
            f"Items and metadata look mis-joined: consecutive items of a sequence share a brand or "
            f"category {coherence['consecutive']:.1%} of the time, random pairs {coherence['random']:.1%} "
            f"(ratio {coherence['ratio']:.2f} < {MIN_COHERENCE_RATIO}; real Beauty: 7.9, ids permuted: 1.0; "
            f"{coherence['pairs']} pairs). The sequence file's item ids were most likely numbered with another "
            f"map than {os.path.basename(source_name)} (e.g. another release's "
            "numbering of the same category): use the map the sequences were made with. --allow_misjoin "
            "prepares anyway.")
    return coherence
