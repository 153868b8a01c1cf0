"""Chapter 1 tables: rows built from the results files only.
"""

from __future__ import annotations

from pathlib import Path

from robustode.results import fmt_mean_sd, load_results


def summary(results_dir: Path, experiment: str) -> list[dict]:
    """Per model: final train loss, test accuracy, forward / backward NFE of the last epoch, mean +- sd."""
    runs = load_results(results_dir, experiment)
    rows = []
    for name in dict.fromkeys(r["params"]["model"] for r in runs):
        mine = [r["metrics"] for r in runs if r["params"]["model"] == name]
        last = [m["history"]["epochs"][-1] for m in mine if m["history"]["epochs"]]
        rows.append({
            "model": name,
            "runs": len(mine),
            "failed runs": sum(1 for m in mine if m["history"]["failure"]),
            "train loss": fmt_mean_sd([m["train"]["loss"] for m in mine], 4),
            "test accuracy (%)": fmt_mean_sd([m["test"]["accuracy"] for m in mine], 1, 100),
            "NFE forward": fmt_mean_sd([e["nfe_forward"] for e in last], 1),
            "NFE backward": fmt_mean_sd([e["nfe_backward"] for e in last], 1),
        })
    return rows


def flip_summary(results_dir: Path) -> list[dict]:
    """Per model on the flip: the learned g(-1), g(+1), the final loss and the gap g(+1) - g(-1)."""
    runs = load_results(results_dir, "topology-flip")
    rows = []
    for name in dict.fromkeys(r["params"]["model"] for r in runs):
        mine = [r["metrics"] for r in runs if r["params"]["model"] == name]
        rows.append({
            "model": name,
            "g(-1) (target +1)": fmt_mean_sd([m["g_minus1"] for m in mine], 3),
            "g(+1) (target -1)": fmt_mean_sd([m["g_plus1"] for m in mine], 3),
            "final loss": fmt_mean_sd([m["final"]["loss"] for m in mine], 4),
            "g(+1) - g(-1)": fmt_mean_sd([m["g_plus1"] - m["g_minus1"] for m in mine], 4),
        })
    return rows
