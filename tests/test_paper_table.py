"""paper_table: datasets as columns, our mean over seeds beside the published figure."""
import csv
import json
import os

from recbole_saerec.experiments.benchmark import paper_table


def _record(folder, variant, seed, hit, ndcg):
    runs = os.path.join(folder, "runs")
    os.makedirs(runs, exist_ok=True)
    run_id = f"{variant}__seed{seed}"
    with open(os.path.join(runs, run_id + ".json"), "w") as f:
        json.dump({"run_id": run_id, "variant": variant, "seed": seed, "status": "ok", "role": "baseline",
                   "test_result": {"hit@10": hit, "ndcg@10": ndcg, "hit@20": hit * 1.3, "ndcg@20": ndcg * 1.1}}, f)


def test_cells_are_the_mean_over_seeds_with_the_published_figure_beside(tmp_path):
    beauty = str(tmp_path / "beauty")
    _record(beauty, "SAERec", 1, 0.10, 0.06)
    _record(beauty, "SAERec", 2, 0.08, 0.04)
    _record(beauty, "SASRec-CE", 1, 0.09, 0.05)
    out = str(tmp_path / "out")
    paper_table.main([f"--tables=amazon-beauty={beauty},amazon-toys={tmp_path / 'none'}",
                      "--rows=SAERec,SASRec-CE,ICSRec", f"--out={out}"])
    table = open(os.path.join(out, "table.md")).read()
    assert "| SAERec | 0.0900 / 0.0500 (2) | 0.1055 / 0.0643 |  | 0.1147 / 0.0723 |" in table
    assert "| ICSRec |  | 0.0953 / 0.0576 |" in table  # no run of ours: the published figure alone
    assert "Toys: not both run yet." in table
    rows = {(r["dataset"], r["model"]): r for r in csv.DictReader(open(os.path.join(out, "table.csv")))}
    assert rows[("amazon-beauty", "SAERec")]["seeds"] == "2" and rows[("amazon-beauty", "SAERec")]["hit@10"] == "0.0900"
    assert rows[("amazon-toys", "ICSRec")]["published_hit@10"] == "0.1043"
    assert os.path.isfile(os.path.join(out, "table.png"))


def test_a_dataset_without_a_searched_sasrec_ce_is_compared_with_sasrec_ce_at_beautys_pick(tmp_path):
    toys = str(tmp_path / "toys")
    _record(toys, "SAERec", 1, 0.10, 0.06)
    _record(toys, "SASRec-CE-lr5e-4", 1, 0.08, 0.05)
    out = str(tmp_path / "out")
    paper_table.main([f"--tables=amazon-toys={toys}", "--rows=SAERec,SASRec-CE,SASRec-CE-lr5e-4", f"--out={out}"])
    table = open(os.path.join(out, "table.md")).read()
    assert "- Toys (against SASRec-CE-lr5e-4): HIT@10 +25.0%" in table
    assert "seed-paired: needs 2 shared seeds, has 1" in table  # one seed each: no seed-paired p to print
    _record(toys, "SASRec-CE", 1, 0.05, 0.05)  # a searched SASRec-CE, once it exists, is the reference
    paper_table.main([f"--tables=amazon-toys={toys}", "--rows=SAERec,SASRec-CE,SASRec-CE-lr5e-4", f"--out={out}"])
    assert "- Toys: HIT@10 +100.0%" in open(os.path.join(out, "table.md")).read()


def test_seeds_that_all_differ_by_the_same_amount_say_the_seed_paired_p_is_undefined(tmp_path):
    toys = str(tmp_path / "toys")
    for seed, (ours, theirs) in enumerate([(0.75, 0.5), (0.5, 0.25)], start=1):  # both seeds differ by 0.25
        _record(toys, "SAERec", seed, ours, ours)
        _record(toys, "SASRec-CE", seed, theirs, theirs)
    out = str(tmp_path / "out")
    paper_table.main([f"--tables=amazon-toys={toys}", "--rows=SAERec,SASRec-CE", f"--out={out}"])
    table = open(os.path.join(out, "table.md")).read()
    assert "seeds 2: p n/a" in table and "nan" not in table
