"""Command line: ``python -m robustode {reproduce,book,report,data,params}``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from robustode.profiles import DEVICES, PROFILES


def _params(args: argparse.Namespace) -> int:
    from robustode.models import build_model, count_parameters, registry

    specs = registry()
    names = args.models or sorted(specs)
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)}; choose one of: {', '.join(sorted(specs))}")
    for name in names:
        spec = specs[name]
        datasets = [args.dataset] if args.dataset else list(spec.datasets)
        for dataset in datasets:
            model = build_model(name, dataset)
            print(f"{name:<28} {dataset:<14} {count_parameters(model):>10,}  {spec.description}")
    return 0


def _notebook_command(run: Callable[[], Path], label: str) -> int:
    """Run ``run``; a failing notebook becomes one error line and exit status 1."""
    from robustode.reproduce import NotebookFailed

    try:
        path = run()
    except NotebookFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{label}: {path}")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from robustode.reproduce import reproduce

    return _notebook_command(lambda: reproduce(args.profile, args.notebooks, args.device, log_output=args.log_output),
                             "manifest")


def _book(args: argparse.Namespace) -> int:
    from robustode.book import build_book

    return _notebook_command(
        lambda: build_book(args.profile, run=not args.no_run, device=args.device) / "index.html", "book")


def _report(args: argparse.Namespace) -> int:
    from robustode.paths import results_dir
    from robustode.report import render, report_rows

    # Without results every run-based row says "not run"; parameter counts are still checked.
    print(render(report_rows(results_dir(args.profile), args.profile), args.format))
    return 0


def _data(args: argparse.Namespace) -> int:
    from robustode.data.images import IMAGE_SETS, DataMissing, check_dataset, fetch, missing_files
    from robustode.paths import data_dir

    names = args.names or list(IMAGE_SETS)
    for name in names:
        check_dataset(name)
    failed = []
    for name in names:
        if args.fetch:
            try:
                fetch(name)
            except DataMissing as err:
                failed.append(name)
                print(f"could not fetch {name}: {err}", file=sys.stderr)
        missing = missing_files(name)
        print(f"{name:<14} {'available' if not missing else 'missing: ' + ', '.join(missing)}")
    print(f"data folder: {data_dir()}  (set ROBUSTODE_DATA to use another)")
    if failed:
        print("rows that need the missing data sets will say 'not run: data missing'", file=sys.stderr)
    return 1 if failed and args.strict else 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="robustode", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)

    rep = sub.add_parser("reproduce", help="run the notebooks through papermill for a profile")
    rep.add_argument("--profile", choices=PROFILES, default="quick")
    rep.add_argument("--notebooks", nargs="+", metavar="NAME", help="notebook names (default: all, in book order)")
    rep.add_argument("--device", choices=DEVICES, default="auto")
    rep.add_argument("--log-output", action="store_true", help="stream the notebooks' output")
    rep.set_defaults(func=_reproduce)

    book = sub.add_parser("book", help="execute (quick) and render the Jupyter Book into _build/html")
    book.add_argument("--profile", choices=PROFILES, default="quick")
    book.add_argument("--no-run", action="store_true", help="render existing executed copies only")
    book.add_argument("--device", choices=DEVICES, default="auto")
    book.set_defaults(func=_book)

    report = sub.add_parser("report", help="every number the paper prints, against the profile's results")
    report.add_argument("--profile", choices=PROFILES, default="full")
    report.add_argument("--format", choices=("markdown", "json"), default="markdown")
    report.set_defaults(func=_report)

    data = sub.add_parser("data", help="which data sets are on disk; --fetch downloads missing ones (torchvision)")
    data.add_argument("names", nargs="*", help="data sets (default: all)")
    data.add_argument("--fetch", action="store_true", help="download missing data sets with torchvision")
    data.add_argument("--strict", action="store_true", help="exit 1 if a data set could not be fetched")
    data.set_defaults(func=_data)

    params = sub.add_parser("params", help="print the parameter count of named models")
    params.add_argument("models", nargs="*", help="model names (default: all registered)")
    params.add_argument("--dataset", help="one dataset (default: every dataset the model supports)")
    params.set_defaults(func=_params)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
