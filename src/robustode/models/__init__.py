"""Models by chapter (``toy``, ``robust``, ``attention``, ``conv_anode``) and the names the book uses for them.

:mod:`robustode.models.catalog` is one literal table of every named model; :func:`build_model` checks the
name and the data set before anything is built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    name: str
    datasets: tuple[str, ...]
    build: Callable[[str], nn.Module]
    description: str


def registry() -> dict[str, ModelSpec]:
    """Every named model (:data:`robustode.models.catalog.REGISTRY`)."""
    from robustode.models.catalog import REGISTRY

    return dict(REGISTRY)


def build_model(name: str, dataset: str) -> nn.Module:
    specs = registry()
    if name not in specs:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(sorted(specs))}")
    spec = specs[name]
    if dataset not in spec.datasets:
        raise ValueError(f"model {name!r} has no variant for dataset {dataset!r}; choose one of {', '.join(spec.datasets)}")
    return spec.build(dataset)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters, as the papers count them."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
