"""Dataset preparation, dataset-file checks and the evaluation protocol switch.

- ``python -m recbole_saerec.data.prepare_amazon``: Amazon 2014 review files (or the
  ICLRec/P5 files at hand) -> RecBole atomic files (see docs/data.md).
- :func:`check_dataset_files`: fail early, with the prepare command, when the atomic
  files of the configured dataset are missing.
- :func:`split_with_protocol`: RecBole's ``data_preparation`` under the configured
  ``protocol`` (``clean``, the default, or ``authors_leaky`` for comparison only).

Importing this package does not import RecBole (the prepare command stays light).
"""
from recbole_saerec.data.check import DatasetFilesMissingError, check_dataset_files
from recbole_saerec.data.protocol import PROTOCOLS, protocol_name, split_with_protocol

__all__ = [
    "DatasetFilesMissingError",
    "check_dataset_files",
    "PROTOCOLS",
    "protocol_name",
    "split_with_protocol",
]
