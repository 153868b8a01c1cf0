"""Run units: what a chapter hands to the run plan (:mod:`robustode.plan`) for each of its runs.

A chapter module builds :class:`Unit` objects (one results file each) with a ``compute`` that takes a
:class:`Context` and a ``status`` that reads the store; the plan orders, measures and runs them. This
module is below both, so chapters never import the runner.
"""

from __future__ import annotations

import fnmatch
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from robustode.core.budget import Deadline
from robustode.results import now
from robustode.store import Store

DONE, PARTIAL, PENDING, BLOCKED = "done", "partial", "pending", "blocked"
WAITING = "waiting"  # runnable here, once another unit of the plan is done (a read-out waits for its model)


@dataclass
class Progress:
    """Where a unit stands: ``state`` (done / partial / pending / waiting / blocked), a detail for people, and how much
    work is left as fractions of its training (``epochs_left`` of ``epochs``) and evaluation (``stages_left``)."""

    state: str
    detail: str = ""
    epochs_left: int = 0
    stages_left: list[str] = field(default_factory=list)


@dataclass
class Context:
    """What a unit's ``compute`` gets: where to store, on which device, the deadline with the cost estimates
    to check it against, and a progress hook."""

    store: Store
    device: torch.device
    deadline: Deadline
    progress: bool = True
    on_epoch: Callable[[dict], None] | None = None
    epoch_estimate: float = 0.0  # seconds, for the deadline check before an epoch this run has not timed yet
    stage_estimate: Callable[[str], float] = lambda stage: 0.0  # seconds per evaluation stage, likewise
    cache: dict = field(default_factory=dict)  # data the units of one call share (tensors of a data set)
    # a runner's first pass: an evaluation stops (FirstPassDone) once these stages are done; () = run every stage
    first_stages: tuple[str, ...] = ()

    def shared(self, key: tuple, load: Callable[[], object]) -> object:
        """``load()`` once per ``key`` for all units run with this context (one data set in memory at a time)."""
        if key not in self.cache:
            self.cache.clear()
            self.cache[key] = load()
        return self.cache[key]


@dataclass
class Unit:
    """One run of a profile. ``compute(ctx)`` returns the run's metrics (or raises
    :class:`~robustode.core.budget.OutOfBudget` at a clean boundary); ``status(store)`` is its :class:`Progress`;
    ``kind`` groups units with the same per-epoch and per-stage costs (the same model on the same data);
    ``probe()`` times that kind here and returns ``{"epoch_s": ..., "stages_s": {stage: ...}}``."""

    id: str
    experiment: str
    run: str
    params: dict
    seed: int | None
    epochs: int
    stages: list[str]
    kind: str
    compute: Callable[[Context], dict]
    status: Callable[[Store], Progress]
    probe: Callable[[], dict]
    requires: Callable[[], str] = lambda: ""  # why the unit cannot run here ("" when it can)
    priority: int = 0
    # seconds of compute the store records for this unit so far (its results file, or its checkpoint, model file and
    # partial evaluation while it is under way); ``None`` when nothing is recorded
    spent: Callable[[Store], float | None] = lambda store: None
    # ``price(measured)``: the stage estimates (``{stage: seconds}``) recomputed from a probe's per-image figures with
    # this unit's own settings, which may differ from those the probe ran with; it returns ``None`` for a probe that
    # lacks those figures (one stored before they were kept). ``price`` itself ``None``, or returning ``None``: the
    # probe's ``stages_s`` as stored
    price: Callable[[dict], dict[str, float] | None] | None = None

    def matches(self, pattern: str) -> bool:
        """Whether the id matches a shell pattern, or contains ``pattern``."""
        return fnmatch.fnmatchcase(self.id, pattern) or fnmatch.fnmatchcase(self.id, f"*{pattern}*")


class FinishedElsewhere(RuntimeError):
    """:func:`run_unit` found, once it held the unit's lock, that the results file was already written: another
    runner finished the unit after this one chose it. ``stored`` is that file's run."""

    def __init__(self, unit_id: str, stored: dict):
        super().__init__(f"{unit_id} was finished by another runner after this one chose it; nothing computed")
        self.stored = stored


def ensure(unit: Unit, ctx: Context, resume: bool = True, compute: bool = True) -> dict | None:
    """The unit's stored results (when ``resume`` and stored with the same parameters), else :func:`run_unit`;
    with ``compute=False`` nothing is computed and a unit without results gives ``None``."""
    if resume and (stored := ctx.store.run(unit.experiment, unit.run, unit.params)) is not None:
        return stored
    if not compute:
        return None
    try:
        return run_unit(unit, ctx, overwrite=not resume)
    except FinishedElsewhere as finished:
        return finished.stored


