"""Interpretation of SAE latents: vocabulary and the mutual-information word score."""
import math

import pytest
import torch

from recbole_saerec.intents.interpret import (build_vocabulary, tokenize,
                                              top_words_per_latent)


def test_tokenize_lowercase_alpha_no_stopwords():
    toks = tokenize("The SPF-50 Sunscreen's great!! It's 2x better than my old one; don't buy xl. Crème")
    assert toks == ["spf", "sunscreen", "great", "better", "old", "buy", "crème"]


def test_build_vocabulary_order_and_min_count():
    texts = [
        "Sunscreen sunscreen sunscreen lotion",   # sunscreen: 1 document, 3 occurrences
        "lotion for dry skin",
        "Lotion and SKIN cream",
        "cream, the best cream; 100% cream",
        "a skin lotion",
        "zzz once",
    ]
    vocab = build_vocabulary(texts, max_words=10, min_count=2)
    # document frequency: lotion 4, skin 3, cream 2; sunscreen/once/zzz/dry/best in 1 text only
    assert vocab == ["lotion", "skin", "cream"]
    assert build_vocabulary(texts, max_words=2, min_count=1) == ["lotion", "skin"]
    every = build_vocabulary(texts, max_words=0, min_count=1)
    assert "sunscreen" in every and "the" not in every and "for" not in every and "100" not in every
    assert all(len(w) >= 3 and w.isalpha() and w == w.lower() for w in every)
    # deterministic tie-break: document frequency, then occurrences, then alphabetical
    assert every.index("cream") < every.index("sunscreen") < every.index("best")


def _hand_built():
    """4 orthogonal latents; per latent a specific word (cos 0.45 with it, ~0 with the others),
    one generic word (cos 0.5 with EVERY latent) and filler words."""
    d = 12
    eye = torch.eye(d)
    directions = eye[:4].clone()
    words, vecs = [], []
    c = 0.45
    for j in range(4):
        words.append(f"specific{j}")
        vecs.append(c * eye[j] + math.sqrt(1 - c * c) * eye[4 + j])
    words.append("generic")
    vecs.append(eye[:4].sum(0) / 2.0)  # cos 0.5 with each latent
    for f in range(4):
        words.append(f"filler{f}")
        vecs.append(eye[8 + f])
    return directions, torch.stack(vecs), words


def test_mi_prefers_specific_word_over_generic_one():
    directions, emb, words = _hand_built()
    # plain cosine picks the generic word first for every latent ...
    cos = torch.nn.functional.normalize(directions, dim=1) @ torch.nn.functional.normalize(emb, dim=1).T
    assert all(words[i] == "generic" for i in cos.argmax(1).tolist())
    # ... the MI score picks the latent's own specific word, and the generic one scores 0
    top, scores = top_words_per_latent(directions, emb, words, top_n=3, temperature=0.1)
    assert [row[0] for row in top] == [f"specific{j}" for j in range(4)]
    assert scores.shape == (4, 3) and scores.dtype == torch.float32
    assert (scores[:, 0] > 0).all()
    for j, row in enumerate(top):
        assert "generic" not in row[:1]
        if "generic" in row:
            assert abs(scores[j, row.index("generic")].item()) < 1e-6


def test_mi_matches_formula_and_is_chunk_invariant():
    torch.manual_seed(0)
    m, v, d = 37, 50, 16
    directions, emb = torch.randn(m, d) * 3, torch.randn(v, d)
    words = [f"w{i}" for i in range(v)]
    t = 0.2
    # reference: the docstring's formula, dense
    vn = directions / directions.norm(dim=1, keepdim=True)
    en = emb / emb.norm(dim=1, keepdim=True)
    p = torch.softmax(vn @ en.T / t, dim=1).double()
    pw = p.mean(0, keepdim=True)
    ref = p * torch.log(p / pw)
    ref_top = torch.topk(ref, 5, dim=1)
    for chunk in (1, 8, 1000):
        top, scores = top_words_per_latent(directions, emb, words, top_n=5, temperature=t, chunk_size=chunk)
        assert [[int(w[1:]) for w in row] for row in top] == ref_top.indices.tolist()
        assert torch.allclose(scores.double(), ref_top.values, atol=1e-6)


def test_mi_edge_cases():
    directions, emb, words = _hand_built()
    top, scores = top_words_per_latent(directions, emb, words, top_n=100)
    assert scores.shape == (4, len(words)) and all(len(r) == len(words) for r in top)
    with pytest.raises(ValueError):
        top_words_per_latent(directions, emb, words[:-1])
    with pytest.raises(ValueError):
        top_words_per_latent(directions, emb, words, temperature=0)
    with pytest.raises(ValueError):
        top_words_per_latent(directions[:, :5], emb, words)
