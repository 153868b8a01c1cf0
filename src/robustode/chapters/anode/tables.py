"""Chapter 5 tables: rows built from the results files only (Table 1 against Dupont et al., the p sweep,
solver and gradient checks, failures).
"""

from __future__ import annotations

import math

from robustode.chapters.anode.config import TABLE_1_ROLES, _config, _variants, experiment_name, missing_reason
from robustode.chapters.anode.run import build_variant
from robustode.data.images import check_dataset
from robustode.models import count_parameters
from robustode.reference import Printed, printed
from robustode.results import fmt_mean_sd
from robustode.store import Store
from robustode.verdict import Reproduced, row
from robustode.wording import not_run


def why_empty(store: Store, dataset: str) -> str:
    """Why ``dataset`` has no runs in ``store``: its data are missing here, or its runs are pending in the plan."""
    return not_run(missing_reason(dataset) or store.pending())


def report_values(p: Printed, store: Store) -> Reproduced:
    """Our test accuracies (%, one per run) for a printed Table 1 number of Dupont et al.; for the parameter counts
    of their configs, the count of the model we build from them."""
    if p.section == "anode_parameters":
        from robustode.models import build_model, count_parameters

        dataset, config = p.key
        name = "ConvNODE" if config.startswith("NODE") else "ConvANODE"
        return Reproduced((float(count_parameters(build_model(name, dataset))),), store.profile, exact=True)
    dataset, role = p.key
    if dataset not in ("MNIST", "CIFAR10"):
        return Reproduced(reason=f"{dataset} is not part of the survey's ANODE figures; no experiment here")
    runs = store.runs(experiment_name(dataset))
    variant = [r for r in runs if r["params"]["model"] == r["params"]["table_1"][dataset][role]]
    mine = [r for r in variant if not r["metrics"]["failure"]]
    values = tuple(100 * r["metrics"]["test"]["accuracy"] for r in mine if r["metrics"]["test"]["accuracy"] is not None)
    if not values:
        if variant:  # runs were made and every one failed
            failures = sorted({r["metrics"]["failure"] for r in variant})
            return Reproduced(reason=f"all {len(variant)} runs failed ({', '.join(failures)})")
        return Reproduced(reason=why_empty(store, dataset).removeprefix("not run: "))
    return Reproduced(values, store.profile, ", ".join(sorted({r["provenance"]["device"].split(" (")[0] for r in mine})))


def variants_table(profile: str | dict, dataset: str) -> list[dict]:
    """The profile's variants for ``dataset``: filters, p, image size and parameter count as built."""
    cfg = _config(profile, "images")
    spec = check_dataset(dataset)
    rows = []
    for name, variant in _variants(cfg, dataset).items():
        size = cfg.get("image_size") or spec.size
        rows.append({
            "model": name, "filters": variant["filters"], "p": variant["augment_dim"],
            "input": f"{spec.channels}x{size}x{size}",
            "parameters": f"{count_parameters(build_variant(dataset, variant, cfg)):,}",
        })
    return rows


