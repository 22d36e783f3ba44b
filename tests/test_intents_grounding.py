"""The data-grounded judge (recbole_saerec.intents.grounding): detection AUROC on hand-built cases
with a known answer, the fragment guard on hand-made word lists, the held-out split, keep rules."""
import numpy as np
import pytest
import scipy.sparse as sp

from recbole_saerec.intents.grounding import (Lexicon, apply_fragment_guard, detection_score, fragment_reason,
                                              fragment_words, grounding_scores, split_activating)
from recbole_saerec.intents.judge import keep_rule, parse_keep_rule


# ----------------------------------------------------------------------------- detection
def test_detection_auroc_and_accuracy_known_answers():
    # pairs (pos > neg): 0.9 beats 3, 0.8 beats 3, 0.3 beats 1 -> 7 of 9
    out = detection_score([0.9, 0.8, 0.3], [0.1, 0.4, 0.5])
    assert out["auroc"] == pytest.approx(7 / 9) and (out["n_pos"], out["n_neg"]) == (3, 3)
    assert detection_score([1, 2], [0, 0.5])["auroc"] == 1.0
    assert detection_score([0, 0.5], [1, 2])["auroc"] == 0.0
    assert detection_score([0.5], [0.5])["auroc"] == 0.5  # a tie counts half
    assert np.isnan(detection_score([], [0.1])["auroc"])
    # with a threshold: accuracy of "activating iff score > threshold"
    out = detection_score([0.9, 0.8, 0.3], [0.1, 0.4, 0.5], threshold=0.45)
    assert (out["tp"], out["tn"]) == (2, 2) and out["accuracy"] == pytest.approx(4 / 6)


def test_probe_verification_is_the_shared_detection_score():
    from recbole_saerec.analysis import probe as P

    mask = np.array([False, True, True, False, False, False])
    pos = np.array([[1, 2, 3], [1, 4, 5], [3, 4, 5]])
    neg = np.array([[3, 4, 5], [2, 3, 4], [1, 2, 5]])
    out = P.verify_concept(mask, pos, neg, base_rate=0.2)
    ref = detection_score(P.presence(mask, pos), P.presence(mask, neg), threshold=0.2)
    assert out["confidence"] == ref["accuracy"] and out["auroc"] == ref["auroc"]


# ----------------------------------------------------------------------------- fragments
CORPUS = ["mascara mascara lengthening mascara", "sausage sauce sauna", "actually actually actual",
          "lip gloss lips lipstick", "hair shampoo hair", "cookie cookies", "sun sunscreen sunscreen"]


def test_fragment_reasons_on_hand_made_words():
    lex = Lexicon(CORPUS)
    assert lex.whole("mascara") == 3 and lex.inside("lip") == 1  # lipstick; "lips" is an inflection
    assert fragment_reason("ara", lex).startswith("not a corpus word")  # never a whole token
    assert fragment_reason("hr", lex) == "too short"
    assert fragment_reason("brr", lex) == "no vowel"
    assert fragment_reason("x2y", lex) == "not letters"
    for word in ("mascara", "hair", "shampoo", "lip", "sun", "cookie"):
        assert fragment_reason(word, lex) is None, word
    # a piece: a whole token, but far rarer than the longer words it starts
    lex = Lexicon(["sau"] + ["sausage sauce sauna"] * 30)
    assert fragment_reason("sau", lex).startswith("sub-word piece")
    assert fragment_reason("sau", lex, piece_ratio=0.001) is None


def test_fragment_guard_turns_mostly_fragment_latents_to_no():
    lex = Lexicon(CORPUS)
    words = [["sau", "actu", "ara", "hair"], ["hair", "shampoo", "ara", "lip"], ["mascara", "lip"]]
    frags = fragment_words(words, lex)
    assert frags == [["sau", "actu", "ara"], ["ara"], []]
    verdicts = [{"verdict": "Yes", "summary": "x"}, {"verdict": "Yes"}, {"verdict": "Maybe"}]
    out = apply_fragment_guard(verdicts, frags, words, max_fraction=0.5)
    assert [v["verdict"] for v in out] == ["No", "Yes", "Maybe"]
    assert out[0]["verdict_before_guard"] == "Yes" and out[0]["fragment_fraction"] == 0.75
    assert verdicts[0]["verdict"] == "Yes"  # inputs untouched


# ----------------------------------------------------------------------------- grounding score
def _topic_case(n_per=12, seed=0):
    """3 orthogonal topics in R^6; texts = topic + small noise; latent t fires on topic t's texts."""
    rng = np.random.default_rng(seed)
    topics = np.eye(6)[:3]
    x, rows, cols, vals = [], [], [], []
    for t in range(3):
        for i in range(n_per):
            x.append(topics[t] + 0.05 * rng.normal(size=6))
            rows.append(len(x) - 1)
            cols.append(t)
            vals.append(float(n_per - i))  # activation falls with i: rank = i
    codes = sp.csr_matrix((vals, (rows, cols)), shape=(len(x), 3))
    return np.asarray(x, np.float32), codes, topics.astype(np.float32)


