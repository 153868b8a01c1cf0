"""The paper's printed numbers (``reference-values.yaml``, copied from the survey) and the verdict rule.

A reproduced value "matches" when its distance to the printed value is within twice the combined
spread (printed +- and our sample sd) plus the printing resolution. Anything not run on the
``full`` profile is labelled as indicative.
"""

from __future__ import annotations

import math
from functools import cache
from importlib import resources
from typing import Any

import yaml

from robustode.results import mean_sd


@cache
def reference_values() -> dict[str, Any]:
    return yaml.safe_load(resources.files("robustode").joinpath("reference-values.yaml").read_text())


def verdict(
    printed: float, printed_pm: float | None, mean: float, sd: float, n: int, profile: str, resolution: float = 0.05
) -> str:
    if n == 0 or math.isnan(mean):
        return "not run"
    spread = math.hypot(printed_pm or 0.0, 0.0 if math.isnan(sd) else sd)
    diff = mean - printed
    if abs(diff) <= 2 * spread + resolution:
        word = "reproduced"
    else:
        word = "higher than printed" if diff > 0 else "lower than printed"
    # No parentheses: the verdict is often quoted inside parentheses itself.
    return word if profile == "full" else f"{word}, indicative: {profile} profile"


def compare(
    label: str,
    printed: float,
    printed_pm: float | None,
    values: list[float],
    profile: str,
    digits: int = 1,
    resolution: float = 0.05,
    not_run_reason: str | None = None,
) -> dict[str, str]:
    """One row of a 'printed vs reproduced' table: printed, reproduced mean +- sd (n), difference, verdict."""
    mean, sd, n = mean_sd(values)
    printed_text = f"{printed:.{digits}f}" + ("" if printed_pm is None else f" ± {printed_pm:.{digits}f}")
    if n == 0:
        return {
            "quantity": label,
            "printed": printed_text,
            "reproduced": "—",
            "difference": "—",
            "verdict": f"not run: {not_run_reason}" if not_run_reason else "not run",
        }
    reproduced = f"{mean:.{digits}f}" + ("" if n == 1 else f" ± {sd:.{digits}f}") + f" (n={n}, {profile})"
    return {
        "quantity": label,
        "printed": printed_text,
        "reproduced": reproduced,
        "difference": f"{mean - printed:+.{digits}f}",
        "verdict": verdict(printed, printed_pm, mean, sd, n, profile, resolution),
    }
