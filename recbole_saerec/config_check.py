"""Config validation before any work: unknown keys, types, ranges and choices.

``Config`` calls :func:`validate_config` as its last step, so a bad value stops the
run before the dataset is read, the encoder is loaded or an SAE is trained.

* Unknown keys (every key the user set is checked: config files, config_dict,
  command line) are WARNED with the closest known key. Known = every key of
  RecBole's own yaml files (overall, every model, every dataset, quick-start), of
  the plugin's yaml files, and the rule table below. A warning, not an error:
  RecBole models and user scripts may read keys no yaml declares.
* Plugin keys are type-checked against the ``# (type)`` comment of their yaml
  line (the one place a key is declared); ``~`` in that yaml means None is allowed.
* Ranges and choices live in ``RULES`` (one table): an interval string in
  RecBole's own notation (``"[0, 1)"``, ``"[1, inf)"``), a tuple of allowed
  values, ``PLAIN_NAME`` (a name that becomes part of folder and file names: the dataset,
  the intent tag), ``OPTIONAL`` (like ``ANY``, and ``~`` switches the thing off although the
  default is set: the log folders), or ``ANY`` (paths, free text: type check only). Every plugin key
  has an entry (tests/test_config_check.py enforces it).
"""
import difflib
import glob
import math
import os
import re
from logging import getLogger

from recbole_saerec.cli import plain_name_problem
from recbole_saerec.settings import FUSIONS, JUDGE_BACKENDS, KEEP_RULE_NAMES, PROPERTIES_DIR, TEXT_POLICIES, default_k
ANY = "any"
PLAIN_NAME = "plain name"  # part of folder and file names: cli.plain_name_problem says what is allowed
OPTIONAL = "optional"      # any value of the key's type, or ~ (off) although the default is set
POSITIVE_INT = "[1, inf)"
NON_NEGATIVE = "[0, inf)"
POSITIVE = "(0, inf)"
PROBABILITY = "[0, 1)"       # dropout-like: 1 would drop everything
SIMILARITY = "[-1, 1]"
SWITCH = (True, False, "auto")  # a speed switch: on, off, or where the hardware makes it pay (hardware.py)

