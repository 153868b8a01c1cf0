"""What one training step costs: peak memory and wall time, measured three ways.

Chen et al. (2018) claim the adjoint method trains an ODE block in O(1) memory in the number of
solver steps, where backpropagating through the solver stores every step. Python's ``tracemalloc``
cannot test that: it does not see torch's C++ allocations. We measure instead

* **saved for backward** — the peak of the bytes autograd holds for the backward pass, followed
  exactly through ``torch.autograd.graph.saved_tensors_hooks`` (each storage counted once, freed
  when autograd drops it). Deterministic, the same on every device: the activation memory.
* **allocator peak** — the peak of bytes allocated on the CPU above the level at the start of the
  step, from ``torch.profiler``'s memory events (every tensor, transient ones included).
* **CUDA peak** — ``torch.cuda.max_memory_allocated`` above the level at the start, on a GPU.

and time the step as the median of repeats after warm-up calls, synchronising a GPU around each.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch


@dataclass
class SavedTensorMeter:
    """Context manager: live and peak bytes of the tensors autograd saves for backward.

    Storages shared by several saved tensors (views, a tensor saved by two ops) count once, as
    long as any of them is alive. First-order gradients only (saved tensors come back detached).
    """

    live: int = 0
    peak: int = 0
    _storages: dict[int, list[int]] = field(default_factory=dict)  # data_ptr -> [references, bytes]

    def _pack(self, tensor: torch.Tensor) -> _Held:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        entry = self._storages.get(key)
        if entry is None:
            entry = self._storages[key] = [0, storage.nbytes()]
            self.live += entry[1]
            self.peak = max(self.peak, self.live)
        entry[0] += 1
        # Keep a detached alias: holding the tensor itself would tie it to its own grad_fn in a
        # reference cycle that only the garbage collector breaks, and bytes would look alive too long.
        return _Held(tensor.detach(), key, self)

    def _release(self, key: int) -> None:
        entry = self._storages[key]
        entry[0] -= 1
        if entry[0] == 0:
            self.live -= entry[1]
            del self._storages[key]

    def __enter__(self) -> SavedTensorMeter:
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, _Held.unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)


class _Held:
    """What autograd stores instead of a saved tensor; dropping it releases the tensor's bytes."""

    __slots__ = ("tensor", "key", "meter")

    def __init__(self, tensor: torch.Tensor, key: int, meter: SavedTensorMeter):
        self.tensor, self.key, self.meter = tensor, key, meter

    def unpack(self) -> torch.Tensor:
        return self.tensor

    def __del__(self):
        self.meter._release(self.key)


def saved_bytes_peak(step: Callable[[], object]) -> int:
    """Peak bytes held for backward while ``step()`` runs (its forward and its backward)."""
    with SavedTensorMeter() as meter:
        step()
    return meter.peak


# What torch.profiler's C++ side writes straight to the process's stderr around a CPU profile: kineto's
# trace points at each start and stop; on a machine without a GPU, its failed CUDA device query; and
# c10's one-time notice that a block allocated before the profile was freed inside it. The first two
# say nothing about the measurement. The third is the caveat documented in allocator_peak(). Any other
# line is passed on.
PROFILER_NOISE = (
    re.compile(r"^USDT:.*\] profiler_(start|stop)\s*$"),
    re.compile(r"^ERROR:.*\] gpuGetDeviceCount failed with code \d+\s*$"),
    re.compile(r"^\[W.*CPUAllocator\.cpp:\d+\] Memory block of unknown size was allocated before the profiling started"),
)


@contextlib.contextmanager
def quiet_profiler(noise: tuple[re.Pattern, ...] = PROFILER_NOISE) -> Iterator[None]:
    """Hold back the profiler's known noise written to file descriptor 2; pass every other line on.

    The lines come from C++, below Python's ``sys.stderr``, so the descriptor itself is redirected
    into a temporary file for the duration and filtered afterwards.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable descriptor 2 (an embedded interpreter): nothing to filter
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [line for line in held.read().decode(errors="replace").splitlines(keepends=True)
                    if not any(p.match(line.rstrip("\n")) for p in noise)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def allocator_peak(step: Callable[[], object]) -> int:
    """Peak CPU bytes allocated above the starting level while ``step()`` runs (torch.profiler memory events).

    A block allocated before the step and freed during it (a gradient replaced by the step) has no
    size in the profile, so it is not credited back: the peak is an upper bound by at most those bytes.
    """
    from torch.profiler import ProfilerActivity, profile

    with quiet_profiler(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    cpu = torch.autograd.DeviceType.CPU
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]" and e.device_type() == cpu]
    events.sort(key=lambda e: e.start_ns())
    return max(itertools.accumulate((e.nbytes() for e in events), initial=0))


def cuda_peak(step: Callable[[], object], device: torch.device) -> int:
    """Peak CUDA bytes allocated above the starting level while ``step()`` runs."""
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def wall_times(step: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> list[float]:
    """Seconds of ``repeats`` calls of ``step()`` after ``warmup`` untimed ones (GPU synchronised)."""
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1, got warmup={warmup}, repeats={repeats}")
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    times = []
    for i in range(warmup + repeats):
        sync()
        tic = time.perf_counter()
        step()
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - tic)
    return times


def step_cost(step: Callable[[], object], device: torch.device, warmup: int = 1, repeats: int = 3) -> dict:
    """Memory (saved for backward; allocator or CUDA peak) and median wall time of one training step.

    The instrumented saved-tensor pass runs first and so is also a warm-up call; ``warmup`` more
    untimed calls follow, then ``repeats`` timed ones; the allocator pass comes last.
    """
    device = torch.device(device)
    saved = saved_bytes_peak(step)
    times = wall_times(step, device, warmup, repeats)
    cost = {"saved_bytes": saved, "seconds": statistics.median(times), "seconds_all": times}
    if device.type == "cuda":
        cost["cuda_peak_bytes"] = cuda_peak(step, device)
    else:
        cost["allocator_peak_bytes"] = allocator_peak(step)
    return cost
