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
                ``Amazon_<Cat>.item`` (item text keyed by ASIN) and S3-Rec's
                ``<Cat>_item2attributes.json`` (brand/category ids per item, keyed like the
                sequences). No review text: the text corpus is item text. A sequence file numbered
                by another release's map, or an item file whose rows are shifted against their
                ASINs, joins items to other items' text; the mis-join guards refuse both.

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

The package, read in this order: ``schema`` (the column contract, the known
datasets), ``inputs`` (where the raw files are, which form), ``lines`` (reading lines and
fields, the bad-line policy), ``amazon2014`` and ``iclrec`` (one reader each), ``guard``
(the mis-join guards), ``write`` (the atomic files, the summary), ``pipeline`` (``prepare``,
start to end), ``cli`` (the flags).
"""
from recbole_saerec.data.prepare_amazon.cli import main
from recbole_saerec.data.prepare_amazon.guard import (MIN_ATTRIBUTE_AGREEMENT, MIN_COHERENCE_PAIRS, MIN_COHERENCE_RATIO,
                                                      attribute_agreement, sequence_coherence)
from recbole_saerec.data.prepare_amazon.inputs import default_raw_dir, locate_inputs, shared_dir
from recbole_saerec.data.prepare_amazon.lines import BadLines, clean_text, join_categories, to_float
from recbole_saerec.data.prepare_amazon.pipeline import dedup_and_order, kcore_filter, prepare
from recbole_saerec.data.prepare_amazon.schema import (CATEGORIES, CATEGORY_JOINER, INTER_COLUMNS, ITEM_COLUMNS,
                                                       PAPER_COUNTS, PrepareError)

__all__ = ["BadLines", "CATEGORIES", "CATEGORY_JOINER", "INTER_COLUMNS", "ITEM_COLUMNS", "MIN_ATTRIBUTE_AGREEMENT",
           "MIN_COHERENCE_PAIRS", "MIN_COHERENCE_RATIO", "PAPER_COUNTS", "PrepareError", "attribute_agreement",
           "clean_text", "dedup_and_order", "default_raw_dir", "join_categories", "kcore_filter", "locate_inputs",
           "main", "prepare", "sequence_coherence", "shared_dir", "to_float"]
