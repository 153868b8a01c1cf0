"""A GPU piece: one prepared, self-limiting slice of the full profile for a GPU machine lent for a few minutes.

The machine (the workplace's ``device`` tool) takes one command of at most 10 minutes, a working tree plus
carried paths of at most 64 MiB, and returns at most 8 files of at most 16 MiB from ``$OUT``; it has torch
but no Jupyter and no network. A piece therefore runs the run plan (``robustode.plan``), not the notebooks:

* **here**, ``python -m robustode.piece kit CHAPTER ...`` (``tools/device_kit.sh``) writes ``.device/``: the
  chapters' compressed data, pyautoattack's code where AutoAttack runs, and the resume checkpoints of the
  chapters' *unfinished* units only, and refuses a kit whose tree plus carried paths exceed 64 MiB;
* **there**, ``bash tools/device_run.sh [SECONDS]`` sets one deadline for everything at its start and runs
  :func:`run_piece`: the device, the engine's tests, the fill measurement (first piece only), chapter 4's CUDA
  timing rows, then ``plan.advance`` for the chapters' units with the time that is left (it starts no epoch or
  evaluation stage that cannot finish), and the GPU-piece count. Every step is a child process that is stopped,
  by its own PID's process group, when its time is up; results and checkpoints are packed into ``$OUT``
  after every step and, while units run, every few seconds (so after each unit), split into files of at most
  15 MiB, results apart from checkpoints, the checkpoints of finished units dropped;
* **back here**, ``python -m robustode.piece unpack DIR`` puts the files into ``results/full`` (costs merged,
  newest measurement first) and drops the checkpoints and partial evaluations of units now done;
* ``python -m robustode.piece count`` says how many pieces the GPU share of the full profile still needs, from
  the plan's CUDA costs (``results/full/costs.json``, written by the first piece's measure step).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

MiB = 1 << 20


class PieceError(RuntimeError):
    """A piece, its kit or its returned files break a limit of the device machine, or its input is bad."""


@dataclass(frozen=True)
class Limits:
    """The device machine's limits, and how a piece shares out the 8 returned files: the log, at most
    ``results_parts`` parts of results and ``checkpoint_parts`` of checkpoints, and one spare for a part being
    written when a command is killed."""

    carry_bytes: int = 64 * MiB
    carry_margin: int = 1 * MiB
    out_files: int = 8
    out_file_bytes: int = 16 * MiB
    out_total_bytes: int = 64 * MiB
    part_bytes: int = 15 * MiB
    results_parts: int = 3
    checkpoint_parts: int = 3
    log_bytes: int = 4 * MiB


LIMITS = Limits()
PIECE_SECONDS = 540  # what tools/device_run.sh gives a piece by default: a 600 s command less a margin
RUNNER_SECONDS = 390  # of which the runner gets about this much (tests, start-up and packing take the rest)
LOG_NAME = "piece.log"
MANIFEST = "piece.json"  # inside the results archive, not extracted


@dataclass(frozen=True)
class Chapter:
    """What a piece does for one chapter: the plan units it advances (``only`` patterns), the data sets its
    kit carries, whether its kit needs AutoAttack's code, and whether it measures chapter 4's CUDA timing rows."""

    name: str
    only: tuple[str, ...]
    datasets: tuple[str, ...]
    label: str
    autoattack: bool = False
    cuda_timing: bool = False


CHAPTERS = {
    "robustness": Chapter("robustness", ("robustness/MNIST/*",), ("MNIST",),
                          "chapters 2-3: every MNIST unit (4 models x 3 seeds, 100 epochs, full evaluation)",
                          autoattack=True),
    "anode": Chapter("anode", ("anode/MNIST/*/seed[012]", "anode/instability/*/seed[01]"), ("MNIST",),
                     "chapter 5 sized for the GPU: seeds 0-2 of each MNIST variant (3 of the profile's 5 "
                     "repetitions) and instability seeds 0-1 (2 of 5); the book's rows say n = 3 and n = 2"),
    "attention": Chapter("attention", (), ("MNIST",),
                         "chapter 4: its CUDA timing rows only (first calls on the GPU); its training runs on the CPU",
                         cuda_timing=True),
}


def chapters_of(names: Iterable[str]) -> list[Chapter]:
    names = list(names)
    unknown = [n for n in names if n not in CHAPTERS]
    if unknown or not names:
        raise PieceError(f"unknown chapter(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(CHAPTERS)}")
    return [CHAPTERS[n] for n in dict.fromkeys(names)]


def selection(chapters: Iterable[Chapter]) -> list[str]:
    """The plan-unit patterns a piece for ``chapters`` advances."""
    return [p for c in chapters for p in c.only]


# ------------------------------------------------------------------------------------------ sizes and units

def travelling_files(repo: Path) -> list[Path]:
    """The files the device tool sends besides carried paths: tracked, and untracked but not ignored."""
    done = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                          capture_output=True, check=True)
    files = [repo / name for name in done.stdout.decode().split("\0") if name]
    return [f for f in files if f.is_symlink() or f.is_file()]


def path_bytes(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (links counted as links)."""
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_symlink() or p.is_file()) if path.is_dir() else 0


def carried_bytes(repo: Path, carry: Iterable[str] = (".device",)) -> dict[str, int]:
    """What one device call sends: the travelling tree plus every carried path, in bytes (``total`` included)."""
    sizes = {"tree": sum(f.lstat().st_size for f in travelling_files(repo))}
    for path in carry:
        sizes[path] = path_bytes(repo / path)
    sizes["total"] = sum(sizes.values())
    return sizes


_KEY = re.compile(r"-[0-9a-f]{12}\.")


