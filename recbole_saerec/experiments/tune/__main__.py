"""``python -m recbole_saerec.experiments.tune``: the sweep CLI (see driver.py for the flags)."""
import sys

from recbole_saerec.experiments.tune.driver import main

sys.exit(main())
