"""A fast training engine for small fixed-step ODE models on one GPU (the plain path stays the default).

Paper-scale training of the MNIST robustness models is launch-bound: each Euler step is a handful of
small kernels, and torchdiffeq's fixed-grid solver synchronises with the host at every step. The
engine removes both costs without changing the mathematics:

1. every fixed-step ODE block switches to the hand-written ``loop`` backend (same numbers as
   torchdiffeq, no host synchronisation; tested for equality in ``tests/test_engine.py``);
2. data stay on the device as tensors, batches are gathered there, losses and accuracies are summed
   on the device and read once per epoch;
3. on CUDA, one whole training step (augmentation, forward, loss, steady-state term, backward, Adam)
   is captured in a CUDA graph and replayed for every full batch; the last, smaller batch of an epoch
   runs eagerly with the same code.

On CPU there are no graphs: :func:`train_fast` then runs the same step eagerly, which is what the
CPU equivalence tests compare against :func:`robustode.core.training.train`.

Like the plain loop, the engine checkpoints after every epoch (model, Adam state, both generators,
history, the selected weights) and resumes from the file, so a long run can be split into pieces
that each fit a time limit; a resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from robustode.core.budget import Deadline
from robustode.core.odeblock import LOOP_METHODS, ODEBlock, nfe_counts
from robustode.core.timing import synchronize
from robustode.core.training import History, TrainSpec, next_epoch_estimate, save_atomic, validate_and_select

CHECKPOINT_FORMAT = "robustode.core.engine/1"


def use_loop_backend(model: nn.Module) -> int:
    """Switch every fixed-step ODE block of ``model`` to the loop backend; returns how many switched."""
    switched = 0
    for block in model.modules():
        if isinstance(block, ODEBlock) and block.method in LOOP_METHODS and block.step_size and not block.adjoint:
            block.backend = "loop"
            switched += 1
    return switched


class TrainStep:
    """One optimisation step on a fixed-size batch, optionally captured in a CUDA graph.

    Losses and correct counts accumulate in device tensors (``loss_sum``, ``correct``); nothing in
    :meth:`__call__` reads a value back to the host.
    """

    def __init__(self, model: nn.Module, spec: TrainSpec, device: torch.device, generator: torch.Generator):
        self.model, self.spec, self.device, self.generator = model, spec, device, generator
        capturable = device.type == "cuda"
        lr = torch.tensor(spec.lr, device=device) if capturable else spec.lr
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=spec.weight_decay,
                                          capturable=capturable)
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}
        self._capture_stream: torch.cuda.Stream | None = None  # lives as long as the graphs captured on it
        self.nfe = (0, 0)

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr

    def _step(self, x: torch.Tensor, y: torch.Tensor, epoch: int) -> None:
        spec = self.spec
        if spec.augment is not None:
            x = spec.augment(x, self.generator)
        output = self.model(x)
        loss = spec.loss_fn(output, y)
        extra = spec.regulariser(self.model, x, epoch) if spec.regulariser else None
        total = loss if extra is None else loss + extra
        self.optimizer.zero_grad(set_to_none=False)
        total.backward()
        self.optimizer.step()
        self.loss_sum += loss.detach() * len(x)
        self.correct += (output.detach().argmax(dim=1) == y).sum()
        self.nfe = nfe_counts(self.model)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, epoch: int, graph: bool) -> None:
        if not graph:
            self._step(x, y, epoch)
            return
        key = (tuple(x.shape), self._regularised(epoch))
        if key not in self.graphs:
            self.graphs[key] = self._capture(x, y, epoch)
        g, static_x, static_y = self.graphs[key]
        static_x.copy_(x)
        static_y.copy_(y)
        g.replay()

    def _regularised(self, epoch: int) -> bool:
        start = getattr(self.spec.regulariser, "start_epoch", 0)
        return self.spec.regulariser is not None and epoch >= start

    def _tensors(self) -> list[torch.Tensor]:
        """Everything a step writes: parameters, buffers, Adam's state, the accumulators."""
        state = [t for s in self.optimizer.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
        return [*self.model.parameters(), *self.model.buffers(), *state, self.loss_sum, self.correct]

    def warm_up(self, x: torch.Tensor, y: torch.Tensor, epoch: int, steps: int = 3) -> None:
        """Make ``steps`` steps on ``x, y`` and undo them in place: parameters, buffers, Adam's state, the
        accumulators and the step's random generator end as they began (Adam's state created by the steps
        is zeroed, as Adam's own initialisation). Capture needs such steps (lazy Adam state, allocator
        pools, cuBLAS workspaces on the capture stream); undone, graphed training makes exactly the steps,
        and draws exactly the noise, that eager training makes. On CUDA they run on the capture stream."""
        saved = {id(t): t.detach().clone() for t in self._tensors()}
        generator_state = self.generator.get_state()
        with _on(self.capture_stream()):
            for _ in range(steps):
                self._step(x, y, epoch)
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).wait_stream(self.capture_stream())
        with torch.no_grad():
            for t in self._tensors():
                if id(t) in saved:
                    t.copy_(saved[id(t)])
                else:
                    t.zero_()
        self.generator.set_state(generator_state)

    def capture_stream(self) -> torch.cuda.Stream | None:
        """This step's own capture stream (CUDA only; ``None`` elsewhere), made once and kept as long as the step:
        graphs captured on one shared stream would share one cuBLAS workspace when replayed on several streams."""
        if self.device.type != "cuda":
            return None
        if self._capture_stream is None:
            self._capture_stream = torch.cuda.Stream(self.device)
        return self._capture_stream

    def _capture(self, x: torch.Tensor, y: torch.Tensor, epoch: int):
        """Capture one step on this step's own stream, after :meth:`warm_up` on that stream; the generator's
        state is put back after capture too, so the first replay draws what the first eager step would."""
        static_x, static_y = x.clone(), y.clone()
        generator_state = self.generator.get_state()
        self.warm_up(static_x, static_y, epoch)
        graph = torch.cuda.CUDAGraph()
        graph.register_generator_state(self.generator)
        with torch.cuda.graph(graph, stream=self.capture_stream()):
            self._step(static_x, static_y, epoch)
        self.generator.set_state(generator_state)
        return graph, static_x, static_y