def unit_checkpoints(store, unit) -> list[Path]:
    """A unit's resume checkpoints: ``checkpoints/<folder>/<run>-<key>.*`` where the folder is the unit's experiment
    or the part of it before a dash (chapter 4 keeps ``attention-table3``'s under ``attention``)."""
    root = store.root / "checkpoints"
    folders = {unit.experiment, unit.experiment.split("-")[0]}
    found = []
    for folder in folders:
        for path in (root / folder).glob(f"{unit.run}-*"):
            rest = path.name[len(unit.run):]
            if _KEY.match(rest) and not path.name.endswith(".tmp"):
                found.append(path)
    return sorted(found)


def live_checkpoints(store, units: list) -> list[Path]:
    """The checkpoints of the units that are not done: the only ones worth carrying or returning."""
    from robustode.plan import DONE

    return [p for u in units if u.status(store).state != DONE for p in unit_checkpoints(store, u)]


def prune_done(store, units: list) -> list[Path]:
    """Delete the checkpoints and partial evaluations of units that are done; returns what was deleted."""
    from robustode.plan import DONE

    gone = []
    for unit in units:
        if unit.status(store).state != DONE:
            continue
        stale = unit_checkpoints(store, unit)
        partial = store.partial_file(unit.experiment, unit.run, unit.params)
        for path in [*stale, *([partial] if partial.exists() else [])]:
            path.unlink(missing_ok=True)
            gone.append(path)
    return gone


def piece_units(profile: str | dict, chapters: list[Chapter], device: str = "cpu") -> list:
    from robustode import plan

    patterns = selection(chapters)
    return plan.select(plan.units(profile, device), patterns) if patterns else []


# ------------------------------------------------------------------------------------------------- the kit

def dataset_files(datasets: Iterable[str], data: Path) -> list[Path]:
    """The compressed files of each data set under ``data``; one error naming all that are missing."""
    from robustode.data.images import check_dataset

    files, missing = [], []
    for name in dict.fromkeys(datasets):
        for rel in check_dataset(name).files:
            (files if (data / rel).is_file() else missing).append(data / rel)
    if missing:
        raise PieceError(f"data missing for the kit: {', '.join(str(m) for m in missing)} (make data)")
    return files


def build_kit(repo: Path, chapter_names: list[str], *, data: Path, results: Path, site: Path | None,
              commit: str, limits: Limits = LIMITS, profile: str | dict = "full") -> dict:
    """Write ``repo/.device`` for a piece of ``chapter_names`` (see the module's doc) and return its sizes; refuse
    (and leave the old kit) when the travelling tree plus the kit would exceed the carry limit."""
    from robustode.store import Store

    chapters = chapters_of(chapter_names)
    sources = dataset_files([d for c in chapters for d in c.datasets], data)  # all checks before any work
    needs_site = any(c.autoattack for c in chapters)
    if needs_site and (site is None or not (site / "pyautoattack").is_dir()):
        raise PieceError(f"AutoAttack's code not found under {site} (tools/device_kit.sh downloads it)")
    store = Store(profile if isinstance(profile, str) else profile["name"], results)
    live = live_checkpoints(store, piece_units(profile, chapters))
    new = repo / ".device.new"
    shutil.rmtree(new, ignore_errors=True)
    try:
        for src in sources:
            dst = new / "data" / src.relative_to(data)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        if needs_site:
            shutil.copytree(site, new / "site", ignore=shutil.ignore_patterns("examples", "__pycache__", "*.pt"))
        for path in live:
            dst = new / "checkpoints" / path.relative_to(store.root / "checkpoints")
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dst)
        (new / "commit").write_text(commit + "\n")
        (new / "chapters").write_text(" ".join(c.name for c in chapters) + "\n")
        sizes = {"tree": sum(f.lstat().st_size for f in travelling_files(repo)),
                 "data": path_bytes(new / "data"), "site": path_bytes(new / "site"),
                 "checkpoints": path_bytes(new / "checkpoints"), "checkpoint_files": len(live)}
        sizes["total"] = sizes["tree"] + path_bytes(new)
        if sizes["total"] > limits.carry_bytes - limits.carry_margin:
            raise PieceError(
                f"kit too large: {sizes['total'] / MiB:.1f} MiB would travel (tree {sizes['tree'] / MiB:.1f}, data "
                f"{sizes['data'] / MiB:.1f}, AutoAttack {sizes['site'] / MiB:.1f}, {len(live)} checkpoints "
                f"{sizes['checkpoints'] / MiB:.1f} MiB) of the {limits.carry_bytes / MiB:.0f} MiB a call may send, "
                f"less {limits.carry_margin / MiB:.0f} MiB of margin; name fewer chapters")
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    shutil.rmtree(repo / ".device", ignore_errors=True)
    new.rename(repo / ".device")
    return sizes


# ------------------------------------------------------------------------------------------------ packing

def check_out(out: Path, limits: Limits = LIMITS) -> list[Path]:
    """The files in ``out``; :class:`PieceError` if they break what the device tool returns."""
    files = sorted(p for p in out.rglob("*") if p.is_file())
    big = [f"{p.name} ({p.stat().st_size / MiB:.1f} MiB)" for p in files if p.stat().st_size > limits.out_file_bytes]
    if len(files) > limits.out_files or big or sum(p.stat().st_size for p in files) > limits.out_total_bytes:
        raise PieceError(f"$OUT breaks the limits ({len(files)} files, at most {limits.out_files}; each at most "
                         f"{limits.out_file_bytes / MiB:.0f} MiB{'; too large: ' + ', '.join(big) if big else ''})")
    return files


