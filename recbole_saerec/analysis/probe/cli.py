"""RecSAE probe: interpret and steer any trained RecBole model with a TopK sparse autoencoder.

The command line ``python -m recbole_saerec.analysis.probe`` (the method: the package docstring).
"""
import argparse
import json
import sys

import torch

from recbole_saerec.analysis.checkpoints import add_checkpoint_args
from recbole_saerec.analysis.probe.run import DEFAULT_SCALES, probe


def _bool(v):
    return str(v).lower() in ("1", "true", "yes", "y")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m recbole_saerec.analysis.probe", description=_description(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_checkpoint_args(parser, "a RecBole or plugin model")
    parser.add_argument("--latents_mult", type=int, default=16, help="SAE latents = this x the model dimension")
    parser.add_argument("--n_latents", type=int, default=None, help="SAE latents (overrides --latents_mult)")
    parser.add_argument("--k", type=int, default=8, help="active latents per case")
    parser.add_argument("--out", default=None, help="output folder (default saved/probe-<dataset>-<model>)")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--sae_steps", type=int, default=None, help="SAE (and dense AE) steps; default: trainer's")
    parser.add_argument("--sae_batch_size", type=int, default=1024)
    parser.add_argument("--tied", type=_bool, default=False, help="tied SAE decoder (default: untied, as RecSAE)")
    parser.add_argument("--n_top", type=int, default=20, help="top cases per latent for concepts/similarity")
    parser.add_argument("--n_terms", type=int, default=3, help="TF-IDF terms per concept")
    parser.add_argument("--min_support", type=float, default=0.25,
                        help="a concept term must occur in the top-10 lists of this share of the top cases")
    parser.add_argument("--n_verify", type=int, default=20, help="held-out activating cases per latent (max)")
    parser.add_argument("--min_verify", type=int, default=5, help="fewest held-out activating cases to verify")
    parser.add_argument("--heldout", type=float, default=0.2, help="share of users held out for verification")
    parser.add_argument("--tune_latents", type=int, default=10, help="latents to tune (highest confidence)")
    parser.add_argument("--scales", default=",".join(str(s) for s in DEFAULT_SCALES))
    parser.add_argument("--max_tune_cases", type=int, default=500)
    parser.add_argument("--max_cases", type=int, default=None, help="subsample training cases (large data)")
    parser.add_argument("--text_fields", default=None, help="comma-separated .item columns (default: "
                                                            "intent_item_text_fields of the dataset yaml)")
    parser.add_argument("--lm_concept", type=_bool, default=False, help="sentence concepts via the judge backends")
    parser.add_argument("--judge_backend", default=None, help="offline | openai | llama_cpp (intents/judge/)")
    parser.add_argument("--judge_model", default=None)
    parser.add_argument("--judge_base_url", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--progress", type=_bool, default=False)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    metrics = probe(
        args.checkpoint, out=args.out, latents_mult=args.latents_mult, n_latents=args.n_latents, k=args.k,
        seed=args.seed, sae_steps=args.sae_steps, sae_batch_size=args.sae_batch_size, tied=args.tied,
        n_top=args.n_top, n_terms=args.n_terms, min_support=args.min_support, n_verify=args.n_verify,
        min_verify=args.min_verify,
        heldout=args.heldout, tune_latents=args.tune_latents,
        scales=[float(s) if "." in s else int(s) for s in args.scales.split(",")],
        max_tune_cases=args.max_tune_cases, max_cases=args.max_cases, data_path=args.data_path,
        text_fields=args.text_fields.split(",") if args.text_fields else None, lm_concept=args.lm_concept,
        judge_options={k: v for k in ("judge_backend", "judge_model", "judge_base_url")
                       if (v := getattr(args, k)) is not None},
        progress=args.progress, trust=args.trust_checkpoint,
        command="python -m recbole_saerec.analysis.probe " + " ".join(argv or sys.argv[1:]))
    summary = {key: metrics[key] for key in ("concepts", "similarity", "quality")}
    summary["tuning"] = metrics["tuning"]["summary"]
    print(json.dumps(summary, indent=1))


def _description():
    return __doc__.split("\n\n")[0]