RULES = {
    # --- overall.yaml: protocol and training ---
    "eval_args": ANY, "metrics": ANY, "topk": ANY, "valid_metric": ANY,
    "eval_batch_size": POSITIVE_INT, "inter_duplicates": ("error", "drop", "keep"),
    "protocol": ("clean", "authors_leaky"), "encoding": ANY, "on_bad_line": TEXT_POLICIES,
    "epochs": POSITIVE_INT, "stopping_step": POSITIVE_INT, "train_batch_size": POSITIVE_INT,
    "learning_rate": POSITIVE, "show_progress": ANY, "checkpoint_dir": ANY,
    "log_dir": OPTIONAL, "tensorboard_dir": OPTIONAL,
    "intent_root": ANY, "intent_tag": PLAIN_NAME, "intent_dir": ANY, "intent_autobuild": ANY,
    # --- dataset yamls ---
    "data_path": ANY, "USER_ID_FIELD": ANY, "ITEM_ID_FIELD": ANY, "TIME_FIELD": ANY, "load_col": ANY,
    "rm_dup_inter": ("first", "last", None), "val_interval": ANY, "filter_inter_by_user_or_item": ANY,
    "user_inter_num_interval": ANY, "item_inter_num_interval": ANY, "MAX_ITEM_LIST_LENGTH": POSITIVE_INT,
    # --- backbone (SAERec, GuidedRec) ---
    "n_layers": POSITIVE_INT, "n_heads": POSITIVE_INT, "hidden_size": POSITIVE_INT, "inner_size": POSITIVE_INT,
    "hidden_dropout_prob": PROBABILITY, "attn_dropout_prob": PROBABILITY,
    "hidden_act": ("gelu", "relu", "swish", "tanh", "sigmoid"),
    "layer_norm_eps": POSITIVE, "initializer_range": POSITIVE,
    "loss_type": ("CE", "BPR"), "train_neg_sample_args": ANY, "weight_decay": NON_NEGATIVE,
    # --- PackedBERT4Rec (RecBole's BERT4Rec keys) ---
    "mask_ratio": "(0, 1)", "ft_ratio": "[0, 1]",
    "transform": ("mask_itemseq", "inverse_itemseq", "crop_itemseq", "reorder_itemseq", "user_defined", None),
    # --- contrastive baselines (CL4SRec, DuoRec, ICLRec, ICSRec) ---
    "cl_weight": NON_NEGATIVE, "cl_temperature": POSITIVE, "cl_similarity": ("dot", "cos"),
    "intent_cl_weight": NON_NEGATIVE, "false_negative_mask": (True, False),
    "aug_crop_ratio": "(0, 1]", "aug_mask_ratio": "[0, 1]", "aug_reorder_ratio": "[0, 1]",
    "cluster_k": "[2, inf)", "cluster_max_iter": POSITIVE_INT,
    # --- text controls (SASRecTextFeat, LLMInit) ---
    "item_text_path": ANY, "llminit_selection": ("var", "uniform", "random"),
    # --- SAERec intents ---
    "intents_retrieved": POSITIVE_INT,
    "ema_decay": "[0, 1)",           # beta = 1 never updates the public frequencies; > 1 diverges (-1e16 seen)
    "intent_layers": POSITIVE_INT,
    "intent_query": ("sequence", "last_item"),
    "intent_query_source": ("sequence", "embedding"),
    "item_intent_feature": ANY, "intent_check_encoder": ANY,
    "use_personal": ANY, "use_public": ANY,
    "fusion": FUSIONS,
    "use_ema": ANY,
    "mask_history": (True, False),
    "resume_state": (True, False),
    "autocast_bf16": ANY, "pack_tokens": ANY, "pack_attention": ANY, "fused_ce": ANY, "bf16_ce": SWITCH, "cpu_rand_dropout": ANY, "compile": ANY,
    # --- intent judge ---
    # True is what YAML 1.1 makes of an unquoted `yes`
    "intent_keep": KEEP_RULE_NAMES + (True,),
    "intent_grounded_auc": "[0, 1]", "intent_fragment_max": "[0, 1]", "intent_fragment_min_len": POSITIVE_INT,
    "intent_fragment_piece_ratio": NON_NEGATIVE, "grounding_examples": POSITIVE_INT,
    "grounding_min_held": POSITIVE_INT, "grounding_background": POSITIVE_INT, "grounding_hard_latents": NON_NEGATIVE,
    "judge_backend": JUDGE_BACKENDS + ("llamacpp", "llama-cpp"),
    "judge_base_url": ANY, "judge_model": ANY, "judge_api_key_env": ANY,
    "judge_max_retries": NON_NEGATIVE, "judge_timeout": POSITIVE, "judge_max_tokens": POSITIVE_INT,
    "judge_domain": ANY, "judge_n_ctx": POSITIVE_INT, "judge_encoder": ANY,
    "judge_offline_min_content": "[0, 1]", "judge_offline_yes": SIMILARITY,
    "judge_offline_probably": SIMILARITY, "judge_offline_maybe": SIMILARITY,
    "judge_example_intents": ANY, "judge_example_min_sim": SIMILARITY,
    # --- intent construction ---
    "intent_method": ("sae", "kmeans"),
    "intent_corpus": ("auto", "reviews", "items", "both"),
    "intent_review_text_fields": ANY, "intent_item_text_fields": ANY, "intent_corpus_leaky": ANY,
    "intent_encoder": ANY, "intent_encoder_layer": ANY, "intent_pooling": ("mean", "cls"),
    "intent_normalize": ANY, "intent_max_length": POSITIVE_INT, "intent_encode_bf16": SWITCH,
    "intent_encode_batch_size": POSITIVE_INT, "intent_encode_chunk": POSITIVE_INT,
    "intent_cache_dir": ANY, "intent_num_threads": POSITIVE_INT, "intent_device": ANY,
    "sae_n_latents": POSITIVE_INT, "sae_k": POSITIVE_INT, "sae_tied": ANY, "sae_steps": POSITIVE_INT,
    "sae_batch_size": POSITIVE_INT, "sae_lr": POSITIVE, "sae_auxk_coef": NON_NEGATIVE, "sae_auxk_k": POSITIVE_INT,
    "sae_auxk_scale": ANY, "sae_dead_steps": POSITIVE_INT, "sae_b_dec_init": ("median", "mean", "zero"),
    "sae_seed": ANY, "kmeans_n_clusters": POSITIVE_INT,
    "intent_vocab_size": POSITIVE_INT, "intent_vocab_min_count": POSITIVE_INT, "intent_top_words": POSITIVE_INT,
    "intent_word_temperature": POSITIVE, "intent_item_topr": POSITIVE_INT,
    # --- GuidedRec ---
    "guided_templates": ANY, "guided_dim": POSITIVE_INT, "guided_projection": ("linear", "none"),
    "guided_encoder": ANY, "guided_encode_bf16": ANY, "guided_cache_dir": ANY, "guided_price_field": ANY,
    "guided_path": ANY,
    "guided_price_bands": ANY, "guided_year_field": ANY, "guided_text_fields": ANY,
    "guided_max_use_words": NON_NEGATIVE, "guided_category_max_share": "(0, 1]", "guided_use_words": ANY,
    "guided_fill": ANY, "base_checkpoint": ANY, "base_reduction": ("pca", "linear"), "base_dim": POSITIVE_INT,
    "base_variance": "(0, 1]", "base_finetune": ANY,
    # --- intent labels of explain / steer (properties/analysis/labels.yaml, validate_settings) ---
    "label_top_items": POSITIVE_INT, "label_category_field": ANY, "label_max_category_item_share": "(0, 1]",
    "label_min_category_share": "(0, 1]", "label_min_category_lift": "[1, inf)", "label_min_word_share": "(0, 1]",
    "label_min_word_lift": "[1, inf)", "label_max_words": NON_NEGATIVE, "label_ignore_words": ANY,
    "label_mi_words": NON_NEGATIVE, "label_min_readability": "[0, 1]",
    # --- the demo yaml / command lines (the runners pass these through RecBole's parser) ---
    "model": ANY, "dataset": PLAIN_NAME, "config_files": ANY, "use_gpu": ANY, "explain_user": ANY,
}