def _lr_at(spec: TrainSpec, epoch: int) -> float:
    return spec.lr * spec.gamma ** sum(epoch >= m for m in spec.milestones)


class EngineRun:
    """One model's training state inside the engine: its step, generators, history and checkpoint."""

    def __init__(self, model: nn.Module, spec: TrainSpec, device: torch.device, checkpoint: Path | None):
        self.model, self.spec, self.device, self.checkpoint = model, spec, device, checkpoint
        model.to(device).train()
        use_loop_backend(model)
        self.generator = torch.Generator(device=device).manual_seed(spec.seed)
        self.order_gen = torch.Generator(device=device).manual_seed(spec.seed + 1)
        self.step = TrainStep(model, spec, device, self.generator)
        self.history, self.best_state, self.best_score, self.start = History(), None, float("-inf"), 0
        if checkpoint is not None and checkpoint.exists():
            self._resume(checkpoint)

    def _resume(self, checkpoint: Path) -> None:
        state = torch.load(checkpoint, map_location=self.device, weights_only=True)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{checkpoint} is not an engine checkpoint (format {state.get('format')!r}); "
                             "move it away or train with the loop that wrote it")
        if state["device"] != self.device.type:
            raise ValueError(f"{checkpoint} was written on {state['device']}; its random-generator states cannot "
                             f"resume on {self.device.type}")
        self.model.load_state_dict(state["model"])
        self.step.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"].cpu())
        self.order_gen.set_state(state["order_generator"].cpu())
        self.history = History.from_dict(state["history"])
        self.best_state, self.best_score, self.start = state["best_model"], state["best_score"], state["epoch"]

    def begin_epoch(self, epoch: int, n: int) -> None:
        self.model.train()
        self.step.set_lr(_lr_at(self.spec, epoch))
        self.step.loss_sum.zero_()
        self.step.correct.zero_()
        self.order = torch.randperm(n, device=self.device, generator=self.order_gen)

    def train_batch(self, x: torch.Tensor, y: torch.Tensor, start: int, batch_size: int, epoch: int, graphs: bool) -> None:
        idx = self.order[start : start + batch_size]
        self.step(x[idx], y[idx], epoch, graph=graphs and len(idx) == batch_size)

    def end_epoch(self, epoch: int, n: int, batches: int, seconds: float, concurrent: int) -> dict:
        record = {
            "epoch": epoch + 1,
            "loss": self.step.loss_sum.item() / n,
            "accuracy": self.step.correct.item() / n,
            "nfe_forward": self.step.nfe[0],
            "nfe_backward": self.step.nfe[1],
            "iterations": batches,
            "seconds": seconds,
        }
        if concurrent > 1:
            record["concurrent_runs"] = concurrent  # seconds: the wall time of the epoch for all of them
        self.best_score, self.best_state = validate_and_select(self.model, self.spec, record, self.history,
                                                               self.best_score, self.best_state)
        if self.checkpoint is not None:
            self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
            save_atomic({"format": CHECKPOINT_FORMAT, "device": self.device.type, "model": self.model.state_dict(),
                         "optimizer": self.step.optimizer.state_dict(), "generator": self.generator.get_state(),
                         "order_generator": self.order_gen.get_state(), "history": self.history.as_dict(),
                         "best_model": self.best_state, "best_score": self.best_score, "epoch": epoch + 1},
                        self.checkpoint)
        return record

    def finish(self) -> History:
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        self.model.eval()
        return self.history


