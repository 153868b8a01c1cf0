"""Chapters 2-3 tables: rows built from the results files only (Table I against the printed values, strong
attacks, sanity checks, solver transfer, defences, run summaries, steadiness).
"""

from __future__ import annotations

from pathlib import Path

import torch

from robustode.chapters.robustness.config import (
    CHAPTER_MODELS,
    DATASETS,
    MODELS,
    TABLE_MODELS,
    available,
    eps_value,
    missing_reason,
    table_one_rows,
)
from robustode.reference import compare, reference_values
from robustode.results import fmt_mean_sd, load_results, mean_sd
from robustode.tables import flag


def _runs(results_dir: Path, dataset: str) -> list[dict]:
    """Stored runs in model order (CNN, ODENet, TisODE, then the +denoise variants), then by seed."""
    runs = load_results(results_dir, f"robustness-{dataset}")
    order = {name: i for i, name in enumerate(MODELS)}
    return sorted(runs, key=lambda r: (order.get(r["params"]["model"], len(order)), r["seed"]))


def _by_model(runs: list[dict], name: str) -> list[dict]:
    return [r["metrics"] for r in runs if r["params"]["model"] == name]


def _not_run_rows(runs: list[dict], dataset: str, models: tuple[str, ...], **keys: str) -> list[dict]:
    """One "not run: data missing (...)" row per model when nothing is stored and the data are missing, else []."""
    why = "" if runs else missing_reason(dataset)
    return [{**keys, "model": name, "result": f"not run: {why}"} for name in models] if why else []


def table_value(metrics: dict, kind: str, value: str) -> float:
    """The Table I quantity of one run, in percent."""
    if kind == "gaussian":
        return 100 * metrics["noise"][str(float(value))]
    return 100 * metrics["faithful"][kind][value]


def table_one(results_dir: Path, dataset: str, profile: str, available_reason: str | None = None,
              models: tuple[str, ...] = TABLE_MODELS) -> list[dict]:
    """Table I rows for a dataset: printed value, reproduced mean +- sd, difference, verdict.

    Rows without stored runs say why (``available_reason``; by default "data missing (...)" when the
    dataset is not on disk, worked out here; pass ``""`` for a plain "not run").
    """
    if available_reason is None:
        available_reason = missing_reason(dataset)
    printed = reference_values()["table_1_robustness"][dataset]
    runs = _runs(results_dir, dataset)
    rows = []
    for key, kind, value in table_one_rows(dataset):
        label = f"σ = {value}" if kind == "gaussian" else f"{kind.upper()}-{value}"
        for name in models:
            values = [table_value(m, kind, value) for m in _by_model(runs, name)]
            p, pm = printed[key][name]
            row = compare(f"{dataset} {label}", p, pm, values, profile, 1, not_run_reason=available_reason or None)
            rows.append({"perturbation": row.pop("quantity"), "model": name, **row})
    return rows


def strong_table(results_dir: Path, dataset: str, models: tuple[str, ...] = TABLE_MODELS) -> list[dict]:
    """Faithful PGD beside strong PGD and AutoAttack at Table I's PGD epsilons (mean +- sd over seeds, %)."""
    runs = _runs(results_dir, dataset)
    rows = []
    for _, kind, eps in table_one_rows(dataset):
        if kind != "pgd":
            continue
        rows += _not_run_rows(runs, dataset, models, eps=eps)
        for name in models:
            mine = _by_model(runs, name)
            if not mine:
                continue
            strong = [m["strong"][eps] for m in mine]
            aa = [s["autoattack"] for s in strong if "autoattack" in s]
            rows.append({
                "eps": eps, "model": name,
                "faithful PGD (margin, 10 it.)": fmt_mean_sd([100 * m["faithful"]["pgd"][eps] for m in mine]),
                f"strong PGD (CE, {strong[0]['steps']} steps x {strong[0]['restarts']} restarts)":
                    fmt_mean_sd([100 * s["accuracy"] for s in strong]),
                "AutoAttack": fmt_mean_sd([100 * a["accuracy"] for a in aa]) if aa else "not run",
                "AutoAttack setting": f"{aa[0]['config']}, {aa[0]['images']} images" if aa else "—",
                "images (faithful / strong)": f"{mine[0]['attack_images']} / {strong[0]['images']}",
            })
    return rows


