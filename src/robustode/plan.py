"""The run plan: a profile as a list of resumable run units, and a runner that advances them within a budget.

A **unit** is one run that writes one results file (chapter x data set x model x seed, or one measurement),
checkpointed per epoch and, where its evaluation is long, per evaluation stage. :func:`units` collects a
profile's units from the chapters; :func:`plan_rows` says for each whether it is done, partial (epoch k of
n, or stage k of n) or pending, what it is estimated to cost on this machine, and in which order it runs;
:func:`advance` runs pending units in that order until a budget is spent, stopping only at an epoch or
stage boundary, so a killed or stopped run loses at most the epoch it was in.

Costs are measured, not assumed: the first time a profile's plan needs the cost of a kind of unit it times
a few training steps of that model here (:func:`measure`) and keeps the figure in
``results/<profile>/costs.json``; once a unit of the same kind has run, its recorded epoch and evaluation
times replace the probe.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from robustode.core.budget import Deadline, FirstPassDone, OutOfBudget
from robustode.profiles import load_profile
from robustode.results import config_key, device_name, now, write_json_atomic
from robustode.store import RunLocked, Store
from robustode.units import (  # noqa: F401  (re-exported: the plan's vocabulary)
    BLOCKED,
    DONE,
    PARTIAL,
    PENDING,
    WAITING,
    Context,
    FinishedElsewhere,
    Progress,
    Unit,
    all_left,
    checkpoint_epoch,
    ensure,
    recorded_seconds,
    run_unit,
    standing,
    stored_seconds,
    time_steps,
)
from robustode.wording import fmt_seconds  # noqa: F401  (re-exported: the plan's durations)

# ---------------------------------------------------------------------------------------------- the plan

def profile_name(profile: str | dict) -> str:
    return profile if isinstance(profile, str) else profile["name"]


def units(profile: str | dict, device: torch.device | str = "auto") -> list[Unit]:
    """Every unit of ``profile`` (a name, or a loaded profile) for runs on ``device``, in the order the runner
    takes them (priority, then as the chapters list them)."""
    from robustode.chapters import anode, attention, robustness, topology
    from robustode.profiles import resolve_device

    settings = load_profile(profile) if isinstance(profile, str) else profile
    dev = resolve_device(device) if isinstance(device, str) else device
    found: list[tuple[int, Unit]] = []
    # chapters from the cheapest runs to the dearest, so a CPU advances the ones it can finish first; the authors'
    # own checkpoints (chapter 2's evidence for Table I, a profile's ``authors`` section) after chapters 2-3's runs
    # and chapter 3's read-outs of trained ODE models (ours, then the authors') after both
    sources = (("topology", topology.run.units), ("attention", attention.run.units),
               ("robustness", robustness.run.units), ("authors", robustness.authors.units),
               ("robustness", robustness.readout.units), ("authors", robustness.readout.authors_units),
               ("anode", anode.run.units))
    for rank, (section, chapter_units) in enumerate(sources):
        if section in settings:
            found += [(rank, u) for u in chapter_units(profile, dev)]
    ids = [u.id for _, u in found]
    if len(ids) != len(set(ids)):
        raise AssertionError(f"duplicate unit ids in profile {profile_name(profile)!r}")
    return [u for _, u in sorted(found, key=lambda pair: (pair[0], pair[1].priority))]


def select(all_units: list[Unit], only: list[str] | None) -> list[Unit]:
    """The units matching any of ``only`` (shell patterns or substrings of the id); an empty match is an error."""
    if not only:
        return all_units
    chosen = [u for u in all_units if any(u.matches(p) for p in only)]
    if not chosen:
        raise ValueError(f"no unit matches {', '.join(repr(p) for p in only)}; "
                         f"`robustode plan` lists the ids (e.g. {all_units[0].id if all_units else 'none'})")
    return chosen


# ---------------------------------------------------------------------------------------------- costs

def _costs_path(store: Store) -> Path:
    return store.root / "costs.json"


def load_costs(store: Store) -> dict:
    path = _costs_path(store)
    return json.loads(path.read_text()) if path.exists() else {}


def measure(store: Store, chosen: list[Unit], device: torch.device, force: bool = False) -> dict:
    """Probe every kind of unit among ``chosen`` that has no measured cost yet (or all, with ``force``) and
    keep the figures in ``results/<profile>/costs.json``, under the device they were measured on."""
    costs = load_costs(store)
    where = device.type
    todo = {u.kind: u for u in chosen if not u.requires() and (force or u.kind not in costs.get(where, {}))}
    if not todo:
        return costs
    section = costs.setdefault(where, {})
    for kind, unit in todo.items():
        print(f"[plan] measuring {kind} on {device_name(device)} ...", file=sys.stderr, flush=True)
        tic, cpu_tic = time.perf_counter(), time.thread_time()
        figures = unit.probe()
        wall = time.perf_counter() - tic
        # the share of the probe's wall time its (calling) thread had a core, which it keeps while it computes or
        # waits for the other intra-op threads: well under 1 only when other work took the cores
        share = (time.thread_time() - cpu_tic) / wall if wall > 0 else 1.0
        section[kind] = {**figures, "probe_seconds": round(wall, 1), "measured": now(),
                         "device": device_name(device), "machine": platform.node(),
                         "load_average": round(os.getloadavg()[0], 2), "cpu_share": round(share, 2)}
        write_json_atomic(_costs_path(store), costs)
    return costs


def observed(store: Store, unit: Unit, runs: Callable[[str], list[dict]] | None = None) -> dict:
    """Epoch and stage times recorded by finished units of the same kind (other seeds), if any. ``runs``: the store's
    results files of an experiment, read once for many units (:func:`read_once`); every unit reading every file of
    its experiment again made ``plan --profile full`` take half a minute."""
    epoch_s, stages_s = [], {}
    same = ("model", "dataset", "width", "filters", "augment_dim")  # other seeds of one kind share these
    if unit.params.get("model") is None:  # a one-off measurement (anode/memory/...) has no other seeds
        return {}
    for run in (runs or store.runs)(unit.experiment):
        if run["run"] == unit.run or any(run["params"].get(k) != unit.params.get(k) for k in same):
            continue
        history = run["metrics"].get("history") or {}
        # the last epoch: for TisODE the steady-state term makes later epochs the dearer ones
        if history.get("epochs"):
            epoch_s.append(history["epochs"][-1]["seconds"])
        stage_seconds = run["metrics"].get("seconds")
        for stage, seconds in (stage_seconds if isinstance(stage_seconds, dict) else {}).items():
            stages_s.setdefault(stage, []).append(seconds)
    out: dict = {}
    if epoch_s:
        out["epoch_s"] = max(epoch_s)
    if stages_s:
        out["stages_s"] = {k: max(v) for k, v in stages_s.items()}
    return out


def read_once(store: Store) -> Callable[[str], list[dict]]:
    """``store.runs`` memoised: each experiment's results files are read once for as long as the returned function is
    kept (one plan table, one ETA, made in seconds while runs finish hours apart); :func:`observed` only reads them."""
    return functools.cache(store.runs)


def spent_seconds(store: Store, unit: Unit) -> float | None:
    """Seconds of compute the store records for ``unit`` so far, on whatever device ran it: its chapter's account
    (results file, or training checkpoint / model file and partial evaluation), else its results file or partial
    evaluation; ``None`` when nothing is recorded (a unit not started, or one whose records keep no times)."""
    own = unit.spent(store)
    if own is not None:
        return own
    done = stored_seconds(store, unit.experiment, unit.run, unit.params)
    return done if done is not None else recorded_seconds(store.load_partial(unit.experiment, unit.run, unit.params))


def probed_stages(unit: Unit, measured: dict) -> dict[str, float]:
    """A probe's stage estimates for ``unit``: re-priced from its per-image figures with the unit's own settings
    where the unit can (:attr:`Unit.price`; a probe is stored per kind and keeps its figures when settings change),
    else the ``stages_s`` stored with it; ``{}`` when the kind was never probed."""
    if not measured:
        return {}
    priced = unit.price(measured) if unit.price is not None else None
    return priced if priced is not None else measured.get("stages_s", {})


def remaining_seconds(unit: Unit, progress: Progress, costs: dict, seen: dict,
                      calibration: dict[str, float] | None = None) -> float | None:
    """Estimated seconds to finish ``unit`` on the device ``costs`` describe; ``None`` when never measured. A stage
    that no other seed of the unit's kind has timed is priced by the probe, times its ``calibration`` factor where
    one is given (:func:`stage_calibration`)."""
    if progress.state == DONE:
        return 0.0
    measured = {**costs.get(unit.kind, {}), **{k: v for k, v in seen.items() if v}}
    if "epoch_s" not in measured:
        return None
    probed = {stage: seconds * (calibration or {}).get(stage, 1.0)
              for stage, seconds in probed_stages(unit, costs.get(unit.kind, {})).items()}
    stages = {**probed, **seen.get("stages_s", {})}
    return progress.epochs_left * measured["epoch_s"] + sum(stages.get(s, 0.0) for s in progress.stages_left)


def stage_calibration(store: Store, chosen: list[Unit], costs: dict, device_type: str = "cpu",
                      runs: Callable[[str], list[dict]] | None = None) -> dict[str, float]:
    """Per evaluation stage, the seconds the finished units of ``chosen`` recorded on ``device_type`` over what the
    probes of their kinds price that stage at (``costs``: that device's probes), summed over the units. A probe
    prices an attack from gradient times and printed robust fractions, and may have run on a busy machine; what the
    attacks' early exits and the machine actually gave is this ratio (on this CPU the finished strong stages took a
    fraction of their price). Stages no finished unit has are left out (factor 1)."""
    actual: dict[str, float] = {}
    priced: dict[str, float] = {}
    for unit in chosen:
        # the unit's own results file, as its status finds it: this run, written with the unit's parameters
        run = next((r for r in (runs or store.runs)(unit.experiment)
                    if r.get("run") == unit.run and config_key(r.get("params", {})) == config_key(unit.params)), None)
        if run is None or not str(run.get("provenance", {}).get("device", "")).startswith(device_type):
            continue
        seconds = run["metrics"].get("seconds") if isinstance(run.get("metrics"), dict) else None
        probe = probed_stages(unit, costs.get(unit.kind, {}))
        for stage, spent in (seconds if isinstance(seconds, dict) else {}).items():
            if probe.get(stage):
                actual[stage] = actual.get(stage, 0.0) + spent
                priced[stage] = priced.get(stage, 0.0) + probe[stage]
    return {stage: actual[stage] / priced[stage] for stage in actual}


def stage_estimator(store: Store, unit: Unit, device: torch.device) -> Callable[[str], float]:
    """``estimate(stage)`` in seconds for the runner's deadline checks (observed times first, then the probe)."""
    probe = probed_stages(unit, load_costs(store).get(device.type, {}).get(unit.kind, {}))
    seen = observed(store, unit).get("stages_s", {})
    return lambda stage: seen.get(stage, probe.get(stage, 0.0))


