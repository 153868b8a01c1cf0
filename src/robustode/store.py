"""The results store: the one place that knows where a profile's runs leave their traces.

Under ``results/<profile>/``:

* ``<experiment>/<run>.json`` — a finished run's results file (metrics and provenance), what the book reads;
* ``checkpoints/<experiment>/<run>-<key>.pt`` — resumable training state of an unfinished run, written every
  epoch and removed once the trained model is saved;
* ``models/<experiment>/<run>-<key>.pt`` — a trained model (the selected weights and the training history),
  small enough to commit, so a finished model can be re-evaluated without retraining;
* ``partial/<experiment>/<run>-<key>.json`` — the evaluation stages a run has finished so far, so a long
  evaluation stopped by a budget resumes at the next stage;
* ``locks/<experiment>/<run>.lock`` — held by the process computing that run (two runners never compute one
  run twice). The file names the process, its host and, for a scheduler job, the job (``Store(owner=...)``);
  a lock whose process is gone from this host is taken over, and so is one left by the same job before it
  was requeued (on the same host or another); a lock held from another host by another job is respected.

``<key>`` is :func:`robustode.results.config_key` of the parameters that determine the file's content
(training parameters for checkpoints and models, all parameters for partial evaluations), so a changed
profile never resumes a stale file.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from robustode.core.training import save_atomic
from robustode.paths import results_dir
from robustode.profiles import plain
from robustode.results import config_key, load_results, load_run, write_json_atomic, write_result
from robustode.wording import not_run  # noqa: F401  (re-exported: the store's reasons use the one wording)

MODEL_FORMAT = "robustode.model/1"


class RunLocked(RuntimeError):
    """Another live process is computing this run."""


class Store:
    """A profile's results folder (``results/<profile>`` unless ``root`` is given). ``owner`` names a scheduler
    job ("slurm:1234_5") whose process holds the locks: the same job requeued takes its own stale locks over."""

    def __init__(self, profile: str, root: Path | str | None = None, owner: str = ""):
        self.profile = profile
        self.root = Path(root) if root is not None else results_dir(profile)
        if any(c.isspace() for c in owner):
            raise ValueError(f"a lock owner is one word, got {owner!r}")
        self.owner = owner

    def __repr__(self) -> str:
        return f"Store({self.profile!r}, {str(self.root)!r})"

    # ------------------------------------------------------------------ results files
    def runs(self, experiment: str) -> list[dict]:
        return load_results(self.root, experiment)

    def run(self, experiment: str, run: str, params: dict | None = None) -> dict | None:
        """The stored run, or ``None`` (absent, or stored with other parameters than ``params``)."""
        return load_run(self.root, experiment, run, params)

    def write(self, experiment: str, run: str, **fields: Any) -> dict:
        write_result(self.root, experiment, run, profile=self.profile, **fields)
        return load_run(self.root, experiment, run)

    def pending(self) -> str:
        """Why a planned run of this profile has no results yet (for "not run" rows)."""
        return f"to be computed by robustode run --profile {self.profile}"

    # ------------------------------------------------------------------ side files
    def _side(self, kind: str, experiment: str, run: str, params: dict, suffix: str) -> Path:
        return self.root / kind / experiment / f"{run}-{config_key(params)}{suffix}"

    def checkpoint(self, experiment: str, run: str, params: dict, suffix: str = ".pt") -> Path:
        return self._side("checkpoints", experiment, run, params, suffix)

    def model_file(self, experiment: str, run: str, params: dict) -> Path:
        return self._side("models", experiment, run, params, ".pt")

    def partial_file(self, experiment: str, run: str, params: dict) -> Path:
        return self._side("partial", experiment, run, params, ".json")

    # ------------------------------------------------------------------ trained models
    def save_model(self, experiment: str, run: str, params: dict, state_dict: dict, **extra: Any) -> Path:
        """Keep a trained model (weights plus JSON-like ``extra``: history, trainer) and drop its resume state."""
        path = self.model_file(experiment, run, params)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_atomic({"format": MODEL_FORMAT, "params": plain(params), "model": state_dict, **extra}, path)
        for stale in self.checkpoint(experiment, run, params).parent.glob(f"{run}-{config_key(params)}.*"):
            stale.unlink()
        return path

    def load_model(self, experiment: str, run: str, params: dict) -> dict | None:
        """A saved model's payload (``weights_only=True``), or ``None`` when it has not been trained."""
        path = self.model_file(experiment, run, params)
        if not path.exists():
            return None
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("format") != MODEL_FORMAT:
            raise ValueError(f"{path} is not a robustode model file (format {state.get('format')!r})")
        return state

    # ------------------------------------------------------------------ partial evaluations
    def load_partial(self, experiment: str, run: str, params: dict) -> dict:
        path = self.partial_file(experiment, run, params)
        return json.loads(path.read_text()) if path.exists() else {}

    def save_partial(self, experiment: str, run: str, params: dict, stages: dict) -> None:
        write_json_atomic(self.partial_file(experiment, run, params), stages)

    def in_progress(self, experiment: str) -> list[str]:
        """The runs of ``experiment`` whose evaluation has started and not finished (their partial files; a finished
        run's is dropped)."""
        folder = self.root / "partial" / experiment
        return sorted(p.stem.rsplit("-", 1)[0] for p in folder.glob("*.json")) if folder.is_dir() else []

    def drop_partial(self, experiment: str, run: str, params: dict) -> None:
        self.partial_file(experiment, run, params).unlink(missing_ok=True)

    # ------------------------------------------------------------------ locks
    @contextlib.contextmanager
    def lock(self, experiment: str, run: str) -> Iterator[None]:
        """Hold ``run``'s lock while computing it; :class:`RunLocked` if a live process holds it."""
        path = self.root / "locks" / experiment / f"{run}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        # the lock appears with its holder already written in it (a hard link of a finished file is atomic and fails
        # when the lock exists), so another runner never reads an empty lock and takes it for a stale one
        holder_text = " ".join(filter(None, (str(os.getpid()), socket.gethostname(), self.owner)))
        mine = path.with_name(f"{path.name}.{os.getpid()}.{socket.gethostname()}")
        mine.write_text(holder_text)
        try:
            for _ in range(2):
                try:
                    _create_with(mine, path, holder_text)
                except FileExistsError:
                    holder = _holder_in(path)
                    if holder is not None and _holds(holder, self.owner):
                        pid, host, owner = holder
                        where = "" if host == socket.gethostname() else f" on {host}"
                        job = f" (job {owner})" if owner else ""
                        hint = f"; if it is gone, delete {path}" if where else ""
                        raise RunLocked(f"{experiment}/{run} is being computed by process {pid}{where}{job}{hint}") from None
                    path.unlink(missing_ok=True)  # its process is gone, or it is this job's own before a requeue
                    continue
                break
            else:  # pragma: no cover - a third process raced us twice
                raise RunLocked(f"{experiment}/{run} is being computed by another process")
        finally:
            mine.unlink(missing_ok=True)
        try:
            yield
        finally:
            path.unlink(missing_ok=True)


def _create_with(source: Path, path: Path, text: str) -> None:
    """Create ``path`` holding ``text`` in one step (a hard link to ``source``, which holds it); FileExistsError if
    it exists. Where the file system has no hard links, an exclusive create then a write (a short window in which
    the file is empty)."""
    try:
        os.link(source, path)
    except FileExistsError:
        raise
    except OSError:  # no hard links here
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)


def _holder_in(path: Path) -> tuple[int, str, str] | None:
    """(pid, host, owner) from a lock file; a bare pid (the older format) is a process on this host."""
    try:
        words = path.read_text().split()
        return int(words[0]), words[1] if len(words) > 1 else socket.gethostname(), words[2] if len(words) > 2 else ""
    except (OSError, ValueError, IndexError):
        return None


def _holds(holder: tuple[int, str, str], owner: str) -> bool:
    """Whether the lock's holder may still be computing: not when it is this same job (requeued) or a process
    gone from this host; a process on another host cannot be checked from here, so it holds."""
    pid, host, held_by = holder
    if owner and held_by == owner:
        return False
    if host == socket.gethostname():
        return _alive(pid)
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
