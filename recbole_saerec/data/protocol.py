"""Evaluation protocol switch: ``protocol: clean`` (default) or ``authors_leaky``.

``clean`` (default, the paper's stated protocol): leave-one-out by time per user —
train on targets s[1..n-2], select the epoch on the validation item s[n-1], report the
test item s[n]. The test item is never a training target, never in a training or
validation input sequence, and never used for model selection. This is RecBole's
``eval_args.split: {'LS': 'valid_and_test'}`` unchanged.

``authors_leaky`` (FOR COMPARISON ONLY; never report it as the method's result): what the
authors' research code does (docs/method.md, "Where we depart from the authors' research code"):
  1. the validation item s[n-1] is used as a training target
     (RecBole split ``{'LS': 'test_only'}``: every sample except the last is training);
  2. the epoch is selected on the TEST item (valid_data := test_data), so the reported
     test numbers are the best over epochs on the test set itself (optimistic).
Run both to see how much of a margin the protocol alone explains.
"""
import copy
from logging import getLogger

PROTOCOLS = ("clean", "authors_leaky")

LEAKY_WARNING = (
    "protocol=authors_leaky: the VALIDATION item is trained on and the epoch is SELECTED ON THE "
    "TEST ITEM (valid_data := test_data). Test numbers are optimistic and NOT comparable with the "
    "clean protocol; use this only to measure the effect of the authors' code protocol."
)


def protocol_name(config):
    """The configured protocol ('clean' when the key is absent or empty)."""
    name = config["protocol"] if "protocol" in config else None
    name = name or "clean"
    if name not in PROTOCOLS:
        raise ValueError(f"Unknown protocol '{name}': expected one of {', '.join(PROTOCOLS)} "
                         "(clean is the default; authors_leaky is for comparison only).")
    return name


def split_with_protocol(config, dataset):
    """RecBole's data_preparation under the configured protocol -> (train, valid, test) loaders.

    clean: RecBole's split as configured (the dataset yamls use leave-one-out 'valid_and_test').
    authors_leaky: split 'test_only' (the validation item joins the training targets) and the
    returned valid loader IS the test loader (selection on the test item). Logs a loud warning.
    """
    from recbole.data import data_preparation
    from recbole.utils import set_color

    name = protocol_name(config)
    if name == "clean":
        return data_preparation(config, dataset)

    split = (config["eval_args"] or {}).get("split") or {}
    if "LS" not in split:
        raise ValueError(f"protocol=authors_leaky needs a leave-one-out split (eval_args.split: {{'LS': ...}}), "
                         f"got {split}.")
    logger = getLogger()
    for _ in range(2):
        logger.warning(set_color("WARNING ", "red") + set_color(LEAKY_WARNING, "red"))
    eval_args = copy.deepcopy(config["eval_args"])
    eval_args["split"] = {"LS": "test_only"}
    config["eval_args"] = eval_args
    train_data, _empty_valid, test_data = data_preparation(config, dataset)
    return train_data, test_data, test_data
