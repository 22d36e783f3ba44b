"""Dataset preparation (recbole_saerec.data): both input forms, bad input, the protocol switch.

Fast: tiny files in exactly the raw formats are written into tmp_path. The exact-count test
runs on the shared amazon-beauty files and is skipped when they are absent
(<repo>/../shared/datasets, or $RECBOLE_SAEREC_SHARED/datasets).
"""
import csv
import gzip
import json
import os
import random

import pandas as pd
import pytest

from recbole_saerec.data import prepare_amazon as pa
from recbole_saerec.data.prepare_amazon import PrepareError, prepare



# ----------------------------------------------------------------------------- writers
def _write_lines(path, lines, gz):
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    if gz:
        path = str(path) + ".gz"
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        with open(path, "wb") as f:
            f.write(data)
    return path


def review(user, asin, t, text="", summary="", overall=5.0):
    return json.dumps({"reviewerID": user, "asin": asin, "reviewerName": "x", "helpful": [0, 0],
                       "reviewText": text, "overall": overall, "summary": summary,
                       "unixReviewTime": t, "reviewTime": "01 1, 2014"})


def meta_line(asin, title=None, brand=None, categories=None, price=None):
    rec = {"asin": asin, "imUrl": "http://x/y.jpg", "salesRank": {"Beauty": 1}}
    if title is not None:
        rec["title"] = title
    if brand is not None:
        rec["brand"] = brand
    if categories is not None:
        rec["categories"] = categories
    if price is not None:
        rec["price"] = price
    return repr(rec)  # the 2014 meta files are Python literals (single quotes), not JSON


# Three users; u1 has a tie in time (i3 and i2 at t=300: line order decides -> i3 first).
REVIEWS = [
    review("u1", "i1", 100, "first\treview\nwith a tab", 'he said "great"'),
    review("u2", "i2", 50, "u2 a"),
    review("u1", "i3", 300, "tie, earlier line"),
    review("u1", "i2", 300, "tie, later line"),
    review("u2", "i1", 40, "u2 b"),
    review("u1", "i4", 200, "middle"),
    review("u3", "i4", 10, "u3 a"),
    review("u2", "i3", 60, "u2 c"),
    review("u2", "i4", 70, "u2 d"),
    review("u3", "i1", 20, "u3 b"),
    review("u3", "i2", 30, "u3 c"),
    review("u3", "i3", 40, "u3 d"),
]
META = [
    meta_line("i1", title="Red Lipstick", brand="Acme",
              categories=[["Beauty", "Makeup", "Lips"], ["Beauty", "Makeup", "Lipstick"]], price=9.5),
    meta_line("i2", title="Men's \"Best\" Shampoo", categories=[["Beauty", "Hair Care"]]),
    meta_line("zz", title="not an item of the interactions"),
    meta_line("i3", brand="NoTitleCo"),
]


def make_amazon2014(raw, gz, reviews=REVIEWS, meta=META, category="Beauty"):
    raw.mkdir(parents=True, exist_ok=True)
    _write_lines(raw / f"reviews_{category}_5.json", reviews, gz)
    if meta is not None:
        _write_lines(raw / f"meta_{category}.json", meta, gz)
    return raw