def epoch_estimate(store: Store, unit: Unit, device: torch.device) -> float:
    seen = observed(store, unit).get("epoch_s")
    return seen if seen is not None else load_costs(store).get(device.type, {}).get(unit.kind, {}).get("epoch_s", 0.0)


# ---------------------------------------------------------------------------------------------- showing it

CHAPTER_NAMES = {"topology": "1 topology", "robustness": "2-3 robustness, TisODE",
                 "authors": "2 the authors' MNIST checkpoints",
                 "authors-randomised": "3 the authors' checkpoints, randomised",
                 "readout": "3 read-out time", "authors-readout": "3 the authors' checkpoints, read-out time",
                 "attention": "4 attention", "anode": "5 ANODE"}


def chapter_name(prefix: str) -> str:
    """A chapter's name for people, from the first part of a unit's id (``robustness/MNIST/...``)."""
    return CHAPTER_NAMES.get(prefix, prefix)


def plan_rows(profile: str | dict, only: list[str] | None = None, store: Store | None = None,
              device: torch.device | str = "auto") -> list[dict]:
    """One row per unit: order, id, state and detail, the compute its records account for so far (``spent``:
    training epochs and evaluation stages, on the device that ran them), estimated time left on this machine's CPU
    and on a GPU (from ``costs.json``; "not measured" where no probe or run has timed that kind of unit there)."""
    store = store or Store(profile_name(profile))
    all_costs = load_costs(store)
    runs = read_once(store)
    rows = []
    every = units(profile, device)
    calibration = stage_calibration(store, every, all_costs.get("cpu", {}), "cpu", runs)
    for order, unit in enumerate(select(every, only), start=1):
        progress = standing(unit, store)
        seen = observed(store, unit, runs)
        # a waiting unit has all of its work left: priced as pending
        left = all_left(unit) if progress.state == WAITING else progress
        cpu = remaining_seconds(unit, left, all_costs.get("cpu", {}), seen, calibration)
        gpu = remaining_seconds(unit, left, all_costs.get("cuda", {}), {})
        spent = None if progress.state in (BLOCKED, WAITING) else spent_seconds(store, unit)
        probe = all_costs.get("cpu", {}).get(unit.kind, {})
        busy = progress.state not in (DONE, BLOCKED) and busy_probe(probe)
        rows.append({"order": order, "unit": unit.id, "state": progress.state, "detail": progress.detail,
                     "spent": "—" if spent is None else fmt_seconds(spent),
                     "CPU left": "—" if progress.state in (DONE, BLOCKED) else fmt_seconds(cpu),
                     "GPU left": "—" if progress.state in (DONE, BLOCKED) else fmt_seconds(gpu),
                     "_cpu_s": cpu if progress.state not in (DONE, BLOCKED) else 0.0, "_spent_s": spent or 0.0,
                     "_busy_probe": unit.kind if busy else None, "_calibration": calibration})
    return rows