def run_once(store: Store, experiment: str, run: str, *, params: dict, seed: int | None, device: torch.device | str,
             resume: bool, compute: Callable[[], dict]) -> dict:
    """For measurements too short to be plan units (seconds): the stored run when ``resume`` finds one with the
    same parameters, else ``compute()`` written as its results file."""
    if resume and (stored := store.run(experiment, run, params)) is not None:
        return stored
    started = now()
    return store.write(experiment, run, params=params, seed=seed, started=started, device=device, metrics=compute())


def run_unit(unit: Unit, ctx: Context, overwrite: bool = False) -> dict:
    """Compute ``unit`` under its lock and write its results file (the store drops its partial evaluation).

    A runner chooses its units before it takes their locks, so another may finish one in between; holding the lock,
    this checks again and raises :class:`FinishedElsewhere` rather than compute the unit a second time (and leave a
    stale partial evaluation behind when the budget stops it), unless ``overwrite`` asks to compute it anew."""
    with ctx.store.lock(unit.experiment, unit.run):
        if not overwrite and (stored := ctx.store.run(unit.experiment, unit.run, unit.params)) is not None:
            raise FinishedElsewhere(unit.id, stored)
        started = now()
        metrics = unit.compute(ctx)
        stored = ctx.store.write(unit.experiment, unit.run, params=unit.params, seed=unit.seed, started=started,
                                 device=ctx.device, metrics=metrics)
        ctx.store.drop_partial(unit.experiment, unit.run, unit.params)
        return stored


def standing(unit: Unit, store: Store) -> Progress:
    """Where ``unit`` stands on this machine: done wherever it ran (its results are in ``store``), else blocked
    when this machine cannot run it (with the reason), else its own status."""
    progress = unit.status(store)
    if progress.state != DONE and (why := unit.requires()):
        return Progress(BLOCKED, why)
    return progress


def all_left(unit: Unit) -> Progress:
    """``unit`` with all of its work left (a unit priced as if it had not started: waiting, or run elsewhere)."""
    return Progress(PENDING, "", unit.epochs, list(unit.stages))


def recorded_seconds(*records: dict | None) -> float | None:
    """Seconds of compute written down in ``records``: results-file metrics, model-file or checkpoint payloads
    (``history.epochs[*].seconds``, ``seconds`` per evaluation stage) and partial evaluations (each finished
    stage's ``seconds``; each stored piece's of a stage under way). ``None`` when none of them records any."""
    total, found = 0.0, False
    for record in records:
        if not record:
            continue
        history = record.get("history") or {}
        for epoch in history.get("epochs", []) if isinstance(history, dict) else []:
            total, found = total + float(epoch.get("seconds", 0.0)), True
        if isinstance(record.get("seconds"), dict):  # a results file's evaluation stages
            total, found = total + sum(float(s) for s in record["seconds"].values()), True
        for key, value in record.items():  # a partial evaluation: {stage: {"seconds"}, "<stage> (pieces)": {...}}
            if key.endswith(" (pieces)") and isinstance(value, dict):
                total += sum(float(piece.get("seconds", 0.0)) for piece in value.values())
                found = found or bool(value)
            elif isinstance(value, dict) and isinstance(value.get("seconds"), (int, float)) and "metrics" in value:
                total, found = total + float(value["seconds"]), True
    return total if found else None


def stored_seconds(store: Store, experiment: str, run: str, params: dict) -> float | None:
    """:func:`recorded_seconds` of a finished unit's results file (``None`` when it has none)."""
    stored = store.run(experiment, run, params)
    return recorded_seconds(stored["metrics"]) if stored is not None else None


def checkpoint_payload(path: Path) -> dict | None:
    """A training checkpoint's payload (``weights_only=True``), or ``None`` when there is none."""
    return torch.load(path, map_location="cpu", weights_only=True) if path.exists() else None


def checkpoint_epoch(path: Path) -> int | None:
    """The epoch a training checkpoint reached (plain loop or engine), or ``None`` when there is none."""
    if not path.exists():
        return None
    return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])


def time_steps(step: Callable[[], None], repeats: int = 2) -> float:
    """Seconds per call of ``step`` after one warm-up call (the median of ``repeats``)."""
    step()
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        step()
        times.append(time.perf_counter() - tic)
    return sorted(times)[len(times) // 2] if times else math.nan
