"""The reproduction report: every number the survey prints, held against what our runs produced.

The printed numbers come from ``reference-values.yaml``; each section has a *provider* that finds
the matching reproduced values in the results files of a profile (or says why there are none).
``python -m robustode report`` and the report chapter print the same rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from robustode.reference import reference_values, verdict
from robustode.results import mean_sd
from robustode.tables import Markdown, plain_text
from robustode.wording import key_label, not_run


@dataclass(frozen=True)
class Printed:
    """One number as the paper prints it: ``section`` of reference-values.yaml and its key path."""

    section: str
    key: tuple[str, ...]
    value: float
    pm: float | None = None
    digits: int = 1

    @property
    def label(self) -> str:
        """The key path as a reader writes it: "MNIST / Gaussian σ = 100 / ODENet"."""
        return " / ".join(key_label(k) for k in self.key)


@dataclass(frozen=True)
class Reproduced:
    """What the runs gave for one printed number: values (one per seed) or the reason there are none."""

    values: tuple[float, ...] = ()
    device: str = ""
    exact: bool = False  # counts: equal or not, no spread
    reason: str = ""  # a tables.Markdown reason keeps its link in the book


Provider = Callable[[Printed, Path], Reproduced]
_PROVIDERS: dict[str, Provider] = {}


def provider(section: str) -> Callable[[Provider], Provider]:
    def wrap(fn: Provider) -> Provider:
        _PROVIDERS[section] = fn
        return fn

    return wrap


def _digits(x: float) -> int:
    text = repr(float(x))
    return len(text.split(".")[1].rstrip("0")) if "." in text else 0


def printed_numbers() -> Iterator[Printed]:
    """Every printed number of reference-values.yaml, one entry each, in file order."""
    ref = reference_values()
    for dataset, rows in ref["table_1_robustness"].items():
        if dataset == "models":
            continue
        for perturbation, models in rows.items():
            for model, (value, pm) in models.items():
                yield Printed("table_1_robustness", (dataset, perturbation, model), value, pm)
    for attack, models in ref["authors_mnist_fgsm_runs"].items():
        for model, runs in models.items():
            for i, value in enumerate(runs, 1):
                yield Printed("authors_mnist_fgsm_runs", ("MNIST", attack, model, f"run {i}"), value)
    columns = ref["table_3_ode_attention"]["columns"]
    for model, datasets in ref["table_3_ode_attention"].items():
        if model == "columns":
            continue
        for dataset, values in datasets.items():
            for column, value in zip(columns, values, strict=True):
                yield Printed("table_3_ode_attention", (model, dataset, column), value, None, max(4, _digits(value)))
    for model, datasets in ref["table_4_parameters"].items():
        for dataset, count in datasets.items():
            yield Printed("table_4_parameters", (model, dataset), count, None, 0)
    for dataset, models in ref["anode_table_1"].items():
        for model, (value, pm) in models.items():
            yield Printed("anode_table_1", (dataset, model), value, pm)
    for dataset, configs in ref["anode_parameters"].items():
        for config, count in configs.items():
            yield Printed("anode_parameters", (dataset, config), count, None, 0)
    for dataset, models in ref["tisode_repo_parameters"].items():
        for model, count in models.items():
            yield Printed("tisode_repo_parameters", (dataset, model), count, None, 0)


def _load_providers() -> None:
    import robustode.report_providers  # noqa: F401  (importing registers the providers)


def row(printed: Printed, got: Reproduced, profile: str) -> dict:
    """One report row: printed, reproduced mean +- sd (n, profile, device), difference, verdict."""
    d = printed.digits
    printed_text = f"{printed.value:.{d}f}" + ("" if printed.pm is None else f" ± {printed.pm:.{d}f}")
    base = {"section": printed.section, "quantity": printed.label, "printed": printed_text}
    mean, sd, n = mean_sd(got.values)
    if n == 0:
        reason = not_run(got.reason or "no results")
        return {**base, "reproduced": "—", "difference": "—",
                "verdict": Markdown(reason) if isinstance(got.reason, Markdown) else reason}
    if got.exact:
        same = all(v == printed.value for v in got.values)
        return {**base, "reproduced": f"{got.values[0]:.0f}", "difference": f"{got.values[0] - printed.value:+.0f}",
                "verdict": "reproduced (exact)" if same else "differs"}
    spread = "" if n == 1 or math.isnan(sd) else f" ± {sd:.{d}f}"
    where = ", ".join(x for x in (f"n={n}", profile, got.device) if x)
    return {
        **base,
        "reproduced": f"{mean:.{d}f}{spread} ({where})",
        "difference": f"{mean - printed.value:+.{d}f}",
        "verdict": verdict(printed.value, printed.pm, mean, sd, n, profile, resolution=0.5 * 10 ** -d),
    }


def report_rows(results_dir: Path, profile: str) -> list[dict]:
    _load_providers()
    rows = []
    for printed in printed_numbers():
        fn = _PROVIDERS.get(printed.section)
        got = fn(printed, Path(results_dir)) if fn else Reproduced(reason="no experiment reproduces this section")
        rows.append(row(printed, got, profile))
    return rows


def render(rows: list[dict], fmt: str = "markdown") -> str:
    if fmt == "json":
        return json.dumps([{k: plain_text(v) if isinstance(v, Markdown) else v for k, v in r.items()} for r in rows], indent=1)
    from robustode.tables import markdown_table

    return markdown_table(rows)


__all__ = ["Printed", "Reproduced", "printed_numbers", "provider", "report_rows", "render", "row"]


def verdict_counts(rows: list[dict]) -> dict[str, int]:
    """How many printed numbers got each verdict (the quick-profile label folded away)."""
    counts: dict[str, int] = {}
    for r in rows:
        key = plain_text(r["verdict"]).split(", indicative")[0].split(":")[0]
        counts[key] = counts.get(key, 0) + 1
    return counts
