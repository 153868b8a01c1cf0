"""Chapter 4 tables: rows built from the results files only (Table III and IV against the printed values,
per-class reports, attention statistics, timings).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

from robustode.chapters.attention.config import METRICS, MODELS, PAPER_NAMES
from robustode.data.images import IMAGE_SETS, is_available
from robustode.models.attention import CLASSES, DATASETS
from robustode.reference import compare, reference_values
from robustode.results import fmt_mean_sd, load_results, mean_sd
from robustode.tables import flag


def _audit(results_dir: Path) -> dict:
    found = load_results(results_dir, "attention-audit")
    if not found:
        raise FileNotFoundError(f"no attention-audit results in {results_dir}: run architecture_audit first")
    return found[0]["metrics"]


def table4_rows(results_dir: Path) -> list[dict]:
    """Table IV printed against the parameter counts of the models we built (exact match required)."""
    printed = reference_values()["table_4_parameters"]
    built = _audit(results_dir)["built"]
    rows = []
    for dataset in DATASETS:
        row = {"dataset": dataset}
        for name in ("ClassicAttention", "ODEAttention"):
            ours, theirs = built[name][dataset], printed[PAPER_NAMES[name]][dataset]
            row[f"{PAPER_NAMES[name]}: printed"] = theirs
            row[f"{PAPER_NAMES[name]}: ours"] = flag(ours == theirs, f"{ours} (exact)" if ours == theirs else str(ours))
        for name in ("ClassicAttention-QKV", "ODEAttention-QKV"):
            row[f"{name} (text-faithful)"] = built[name][dataset]
        rows.append(row)
    return rows


def solved_rows(results_dir: Path) -> list[dict]:
    """What the count differences fix: hidden size, row width, and the data-independent remainder."""
    audit = _audit(results_dir)
    rows = []
    for key, name in (("classic", "Classic Attention"), ("ode", "Neural ODE Attention")):
        a = audit[key]
        h = a["hidden"]
        rows.append({
            "model": name,
            "CIFAR100 - CIFAR10 = 90 (h + 1) gives h": h,
            "CIFAR10 - MNIST = gain x h gives gain": f"{a['row_width_gain']:g} (32 vs 28 values per row)",
            "MNIST - 28h (encoder weights) - 10(h + 1) (decoder)": a["rest"],
            "layouts in the menu that fit": len(a["candidates"]),
        })
    return rows


def shared_rows(results_dir: Path) -> list[dict]:
    """Layouts whose non-ODE part is identical in both models, with the text's field in the ODE model."""
    rows = []
    for c in _audit(results_dir)["shared"]:
        chosen = c["encoder_bias"] and c["attention"] == "score vector w . h_i + b" and c["attention_blocks"] == 1 \
            and c["extra_layernorms"] == 1 and c["extra_scalars"] == 0
        rows.append({"encoder bias": c["encoder_bias"], "attention block": c["attention"],
                     "copies": c["attention_blocks"], "extra LayerNorm(h)": c["extra_layernorms"],
                     "lone scalar parameters": c["extra_scalars"], "built here": "yes" if chosen else ""})
    return rows


def room_rows(results_dir: Path) -> list[dict]:
    """Parameters left after encoder, decoder (and the text's field) against what W_q, W_k, W_v would cost."""
    rows = []
    for name, r in _audit(results_dir)["room"].items():
        rows.append({"model": PAPER_NAMES[name], "left for attention and anything else": r["free_after_encoder_decoder_field"],
                     "one hidden x hidden matrix": r["one_hxh"], "W_q, W_k, W_v (hidden x hidden)": r["three_hxh"],
                     "fits": "yes" if r["three_hxh"] <= r["free_after_encoder_decoder_field"] else "no"})
    return rows


