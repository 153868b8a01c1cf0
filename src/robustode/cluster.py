"""The run plan fanned out over a scheduler: one `submitit <https://github.com/facebookincubator/submitit>`_ job
per pending unit (``robustode run --executor slurm|local|debug``).

The units of a profile's run plan (:mod:`robustode.plan`) are independent, so each can be a job. A job gets a
small picklable :class:`UnitJob` — the profile (a name, or a loaded profile that travels pickled), the unit's
id, the device and the thread count — and rebuilds the plan's units where it runs, picks its one unit by id and
runs it with :func:`robustode.units.run_unit`: the same code path as ``robustode run``, so the results files
are the same. What makes it safe to run many at once:

* **Nothing finished is redone.** Only units that are not done are submitted; a job whose unit is done by the
  time it starts returns at once.
* **Preemption and time limits.** A job that is preempted or reaches its time limit gets the scheduler's
  signal; submitit calls :meth:`UnitJob.checkpoint`, which requeues the same job. The requeued job resumes the
  unit from its last epoch checkpoint (and its finished evaluation stages), so a limit costs at most the
  epoch or stage in progress.
* **One writer per results file.** :func:`run_unit` holds the unit's lock in the store while it computes. The
  lock names the process, its host and the job (``Store(owner=...)``): a second job for the same unit is
  refused, and a requeued job takes over its own lock even on another node.

The submitter keeps one record per unit in ``results/<profile>/jobs/<unit id>.json`` (job id, state, log
paths; git-ignored like the locks) — ``robustode plan`` shows them — and the jobs' logs under
``results/<profile>/jobs/logs/<job id>/``. It waits with a live summary (done / running / pending / failed)
and names every failed unit with its log.

Executors: ``slurm`` submits one job array (``--max-parallel`` is the array's parallelism, so the scheduler
throttles and the submitter may go away: ``--no-wait``); ``local`` runs the units as parallel processes on
this machine, each with its own GPUs (a workstation with several GPUs); ``debug`` runs them one after another
in this process (for tracing a problem).
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import re
import shutil
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

EXECUTORS = ("slurm", "local", "debug")
DONE, FAILED, LOCKED, CANCELLED = "done", "failed", "locked", "cancelled"
FINAL = (DONE, FAILED, LOCKED, CANCELLED)
# states after which a unit's job no longer runs (ours, SLURM's in lower case, a local job's without a result); any
# other state, "unknown" included, may still be running, so the unit is not submitted again
ENDED = {*FINAL, "completed", "timeout", "node_fail", "out_of_memory", "boot_fail", "deadline", "preempted", "ended"}
FOREVER_MIN = 30 * 24 * 60  # a local job without --time-per-job: no limit (submitit's default is 2 minutes)
# where a job finds what the plan's units read from the environment (results and data folders are set apart)
PASSED_ENVIRONMENT = ("ROBUSTODE_IMAGENET", "ROBUSTODE_AUTHORS_CHECKPOINTS")


# ---------------------------------------------------------------------------------------------- options

@dataclass(frozen=True)
class Options:
    """How to fan out: the executor and the per-job resources and limits (``None``: the executor's default)."""

    executor: str
    partition: str | None = None
    gpus_per_job: int | None = None
    max_parallel: int | None = None
    time_per_job: float | None = None  # seconds
    threads: int | None = None
    max_requeues: int = 20
    slurm_options: tuple[tuple[str, str], ...] = ()
    poll_s: float | None = None

    @property
    def gpus(self) -> int:
        """GPUs per job: as given, else 1 on SLURM and, for local jobs, 1 where this machine has a GPU."""
        if self.gpus_per_job is not None:
            return self.gpus_per_job
        if self.executor == "slurm":
            return 1
        return 1 if self.executor == "local" and torch.cuda.is_available() else 0

    @property
    def signal_delay_s(self) -> int:
        """Seconds between the scheduler's warning signal and the time limit (at most 90, a tenth of the limit)."""
        return 90 if self.time_per_job is None else int(min(90.0, self.time_per_job / 10))

    @property
    def timeout_min(self) -> int:
        if self.time_per_job is None:
            return 120 if self.executor == "slurm" else FOREVER_MIN
        return math.ceil(self.time_per_job / 60)


def check(options: Options) -> None:
    """Every problem with ``options`` in one :class:`ValueError`, before anything is submitted."""
    problems = []
    if options.executor not in EXECUTORS:
        problems.append(f"unknown executor {options.executor!r}; choose one of: {', '.join(EXECUTORS)}")
    for name, value, least in (("--max-parallel", options.max_parallel, 1), ("--threads", options.threads, 1),
                               ("--gpus-per-job", options.gpus_per_job, 0), ("--max-requeues", options.max_requeues, 0)):
        if value is not None and (not isinstance(value, int) or value < least):
            problems.append(f"{name} must be {'positive' if least else 'zero or more'}, got {value!r}")
    if options.time_per_job is not None and not options.time_per_job >= 60:
        problems.append(f"--time-per-job must be at least one minute, got {options.time_per_job!r} s")
    if options.poll_s is not None and not options.poll_s > 0:
        problems.append(f"the poll interval must be positive, got {options.poll_s!r}")
    if options.executor != "slurm":
        for name, given in (("--partition", options.partition), ("--slurm-option", options.slurm_options)):
            if given:
                problems.append(f"{name} applies to --executor slurm only")
    for key, _ in options.slurm_options:
        if not key or key in ("partition", "time", "gpus_per_node", "array_parallelism", "job_name"):
            problems.append(f"--slurm-option {key or '(empty)'}=...: set this one with its own flag")
    if problems:
        raise ValueError("; ".join(problems))


def load_submitit(executor: str, scheduler: bool = True) -> ModuleType:
    """The ``submitit`` module, and for SLURM (``scheduler``) its commands; one clear error where one is missing."""
    try:
        import submitit
    except ImportError:
        raise ValueError(f"--executor {executor} needs the optional package submitit: "
                         "pip install 'robustode[cluster]' (or: pip install submitit)") from None
    if executor == "slurm" and scheduler:
        missing = [c for c in ("sbatch", "srun", "sacct") if shutil.which(c) is None]
        if missing:
            raise ValueError(f"--executor slurm needs SLURM's {', '.join(missing)} on the PATH: run it on a login "
                             "node of the cluster (or use --executor local on this machine)")
    return submitit


def local_gpus() -> list[int]:
    """This machine's GPU ids as ``CUDA_VISIBLE_DEVICES`` names them (all of them when it is unset)."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return list(range(count))
    ids = [v.strip() for v in visible.split(",") if v.strip()]
    if not all(v.isdigit() for v in ids):
        raise ValueError(f"--executor local hands GPUs out by number; CUDA_VISIBLE_DEVICES={visible!r} is not a list "
                         "of numbers")
    return [int(v) for v in ids][:count]


def parallel_slots(options: Options, n_units: int) -> list[tuple[int, ...]]:
    """The GPUs of each parallel job (an empty tuple per CPU job): SLURM's array parallelism, or the local workers."""
    if options.executor == "debug":
        return [()]
    if options.executor == "slurm":
        return [()] * max(1, min(options.max_parallel or n_units, n_units))
    gpus = local_gpus() if options.gpus else []
    if options.gpus:
        fits = len(gpus) // options.gpus
        wanted = options.max_parallel or max(fits, 1)
        if wanted > fits:
            raise ValueError(f"--executor local with {options.gpus} GPU(s) per job and {wanted} job(s) at once needs "
                             f"{wanted * options.gpus} GPUs; this machine has {len(gpus)}")
        return [tuple(gpus[k * options.gpus:(k + 1) * options.gpus]) for k in range(wanted)]
    wanted = options.max_parallel or max(1, (os.cpu_count() or 1) // (options.threads or (os.cpu_count() or 1)))
    return [()] * wanted


# ---------------------------------------------------------------------------------------------- the job

def current_job() -> tuple[str, str]:
    """(scheduler, job id) of the submitit job this process runs in; ("", "pid<n>") outside one."""
    try:
        import submitit

        env = submitit.JobEnvironment()
        return env.cluster, str(env.job_id)
    except (ImportError, RuntimeError):
        return "", f"pid{os.getpid()}"


def find_unit(profile: str | dict, unit_id: str, device: torch.device) -> Any:
    from robustode import plan

    found = [u for u in plan.units(profile, device) if u.id == unit_id]
    if not found:
        raise LookupError(f"profile {plan.profile_name(profile)!r} has no unit {unit_id!r} (did it change since "
                          "the job was submitted?)")
    return found[0]


@dataclass(frozen=True)
class UnitJob:
    """The picklable callable of one job: rebuild the plan's units here, run the one with ``unit_id``.

    Returns ``{"unit", "state", "detail"}`` with state ``done`` or ``locked`` (another live process computes it);
    an error propagates (the scheduler marks the job failed) unless ``raise_errors`` is off (in-process debug
    runs), when it comes back as state ``failed``. ``env`` is set in the job first (results and data folders)."""

    profile: str | dict
    unit_id: str
    device: str
    results_root: str
    threads: int | None = None
    env: tuple[tuple[str, str], ...] = ()
    raise_errors: bool = True

    def __call__(self) -> dict:
        for key, value in self.env:
            os.environ[key] = value
        from robustode.core.timing import cpu_threads
        from robustode.store import RunLocked

        scheduler, job_id = current_job()
        say = _printer(f"[job {job_id}]")
        try:
            with cpu_threads(self.threads):
                return self._run(scheduler, job_id, say)
        except RunLocked as locked:
            say(f"not run: {locked}")
            return {"unit": self.unit_id, "state": LOCKED, "detail": str(locked)}
        except Exception as err:
            traceback.print_exc()
            if self.raise_errors:
                raise
            return {"unit": self.unit_id, "state": FAILED, "detail": f"{type(err).__name__}: {err}"}

    def _run(self, scheduler: str, job_id: str, say: Callable[[str], None]) -> dict:
        from robustode import plan
        from robustode.core.budget import Deadline
        from robustode.profiles import resolve_device
        from robustode.results import device_name
        from robustode.store import Store

        dev = resolve_device(self.device)
        store = Store(plan.profile_name(self.profile), self.results_root, owner=f"{scheduler or 'pid'}:{job_id}")
        unit = find_unit(self.profile, self.unit_id, dev)
        progress = unit.status(store)
        say(f"{unit.id} on {socket.gethostname()}, {device_name(dev)}: {progress.state}"
            + (f" ({progress.detail})" if progress.detail else "") + f"; process started {_since_start():.0f} s ago")
        if progress.state == plan.DONE:
            return {"unit": unit.id, "state": DONE, "detail": "already done"}
        if why := unit.requires():
            raise RuntimeError(f"{unit.id} cannot run on {socket.gethostname()}: {why}")

        def on_epoch(record: dict) -> None:
            say(f"{unit.id}: epoch {record['epoch']}/{unit.epochs} in {record['seconds']:.0f} s")

        ctx = plan.Context(store, dev, Deadline(None), False, on_epoch, plan.epoch_estimate(store, unit, dev),
                           plan.stage_estimator(store, unit, dev))
        tic = time.monotonic()
        try:
            plan.run_unit(unit, ctx)
        except plan.FinishedElsewhere as finished:
            say(str(finished))
            return {"unit": unit.id, "state": DONE, "detail": "finished by another job"}
        say(f"finished {unit.id} in {time.monotonic() - tic:.0f} s")
        return {"unit": unit.id, "state": DONE, "detail": f"{time.monotonic() - tic:.0f} s"}

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit calls this on preemption or at the time limit: requeue the same job. Its state lives in the
        store (epoch checkpoints, finished evaluation stages), so the requeued job resumes from there."""
        from submitit.helpers import DelayedSubmission

        print(f"[job] {self.unit_id}: preempted or at the time limit; requeued, resumes from its last checkpoint",
              flush=True)
        return DelayedSubmission(self, *args, **kwargs)


def _since_start() -> float:
    """Seconds since this process started (Linux; 0 elsewhere): a job's start-up before its unit runs."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _printer(prefix: str, stream: Any = None) -> Callable[[str], None]:
    return lambda text: print(f"{prefix} {text}", file=stream or sys.stdout, flush=True)


def error_line(text: str) -> str:
    """The exception line of a job's error report (submitit's carries the traceback and then the log paths)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b", line)]
    return errors[-1] if errors else (lines[0] if lines else "error")


# ---------------------------------------------------------------------------------------------- records

def jobs_dir(store: Any) -> Path:
    return Path(store.root) / "jobs"


def record_path(store: Any, unit_id: str) -> Path:
    return jobs_dir(store) / f"{unit_id}.json"


def read_records(store: Any) -> dict[str, dict]:
    """The job record of every unit that was submitted, by unit id."""
    import json

    folder = jobs_dir(store)
    if not folder.is_dir():
        return {}
    out = {}
    for path in sorted(folder.rglob("*.json")):
        if "logs" in path.relative_to(folder).parts:
            continue
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        out[record.get("unit", str(path.relative_to(folder).with_suffix("")))] = record
    return out


def write_record(store: Any, unit_id: str, **fields: Any) -> dict:
    """Merge ``fields`` into the unit's job record (only the submitter writes records, so there is one writer)."""
    import json

    from robustode.results import now, write_json_atomic

    path = record_path(store, unit_id)
    record = json.loads(path.read_text()) if path.exists() else {}
    record.update({"unit": unit_id, **fields, "updated": now()})
    write_json_atomic(path, record)
    return record


def _outcome_in(result_pickle: str | None) -> dict | None:
    """What a finished job returned, from submitit's result file (written by our own jobs); ``None`` if absent."""
    if not result_pickle or not Path(result_pickle).exists():
        return None
    try:
        with open(result_pickle, "rb") as handle:
            status, value = pickle.load(handle)
    except Exception:  # a file being written, or one this Python cannot read
        return None
    if status == "success" and isinstance(value, dict):
        return value
    return {"state": FAILED, "detail": error_line(str(value))}


def live_state(record: dict) -> str:
    """A record's state, asked again where it may have moved on: a SLURM job from the scheduler, a local job from
    its result file and process (the submitter may have gone away since it last wrote the record)."""
    state = record.get("state", "?")
    if state in FINAL:
        return state
    outcome = _outcome_in(record.get("result"))
    if outcome is not None:
        return outcome.get("state", FAILED)
    executor, job_id = record.get("executor"), str(record.get("job_id", ""))
    if executor == "slurm":
        try:
            import submitit

            return submitit.SlurmJob(folder=record["folder"], job_id=job_id).state.lower()
        except Exception:  # no sacct here, or the scheduler forgot the job
            return f"{state} (scheduler not reachable)"
    if executor == "local" and job_id.isdigit():
        from robustode.store import _alive

        if record.get("host") != socket.gethostname():
            return f"{state} (on {record.get('host')})"
        return "running" if _alive(int(job_id)) else "ended without a result"
    return state


def still_active(state: str) -> bool:
    """Whether a job in ``state`` (:func:`live_state`) may still run its unit."""
    words = state.lower().split()
    return not words or words[0].rstrip(",") not in ENDED


def with_jobs(rows: list[dict], store: Any) -> list[dict]:
    """``rows`` of :func:`robustode.plan.plan_rows` with each submitted unit's job id and state (unchanged when
    no unit was ever submitted)."""
    records = read_records(store)
    if not records:
        return rows
    for row in rows:
        record = records.get(row["unit"])
        row["job"] = record.get("job_id", "—") if record else "—"
        row["job state"] = live_state(record) if record else "—"
    return rows


# ---------------------------------------------------------------------------------------------- estimates

def chapter_estimates(profile: str | dict, chosen: list, store: Any) -> list[dict]:
    """Per chapter: units left and the time they are expected to take on a GPU and on this machine's CPU, summed
    over the units whose kind has been measured (``results/<profile>/costs.json``, or finished runs)."""
    from robustode import plan

    costs = plan.load_costs(store)
    runs = plan.read_once(store)
    table: dict[str, dict] = {}
    for unit in chosen:
        chapter = unit.id.split("/")[0]
        row = table.setdefault(chapter, {"chapter": plan.chapter_name(chapter), "units left": 0, "blocked here": 0,
                                         "_gpu": 0.0, "_gpu_unknown": 0, "_cpu": 0.0, "_cpu_unknown": 0})
        progress = plan.standing(unit, store)
        if progress.state == plan.DONE:
            continue
        if progress.state in (plan.BLOCKED, plan.WAITING):  # elsewhere (or once its model is trained) it runs whole
            row["blocked here"] += progress.state == plan.BLOCKED
            progress = plan.all_left(unit)
        row["units left"] += 1
        gpu = plan.remaining_seconds(unit, progress, costs.get("cuda", {}), {})
        cpu = plan.remaining_seconds(unit, progress, costs.get("cpu", {}), plan.observed(store, unit, runs))
        row["_gpu"], row["_gpu_unknown"] = row["_gpu"] + (gpu or 0.0), row["_gpu_unknown"] + (gpu is None)
        row["_cpu"], row["_cpu_unknown"] = row["_cpu"] + (cpu or 0.0), row["_cpu_unknown"] + (cpu is None)
    rows = []
    for row in table.values():
        shown = {k: v for k, v in row.items() if not k.startswith("_")}
        for device, label in (("gpu", "GPU-hours"), ("cpu", "CPU-hours here")):
            left, unknown = row[f"_{device}"], row[f"_{device}_unknown"]
            measured = row["units left"] - unknown
            shown[label] = ("—" if not row["units left"] else "not measured" if not measured else
                            f"{left / 3600:.1f}" + (f" (+ {unknown} units not measured)" if unknown else ""))
        rows.append(shown)
    return rows


# ---------------------------------------------------------------------------------------------- submitting

@dataclass
class Failure:
    unit: str
    job_id: str
    error: str
    log: str


@dataclass
class FanOut:
    """What :func:`fan_out` did: units finished by its jobs, units that failed (with their logs), units it did
    not submit (done already, blocked, or another job holds them) and how many are still not done."""

    submitted: dict[str, str] = field(default_factory=dict)  # unit -> job id
    done: list[str] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (unit, why)
    remaining: int = 0
    dry_run: bool = False
    waited: bool = True
    interrupted: bool = False

    @property
    def all_done(self) -> bool:
        return self.remaining == 0


def _state_word(job: Any) -> str:
    """pending / running from a job's scheduler state (SLURM, local process, or debug)."""
    try:
        state = str(job.state).upper()
    except Exception:
        return "pending"
    return "running" if state in ("RUNNING", "COMPLETING") else "pending"


def make_executor(submitit: ModuleType, options: Options, folder: Path, name: str) -> Any:
    """The submitit executor for ``options``, its parameters set (an invalid SLURM option fails here)."""
    if options.executor == "debug":
        return submitit.DebugExecutor(folder)
    if options.executor == "local":
        executor = submitit.LocalExecutor(folder, max_num_timeout=options.max_requeues)
        executor.update_parameters(timeout_min=options.timeout_min, signal_delay_s=options.signal_delay_s)
        return executor
    executor = submitit.SlurmExecutor(folder, max_num_timeout=options.max_requeues)
    extra = {key: value for key, value in options.slurm_options}
    try:
        executor.update_parameters(job_name=name, time=options.timeout_min, gpus_per_node=options.gpus or None,
                                   partition=options.partition, signal_delay_s=options.signal_delay_s,
                                   cpus_per_task=options.threads,
                                   additional_parameters={"requeue": True}, **extra)
    except ValueError as err:
        raise ValueError(f"--slurm-option: {str(err).splitlines()[0]}") from None
    return executor


def fan_out(profile: str | dict, options: Options, only: list[str] | None = None, device: str = "auto",
            store: Any = None, progress: bool = True, log: Callable[[str], None] | None = None, wait: bool = True,
            dry_run: bool = False, sleep: Callable[[float], None] = time.sleep) -> FanOut:
    """Submit one job per unit of ``profile`` (those matching ``only``) that is neither done nor blocked nor held
    by a live job, and (``wait``) follow them to the end. Bad input fails before anything is submitted."""
    from robustode import plan
    from robustode.paths import data_dir, project_root
    from robustode.profiles import DEVICES, check_choice, resolve_device
    from robustode.results import now
    from robustode.store import Store

    check(options)
    check_choice("device", device, DEVICES)
    if not wait and options.executor != "slurm":
        raise ValueError("--no-wait needs --executor slurm (local and debug jobs live in this process)")
    submitit = load_submitit(options.executor, scheduler=not dry_run)
    if options.executor in ("local", "slurm") and device == "cuda" and not options.gpus:
        raise ValueError(f"--device cuda with --executor {options.executor} needs --gpus-per-job of 1 or more")
    listing = torch.device("cpu") if options.executor == "slurm" else resolve_device(device)
    store = store or Store(plan.profile_name(profile))
    log = log or _printer("[cluster]", sys.stderr)
    chosen = plan.select(plan.units(profile, listing), only)
    out = FanOut()
    records = read_records(store)
    todo = []
    for unit in chosen:
        progress = plan.standing(unit, store)
        if progress.state == plan.DONE:
            continue
        if progress.state in (plan.BLOCKED, plan.WAITING):
            out.skipped.append((unit.id, f"{progress.state}: {progress.detail}"))
        elif (record := records.get(unit.id)) and still_active(state := live_state(record)):
            out.skipped.append((unit.id, f"already submitted as job {record.get('job_id')} ({state}); if it is gone, "
                                         f"delete {record_path(store, unit.id)}"))
        else:
            todo.append(unit)
    slots = parallel_slots(options, len(todo)) if todo else [()]
    name = f"robustode-{plan.profile_name(profile)}"
    for line in grouped(out.skipped):
        log(f"not submitted: {line}")
    if dry_run or not todo:
        out.dry_run = dry_run
        log(f"{len(todo)} unit(s) to submit ({options.executor}, {len(slots)} at a time"
            f"{', ' + str(options.gpus) + ' GPU(s) each' if options.gpus else ''}); nothing submitted"
            if dry_run else "nothing to submit: every chosen unit is done, blocked or held by a live job")
        out.remaining = sum(u.status(store).state != plan.DONE for u in chosen if not u.requires())
        out.waited = False
        return out

    folder = jobs_dir(store) / "logs" / "%j"
    executor = make_executor(submitit, options, folder, name)
    env = (("ROBUSTODE_ROOT", str(project_root())), ("ROBUSTODE_DATA", str(data_dir())),
           *((key, os.environ[key]) for key in PASSED_ENVIRONMENT if os.environ.get(key)))

    def job_for(unit: Any) -> UnitJob:
        return UnitJob(profile, unit.id, device, str(store.root), options.threads, env,
                       raise_errors=options.executor != "debug")

    def recorded(unit: Any, job: Any, gpus: tuple[int, ...]) -> None:
        out.submitted[unit.id] = str(job.job_id)
        write_record(store, unit.id, executor=options.executor, job_id=str(job.job_id), state="submitted",
                     submitted=now(), host=socket.gethostname(), folder=str(job.paths.folder),
                     stdout=str(job.paths.stdout), stderr=str(job.paths.stderr), result=str(job.paths.result_pickle),
                     gpus=list(gpus), error=None)

    queue, active, free = list(todo), {}, list(range(len(slots)))  # active: unit id -> (unit, job, slot)
    if options.executor == "slurm":  # one array: the scheduler runs at most len(slots) at once
        executor.update_parameters(array_parallelism=len(slots))
        try:
            with executor.batch():
                jobs = [executor.submit(job_for(unit)) for unit in queue]
        except Exception as err:  # sbatch refused it (a partition or account that does not exist, ...)
            lines = [line.strip() for line in str(err).splitlines() if line.strip()]
            said = [line for line in lines if "error" in line.lower()] or lines
            raise ValueError(f"sbatch refused the job array, nothing was submitted: {said[-1] if said else err!r}") from None
        for unit, job in zip(queue, jobs, strict=True):
            recorded(unit, job, ())
            active[unit.id] = (unit, job, None)
        queue = []
        log(f"submitted {len(jobs)} job(s) as array {str(jobs[0].job_id).split('_')[0]}; logs in {folder.parent}")
    if not wait:
        out.waited = False
        out.remaining = sum(u.status(store).state != plan.DONE for u in chosen if not u.requires())
        return out

    from tqdm.auto import tqdm

    poll = options.poll_s or (15.0 if options.executor == "slurm" else 0.5)
    seen: dict[str, str] = {}
    shown, drawn = "", time.monotonic()
    bar = tqdm(total=len(todo), desc=f"{options.executor} jobs", unit="unit", disable=not progress, file=sys.stderr)
    try:
        while queue or active:
            while queue and free:  # local and debug: the submitter keeps at most len(slots) jobs going
                unit, slot = queue.pop(0), free.pop(0)
                if options.executor == "local":
                    executor.update_parameters(gpus_per_node=len(slots[slot]), visible_gpus=list(slots[slot]))
                job = executor.submit(job_for(unit))
                recorded(unit, job, slots[slot])
                active[unit.id] = (unit, job, slot)
                log(f"submitted {unit.id} as job {job.job_id}")
            for uid, (unit, job, slot) in list(active.items()):
                if not job.done():
                    word = _state_word(job)
                    if seen.get(uid) != word:
                        seen[uid] = word
                        write_record(store, uid, state=word)
                    continue
                del active[uid]
                if slot is not None:
                    free.append(slot)
                _finish(unit, job, store, out, log, options)
                bar.update(1)
            running = sum(seen.get(uid) == "running" for uid in active)
            summary = (f"done {len(out.done)} · running {running} · pending {len(active) - running + len(queue)} · "
                       f"failed {len(out.failed)}")
            if summary != shown or time.monotonic() - drawn > 30:  # when it changes, else every 30 s
                shown, drawn = summary, time.monotonic()
                bar.set_postfix_str(summary, refresh=True)
            if active:
                sleep(poll)
    except KeyboardInterrupt:
        out.interrupted = True
        if options.executor == "slurm":
            log(f"stopped waiting; the jobs keep running: {' '.join(j.job_id for _, j, _ in active.values())} "
                "(robustode plan shows their state; scancel stops them)")
        else:
            for uid, (_, job, _) in active.items():
                job.cancel(check=False)
                write_record(store, uid, state=CANCELLED)
            log(f"cancelled {len(active)} running job(s); their units resume from their checkpoints next time")
    finally:
        bar.close()
    out.remaining = sum(u.status(store).state != plan.DONE for u in chosen if not u.requires())
    return out


def _finish(unit: Any, job: Any, store: Any, out: FanOut, log: Callable[[str], None], options: Options) -> None:
    """Read a finished job's outcome into ``out`` and the unit's record."""
    from robustode import plan
    from robustode.results import now

    logs = str(job.paths.stderr) if options.executor != "debug" else "this console (debug executor)"
    try:
        outcome = job.result()
    except Exception as err:  # the job raised, was killed, or timed out more often than allowed
        outcome = {"state": FAILED, "detail": error_line(str(err)) or type(err).__name__}
    state = outcome.get("state", FAILED)
    if state == DONE and unit.status(store).state != plan.DONE:
        state, outcome = FAILED, {"detail": "the job ended but the unit has no results file"}
    write_record(store, unit.id, state=state, finished=now(), error=outcome.get("detail") if state != DONE else None)
    if state == DONE:
        out.done.append(unit.id)
        log(f"done {unit.id} (job {job.job_id})")
    elif state == LOCKED:
        out.skipped.append((unit.id, str(outcome.get("detail"))))
        log(f"not run {unit.id}: {outcome.get('detail')}")
    else:
        out.failed.append(Failure(unit.id, str(job.job_id), str(outcome.get("detail")), logs))
        log(f"FAILED {unit.id} (job {job.job_id}): {outcome.get('detail')}; log: {logs}")


# ---------------------------------------------------------------------------------------------- command line

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``robustode run``'s options for fanning out (the runner's own stay in :mod:`robustode.cli`)."""
    group = parser.add_argument_group("fanning out over a scheduler (submitit; pip install 'robustode[cluster]')")
    group.add_argument("--executor", choices=EXECUTORS, help="one job per pending unit: slurm (a job array), local "
                       "(parallel processes here, one GPU set each) or debug (one after another in this process)")
    group.add_argument("--partition", help="SLURM partition")
    group.add_argument("--gpus-per-job", type=int, help="GPUs per job (default: 1 on slurm; local: 1 if there is a GPU)")
    group.add_argument("--max-parallel", type=int, help="jobs at once (default: slurm all; local one per GPU set)")
    group.add_argument("--time-per-job", help="each job's time limit (2h, 90m); at the limit the job is requeued and "
                       "resumes from its last epoch (default: slurm 2h, local none)")
    group.add_argument("--max-requeues", type=int, default=20, help="requeues at the time limit per job (default: 20)")
    group.add_argument("--slurm-option", action="append", default=[], metavar="KEY=VALUE",
                       help="another sbatch setting, e.g. account=proj or qos=normal (repeatable)")
    group.add_argument("--no-wait", action="store_true", help="slurm: submit and return (robustode plan follows them)")
    group.add_argument("--dry-run", action="store_true", help="say what would be submitted and what it costs; submit nothing")


def wanted(args: argparse.Namespace) -> bool:
    """Whether the command line asks for a fan-out (any of its options given)."""
    return bool(args.executor or args.partition or args.gpus_per_job is not None or args.max_parallel is not None
                or args.time_per_job or args.slurm_option or args.no_wait or args.dry_run)


def options_from(args: argparse.Namespace) -> Options:
    from robustode.core.budget import parse_duration

    if not args.executor:
        raise ValueError("--partition, --gpus-per-job, --max-parallel, --time-per-job, --slurm-option, --no-wait and "
                         "--dry-run need --executor (slurm, local or debug)")
    if args.budget:
        raise ValueError("--budget is for the runner here; with --executor each job has --time-per-job")
    pairs = []
    for item in args.slurm_option:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--slurm-option takes KEY=VALUE, got {item!r}")
        pairs.append((key.strip().replace("-", "_"), value.strip()))
    try:
        limit = parse_duration(args.time_per_job) if args.time_per_job else None
    except ValueError:
        raise ValueError(f"--time-per-job must look like 2h, 90m or 1h30m (positive), got {args.time_per_job!r}") from None
    return Options(args.executor, args.partition, args.gpus_per_job, args.max_parallel, limit, args.threads,
                   args.max_requeues, tuple(pairs))


def run_command(args: argparse.Namespace) -> int:
    """``robustode run --executor ...``: 0 all done, 1 some unit failed (named, with its log), 3 more to do."""
    from robustode import plan
    from robustode.store import Store
    from robustode.tables import markdown_table

    options = options_from(args)
    check(options)
    plan.select(plan.units(args.profile), args.only)  # a bad pattern fails before anything is submitted
    if args.dry_run:
        store = Store(args.profile)
        chosen = plan.select(plan.units(args.profile), args.only)
        print(markdown_table(chapter_estimates(args.profile, chosen, store)))
    result = fan_out(args.profile, options, args.only, args.device, progress=not args.quiet, wait=not args.no_wait,
                     dry_run=args.dry_run)
    return report(result, args.profile)


def grouped(skipped: list[tuple[str, str]]) -> list[str]:
    """One line per unit, except blocked units: one line per chapter / data set and reason (as ``plan`` shows them)."""
    lines, blocked = [], {}
    for unit, why in skipped:
        if why.startswith("blocked: "):
            blocked.setdefault(("/".join(unit.split("/")[:2]), why), []).append(unit)
        else:
            lines.append(f"{unit}: {why}")
    return lines + [f"{prefix}/* ({len(units)} units): {why}" for (prefix, why), units in blocked.items()]


def report(result: FanOut, profile: str) -> int:
    for failure in result.failed:
        print(f"failed: {failure.unit} (job {failure.job_id}): {failure.error}\n  log: {failure.log}", file=sys.stderr)
    if result.dry_run:
        print(f"dry run: nothing submitted; {result.remaining} unit(s) not done")
        return 0
    for line in grouped(result.skipped):
        print(f"not run: {line}", file=sys.stderr)
    if not result.waited:
        print(f"{len(result.submitted)} job(s) submitted; `robustode plan --profile {profile}` shows their state")
        return 0
    print(f"{len(result.done)} unit(s) finished by {len(result.submitted)} job(s), {len(result.failed)} failed, "
          f"{result.remaining} left to run")
    if result.failed:
        print(f"error: {len(result.failed)} unit(s) failed: {', '.join(f.unit for f in result.failed)}", file=sys.stderr)
        return 1
    if result.interrupted:
        return 130
    return 0 if result.all_done else 3