BUSY_SHARE = 0.75  # a probe that had a core less of the time than this was slowed by other work


def busy_probe(measured: dict) -> bool:
    """Whether a CPU probe was slowed by other work: its thread had a core under :data:`BUSY_SHARE` of the time
    (``cpu_share``; probes recorded before it was kept: the load average was above the core count). Its figures
    can then be several times too high (one here priced a 39-minute run at 22 hours)."""
    if "cpu_share" in measured:
        return measured["cpu_share"] < BUSY_SHARE
    load = measured.get("load_average")
    return load is not None and load > (os.cpu_count() or 1)


def collapse_blocked(rows: list[dict]) -> list[dict]:
    """The display rows: the runnable units in plan order, then one line per chapter / data set and reason for
    the blocked ones (a data set that is missing is said once, not once per unit)."""
    shown = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows if r["state"] != BLOCKED]
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        if row["state"] == BLOCKED:
            groups.setdefault(("/".join(row["unit"].split("/")[:2]), row["detail"]), []).append(row)
    for (prefix, why), members in groups.items():
        shown.append({"order": "—", "unit": f"{prefix}/* ({len(members)} units)", "state": BLOCKED, "detail": why,
                      "spent": "—", "CPU left": "—", "GPU left": "—"})
    return shown


def chapter_account(rows: list[dict]) -> list[dict]:
    """Per chapter, from :func:`plan_rows`: how many units are done, partial, pending, waiting for another unit and
    blocked here, the compute
    their records account for so far, and the CPU time the plan expects for the rest on this machine (units of a
    kind never timed here are counted apart, not guessed)."""
    table: dict[str, dict] = {}
    for row in rows:
        prefix = row["unit"].split("/")[0]
        acc = table.setdefault(prefix, {"chapter": chapter_name(prefix), "units": 0, DONE: 0, PARTIAL: 0, PENDING: 0,
                                        WAITING: 0, BLOCKED: 0, "_spent": 0.0, "_left": 0.0, "_unknown": 0})
        acc["units"] += 1
        acc[row["state"]] += 1
        acc["_spent"] += row.get("_spent_s") or 0.0
        if row["_cpu_s"] is None:
            acc["_unknown"] += 1
        else:
            acc["_left"] += row["_cpu_s"]
    out = []
    for acc in table.values():
        runnable_left = acc[PARTIAL] + acc[PENDING] + acc[WAITING]
        left = "—" if not runnable_left else "not measured" if acc["_unknown"] == runnable_left else (
            fmt_seconds(acc["_left"]) + (f" (+ {acc['_unknown']} units not measured)" if acc["_unknown"] else ""))
        out.append({"chapter": acc["chapter"], "units": acc["units"], "done": acc[DONE], "partial": acc[PARTIAL],
                    "pending": acc[PENDING], "waiting": acc[WAITING], "blocked here": acc[BLOCKED],
                    "compute recorded": fmt_seconds(acc["_spent"]) if acc["_spent"] else "—",
                    "CPU time left here": left})
    return out