def sanity_table(results_dir: Path, dataset: str) -> list[dict]:
    """Every stored check of every run; a failed check is shown in red (:func:`robustode.tables.flag`)."""
    runs = _runs(results_dir, dataset)
    rows = _not_run_rows(runs, dataset, CHAPTER_MODELS)
    for r in runs:
        for c in r["metrics"]["checks"]:
            rows.append({"model": r["params"]["model"], "seed": r["seed"], "check": c["check"],
                         "result": flag(c["ok"], ("passed: " if c["ok"] else "") + c["detail"])})
    return rows


def failed_checks(results_dir: Path, dataset: str) -> list[str]:
    return [f"{r['params']['model']} seed {r['seed']}: {c['check']} ({c['detail']})"
            for r in _runs(results_dir, dataset) for c in r["metrics"]["checks"] if not c["ok"]]


def solver_transfer_table(results_dir: Path, dataset: str) -> list[dict]:
    """Accuracy (%) of faithful PGD crafted through one Euler step size (rows) and judged with another."""
    runs = _runs(results_dir, dataset)
    rows = _not_run_rows(runs, dataset, tuple(m for m in CHAPTER_MODELS if m != "CNN"))
    for r in runs:
        st = r["metrics"].get("sanity", {}).get("solver_transfer")
        if not st or r["seed"] != 0:
            continue
        for craft, judged in st["accuracy"].items():
            rows.append({"model": f"{r['params']['model']} (deployed step {st['deployed_step']})",
                         "crafted with step": craft,
                         **{f"judged with step {j}": f"{100 * a:.1f}" for j, a in judged.items()}})
    return rows


def authors_spread(results_dir: Path, profile: str) -> list[dict]:
    """The authors' own three FGSM runs per MNIST model (their log) beside ours: run-to-run spread."""
    authors = reference_values()["authors_mnist_fgsm_runs"]
    runs = _runs(results_dir, "MNIST")
    not_run = "not run" + (f": {why}" if (why := missing_reason("MNIST")) else "")
    rows = []
    for key, per_model in authors.items():
        eps = key.removeprefix("fgsm_")
        for name, values in per_model.items():
            ours = [100 * m["faithful"]["fgsm"][eps] for m in _by_model(runs, name) if eps in m["faithful"]["fgsm"]]
            mean, sd, _ = mean_sd(values)
            printed = reference_values()["table_1_robustness"]["MNIST"][key][name]
            rows.append({"attack": f"FGSM-{eps}", "model": name, "authors' runs": ", ".join(f"{v:.1f}" for v in values),
                         "authors' mean ± sd": f"{mean:.1f} ± {sd:.1f}", "printed in Table I": f"{printed[0]:.1f} ± {printed[1]:.1f}",
                         "range": f"{max(values) - min(values):.1f}",
                         f"ours ({profile})": ", ".join(f"{v:.1f}" for v in ours) or not_run})
    return rows


def defence_table(results_dir: Path, dataset: str = "MNIST") -> list[dict]:
    """Sec. 5.3: each model alone, with feature denoising, with input randomisation, with both (%, mean +- sd)."""
    runs = _runs(results_dir, dataset)
    rows = _not_run_rows(runs, dataset, CHAPTER_MODELS)
    for name in MODELS:
        mine = _by_model(runs, name)
        if not mine:
            continue
        variants = [(name, mine)]
        rand = [m["randomised"] for m in mine if "randomised" in m]
        if rand:
            variants.append((f"{name} + input randomisation", rand))
        for label, ms in variants:
            row = {"model": label, "runs": len(ms), "clean": fmt_mean_sd([100 * m["clean"] for m in ms])}
            for _, kind, value in table_one_rows(dataset):
                if kind == "gaussian":
                    row[f"σ = {value}"] = fmt_mean_sd([100 * m["noise"][str(float(value))] for m in ms])
                else:
                    row[f"{kind.upper()}-{value}"] = fmt_mean_sd([100 * m["faithful"][kind][value] for m in ms])
            for eps in [v for _, k, v in table_one_rows(dataset) if k == "pgd"]:
                strong = [m["strong"][eps] for m in ms]
                row[f"strong PGD-{eps}"] = fmt_mean_sd([100 * s["accuracy"] for s in strong])
            first = ms[0]["strong"][next(iter(ms[0]["strong"]))]
            row["strong setting"] = (f"{first['steps']} steps x {first['restarts']} restarts, {first['images']} images"
                                     + (f", EOT over {first['eot']} draws" if first["eot"] > 1 else ""))
            rows.append(row)
    return rows


