"""Command line: python -m robustode {plan,run,reproduce,book,report,data,params}."""

from __future__ import annotations

import argparse
import os
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
    """Run ``run``; a failing notebook or book build becomes one error line and exit status 1."""
    from robustode.book import BookFailed
    from robustode.reproduce import NotebookFailed

    try:
        path = run()
    except (NotebookFailed, BookFailed) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{label}: {path}")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from robustode.core.budget import parse_duration
    from robustode.reproduce import reproduce

    if args.render_only and args.budget:
        raise SystemExit("error: --render-only runs no plan, so it takes no --budget")
    budget = parse_duration(args.budget) if args.budget else None
    return _notebook_command(lambda: reproduce(args.profile, args.notebooks, args.device, log_output=args.log_output,
                                               budget=budget, advance=not args.render_only), "manifest")


def _book(args: argparse.Namespace) -> int:
    from robustode.book import build_book

    return _notebook_command(
        lambda: build_book(args.profile, run=not args.no_run, device=args.device) / "index.html", "book")


def _report(args: argparse.Namespace) -> int:
    from robustode.report import render, report_rows

    if args.claims:
        import json

        from robustode.claims import CLAIMS, CONTROLS, as_json, scorecard, scorecard_rows, untested_reason
        from robustode.store import Store

        stores = [Store(args.profile)] if args.profile else None
        judged, controls = scorecard(stores, claims=CLAIMS), scorecard(stores, claims=CONTROLS)
        if args.format == "json":
            print(json.dumps(as_json(judged + controls), indent=1))
        else:
            untested = [f"* {j.claim.statement} — {why}" for j in judged + controls if (why := untested_reason(j))]
            print(render(scorecard_rows(judged, controls)) + "\n\nWhat the controls say (hypotheses that qualify the claims):\n\n"
                  + render(scorecard_rows(controls))
                  + ("\n\nWhy some are not tested:\n\n" + "\n".join(untested) if untested else ""))
        return 0
    # Without results every run-based row says "not run"; parameter counts are still checked.
    print(render(report_rows(args.profile), args.format))
    return 0


IMGNET10 = "ImgNet10"


def _imgnet10_line(fetch: bool) -> tuple[str, bool]:
    """ImgNet10 is read from $ROBUSTODE_IMAGENET (ImageNet or Imagenette class folders), never downloaded."""
    import os

    from robustode.data.imgnet10 import missing_folders

    root = os.environ.get("ROBUSTODE_IMAGENET")
    missing = missing_folders(root)
    if not missing:
        return f"{IMGNET10:<14} available (ROBUSTODE_IMAGENET={root})", False
    where = f"{len(missing)} of 20 class folders missing under {root}" if root else "ROBUSTODE_IMAGENET is not set"
    if fetch:
        print(f"could not fetch {IMGNET10}: it is not downloadable here; set ROBUSTODE_IMAGENET to a folder with "
              "ImageNet or Imagenette train/ and val/", file=sys.stderr)
    return f"{IMGNET10:<14} missing: {where} (ImageNet or Imagenette train/ and val/ class folders)", fetch


def _data(args: argparse.Namespace) -> int:
    from robustode.data.images import IMAGE_SETS, DataMissing, fetch, missing_files
    from robustode.paths import data_dir
    from robustode.profiles import check_choice

    names = args.names or [*IMAGE_SETS, IMGNET10]
    for name in names:
        check_choice("data set", name, [*IMAGE_SETS, IMGNET10])
    failed = []
    for name in names:
        if name == IMGNET10:
            line, not_fetched = _imgnet10_line(args.fetch)
            print(line)
            failed += [name] if not_fetched else []
            continue
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


def _authors_checkpoints(args: argparse.Namespace) -> None:
    """``--authors-checkpoints PATH``: the run plan's authors units read ``$ROBUSTODE_AUTHORS_CHECKPOINTS``."""
    if args.authors_checkpoints:
        from robustode.chapters.robustness.authors import ENV

        os.environ[ENV] = args.authors_checkpoints


def _plan(args: argparse.Namespace) -> int:
    from robustode import plan
    from robustode.profiles import resolve_device
    from robustode.store import Store
    from robustode.tables import markdown_table

    _authors_checkpoints(args)
    store = Store(args.profile)
    chosen = plan.select(plan.units(args.profile), args.only)  # a bad pattern fails here, before any probe
    if args.measure:
        plan.measure(store, chosen, resolve_device(args.device), force=True)
    rows = plan.plan_rows(args.profile, args.only, store)
    from robustode.cluster import with_jobs

    rows = with_jobs(rows, store)  # job id and state of each unit submitted with run --executor (if any)
    if args.format == "json":
        import json

        print(json.dumps([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows], indent=1))
        return 0
    print(markdown_table(plan.collapse_blocked(rows)))
    print()
    print(plan.plan_summary(rows))
    return 0


