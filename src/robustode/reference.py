"""The paper's printed numbers (``reference-values.yaml``, copied from the survey and the sources it quotes), as data.

:func:`printed_numbers` lists every printed number as a :class:`Printed` (section, key path, value, +-);
:mod:`robustode.verdict` judges them against runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml


@cache
def reference_values() -> dict[str, Any]:
    return yaml.safe_load(resources.files("robustode").joinpath("reference-values.yaml").read_text())


@dataclass(frozen=True)
class Printed:
    """One number as printed: its ``section`` of reference-values.yaml, key path, value, the +- (a sample sd over
    ``runs`` runs) where one is printed, and the digits it is printed with."""

    section: str
    key: tuple[str, ...]
    value: float
    pm: float | None = None
    digits: int = 1
    runs: int = 3

    @property
    def label(self) -> str:
        """The key path as a reader writes it: "MNIST / Gaussian σ = 100 / ODENet" (not ``gaussian_sigma_100``)."""
        from robustode.wording import key_label

        return " / ".join(key_label(k) for k in self.key)


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
                yield Printed("authors_mnist_fgsm_runs", ("MNIST", attack, model, f"run {i}"), value, runs=1)
    columns = ref["table_3_ode_attention"]["columns"]
    for model, datasets in ref["table_3_ode_attention"].items():
        if model == "columns":
            continue
        for dataset, values in datasets.items():
            for column, value in zip(columns, values, strict=True):
                yield Printed("table_3_ode_attention", (model, dataset, column), value, None, max(4, _digits(value)), runs=1)
    for model, datasets in ref["table_4_parameters"].items():
        for dataset, count in datasets.items():
            yield Printed("table_4_parameters", (model, dataset), count, None, 0, runs=1)
    for dataset, models in ref["anode_table_1"].items():
        for model, (value, pm) in models.items():
            yield Printed("anode_table_1", (dataset, model), value, pm, runs=5)
    for dataset, configs in ref["anode_parameters"].items():
        for config, count in configs.items():
            yield Printed("anode_parameters", (dataset, config), count, None, 0, runs=1)
    for dataset, models in ref["tisode_repo_parameters"].items():
        for model, count in models.items():
            yield Printed("tisode_repo_parameters", (dataset, model), count, None, 0, runs=1)


def printed(section: str, *key: str) -> Printed:
    """The printed number at ``section`` / ``key`` (one clear error if there is none)."""
    for p in printed_numbers():
        if p.section == section and p.key == key:
            return p
    raise KeyError(f"no printed number {section} / {' / '.join(key)} in reference-values.yaml")
