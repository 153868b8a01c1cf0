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
CPU equivalence tests compare against :func:`robustode.training.train`.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from robustode.odeblock import LOOP_METHODS, ODEBlock, nfe_counts
from robustode.training import History, TrainSpec, validate_and_select


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

    def _capture(self, x: torch.Tensor, y: torch.Tensor, epoch: int):
        static_x, static_y = x.clone(), y.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up on real data (these are real training steps)
            for _ in range(3):
                self._step(static_x, static_y, epoch)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        graph.register_generator_state(self.generator)
        with torch.cuda.graph(graph):
            self._step(static_x, static_y, epoch)
        return graph, static_x, static_y


def _lr_at(spec: TrainSpec, epoch: int) -> float:
    return spec.lr * spec.gamma ** sum(epoch >= m for m in spec.milestones)


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
) -> History:
    """Train on device-resident tensors ``x, y`` with the engine; returns a :class:`History` like
    :func:`robustode.training.train` (per-epoch records, selection on ``spec.select_on``).

    ``graphs`` defaults to True on CUDA and must be False elsewhere. Batches follow a seeded
    permutation per epoch (generator on the device, seeded with ``spec.seed``).
    """
    from tqdm import tqdm

    device = torch.device(device)
    graphs = device.type == "cuda" if graphs is None else graphs
    if graphs and device.type != "cuda":
        raise ValueError("CUDA graphs need a CUDA device")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    model.to(device).train()
    use_loop_backend(model)
    x, y = x.to(device), y.to(device)
    generator = torch.Generator(device=device).manual_seed(spec.seed)
    order_gen = torch.Generator(device=device).manual_seed(spec.seed + 1)
    step = TrainStep(model, spec, device, generator)
    history, best_state, best_score = History(), None, float("-inf")
    n = len(x)
    for epoch in tqdm(range(spec.epochs), desc=desc, disable=not progress):
        tic = time.perf_counter()
        model.train()
        step.set_lr(_lr_at(spec, epoch))
        step.loss_sum.zero_()
        step.correct.zero_()
        order = torch.randperm(n, device=device, generator=order_gen)
        batches = 0
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            full = len(idx) == batch_size
            step(x[idx], y[idx], epoch, graph=graphs and full)
            batches += 1
        record = {
            "epoch": epoch + 1,
            "loss": step.loss_sum.item() / n,
            "accuracy": step.correct.item() / n,
            "nfe_forward": step.nfe[0],
            "nfe_backward": step.nfe[1],
            "iterations": batches,
            "seconds": time.perf_counter() - tic,
        }
        best_score, best_state = validate_and_select(model, spec, record, history, best_score, best_state)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history