def precision_rows(results_dir: Path) -> list[dict]:
    found = load_results(results_dir, "attention-precision")
    if not found:
        if is_available("MNIST"):
            return []
        return [{"tolerance (rtol = atol)": "—", "precision": "—", "NFE / forward pass": f"not run: {_missing_reason('MNIST')}"}]
    return [{"tolerance (rtol = atol)": f"{r['tol']:g}", "precision": r["precision"],
             "NFE / forward pass": r["nfe_forward"] if r["failure"] is None else f"failed: {r['failure']}"}
            for r in found[0]["metrics"]["rows"]]


def _by(runs: list[dict], name: str, dataset: str) -> list[dict]:
    return [r["metrics"] for r in runs if r["params"]["model"] == name and r["params"]["dataset"] == dataset]


def _groups(runs: list[dict]) -> Iterator[tuple[str, str, list[dict]]]:
    """(model, data set, metrics of its seeds) for every pair that has runs, models in first-seen order."""
    for name in dict.fromkeys(r["params"]["model"] for r in runs):
        for dataset in DATASETS:
            if mine := _by(runs, name, dataset):
                yield name, dataset, mine


def _missing_reason(dataset: str) -> str:
    return f"data missing ({dataset} not in the data folder)" if not is_available(dataset) else "not in this profile"


def _not_run_rows(results_dir: Path, columns: tuple[str, ...], reason_column: str, **fixed) -> list[dict]:
    """Rows for a summary that found no runs at all: one per dataset whose data are missing, saying so, when this
    profile's Table III was attempted here (its folder exists; a profile never run, e.g. uncommitted full
    results, stays empty). Summaries that found runs are left as they are."""
    if not (Path(results_dir) / "attention-table3").is_dir():
        return []
    return [{**dict.fromkeys(columns, "—"), **fixed, "dataset": d, reason_column: f"not run: {_missing_reason(d)}"}
            for d in DATASETS if not is_available(d)]


def table3_rows(results_dir: Path, profile: str) -> list[dict]:
    """Table III printed against ours: one row per (model, dataset, column); a dataset not run gets one row."""
    printed = reference_values()["table_3_ode_attention"]
    runs = load_results(results_dir, "attention-table3")
    rows = []
    for name in ("ODEAttention", "ClassicAttention"):
        for dataset in DATASETS:
            mine = _by(runs, name, dataset)
            values = printed[PAPER_NAMES[name]][dataset]
            if not mine:
                rows.append({"model": PAPER_NAMES[name], "dataset": dataset, **compare(
                    "all columns", values[1], None, [], profile, 4, not_run_reason=_missing_reason(dataset))})
                continue
            for i, metric in enumerate(METRICS):
                resolution = 0.05 if metric == "test_loss" else 0.01
                rows.append({"model": PAPER_NAMES[name], "dataset": dataset,
                             **compare(metric, values[i], None, [m[metric] for m in mine], profile, 4, resolution)})
    return rows


def accuracy_rows(results_dir: Path) -> list[dict]:
    """Every model run (the faithful pair, the text's QKV variants, the linear yardstick): size and test metrics."""
    runs = load_results(results_dir, "attention-table3")
    rows = []
    for name, dataset, mine in _groups(runs):
        rows.append({
            "model": name, "dataset": dataset, "parameters": f"{mine[0]['parameters']:,}",
            "test accuracy": fmt_mean_sd([m["accuracy"] for m in mine], 4),
            "weighted F1": fmt_mean_sd([m["f1"] for m in mine], 4),
            "macro F1": fmt_mean_sd([m["macro"]["f1"] for m in mine], 4),
            "test loss": fmt_mean_sd([m["test_loss"] for m in mine], 4),
            "recall - accuracy": f"{max(abs(m['recall'] - m['accuracy']) for m in mine):.1e}",
            "best epoch (val)": ", ".join(str(m["history"]["best_epoch"]) for m in mine),
        })
    return rows or _not_run_rows(results_dir, ("model", "dataset", "parameters", "test accuracy", "weighted F1", "macro F1",
                                               "test loss", "recall - accuracy", "best epoch (val)"), "test accuracy",
                                 model="all models")