def curves(results_dir: Path, dataset: str, models: tuple[str, ...] = TABLE_MODELS) -> dict[str, dict]:
    """Per model: mean accuracy (%) vs sigma and vs eps (FGSM, PGD), averaged over seeds, for the plots."""
    runs = _runs(results_dir, dataset)
    out = {}
    for name in models:
        mine = _by_model(runs, name)
        if not mine:
            continue
        entry = {"noise": {}, "fgsm": {}, "pgd": {}, "runs": len(mine)}
        for s in mine[0]["noise"]:
            entry["noise"][float(s)] = mean_sd([100 * m["noise"][s] for m in mine])[:2]
        for kind in ("fgsm", "pgd"):
            for eps in mine[0]["faithful"][kind]:
                entry[kind][eps_value(eps)] = mean_sd([100 * m["faithful"][kind][eps] for m in mine])[:2]
        out[name] = entry
    return out


def run_summary(results_dir: Path, dataset: str) -> list[dict]:
    """Per run: parameters, epochs, best epoch, validation accuracy, clean test accuracy, trainer, wall time
    (for seeds trained together, the wall time they shared)."""
    runs = _runs(results_dir, dataset)
    rows = _not_run_rows(runs, dataset, CHAPTER_MODELS)
    for r in runs:
        m, p = r["metrics"], r["params"]
        epochs = m["history"]["epochs"]
        best = m["history"]["best_epoch"]
        rows.append({"model": p["model"], "seed": r["seed"], "width": p["width"], "parameters": f"{m['parameters']:,}",
                     "train images": p["train_size"] or "all", "epochs": len(epochs), "selected epoch": best,
                     "val. acc. (noisy) %": f"{100 * epochs[best - 1]['val_noisy_accuracy']:.1f}" if best else "—",
                     "clean test acc. %": f"{100 * m['clean']:.1f}",
                     "trainer": _trainer_label(m, epochs, r["provenance"]["device"]),
                     "train time s": f"{sum(e['seconds'] for e in epochs):.0f}"})
    return rows


def _trainer_label(metrics: dict, epochs: list[dict], device: str) -> str:
    label = metrics.get("trainer", "plain")
    together = max((e.get("concurrent_runs", 1) for e in epochs), default=1)
    return f"{label}{f', {together} seeds at once' if together > 1 else ''} on {device}"


def steadiness_table(results_dir: Path, dataset: str) -> list[dict]:
    """Mean |f(z(t))| at t = 0, T = 1 and 2T (seed 0): a steady state would bring it near 0 after T."""
    rows = _not_run_rows(_runs(results_dir, dataset), dataset, tuple(m for m in CHAPTER_MODELS if m != "CNN"))
    for name, prof in field_profiles(results_dir, dataset).items():
        t = torch.tensor(prof["t"])
        f0, f1, f2 = (prof["mean_abs_f"][int((t - when).abs().argmin())] for when in (0.0, 1.0, 2.0))
        rows.append({"model": name, "mean |f| at t=0": f"{f0:.3f}", "at T=1": f"{f1:.3f}", "at 2T=2": f"{f2:.3f}",
                     "ratio 2T / T": f"{f2 / f1:.2f}"})
    return rows


def field_profiles(results_dir: Path, dataset: str) -> dict[str, dict]:
    """Seed-0 profile of mean |f(z(t))| for every ODE model that has one."""
    return {r["params"]["model"]: r["metrics"]["field_profile"] for r in _runs(results_dir, dataset)
            if r["seed"] == 0 and "field_profile" in r["metrics"]}


def table_one_all(results_dir: Path, profile: str, imagenet_root: str | None = None,
                  models: tuple[str, ...] = TABLE_MODELS) -> list[dict]:
    """Table I for every dataset; datasets whose data are missing get "not run: data missing" rows."""
    rows = []
    for dataset in DATASETS:
        ok, why = available(dataset, imagenet_root)
        rows += table_one(results_dir, dataset, profile, "" if ok else why, models)
    return rows