def write_parts(out: Path, stem: str, files: list[Path], base: Path, max_parts: int, limits: Limits = LIMITS,
                extra: dict[str, bytes] | None = None) -> list[Path]:
    """``files`` (named relative to ``base``) and ``extra`` members as ``out/<stem>.tar.gz``, split into
    ``<stem>.tar.gz.<i>of<n>`` parts of at most ``limits.part_bytes`` when larger; stale parts are removed."""
    with tempfile.TemporaryDirectory(prefix="piece-pack-") as tmp:
        archive = Path(tmp) / f"{stem}.tar.gz"
        with tarfile.open(archive, "w:gz", compresslevel=6) as tar:
            for path in files:
                tar.add(path, arcname=path.relative_to(base).as_posix(), recursive=False)
            for name, payload in (extra or {}).items():
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(payload), int(time.time())
                tar.addfile(info, _BytesReader(payload))
        size = archive.stat().st_size
        n = max(1, math.ceil(size / limits.part_bytes))
        if n > max_parts:
            raise PieceError(f"{stem}: {size / MiB:.1f} MiB would need {n} files of {limits.part_bytes / MiB:.0f} MiB; "
                             f"at most {max_parts} fit beside the rest of the {limits.out_files} files a command returns")
        names = [f"{stem}.tar.gz"] if n == 1 else [f"{stem}.tar.gz.{i}of{n}" for i in range(1, n + 1)]
        with archive.open("rb") as src:
            for name in names:
                part = out / f"{name}.tmp"
                part.write_bytes(src.read(limits.part_bytes))
                os.replace(part, out / name)
    for stale in out.glob(f"{stem}.tar.gz*"):
        if stale.name not in names:
            stale.unlink()
    return [out / name for name in names]


class _BytesReader:
    def __init__(self, payload: bytes):
        self._payload, self._at = payload, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._payload) if size is None or size < 0 else self._at + size
        chunk = self._payload[self._at : end]
        self._at += len(chunk)
        return chunk


def _signature(files: list[Path]) -> tuple:
    out = []
    for f in files:
        try:
            st = f.stat()
        except FileNotFoundError:
            continue
        out.append((str(f), st.st_mtime_ns, st.st_size))
    return tuple(out)


class Packer:
    """Packs a results folder into ``out`` whenever it changed: the results written since ``since`` (every
    file but checkpoints, locks and temporary files) and, apart, the live checkpoints. ``units()`` gives the
    piece's units, whose finished ones lose their checkpoints before packing; ``manifest()`` a JSON-able
    summary stored in the results archive."""

    def __init__(self, root: Path, out: Path, since: float, limits: Limits = LIMITS,
                 units: Callable[[], list] | None = None, manifest: Callable[[], dict] | None = None,
                 log: Callable[[str], None] = print):
        self.root, self.out, self.since, self.limits = root, out, since, limits
        self.units, self.manifest, self.log = units, manifest, log
        self._seen: dict[str, tuple | None] = {"results": None, "checkpoints": None}
        self._units: list | None = None
        self.errors: list[str] = []

    def prepare(self) -> list:
        """The piece's units, made once (before the steps, so that packing while units run never waits for it)."""
        if self._units is None:
            self._units = self.units() if self.units is not None else []
        return self._units

    def _results(self) -> list[Path]:
        skip = {"checkpoints", "locks"}
        files = []
        for path in self.root.rglob("*"):
            rel = path.relative_to(self.root)
            if rel.parts[0] in skip or path.name.endswith(".tmp") or not path.is_file():
                continue
            if path.stat().st_mtime >= self.since:
                files.append(path)
        return sorted(files)

    def _checkpoints(self) -> list[Path]:
        folder = self.root / "checkpoints"
        return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".tmp")) if folder.is_dir() else []

    def pack(self, force: bool = False) -> list[Path]:
        """Pack what changed (everything with ``force``); a failure is logged and kept in ``errors``, and the
        files already in ``out`` stay. Returns the files in ``out``."""
        from robustode.store import Store

        results = self._results()
        signature = _signature(results)
        try:  # results first: dropping finished units' checkpoints needs the plan's units, which take a while to make
            if force or signature != self._seen["results"]:
                manifest = json.dumps(self.manifest() if self.manifest else {}, indent=1).encode()
                write_parts(self.out, "results", results, self.root, self.limits.results_parts, self.limits,
                            extra={MANIFEST: manifest})
                self._seen["results"] = signature
                if self.units is not None and self._checkpoints():
                    for path in prune_done(Store("full", self.root), self.prepare()):
                        self.log(f"[piece] dropped {path.relative_to(self.root)} (its unit is done)")
            checkpoints = self._checkpoints()
            signature = _signature(checkpoints)
            if force or signature != self._seen["checkpoints"]:
                write_parts(self.out, "checkpoints", checkpoints, self.root, self.limits.checkpoint_parts, self.limits)
                self._seen["checkpoints"] = signature
        except (OSError, tarfile.TarError, PieceError) as err:  # a file replaced while read: the next pack retries
            self.errors.append(str(err))
            self.log(f"[piece] packing failed, files in $OUT kept: {err}")
        self._trim_log()
        return check_out(self.out, self.limits)

    def _trim_log(self) -> None:
        log = self.out / LOG_NAME
        if log.exists() and log.stat().st_size > self.limits.log_bytes:
            keep = self.limits.log_bytes // 2
            with log.open("r+b") as f:
                f.seek(-keep, os.SEEK_END)
                tail = f.read()
                f.seek(0)
                f.truncate(0)
                f.write(b"[piece] ... log trimmed to its last part ...\n" + tail)


# -------------------------------------------------------------------------------------------------- steps