def _by_model(runs: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for r in runs:
        grouped.setdefault(r["params"]["model"], []).append(r)
    return grouped


def _last_fraction(values: list[float], fraction: float = 0.1) -> list[float]:
    return values[-max(1, math.ceil(fraction * len(values))):] if values else []


def _final_means(iterations: list[dict], key: str) -> list[float]:
    """Per run: the mean of ``key`` over its last 10 % of iterations (the end-of-training level)."""
    tails = [_last_fraction(its[key]) for its in iterations]
    return [sum(t) / len(t) for t in tails if t]


def sweep_summary(store: Store, dataset: str) -> list[dict]:
    """Per variant: parameters, runs, failures, final loss / NFE (mean of the last 10 % of iterations), test accuracy.

    """
    stored = store.runs(experiment_name(dataset))
    rows = []
    for name, runs in _by_model(stored).items():
        its = [r["metrics"]["history"]["iterations"] for r in runs]
        ok = [r for r in runs if not r["metrics"]["failure"]]
        rows.append({
            "model": name,
            "p": runs[0]["params"]["augment_dim"],
            "filters": runs[0]["params"]["filters"],
            "parameters": f"{runs[0]['metrics']['parameters']:,}",
            "runs": len(runs),
            "failed": len(runs) - len(ok),
            "iterations": fmt_mean_sd([len(i["loss"]) for i in its], 0),
            "final loss": fmt_mean_sd(_final_means(its, "loss"), 3),
            "forward NFE": fmt_mean_sd(_final_means(its, "nfe_forward"), 1),
            "backward NFE": fmt_mean_sd(_final_means(its, "nfe_backward"), 1),
            "test accuracy (%)": fmt_mean_sd([r["metrics"]["test"]["accuracy"] for r in ok], 1, 100),
            "train s / iteration": fmt_mean_sd(
                [r["metrics"]["train_seconds"] / max(1, len(r["metrics"]["history"]["iterations"]["loss"])) for r in runs], 2),
        })
    return rows


def table_1(store: Store, datasets: list[str], pairs: dict[str, dict[str, str]]) -> list[dict]:
    """Dupont et al.'s Table 1 (test accuracy, %), printed next to ours (:mod:`robustode.verdict`): one row per data set
    and role with runs, and the failed runs where there are any."""
    rows = []
    for dataset in datasets:
        runs = _by_model(store.runs(experiment_name(dataset)))
        for role in TABLE_1_ROLES:
            variant = pairs[dataset][role]
            if variant not in runs:
                continue
            p = printed("anode_table_1", dataset, role)
            entry = row(p, report_values(p, store), label=f"{dataset} {role}: {variant}", context=False)
            failed = sum(1 for r in runs[variant] if r["metrics"]["failure"])
            rows.append({**entry, **({"failed runs": failed} if failed else {})})
    return rows


def _solver_checks(store: Store, dataset: str) -> dict[str, list[dict]]:
    grouped = {}
    for name, runs in _by_model(store.runs(experiment_name(dataset))).items():
        checks = [r["metrics"].get("solver_check") for r in runs]
        checks = [c for c in checks if c and not c.get("failure")]
        if checks:
            grouped[name] = checks
    return grouped


def solver_check_summary(store: Store, dataset: str) -> list[dict]:
    """Per variant: trained-tolerance vs reference solve of the trained models (mean +- sd over runs).

    """
    rows = []
    for name, checks in _solver_checks(store, dataset).items():
        rows.append({
            "model": name,
            "images": checks[0]["images"],
            "tolerance vs reference": f"{checks[0]['tolerance']:g} vs {checks[0]['reference_tolerance']:g} (float64)",
            "NFE (trained tol.)": fmt_mean_sd([c["nfe_forward"] for c in checks], 0),
            "NFE (reference)": fmt_mean_sd([c["nfe_forward_reference"] for c in checks], 0),
            "relative state error, mean": fmt_mean_sd([c["state_rel_error_mean"] for c in checks], 4),
            "relative state error, max": fmt_mean_sd([c["state_rel_error_max"] for c in checks], 4),
            "max abs. logit difference": fmt_mean_sd([c["logit_abs_diff_max"] for c in checks], 4),
            "same prediction (%)": fmt_mean_sd([c["prediction_agreement"] for c in checks], 1, 100),
            "accuracy (%), trained tol. / reference": f"{fmt_mean_sd([c['accuracy'] for c in checks], 1, 100)} / "
                                                      f"{fmt_mean_sd([c['accuracy_reference'] for c in checks], 1, 100)}",
        })
    return rows


def gradient_check_summary(store: Store, dataset: str) -> list[dict]:
    """Per variant: the adjoint gradient against backpropagation through the same forward solve.

    """
    return [{
        "model": name,
        "images": checks[0]["images"],
        "backward NFE (adjoint)": fmt_mean_sd([c["nfe_backward_adjoint"] for c in checks], 0),
        "relative gradient error (%)": fmt_mean_sd([c["gradient_rel_error"] for c in checks], 2, 100),
    } for name, checks in _solver_checks(store, dataset).items()]


def failure_summary(runs: list[dict]) -> list[dict]:
    """One row per run: iterations done, failure reason (or none), and the largest forward NFE seen."""
    rows = []
    for r in runs:
        its = r["metrics"]["history"]["iterations"]
        rows.append({
            "run": r["run"],
            "iterations": len(its["loss"]),
            "failure": r["metrics"]["failure"] or "none",
            "max forward NFE": max(its["nfe_forward"], default=0),
            "max backward NFE": max(its["nfe_backward"], default=0),
            "final loss": f"{sum(_last_fraction(its['loss'])) / max(1, len(_last_fraction(its['loss']))):.4f}"
            if its["loss"] else "—",
        })
    return rows
