"""Experiments: plain functions that take a profile's config and write one results file per run.

Notebooks and the command line call the same functions; :func:`run_once` is the shared step that
reuses a stored run with identical parameters (when resuming) or runs it and writes its file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from robustode.results import load_run, now, write_result


def run_once(
    results_dir: Path,
    experiment: str,
    run: str,
    *,
    params: dict,
    seed: int | None,
    profile: str,
    device: torch.device | str,
    resume: bool,
    compute: Callable[[], dict],
) -> dict:
    """Return the stored run's payload, or compute the metrics, write the results file and return it."""
    if resume and (stored := load_run(results_dir, experiment, run, params)) is not None:
        return stored
    started = now()
    metrics = compute()
    path = write_result(
        results_dir, experiment, run, profile=profile, params=params, seed=seed, started=started,
        device=device, metrics=metrics,
    )
    return load_run(path.parent.parent, experiment, run)
