"""The build's grounding stage: detection AUROC and fragment guard per latent (the scores themselves:
:mod:`recbole_saerec.intents.grounding`), their summary, plot and the hint when no latent is kept."""
import numpy as np

from recbole_saerec.fileio import atomic_path
from recbole_saerec.intents.build.stages import sae_seed
from recbole_saerec.settings import setting

# the settings of the fragment guard and the grounding score (SAERec.yaml, intent judge section)
GROUNDING_KEYS = ("intent_grounded_auc", "intent_fragment_max", "intent_fragment_min_len",
                  "intent_fragment_piece_ratio", "grounding_examples", "grounding_min_held", "grounding_background",
                  "grounding_hard_latents")


# ----------------------------------------------------------------------------- grounding
def ground_latents(config, judge, encoder, texts, x, text_codes, directions, alive, words, verdicts, vocab, word_emb):
    """Fragment guard + detection AUROC for every live latent (``recbole_saerec.intents.grounding``).

    Returns (verdicts with the guard applied, per latent ``{"detection_auc", "grounded",
    "fragments", "fragment_fraction", ...}``, the median AUROC when every latent is explained
    by another latent's words: the protocol's chance level, a control). ``grounded`` = AUROC >= ``intent_grounded_auc``
    and no more than ``intent_fragment_max`` of the words are fragments. The summary joins the
    words in the explanation only when a language model wrote it (the offline summary is
    three of the words).
    """
    from recbole_saerec.intents.grounding import (Lexicon, apply_fragment_guard, fragment_words, grounding_scores,
                                                  tokenizer_words)

    max_frac = float(setting(config, "intent_fragment_max"))
    frags = fragment_words(words, Lexicon(texts), min_len=int(setting(config, "intent_fragment_min_len")),
                           piece_ratio=float(setting(config, "intent_fragment_piece_ratio")),
                           known_words=tokenizer_words(encoder))
    verdicts = apply_fragment_guard(verdicts, frags, words, max_frac)
    index = {w: i for i, w in enumerate(vocab)}
    word_emb = np.asarray(word_emb, dtype=np.float32)
    word_vecs = [word_emb[[index[w] for w in ws if w not in set(bad) and w in index]] for ws, bad in zip(words, frags)]
    summary_vecs = None
    if judge.backend != "offline":
        summaries = [str(v.get("summary") or "").strip() for v in verdicts]
        filled = [s for s in summaries if s]
        enc = dict(zip(filled, np.asarray(encoder.encode(filled), dtype=np.float32))) if filled else {}
        summary_vecs = [enc.get(s) for s in summaries]
    seed = sae_seed(config)

    def score(vecs, summaries):
        return grounding_scores(text_codes, np.asarray(x, dtype=np.float32), alive, vecs,
                                np.asarray(directions, dtype=np.float32), summary_vecs=summaries,
                                n_examples=int(setting(config, "grounding_examples")),
                                min_held=int(setting(config, "grounding_min_held")),
                                n_background=int(setting(config, "grounding_background")),
                                hard_latents=int(setting(config, "grounding_hard_latents")), seed=seed)

    scores = score(word_vecs, summary_vecs)
    # chance level of this very protocol: every latent explained by ANOTHER latent's words
    perm = np.random.default_rng(seed).permutation(len(alive))
    other = np.empty_like(perm)
    other[perm] = np.roll(perm, -1)  # a cycle through all latents: nobody keeps its own words
    control = [r["detection_auc"] for r in score([word_vecs[i] for i in other], None)]
    control = [c for c in control if c is not None]
    control = round(float(np.median(control)), 4) if control else None
    threshold = float(setting(config, "intent_grounded_auc"))
    out = []
    for g, v in zip(scores, verdicts):
        auc = g["detection_auc"]
        out.append({**g, "fragments": v["fragments"], "fragment_fraction": v["fragment_fraction"],
                    "grounded": auc is not None and auc >= threshold and v["fragment_fraction"] <= max_frac})
    return verdicts, out, control


def grounding_fields(g):
    """The grounding columns of a catalogue row."""
    return {"detection_auc": g["detection_auc"], "grounded": bool(g["grounded"]), "fragments": g["fragments"],
            "fragment_fraction": g["fragment_fraction"]}


def grounding_summary(all_latents, max_fraction):
    """Median detection AUROC of kept vs dropped latents, and how many of each are mostly fragments."""
    def med(rows):
        vals = [r["detection_auc"] for r in rows if r["detection_auc"] is not None]
        return round(float(np.median(vals)), 4) if vals else None

    kept = [r for r in all_latents if r["kept"]]
    dropped = [r for r in all_latents if not r["kept"]]
    return {"median_auc_kept": med(kept), "median_auc_dropped": med(dropped),
            "grounded": sum(r["grounded"] for r in all_latents),
            "fragment_latents": sum(r["fragment_fraction"] > max_fraction for r in all_latents),
            "fragment_latents_kept": sum(r["fragment_fraction"] > max_fraction for r in kept),
            "latents_with_a_fragment_kept": sum(bool(r["fragments"]) for r in kept)}


def write_grounding_plot(path, all_latents, title):
    """Histogram of detection AUROC, kept vs dropped latents (latents without a score left out)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    auc = np.array([np.nan if r["detection_auc"] is None else r["detection_auc"] for r in all_latents])
    kept = np.array([r["kept"] for r in all_latents], dtype=bool)
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(0, 1, 41)
    for mask, label, colour in ((~kept, "dropped", "#bbbbbb"), (kept, "kept", "#1f77b4")):
        vals = auc[mask & ~np.isnan(auc)]
        ax.hist(vals, bins=bins, alpha=0.7, color=colour,
                label=f"{label} (n={len(vals)}, median {np.median(vals):.2f})" if len(vals) else label)
    ax.set_xlabel("detection AUROC (held-out activating texts vs random + hard negatives)")
    ax.set_ylabel("latents")
    ax.legend()
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def widen_hint(config, rule):
    """A fix for 'kept none' that does not repeat the rule already in force."""
    from recbole_saerec.intents.judge import KEEP_RULES, parse_keep_rule

    verdicts, grounded = parse_keep_rule(rule)
    wider = [r for r in ("yes", "probably", "maybe", "none")
             if len(KEEP_RULES[r]) > len(verdicts) and r != rule]
    fixes = []
    if grounded:
        fixes.append(f"a lower --intent_grounded_auc (now {setting(config, 'intent_grounded_auc')})")
        if len(verdicts) < len(KEEP_RULES["none"]):
            fixes += [f"--intent_keep=grounded+{r}" for r in wider if r != "none"] + ["--intent_keep=grounded"]
    else:
        fixes += [f"--intent_keep={r}" for r in wider]
    fixes.append("more latents (sae_n_latents)")
    return " or ".join(fixes) + "."
