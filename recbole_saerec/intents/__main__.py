"""Command line: ``python -m recbole_saerec.intents build --dataset=ml-100k [--config_files=a.yaml,b.yaml]
[--intent_dir=DIR] [--key=value ...]``.

The config is the plugin's ``Config`` with ``model=SAERec``, so the usual chain
applies (RecBole yaml -> plugin overall / SAERec.yaml / dataset yaml ->
config files -> command line); every other ``--key=value`` is a config key.
"""
import argparse
import os
import sys

from recbole_saerec import cli


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m recbole_saerec.intents",
                                     description="Offline intent construction for SAERec (docs/method.md, stage 1).")
    parser.add_argument("command", choices=["build"],
                        help="build: corpus -> encoder -> SAE -> words -> judge -> artefacts")
    parser.add_argument("--dataset", "-d", required=True, help="RecBole dataset name (e.g. ml-100k)")
    parser.add_argument("--model", default="SAERec", help="model whose yaml supplies the defaults (default SAERec)")
    parser.add_argument("--config_files", default=None,
                        help="comma- or space-separated yaml files (working folder, then the package's properties/)")
    parser.add_argument("--intent_dir", default=None,
                        help="output directory (default <intent_root>/<dataset>/<intent_tag>)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args, rest = parser.parse_known_args(argv)
    keys = cli.config_args(rest)
    files = cli.config_files(args.config_files)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from recbole.utils import init_seed

    from recbole_saerec.config import Config
    from recbole_saerec.intents.build import build_intents
    from recbole_saerec.logger import init_logger

    config_dict = {"intent_dir": args.intent_dir} if args.intent_dir else None
    with cli.recbole_cmd_line(keys):
        config = Config(model=args.model, dataset=args.dataset, config_file_list=files, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    build_intents(config, intent_dir=args.intent_dir, progress=not args.quiet)


if __name__ == "__main__":
    sys.exit(cli.run_main(main, prog="python -m recbole_saerec.intents"))