@dataclass
class Step:
    """One step of a piece. ``argv(seconds)`` is its command given the seconds it may take (a child process,
    stopped by its process group when they are up); ``call()`` runs in this process instead (quick steps only)
    and returns an exit status. The step runs only if ``skip()`` gives no reason, the steps it ``needs`` went
    well and at least ``min_s`` seconds are left besides the ``keep_s`` it leaves to later steps; it gets at
    most ``cap_s``."""

    name: str
    argv: Callable[[float], list[str]] | None = None
    call: Callable[[], int] | None = None
    min_s: float = 0.0
    cap_s: float = math.inf
    keep_s: float = 0.0
    needs: tuple[str, ...] = ()
    skip: Callable[[], str] = lambda: ""
    pack_while: bool = False
    ok_codes: tuple[int, ...] = (0,)


@dataclass
class Outcome:
    name: str
    state: str  # ok / failed / stopped / skipped
    detail: str = ""
    code: int | None = None
    seconds: float = 0.0


@dataclass
class PieceRun:
    """A piece's steps run against one deadline ``end`` (``time.time()`` seconds), keeping ``reserve_s`` for
    the final pack. Children write to ``log``; their PIDs are kept in ``started``."""

    steps: list[Step]
    end: float
    out: Path
    packer: Packer
    env: dict[str, str]
    cwd: Path
    log: TextIO
    reserve_s: float = 20.0
    poll_s: float = 5.0
    grace_s: float = 5.0
    outcomes: list[Outcome] = field(default_factory=list)
    started: list[int] = field(default_factory=list)

    def say(self, text: str) -> None:
        self.log.write(text + "\n")
        self.log.flush()

    def left(self) -> float:
        return self.end - time.time() - self.reserve_s

    def run(self) -> list[Outcome]:
        for step in self.steps:
            self.outcomes.append(self._one(step))
            o = self.outcomes[-1]
            self.say(f"[piece] {o.name}: {o.state}{' (' + o.detail + ')' if o.detail else ''} in {o.seconds:.1f} s; "
                     f"{max(0.0, self.end - time.time()):.0f} s to the deadline")
            self.packer.pack()
        self.packer.pack(force=True)
        return self.outcomes

    def _one(self, step: Step) -> Outcome:
        states = {o.name: o.state for o in self.outcomes}
        failed = [n for n in step.needs if states.get(n) != "ok"]
        if failed:
            return Outcome(step.name, "skipped", f"needs {', '.join(failed)}")
        if reason := step.skip():
            return Outcome(step.name, "skipped", reason)
        left = self.left() - step.keep_s
        if left < step.min_s:
            kept = f" and leaves {step.keep_s:.0f} s to later steps" if step.keep_s else ""
            return Outcome(step.name, "skipped", f"{max(self.left(), 0):.0f} s left, it needs {step.min_s:.0f}{kept}")
        seconds = min(step.cap_s, left)
        self.say(f"[piece] {step.name}: starting with {seconds:.0f} s")
        tic = time.time()
        if step.call is not None:
            try:
                with contextlib.redirect_stdout(self.log):
                    code = step.call()
            except Exception as err:  # an in-process step that breaks is a failed step, not a lost piece
                self.say(f"[piece] {step.name}: {type(err).__name__}: {err}")
                code = 1
            return Outcome(step.name, "ok" if code in step.ok_codes else "failed", f"exit {code}", code,
                           time.time() - tic)
        proc = subprocess.Popen(step.argv(seconds), stdout=self.log, stderr=subprocess.STDOUT, env=self.env,
                                cwd=self.cwd, start_new_session=True)
        self.started.append(proc.pid)
        # the group to end should whoever ends this piece not let it end its own children (a SIGKILL)
        self.say(f"[piece] {step.name}: process group {proc.pid}")
        stop_at = tic + seconds
        while True:
            try:
                code = proc.wait(timeout=max(0.05, min(self.poll_s, stop_at - time.time())))
                break
            except subprocess.TimeoutExpired:
                pass
            if time.time() >= stop_at:
                self._stop(proc)
                return Outcome(step.name, "stopped", f"its {seconds:.0f} s were up", None, time.time() - tic)
            if step.pack_while:
                self.packer.pack()
        state = "ok" if code in step.ok_codes else "failed"
        return Outcome(step.name, state, f"exit {code}", code, time.time() - tic)

    def _stop(self, proc: subprocess.Popen) -> None:
        """End a child this piece started, and whatever it started, by its process group (the child's own PID):
        SIGTERM, then SIGKILL after ``grace_s`` to whatever of the group is left. Nothing else is touched."""
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=self.grace_s)
        except subprocess.TimeoutExpired:
            pass
        if _group_alive(proc.pid):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


# --------------------------------------------------------------------------------------------- the piece

def tiny_profile() -> dict:
    """The full profile at toy sizes (width 4, a few hundred images, 1-2 epochs, 8 attacked images, no
    AutoAttack), with the engine forced on: a CPU dry run of a piece takes the GPU piece's code paths."""
    from robustode.profiles import load_profile

    full = load_profile("full")
    rob, anode = full["robustness"], full["anode"]
    rob["models"] = ["CNN", "TisODE"]
    rob["common"].update(width=4, train_size=96, val_size=32, epochs=2, batch_size=32, repetitions=1, eval_batch=64,
                         trainer="engine", concurrent_seeds=False, steady_start_epoch=1, cpu_threads=1)
    rob["evaluation"] = {"noise_images": 32, "attack_images": 8,
                         "strong": {"images": 8, "steps": [2, 3], "restarts": 1, "eot": 1},
                         "autoattack": {"images": None, "version": "standard"},
                         "sanity": {"images": 8, "tolerance": 0.0, "solver_steps": [0.25, 0.5]}}
    rob["defences"].update(randomise=["TisODE"], eot=2, steps=2, restarts=1, images=8)
    rob["datasets"] = {"MNIST": rob["datasets"]["MNIST"]}
    anode["common"].update(cpu_threads=1)
    images = anode["images"]
    images.update(datasets=["MNIST"], image_size=14, train_size=64, test_size=32, batch_size=32, epochs=1,
                  eval_batch=32, solver_check={"images": 4, "reference_tol": 1.0e-5})
    images["variants"] = {"MNIST": {k: {**v, "filters": 4} for k, v in images["variants"]["MNIST"].items()}}
    anode["instability"].update(filters=4, image_size=14, train_size=64, test_size=32, batch_size=32, epochs=2,
                                eval_batch=32)
    return {"name": "full", "robustness": rob, "anode": anode}