def plan_summary(rows: list[dict]) -> str:
    counts = {s: sum(r["state"] == s for r in rows) for s in (DONE, PARTIAL, PENDING, WAITING, BLOCKED)}
    unknown = sum(r["_cpu_s"] is None for r in rows)
    left = sum(r["_cpu_s"] or 0.0 for r in rows)
    spent = sum(r.get("_spent_s", 0.0) for r in rows)
    waiting = f"{counts[WAITING]} waiting for another unit, " if counts[WAITING] else ""
    text = (f"{len(rows)} units: {counts[DONE]} done, {counts[PARTIAL]} partial, {counts[PENDING]} pending, {waiting}"
            f"{counts[BLOCKED]} blocked; {fmt_seconds(spent)} of compute recorded so far, "
            f"about {fmt_seconds(left)} of CPU time left here")
    text += f" (+ {unknown} units not measured yet)" if unknown else ""
    calibration = rows[0].get("_calibration") if rows else None
    if calibration:
        text += (". Evaluation stages no seed of their model has run yet are priced by the probe times what the "
                 "finished units' stages took here over their price: " +
                 ", ".join(f"{stage} × {factor:.2f}" for stage, factor in sorted(calibration.items())))
    busy = sorted({r["_busy_probe"] for r in rows if r.get("_busy_probe")})
    if busy:
        text += (f". {len(busy)} kind{'s' * (len(busy) != 1)} of unit still priced by a probe taken on a busy machine "
                 f"(it had a core under 3/4 of the time), which can be several times too high: {', '.join(busy)}; "
                 "`robustode plan --measure --only PATTERN` on a quiet machine measures again")
    return text


