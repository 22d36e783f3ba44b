"""Where the raw files are: the shared data folder, the category of a dataset, the input form and its files."""
import os

from recbole_saerec.data.prepare_amazon.schema import CATEGORIES, PrepareError

# prepare_amazon/inputs.py -> the repository root (the shared folder defaults to its sibling)
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__)))))


def shared_dir():
    """The shared data folder: $RECBOLE_SAEREC_SHARED, else ``<repo>/../shared``."""
    env = os.environ.get("RECBOLE_SAEREC_SHARED")
    return os.path.abspath(env) if env else os.path.abspath(os.path.join(REPO_ROOT, "..", "shared"))


def default_raw_dir(dataset):
    return os.path.join(shared_dir(), "datasets", dataset, "raw")


def category_for(dataset, category=None):
    if category:
        return category
    if dataset in CATEGORIES:
        return CATEGORIES[dataset]
    raise PrepareError(
        f"Unknown dataset '{dataset}': pass --category=<Amazon 2014 category file stem> "
        f"(e.g. Beauty). Known names: {', '.join(f'{d} <- {c}' for d, c in CATEGORIES.items())}."
    )


def _first_existing(raw_dir, names):
    for name in names:
        path = os.path.join(raw_dir, name)
        if os.path.isfile(path):
            return path
    return None


def locate_inputs(raw_dir, category, form="auto"):
    """Find the input files; returns (form, {role: path or None})."""
    if not os.path.isdir(raw_dir):
        raise PrepareError(f"Raw data folder not found: {raw_dir} (pass --raw_dir=<folder with the files>).")
    reviews = _first_existing(raw_dir, [f"reviews_{category}_5.json.gz", f"reviews_{category}_5.json",
                                        f"reviews_{category}.json.gz", f"reviews_{category}.json"])
    meta = _first_existing(raw_dir, [f"meta_{category}.json.gz", f"meta_{category}.json"])
    seq = _first_existing(raw_dir, [f"{category}.txt", f"{category}.txt.gz", "sequential_data.txt",
                                    "sequential.txt"])
    maps = _first_existing(raw_dir, ["datamaps.json", "datamaps.json.gz"])
    itemfile = _first_existing(raw_dir, [f"Amazon_{category}.item", f"Amazon_{category}.item.gz"])
    # S3-Rec's attribute ids per item: the independent key the catalogue join is checked against
    attributes = _first_existing(raw_dir, [f"{category}_item2attributes.json", "item2attributes.json"])
    if form == "auto":
        form = "amazon2014" if reviews else ("iclrec" if seq and maps else None)
    if form == "amazon2014" and reviews:
        return form, {"reviews": reviews, "meta": meta}
    if form == "iclrec" and seq and maps:
        return form, {"sequences": seq, "datamaps": maps, "item_file": itemfile, "attributes": attributes}
    present = sorted(os.listdir(raw_dir))
    raise PrepareError(
        f"No usable input for category '{category}' in {raw_dir}.\n"
        f"  form amazon2014 needs: reviews_{category}_5.json[.gz] (meta_{category}.json[.gz] optional)\n"
        f"  form iclrec needs:     {category}.txt (or P5's sequential_data.txt) and datamaps.json "
        f"(Amazon_{category}.item and {category}_item2attributes.json optional)\n"
        f"  found: {', '.join(present) if present else '(empty folder)'}"
    )