def load_piece_profile(spec: str) -> str | dict:
    """``full`` (or another profile's name), or a JSON file holding a profile (the dry run's tiny one)."""
    from robustode.profiles import PROFILES

    if spec in PROFILES:
        return spec
    path = Path(spec)
    if not path.is_file():
        raise PieceError(f"--profile must be one of {', '.join(PROFILES)} or a JSON profile file; got {spec!r}")
    return json.loads(path.read_text())


@contextlib.contextmanager
def _environ(values: dict[str, str]):
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _stage_data(kit: Path, fallback: Path | None) -> Path:
    """A private copy of the kit's compressed data: torchvision unpacks MNIST next to the .gz files, and the kit
    (carried again next time) must not grow by the unpacked 55 MiB."""
    source = kit / "data" if (kit / "data").is_dir() else fallback
    if source is None or not source.is_dir():
        raise PieceError(f"no data: neither {kit / 'data'} (tools/device_kit.sh) nor a --data folder")
    staged = Path(tempfile.mkdtemp(prefix="robustode-data-"))
    for path in source.rglob("*.gz"):
        dst = staged / path.relative_to(source)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dst)
    return staged


def _stage_checkpoints(kit: Path, results: Path) -> int:
    folder = kit / "checkpoints"
    count = 0
    for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
        if path.is_file():
            dst = results / "checkpoints" / path.relative_to(folder)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dst)
            count += 1
    return count


def default_steps(py: str, repo: Path, results: Path, chapters: list[Chapter], profile_arg: str, device: str,
                  tests: list[str], fill_args: list[str], startup_s: float, caps: dict[str, float] | None = None,
                  outcomes: list[Outcome] | None = None) -> list[Step]:
    """The steps of a piece, in order (see the module's doc); ``caps`` overrides steps' longest times;
    ``outcomes``: the list the piece records outcomes in (later steps look at earlier ones)."""
    only = selection(chapters)
    fill_file = results / "gpu-fill.json"
    outcomes = outcomes if outcomes is not None else []

    def ran_ok() -> bool:
        return any(o.name == "run" and o.state == "ok" for o in outcomes)

    caps = {"tests": 180.0, "fill": 150.0, "chapter 4 timing": 120.0, **(caps or {})}

    def record() -> int:
        import torch

        from robustode.results import device_name

        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        print(f"torch {torch.__version__} | device: {device_name(dev)} | chapters: "
              f"{'; '.join(c.label for c in chapters)}", flush=True)
        if device == "cuda" and dev.type != "cuda":
            print("error: a GPU piece found no CUDA device", flush=True)
            return 1
        return 0

    def count() -> int:
        from robustode.store import Store

        profile = load_piece_profile(profile_arg)
        print(count_text(gpu_pieces(profile, chapters, Store("full", results), device), chapters, device), flush=True)
        return 0

    def run_argv(seconds: float) -> list[str]:
        budget = max(1, int(seconds - startup_s))
        return [py, "-m", "robustode.piece", "advance", "--profile", profile_arg, "--budget", f"{budget}s",
                "--device", device, "--quiet", "--count", *(c.name for c in chapters), "--only", *only]

    run_min = startup_s + 5

    steps = [
        Step("device", call=record),
        Step("tests", argv=lambda s: [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], min_s=10,
             cap_s=caps["tests"], needs=("device",)),
        Step("fill", argv=lambda s: [py, str(repo / "benchmarks" / "gpu_fill.py"), "--device", device,
                                     "--budget", str(max(1, int(s - startup_s))), "--out", str(fill_file), *fill_args],
             min_s=min(30.0, caps["fill"]), cap_s=caps["fill"], keep_s=run_min if only else 0.0, needs=("tests",),
             skip=lambda: "measured by an earlier piece" if fill_file.exists() else ""),
    ]
    if any(c.cuda_timing for c in chapters):
        steps.append(Step("chapter 4 timing", argv=lambda s: [py, "-m", "robustode.piece", "attention-timing",
                                                              "--profile", profile_arg, "--device", device],
                          min_s=min(20.0, caps["chapter 4 timing"]), cap_s=caps["chapter 4 timing"],
                          keep_s=run_min if only else 0.0, needs=("tests",)))
    if only:
        steps.append(Step("run", argv=run_argv, min_s=run_min, needs=("tests",), pack_while=True, ok_codes=(0, 3)))
    # the run step's runner prints the count when it ends; else it is worked out here, if a few seconds are left
    steps.append(Step("count", call=count, min_s=10,
                      skip=lambda: "printed by the run step" if ran_ok() else ""))
    return steps


