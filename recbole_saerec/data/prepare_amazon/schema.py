"""The contract of the prepared files (columns, category joiner, summary schema), the known datasets, the error."""

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


class PrepareError(Exception):
    """Input that cannot be prepared (missing files, malformed lines under --on_bad_line=error)."""
