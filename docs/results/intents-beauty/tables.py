"""Markdown tables for README.md from the intent builds' all_latents.csv / manifest.json.

    .venv/bin/python docs/results/intents-beauty/tables.py saved_intents/amazon-beauty

Reads the builds <root>/{before,default,noide,grounded80,grounded90} that exist; prints
(1) per build: kept count, median detection AUROC kept / dropped, the shuffled-words control,
latents made mostly of fragments (kept / all), kept latents with any fragment word;
(2) the 10 highest- and 10 lowest-AUROC kept latents of the build named by --top (default grounded80).
Copies each build's grounding.png here as grounding-<build>.png.
"""
import argparse
import csv
import json
import os
import shutil

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
BUILDS = ("before", "default", "noide", "grounded80", "grounded90")


def load(root, build):
    folder = os.path.join(root, build)
    with open(os.path.join(folder, "manifest.json")) as f:
        manifest = json.load(f)
    with open(os.path.join(folder, "all_latents.csv"), encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return folder, manifest, rows


def auc(row):
    return float(row["detection_auc"]) if row.get("detection_auc") else None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("root")
    p.add_argument("--top", default="grounded80")
    args = p.parse_args()
    print("| build | intent_keep | kept / live | median AUROC kept | median AUROC dropped | shuffled-words control "
          "| mostly-fragment latents kept / all | kept latents with a fragment word |")
    print("|---|---|---|---|---|---|---|---|")
    for build in BUILDS:
        if not os.path.isfile(os.path.join(args.root, build, "manifest.json")):
            continue
        folder, manifest, rows = load(args.root, build)
        st, g = manifest["stats"], manifest["stats"].get("grounding")
        if g is None:  # built before the grounding score existed: count fragments with today's guard
            print(f"| {build} | {manifest['fingerprint']['keep']} | {st['n_kept']} / {st['n_alive']} | - | - | - "
                  f"| (see text) | (see text) |")
            continue
        print(f"| {build} | {manifest['fingerprint']['keep']} | {st['n_kept']} / {st['n_alive']} | "
              f"{g['median_auc_kept']} | {g['median_auc_dropped']} | {g.get('median_auc_shuffled_words')} | "
              f"{g['fragment_latents_kept']} / {g['fragment_latents']} | {g['latents_with_a_fragment_kept']} |")
        png = os.path.join(folder, "grounding.png")
        if os.path.isfile(png):
            shutil.copyfile(png, os.path.join(HERE, f"grounding-{build}.png"))
    _, _, rows = load(args.root, args.top)
    kept = sorted((r for r in rows if r["kept"] == "1" and auc(r) is not None), key=lambda r: -auc(r))
    for title, part in (("highest", kept[:10]), ("lowest", kept[-10:][::-1])):
        print(f"\n10 {title}-AUROC kept latents ({args.top}):\n")
        print("| latent | AUROC | verdict (offline judge) | words |")
        print("|---|---|---|---|")
        for r in part:
            print(f"| {r['latent_id']} | {auc(r):.3f} | {r['verdict']} | {r['words']} |")
    yes = {r["latent_id"]: r for r in load(args.root, "default")[2]} if os.path.isdir(
        os.path.join(args.root, "default")) else {}
    if yes:
        vals = np.array([auc(r) for r in yes.values() if r["kept"] == "1" and auc(r) is not None])
        print(f"\nkeep=yes kept latents below AUROC 0.8: {(vals < 0.8).sum()} of {len(vals)}")


if __name__ == "__main__":
    main()
