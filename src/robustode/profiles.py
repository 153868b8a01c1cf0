"""Profiles are data: every size, epoch and repetition count lives in ``profiles/<name>.yaml``.

``quick`` is sized for a 2-core laptop (each notebook well under 3 minutes); ``full`` follows the
original papers' protocols and is meant for a GPU.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import torch
import yaml

PROFILES = ("quick", "paper-short", "full")
DEVICES = ("auto", "cpu", "cuda")


def check_choice(what: str, value: str, allowed: tuple[str, ...] | list[str]) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; choose one of: {', '.join(allowed)}")
    return value


def check_positive(**sizes: float) -> None:
    """Raise one error naming every non-positive size, before any work starts."""
    bad = {name: value for name, value in sizes.items() if not (isinstance(value, int | float) and value > 0)}
    if bad:
        listed = ", ".join(f"{name}={value!r}" for name, value in bad.items())
        raise ValueError(f"sizes must be positive numbers: {listed}")


def load_profile(name: str) -> dict[str, Any]:
    """The profile's settings, one section per experiment (``profile["topology"]["spheres"]``...)."""
    check_choice("profile", name, PROFILES)
    text = resources.files("robustode").joinpath("profiles", f"{name}.yaml").read_text()
    profile = yaml.safe_load(text)
    profile["name"] = name
    return profile


def experiment_config(profile: str | dict, experiment: str) -> dict[str, Any]:
    prof = load_profile(profile) if isinstance(profile, str) else profile
    sections = [k for k in prof if k != "name"]
    check_choice(f"experiment for profile {prof['name']!r}", experiment, sections)
    return dict(prof[experiment])


def resolve_device(device: str = "auto") -> torch.device:
    check_choice("device", device, DEVICES)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch.cuda.is_available() is False")
    return torch.device(device)
