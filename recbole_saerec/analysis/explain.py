"""Explain SAERec recommendations with the intents the model itself used.

    python -m recbole_saerec.analysis.explain --checkpoint=saved/SAERec-....pth --user=196
    python -m recbole_saerec.analysis.explain --checkpoint=... --users=196,186,22 --topk 10 --json out.json
    python -m recbole_saerec.analysis.explain --checkpoint=... --all --json all.json
    python -m recbole_saerec.analysis.explain --checkpoint=... --user=196 --png user196.png

Any setting of ``properties/analysis/labels.yaml`` is a flag too (``--label_min_readability=0``
shows every intent; see :mod:`recbole_saerec.analysis.labels`).

For each user, at the TEST position (the same input sequence and held-out item that
the test metrics use): the last items of the sequence (titles from the dataset's
``.item`` file), the top-K recommendations with scores, the held-out item's rank,
the personal intents retrieved for the user (words, summary, cosine score), the
public intents shared by all users (EMA activation), each named by the items it fires
on (only the readable ones are printed; the hidden ones are counted), the intents that link the
last items to the recommendations, and, for fusions that weigh users differently, the fusion
weight of each branch. Everything intent-related is read from the model's own forward pass
(``forward(..., return_details=True)``), never recomputed here; the scores are
``user @ item_table.T`` from that same pass, i.e. ``full_sort_predict``.

Library::

    from recbole_saerec.analysis.explain import load_model, explain_users, format_explanation
    bundle = load_model("saved/SAERec-....pth")
    for e in explain_users(bundle, ["196", "186"], topk=10):
        print(format_explanation(e))

Many users are explained in batched forward passes (``eval_batch_size`` users each).
"""
import argparse
import csv
import os
import sys
from dataclasses import dataclass

import numpy as np
import torch

from recbole_saerec.analysis.checkpoints import add_checkpoint_args
from recbole_saerec.artefacts import write_json_atomic
from recbole_saerec.cli import UsageError, run_main
from recbole_saerec.data.text import BadLines, decode_lines
from recbole_saerec.trainer import mask_seen_items
from recbole_saerec.utils import setting

TITLE_FIELDS = ("title", "movie_title", "name", "item_name")


# ---------------------------------------------------------------------------- loading
@dataclass
class Bundle:
    """A trained model with its config, dataset, splits and item text."""
    config: object
    dataset: object
    train_data: object
    valid_data: object
    test_data: object
    model: object
    items: "ItemText"
    checkpoint: str


