"""Inference timing done carefully: warm-up calls, device synchronisation, the median of repeats, NFE per pass.

:func:`time_forward` times a model already in memory. :func:`fresh_process_first_calls` starts a new
Python process and times each model's *first* forward pass there, in a given order: the cost a
measurement pays when it skips the warm-up (lazy initialisation of the math libraries, thread pools
and, on a GPU, the CUDA context and kernels), which falls on whichever model is timed first.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

import torch
from torch import nn

from robustode.results import device_name


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work: without it a timer measures kernel launches, not the computation."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def cpu_threads(count: int | None) -> Iterator[None]:
    """Run with ``count`` intra-op CPU threads, restored afterwards; ``None`` keeps torch's setting.

    Small models are dominated by per-operation overhead, which extra threads only add to when the
    cores are shared with other work.
    """
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


@torch.inference_mode()
def time_forward(
    model: nn.Module, x: torch.Tensor, warmup: int = 3, repeats: int = 10, autocast_dtype: torch.dtype | None = None
) -> dict:
    """Median wall-clock seconds of ``model(x)`` over ``repeats`` calls after ``warmup`` untimed ones.

    The device is synchronised before and after each call; NFE is the forward evaluations the ODE
    solver made per call (0 for models without an ODE block).
    """
    if warmup < 1 or repeats < 1:
        raise ValueError(f"warmup and repeats must be >= 1, got warmup={warmup}, repeats={repeats}")
    model.eval()
    device = x.device
    times, nfes = [], []
    for i in range(warmup + repeats):
        synchronize(device)
        tic = time.perf_counter()
        with autocast(device, autocast_dtype):
            model(x)
        synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - tic)
            nfes.append(getattr(model, "nfe_forward", 0))
    median = statistics.median(times)
    q1, _, q3 = statistics.quantiles(times, n=4) if len(times) > 1 else (median, median, median)
    return {
        "device": device_name(device),
        "device_type": device.type,
        "batch": len(x),
        "warmup": warmup,
        "repeats": repeats,
        "autocast": None if autocast_dtype is None else str(autocast_dtype).removeprefix("torch."),
        "median_s": median,
        "q1_s": q1,
        "q3_s": q3,
        "images_per_s": len(x) / median,
        "nfe_forward": statistics.median(nfes),
    }


def _child(spec: dict) -> dict:
    """Runs inside the fresh process: build the models, then time each one's first and warm calls in order."""
    from robustode.models import build_model

    device = torch.device(spec["device"])
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    x = torch.rand(spec["batch"], *spec["shape"])
    models = {}
    for name in spec["models"]:
        models[name] = build_model(name, spec["dataset"]).eval()
    out = []
    with torch.inference_mode():
        for name in spec["models"]:
            tic = time.perf_counter()
            model, xd = models[name].to(device), x.to(device)
            synchronize(device)
            moved = time.perf_counter() - tic
            tic = time.perf_counter()
            model(xd)
            synchronize(device)
            first = time.perf_counter() - tic
            warm = time_forward(model, xd, warmup=1, repeats=spec["repeats"])
            out.append({"model": name, "to_device_s": moved, "first_call_s": first, "warm_median_s": warm["median_s"],
                        "nfe_forward": warm["nfe_forward"]})
    return {"device": device_name(device), "calls": out}


def fresh_process_first_calls(
    models: list[str], dataset: str, shape: tuple[int, ...], device: str = "cpu", batch: int = 1, repeats: int = 10,
    threads: int | None = None, timeout: float = 600.0,
) -> dict:
    """In a new Python process, time the first forward pass of each registered model in the given order.

    The models are freshly initialised (their weights do not matter for start-up costs); imports are
    done before any clock starts. Returns the child's measurements: ``to_device_s``, ``first_call_s``,
    ``warm_median_s`` and ``nfe_forward`` per model, in call order.
    """
    spec = {"models": list(models), "dataset": dataset, "shape": list(shape), "device": device, "batch": batch,
            "repeats": repeats, "threads": threads}
    code = "import json, sys; from robustode.core.timing import _child; print(json.dumps(_child(json.loads(sys.argv[1]))))"
    done = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"timing process failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
