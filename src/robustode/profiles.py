"""Profiles are data: every size, epoch and repetition count lives in ``profiles/<name>.yaml``.

``quick`` is sized for a 2-core laptop (each notebook well under 3 minutes; a pipeline check, not evidence);
``paper-short`` trains the paper's models on the full data with a shortened schedule, sized for the CPUs this
project always has; ``full`` follows the original papers' protocols (chapters 1 and 4 fit a CPU, chapters 2-3
and 5 want a GPU). Each profile's ``tier`` says what its numbers are worth against the printed ones.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
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
    """The profile's settings, one section per experiment (``profile["topology"]["spheres"]``...); a fresh copy."""
    check_choice("profile", name, PROFILES)
    return {**copy.deepcopy(_read(name)), "name": name}


@cache
def _read(name: str) -> dict[str, Any]:
    return yaml.safe_load(resources.files("robustode").joinpath("profiles", f"{name}.yaml").read_text())


class Settings(Mapping[str, Any]):
    """A profile section's settings once validated: read-only all the way down (nested sections are Settings,
    lists become tuples), readable as ``cfg["width"]`` or ``cfg.width``. What a chapter's ``config`` returns, so
    that no function can change what another one reads. :func:`plain` turns it back into dicts and lists (the
    run's identity is hashed from that: the same bytes as the profile's own values)."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any]):
        object.__setattr__(self, "_values", {k: _freeze(v) for k, v in values.items()})

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __getattr__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(f"no setting {key!r}; settings: {', '.join(self._values)}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("settings are read-only: build a new one ({**cfg, key: value})")

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Settings({plain(self)!r})"

    def __reduce__(self):  # picklable (cluster jobs carry settings)
        return Settings, (plain(self),)


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return value if isinstance(value, Settings) else Settings(value)
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def plain(value: Any) -> Any:
    """Settings (or any mappings and sequences in them) as plain dicts and lists."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


@dataclass(frozen=True)
class Tier:
    """What a profile's numbers are worth: ``rank`` orders the evidence (0 = strongest); ``comparable`` says whether
    they can be judged against the printed numbers at all (only the original protocols can); ``committed`` whether
    its results are committed with the book (the quick profile's live only on the machine that made them)."""

    profile: str
    rank: int
    comparable: bool
    label: str
    committed: bool = True


def tier(profile: str) -> Tier:
    """The tier of a profile, from its ``tier`` entry."""
    entry = load_profile(profile)["tier"]
    return Tier(profile, int(entry["rank"]), bool(entry["comparable"]), str(entry["label"]),
                bool(entry.get("committed", True)))


def tiers() -> list[Tier]:
    """Every profile's tier, strongest evidence first."""
    return sorted((tier(name) for name in PROFILES), key=lambda t: t.rank)


def evidence_tiers(build: str | None = None) -> list[Tier]:
    """The tiers whose results a build of profile ``build`` shows, strongest first: every tier whose results are
    committed, and ``build``'s own. A full render on a machine that has also run the quick book must not pick up
    those machine-local quick results. ``None``: every tier (the command line, reading this machine's results)."""
    return [t for t in tiers() if build is None or t.committed or t.profile == build]


def experiment_config(profile: str | dict, experiment: str) -> dict[str, Any]:
    prof = load_profile(profile) if isinstance(profile, str) else profile
    sections = [k for k in prof if k not in ("name", "tier")]
    check_choice(f"experiment for profile {prof['name']!r}", experiment, sections)
    return dict(prof[experiment])


def resolve_device(device: str = "auto") -> torch.device:
    check_choice("device", device, DEVICES)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch.cuda.is_available() is False")
    return torch.device(device)