# "token": a raw dataset id such as a user id; RecBole's command-line parser turns "196" into 196.
TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,), "list": (list, tuple),
         "dict": (dict,), "token": (str, int), "switch": (bool, str)}
_TYPE_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:(.*?)#\s*\((\w+)\)")
_KEY_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:(.*)$")


class ConfigValueError(ValueError):
    """A config value has the wrong type or is outside its allowed range/choices."""


def plugin_yaml_files():
    """The plugin's default yaml files (overall, per model, per dataset, the demo)."""
    return sorted(glob.glob(os.path.join(PROPERTIES_DIR, "*.yaml"))
                  + glob.glob(os.path.join(PROPERTIES_DIR, "model", "*.yaml"))
                  + glob.glob(os.path.join(PROPERTIES_DIR, "dataset", "*.yaml")))


def plugin_key_types(files=None):
    """key -> (type name or None, None allowed, 'file:line') from the yaml ``# (type)`` comments.

    A key's type comment may sit on a continuation line of a multi-line value.
    """
    out = {}
    for path in files or plugin_yaml_files():
        current = None
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                m = _TYPE_LINE.match(line) or _KEY_LINE.match(line)
                if m:
                    current = m.group(1)
                    value = m.group(2).strip()
                    typ = m.group(3) if m.re is _TYPE_LINE else None
                    prev = out.get(current, (None, False, None))
                    out[current] = (typ or prev[0], prev[1] or value in ("~", "null"),
                                    prev[2] or f"{os.path.relpath(path, PROPERTIES_DIR)}:{lineno}")
                elif current and not out[current][0] and line.startswith((" ", "\t")):
                    t = re.search(r"#\s*\((\w+)\)", line)
                    if t:
                        out[current] = (t.group(1), out[current][1], out[current][2])
    return out


