"""Train and evaluate SAERec or any RecBole model under one protocol.

    python run_recbole_saerec.py --model=SAERec --dataset=ml-100k
    python run_recbole_saerec.py --model=SASRec --dataset=amazon-beauty --data_path=../shared/datasets/prepared
    python run_recbole_saerec.py --model=SAERec --dataset=ml-100k --config_files="a.yaml b.yaml" --epochs=5
    python run_recbole_saerec.py --config_files=demo-ml-100k.yaml      # the README's main job, from any folder

Every other ``--key=value`` is a RecBole/plugin config key. ``--config_files`` are looked up
in the working folder, then in the package's properties/ folder. When the config sets
``explain_user`` (the demo does), the run ends with that user's explanation: last items, top
recommendations, and the personal and public intents behind them (as
``python -m recbole_saerec.analysis.explain`` prints). ``--debug`` shows tracebacks for user mistakes.
"""
import argparse
import sys

from recbole_saerec import cli


def explain_after_run(checkpoint):
    """The `explain_user` of the run's own config, explained from the checkpoint it just wrote."""
    from recbole_saerec.analysis.checkpoints import checkpoint_config, read_checkpoint

    config = checkpoint_config(read_checkpoint(checkpoint))  # the plain-data file this run wrote
    user = config["explain_user"] if "explain_user" in config else None
    if user is None:
        return None
    from recbole_saerec.analysis.checkpoints import load_model
    from recbole_saerec.analysis.explain import explain_users, format_explanation
    from recbole_saerec.utils import get_model

    if not getattr(get_model(config["model"]), "needs_intents", False):
        print(f"\nexplain_user={user}: {config['model']} has no intents to explain (SAERec has).")
        return None
    bundle = load_model(checkpoint)
    explanation = explain_users(bundle, [str(user)], topk=10)[0]
    print(f"\nWhy these recommendations? (explain_user={user}; the same for any user: "
          f"python -m recbole_saerec.analysis.explain --checkpoint={checkpoint} --user=<id>)\n")
    print(format_explanation(explanation))
    return explanation


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # No defaults here: a --config_files yaml may name model/dataset itself; the Config
    # then falls back to SAERec on ml-100k (the embedded default) when nothing names them.
    parser.add_argument("--model", "-m", type=str, default=None, help="SAERec or any RecBole model name")
    parser.add_argument("--dataset", "-d", type=str, default=None, help="dataset name")
    parser.add_argument("--config_files", type=str, default=None,
                        help="space- or comma-separated yaml files (working folder, then the package's properties/)")
    args, rest = parser.parse_known_args(argv)
    keys = cli.config_args(rest)
    config_file_list = cli.config_files(args.config_files)
    from recbole_saerec.quick_start import run

    with cli.recbole_cmd_line(keys):
        result = run(model=args.model, dataset=args.dataset, config_file_list=config_file_list)
    print("\nbest valid:", result["best_valid_result"])
    print("test result:", result["test_result"])
    if result["saved_model_file"]:
        explain_after_run(result["saved_model_file"])
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_main(main, prog="run_recbole_saerec.py"))
