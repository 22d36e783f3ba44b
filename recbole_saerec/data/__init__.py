"""Dataset preparation, dataset-file checks and the evaluation protocol switch.

- ``python -m recbole_saerec.data.prepare_amazon``: Amazon 2014 review files (or the
  ICLRec/P5 files at hand) -> RecBole atomic files (see docs/data.md).
- :func:`check_dataset_files`: fail early, with the prepare command, when the atomic
  files of the configured dataset are missing; :func:`check_atomic_files`: file:line
  errors for contents RecBole would load silently wrong (docs/hardening.md).
- :func:`split_with_protocol`: RecBole's ``data_preparation`` under the configured
  ``protocol`` (``clean``, the default, or ``authors_leaky`` for comparison only).

Importing this package does not import RecBole (the prepare command stays light).
"""
from recbole_saerec.data.check import (AtomicFileError, DatasetFilesMissingError, check_atomic_files,
                                      check_dataset_files, data_fingerprint)
from recbole_saerec.data.protocol import PROTOCOLS, protocol_name, split_with_protocol

__all__ = [
    "AtomicFileError",
    "check_atomic_files",
    "DatasetFilesMissingError",
    "check_dataset_files",
    "data_fingerprint",
    "PROTOCOLS",
    "protocol_name",
    "split_with_protocol",
]