def make_iclrec(raw, seqs=None, with_item_file=True):
    """ICLRec Beauty.txt + P5 datamaps.json + RecBole Amazon_Beauty.item, as in the shared folder."""
    raw.mkdir(parents=True, exist_ok=True)
    seqs = seqs or ["1 1 2 3 4 5", "2 3 1 4 2", "3 5 4 3 2 1 6"]
    (raw / "Beauty.txt").write_text("".join(s + "\n" for s in seqs))
    n_users = 1 + max(int(s.split()[0]) for s in seqs)
    id2user = {str(u): f"U{u}" for u in range(1, n_users + 3)}
    id2item = {str(i): f"A{i:03d}" for i in range(1, 10)}
    maps = {"user2id": {v: k for k, v in id2user.items()}, "item2id": {v: k for k, v in id2item.items()},
            "id2user": id2user, "id2item": id2item, "attribute2id": {}, "id2attribute": {},
            "attributeid2num": {}}
    (raw / "datamaps.json").write_text(json.dumps(maps))
    if with_item_file:
        with open(raw / "Amazon_Beauty.item", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(["item_id:token", "title:token", "sales_type:token", "sales_rank:float",
                        "categories:token_seq", "price:float", "brand:token"])
            w.writerow(["A001", "Prada Candy", "Beauty", "1.0",
                        "'Beauty', 'Fragrance', \"Women's\", 'Eau de Parfum'", "65.86", "Prada"])
            w.writerow(["A002", "", "Beauty", "", "'Beauty', 'Hair Care'", "", ""])
            w.writerow(["A004", "Gel 1oz.", "Beauty", "2.0", "'Beauty', 'Styling Products'", "19.99", "Xtreme"])
    return raw


def read_tsv(path):
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    header = [h.split(":")[0] for h in rows[0]]
    return rows[0], [dict(zip(header, r)) for r in rows[1:]]


def run_prepare(raw, out, **kw):
    kw.setdefault("show_progress", False)
    kw.setdefault("log", lambda *a: None)
    return prepare(dataset="amazon-beauty", raw_dir=str(raw), out=str(out), **kw)


# ----------------------------------------------------------------------------- amazon2014
@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_amazon2014_form(tmp_path, gz):
    raw = make_amazon2014(tmp_path / "raw", gz)
    s = run_prepare(raw, tmp_path / "out")
    assert s["form"] == "amazon2014"
    assert s["counts"] == {"users": 3, "items": 4, "interactions": 12}
    assert s["corpus"] == "reviews+item_text"
    assert s["matches_paper"] is False
    d = tmp_path / "out" / "amazon-beauty"
    header, inter = read_tsv(d / "amazon-beauty.inter")
    assert header == ["user_id:token", "item_id:token", "timestamp:float", "rating:float",
                      "review_text:token_seq", "summary:token_seq"]
    seq = {}
    for r in inter:
        seq.setdefault(r["user_id"], []).append((r["item_id"], float(r["timestamp"])))
    # time order; the t=300 tie keeps the review file's line order (i3 is on an earlier line)
    assert [i for i, _ in seq["u1"]] == ["i1", "i4", "i3", "i2"]
    assert [i for i, _ in seq["u2"]] == ["i1", "i2", "i3", "i4"]
    assert [i for i, _ in seq["u3"]] == ["i4", "i1", "i2", "i3"]
    assert list(seq) == ["u1", "u2", "u3"]  # users in first-appearance order
    first = inter[0]
    assert first["review_text"] == "first review with a tab"  # tab/newline -> one space, one line
    assert first["summary"] == 'he said "great"'  # quotes survive (CSV quoting)
    assert float(first["rating"]) == 5.0
    header, items = read_tsv(d / "amazon-beauty.item")
    assert header == ["item_id:token", "title:token_seq", "brand:token", "categories:token_seq",
                      "price:float", "description:token_seq"]
    by = {r["item_id"]: r for r in items}
    assert set(by) == {"i1", "i2", "i3", "i4"}  # only items of the interactions ("zz" is not)
    assert by["i1"]["categories"] == "Beauty | Makeup | Lips | Lipstick"
    assert by["i1"]["brand"] == "Acme" and float(by["i1"]["price"]) == 9.5
    assert by["i2"]["title"] == 'Men\'s "Best" Shampoo'
    assert by["i3"]["title"] == "" and by["i3"]["brand"] == "NoTitleCo"
    assert by["i4"]["title"] == ""  # not in meta: allowed, empty text
    assert s["items_missing_metadata"] == 1 and s["items_missing_metadata_examples"] == ["i4"]
    # pandas reads the text columns back (what the intent corpus builder does)
    df = pd.read_csv(d / "amazon-beauty.inter", sep="\t", keep_default_na=False)
    assert df["summary:token_seq"].iloc[0] == 'he said "great"'
    assert json.loads((d / "amazon-beauty.prep.json").read_text())["counts"]["interactions"] == 12


def test_duplicate_interactions_keep_first(tmp_path):
    dup = REVIEWS + [review("u1", "i1", 999, "second review of the same item")]
    raw = make_amazon2014(tmp_path / "raw", False, reviews=dup)
    s = run_prepare(raw, tmp_path / "out")
    assert s["duplicate_interactions_dropped"] == 1
    assert s["duplicate_examples"] == ["u1 i1 (line 13)"]
    assert s["counts"]["interactions"] == 12
    _, inter = read_tsv(tmp_path / "out" / "amazon-beauty" / "amazon-beauty.inter")
    u1i1 = [r for r in inter if r["user_id"] == "u1" and r["item_id"] == "i1"]
    assert len(u1i1) == 1 and float(u1i1[0]["timestamp"]) == 100


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_malformed_review_line_errors_with_line_number(tmp_path, gz):
    bad = REVIEWS[:2] + ['{"reviewerID": "u9", "asin": '] + REVIEWS[2:]
    raw = make_amazon2014(tmp_path / "raw", gz, reviews=bad)
    with pytest.raises(PrepareError, match=r"reviews_Beauty_5\.json(\.gz)?:3: malformed line: invalid JSON"):
        run_prepare(raw, tmp_path / "out")
    assert not (tmp_path / "out" / "amazon-beauty" / "amazon-beauty.inter").exists()


def test_malformed_lines_skipped_and_counted(tmp_path):
    bad = (REVIEWS[:2] + ["not json at all", json.dumps({"reviewerID": "u9", "asin": "i9"}),
                          json.dumps({"reviewerID": "u9", "asin": "i9", "unixReviewTime": "soon"}),
                          "[1, 2]"] + REVIEWS[2:])
    meta = META + ["{'asin': 'i4', 'title': 'broken"]
    raw = make_amazon2014(tmp_path / "raw", False, reviews=bad, meta=meta)
    s = run_prepare(raw, tmp_path / "out", on_bad_line="skip")
    assert s["bad_lines_skipped"] == {"reviews_Beauty_5.json": 4, "meta_Beauty.json": 1}
    assert s["counts"]["interactions"] == 12
    assert any("reviews_Beauty_5.json:4: missing field(s) unixReviewTime" in e for e in s["bad_line_examples"])
    assert any("meta_Beauty.json:5:" in e for e in s["bad_line_examples"])


def test_malformed_meta_line_errors_with_line_number(tmp_path):
    raw = make_amazon2014(tmp_path / "raw", True, meta=META[:1] + ["{'asin': 'i2', 'title': "])
    with pytest.raises(PrepareError, match=r"meta_Beauty\.json\.gz:2: malformed line"):
        run_prepare(raw, tmp_path / "out")


def test_missing_meta_file_refused_unless_reviews_only(tmp_path):
    raw = make_amazon2014(tmp_path / "raw", False, meta=None)
    with pytest.raises(PrepareError, match=r"no item metadata file \(meta_Beauty\.json\[\.gz\]\).*--reviews_only"):
        run_prepare(raw, tmp_path / "out")
    assert pa.main(["--dataset=amazon-beauty", f"--raw_dir={raw}", f"--out={tmp_path / 'out'}",
                    "--no_progress"]) == 2
    s = run_prepare(raw, tmp_path / "out", reviews_only=True)
    assert s["items_missing_metadata"] == 4 and s["items_with_text"] == 0
    assert any("no item metadata file" in n for n in s["notes"])
    _, items = read_tsv(tmp_path / "out" / "amazon-beauty" / "amazon-beauty.item")
    assert len(items) == 4 and all(r["title"] == "" for r in items)


def test_meta_python_literal_and_json_lines(tmp_path):
    meta = [
        "{'asin': 'i1', 'title': \"L'Oreal Paris\", 'categories': [['Beauty', 'Skin Care']], 'price': 4.0}",
        json.dumps({"asin": "i2", "title": "strict json line", "brand": "B", "price": None}),
        "{'asin': 'i3', 'description': 'multi\\nline\\tdesc', 'related': {'also_bought': ['i1']}}",
    ]
    raw = make_amazon2014(tmp_path / "raw", False, meta=meta)
    run_prepare(raw, tmp_path / "out")
    _, items = read_tsv(tmp_path / "out" / "amazon-beauty" / "amazon-beauty.item")
    by = {r["item_id"]: r for r in items}
    assert by["i1"]["title"] == "L'Oreal Paris" and by["i1"]["categories"] == "Beauty | Skin Care"
    assert by["i2"]["title"] == "strict json line" and by["i2"]["price"] == ""
    assert by["i3"]["description"] == "multi line desc"


def test_kcore_option(tmp_path):
    extra = REVIEWS + [review("u4", "i1", 1), review("u4", "i9", 2)]
    raw = make_amazon2014(tmp_path / "raw", False, reviews=extra)
    s = run_prepare(raw, tmp_path / "out")  # default: no filtering
    assert s["counts"] == {"users": 4, "items": 5, "interactions": 14}
    s = run_prepare(raw, tmp_path / "out", kcore=3)
    assert s["counts"] == {"users": 3, "items": 4, "interactions": 12} and s["removed_by_kcore"] == 2


# ----------------------------------------------------------------------------- iclrec
def test_iclrec_form(tmp_path):
    raw = make_iclrec(tmp_path / "raw")
    s = run_prepare(raw, tmp_path / "out")
    assert s["form"] == "iclrec" and s["corpus"] == "item_text"
    assert "item text" in s["corpus_note"]
    assert s["counts"] == {"users": 3, "items": 6, "interactions": 15}
    _, inter = read_tsv(tmp_path / "out" / "amazon-beauty" / "amazon-beauty.inter")
    u3 = [(r["item_id"], r["timestamp"]) for r in inter if r["user_id"] == "U3"]
    assert u3 == [("A005", "1"), ("A004", "2"), ("A003", "3"), ("A002", "4"), ("A001", "5"), ("A006", "6")]
    assert all(r["review_text"] == "" and r["rating"] == "" for r in inter)
    _, items = read_tsv(tmp_path / "out" / "amazon-beauty" / "amazon-beauty.item")
    by = {r["item_id"]: r for r in items}
    assert by["A001"]["categories"] == "Beauty | Fragrance | Women's | Eau de Parfum"
    assert by["A001"]["brand"] == "Prada" and float(by["A001"]["price"]) == 65.86
    assert by["A002"]["title"] == "" and by["A002"]["categories"] == "Beauty | Hair Care"
    assert s["items_missing_metadata"] == 3  # A003, A005, A006 are not in the item file


def test_iclrec_duplicates_and_bad_lines(tmp_path):
    seqs = ["1 1 2 3 2 4", "2 1 x 3", "3 1 99 2", "4", "1 5 6 7"]
    raw = make_iclrec(tmp_path / "raw", seqs=seqs)
    with pytest.raises(PrepareError, match=r"Beauty\.txt:2: malformed line: item id\(s\) x not in datamaps"):
        run_prepare(raw, tmp_path / "out")
    s = run_prepare(raw, tmp_path / "out", on_bad_line="skip")
    assert s["bad_lines_skipped"] == {"Beauty.txt": 4}  # unknown items x2, no items, repeated user
    assert s["duplicate_interactions_dropped"] == 1
    assert s["counts"] == {"users": 1, "items": 4, "interactions": 4}


def _spoil_title(path, good, bad_bytes=b"\xff\xfe"):
    """Put bytes that are not UTF-8 inside one title of a file (as a badly re-encoded export does)."""
    data = path.read_bytes()
    assert good.encode() in data
    path.write_bytes(data.replace(good.encode(), good.encode()[:3] + bad_bytes + good.encode()[3:]))


@pytest.mark.parametrize("cli", [False, True], ids=["library", "command"])
def test_invalid_utf8_in_the_item_file_follows_on_bad_line(tmp_path, cli, capsys):
    raw = make_iclrec(tmp_path / "raw")
    _spoil_title(raw / "Amazon_Beauty.item", "Gel 1oz.")
    if cli:  # one error line with file:line, no traceback
        assert pa.main(["--dataset=amazon-beauty", f"--raw_dir={raw}", f"--out={tmp_path / 'out'}",
                        "--no_progress"]) == 2
        err = capsys.readouterr().err
        assert "Amazon_Beauty.item:4: not valid utf-8" in err and "Traceback" not in err
        assert pa.main(["--dataset=amazon-beauty", f"--raw_dir={raw}", f"--out={tmp_path / 'out'}",
                        "--no_progress", "--on_bad_line=skip"]) == 0
        return
    with pytest.raises(PrepareError, match=r"Amazon_Beauty\.item:4: not valid utf-8 .*--on_bad_line=skip"):
        run_prepare(raw, tmp_path / "out")
    s = run_prepare(raw, tmp_path / "out", on_bad_line="skip")
    assert s["bad_lines_skipped"] == {"Amazon_Beauty.item": 1} and s["items_missing_metadata"] == 4  # A004 too
    s = run_prepare(raw, tmp_path / "out", on_bad_line="replace")
    assert s["bad_lines_replaced"] == {"Amazon_Beauty.item": 1} and s["bad_lines_skipped"] == {}
    _, items = read_tsv(tmp_path / "out" / "amazon-beauty" / "amazon-beauty.item")
    assert {r["item_id"]: r["title"] for r in items}["A004"] == "Gel\ufffd\ufffd 1oz."


def test_invalid_utf8_in_reviews_and_meta_follows_on_bad_line(tmp_path):
    raw = make_amazon2014(tmp_path / "raw", False)
    _spoil_title(raw / "meta_Beauty.json", "Red Lipstick")
    _spoil_title(raw / "reviews_Beauty_5.json", "u2 a")
    with pytest.raises(PrepareError, match=r"reviews_Beauty_5\.json:2: not valid utf-8"):
        run_prepare(raw, tmp_path / "out")
    s = run_prepare(raw, tmp_path / "out", on_bad_line="skip")
    assert s["bad_lines_skipped"] == {"reviews_Beauty_5.json": 1, "meta_Beauty.json": 1}
    s = run_prepare(raw, tmp_path / "out", on_bad_line="replace")
    assert s["bad_lines_replaced"] == {"reviews_Beauty_5.json": 1, "meta_Beauty.json": 1}
    assert s["counts"]["interactions"] == 12


def test_autodetect_and_missing_inputs(tmp_path):
    raw = make_iclrec(tmp_path / "raw")
    make_amazon2014(raw, True)
    assert run_prepare(raw, tmp_path / "out")["form"] == "amazon2014"  # reviews win: they have text
    assert run_prepare(raw, tmp_path / "out", form="iclrec")["form"] == "iclrec"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PrepareError, match=r"reviews_Beauty_5\.json\[\.gz\]"):
        run_prepare(empty, tmp_path / "out")
    with pytest.raises(PrepareError, match="not found"):
        run_prepare(tmp_path / "nope", tmp_path / "out")


