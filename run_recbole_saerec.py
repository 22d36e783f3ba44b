"""Train and evaluate SAERec or any RecBole model under one protocol.

    python run_recbole_saerec.py --model=SAERec --dataset=ml-100k
    python run_recbole_saerec.py --model=SASRec --dataset=amazon-beauty --data_path=../shared/datasets/prepared
    python run_recbole_saerec.py --model=SAERec --dataset=ml-100k --config_files="a.yaml b.yaml" --epochs=5

Every other ``--key=value`` is a RecBole/plugin config key (RecBole parses them itself).
"""
import argparse
import sys

from recbole_saerec.data import DatasetFilesMissingError
from recbole_saerec.quick_start import run

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # No defaults here: a --config_files yaml may name model/dataset itself; the Config
    # then falls back to SAERec on ml-100k (the embedded default) when nothing names them.
    parser.add_argument("--model", "-m", type=str, default=None, help="SAERec or any RecBole model name")
    parser.add_argument("--dataset", "-d", type=str, default=None, help="dataset name")
    parser.add_argument("--config_files", type=str, default=None, help="space-separated yaml files")
    args, _ = parser.parse_known_args()
    config_file_list = args.config_files.strip().split(" ") if args.config_files else None
    try:
        result = run(model=args.model, dataset=args.dataset, config_file_list=config_file_list)
    except DatasetFilesMissingError as exc:  # the data is not prepared: say what and how, no traceback
        sys.exit(f"error: {exc}")
    print("\nbest valid:", result["best_valid_result"])
    print("test result:", result["test_result"])
