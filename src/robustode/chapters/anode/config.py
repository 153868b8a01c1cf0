"""Chapter 5 configuration: the profile's anode sections checked once, the variants per data set.
"""

from __future__ import annotations

from robustode.core.odeblock import check_method
from robustode.data.images import data_missing, is_available
from robustode.profiles import Settings, check_positive, experiment_config

TABLE_1_ROLES = ("NODE", "ANODE")


def _profile_name(profile: str | dict) -> str:
    return profile if isinstance(profile, str) else profile["name"]


def _config(profile: str | dict, part: str) -> Settings:
    section = experiment_config(profile, "anode")
    cfg = {**section["common"], **section[part]}
    sizes = ("epochs", "batch_size", "lr", "repetitions", "tol", "max_num_steps", "eval_batch",
             "repeats", "batch", "channels", "filters", "image_size", "cpu_threads")
    check_positive(**{k: cfg[k] for k in sizes if k in cfg and cfg[k] is not None})
    for key in ("train_size", "test_size"):
        if cfg.get(key) is not None:
            check_positive(**{key: cfg[key]})
    if "method" in cfg:
        check_method(cfg["method"])
    return Settings(cfg)


def experiment_name(dataset: str) -> str:
    return f"anode-{dataset}"


def missing_reason(dataset: str) -> str | None:
    """Why ``dataset``'s runs cannot be made here ("data missing (...)"), or None when it is on disk."""
    return None if is_available(dataset) else data_missing(dataset)


def _variants(cfg: dict, dataset: str) -> dict[str, dict]:
    variants = cfg["variants"].get(dataset)
    if not variants:
        raise ValueError(f"profile has no anode variants for {dataset!r}; it has: {', '.join(cfg['variants'])}")
    for name, variant in variants.items():
        check_positive(**{f"{name}.filters": variant["filters"]})
        if variant["augment_dim"] < 0:
            raise ValueError(f"{name}: augment_dim must be >= 0, got {variant['augment_dim']}")
    return variants


TRAIN_IMAGES = {"MNIST": 60_000, "CIFAR10": 50_000, "SVHN": 73_257, "FashionMNIST": 60_000}
TEST_IMAGES = {"MNIST": 10_000, "CIFAR10": 10_000, "SVHN": 26_032, "FashionMNIST": 10_000}
