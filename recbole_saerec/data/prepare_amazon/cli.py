"""``python -m recbole_saerec.data.prepare_amazon``: the flags (the package docstring is the help text)."""
import argparse
import sys

from recbole_saerec.data.text import POLICIES
from recbole_saerec.data.prepare_amazon.guard import MIN_COHERENCE_RATIO
from recbole_saerec.data.prepare_amazon.pipeline import prepare
from recbole_saerec.data.prepare_amazon.schema import PrepareError


def main(argv=None):
    # the help text is the package docstring: the input forms and the column contract
    help_text = sys.modules["recbole_saerec.data.prepare_amazon"].__doc__
    p = argparse.ArgumentParser(prog="python -m recbole_saerec.data.prepare_amazon", description=help_text,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="amazon-beauty",
                   help="output dataset name (amazon-beauty | amazon-sports | amazon-toys | any with --category)")
    p.add_argument("--category", default=None,
                   help="Amazon 2014 category file stem (Beauty, Sports_and_Outdoors, Toys_and_Games); "
                        "default from --dataset")
    p.add_argument("--raw_dir", default=None,
                   help="folder with the input files; default <repo>/../shared/datasets/<dataset>/raw "
                        "(or $RECBOLE_SAEREC_SHARED/datasets/<dataset>/raw)")
    p.add_argument("--out", default="dataset",
                   help="data_path to write into: files go to <out>/<dataset>/ (default: dataset, relative to "
                        "the working directory, the dataset yamls' data_path)")
    p.add_argument("--on_bad_line", default="error", choices=list(POLICIES),
                   help="malformed input line: stop with file:line (error), skip and count it (skip), or for "
                        "bytes that are not UTF-8 keep the line with U+FFFD in their place (replace; other "
                        "malformed lines are skipped); the same policy as the config key on_bad_line")
    p.add_argument("--form", default="auto", choices=["auto", "amazon2014", "iclrec"],
                   help="input form (auto: amazon2014 when a reviews_<Cat> file is present, else iclrec)")
    p.add_argument("--kcore", type=int, default=0,
                   help="iteratively keep users/items with >= k interactions (0: none; the _5 files are "
                        "already 5-core; use 5 with a full reviews_<Cat>.json)")
    p.add_argument("--no_progress", action="store_true", help="no progress bars")
    p.add_argument("--allow_misjoin", action="store_true",
                   help=f"prepare even when consecutive items are no more alike than random pairs (brand/category "
                        f"ratio < {MIN_COHERENCE_RATIO}: ids numbered with another map than datamaps.json)")
    p.add_argument("--reviews_only", action="store_true",
                   help="the intent corpus is review text: prepare even when no item has any text")
    args = p.parse_args(argv)
    try:
        prepare(dataset=args.dataset, category=args.category, raw_dir=args.raw_dir, out=args.out,
                on_bad_line=args.on_bad_line, form=args.form, kcore=args.kcore,
                show_progress=not args.no_progress, allow_misjoin=args.allow_misjoin,
                reviews_only=args.reviews_only)
    except PrepareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