def per_class_rows(results_dir: Path, dataset: str, models=("ClassicAttention", "ODEAttention")) -> list[dict]:
    """scikit-learn's per-class precision / recall / F1 (mean over seeds) for the faithful pair."""
    runs = load_results(results_dir, "attention-table3")
    found = {name: _by(runs, name, dataset) for name in models}
    if not all(found.values()):
        if runs or is_available(dataset) or not (Path(results_dir) / "attention-table3").is_dir():
            return []
        return [{"class": "all", "support": "—", **{f"{name} {short}": "—" for name in models for short in ("P", "R", "F1")},
                 f"{models[0]} P": f"not run: {_missing_reason(dataset)}"}]
    rows = []
    for c in range(CLASSES[dataset]):
        row = {"class": c, "support": int(found[models[0]][0]["per_class"][str(c)]["support"])}
        for name in models:
            for key, short in (("precision", "P"), ("recall", "R"), ("f1-score", "F1")):
                row[f"{name} {short}"] = f"{mean_sd([m['per_class'][str(c)][key] for m in found[name]])[0]:.3f}"
        rows.append(row)
    return rows


def attention_rows(results_dir: Path) -> list[dict]:
    """The "collapses to one position" claim as numbers: entropy, effective positions, largest weight, mean +- sd over seeds."""
    runs = load_results(results_dir, "attention-table3")
    rows = []
    for name, dataset, metrics in _groups(runs):
        mine = [m["attention"] for m in metrics if "attention" in m]
        if not mine:
            continue
        rows.append({
            "model": name, "dataset": dataset, "rows (L)": mine[0]["positions"],
            "normalised entropy (0 = one row, 1 = uniform)": fmt_mean_sd([a["normalised_entropy"] for a in mine], 3),
            "effective rows exp(H)": fmt_mean_sd([a["effective_positions"] for a in mine], 2),
            "largest weight": fmt_mean_sd([a["max_weight"] for a in mine], 3),
            "images with a weight > 0.5": fmt_mean_sd([a["share_max_above_half"] for a in mine], 3),
            "same top row across images": fmt_mean_sd([a["argmax_mode_share"] for a in mine], 3),
        })
    return rows or _not_run_rows(results_dir, ("model", "dataset", "rows (L)", "normalised entropy (0 = one row, 1 = uniform)",
                                               "effective rows exp(H)", "largest weight", "images with a weight > 0.5",
                                               "same top row across images"), "normalised entropy (0 = one row, 1 = uniform)",
                                 model="all models")


def _timed(results_dir: Path) -> list[dict]:
    return [r for r in load_results(results_dir, "attention-table3") if "timings" in r["metrics"]]


def timing_rows(results_dir: Path) -> list[dict]:
    """Measured inference time per forward pass next to Table III's printed seconds (whose batch and hardware are unstated)."""
    printed = reference_values()["table_3_ode_attention"]
    rows = []
    for run in _timed(results_dir):
        name, dataset = run["params"]["model"], run["params"]["dataset"]
        for t in run["metrics"]["timings"]:
            rows.append({
                "model": name, "dataset": dataset, "device": t["device"], "batch": t["batch"],
                "median ms / pass": f"{1e3 * t['median_s']:.2f}",
                "IQR ms": f"{1e3 * t['q1_s']:.2f}-{1e3 * t['q3_s']:.2f}",
                "images / s": f"{t['images_per_s']:,.0f}",
                "NFE / pass": f"{t['nfe_forward']:.0f}",
                "printed s": printed[PAPER_NAMES[name]][dataset][5] if name in PAPER_NAMES else "—",
            })
    return rows or _not_run_rows(results_dir, ("model", "dataset", "device", "batch", "median ms / pass", "IQR ms", "images / s",
                                               "NFE / pass", "printed s"), "median ms / pass", model="all models")


