"""One training loop for every chapter: seeded, tqdm progress, per-epoch and per-iteration history.

It records loss, accuracy and the solver's NFE (forward and backward, summed over the model's ODE
blocks), keeps the epoch that a validation metric likes best, checkpoints every epoch so a long run
resumes where it stopped, and turns a failed ODE solve into a recorded failure instead of a crash.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from robustode.core.budget import Deadline
from robustode.core.odeblock import SolverFailure, nfe_counts, solver_guard

Batch = tuple[torch.Tensor, torch.Tensor]


def correct_argmax(output: torch.Tensor, y: torch.Tensor) -> int:
    return int((output.argmax(dim=1) == y).sum())


def correct_sign(output: torch.Tensor, y: torch.Tensor) -> int:
    """For -1/+1 regression targets: the sign of the output is the predicted class."""
    return int((torch.sign(output) == torch.sign(y)).sum())


@dataclass
class History:
    """What a run saw: one dict per epoch, and per-iteration lists of loss and NFE."""

    epochs: list[dict] = field(default_factory=list)
    iterations: dict[str, list] = field(
        default_factory=lambda: {"loss": [], "nfe_forward": [], "nfe_backward": []}
    )
    failure: str | None = None
    best_epoch: int | None = None

    def as_dict(self) -> dict:
        return {
            "epochs": self.epochs,
            "iterations": self.iterations,
            "failure": self.failure,
            "best_epoch": self.best_epoch,
        }

    @classmethod
    def from_dict(cls, data: dict) -> History:
        return cls(data["epochs"], data["iterations"], data["failure"], data["best_epoch"])


@dataclass
class TrainSpec:
    """How to train: the original papers' knobs, nothing hidden.

    ``regulariser(model, x, epoch)`` returns an extra loss term or ``None`` (TisODE's steady-state
    term is switched on from an epoch); ``augment(x, generator)`` perturbs a training batch;
    ``evaluate(model)`` returns validation metrics, and ``select_on`` names the one to maximise.
    ``autocast_dtype`` (``torch.float16`` or ``torch.bfloat16``) runs the forward pass under
    ``torch.autocast``; float16 adds a ``GradScaler`` (mixed precision, Micikevicius et al. 2018).
    """

    epochs: int
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = nn.CrossEntropyLoss()
    correct: Callable[[torch.Tensor, torch.Tensor], int] = correct_argmax
    lr: float = 1e-3
    weight_decay: float = 0.0
    milestones: tuple[int, ...] = ()
    gamma: float = 0.2
    regulariser: Callable[[nn.Module, torch.Tensor, int], torch.Tensor | None] | None = None
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
    evaluate: Callable[[nn.Module], dict] | None = None
    select_on: str | None = None
    seed: int = 0
    autocast_dtype: torch.dtype | None = None

    def __post_init__(self):
        if self.epochs <= 0:
            raise ValueError(f"epochs must be positive, got {self.epochs}")
        if self.select_on is not None and self.evaluate is None:
            raise ValueError("select_on needs an evaluate function")


def validate_and_select(
    model: nn.Module, spec: TrainSpec, record: dict, history: History, best_score: float, best_state: dict | None
) -> tuple[float, dict | None]:
    """Close an epoch: add validation metrics to ``record``, keep the weights if ``spec.select_on``
    improved, append the record; returns the (possibly new) best score and weights."""
    if spec.evaluate is not None:
        model.eval()
        record.update({f"val_{k}": v for k, v in spec.evaluate(model).items()})
        if spec.select_on is not None and record[f"val_{spec.select_on}"] > best_score:
            best_score, best_state = record[f"val_{spec.select_on}"], copy.deepcopy(model.state_dict())
            history.best_epoch = record["epoch"]
    history.epochs.append(record)
    return best_score, best_state


def next_epoch_estimate(history: History, fallback: float) -> float:
    """Seconds the next epoch will likely take: the last epoch this run recorded, else ``fallback``."""
    return history.epochs[-1]["seconds"] if history.epochs else fallback


def save_atomic(state: dict, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def train(
    model: nn.Module,
    batches: Callable[[int], Iterable[Batch]],
    spec: TrainSpec,
    device: torch.device | str = "cpu",
    checkpoint: Path | None = None,
    progress: bool = True,
    desc: str = "train",
    deadline: Deadline | None = None,
    epoch_estimate: float = 0.0,
    on_epoch: Callable[[dict], None] | None = None,
) -> History:
    """Train ``model`` in place and return its :class:`History`.

    ``batches(epoch)`` yields the epoch's ``(x, y)`` batches (a DataLoader wrapped in a lambda, or
    tensors sliced on the device). With ``checkpoint``, state is saved after every epoch and a run
    that finds the file resumes from it (loaded with ``weights_only=True``). With ``deadline``, an
    epoch starts only if it is expected to end in time (the run's last epoch, else ``epoch_estimate``
    seconds); otherwise :class:`~robustode.core.budget.OutOfBudget` is raised at that epoch boundary.
    ``on_epoch(record)`` is called after every epoch (live progress).
    """
    device = torch.device(device)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(spec.milestones), spec.gamma)
    generator = torch.Generator(device=device).manual_seed(spec.seed)
    amp = spec.autocast_dtype is not None
    scaler = torch.amp.GradScaler(device.type, enabled=spec.autocast_dtype == torch.float16)
    history, best_state, best_score, start = History(), None, float("-inf"), 0

    if checkpoint is not None and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        if "format" in state:
            raise ValueError(f"{checkpoint} was written by {state['format']}, not by this loop; move it away or "
                             "resume with the engine")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"].cpu())
        if "scaler" in state:  # float16 mixed precision: the loss scale and its growth tracker carry over
            scaler.load_state_dict(state["scaler"])
        history = History.from_dict(state["history"])
        best_state, best_score, start = state["best_model"], state["best_score"], state["epoch"]

    bar = tqdm(range(start, spec.epochs), desc=desc, disable=not progress, mininterval=2.0)
    for epoch in bar:
        if history.failure:
            break
        if deadline is not None:
            deadline.check(next_epoch_estimate(history, epoch_estimate), f"{desc}: epoch {epoch + 1} of {spec.epochs}")
        model.train()
        tic, total_loss, correct, seen = time.perf_counter(), 0.0, 0, 0
        nfe_f = nfe_b = 0
        epoch_batches = batches(epoch)
        # within an epoch too (a paper-scale epoch on a CPU core takes most of an hour): batches done, rate, time left
        # (tqdm takes its total from len() where the batches have one, as tensor_batches' do)
        inner = tqdm(epoch_batches, desc=f"{desc}: epoch {epoch + 1} of {spec.epochs}", unit="batch", leave=False,
                     disable=not progress, mininterval=30.0)
        try:
            for x, y in inner:
                x, y = x.to(device), y.to(device)
                if spec.augment is not None:
                    x = spec.augment(x, generator)
                with torch.autocast(device.type, dtype=spec.autocast_dtype, enabled=amp):
                    output = model(x)
                    loss = spec.loss_fn(output, y)
                    extra = spec.regulariser(model, x, epoch) if spec.regulariser else None
                    total = loss if extra is None else loss + extra
                optimizer.zero_grad(set_to_none=True)
                with solver_guard():
                    scaler.scale(total).backward()
                scaler.step(optimizer)
                scaler.update()
                f, b = nfe_counts(model)
                history.iterations["loss"].append(loss.item())
                history.iterations["nfe_forward"].append(f)
                history.iterations["nfe_backward"].append(b)
                total_loss += loss.item() * len(x)
                correct += spec.correct(output.detach(), y)
                seen += len(x)
                nfe_f += f
                nfe_b += b
        except SolverFailure as failure:
            history.failure = failure.reason
            bar.write(f"{desc}: epoch {epoch}: {failure}")
            break
        finally:
            inner.close()
        scheduler.step()
        iters = max(1, len(history.iterations["loss"]) - sum(e["iterations"] for e in history.epochs))
        record = {
            "epoch": epoch + 1,
            "loss": total_loss / max(seen, 1),
            "accuracy": correct / max(seen, 1),
            "nfe_forward": nfe_f / iters,
            "nfe_backward": nfe_b / iters,
            "iterations": iters,
            "seconds": time.perf_counter() - tic,
        }
        best_score, best_state = validate_and_select(model, spec, record, history, best_score, best_state)
        bar.set_postfix(loss=f"{record['loss']:.4f}", acc=f"{record['accuracy']:.3f}", nfe=f"{record['nfe_forward']:.0f}")
        if checkpoint is not None:
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            save_atomic(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "generator": generator.get_state(),
                    "scaler": scaler.state_dict(),
                    "history": history.as_dict(),
                    "best_model": best_state,
                    "best_score": best_score,
                    "epoch": epoch + 1,
                },
                checkpoint,
            )
        if on_epoch is not None:
            on_epoch(record)
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history
