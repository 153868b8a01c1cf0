"""Chapter 5 prose computed from the results files: the end-of-training summary, the memory claims as checks,
and the memory and compute findings (so the notebook holds no logic of its own)."""

from __future__ import annotations

from robustode.chapters.anode.memory import constant_memory_check, memory_series, peak_bytes, slope
from robustode.chapters.anode.tables import sweep_summary
from robustode.store import Store
from robustode.wording import plural


def ending(store: Store, datasets: list[str]) -> list[str]:
    """Per data set: each variant's final training loss and forward / backward NFE (end of training)."""
    out = []
    for dataset in datasets:
        rows = {r["model"]: r for r in sweep_summary(store, dataset)}
        if not rows:
            continue

        def column(key: str, rows: dict = rows) -> str:
            return ", ".join(f"{name} {row[key].split(' (')[0]}" for name, row in rows.items())

        out.append(f"**{dataset}** (profile `{store.profile}`): final training loss — {column('final loss')}; forward NFE — "
                   f"{column('forward NFE')}; backward NFE — {column('backward NFE')}.")
    return out


def memory_claims(runs: list[dict], methods: list[str]) -> dict[str, bool]:
    """The constant-memory claim in its exact form, per fixed-step method: the adjoint keeps the same bytes for the
    backward pass at every step count; backprop adds the same amount per function evaluation; a ResNet adds bytes
    with every block."""
    series = memory_series(runs)
    claims = {}
    for method in _measured(series, methods):
        adjoint = {m["saved_bytes"] for m in series[f"{method}, adjoint"]}
        backprop = series[f"{method}, backprop"]
        per_eval = {(b["saved_bytes"] - a["saved_bytes"]) // (b["nfe_forward"] - a["nfe_forward"])
                    for a, b in zip(backprop, backprop[1:], strict=False)}
        claims[f"{method}: the adjoint keeps the same bytes at every step count"] = len(adjoint) == 1
        claims[f"{method}: backprop keeps the same amount more per function evaluation"] = len(per_eval) == 1
    resnet = [m["saved_bytes"] for m in series.get("ResNet (backprop)", [])]
    if len(resnet) > 1:
        claims["ResNet: every added block keeps more bytes"] = all(b > a for a, b in zip(resnet, resnet[1:], strict=False))
    return claims


def _measured(series: dict[str, list[dict]], methods: list[str]) -> list[str]:
    """The fixed-grid methods with at least two step counts stored for both gradients (a partial profile checks
    what it has)."""
    return [m for m in methods if min(len(series.get(f"{m}, {g}", [])) for g in ("adjoint", "backprop")) > 1]


def memory_findings(runs: list[dict], methods: list[str], adaptive_method: str) -> list[str]:
    """Growth of saved bytes and allocator peak with the number of steps, time ratios, dopri5 and the ResNet."""
    series = memory_series(runs)
    lines = []
    for method in _measured(series, methods):
        c = constant_memory_check(runs, method)
        lo, hi = c["steps"]
        per_eval = slope(series[f"{method}, backprop"], lambda m: m["saved_bytes"]) / 2**20
        times = ", ".join(f"{plural(int(n), 'step')}: {r:.1f}×" for n, r in c["time_ratio"].items())
        lines.append(
            f"**{method}**, {lo} to {hi} steps: backprop's saved bytes grow {c['backprop_saved_ratio']:.1f}× "
            f"({per_eval:.2f} MiB per function evaluation) and its allocator peak {c['backprop_peak_ratio']:.1f}×; the "
            f"adjoint's saved bytes change {c['adjoint_saved_ratio']:.2f}× and its allocator peak "
            f"{c['adjoint_peak_ratio']:.2f}×. At {hi} steps the adjoint step needs {c['memory_saving_at_most_steps']:.1f}× "
            f"less peak memory. Time, adjoint over backprop: {times}.")
    for label, points in ((k, v) for k, v in series.items() if k.startswith(adaptive_method)):
        lines.append(f"**{label}**: tolerance {points[0]['tol']:g} to {points[-1]['tol']:g} → forward NFE "
                     f"{points[0]['nfe_forward']} to {points[-1]['nfe_forward']}, backward NFE "
                     f"{points[0]['nfe_backward']} to {points[-1]['nfe_backward']}, allocator peak "
                     f"{peak_bytes(points[0]) / 2**20:.1f} to {peak_bytes(points[-1]) / 2**20:.1f} MiB.")
    res = series.get("ResNet (backprop)")
    odes = [points[0] for label, points in series.items() if not label.startswith("ResNet")]
    if not res or not odes:
        return lines
    ode = odes[0]
    lines.append(f"**ResNet**, depth {res[0]['depth']} to {res[-1]['depth']}: saved bytes {res[0]['saved_bytes'] / 2**20:.2f} "
                 f"to {res[-1]['saved_bytes'] / 2**20:.2f} MiB, parameters {res[0]['parameters']:,} to "
                 f"{res[-1]['parameters']:,} (the ODE block has {ode['parameters']:,}).")
    return lines


def training_cost(store: Store, datasets: list[str], instability: list[dict]) -> list[str]:
    """Iterations, time per iteration, failed runs and the solver check's range, from the stored image runs."""
    runs = [r for d in datasets for r in store.runs(f"anode-{d}")]
    if not runs:
        return []
    seconds = sum(r["metrics"]["train_seconds"] for r in runs)
    iterations = sum(len(r["metrics"]["history"]["iterations"]["loss"]) for r in runs)
    failures = sum(1 for r in [*runs, *instability] if r["metrics"]["failure"])
    out = [f"Training, profile `{store.profile}`: {iterations:,} iterations in {seconds:.0f} s, "
           f"{seconds / max(iterations, 1):.2f} s per iteration with dopri5 and the adjoint, on "
           f"{'; '.join(sorted({r['provenance']['device'] for r in runs}))}; {plural(failures, 'run')} stopped by a solver failure."]
    checks = [r["metrics"]["solver_check"] for r in runs if r["metrics"].get("solver_check")]
    checks = [c for c in checks if not c.get("failure")]
    if checks:
        out.append(f"Solver check: at rtol = atol = 1e-3 the final state is off by "
                   f"{min(c['state_rel_error_mean'] for c in checks):.1e} to {max(c['state_rel_error_mean'] for c in checks):.1e} "
                   f"(relative, mean over images); predictions agree on at least "
                   f"{100 * min(c['prediction_agreement'] for c in checks):.1f} % of the images; the adjoint gradient is off by "
                   f"{min(c['gradient_rel_error'] for c in checks):.1%} to {max(c['gradient_rel_error'] for c in checks):.1%}.")
    return out