def train_fast(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    spec: TrainSpec,
    batch_size: int,
    device: torch.device | str = "cuda",
    graphs: bool | None = None,
    progress: bool = True,
    desc: str = "train (engine)",
    checkpoint: Path | None = None,
    deadline: Deadline | None = None,
    epoch_estimate: float = 0.0,
) -> History:
    """Train on device-resident tensors ``x, y`` with the engine; returns a :class:`History` like
    :func:`robustode.core.training.train` (per-epoch records, selection on ``spec.select_on``).

    ``graphs`` defaults to True on CUDA and must be False elsewhere. Batches follow a seeded
    permutation per epoch (generator on the device, seeded with ``spec.seed``). With ``checkpoint``, state
    is saved after every epoch and a run that finds the file resumes from it (``weights_only=True``); a
    plain-loop checkpoint is refused with a clear error rather than misread.
    """
    return train_fast_many([model], x, y, [spec], batch_size, device, graphs, progress, desc, [checkpoint], deadline,
                           epoch_estimate)[0]


def train_fast_many(
    models: list[nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    specs: list[TrainSpec],
    batch_size: int,
    device: torch.device | str = "cuda",
    graphs: bool | None = None,
    progress: bool = True,
    desc: str = "train (engine)",
    checkpoints: list[Path | None] | None = None,
    deadline: Deadline | None = None,
    epoch_estimate: float = 0.0,
) -> list[History]:
    """Train several models on the same data at once (the seeds of one configuration, say), each exactly as
    :func:`train_fast` would train it alone: own initial weights, spec, seed, generators and checkpoint.

    On CUDA each model's steps go to a stream of its own, so that the small kernels (or graph replays) of
    one model can overlap those of the others; the batches are issued round-robin and the streams meet
    once per epoch, for validation and the checkpoints. Elsewhere the same round-robin runs in order,
    which the CPU tests compare with separate :func:`train_fast` calls. All models share ``spec.epochs``.
    With ``deadline``, an epoch starts only if it is expected to end in time (as :func:`robustode.core.training.train`).
    """
    from tqdm import tqdm

    device = torch.device(device)
    graphs = device.type == "cuda" if graphs is None else graphs
    checkpoints = checkpoints if checkpoints is not None else [None] * len(models)
    if graphs and device.type != "cuda":
        raise ValueError("CUDA graphs need a CUDA device")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if not models or not len(models) == len(specs) == len(checkpoints):
        raise ValueError(f"need one spec and one checkpoint (or None) per model: {len(models)} models, "
                         f"{len(specs)} specs, {len(checkpoints)} checkpoints")
    if any(spec.autocast_dtype is not None for spec in specs):
        raise ValueError("the engine trains in float32; use robustode.core.training.train for mixed precision")
    if len({spec.epochs for spec in specs}) != 1:
        raise ValueError(f"models trained together need the same number of epochs, got {[s.epochs for s in specs]}")
    runs = [EngineRun(model, spec, device, ckpt) for model, spec, ckpt in zip(models, specs, checkpoints, strict=True)]
    x, y = x.to(device), y.to(device)
    streams = run_streams(runs, device)
    n, epochs, first = len(x), specs[0].epochs, min(run.start for run in runs)
    for epoch in tqdm(range(first, epochs), desc=desc, disable=not progress, initial=first, total=epochs):
        active = [(run, stream) for run, stream in zip(runs, streams, strict=True) if run.start <= epoch]
        if deadline is not None:
            estimate = max(next_epoch_estimate(run.history, epoch_estimate) for run, _ in active)
            deadline.check(estimate, f"{desc}: epoch {epoch + 1} of {epochs}")
        batches, seconds = train_epoch(active, x, y, epoch, batch_size, graphs)
        for run, _ in active:
            run.end_epoch(epoch, n, batches, seconds, len(active))
    return [run.finish() for run in runs]


def run_streams(runs: list[EngineRun], device: torch.device) -> list[torch.cuda.Stream | None]:
    """One CUDA stream per run when several train at once on a GPU; ``None`` (where we are) otherwise."""
    concurrent = device.type == "cuda" and len(runs) > 1
    return [torch.cuda.Stream(device) if concurrent else None for _ in runs]


def train_epoch(active: list[tuple[EngineRun, torch.cuda.Stream | None]], x: torch.Tensor, y: torch.Tensor, epoch: int,
                batch_size: int, graphs: bool) -> tuple[int, float]:
    """One epoch of every run in ``active`` (pairs of run and stream), batches issued round-robin; returns the
    number of batches and the epoch's wall time in seconds, measured after the device has finished the work
    (a GPU runs behind the host: without the synchronisation the time would be the launches')."""
    n = len(x)
    tic = time.perf_counter()
    for run, stream in active:
        with _on(stream):
            run.begin_epoch(epoch, n)
    batches = 0
    for start in range(0, n, batch_size):
        for run, stream in active:
            with _on(stream):
                run.train_batch(x, y, start, batch_size, epoch, graphs)
        batches += 1
    synchronize(x.device)
    return batches, time.perf_counter() - tic


@contextlib.contextmanager
def _on(stream: torch.cuda.Stream | None) -> Iterator[None]:
    """Run on a side CUDA stream that first waits for the default one; ``None``: where we are."""
    if stream is None:
        yield
        return
    stream.wait_stream(torch.cuda.current_stream(stream.device))
    with torch.cuda.stream(stream):
        yield
