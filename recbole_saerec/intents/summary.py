"""A finished intent build in one page: the SAE's quality, the keep rule's grounding, example intents.

    python -m recbole_saerec.intents.summary <intent_dir> [--examples=10] [--out=FILE.md]

Reads only what the build wrote (``manifest.json``, ``catalogue.json``, ``all_latents.csv``):

* the SAE: latents M, k, FVU (fraction of variance unexplained), L0, dead fraction, the corpus
  (source, texts, items covered), the build's stage timings;
* the keep rule: kept / live latents, the judge's verdicts, the median detection AUROC of kept and
  dropped latents and its shuffled-words control (the chance level of the grounding protocol);
* ``--examples`` intents: the kept latents that fire on the most items, with their words, the
  judge's summary, their AUROC and the texts they fire on most strongly.

Prints markdown (or writes it to ``--out``); the results pages under docs/results/intents-* are
made with it.
"""
import argparse
import csv
import json
import os
import sys


def load_build(intent_dir):
    with open(os.path.join(intent_dir, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    with open(os.path.join(intent_dir, "catalogue.json"), encoding="utf-8") as f:
        catalogue = json.load(f)
    latents = {}  # per latent: AUROC, verdict ... (a build written by hand may not have it)
    path = os.path.join(intent_dir, "all_latents.csv")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            latents = {int(r["latent_id"]): r for r in csv.DictReader(f)}
    return manifest, catalogue, latents


def _cell(text, limit=90):
    text = " ".join(str(text).split()).replace("|", "/")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summary_markdown(intent_dir, n_examples=10):
    manifest, catalogue, latents = load_build(intent_dir)
    fp, st = manifest["fingerprint"], manifest["stats"]
    g, corpus = st.get("grounding") or {}, st.get("corpus") or {}
    verdicts = ", ".join(f"{k} {v}" for k, v in sorted((st.get("verdicts") or {}).items()))
    lines = [
        f"Build `{intent_dir}`: dataset {fp['dataset']}, encoder {fp['encoder']}, method {fp['method']}, "
        f"keep rule `{fp['keep']}`, judge `{fp['judge']}`.", "",
        "| corpus | texts | items covered | SAE latents M | k | FVU | L0 | dead fraction | kept / live | "
        "median AUROC kept | median AUROC dropped | shuffled-words control |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {corpus.get('mode', '-')} | {corpus.get('n_texts', '-')} | {corpus.get('items_covered', '-')} / "
        f"{corpus.get('n_items', '-')} | {st.get('n_latents')} | {fp.get('k')} | {st.get('fvu', 0):.3f} | "
        f"{st.get('l0', 0):.1f} | {st.get('dead_fraction', 0):.3f} | {st.get('n_kept')} / {st.get('n_alive')} | "
        f"{g.get('median_auc_kept', '-')} | {g.get('median_auc_dropped', '-')} | "
        f"{g.get('median_auc_shuffled_words', '-')} |", "",
        f"Judge verdicts over the live latents: {verdicts}. Build time: "
        + ", ".join(f"{k[:-2]} {v:.0f} s" for k, v in (st.get("timings") or {}).items()) + ".", "",
        f"The {n_examples} kept intents that fire on the most items:", "",
        "| intent | items | words | judge's summary | AUROC | fires most on |", "|---|---|---|---|---|---|"]
    by_reach = sorted(catalogue, key=lambda e: -float(e.get("item_frequency", e.get("frequency", 0.0))))
    for entry in by_reach[:n_examples]:
        row = latents.get(int(entry["latent_id"]), {})
        examples = "; ".join(_cell(t, 60) for t in (entry.get("examples") or [])[:2])
        lines.append(f"| {entry['latent_id']} | {float(entry.get('item_frequency', entry['frequency'])):.3f} | "
                     f"{_cell(', '.join(entry['words'][:6]), 60)} | {_cell(entry.get('summary', ''), 40)} | "
                     f"{row.get('detection_auc', '-') or '-'} | {examples} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m recbole_saerec.intents.summary", description=__doc__.split("\n")[0])
    p.add_argument("intent_dir")
    p.add_argument("--examples", type=int, default=10)
    p.add_argument("--out", default=None, help="write the markdown here instead of printing it")
    args = p.parse_args(argv)
    text = summary_markdown(args.intent_dir, args.examples)
    if args.out:
        from recbole_saerec.fileio import atomic_path

        with atomic_path(args.out) as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
