"""Intent labels from evidence: named by what the intent's items share, scored, and hidden when unreadable."""
import numpy as np

from recbole_saerec.analysis import explain
from recbole_saerec.analysis.checkpoints import ItemText
from recbole_saerec.analysis.labels import label_intents, label_settings, stem

# items 1-12 (row 0 = padding): four nail polishes, two shampoos, a razor, a comb, four others
ITEMS = {
    "p1": ("OPI Crackle Nail Polish Red", "Beauty | Makeup | Nails | Nail Polish"),
    "p2": ("Essie Crackle Nail Polish Blue", "Beauty | Makeup | Nails | Nail Polish"),
    "p3": ("Zoya Crackle Nail Lacquer", "Beauty | Makeup | Nails | Nail Polish"),
    "p4": ("Sally Hansen Nail Polish Pink", "Beauty | Makeup | Nails | Nail Polish"),
    "s1": ("Herbal Essences Shampoo", "Beauty | Hair Care | Shampoos"),
    "s2": ("Pantene Shampoo Smooth", "Beauty | Hair Care | Shampoos"),
    "r1": ("Gillette Razor Blades", "Beauty | Shave | Razors"),
    "c1": ("Wide Tooth Comb", "Beauty | Hair Care | Combs"),
    "o1": ("Dove Beauty Bar Soap", "Beauty | Bath & Body | Soaps"),
    "o2": ("Nivea Body Lotion", "Beauty | Bath & Body | Lotions"),
    "o3": ("Chanel Perfume Spray", "Beauty | Fragrance"),
    "o4": ("Kabuki Makeup Brush", "Beauty | Makeup | Brushes"),
}
TOKENS = [None] + list(ITEMS)


def item_text():
    rows = {t: {"item_id": t, "title": title, "categories": cats} for t, (title, cats) in ITEMS.items()}
    return ItemText(["item_id", "title", "categories"], rows)


def test_labels_name_what_the_items_share_and_score_readability():
    act = np.zeros((len(TOKENS), 3))
    act[1:4, 0] = [1.0, 0.9, 0.8]            # intent 0: the three crackle polishes
    act[[5, 7, 11], 1] = [1.0, 1.0, 1.0]     # intent 1: a shampoo, a razor, a perfume: nothing shared
    act[[1, 2, 4], 2] = [0.5, 0.5, 0.5]      # intent 2: polishes, but its MI words say 'ocean'
    catalogue = [{"words": ["crackle", "shatter", "nail"]}, {"words": ["blue", "hair"]},
                 {"words": ["boat", "sea", "ocean"]}]
    s = label_settings({"label_top_items": 5})
    labels = label_intents(act, TOKENS, item_text(), catalogue, s)
    a, b, c = labels
    assert a["category"] == "Nail Polish" and a["words"][0] == "crackle" and a["name"].startswith("Nail Polish: crackle")
    assert a["coverage"] == 1.0 and set(a["mi_confirmed"]) >= {"crackle", "nail"} and a["readable"]
    assert b["name"] == "" and b["readability"] == 0 and not b["readable"]
    # named by its items, but none of its MI words is what they share: half the score, hidden
    assert c["category"] == "Nail Polish" and c["mi_confirmed"] == [] and c["readability"] == 0.5 and not c["readable"]
    everything = label_intents(act, TOKENS, item_text(), catalogue, label_settings({"label_top_items": 5,
                                                                                   "label_min_readability": 0}))
    assert all(x["readable"] for x in everything)


def test_plurals_stem_to_their_singular_not_to_substrings():
    assert stem("nails") == "nail" and stem("brushes") == "brush" and stem("berries") == "berry"
    assert stem("snail") == "snail" and stem("gloss") == "gloss" and stem("bottles") == "bottle"


def test_explanation_text_shows_readable_intents_and_counts_the_hidden():
    entry = lambda r, ok: {"row": r, "words": [f"w{r}"], "summary": "", "steer_weight": 1.0, "score": 0.5,  # noqa
                           "activation": 0.1, "label": f"Name {r}" if ok else "", "readability": 0.9 if ok else 0.1,
                           "readable": ok}
    e = {"user": "u", "sequence_length": 3, "history": [{"item": "p1", "title": "t"}],
         "target": {"item": "p2", "title": "t2", "rank": 4}, "recommendations": [],
         "personal_intents": [entry(1, True), entry(2, False), entry(3, True)], "public_intents": [entry(4, False)],
         "connections": [], "fusion": {"self": 1 / 3, "personal": 1 / 3, "public": 1 / 3}, "fusion_rule": "mean"}
    text = explain.format_explanation(e)
    assert "Name 1" in text and "Name 3" in text and "#2 " not in text and "#4 " not in text
    assert "[1 of 3 personal intents hidden" in text and "[1 of 1 public intents hidden" in text
    assert "Fusion weights" not in text