# ---------------------------------------------------------------------------------------------- running it

@dataclass
class Outcome:
    """What :func:`advance` did: units finished, units stopped by the budget, units skipped (locked / blocked)."""

    finished: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    remaining: int = 0

    @property
    def all_done(self) -> bool:
        return self.remaining == 0


def advance(profile: str | dict, budget: float | None = None, only: list[str] | None = None, device: str = "cpu",
            progress: bool = True, store: Store | None = None, threads: int | None = None,
            log: Callable[[str], None] | None = None, first_stages: tuple[str, ...] = ()) -> Outcome:
    """Run the pending units of ``profile`` (those matching ``only``) in plan order until ``budget`` seconds are
    spent. A unit starts an epoch or an evaluation stage only if it is expected to finish before the deadline;
    one that does not fit is left for the next call and smaller units after it may still run.

    ``first_stages`` (e.g. Table I's ``("noise", "faithful")``): a first pass takes every unit only as far as
    those evaluation stages (training included), so the cheap numbers of every unit come before the long
    attacks of any; a second pass then runs the rest in plan order."""
    from robustode.profiles import resolve_device

    deadline = Deadline(budget)
    dev = resolve_device(device)
    store = store or Store(profile_name(profile))
    log = log or (lambda text: print(text, file=sys.stderr, flush=True))
    every = units(profile, dev)
    chosen = select(every, only)
    runnable = [u for u in chosen if not u.requires()]
    outcome = Outcome(skipped=[u.id for u in chosen if u.requires()])
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)  # before the probes, so they time what the runs will get
    limit = (lambda: fmt_seconds(deadline.left()) + " of the budget left") if budget else (lambda: "no budget limit")
    shared_cache: dict = {}

    def one_pass(first: tuple[str, ...]) -> None:
        # a unit the budget stopped in the first pass would stop again: the deadline only comes closer
        # a waiting unit needs another first (a read-out its model's training); a later pass takes it
        todo = [u for u in runnable if u.status(store).state not in (DONE, WAITING, BLOCKED)
                and u.id not in outcome.skipped + outcome.stopped]
        total, tic = len(chosen), time.monotonic()
        done_before = sum(u.status(store).state == DONE for u in runnable) - len(outcome.finished)
        label = f" (first pass: up to {', '.join(first)})" if first else ""
        for index, unit in enumerate(todo):
            eta = _eta(store, todo[index:], dev, every)
            log(f"[run] {done_before + len(outcome.finished)}/{total} done · starting {unit.id}{label} · "
                f"ETA {fmt_seconds(eta)} for this selection · {limit()}")

            def on_epoch(record: dict, unit: Unit = unit) -> None:
                log(f"[run] {unit.id}: epoch {record['epoch']}/{unit.epochs} in {record['seconds']:.0f} s · {limit()}")

            ctx = Context(store, dev, deadline, progress, on_epoch, epoch_estimate(store, unit, dev),
                          stage_estimator(store, unit, dev), shared_cache, first)
            try:
                run_unit(unit, ctx)
                outcome.finished.append(unit.id)
                log(f"[run] finished {unit.id} ({fmt_seconds(time.monotonic() - tic)} into this pass)")
            except FirstPassDone as reached:
                log(f"[run] {reached}")
            except OutOfBudget as stop:
                outcome.stopped.append(unit.id)
                log(f"[run] stopped {unit.id} at a clean boundary: {stop}")
            except RunLocked as locked:
                outcome.skipped.append(unit.id)
                log(f"[run] skipped: {locked}")
            except FinishedElsewhere as finished:
                log(f"[run] {finished}")

    try:
        measure(store, [u for u in runnable if u.status(store).state not in (DONE, BLOCKED)], dev)
        if first_stages:
            one_pass(tuple(first_stages))
        finished = len(outcome.finished)
        one_pass(())
        # a unit that waited for another (a read-out for its model's training) may be free now: another pass while
        # the last one finished something (each such pass finished a unit, so this ends)
        while len(outcome.finished) > finished:
            finished = len(outcome.finished)
            measure(store, [u for u in runnable if u.status(store).state not in (DONE, BLOCKED)], dev)
            one_pass(())
    finally:
        torch.set_num_threads(before)
    outcome.remaining = sum(u.status(store).state != DONE for u in runnable)
    return outcome


def _eta(store: Store, pending: list[Unit], device: torch.device, every: list[Unit]) -> float | None:
    """Seconds left for ``pending`` on ``device``, the probes' stage prices calibrated on the finished ones of
    ``every`` (the profile's units)."""
    costs = load_costs(store).get(device.type, {})
    runs = read_once(store)
    calibration = stage_calibration(store, every, costs, device.type, runs)
    total = 0.0
    for unit in pending:
        left = remaining_seconds(unit, unit.status(store), costs, observed(store, unit, runs), calibration)
        if left is None:
            return None
        total += left
    return total


def exit_status(outcome: Outcome) -> int:
    """0: every runnable unit is done; 3: more to do (call again)."""
    return 0 if outcome.all_done else 3
