"""Fail early and clearly when a dataset's atomic files are not where the config points.

Called from ``quick_start.prepare`` right after the Config is built, before RecBole's
``create_dataset`` (whose own error for a missing file is an unhelpful ``ValueError``
about ``inter_feat`` or a bare ``FileNotFoundError``).
"""
import os


class DatasetFilesMissingError(FileNotFoundError):
    """The configured dataset's atomic files are missing."""


def expected_files(config):
    """Atomic files RecBole will need for this config: [(role, absolute path)]."""
    dataset = config["dataset"]
    data_path = config["data_path"]  # RecBole has already joined <data_path>/<dataset>
    benchmark = config["benchmark_filename"] if "benchmark_filename" in config else None
    if benchmark:
        files = [(f"inter ({part})", os.path.join(data_path, f"{dataset}.{part}.inter")) for part in benchmark]
    else:
        files = [("inter", os.path.join(data_path, f"{dataset}.inter"))]
    load_col = config["load_col"] if "load_col" in config else None
    if isinstance(load_col, dict):
        for source in load_col:
            if source != "inter":
                files.append((source, os.path.join(data_path, f"{dataset}.{source}")))
    return [(role, os.path.abspath(path)) for role, path in files]


def prepare_hint(dataset, data_path):
    """The command that creates the files (Amazon names), or what RecBole expects."""
    from recbole_saerec.data.prepare_amazon import CATEGORIES  # here: keeps `python -m ...prepare_amazon` clean

    parent = os.path.dirname(os.path.normpath(data_path)) or "."
    if dataset in CATEGORIES:
        return (f"Prepare it with:\n"
                f"  python -m recbole_saerec.data.prepare_amazon --dataset={dataset} --out={parent}\n"
                f"  (add --raw_dir=<folder with reviews_{CATEGORIES[dataset]}_5.json.gz and "
                f"meta_{CATEGORIES[dataset]}.json.gz> when the shared data is not at "
                f"../shared/datasets/{dataset}/raw; see docs/data.md)\n"
                f"or point --data_path at the folder that holds {dataset}/{dataset}.inter.")
    return (f"Put RecBole atomic files at {data_path}/{dataset}.inter (tab-separated, header "
            f"'user_id:token\\titem_id:token\\ttimestamp:float'), or point --data_path at the folder "
            f"that holds {dataset}/{dataset}.inter.")


def check_dataset_files(config):
    """Raise DatasetFilesMissingError listing the missing files and how to prepare them."""
    missing = [(role, path) for role, path in expected_files(config) if not os.path.isfile(path)]
    if not missing:
        return
    dataset, data_path = config["dataset"], config["data_path"]
    lines = [f"Dataset '{dataset}' is not prepared: missing"]
    lines += [f"  {role:<6} {path}" for role, path in missing]
    lines.append(f"(data_path resolves to {os.path.abspath(data_path)} from the working directory "
                 f"{os.getcwd()})")
    lines.append(prepare_hint(dataset, data_path))
    raise DatasetFilesMissingError("\n".join(lines))
