"""Chapter 1 tables: rows built from one profile's results files only."""

from __future__ import annotations

from robustode.results import fmt_mean_sd
from robustode.store import Store


def summary(store: Store, experiment: str) -> list[dict]:
    """Per model: final train loss, test accuracy and forward NFE of the last epoch (mean ± sd over runs), and the
    runs whose solver failed when there are any. (The backward NFE is not shown: these models backpropagate through
    the solver's operations, so the solver is never called backwards and there is nothing to count.)"""
    runs = store.runs(experiment)
    rows = []
    for name in dict.fromkeys(r["params"]["model"] for r in runs):
        mine = [r["metrics"] for r in runs if r["params"]["model"] == name]
        last = [m["history"]["epochs"][-1] for m in mine if m["history"]["epochs"]]
        failed = sum(1 for m in mine if m["history"]["failure"])
        rows.append({
            "model": name,
            "train loss": fmt_mean_sd([m["train"]["loss"] for m in mine], 4),
            "test accuracy (%)": fmt_mean_sd([m["test"]["accuracy"] for m in mine], 1, 100),
            "NFE forward": fmt_mean_sd([e["nfe_forward"] for e in last], 1) if any(e["nfe_forward"] for e in last) else "—",
            **({"failed runs": failed} if any(m["history"]["failure"] for r in runs for m in [r["metrics"]]) else {}),
        })
    return rows


def flip_summary(store: Store) -> list[dict]:
    """Per model on the flip: the learned g(-1), g(+1), the final loss and the gap g(+1) - g(-1)."""
    runs = store.runs("topology-flip")
    rows = []
    for name in dict.fromkeys(r["params"]["model"] for r in runs):
        mine = [r["metrics"] for r in runs if r["params"]["model"] == name]
        rows.append({
            "model": name,
            "g(−1) (target +1)": fmt_mean_sd([m["g_minus1"] for m in mine], 3),
            "g(+1) (target −1)": fmt_mean_sd([m["g_plus1"] for m in mine], 3),
            "final loss": fmt_mean_sd([m["final"]["loss"] for m in mine], 4),
            "g(+1) − g(−1)": fmt_mean_sd([m["g_plus1"] - m["g_minus1"] for m in mine], 4),
        })
    return rows
