"""L-infinity attacks: Yan et al.'s FGSM / PGD protocol exactly, and a strong protocol beside it.

**Faithful protocol** (read from ``HanshuYAN/TisODE``, ``ad_attack/``; no code copied). The
gradient is that of a clamped Carlini-Wagner-style margin on log-probabilities,
``max(0, log p_y - max_{j != y} log p_j)``, which the attack *decreases*. Each update is a sign
step, projected onto the eps-ball around the clean image intersected with [0, 1]; there is no
random start. Their loop evaluates the current iterate before each update, so "FGSM-eps" (one step
of eps) checks x0 and x1, and "PGD-eps" (steps of eps/5, ten iterations) checks x0 .. x9: nine
updates, the tenth is computed and never checked. An image counts as broken if any checked iterate
is misclassified, the clean image included. Their step is ``lr * g / (|g| + 1e-8)`` (Adam with
beta1 = beta2 = 0), i.e. the sign of g up to gradients below 1e-8; we use the exact sign.

**Strong protocol** (Madry et al., 2018; Croce & Hein, 2020): PGD on the cross-entropy with a
uniform random start, more steps and several restarts (an image is broken if any iterate of any
restart is misclassified), optional expectation over transformation (EOT) for randomised models,
and the official AutoAttack (``pyautoattack``).

All functions work on whole batches; GroupNorm is per sample, so per-image gradients are the same
as the original's one-image-at-a-time loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

Model = Callable[[torch.Tensor], torch.Tensor]


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample ``max(0, log p_y - max_{j != y} log p_j)``, on softmax probabilities as the original.

    The original takes ``log(p + 1e-30)`` of the softmax output; we do the same, so the gradient
    vanishes (as theirs does) once a probability underflows in float32.
    """
    p = F.softmax(logits, dim=1)
    onehot = F.one_hot(y, p.shape[1]).to(p)
    real = (onehot * p).sum(1)
    other = ((1.0 - onehot) * p - onehot * 10_000.0).max(1).values
    return torch.clamp(torch.log(real + 1e-30) - torch.log(other + 1e-30), min=0.0)


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Projection onto {x' : ||x' - x||_inf <= eps} intersected with [0, 1]."""
    return torch.min(torch.max(x_adv, (x - eps).clamp(min=0.0)), (x + eps).clamp(max=1.0))


@dataclass
class AttackResult:
    """Per image: ``robust`` (no checked iterate misclassified), the last checked iterate, and (if kept)
    every checked iterate, so that other models can judge them (transfer attacks)."""

    robust: torch.Tensor
    x_adv: torch.Tensor
    iterates: list[torch.Tensor] | None = None

    @property
    def accuracy(self) -> float:
        return self.robust.float().mean().item()


def _predict(model: Model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1)


def robust_under(judge: Model, iterates: list[torch.Tensor], y: torch.Tensor) -> torch.Tensor:
    """Per image: ``judge`` classifies every iterate correctly (Yan et al.'s "any iterate" rule)."""
    robust = torch.ones(len(y), dtype=torch.bool, device=y.device)
    for x_i in iterates:
        robust &= _predict(judge, x_i) == y
    return robust


def sign_attack(
    model: Model, x: torch.Tensor, y: torch.Tensor, eps: float, step: float, checks: int, keep_iterates: bool = False,
) -> AttackResult:
    """Yan et al.'s loop: ``checks`` iterates x0, x1, ... are checked; between them a sign step of ``step``
    decreases the margin loss and is projected onto the eps-ball and [0, 1].

    Under the any-iterate rule an image misclassified once stays broken, so later steps only run on the
    images still robust (per-image gradients do not depend on the batch: the models normalise per sample).
    ``x_adv`` holds each image's last iterate computed. With ``keep_iterates`` every image is carried to
    the end, so that other models can judge all iterates (transfer attacks).
    """
    if eps < 0 or step < 0 or checks < 1:
        raise ValueError(f"need eps >= 0, step >= 0 and checks >= 1, got {eps}, {step}, {checks}")
    x_adv = x.detach().clone()
    robust = torch.ones(len(x), dtype=torch.bool, device=x.device)
    active = torch.arange(len(x), device=x.device)
    iterates = []
    for i in range(checks):
        if keep_iterates:
            iterates.append(x_adv.detach().clone())
        xs = x_adv[active].requires_grad_(True)
        with torch.enable_grad():
            logits = model(xs)
            correct = logits.argmax(1) == y[active]
            robust[active] = robust[active] & correct
            if i == checks - 1:
                break
            grad = torch.autograd.grad(margin_loss(logits, y[active]).sum(), xs)[0]
        x_adv[active] = project(xs.detach() - step * grad.sign(), x[active], eps)
        if not keep_iterates:
            active = active[correct]
            if len(active) == 0:
                break
    return AttackResult(robust, x_adv.detach(), iterates if keep_iterates else None)


def fgsm(model: Model, x: torch.Tensor, y: torch.Tensor, eps: float, keep_iterates: bool = False) -> AttackResult:
    """FGSM-eps as Yan et al. ran it: one sign step of size eps; x0 and x1 are checked."""
    return sign_attack(model, x, y, eps, eps, checks=2, keep_iterates=keep_iterates)


def pgd(model: Model, x: torch.Tensor, y: torch.Tensor, eps: float, iterations: int = 10,
        keep_iterates: bool = False) -> AttackResult:
    """PGD-eps as Yan et al. ran it: steps of eps/5, ``iterations`` = 10 checks x0 .. x9 (nine updates)."""
    return sign_attack(model, x, y, eps, eps / 5, checks=iterations, keep_iterates=keep_iterates)


def _eot_gradient(model: Model, x_adv: torch.Tensor, y: torch.Tensor, eot: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy gradient averaged over ``eot`` forward passes, and the last pass's predictions."""
    grad = torch.zeros_like(x_adv)
    for _ in range(eot):
        x_adv.requires_grad_(True)
        with torch.enable_grad():
            logits = model(x_adv)
            grad += torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), x_adv)[0]
    return grad, logits.detach().argmax(1)


