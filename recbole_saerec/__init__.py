"""recbole-saerec: SAERec (sparse-autoencoder intents for sequential recommendation) as a RecBole plugin."""
import pandas as _pd

__version__ = "0.1.0"

# RecBole 1.2.1 fills missing values with `fillna(inplace=True)` on a column
# view; pandas 3 (copy-on-write) turns that into a silent no-op, so NaNs would
# reach the model unfilled. Refuse early rather than produce wrong numbers.
if int(_pd.__version__.split(".")[0]) >= 3:
    raise ImportError(
        f"recbole-saerec needs pandas < 3 (found {_pd.__version__}): RecBole 1.2.1's "
        "fillna(inplace=True) silently does nothing under pandas 3. "
        "Install the pinned stack: bash scripts/setup.sh (pins pandas==2.3.3)."
    )
