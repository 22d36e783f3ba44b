"""``python -m recbole_saerec.analysis.probe``."""
import sys

from recbole_saerec.analysis.probe.cli import main
from recbole_saerec.cli import run_main

if __name__ == "__main__":
    sys.exit(run_main(main, prog="python -m recbole_saerec.analysis.probe"))
