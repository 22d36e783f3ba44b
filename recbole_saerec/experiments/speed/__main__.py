"""``python -m recbole_saerec.experiments.speed``: the speed benchmark CLI (see cli.py)."""
from recbole_saerec.experiments.speed.cli import main

main()
