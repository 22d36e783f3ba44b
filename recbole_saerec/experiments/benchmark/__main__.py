"""``python -m recbole_saerec.experiments.benchmark`` (see cli.py)."""
import sys

from recbole_saerec import cli
from recbole_saerec.experiments.benchmark.cli import main

sys.exit(cli.run_main(lambda argv: 0 if main(argv) is not None else 1,
                      prog="python -m recbole_saerec.experiments.benchmark"))