def run_piece(repo: Path, out: Path, end: float, *, dry_run: bool = False, data: Path | None = None,
              steps: list[Step] | None = None, limits: Limits = LIMITS, reserve_s: float = 20.0,
              poll_s: float = 5.0, chapters: list[str] | None = None) -> int:
    """One piece on this machine until ``end`` (``time.time()`` seconds); see the module's doc. ``dry_run``: on
    the CPU, with :func:`tiny_profile`, a private results folder and a quick test selection. ``steps``: replace
    the default steps (tests stub them). Exit status: 0 all units of the selection done, 3 more to do, 1 a
    step failed."""
    started_at = time.time()
    if end <= started_at:
        raise PieceError("the piece's deadline has already passed")
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.tmp"):
        stale.unlink()
    kit = repo / ".device"
    if not chapters:
        named = kit / "chapters"
        chapters = named.read_text().split() if named.exists() else list(CHAPTERS)
    chapter_list = chapters_of(chapters)
    scratch = Path(tempfile.mkdtemp(prefix="robustode-piece-"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(repo / "src"), str(kit / "site"), env.get("PYTHONPATH", "")) if p)
    if (kit / "commit").exists():
        env.setdefault("ROBUSTODE_GIT_COMMIT", (kit / "commit").read_text().strip())
    if dry_run:
        env.update(ROBUSTODE_ROOT=str(scratch), OMP_NUM_THREADS="1")
        profile_arg = str(scratch / "tiny-profile.json")
        Path(profile_arg).write_text(json.dumps(tiny_profile()))
        device, startup_s = "cpu", 10.0
        tests = ["tests/test_capture.py", "-k", "warm_up or evicted"]
        fill_args = ["--width", "4", "--batches", "2", "--batch-size", "8", "--streams", "2", "--processes", "2"]
        caps = {"tests": 25.0, "fill": 12.0, "chapter 4 timing": 12.0}
        results = scratch / "results" / "full"
    else:
        profile_arg, device, startup_s = "full", "cuda", 25.0
        tests = ["tests/test_engine.py", "tests/test_capture.py"]
        fill_args, caps = [], {}
        results = repo / "results" / "full"
    results.mkdir(parents=True, exist_ok=True)
    env["ROBUSTODE_DATA"] = str(_stage_data(kit, data))
    # this process's own steps (the count, the packer's view of the units) see what the children see
    with _environ({k: env[k] for k in ("ROBUSTODE_DATA", "ROBUSTODE_ROOT") if k in env}), \
            (out / LOG_NAME).open("a") as log:
        def say(text: str) -> None:
            log.write(text + "\n")
            log.flush()

        say(f"[piece] start; deadline in {end - started_at:.0f} s; {'dry run (CPU, tiny profile); ' if dry_run else ''}"
            f"{_stage_checkpoints(kit, results)} checkpoint(s) from the kit; data staged in {env['ROBUSTODE_DATA']}")
        profile = load_piece_profile(profile_arg)
        outcomes: list[Outcome] = []

        def manifest() -> dict:
            return {"chapters": [c.name for c in chapter_list], "dry_run": dry_run, "commit": env.get("ROBUSTODE_GIT_COMMIT"),
                    "started": started_at, "deadline": end, "steps": [o.__dict__ for o in outcomes]}

        def unit_list() -> list:
            return piece_units(profile, chapter_list)

        packer = Packer(results, out, started_at, limits, unit_list, manifest, say)
        if steps is None:
            steps = default_steps(sys.executable, repo, results, chapter_list, profile_arg, device, tests, fill_args,
                                  startup_s, caps, outcomes)
        packer.prepare()
        piece = PieceRun(steps, end, out, packer, env, repo, log, reserve_s=reserve_s, poll_s=poll_s)
        piece.outcomes = outcomes
        piece.run()
        files = check_out(out, limits)
        say(f"[piece] done {end - time.time():.0f} s before the deadline; $OUT: " +
            ", ".join(f"{f.name} {f.stat().st_size / MiB:.2f} MiB" for f in files))
    shutil.rmtree(env["ROBUSTODE_DATA"], ignore_errors=True)
    states = {o.name: o for o in outcomes}
    print((out / LOG_NAME).read_text()[-6000:])
    if any(o.state == "failed" for o in outcomes):
        return 1
    run = states.get("run")
    return 0 if run is not None and run.code == 0 else 3


# ------------------------------------------------------------------------------------------------ unpack

def _parts(folder: Path, stem: str) -> list[Path]:
    single = folder / f"{stem}.tar.gz"
    split = sorted(folder.glob(f"{stem}.tar.gz.*of*"), key=lambda p: int(p.name.rsplit(".", 1)[1].split("of")[0]))
    if single.exists() and not split:
        return [single]
    if not split:
        return []
    n = {int(p.name.rsplit("of", 1)[1]) for p in split}
    if len(n) != 1 or len(split) != next(iter(n)):
        raise PieceError(f"{stem}: incomplete or mixed parts in {folder}: {', '.join(p.name for p in split)}")
    return split


def _safe_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    members = tar.getmembers()
    for m in members:
        if m.name.startswith("/") or ".." in Path(m.name).parts or not (m.isfile() or m.isdir()):
            raise PieceError(f"refusing archive member {m.name!r}")
    return members


def merge_costs(local: dict, device: dict) -> dict:
    """Both measurements, per device and kind of unit; where both have one, the later (``measured``) wins."""
    merged = {section: dict(kinds) for section, kinds in local.items()}
    for section, kinds in device.items():
        for kind, entry in kinds.items():
            mine = merged.setdefault(section, {}).get(kind)
            if mine is None or str(entry.get("measured", "")) >= str(mine.get("measured", "")):
                merged[section][kind] = entry
    return merged


