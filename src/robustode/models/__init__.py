"""Models by chapter, and one registry that names them (used by ``python -m robustode params``).

Each chapter's module registers builders with :func:`register`; a builder takes a dataset name
and returns an ``nn.Module``. Names and datasets are checked before anything is built.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

# Modules whose import registers models; a chapter adds its module here.
MODEL_MODULES = ("robustode.models.toy", "robustode.models.conv_anode", "robustode.models.robust", "robustode.models.attention")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    datasets: tuple[str, ...]
    build: Callable[[str], nn.Module]
    description: str


_REGISTRY: dict[str, ModelSpec] = {}


def register(name: str, datasets: tuple[str, ...], description: str):
    """Decorator: ``@register("ODENet", ("MNIST",), "...")`` above ``def build(dataset) -> nn.Module``."""

    def wrap(build: Callable[[str], nn.Module]) -> Callable[[str], nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelSpec(name, datasets, build, description)
        return build

    return wrap


def register_builder(name: str, datasets: tuple[str, ...], description: str, build: Callable[..., nn.Module],
                     *args, **kwargs) -> None:
    """Functional form of :func:`register`: ``name`` builds ``build(*args, dataset, **kwargs)``."""
    register(name, datasets, description)(lambda dataset: build(*args, dataset, **kwargs))


def registry() -> dict[str, ModelSpec]:
    for module in MODEL_MODULES:
        importlib.import_module(module)
    return dict(_REGISTRY)


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