def test_cli(tmp_path, capsys):
    raw = make_amazon2014(tmp_path / "raw", False, category="Toys_and_Games")
    rc = pa.main(["--dataset=amazon-toys", f"--raw_dir={raw}", f"--out={tmp_path / 'out'}", "--no_progress"])
    assert rc == 0
    assert "users 3  items 4  interactions 12" in capsys.readouterr().out
    assert (tmp_path / "out" / "amazon-toys" / "amazon-toys.inter").is_file()
    rc = pa.main(["--dataset=amazon-toys", f"--raw_dir={tmp_path}", f"--out={tmp_path / 'out'}"])
    assert rc == 2 and "reviews_Toys_and_Games_5.json" in capsys.readouterr().err
    assert pa.main(["--dataset=my-data", f"--raw_dir={raw}", "--no_progress"]) == 2  # no --category


# ----------------------------------------------------------------------------- the real data
def _shared_beauty():
    return os.path.join(pa.shared_dir(), "datasets", "amazon-beauty", "raw")


@pytest.mark.skipif(not os.path.isfile(os.path.join(_shared_beauty(), "Beauty.txt")),
                    reason="shared amazon-beauty data absent (<repo>/../shared or $RECBOLE_SAEREC_SHARED)")
def test_paper_counts_from_shared_data(tmp_path):
    s = prepare(dataset="amazon-beauty", out=str(tmp_path), show_progress=False, log=lambda *a: None)
    assert s["counts"] == {"users": 22363, "items": 12101, "interactions": 198502}
    assert s["matches_paper"] is True and s["corpus"] == "item_text"
    assert s["sequence_coherence"]["ratio"] > 5  # measured 7.9 (docs/hardening.md)
    assert s["duplicate_interactions_dropped"] == 0 and s["bad_lines_skipped"] == {}
    with open(tmp_path / "amazon-beauty" / "amazon-beauty.inter") as f:
        assert sum(1 for _ in f) == 198502 + 1