def timing_ratio_rows(results_dir: Path) -> list[dict]:
    """Classic time / ODE time, measured per (dataset, device, batch), beside the printed ratio (about 10)."""
    printed = reference_values()["table_3_ode_attention"]
    runs = {(r["params"]["model"], r["params"]["dataset"]): r["metrics"]["timings"] for r in _timed(results_dir)}
    rows = []
    for dataset in DATASETS:
        if ("ClassicAttention", dataset) not in runs or ("ODEAttention", dataset) not in runs:
            continue
        ratio_printed = printed["Classic Attention"][dataset][5] / printed["Neural ODE Attention"][dataset][5]
        for c, o in zip(runs[("ClassicAttention", dataset)], runs[("ODEAttention", dataset)], strict=True):
            rows.append({"dataset": dataset, "device": c["device_type"], "batch": c["batch"],
                         "Classic / ODE time, printed": f"{ratio_printed:.1f}",
                         "Classic / ODE time, measured": f"{c['median_s'] / o['median_s']:.3g}",
                         "ODE NFE / pass": f"{o['nfe_forward']:.0f}"})
    return rows or _not_run_rows(results_dir, ("dataset", "device", "batch", "Classic / ODE time, printed",
                                               "Classic / ODE time, measured", "ODE NFE / pass"), "Classic / ODE time, measured")


def first_call_rows(results_dir: Path) -> list[dict]:
    rows = []
    for run in load_results(results_dir, "attention-first-call"):
        for position, call in enumerate(run["metrics"]["calls"], start=1):
            rows.append({"device": run["params"]["device"], "order": " then ".join(run["params"]["order"]),
                         "model": call["model"], "timed": "first" if position == 1 else "second",
                         "move to device ms": f"{1e3 * call['to_device_s']:.1f}",
                         "first call ms": f"{1e3 * call['first_call_s']:.1f}",
                         "warm median ms": f"{1e3 * call['warm_median_s']:.2f}",
                         "first / warm": f"{call['first_call_s'] / call['warm_median_s']:.1f}"})
    return rows


def printed_table_checks(results_dir: Path) -> dict:
    """Numbers behind the flags raised against the printed Table III, from our runs; the ``*_text`` entries are
    ready to print and say "not run: data missing (...)" where our runs are missing for that reason."""
    printed = reference_values()["table_3_ode_attention"]
    runs = load_results(results_dir, "attention-table3")
    acc = {(n, d): mean_sd([m["accuracy"] for m in _by(runs, n, d)]) for n in MODELS for d in DATASETS}
    out = {}
    for name in ("ODEAttention", "ClassicAttention"):
        p = printed[PAPER_NAMES[name]]
        out[name] = {
            "printed_mnist_minus_fashion": p["MNIST"][1] - p["FashionMNIST"][1],
            "ours_mnist_minus_fashion": acc[(name, "MNIST")][0] - acc[(name, "FashionMNIST")][0],
            "printed_recall_equals_accuracy": all(abs(v[3] - v[1]) < 1e-9 for v in p.values()),
        }
        diff = out[name]["ours_mnist_minus_fashion"]
        out[name]["ours_mnist_minus_fashion_text"] = (f"{diff:+.4f}" if not math.isnan(diff)
                                                      else _not_run_text(("MNIST", "FashionMNIST")))
    out["mnist_accuracy"] = {n: acc[(n, "MNIST")][0] for n in MODELS if acc[(n, "MNIST")][2]}
    out["mnist_accuracy_text"] = str({k: round(v, 4) for k, v in out["mnist_accuracy"].items()}) if out["mnist_accuracy"] \
        else _not_run_text(("MNIST",))
    return out


def _not_run_text(datasets: tuple[str, ...]) -> str:
    """Why a number from our runs is absent: data missing for some of ``datasets``, else not run."""
    missing = [d for d in datasets if not is_available(d)]
    return f"not run: data missing ({', '.join(missing)} not in the data folder)" if missing else "not run"


def available_datasets() -> dict[str, bool]:
    return {d: is_available(d) for d in DATASETS if d in IMAGE_SETS}
