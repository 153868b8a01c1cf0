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
    """A named model: the data sets it has variants for, ``build(dataset)``, a description, and whether its training
    adds TisODE's steady-state term (:class:`robustode.core.regularisers.SteadyStateRegulariser`); the models with the
    term hold a :class:`robustode.core.regularisers.SteadyState` block, and a test keeps the two in step."""

    name: str
    datasets: tuple[str, ...]
    build: Callable[[str], nn.Module]
    description: str
    steady_state: bool = False


def registry() -> dict[str, ModelSpec]:
    """Every named model (:data:`robustode.models.catalog.REGISTRY`)."""
    from robustode.models.catalog import REGISTRY

    return dict(REGISTRY)


def model_spec(name: str) -> ModelSpec:
    """The catalog's spec of ``name``; an unknown name is one error listing the known ones."""
    specs = registry()
    if name not in specs:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(sorted(specs))}")
    return specs[name]


def build_model(name: str, dataset: str) -> nn.Module:
    spec = model_spec(name)
    if dataset not in spec.datasets:
        raise ValueError(f"model {name!r} has no variant for dataset {dataset!r}; choose one of {', '.join(spec.datasets)}")
    return spec.build(dataset)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters, as the papers count them."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
