"""Where settings come from and what values they may take: the bottom of the package.

* ``PROPERTIES_DIR``: the plugin's yaml folder, the one source of defaults (every key commented
  ``# (type) meaning``).
* :func:`setting`: the one config getter (a missing key is an error naming its yaml, never an
  inline default).
* The value sets that both the code and ``config_check`` need (the judge backends, the keep
  rules, the text policies, the SAE's default k). They live here, not in the modules that use
  them, so that validating a config does not import the intent pipeline.

This module imports neither torch nor RecBole, and nothing else of the plugin.
"""
import glob
import os
import re

PROPERTIES_DIR = os.path.join(os.path.dirname(os.path.realpath(__file__)), "properties")


def setting(config, key):
    """``config[key]``: the value the yaml layers (or the user) gave it. Defaults live in the yaml only.

    A key the config does not hold is an error, never a silent inline default: the
    message names the plugin yaml that declares it (a config built without that
    layer, e.g. a plain dict) or says where a new key must be declared.
    """
    try:
        present = key in config
    except TypeError:  # RecBole's Config only takes str keys; anything else is not a config
        present = False
    if not present:
        raise KeyError(missing_setting(key))
    return config[key]


def missing_setting(key):
    """The message for a key no config holds: which yaml declares it, or where to declare it."""
    pattern = re.compile(rf"^{re.escape(key)}\s*:", re.M)
    declared = []
    for path in sorted(glob.glob(os.path.join(PROPERTIES_DIR, "*.yaml"))
                       + glob.glob(os.path.join(PROPERTIES_DIR, "*", "*.yaml"))):
        with open(path, encoding="utf-8") as f:
            if pattern.search(f.read()):
                declared.append(os.path.relpath(path, os.path.dirname(os.path.dirname(PROPERTIES_DIR))))
    if declared:
        return (f"config key '{key}' is missing: its default is declared in {', '.join(declared)}, which this "
                f"config did not load (build it with recbole_saerec.config.Config, or set '{key}').")
    return (f"config key '{key}' is missing and no yaml declares it: add '{key}: <default>  # (type) meaning' to "
            f"recbole_saerec/properties/overall.yaml (every model) or properties/model/<Model>.yaml, and a rule "
            f"to config_check.RULES.")


# ---------------------------------------------------------------------------- value sets
# on_bad_line: what to do with a line whose bytes are not valid in its encoding (data/text.py)
TEXT_POLICIES = ("error", "skip", "replace")

# judge_backend: the intent judges (intents/judge/factory.py makes them)
JUDGE_BACKENDS = ("offline", "openai", "llama_cpp")

# The judge's five-level scale, and the verdicts each intent_keep rule keeps (intents/judge/verdicts.py)
VERDICTS = ("Yes", "Probably", "Maybe", "No", "Cannot tell")
KEEP_RULES = {
    "yes": ("Yes",),
    "probably": ("Yes", "Probably"),
    "maybe": ("Yes", "Probably", "Maybe"),
    "none": VERDICTS,
}
# every intent_keep value: the verdict rules, the grounding test alone, and both together
KEEP_RULE_NAMES = tuple(KEEP_RULES) + ("grounded", "grounded+yes", "grounded+probably", "grounded+maybe")


# fusion: how SAERec mixes its branches (model/saerec.py); the user-dependent ones weigh each user's
# branches differently ('sum' and 'mean' give every user the same weights)
FUSIONS = ("adaptive", "sum", "mean", "residual")
PER_USER_FUSIONS = ("adaptive", "residual")


def default_k(source):
    """``sae_k: ~``: 15 active latents per text for review corpora (the paper), 8 for item text."""
    return 15 if source in ("reviews", "both") else 8