def recbole_known_keys():
    """Every top-level key of RecBole's own yaml files (overall, models, datasets, quick-start)."""
    import recbole

    root = os.path.join(os.path.dirname(recbole.__file__), "properties")
    keys = set()
    for path in glob.glob(os.path.join(root, "**", "*.yaml"), recursive=True):
        with open(path, encoding="utf-8") as f:
            for line in f:
                m = _KEY_LINE.match(line)
                if m:
                    keys.add(m.group(1))
    return keys


_KNOWN = None


def known_keys():
    global _KNOWN
    if _KNOWN is None:
        _KNOWN = recbole_known_keys() | set(plugin_key_types()) | set(RULES)
    return _KNOWN


def parse_interval(spec):
    """'[0, 1)' -> (lo, hi, lo_closed, hi_closed)."""
    m = re.fullmatch(r"\s*([\[(])\s*(-?[\w.]+)\s*,\s*(-?[\w.]+)\s*([\])])\s*", spec)
    if not m:
        raise ValueError(f"bad interval {spec!r} in RULES")
    return float(m.group(2)), float(m.group(3)), m.group(1) == "[", m.group(4) == "]"


def in_interval(value, spec):
    lo, hi, lo_closed, hi_closed = parse_interval(spec)
    v = float(value)
    if math.isnan(v):
        return False
    return (v > lo or (lo_closed and v == lo)) and (v < hi or (hi_closed and v == hi))


def check_value(key, value, typ=None, none_ok=True, where=None):
    """The problem with ``key=value`` (a sentence naming the fix), or None when it is fine."""
    origin = f" (declared at properties/{where})" if where else ""
    if value is None:
        rule = RULES.get(key)
        if none_ok or rule == OPTIONAL or (isinstance(rule, tuple) and None in rule):
            return None
        return f"{key}=None: this key needs a {typ} value{origin}."
    rule = RULES.get(key, ANY)
    if rule == OPTIONAL:
        rule = ANY
    if rule == PLAIN_NAME:
        return plain_name_problem(key, value)
    if isinstance(rule, tuple) and any(value == c and type(value) is type(c) for c in rule):
        return None
    if typ in TYPES and (not isinstance(value, TYPES[typ]) or (typ in ("int", "float") and isinstance(value, bool))):
        return f"{key}={value!r} is a {type(value).__name__}, expected {typ}{origin}."
    if isinstance(rule, tuple):  # not one of the choices (compared by value AND type: 'True' is not True)
        choices = ", ".join(repr(c) for c in rule if c is not None)
        return f"{key}={value!r}: choose one of {choices}."
    if isinstance(rule, str) and rule != ANY:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{key}={value!r}: expected a number in {rule}."
        if not in_interval(value, rule):
            return f"{key}={value!r} is outside {rule}."
    return None


def unknown_key_warnings(keys):
    """One line per unknown key, naming the closest known key when there is one."""
    known = known_keys()
    lines = []
    for key in keys:
        if key in known:
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        lines.append(f"config key '{key}' is not a RecBole or recbole_saerec key and is ignored.{hint}")
    return lines


