"""``python -m recbole_saerec.data.prepare_amazon`` (see cli.py)."""
import sys

from recbole_saerec.data.prepare_amazon.cli import main

sys.exit(main())
