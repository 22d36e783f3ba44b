"""``python -m recbole_saerec.data.prepare_amazon`` (see cli.py)."""
import sys

from recbole_saerec.cli import run_main
from recbole_saerec.data.prepare_amazon.cli import main

sys.exit(run_main(main, prog="python -m recbole_saerec.data.prepare_amazon"))