def _run(args: argparse.Namespace) -> int:
    from robustode import plan
    from robustode.core.budget import parse_duration

    _authors_checkpoints(args)
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}")
    from robustode import cluster

    if cluster.wanted(args):  # one job per pending unit through submitit
        return cluster.run_command(args)
    budget = parse_duration(args.budget) if args.budget else None
    plan.select(plan.units(args.profile), args.only)  # a bad pattern fails before any work
    from robustode.chapters.robustness.run import TABLE_ONE_STAGES

    first = TABLE_ONE_STAGES if args.table_one_first else ()
    outcome = plan.advance(args.profile, budget, args.only, args.device, progress=not args.quiet, threads=args.threads,
                           first_stages=first)
    status = plan.exit_status(outcome)
    print(f"{'all done' if status == 0 else 'more to do'}: {len(outcome.finished)} unit(s) finished in this call, "
          f"{outcome.remaining} left to run" + (f", {len(outcome.skipped)} skipped (blocked or locked)" if outcome.skipped else ""))
    return status


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="robustode", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)

    pl = sub.add_parser("plan", help="every run unit of a profile: done / partial / pending, cost left, order")
    pl.add_argument("--profile", choices=PROFILES, default="paper-short")
    pl.add_argument("--only", nargs="+", metavar="PATTERN", help="unit ids matching these shell patterns or substrings")
    pl.add_argument("--measure", action="store_true", help="time every kind of unit here again (costs.json)")
    pl.add_argument("--device", choices=DEVICES, default="cpu", help="device to measure on (with --measure)")
    pl.add_argument("--format", choices=("markdown", "json"), default="markdown")
    pl.set_defaults(func=_plan)

    rn = sub.add_parser("run", help="advance a profile's pending units in plan order within a budget "
                                    "(exit 0: all done, 3: more to do)")
    rn.add_argument("--profile", choices=PROFILES, default="paper-short")
    rn.add_argument("--budget", help="stop before this much wall time is spent: 150m, 2h, 1h30m, 90s (default: none)")
    rn.add_argument("--only", nargs="+", metavar="PATTERN", help="unit ids matching these shell patterns or substrings")
    rn.add_argument("--device", choices=DEVICES, default="auto")
    rn.add_argument("--threads", type=int, help="intra-op CPU threads (default: torch's)")
    rn.add_argument("--quiet", action="store_true", help="no per-epoch progress bars (the [run] lines stay)")
    rn.add_argument("--table-one-first", action="store_true",
                    help="first take every unit only as far as Table I's evaluation stages (noise, faithful attacks), "
                         "then run the long attacks in plan order")
    for sp in (pl, rn):
        sp.add_argument("--authors-checkpoints", metavar="PATH",
                        help="a clone of github.com/HanshuYAN/TisODE (default: $ROBUSTODE_AUTHORS_CHECKPOINTS)")
    from robustode.cluster import add_arguments

    add_arguments(rn)
    rn.set_defaults(func=_run)

    rep = sub.add_parser("reproduce", help="run the notebooks through papermill for a profile")
    rep.add_argument("--profile", choices=PROFILES, default="quick")
    rep.add_argument("--notebooks", nargs="+", metavar="NAME", help="notebook names (default: all, in book order)")
    rep.add_argument("--device", choices=DEVICES, default="auto")
    rep.add_argument("--log-output", action="store_true", help="stream the notebooks' output")
    rep.add_argument("--budget", help="time for the run plan before the notebooks render (150m, 2h; default: none)")
    rep.add_argument("--render-only", action="store_true",
                     help="skip the run plan: render the notebooks from the runs already stored (the rest shows as not run)")
    rep.set_defaults(func=_reproduce)

    book = sub.add_parser("book", help="execute (quick) and render the Jupyter Book into _build/html")
    book.add_argument("--profile", choices=PROFILES, default="quick")
    book.add_argument("--no-run", action="store_true", help="render existing executed copies only")
    book.add_argument("--device", choices=DEVICES, default="auto")
    book.set_defaults(func=_book)

    report = sub.add_parser("report", help="every number the paper prints, against the best evidence of the runs")
    report.add_argument("--profile", choices=PROFILES, default=None,
                        help="only this profile's runs (default: for each number, the strongest profile that has runs)")
    report.add_argument("--format", choices=("markdown", "json"), default="markdown")
    report.add_argument("--claims", action="store_true", help="the survey's claims with their evidence and verdicts")
    report.set_defaults(func=_report)

    data = sub.add_parser("data", help="which data sets are on disk; --fetch downloads missing ones (torchvision)")
    data.add_argument("names", nargs="*", help="data sets (default: all, ImgNet10 included)")
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
    from robustode.results import pin_code_state

    pin_code_state()  # results written later in this process cite the code it started with
    try:
        return args.func(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