def pgd_strong(
    model: Model, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 100, restarts: int = 5,
    step_size: float | None = None, eot: int = 1, seed: int = 0, rows: slice | None = None,
) -> dict[str, list]:
    """PGD on the cross-entropy (Madry et al., 2018): uniform random start, ``steps`` sign steps of
    ``step_size`` (default 2.5 eps / steps), ``restarts`` independent starts, EOT over ``eot`` passes.

    Returns ``robust_after_restart[r]``: per image, robust against restarts 0..r (any checked iterate,
    including the final one, counts), so more restarts can only lower the accuracy.

    ``rows`` attacks only ``x[rows]`` (flags for those images) with the random starts the call on the whole of
    ``x`` gives them: the pieces of a split call are that call, piece by piece, so a long attack can stop between
    pieces and resume without changing what it computes.
    """
    if steps < 1 or restarts < 1 or eot < 1:
        raise ValueError(f"steps, restarts and eot must be >= 1, got {steps}, {restarts}, {eot}")
    alpha = step_size if step_size is not None else 2.5 * eps / steps
    gen = torch.Generator(device=x.device).manual_seed(seed)
    shape = x.shape
    if rows is not None:
        x, y = x[rows], y[rows]
    robust = torch.ones(len(x), dtype=torch.bool, device=x.device)
    history = []
    for _ in range(restarts):
        # Drawn for every image, so each image's start does not depend on which others are still robust.
        start = torch.rand(shape, generator=gen, device=x.device, dtype=x.dtype) * 2 - 1
        if rows is not None:
            start = start[rows]
        # An image broken by an earlier iterate or restart stays broken: only the robust ones are attacked.
        active = robust.nonzero().squeeze(1)
        x_adv = project(x[active] + eps * start[active], x[active], eps)
        for _ in range(steps):
            if len(active) == 0:
                break
            grad, pred = _eot_gradient(model, x_adv, y[active], eot)
            correct = pred == y[active]
            robust[active] = robust[active] & correct
            x_adv = project(x_adv.detach() + alpha * grad.sign(), x[active], eps)[correct]
            active = active[correct]
        if len(active):
            robust[active] = robust[active] & (_predict(model, x_adv) == y[active])
        history.append(robust.clone())
    return {"robust_after_restart": [r.cpu().tolist() for r in history]}


def autoattack(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, version: str = "standard",
    attacks: list[str] | None = None, overrides: dict | None = None, seed: int = 0, batch_size: int = 500,
) -> torch.Tensor:
    """Robust flags under the official AutoAttack (Croce & Hein, 2020; PyPI ``pyautoattack``), L-inf.

    ``version="standard"`` runs APGD-CE, APGD-T (9 targets), FAB-T and Square (5000 queries).
    ``version="custom"`` with ``attacks`` and ``overrides`` (e.g. ``{"apgd.n_iter": 20}``) gives a
    smaller configuration; callers must label it as such.
    """
    try:
        from pyautoattack import AutoAttack
    except ImportError as err:  # pragma: no cover - optional extra
        raise ImportError("AutoAttack needs the 'attacks' extra: pip install pyautoattack") from err
    adversary = AutoAttack(model, eps=eps, norm="Linf", version=version, seed=seed, device=x.device,
                           attacks=attacks if version == "custom" else None)
    for key, value in (overrides or {}).items():
        owner, attr = key.split(".")
        setattr(getattr(adversary, owner), attr, value)
    _, y_adv = adversary.run_standard_evaluation(x, y, batch_size=batch_size)
    return y_adv == y