def test_grounding_auroc_right_words_vs_wrong_words():
    x, codes, topics = _topic_case()
    right = [topics[[0]], topics[[1]], topics[[2]]]
    out = grounding_scores(codes, x, [0, 1, 2], right, topics, n_examples=5, n_background=30, seed=0)
    assert [r["detection_auc"] for r in out] == [1.0, 1.0, 1.0]
    assert all(r["n_pos"] == r["n_neg"] == 5 and r["n_hard"] >= 1 for r in out)
    # latent 1 described by topic 2's word: its own texts score below the negatives from topic 2
    wrong = [topics[[0]], topics[[2]], topics[[2]]]
    out = grounding_scores(codes, x, [0, 1, 2], wrong, topics, n_examples=5, n_background=30, seed=0)
    assert out[1]["detection_auc"] < 0.5 and out[0]["detection_auc"] == 1.0
    # no usable word or too few activating texts: no score
    out = grounding_scores(codes, x, [0], [np.zeros((0, 6), np.float32)], topics, n_examples=5)
    assert out[0]["detection_auc"] is None
    out = grounding_scores(codes, x, [0], right[:1], topics, n_examples=1, min_held=3)
    assert out[0]["detection_auc"] is None


def test_split_alternates_ranks_and_is_disjoint():
    fit, held = split_activating([9, 8, 7, 6, 5, 4, 3], 3)
    assert fit.tolist() == [9, 7, 5] and held.tolist() == [8, 6, 4]


def test_held_out_texts_are_scored_and_never_fit():
    """Latent 0's fit half (even ranks) is about topic 0, its held-out half (odd ranks) about topic 1.

    Its words name both topics. Fitted on the fit half, the explanation is topic 0's word,
    so the held-out topic-1 texts are NOT retrieved (AUROC < 0.5 against random topic-2/0
    texts). Were the held-out texts used for fitting, topic 1's word would weigh in and
    the score would rise.
    """
    rng = np.random.default_rng(1)
    e = np.eye(6, dtype=np.float32)
    x, rows, vals = [], [], []
    for r in range(20):  # latent 0's activating texts, rank r
        x.append(e[0 if r % 2 == 0 else 1] + 0.05 * rng.normal(size=6))
        rows.append(r)
        vals.append(20.0 - r)
    for _ in range(20):  # inactive texts: topic 0 and topic 2
        x.append(e[rng.choice([0, 2])] + 0.05 * rng.normal(size=6))
    codes = sp.csr_matrix((vals, (rows, [0] * 20)), shape=(len(x), 2))
    directions = np.stack([e[0], e[2]])
    words = [np.stack([e[0], e[1]])]
    out = grounding_scores(codes, np.asarray(x, np.float32), [0], words, directions, n_examples=10,
                           n_background=40, seed=0)[0]
    assert out["fit"] == list(range(0, 20, 2)) and out["held"] == list(range(1, 20, 2))
    assert not set(out["fit"]) & set(out["held"])
    assert out["detection_auc"] < 0.5
    # the same words, fitted on a half that is about topic 1 too: the held-out texts are found
    x2 = np.asarray(x, np.float32).copy()
    x2[0:20:2] = e[1] + 0.05 * rng.normal(size=(10, 6))
    again = grounding_scores(codes, x2, [0], words, directions, n_examples=10, n_background=40, seed=0)[0]
    assert again["detection_auc"] > 0.9


# ----------------------------------------------------------------------------- keep rules
def test_grounded_keep_rules():
    assert keep_rule("No", "grounded", grounded=True) and not keep_rule("Yes", "grounded", grounded=False)
    assert keep_rule("Yes", "grounded+yes", grounded=True) and not keep_rule("Probably", "grounded+yes", grounded=True)
    assert keep_rule("Probably", "probably+grounded", grounded=True)
    assert not keep_rule("Yes", "yes+grounded", grounded=False)
    assert keep_rule("Yes", "yes") and keep_rule("Yes", "yes", grounded=False)  # verdict rules ignore it
    with pytest.raises(ValueError, match="needs the grounding score"):
        keep_rule("Yes", "grounded")
    for bad in ("grounded+none", "yes+maybe", "ground", ""):
        with pytest.raises(ValueError, match="intent_keep"):
            parse_keep_rule(bad)


def test_kept_none_hint_never_repeats_the_rule_in_force():
    from recbole_saerec.intents.build.grounding_stage import widen_hint

    assert "--intent_keep=probably" not in widen_hint({"intent_keep": "probably"}, "probably")
    hint = widen_hint({}, "probably")
    assert "--intent_keep=maybe" in hint and "--intent_keep=none" in hint and "=yes" not in hint
    assert "--intent_keep=none" in widen_hint({}, "maybe") and "=maybe" not in widen_hint({}, "maybe")
    hint = widen_hint({"intent_grounded_auc": 0.9}, "grounded")
    assert "intent_grounded_auc (now 0.9)" in hint and "--intent_keep=grounded " not in hint + " "
    hint = widen_hint({"intent_grounded_auc": 0.8}, "grounded+yes")
    assert "--intent_keep=grounded+probably" in hint and "grounded+yes" not in hint


def test_inflections_and_known_words_are_not_pieces():
    lex = Lexicon(["tool"] + ["tools"] * 40 + ["air"] + ["hair"] * 40)
    assert fragment_reason("tool", lex) is None  # 'tools' is its plural, not a longer word
    assert fragment_reason("air", lex).startswith("sub-word piece")
    assert fragment_reason("air", lex, known_words={"air"}) is None


def test_an_lm_summary_joins_the_explanation():
    x, codes, topics = _topic_case()
    wrong = [topics[[2]]]  # latent 1 fires on topic 1 but its words say topic 2
    alone = grounding_scores(codes, x, [1], wrong, topics, n_examples=5, n_background=30, seed=0)[0]
    helped = grounding_scores(codes, x, [1], wrong, topics, summary_vecs=[topics[1]], n_examples=5,
                              n_background=30, seed=0)[0]
    assert alone["detection_auc"] < 0.5 < helped["detection_auc"]