@pytest.mark.skipif(not os.path.isfile(os.path.join(_shared_beauty(), "Beauty.txt")),
                    reason="shared amazon-beauty data absent (<repo>/../shared or $RECBOLE_SAEREC_SHARED)")
def test_permuted_ids_beside_real_datamaps_refused(tmp_path):
    """Beauty.txt with its item ids relabelled prepares with the right counts but every item
    joined to another item's ASIN; the mis-join guard must refuse it."""
    src = _shared_beauty()
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("datamaps.json", "Amazon_Beauty.item"):
        os.symlink(os.path.join(src, name), raw / name)
    with open(os.path.join(src, "Beauty.txt")) as f:
        lines = [line.split() for line in f]
    ids = sorted({i for line in lines for i in line[1:]}, key=int)
    relabel = dict(zip(ids, random.Random(0).sample(ids, len(ids))))
    (raw / "Beauty.txt").write_text("".join(" ".join([ln[0]] + [relabel[i] for i in ln[1:]]) + "\n"
                                            for ln in lines))
    with pytest.raises(PrepareError, match=r"mis-joined.*ratio 0\.9\d|mis-joined.*ratio 1\.0\d"):
        run_prepare(raw, tmp_path / "out")
    s = run_prepare(raw, tmp_path / "out", allow_misjoin=True)
    assert s["counts"] == {"users": 22363, "items": 12101, "interactions": 198502}  # counts cannot tell
    assert s["sequence_coherence"]["allowed_below"] is True