def load_model(checkpoint, data_path=None, device=None, quiet=True, trust=False, needs="intents"):
    """Load a saved checkpoint like RecBole's ``load_data_and_model``, through the plugin.

    Config comes from the checkpoint; dataset and splits are rebuilt with the plugin's
    Config / ``create_dataset`` / ``split_with_protocol`` (same protocol as training), the
    model is rebuilt and its weights loaded with :func:`recbole_saerec.analysis.checkpoints.read_checkpoint`.

    Args:
        checkpoint: a ``.pth`` written by ``run_recbole_saerec.py`` / ``quick_start.run``, or a
            benchmark run folder holding one (see :mod:`recbole_saerec.analysis.checkpoints`).
        data_path: folder holding ``<dataset>/`` when it moved since training (the config key).
        device: 'cpu' / 'cuda'; default: the training device if available, else the CPU.
        trust: allow a full pickled checkpoint (only for files you trust: unpickling can run code).
        needs: what the caller reads of the model (``checkpoints.MODEL_NEEDS``): a checkpoint of
            another model, or data changed since training, is refused before anything is loaded.
    """
    import logging

    from recbole.utils import init_seed

    from recbole_saerec.analysis.checkpoints import check_checkpoint_fits, checkpoint_config, read_checkpoint
    from recbole_saerec.data import split_with_protocol
    from recbole_saerec.quick_start import load_dataset
    from recbole_saerec.utils import get_model

    saved = read_checkpoint(checkpoint, trust=trust)
    checkpoint = saved["path"]
    config = checkpoint_config(saved)
    if data_path:
        config["data_path"] = os.path.join(data_path, config["dataset"])
    check_checkpoint_fits(saved, config, needs)
    if device is None:
        device = config["device"]
        if torch.device(device).type == "cuda" and not torch.cuda.is_available():
            device = "cpu"
    config["device"] = torch.device(device)
    config["use_gpu"] = torch.device(device).type == "cuda"
    if quiet:
        logging.getLogger().setLevel(logging.ERROR)
    init_seed(config["seed"], config["reproducibility"])
    dataset = load_dataset(config)
    train_data, valid_data, test_data = split_with_protocol(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    state = saved["state_dict"]
    if "intent_vectors" in state and hasattr(model, "intent_vectors"):
        # The catalogue and item activations come from the artefact directory (not from the
        # checkpoint): refuse an artefact build other than the one the model was trained with.
        if state["intent_vectors"].shape != model.intent_vectors.shape or not torch.equal(
                state["intent_vectors"].cpu(), model.intent_vectors.cpu()):
            raise UsageError(
                f"The intent artefacts in {model.intent_dir} are not the ones {checkpoint} was trained with "
                f"(intent vectors differ: {tuple(state['intent_vectors'].shape)} saved vs "
                f"{tuple(model.intent_vectors.shape)} now). Point intent_dir at the original build.")
    model.load_state_dict(state)
    model.load_other_parameter(saved.get("other_parameter"))
    model.eval()
    items = ItemText.from_config(config, dataset)
    return Bundle(config, dataset, train_data, valid_data, test_data, model, items, str(checkpoint))


# ------------------------------------------------------------------------- item text
class ItemText:
    """Raw item columns from ``<data_path>/<dataset>.item`` (what RecBole did not load)."""

    def __init__(self, columns, rows, title_field=None):
        self.columns = columns  # field names without the ':type' suffix
        self.rows = rows  # token -> {field: raw string}
        self.title_field = title_field or next((f for f in TITLE_FIELDS if f in columns), None)

    @classmethod
    def from_config(cls, config, dataset, title_field=None):
        path = os.path.join(config["data_path"], f"{config['dataset']}.item")
        if not os.path.isfile(path):
            return cls([], {}, title_field)
        encoding = config["encoding"] if "encoding" in config and config["encoding"] else "utf-8"
        sep = config["field_separator"] if "field_separator" in config and config["field_separator"] else "\t"
        rows = {}
        with open(path, "rb") as f:  # bytes not valid in `encoding`: the on_bad_line policy (data/text.py)
            reader = csv.reader(decode_lines(f, path, BadLines(setting(config, "on_bad_line")), encoding),
                                delimiter=sep, quoting=csv.QUOTE_NONE)
            header = [h.split(":")[0] for h in next(reader)]
            iid = dataset.iid_field if dataset.iid_field in header else header[0]
            key = header.index(iid)
            for rec in reader:
                if len(rec) > key:
                    rows[rec[key]] = dict(zip(header, rec))
        return cls(header, rows, title_field)

    def title(self, token):
        row = self.rows.get(str(token))
        if row and self.title_field and row.get(self.title_field, "").strip():
            from recbole_saerec.intents.corpus import clean_value

            return clean_value(row[self.title_field]) or str(token)  # as the corpus reads it: "&amp;" -> "&"
        return str(token)

    def field(self, token, name):
        row = self.rows.get(str(token))
        return (row or {}).get(name, "")

    def labels(self, token, name, sep=None):
        """A multi-valued column as a list: split on `sep`, else on '|' when present, else on spaces."""
        raw = self.field(token, name).strip()
        if not raw:
            return []
        if sep is None:
            sep = "|" if "|" in raw else None
        return [part.strip() for part in raw.split(sep) if part.strip()]


# ------------------------------------------------------------------------- forward pass
def test_rows(bundle, users=None):
    """Row indices in the test split for raw user tokens (None: every test user, in split order)."""
    ds = bundle.test_data._dataset
    uid_field = ds.uid_field
    uids = ds.inter_feat[uid_field].numpy()
    if users is None:
        return np.arange(len(uids))
    row_of = {int(u): r for r, u in enumerate(uids)}
    rows = []
    for token in users:
        token = str(token)
        if token not in ds.field2token_id[uid_field]:
            examples = ", ".join(str(t) for t in ds.id2token(uid_field, uids[:3]))
            raise KeyError(f"Unknown user '{token}': not a raw {uid_field} of dataset '{bundle.config['dataset']}' "
                           f"(its test users include {examples}).")
        uid = ds.field2token_id[uid_field][token]
        if uid not in row_of:
            raise KeyError(f"User '{token}' has no test interaction (too short a sequence?).")
        rows.append(row_of[uid])
    return np.asarray(rows, dtype=np.int64)


def batches(bundle, rows, batch_size=None):
    """Test interactions (the loader's own transform applied) in chunks of `batch_size` rows."""
    loader = bundle.test_data
    batch_size = batch_size or bundle.config["eval_batch_size"]
    for start in range(0, len(rows), batch_size):
        index = rows[start:start + batch_size]
        inter = loader._dataset[index]
        inter = loader.transform(loader._dataset, inter)
        yield index, inter.to(bundle.config["device"])


@torch.no_grad()
def scored_forward(model, interaction, config):
    """One forward pass: (scores [B, n_items], details from the model), ranked as the trainer's
    evaluation ranks: [PAD] at -inf, and the user's input-sequence items too under ``mask_history``."""
    user, details = model.forward(interaction[model.ITEM_SEQ], interaction[model.ITEM_SEQ_LEN],
                                  return_details=True)
    scores = user @ details["item_table"].T  # == full_sort_predict
    scores[:, 0] = -torch.inf  # as RecBole's full-sort evaluation
    return user, mask_seen_items(scores, interaction, config), details


# ------------------------------------------------------------------------- explanations
# Fusion rules whose branch weights depend on the user; 'mean' and 'sum' give every user the same
# weights, so printing them would only repeat a constant.
PER_USER_FUSIONS = ("adaptive", "residual")


def intent_entry(model, row, labels=None, **extra):
    cat = model.intent_catalogue[row]
    entry = {"row": int(row), "latent_id": cat.get("latent_id"), "words": list(cat.get("words", [])),
             "summary": cat.get("summary", ""), "steer_weight": float(model.steer_weights[row]), **extra}
    if labels is not None:
        lab = labels[row]
        entry.update(label=lab["name"], readability=lab["readability"], readable=lab["readable"])
    return entry


def item_activations(bundle):
    """[n_items, m] dense item-intent activations of the model (cached on the bundle)."""
    cache = bundle.__dict__.setdefault("_dense_activations", [])
    if not cache:
        act = bundle.model.item_intent_activations
        cache.append((act.to_dense() if act.is_sparse else act).detach().cpu().float())
    return cache[0]


def connections(act, labels, hist_ids, rec_ids, used_rows, max_shared=4, catalogue=None):
    """Readable intents that link the user's last items to the recommendations.

    The intents the model used for this user (``used_rows``: personal and public) plus up to
    ``max_shared`` more that some history item AND some recommendation both activate (strongest
    first: summed activation on each side, multiplied). Each: row, label, the history positions
    and recommendation ranks (both 1-based) that activate it, and whether the model used it.
    """
    hist = act[torch.as_tensor(hist_ids, dtype=torch.long)] if len(hist_ids) else torch.zeros(0, act.shape[1])
    recs = act[torch.as_tensor(rec_ids, dtype=torch.long)]
    readable = torch.tensor([x["readable"] for x in labels])
    strength = hist.sum(0) * recs.sum(0) * readable
    used = [r for r in dict.fromkeys(used_rows) if labels[r]["readable"]]
    shared = [int(r) for r in torch.argsort(strength, descending=True, stable=True)[:len(used) + max_shared]
              if strength[r] > 0 and int(r) not in used][:max_shared]
    out = []
    for r in used + shared:
        name = labels[r]["name"] or (catalogue[r].get("summary", "") if catalogue else "") or f"intent {r}"
        out.append({"row": r, "label": name, "used_by_model": r in used,
                    "history": [i + 1 for i in torch.nonzero(hist[:, r] > 0).flatten().tolist()],
                    "recommendations": [i + 1 for i in torch.nonzero(recs[:, r] > 0).flatten().tolist()]})
    return out


def explain_users(bundle, users=None, topk=10, n_history=10, batch_size=None, labels=None):
    """Explanations (list of dicts, JSON-ready) for raw user tokens; None = every test user.

    ``labels``: the intents' evidence labels (:func:`recbole_saerec.analysis.labels.model_labels`,
    default settings when None). Every intent the model used is listed, each with its ``label``,
    ``readability`` and ``readable``; the text and the PNG show the readable ones only.
    """
    from recbole_saerec.analysis.labels import model_labels

    model, ds = bundle.model, bundle.test_data._dataset
    model.eval()
    labels = model_labels(bundle) if labels is None else labels
    act = item_activations(bundle)
    uid_field, iid_field = ds.uid_field, ds.iid_field
    out = []
    for _, inter in batches(bundle, test_rows(bundle, users), batch_size):
        user_vec, scores, details = scored_forward(model, inter, bundle.config)
        top_scores, top_ids = scores.topk(topk, dim=-1)
        targets = inter[iid_field]
        target_scores = scores.gather(1, targets.unsqueeze(1))
        target_ranks = (scores > target_scores).sum(1)  # 0-based; RecBole's topk order on exact ties
        public_idx = details["public_idx"].tolist()
        public_act = model.public_ema if getattr(model, "use_ema", True) else model.last_batch_freq
        public = [intent_entry(model, j, labels, activation=float(public_act[j])) for j in public_idx]
        seqs, lens = inter[model.ITEM_SEQ].cpu(), inter[model.ITEM_SEQ_LEN].cpu()
        for b in range(len(inter)):
            n = int(lens[b])
            hist_ids = seqs[b, max(0, n - n_history):n].tolist()
            hist_tok = ds.id2token(iid_field, hist_ids) if hist_ids else []
            rec_tok = ds.id2token(iid_field, top_ids[b].cpu().numpy())
            target_tok = ds.id2token(iid_field, int(targets[b]))
            rank = int(target_ranks[b])
            personal_rows = details["personal_idx"][b].tolist()
            out.append({
                "user": str(ds.id2token(uid_field, int(inter[uid_field][b]))),
                "sequence_length": n,
                "history": [{"item": str(t), "title": bundle.items.title(t)} for t in hist_tok],
                "target": {"item": str(target_tok), "title": bundle.items.title(target_tok), "rank": rank + 1,
                           "score": float(target_scores[b]), f"hit@{topk}": rank < topk},
                "recommendations": [
                    {"rank": r + 1, "item": str(t), "title": bundle.items.title(t), "score": float(s)}
                    for r, (t, s) in enumerate(zip(rec_tok, top_scores[b].tolist()))],
                "personal_intents": [
                    intent_entry(model, j, labels, score=float(s))
                    for j, s in zip(personal_rows, details["personal_scores"][b].tolist())],
                "public_intents": public,
                "connections": connections(act, labels, hist_ids, top_ids[b].cpu().tolist(),
                                           personal_rows + public_idx, catalogue=model.intent_catalogue),
                "fusion": dict(zip(details["branch_names"], details["fusion_weights"][b].tolist())),
                "fusion_rule": model.fusion,
            })
    return out


def retrieval_summary(explanations, top=10):
    """How personal the personal intents are, over many explanations (e.g. every test user).

    Cosine top-S retrieval can collapse onto a few "hub" intents that every user retrieves;
    then the personal branch is not personal and the public set (the most retrieved
    intents) equals it. Returns: users, distinct intents retrieved, the share of users
    whose personal set is the most common one, the mean share of a user's personal
    intents that are also public, the `top` most retrieved intents with the share of
    users retrieving each, and the mean fusion weight per branch.
    """
    n = len(explanations)
    if not n:
        raise ValueError("retrieval_summary: no explanations given.")
    counts, sets, entries = {}, {}, {}
    for e in explanations:
        for p in e["personal_intents"]:
            counts[p["row"]] = counts.get(p["row"], 0) + 1
            entries.setdefault(p["row"], p)
        key = tuple(sorted(p["row"] for p in e["personal_intents"]))
        sets[key] = sets.get(key, 0) + 1
    overlap = [len({p["row"] for p in e["personal_intents"]} & {p["row"] for p in e["public_intents"]})
               / max(len(e["personal_intents"]), 1) for e in explanations]
    first = explanations[0]
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return {
        "users": n,
        "distinct_personal_intents": len(counts),
        "distinct_personal_sets": len(sets),
        "most_common_set_share": max(sets.values()) / n,
        "personal_also_public": sum(overlap) / n,
        "most_retrieved": [{"row": r, "share_of_users": c / n, "summary": entries[r]["summary"],
                            "words": entries[r]["words"][:6], "label": entries[r].get("label"),
                            "readable": entries[r].get("readable", True)} for r, c in ranked],
        "mean_fusion": {b: sum(e["fusion"][b] for e in explanations) / n for b in first["fusion"]},
        "fusion_rule": first.get("fusion_rule"),
    }


def format_retrieval_summary(s):
    lines = [f"retrieval over {s['users']} users: {s['distinct_personal_intents']} distinct personal intents, "
             f"{s['distinct_personal_sets']} distinct sets; the most common set is {100 * s['most_common_set_share']:.1f}% "
             f"of users; {100 * s['personal_also_public']:.1f}% of personal intents are also public"]
    if s.get("fusion_rule") in (None,) + PER_USER_FUSIONS:
        lines.append("mean fusion weights: " + ", ".join(f"{b} {w:.3f}" for b, w in s["mean_fusion"].items()))
    lines.append("most retrieved personal intents (share of users):")
    for m in s["most_retrieved"]:
        name = (m.get("label") or m["summary"] or "(no summary)") if m.get("readable", True) else "(not readable)"
        lines.append(f"  {100 * m['share_of_users']:5.1f}%  #{m['row']:<4} {name}  [MI words: {', '.join(m['words'])}]")
    return "\n".join(lines)


def _intent_line(entry, value_key):
    words = ", ".join(entry["words"][:5])
    name = entry.get("label") or entry["summary"] or "(no summary)"
    read = f"readability {entry['readability']:.2f}; " if "readability" in entry else ""
    return (f"  {entry[value_key]:6.3f}  #{entry['row']:<4} {name}  ({read}MI words: {words})"
            + ("" if entry["steer_weight"] == 1 else f"  (steer x{entry['steer_weight']:g})"))


def shown(entries):
    """The entries a person is shown: the readable ones (all, for entries without a label)."""
    return [x for x in entries if x.get("readable", True)]


def _hidden_note(entries, what):
    hidden = len(entries) - len(shown(entries))
    if not hidden:
        return ""
    return (f" [{hidden} of {len(entries)} {what} hidden: not readable from the items they fire on; "
            "--label_min_readability=0 shows them]")


def format_explanation(e):
    """Readable text of one explanation dict: only the readable intents, with a count of the hidden ones."""
    t, k = e["target"], len(e["recommendations"])
    lines = [f"User {e['user']}  (test position: {e['sequence_length']} items seen; held-out next item "
             f"'{t['title']}' ranked {t['rank']}{' - a hit' if t['rank'] <= k else ''})",
             f"Last {len(e['history'])} items (oldest first):"]
    lines += [f"  {i + 1:3d}. {h['title']}  [{h['item']}]" for i, h in enumerate(e["history"])]
    lines.append(f"Top-{k} recommendations (score):")
    for r in e["recommendations"]:
        mark = "   <- held-out test item" if r["item"] == t["item"] else ""
        lines.append(f"  {r['rank']:3d}. {r['score']:7.3f}  {r['title']}  [{r['item']}]{mark}")
    per, pub = e["personal_intents"], e["public_intents"]
    lines.append("Personal intents (cosine of the user's retrieval query to the intent; name from the items it "
                 "fires on):" + _hidden_note(per, "personal intents"))
    lines += [_intent_line(p, "score") for p in shown(per)]
    if pub:
        lines.append("Public intents (shared by all users; EMA activation frequency):"
                     + _hidden_note(pub, "public intents"))
        lines += [_intent_line(p, "activation") for p in shown(pub)]
    links = [c for c in e.get("connections", []) if c["history"] and c["recommendations"]]
    if links:
        lines.append("Intents linking the last items to the recommendations (history positions -> "
                     "recommendation ranks):")
        lines += [f"  #{c['row']:<4} {c['label']}: items {', '.join(map(str, c['history']))} -> recommendations "
                  f"{', '.join(map(str, c['recommendations']))}" + ("" if c["used_by_model"] else
                                                                   "  (shared by both, not retrieved)")
                  for c in links]
    # the weights multiply each branch's state in the user vector: a convex mix for 'adaptive'; for
    # 'residual' the self state always counts once and the intent weights sum to 1. 'mean' and 'sum'
    # weigh every user alike: nothing to show.
    if e.get("fusion_rule") in PER_USER_FUSIONS:
        rule = {"residual": " (residual: user = self state + the intent branches, weighted)",
                "adaptive": " (adaptive gate: a convex mix of the branches)"}[e["fusion_rule"]]
        lines.append(f"Fusion weights{rule}: " + " | ".join(f"{name} {w:.3f}" for name, w in e["fusion"].items()))
    return "\n".join(lines)


def _wrap(text, width):
    import textwrap

    return textwrap.wrap(text, width) or [""]


def plot_user(e, path, width=34):
    """PNG: the user's last items (left), the readable intents the model used for them and those shared
    by a last item and a recommendation (middle), the top recommendations (right); a line joins an item
    to each intent it activates. Texts are wrapped, never cut, and the figure grows to hold them."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    links = e.get("connections", [])
    columns = [
        [f"{i + 1}. {h['title']}" for i, h in enumerate(e["history"])],
        [f"#{c['row']} {c['label']}" + ("" if c["used_by_model"] else " (shared)") for c in links],
        [f"{r['rank']}. {r['title']}" + (" (held-out item)" if r["item"] == e["target"]["item"] else "")
         for r in e["recommendations"]],
    ]
    wrapped = [[_wrap(text, width) for text in col] for col in columns]
    line_h = 0.19  # inches per text line
    heights = [sum(len(w) for w in col) + 0.6 * len(col) for col in wrapped]
    total = max(heights + [4.0])
    fig = plt.figure(figsize=(12, line_h * total + 1.6))
    ax = fig.add_axes([0.01, 0.01, 0.98, 1 - 1.3 / (line_h * total + 1.6)])
    ax.set_xlim(0, 1)
    ax.set_ylim(total, 0)
    ax.axis("off")
    xs = (0.15, 0.5, 0.85)
    colors = ("#dbe9f6", "#fde2c4", "#d9f0d3")
    anchors = [[], [], []]  # y centre of each entry
    for c, col in enumerate(wrapped):
        # centre the shorter columns vertically
        y = (total - heights[c]) / 2 + 0.3
        for lines in col:
            # drawn over the lines, which run centre to centre: each line ends at its box's edge
            ax.text(xs[c], y + len(lines) / 2, "\n".join(lines), ha="center", va="center", fontsize=8, zorder=3,
                    bbox={"boxstyle": "round,pad=0.3", "fc": colors[c], "ec": "#888888", "lw": 0.5})
            anchors[c].append(y + len(lines) / 2)
            y += len(lines) + 0.6
    for k, link in enumerate(links):
        for pos in link["history"]:
            ax.plot([xs[0], xs[1]], [anchors[0][pos - 1], anchors[1][k]], color="#4a7ab5", lw=0.8, alpha=0.6,
                    zorder=1)
        for rank in link["recommendations"]:
            ax.plot([xs[1], xs[2]], [anchors[1][k], anchors[2][rank - 1]], color="#4a9a4a", lw=0.8, alpha=0.6,
                    zorder=1)
    for c, title in enumerate(("last items (oldest first)", "intents (readable ones)", "top recommendations")):
        ax.text(xs[c], -0.2, title, ha="center", va="bottom", fontsize=9, fontweight="bold")
    hidden = len(e["personal_intents"]) + len(e["public_intents"]) - len(shown(e["personal_intents"])) \
        - len(shown(e["public_intents"]))
    title = (f"user {e['user']}: held-out item '{e['target']['title']}' ranked {e['target']['rank']}"
             + (f"; {hidden} unreadable intents not shown" if hidden else ""))
    fig.suptitle("\n".join(_wrap(title, 150)), fontsize=10)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------- CLI
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_checkpoint_args(parser, "a trained SAERec", scoring=True)
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="one raw user id")
    who.add_argument("--users", help="comma-separated raw user ids")
    who.add_argument("--all", action="store_true", help="every test user (use --json; text for the first 3)")
    parser.add_argument("--topk", type=int, default=10)
    parser.add_argument("--history", type=int, default=10, help="how many of the last items to show")
    parser.add_argument("--json", help="write the explanations to this JSON file")
    parser.add_argument("--png", help="PNG per user: this path (one user) or <stem>_<user>.png (several)")
    args, label_args = parser.parse_known_args(argv)

    from recbole_saerec.analysis.labels import label_settings, model_labels, readable_share
    from recbole_saerec.cli import config_args

    settings = label_settings(config_args(label_args))  # --label_min_readability=0 ... (labels.yaml)
    bundle = load_model(args.checkpoint, data_path=args.data_path, device=args.device, trust=args.trust_checkpoint)
    users = None if args.all else ([args.user] if args.user else [u.strip() for u in args.users.split(",")])
    try:
        labels = model_labels(bundle, settings)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        result = explain_users(bundle, users, topk=args.topk, n_history=args.history, batch_size=args.batch_size,
                               labels=labels)
    except KeyError as exc:  # an unknown user or one without a test interaction
        raise UsageError(exc.args[0]) from None
    readable, total = readable_share(labels)
    print(f"Intents named by the items they fire on: {readable} of {total} readable (readability >= "
          f"{settings['label_min_readability']:g}); only those are shown.\n")
    some = result[:3] if args.all else result
    print("\n\n".join(format_explanation(e) for e in some))
    if args.all:
        print(f"\n... {len(result)} users explained" + (f" (all in {args.json})" if args.json else ""))
        print("\n" + format_retrieval_summary(retrieval_summary(result)))
    if args.json:
        write_json_atomic(args.json, {"checkpoint": bundle.checkpoint, "dataset": bundle.config["dataset"],
                                      "topk": args.topk, "users": result})
    if args.png:
        stem, ext = os.path.splitext(args.png)
        for e in result if len(result) <= 50 else result[:50]:
            plot_user(e, args.png if len(result) == 1 else f"{stem}_{e['user']}{ext or '.png'}")
    return result


if __name__ == "__main__":
    sys.exit(run_main(main, prog="python -m recbole_saerec.analysis.explain"))
