"""Chapter 4 configuration: the profile's attention section checked once, model names, mixed-precision choice,
the parameters that identify a Table III run.
"""

from __future__ import annotations

import torch

from robustode.data.images import data_missing, is_available
from robustode.models.attention import DATASETS
from robustode.profiles import Settings, check_choice, check_positive, experiment_config

CONTROLS = {
    "ClassicAttention-32": ("ODEAttention", "ClassicAttention"),
    "ClassicAttention-conv": ("ClassicAttention",),
    "ODEAttention-conv": ("ODEAttention",),
}
"""Controls (issue 13) and the models each is compared with: Classic Attention at ODE Attention's hidden size 32
(parameter efficiency at equal width: beside ODE Attention, and beside Classic at its Table IV width 128); each
model with the position-aware Conv1d score, the other layout that fits all eight Table IV counts."""


MODELS = ("ClassicAttention", "ODEAttention", "ClassicAttention-PE", "ODEAttention-PE", "ClassicAttention-QKV",
          "ODEAttention-QKV", "SoftmaxRegression", *CONTROLS)


PAPER_NAMES = {"ODEAttention": "Neural ODE Attention", "ClassicAttention": "Classic Attention"}


AMP = ("auto", "off", "fp16", "bf16")


METRICS = ("test_loss", "accuracy", "precision", "recall", "f1")


def _profile_name(profile: str | dict) -> str:
    return profile if isinstance(profile, str) else profile["name"]


def config(profile: str | dict) -> Settings:
    """The profile's ``attention`` section, checked before any work starts."""
    cfg = experiment_config(profile, "attention")
    check_positive(**{k: cfg[k] for k in ("val_size", "epochs", "batch_size", "lr", "tol", "max_num_steps", "examples")},
                   **{f"runs[{i}].repetitions": group["repetitions"] for i, group in enumerate(cfg["runs"])},
                   **{f"timing.{k}": v for k, v in cfg["timing"].items() if k != "fresh_process"},
                   **{k: cfg[k] for k in ("train_size", "test_size") if cfg[k] is not None})
    for group in cfg["runs"]:
        for name in group["models"]:
            check_choice("attention model", name, MODELS)
        for name in group["datasets"]:
            check_choice("dataset", name, DATASETS)
    check_choice("amp setting", cfg["amp"], AMP)
    check_positive(**{f"precision_check.{k}": v for k, v in cfg["precision_check"].items() if k != "tolerances"},
                   **{f"precision_check.tolerance{i}": t for i, t in enumerate(cfg["precision_check"]["tolerances"])})
    if not 0.0 <= cfg["dropout"] < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {cfg['dropout']}")
    if list(cfg["times"]) != sorted(set(cfg["times"])) or cfg["times"][0] <= 0:
        raise ValueError(f"times must be positive and strictly increasing, got {cfg['times']}")
    return Settings(cfg)


def autocast_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """Mixed precision (Sec. 7.3.1) on CUDA only: bf16 where the GPU has it (no loss scaling needed), else fp16."""
    if setting == "off" or device.type != "cuda":
        return None
    if setting == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp16": torch.float16, "bf16": torch.bfloat16}[setting]


def table3_params(name: str, dataset: str, cfg: dict, device_type: str) -> dict:
    """A Table III run's parameters: the profile's settings (not the run list), the model and data set, and the
    device type (mixed precision runs only on CUDA)."""
    return {**{k: v for k, v in cfg.items() if k != "runs"}, "model": name, "dataset": dataset, "device_type": device_type}


def missing_reason(dataset: str) -> str:
    """``""`` when the data set is on disk, else "data missing (...)"."""
    return "" if is_available(dataset) else data_missing(dataset)


TRAIN_IMAGES = {"MNIST": 60_000, "FashionMNIST": 60_000, "CIFAR10": 50_000, "CIFAR100": 50_000}