# ---------------------------------------------------------------------------- rules between keys
def _heads_divide_hidden(final):
    hidden, heads = final.get("hidden_size"), final.get("n_heads")
    if isinstance(hidden, int) and isinstance(heads, int) and heads > 0 and hidden > 0 and hidden % heads:
        lower = hidden - hidden % heads
        return (f"hidden_size={hidden} is not a multiple of n_heads={heads}: each attention head gets "
                f"hidden_size / n_heads dimensions (e.g. hidden_size={lower or heads} or {lower + heads}).")
    return None


def _k_within_latents(final):
    latents, k = final.get("sae_n_latents"), final.get("sae_k")
    if not isinstance(latents, int) or isinstance(latents, bool) or latents < 1:
        return None  # ~: the builder's rule gives at least 256 latents; k is checked against it there
    if isinstance(k, int) and not isinstance(k, bool) and k > latents:
        return f"sae_k={k} is more than sae_n_latents={latents}: a TopK SAE keeps k of its latents per text."
    least = min(default_k("items"), default_k("reviews"))
    if k is None and latents < least:
        return (f"sae_n_latents={latents} is fewer than the k active latents per text (sae_k: ~ = "
                f"{default_k('items')} for item text, {default_k('reviews')} for reviews): set sae_n_latents >= "
                f"{default_k('reviews')}, or set sae_k.")
    return None


# The plugin models that train with softmax cross-entropy over all items only (no BPR path).
CE_ONLY_MODELS = ("SAERec", "GuidedRec", "CL4SRec", "DuoRec", "ICLRec", "ICSRec", "SASRecTextFeat")


def _loss_the_model_has(final):
    if final.get("model") in CE_ONLY_MODELS and final.get("loss_type") != "CE":
        return (f"loss_type={final.get('loss_type')!r}: {final['model']} trains with softmax cross-entropy over "
                "all items: set loss_type: CE.")
    return None


# (keys, check): checked when every key is in the config; the check returns a sentence naming the fix
CROSS_RULES = [
    (("hidden_size", "n_heads"), _heads_divide_hidden),
    (("sae_n_latents", "sae_k"), _k_within_latents),
    (("model", "loss_type"), _loss_the_model_has),
]


def validate_config(final, external):
    """Warn about unknown ``external`` keys; raise ConfigValueError listing every bad value of ``final``."""
    for line in unknown_key_warnings(external):
        getLogger(__name__).warning(line)
    types = plugin_key_types()
    problems = []
    for key in sorted(set(types) | set(RULES)):
        if key not in final:
            continue
        typ, none_ok, where = types.get(key, (None, True, None))
        # None from a default yaml is that yaml's choice (RecBole's own ml-100k leaves the
        # interaction intervals at ~); None is only questioned when the user set it
        problem = check_value(key, final[key], typ, none_ok or key not in external, where)
        if problem:
            source = "set by you" if key in external or key in ("model", "dataset") else "a default"
            problems.append(f"  {problem} [{source}]")
    if not problems:  # keys that are fine one by one may still not fit together
        for keys, check in CROSS_RULES:
            problem = check(final) if all(k in final for k in keys) else None
            if problem:
                set_by = [k for k in keys if k in external]
                source = f"set by you: {', '.join(set_by)}" if set_by else "defaults"
                problems.append(f"  {problem} [{source}]")
    if len(problems) == 1:  # the usual case: one line after "error:"
        raise ConfigValueError("Invalid config (checked before any work): " + problems[0].strip())
    if problems:
        raise ConfigValueError("Invalid config (checked before any work):\n" + "\n".join(problems))


def validate_settings(values, yaml_path):
    """Problems (sentences) with a tool's settings read from its own yaml (e.g.
    properties/analysis/labels.yaml): types from that yaml's ``# (type)`` comments, ranges from RULES."""
    types = plugin_key_types([yaml_path])
    problems = []
    for key, value in values.items():
        typ, none_ok, where = types.get(key, (None, True, None))
        problem = check_value(key, value, typ, none_ok, where)
        if problem:
            problems.append(problem)
    return problems
