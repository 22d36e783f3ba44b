"""The mis-join guards: refuse item text attached to the wrong items, however the counts look.

Two joins can go wrong without changing a single count, and each has its own check:

* **The catalogue join** (item id -> ASIN -> item text): checked against an independent key
  where one exists. S3-Rec's ``<Cat>_item2attributes.json`` lists each item's brand and category
  ids, keyed by the sequence file's item ids; the item text is reached through
  ``datamaps.json``'s id2item (id -> ASIN) and the ``.item`` file (ASIN -> text). Items that share
  an attribute id share a brand or category name in their text almost always (real Beauty, Toys,
  Sports: 99.8-100%); a catalogue whose rows are rotated, even by one row, or relabelled breaks
  that item by item (one-step rotation: 12-20%). Refused below ``MIN_ATTRIBUTE_AGREEMENT``.
* **The sequence numbering** (sequence file ids -> datamaps.json), and the catalogue join where
  no attribute file exists: consecutive items of real shopping sequences share a brand or most
  specific category far more often than random pairs (real 6.8-8.4x). Ids numbered with another
  map, or a catalogue shifted by a few rows, fall towards 1x; a ONE-step shift keeps part of the
  likeness, because neighbouring ASINs often share a brand (measured 1.7-2.5x). Refused below
  ``MIN_COHERENCE_RATIO``, set between the worst one-step shift and the weakest real dataset.

The measurements behind both thresholds are in docs/hardening.md.
"""
import os
import random

from recbole_saerec.data.prepare_amazon.schema import CATEGORY_JOINER, PrepareError

MIN_COHERENCE_RATIO = 4.0   # one-step shifts: 1.70-2.52; real Beauty / Toys / Sports: 7.85 / 6.76 / 8.39
MIN_COHERENCE_PAIRS = 200   # fewer pairs with metadata on both sides: too noisy to judge
MIN_ATTRIBUTE_AGREEMENT = 0.5  # real: 0.998-1.0; catalogue rows shifted by one: 0.12-0.20
COMMON_SHARE = 0.2          # names or attribute ids on more items than this (top-level categories) say nothing


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
            f"(ratio {coherence['ratio']:.2f} < {MIN_COHERENCE_RATIO}; real Amazon data 6.8-8.4, ids permuted 1.0, "
            f"shifted by one 1.7-2.5; {coherence['pairs']} pairs). The sequence file's item ids were most likely "
            f"numbered with another map than {os.path.basename(source_name)} (e.g. another release's numbering of "
            "the same category), or the item text is shifted against its ids: use the files that were made "
            "together. --allow_misjoin prepares anyway.")
    return coherence


def _item_names(m):
    """Every brand and category name of one item's text, lower-cased."""
    names = {m["brand"].lower()} if m.get("brand") else set()
    names.update(c.strip().lower() for c in (m.get("categories") or "").split(CATEGORY_JOINER) if c.strip())
    return names


def _drop_common(sets):
    """The sets without the values that more than COMMON_SHARE of them hold; empty sets dropped."""
    counts = {}
    for values in sets.values():
        for v in values:
            counts[v] = counts.get(v, 0) + 1
    common = {v for v, n in counts.items() if n > COMMON_SHARE * len(sets)}
    return {k: values - common for k, values in sets.items() if values - common}


def attribute_agreement(id2item, item_attributes, meta, seed=0):
    """How often items that share an attribute id share a brand/category name in their text.

    ``id2item``: sequence-file item id -> ASIN (datamaps.json); ``item_attributes``: the same ids ->
    attribute ids (S3-Rec's item2attributes.json); ``meta``: ASIN -> item text fields. Each item
    with both is paired with a random item sharing its rarest attribute id (usually the brand or
    the most specific category), and with a random item. Returns {"items", "pairs", "sharing",
    "random"} (the shares of alike pairs; None when fewer than MIN_COHERENCE_PAIRS pairs).
    """
    names = _drop_common({str(i): _item_names(meta.get(asin, {})) for i, asin in id2item.items()})
    attrs = _drop_common({str(i): {str(a) for a in (a_ids or [])} for i, a_ids in item_attributes.items()
                          if str(i) in names})
    items = sorted(attrs, key=lambda i: (len(i), i))
    holders = {}
    for i in items:
        for a in attrs[i]:
            holders.setdefault(a, []).append(i)
    rng = random.Random(seed)
    sharing = chance = pairs = 0
    for i in items:
        rarest = min(attrs[i], key=lambda a: (len(holders[a]), a))
        if len(holders[rarest]) < 2:
            continue
        j = i
        while j == i:
            j = rng.choice(holders[rarest])
        k = i
        while k == i:
            k = rng.choice(items)
        pairs += 1
        sharing += bool(names[i] & names[j])
        chance += bool(names[i] & names[k])
    judged = pairs >= MIN_COHERENCE_PAIRS
    return {"items": len(items), "pairs": pairs, "sharing": round(sharing / pairs, 4) if judged else None,
            "random": round(chance / pairs, 4) if judged else None}


def check_attribute_join(id2item, item_attributes, meta, attributes_name, item_file_name, allow_misjoin=False):
    """attribute_agreement, refused below MIN_ATTRIBUTE_AGREEMENT unless allowed."""
    agreement = attribute_agreement(id2item, item_attributes, meta)
    if agreement["sharing"] is not None and agreement["sharing"] < MIN_ATTRIBUTE_AGREEMENT and not allow_misjoin:
        raise PrepareError(
            f"The item text is attached to the wrong items: items that share an attribute id in {attributes_name} "
            f"share a brand or category name in {item_file_name} only {agreement['sharing']:.1%} of the time "
            f"(random pairs {agreement['random']:.1%}; real catalogues 99.8-100%, refused below "
            f"{MIN_ATTRIBUTE_AGREEMENT:.0%}; {agreement['pairs']} pairs). The rows of {item_file_name} are most "
            f"likely shifted or relabelled against their ASINs, or datamaps.json comes from another release. "
            "--allow_misjoin prepares anyway.")
    return agreement