def unpack(folder: Path, root: Path, profile: str | dict = "full", allow_dry_run: bool = False) -> dict:
    """Put a piece's returned files into the results folder ``root``; drop the checkpoints and partial
    evaluations of the piece's units that are now done. A dry run's toy-sized results are refused unless
    ``allow_dry_run`` (they would sit beside the real ones in the folders the book reads). Returns what happened."""
    from robustode.results import write_json_atomic
    from robustode.store import Store

    report: dict = {"results": 0, "checkpoints": 0, "manifest": None}
    archives = {stem: _parts(folder, stem) for stem in ("results", "checkpoints")}
    if not archives["results"]:
        raise PieceError(f"no results.tar.gz in {folder}: not a piece's returned files")
    with tempfile.TemporaryDirectory(prefix="piece-unpack-") as tmp:
        wholes = {}
        for stem, parts in archives.items():
            if parts:
                wholes[stem] = Path(tmp) / f"{stem}.tar.gz"
                with wholes[stem].open("wb") as dst:
                    for part in parts:
                        dst.write(part.read_bytes())
        with tarfile.open(wholes["results"], "r:gz") as tar:
            found = [m for m in _safe_members(tar) if m.name == MANIFEST]
            report["manifest"] = json.loads(tar.extractfile(found[0]).read()) if found else None
        if (report["manifest"] or {}).get("dry_run") and not allow_dry_run:
            raise PieceError("these files come from a dry run (toy sizes): not unpacked into the results")
        for stem, whole in wholes.items():
            with tarfile.open(whole, "r:gz") as tar:
                for member in _safe_members(tar):
                    if not member.isfile() or member.name == MANIFEST:
                        continue
                    payload = tar.extractfile(member).read()
                    target = root / member.name
                    if member.name == "costs.json" and target.exists():
                        write_json_atomic(target, merge_costs(json.loads(target.read_text()), json.loads(payload)))
                    else:
                        target.parent.mkdir(parents=True, exist_ok=True)
                        tmp_target = target.with_name(f".{target.name}.unpack.tmp")
                        tmp_target.write_bytes(payload)
                        os.replace(tmp_target, target)
                    report[stem] += 1
    chapters = (report["manifest"] or {}).get("chapters") or []
    if chapters and not (report["manifest"] or {}).get("dry_run"):
        report["dropped"] = [str(p) for p in prune_done(Store("full", root), piece_units(profile, chapters_of(chapters)))]
    return report


# ------------------------------------------------------------------------------------------------- count

def gpu_pieces(profile: str | dict = "full", chapters: list[Chapter] | None = None, store=None, device: str = "cuda",
               seconds_per_piece: float = RUNNER_SECONDS) -> dict:
    """How many pieces the GPU share of ``profile`` still needs, from the plan's measured costs on ``device``:
    the units' epochs and evaluation stages laid into pieces of ``seconds_per_piece`` in plan order (an upper
    bound: the runner also fills a piece's end with later units' epochs). A kind of unit with no cost on that
    device is listed under ``unmeasured``; an epoch or stage longer than a piece under ``too_long``."""
    from robustode import plan
    from robustode.store import Store

    chapters = chapters if chapters is not None else list(CHAPTERS.values())
    store = store or Store(plan.profile_name(profile))
    costs = plan.load_costs(store).get(device, {})
    units = piece_units(profile, chapters)
    report: dict = {"units": len(units), "done": 0, "blocked": 0, "unmeasured": [], "too_long": [], "seconds": 0.0}
    pieces, room = 0, 0.0
    for unit in units:
        if unit.requires():
            report["blocked"] += 1
            continue
        progress = unit.status(store)
        if progress.state == plan.DONE:
            report["done"] += 1
            continue
        cost = costs.get(unit.kind)
        if cost is None or "epoch_s" not in cost:
            if unit.kind not in report["unmeasured"]:
                report["unmeasured"].append(unit.kind)
            continue
        stages = cost.get("stages_s", {})
        items = [cost["epoch_s"]] * progress.epochs_left + [stages.get(s, 0.0) for s in progress.stages_left]
        for item in items:
            report["seconds"] += item
            if item > seconds_per_piece:
                report["too_long"].append(f"{unit.id}: a piece of {item:.0f} s")
                continue
            if item > room:
                pieces, room = pieces + 1, seconds_per_piece
            room -= item
    report["pieces"] = pieces
    report["seconds_per_piece"] = seconds_per_piece
    return report


