"""Results files: one JSON per run under ``results/<profile>/<experiment>/``, written atomically.

Each file carries its provenance (git commit, package versions, device, parameters, seed, start and
end time) so that every number in the book can be traced to the run that produced it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import platform
import subprocess
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from robustode.paths import project_root
from robustode.profiles import plain

PACKAGES = ("robustode", "torch", "torchdiffeq", "torchvision", "numpy")


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def git_commit() -> str | None:
    """The checkout's HEAD; in a copy without ``.git`` (a GPU machine's), ``$ROBUSTODE_GIT_COMMIT`` if set."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        out = None
    if out is not None and out.returncode == 0 and out.stdout.strip():
        return out.stdout.strip()
    return os.environ.get("ROBUSTODE_GIT_COMMIT") or None


def git_dirty() -> bool | None:
    """Whether the checkout had uncommitted changes to tracked files outside ``results/`` (``None`` without git): a
    run made from a modified tree cites its commit but not exactly that code. Results files are not code: runners
    write them into the tracked ``results/`` while they run, which would otherwise mark every run dirty."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results"],
                             cwd=project_root(), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


_PINNED: dict[str, tuple[str | None, bool | None]] = {}


def pin_code_state() -> tuple[str | None, bool | None]:
    """Record the checkout's commit and whether its code is modified, as they are now, for this process's results
    files. A runner loads its code when it starts and may write results hours later, after the checkout has moved
    on: pinned, its files cite the code that computed them. Called by the command line before any work."""
    state = _PINNED[str(project_root())] = (git_commit(), git_dirty())
    return state


def code_state() -> tuple[str | None, bool | None]:
    """(commit, dirty) as pinned by :func:`pin_code_state` for this project, else as they are now."""
    pinned = _PINNED.get(str(project_root()))
    return pinned if pinned is not None else (git_commit(), git_dirty())


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, {threads} thread{'s' * (threads != 1)})"


def provenance(device: torch.device | str) -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    commit, dirty = code_state()
    return {
        "git_commit": commit,
        "git_dirty": dirty,
        "versions": versions,
        "python": platform.python_version(),
        "device": device_name(device),
    }


# How a run is executed, or how many runs a profile makes, not what one run computes: changing one must not
# orphan stored results or checkpoints.
EXECUTION_ONLY = frozenset({"trainer", "concurrent_seeds", "cpu_threads", "threads", "checkpoint", "resume", "seeds",
                            "repetitions"})


def config_key(params: dict) -> str:
    """A short stable hash of the parameters that change a run's numbers (not :data:`EXECUTION_ONLY`):
    a stored run is reused, and a checkpoint resumed, only if these match exactly."""
    numeric = {k: plain(v) for k, v in params.items() if k not in EXECUTION_ONLY}
    return hashlib.sha256(json.dumps(numeric, sort_keys=True, default=str).encode()).hexdigest()[:12]


def write_json_atomic(path: Path, payload: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(dumps_results(payload))
    os.replace(tmp, path)
    return path


def dumps_results(payload: Any) -> str:
    """``payload`` as indented JSON (one space a level, as ``json.dumps(indent=1)``), except that a list of numbers,
    strings, booleans or nulls is written on one line. A training history holds a loss and two NFE counts per
    iteration; one per line that costs a third of a results file (about 10 MB of the committed results), and a diff
    of a results file still reads key by key. ``json.loads`` gives back exactly what ``indent=1`` would."""
    plain_payload = json.loads(json.dumps(payload, default=_jsonable))  # keys to strings, tensors to lists
    return _dumps_level(plain_payload, 0)


def _dumps_level(value: Any, level: int) -> str:
    if isinstance(value, dict) and value:
        parts = [f"{json.dumps(key)}: {_dumps_level(item, level + 1)}" for key, item in value.items()]
        opening, closing = "{}"
    elif isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
        parts = [_dumps_level(item, level + 1) for item in value]
        opening, closing = "[]"
    else:  # a scalar, an empty container, or a list of scalars: one line
        return json.dumps(value)
    pad = " " * (level + 1)
    return opening + "\n" + ",\n".join(pad + part for part in parts) + "\n" + " " * level + closing


def _jsonable(value: Any) -> Any:
    from collections.abc import Mapping

    if isinstance(value, Mapping):  # read-only settings
        return dict(value)
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a results file")


def run_path(results_dir: Path, experiment: str, run: str) -> Path:
    return Path(results_dir) / experiment / f"{run}.json"


def write_result(
    results_dir: Path,
    experiment: str,
    run: str,
    *,
    profile: str,
    params: dict,
    seed: int | None,
    started: str,
    device: torch.device | str,
    metrics: dict,
) -> Path:
    """Write one run's results file; ``metrics`` holds everything the book will show of it."""
    payload = {
        "experiment": experiment,
        "run": run,
        "profile": profile,
        "seed": seed,
        "params": params,
        "config_key": config_key(params),
        "started": started,
        "finished": now(),
        "provenance": provenance(device),
        "metrics": metrics,
    }
    return write_json_atomic(run_path(results_dir, experiment, run), payload)


def load_run(results_dir: Path, experiment: str, run: str, params: dict | None = None) -> dict | None:
    """A stored run, or ``None`` if absent (or stored with other parameters than ``params``)."""
    path = run_path(results_dir, experiment, run)
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    # The key is recomputed from the stored parameters, so files written before a change of the key's rule stay valid.
    if params is not None and config_key(data.get("params", {})) != config_key(params):
        return None
    return data


def load_results(results_dir: Path, experiment: str) -> list[dict]:
    folder = Path(results_dir) / experiment
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def nearest(times: list[float], when: float) -> int:
    """The index of the stored time nearest ``when`` (field profiles and read-outs store grids of times)."""
    return min(range(len(times)), key=lambda i: abs(times[i] - when))


def pack_flags(flags: Iterable[bool]) -> str:
    """Per-image booleans (robust or not) as compact text for a results file: ``"<count>:<hex of the bits>"``."""
    bits = [bool(f) for f in flags]
    value = sum(1 << i for i, f in enumerate(bits) if f)
    return f"{len(bits)}:{value:x}"


def unpack_flags(text: str) -> list[bool]:
    """The inverse of :func:`pack_flags`."""
    count, _, hexa = text.partition(":")
    value = int(hexa, 16)
    return [bool(value >> i & 1) for i in range(int(count))]


def mean_sd(values: Iterable[float]) -> tuple[float, float, int]:
    """Mean and sample standard deviation (ddof = 1, as the papers' +-); sd is nan for one value."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(vals)
    if n == 0:
        return math.nan, math.nan, 0
    mean = sum(vals) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else math.nan
    return mean, sd, n


def fmt_mean_sd(values: Iterable[float], digits: int = 1, scale: float = 1.0) -> str:
    mean, sd, n = mean_sd(values)
    if n == 0:
        return "not run"
    if n == 1:
        return f"{scale * mean:.{digits}f} (n = 1)"
    return f"{scale * mean:.{digits}f} ± {scale * sd:.{digits}f} (n = {n})"