def _shared_copy(tmp_path, rotate_items=0, shift_ids=0, attributes=True):
    """The shared Beauty files in a temp folder: the .item rows rotated against their ASINs by
    ``rotate_items``, or the sequence file's item ids shifted by ``shift_ids`` (item k read as k + shift)."""
    src = _shared_beauty()
    raw = tmp_path / f"raw_{rotate_items}_{shift_ids}_{int(attributes)}"
    raw.mkdir()
    names = ["datamaps.json"] + (["Beauty_item2attributes.json"] if attributes else [])
    for name in names:
        os.symlink(os.path.join(src, name), raw / name)
    with open(os.path.join(src, "Amazon_Beauty.item"), encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    body = rows[1:]
    with open(raw / "Amazon_Beauty.item", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(rows[0])
        for k, row in enumerate(body):
            w.writerow([row[0]] + body[(k + rotate_items) % len(body)][1:])
    with open(os.path.join(src, "Beauty.txt")) as f:
        lines = [line.split() for line in f]
    n = max(int(i) for line in lines for i in line[1:])
    (raw / "Beauty.txt").write_text("".join(" ".join([ln[0]] + [str((int(i) - 1 + shift_ids) % n + 1) for i in ln[1:]])
                                            + "\n" for ln in lines))
    return raw


@pytest.mark.skipif(not os.path.isfile(os.path.join(_shared_beauty(), "Beauty_item2attributes.json")),
                    reason="shared amazon-beauty data absent (<repo>/../shared or $RECBOLE_SAEREC_SHARED)")
def test_shared_beauty_shifted_by_one_is_refused(tmp_path):
    """The real catalogue (12,101 items) with its rows shifted by ONE against their ASINs: neighbouring
    ASINs often share a brand, so consecutive items stay 2.4x alike; the attribute join sees it item by
    item, and without the attribute file the sequence check's threshold does."""
    real = run_prepare(_shared_copy(tmp_path), tmp_path / "out")
    assert real["attribute_join"]["sharing"] > 0.99 and real["sequence_coherence"]["ratio"] > 7
    with pytest.raises(PrepareError, match=r"attached to the wrong items: .* only 1\d\.\d% of the time"):
        run_prepare(_shared_copy(tmp_path, rotate_items=1), tmp_path / "out")
    with pytest.raises(PrepareError, match=r"mis-joined.*ratio 2\.\d+ < 4\.0"):
        run_prepare(_shared_copy(tmp_path, rotate_items=1, attributes=False), tmp_path / "out")
    with pytest.raises(PrepareError, match=r"mis-joined.*ratio 1\.\d+ < 4\.0"):  # the ids off by one
        run_prepare(_shared_copy(tmp_path, shift_ids=1), tmp_path / "out")


# ----------------------------------------------------------------------------- RecBole + protocol
def _recbole_splits(data_path, protocol="clean"):
    from recbole.data import create_dataset

    from recbole_saerec.config import Config
    from recbole_saerec.data import check_dataset_files, split_with_protocol

    config = Config(model="SASRec", dataset="amazon-beauty",
                    config_dict={"data_path": str(data_path), "use_gpu": False, "show_progress": False,
                                 "protocol": protocol, "checkpoint_dir": str(data_path / "saved")})
    check_dataset_files(config)
    dataset = create_dataset(config)
    return config, dataset, split_with_protocol(config, dataset)


def _by_user(loader, dataset):
    """{user token: [(target position, max input position)]} of a loader's samples."""
    inter = loader._dataset.inter_feat
    out = {}
    for u, t, tl, n in zip(inter["user_id"].tolist(), inter["timestamp"].tolist(),
                           inter["timestamp_list"].tolist(), inter["item_length"].tolist()):
        out.setdefault(dataset.id2token("user_id", u), []).append((t, max(tl[:n])))
    return out


SEQS = ["1 1 2 3 4 5", "2 3 1 4 2 6 7 8", "3 5 4 3 2 1 6", "4 9 8 7 6"]  # lengths 5, 7, 6, 4


def test_recbole_loads_prepared_data_with_leave_one_out(tmp_path):
    make_iclrec(tmp_path / "raw", seqs=SEQS)
    run_prepare(tmp_path / "raw", tmp_path / "data")
    config, dataset, (train, valid, test) = _recbole_splits(tmp_path / "data")
    lengths = {"U1": 5, "U2": 7, "U3": 6, "U4": 4}
    assert dataset.user_num - 1 == 4 and dataset.item_num - 1 == 9  # [PAD] is id 0
    assert dataset.inter_num == sum(n - 1 for n in lengths.values())  # 22 interactions -> 18 prefixes
    assert config["eval_args"]["split"] == {"LS": "valid_and_test"} and config["MAX_ITEM_LIST_LENGTH"] == 50
    assert len(train._dataset) == sum(n - 3 for n in lengths.values())  # targets s[2..n-2]
    assert len(valid._dataset) == 4 and len(test._dataset) == 4
    tr, va, te = _by_user(train, dataset), _by_user(valid, dataset), _by_user(test, dataset)
    for user, n in lengths.items():
        # clean: the test item (position n) is never a training/validation target or input,
        # the validation item (n-1) is never a training target or input
        assert max(t for t, _ in tr[user]) == n - 2 and max(i for _, i in tr[user]) == n - 3
        assert va[user] == [(n - 1, n - 2)]
        assert te[user] == [(n, n - 1)]
    assert valid is not test


def test_authors_leaky_protocol(tmp_path, caplog):
    make_iclrec(tmp_path / "raw", seqs=SEQS)
    run_prepare(tmp_path / "raw", tmp_path / "data")
    with caplog.at_level("WARNING"):
        _, dataset, (train, valid, test) = _recbole_splits(tmp_path / "data", protocol="authors_leaky")
    assert "authors_leaky" in caplog.text and "TEST ITEM" in caplog.text
    assert valid is test  # the epoch is selected on the test item
    lengths = {"U1": 5, "U2": 7, "U3": 6, "U4": 4}
    assert len(train._dataset) == sum(n - 2 for n in lengths.values())
    tr, te = _by_user(train, dataset), _by_user(test, dataset)
    for user, n in lengths.items():
        assert max(t for t, _ in tr[user]) == n - 1  # the validation item is a training target
        assert te[user] == [(n, n - 1)]  # the test item stays out of training


def test_protocol_name():
    from recbole_saerec.data import protocol_name

    assert protocol_name({}) == "clean"
    assert protocol_name({"protocol": "authors_leaky"}) == "authors_leaky"
    with pytest.raises(ValueError, match="Unknown protocol"):
        protocol_name({"protocol": "leaky"})


def test_check_dataset_files_lists_missing_and_prepare_command(tmp_path):
    from recbole_saerec.data import DatasetFilesMissingError, check_dataset_files

    config = {"dataset": "amazon-beauty", "data_path": str(tmp_path / "d" / "amazon-beauty"),
              "load_col": {"inter": ["user_id", "item_id", "timestamp"]}, "benchmark_filename": None}
    with pytest.raises(DatasetFilesMissingError) as err:
        check_dataset_files(config)
    msg = str(err.value)
    assert str(tmp_path / "d" / "amazon-beauty" / "amazon-beauty.inter") in msg
    assert f"python -m recbole_saerec.data.prepare_amazon --dataset=amazon-beauty --out={tmp_path / 'd'}" in msg
    make_iclrec(tmp_path / "raw")
    run_prepare(tmp_path / "raw", tmp_path / "d")
    check_dataset_files(config)  # present: no error


# ----------------------------------------------------------------------------- the mis-join guards
def make_brand_walks(raw, relabel=None, n_users=60, n_items=60, seed=0, seq_name="Beauty.txt"):
    """Users shop within one of 6 brands (as real sequences do); ``relabel`` maps sequence ids to
    other ids of the same datamaps, as a sequence file numbered by another release would."""
    rng = random.Random(seed)
    raw.mkdir(parents=True, exist_ok=True)
    lines = []
    for u in range(1, n_users + 1):
        brand_items = [i for i in range(1, n_items + 1) if i % 6 == u % 6]
        seq = rng.sample(brand_items, 6)
        lines.append(" ".join([str(u)] + [str((relabel or {}).get(i, i)) for i in seq]))
    (raw / seq_name).write_text("\n".join(lines) + "\n")
    id2user = {str(u): f"U{u}" for u in range(1, n_users + 1)}
    id2item = {str(i): f"A{i:03d}" for i in range(1, n_items + 1)}
    (raw / "datamaps.json").write_text(json.dumps({"id2user": id2user, "id2item": id2item}))
    with open(raw / "Amazon_Beauty.item", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["item_id:token", "title:token", "categories:token_seq", "brand:token"])
        for i in range(1, n_items + 1):
            w.writerow([f"A{i:03d}", f"product {i}", f"'Beauty', 'Line {i % 6}'", f"Brand{i % 6}"])
    return raw


def test_misjoin_guard_passes_real_and_refuses_relabelled_ids(tmp_path, capsys):
    s = run_prepare(make_brand_walks(tmp_path / "real"), tmp_path / "out")
    assert s["sequence_coherence"]["ratio"] > 3 and s["sequence_coherence"]["pairs"] == 300
    ids = list(range(1, 61))
    relabel = dict(zip(ids, random.Random(1).sample(ids, 60)))
    raw = make_brand_walks(tmp_path / "relabelled", relabel=relabel)
    with pytest.raises(PrepareError, match=r"mis-joined.*--allow_misjoin"):
        run_prepare(raw, tmp_path / "out")
    assert pa.main(["--dataset=amazon-beauty", f"--raw_dir={raw}", f"--out={tmp_path / 'out'}",
                    "--no_progress"]) == 2
    assert pa.main(["--dataset=amazon-beauty", f"--raw_dir={raw}", f"--out={tmp_path / 'out'}",
                    "--no_progress", "--allow_misjoin"]) == 0
    assert "consecutive items sharing brand/category" in capsys.readouterr().out


def make_catalogue(raw, rotate=0, with_attributes=True, n_items=300, n_users=120, seed=0):
    """A catalogue as real ones are: neighbouring ASINs share a brand (blocks of 3), each item has a line
    (i % 7), users shop within one line. ``rotate`` shifts the .item rows against their ASINs (each ASIN
    gets the text ``rotate`` rows further down), as a re-sorted or off-by-one export does."""
    rng = random.Random(seed)
    raw.mkdir(parents=True, exist_ok=True)
    lines = []
    for u in range(1, n_users + 1):
        line_items = [i for i in range(1, n_items + 1) if i % 7 == u % 7]
        lines.append(" ".join([str(u)] + [str(i) for i in rng.sample(line_items, 8)]))
    (raw / "Beauty.txt").write_text("\n".join(lines) + "\n")
    id2user = {str(u): f"U{u}" for u in range(1, n_users + 1)}
    id2item = {str(i): f"A{i:04d}" for i in range(1, n_items + 1)}
    (raw / "datamaps.json").write_text(json.dumps({"id2user": id2user, "id2item": id2item}))
    texts = [(f"product {i}", f"'Beauty', 'Line {i % 7}'", f"Brand{i // 3}") for i in range(1, n_items + 1)]
    with open(raw / "Amazon_Beauty.item", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["item_id:token", "title:token", "categories:token_seq", "brand:token"])
        for k in range(n_items):
            w.writerow([f"A{k + 1:04d}", *texts[(k + rotate) % n_items]])
    if with_attributes:  # S3-Rec's ids: 1 = the top-level category (on every item), lines, brands
        attrs = {str(i): [1, 2 + i % 7, 100 + i // 3] for i in range(1, n_items + 1)}
        (raw / "Beauty_item2attributes.json").write_text(json.dumps(attrs))
    return raw


def test_catalogue_rotated_by_one_row_is_refused_by_the_attribute_join(tmp_path, capsys):
    s = run_prepare(make_catalogue(tmp_path / "real"), tmp_path / "out")
    assert s["attribute_join"]["sharing"] == 1.0 and s["attribute_join"]["pairs"] >= 200
    assert s["sequence_coherence"]["ratio"] > pa.MIN_COHERENCE_RATIO
    raw = make_catalogue(tmp_path / "rotated", rotate=1)
    with pytest.raises(PrepareError, match=r"attached to the wrong items: .* only 3\d\.\d% of the time.*"
                                           r"--allow_misjoin"):
        run_prepare(raw, tmp_path / "out")
    assert pa.main(["--dataset=amazon-beauty", f"--raw_dir={raw}", f"--out={tmp_path / 'out'}",
                    "--no_progress"]) == 2
    assert "attached to the wrong items" in capsys.readouterr().err
    s = run_prepare(raw, tmp_path / "out", allow_misjoin=True)
    assert s["attribute_join"]["allowed_below"] is True
    # the same rotation keeps every consecutive pair alike here (a line maps to one other line): only
    # the independent key sees it, and without it prepare says which check it relied on
    s = run_prepare(make_catalogue(tmp_path / "no_attributes", rotate=1, with_attributes=False), tmp_path / "out")
    assert s["attribute_join"] is None and any("item2attributes" in n for n in s["notes"])


def test_p5_sequential_data_accepted_by_name(tmp_path):
    raw = make_brand_walks(tmp_path / "raw", seq_name="sequential_data.txt")
    s = run_prepare(raw, tmp_path / "out")
    assert s["form"] == "iclrec" and s["inputs"]["sequences"] == "sequential_data.txt"


def test_reference_counts_for_other_categories(tmp_path):
    raw = make_brand_walks(tmp_path / "raw")
    os.rename(raw / "Amazon_Beauty.item", raw / "Amazon_Sports_and_Outdoors.item")
    os.rename(raw / "Beauty.txt", raw / "Sports_and_Outdoors.txt")
    s = prepare(dataset="amazon-sports", raw_dir=str(raw), out=str(tmp_path / "out"), show_progress=False,
                log=lambda *a: None)
    assert s["paper_counts"] == {"users": 35598, "items": 18357, "interactions": 296337}
    assert s["matches_paper"] is False