def count_text(report: dict, chapters: list[Chapter], device: str = "cuda") -> str:
    from robustode.plan import fmt_seconds

    lines = [f"GPU share of the full profile ({'; '.join(c.label for c in chapters)}):",
             f"  {report['units']} units: {report['done']} done, {report['blocked']} blocked (data missing)"]
    per = f"{report['seconds_per_piece']:.0f} s of runner time (one 15-minute lease each)"
    if report["unmeasured"]:
        lines.append(f"  not measured on {device}: {', '.join(report['unmeasured'])} — a device piece measures them "
                     "(the plan's measure step writes results/full/costs.json)")
    if report["unmeasured"] and not report["seconds"]:
        lines.append(f"  pieces needed: not measured yet (pieces of {per})")
    elif report["unmeasured"]:
        lines.append(f"  at least {report['pieces']} piece(s) of {per} for the measured units "
                     f"(about {fmt_seconds(report['seconds'])} of {device} time); the unmeasured ones come on top")
    else:
        lines.append(f"  about {fmt_seconds(report['seconds'])} of {device} time left -> {report['pieces']} piece(s) "
                     f"of {per}")
    for item in report["too_long"]:
        lines.append(f"  cannot run in any piece: {item}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- commands

def _git_commit(repo: Path) -> str:
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return head.stdout.strip() + ("-dirty" if dirty else "")


def _download_autoattack(repo: Path) -> Path:
    """pyautoattack's code (not its 45 MB example model), reused from the last kit when it is there."""
    old = repo / ".device" / "site"
    if (old / "pyautoattack").is_dir():
        return old
    tmp = Path(tempfile.mkdtemp(prefix="piece-site-"))
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "-d", str(tmp / "wheel"), "pyautoattack==0.2.0"], check=True)
    import zipfile

    wheel = next((tmp / "wheel").glob("pyautoattack-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if not name.startswith("pyautoattack/examples/"):
                zf.extract(name, tmp / "site")
    return tmp / "site"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m robustode.piece", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    kit = sub.add_parser("kit", help="write .device/ for a piece of these chapters (here)")
    kit.add_argument("chapters", nargs="*", default=["robustness"], help=f"of {', '.join(CHAPTERS)}")
    run = sub.add_parser("run", help="run one piece (on the GPU machine; tools/device_run.sh)")
    run.add_argument("--end", type=float, required=True, help="the deadline, in seconds since the epoch")
    run.add_argument("--out", type=Path, required=True)
    run.add_argument("--dry-run", action="store_true", help="on the CPU, tiny profile, private results folder")
    run.add_argument("--data", type=Path, help="data folder when the kit has none (dry runs)")
    run.add_argument("--chapters", nargs="+", help="default: those the kit names")
    adv = sub.add_parser("advance", help="plan.advance for a profile name or JSON file (a piece's runner)")
    adv.add_argument("--profile", default="full")
    adv.add_argument("--budget", required=True)
    adv.add_argument("--only", nargs="+", required=True)
    adv.add_argument("--device", default="cuda", choices=("auto", "cpu", "cuda"))
    adv.add_argument("--quiet", action="store_true")
    adv.add_argument("--count", nargs="+", metavar="CHAPTER", help="then print how many GPU pieces these chapters need")
    timing = sub.add_parser("attention-timing", help="chapter 4's first-call timing rows on this device only")
    timing.add_argument("--profile", default="full")
    timing.add_argument("--device", default="cuda", choices=("cpu", "cuda"))
    unp = sub.add_parser("unpack", help="put a piece's returned files into results/full (here)")
    unp.add_argument("folder", type=Path)
    unp.add_argument("--allow-dry-run", action="store_true", help="unpack a dry run's toy results too")
    cnt = sub.add_parser("count", help="how many GPU pieces the full profile still needs")
    cnt.add_argument("--profile", default="full")
    cnt.add_argument("--device", default="cuda", choices=("cpu", "cuda"))
    cnt.add_argument("--chapters", nargs="+", default=list(CHAPTERS))
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except (PieceError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    from robustode.paths import data_dir, project_root, results_dir

    repo = project_root()
    if args.command == "kit":
        chapters = chapters_of(args.chapters)
        dataset_files([d for c in chapters for d in c.datasets], data_dir())  # before any download
        site = _download_autoattack(repo) if any(c.autoattack for c in chapters) else None
        sizes = build_kit(repo, args.chapters, data=data_dir(), results=results_dir("full"), site=site,
                          commit=_git_commit(repo))
        print(f"kit for {', '.join(args.chapters)}: {sizes['total'] / MiB:.1f} MiB will travel of "
              f"{LIMITS.carry_bytes / MiB:.0f} (tree {sizes['tree'] / MiB:.1f}, data {sizes['data'] / MiB:.1f}, "
              f"AutoAttack {sizes['site'] / MiB:.1f}, {sizes['checkpoint_files']} live checkpoint(s) "
              f"{sizes['checkpoints'] / MiB:.1f} MiB); carry only .device")
        return 0
    if args.command == "run":
        return run_piece(repo, args.out, args.end, dry_run=args.dry_run, data=args.data, chapters=args.chapters,
                         poll_s=1.0 if args.dry_run else 5.0, reserve_s=5.0 if args.dry_run else 20.0)
    if args.command == "advance":
        from robustode import plan
        from robustode.core.budget import parse_duration

        profile = load_piece_profile(args.profile)
        outcome = plan.advance(profile, parse_duration(args.budget), args.only, args.device, progress=not args.quiet)
        status = plan.exit_status(outcome)
        print(f"{'all done' if status == 0 else 'more to do'}: {len(outcome.finished)} unit(s) finished in this call, "
              f"{outcome.remaining} left to run", flush=True)
        if args.count:
            from robustode.profiles import resolve_device

            chapters, where = chapters_of(args.count), resolve_device(args.device).type
            print(count_text(gpu_pieces(profile, chapters, device=where), chapters, where), flush=True)
        return status
    if args.command == "attention-timing":
        from robustode.chapters import attention

        profile = load_piece_profile(args.profile)
        name = profile if isinstance(profile, str) else profile["name"]
        if isinstance(profile, dict) and "attention" not in profile:
            from robustode.profiles import load_profile

            profile = {**profile, "attention": load_profile(name)["attention"]}
        runs = attention.run.first_call(profile, args.device, results_dir(name), targets=[args.device])
        print(f"chapter 4 first-call timing on {args.device}: {len(runs)} run(s) stored")
        return 0
    if args.command == "unpack":
        report = unpack(args.folder, results_dir("full"), allow_dry_run=args.allow_dry_run)
        print(f"unpacked {report['results']} results file(s) and {report['checkpoints']} checkpoint(s); dropped "
              f"{len(report.get('dropped', []))} file(s) of units now done")
        return 0
    if args.command == "count":
        chapters = chapters_of(args.chapters)
        profile = load_piece_profile(args.profile)
        print(count_text(gpu_pieces(profile, chapters, device=args.device), chapters, args.device))
        return 0
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
