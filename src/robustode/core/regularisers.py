"""TisODE's steady-state regulariser (Yan et al., ICLR 2020; the survey's Eq. 6), as their code computes it.

The survey writes ``L_ss = sum_i | int_T^{2T} f(z_i(t)) dt |``. The public code (``HanshuYAN/TisODE``,
``mnist/networks.py`` and the vendored ``torchdiffeq/_impl/solvers.py`` "Euler_ABS" solver; read,
not copied) does something slightly different, and this module follows the code:

* the prediction solve runs over the time points ``[0, 0.9, 1.0]`` and keeps z(0.9);
* from z(0.9) a second solve integrates the state together with an accumulator a' = |f(z)|
  (elementwise) up to t = 1.5, with the same Euler step, so the term is
  ``int_{0.9}^{1.5} |f(z(t))| dt`` (the absolute value inside the integral, over [0.9, 1.5]);
* the loss is an L1 loss of that integral against zero (a mean over all elements), with weight
  0.01, switched on from epoch 5 (0-based, as their loop counts epochs).

:class:`SteadyState` wraps any :class:`~robustode.core.odeblock.ODEBlock` so the term can be added to
any ODE model; :class:`SteadyStateRegulariser` plugs it into :class:`robustode.core.training.TrainSpec`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torchdiffeq import odeint

from robustode.core.odeblock import ODEBlock, loop_integrate, solver_guard

T_START, T_END = 0.9, 1.5
WEIGHT, START_EPOCH = 0.01, 5


class _WithAbsIntegral(nn.Module):
    """The system (z, a) with z' = f(t, z) and a' = |f(t, z)|: a accumulates int |f| along z's path."""

    def __init__(self, field: nn.Module):
        super().__init__()
        self.field = field

    def forward(self, t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.field(t, state[0])
        return f, f.abs()


def steady_state_loss(block: ODEBlock, z_start: torch.Tensor, t_start: float = T_START, t_end: float = T_END) -> torch.Tensor:
    """Mean over elements of ``int_{t_start}^{t_end} |f(z(t))| dt`` with z(t_start) = ``z_start``.

    Solved with the block's own method, step size and tolerances (Euler in Yan et al.); the field is
    called directly, so the block's NFE counter is not touched.
    """
    if t_end <= t_start:
        raise ValueError(f"t_end must be after t_start, got [{t_start}, {t_end}]")
    if block.backend == "loop":
        # The engine's path: state and accumulator stacked into one tensor, stepped without host syncs.
        def stacked(t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            f = block.field(t, s[0])
            return torch.stack([f, f.abs()])

        states = loop_integrate(stacked, torch.stack([z_start, torch.zeros_like(z_start)]), [t_start, t_end],
                                block.method, block.step_size)
        return states[-1, 1].abs().mean()
    times = torch.tensor([t_start, t_end], dtype=z_start.dtype, device=z_start.device)
    with solver_guard():
        _, integral = odeint(_WithAbsIntegral(block.field), (z_start, torch.zeros_like(z_start)), times,
                             method=block.method, rtol=block.rtol, atol=block.atol, options=block.solver_options())
    return integral[-1].abs().mean()


class SteadyState(nn.Module):
    """Wraps an ODE block: returns h(T) as the block does and, in training, keeps z(t_start) for the term.

    ``t_start`` must lie inside the block's interval (Yan et al.: 0.9 within [0, 1]); the term then
    runs to ``t_end`` (1.5). In eval mode it is exactly the wrapped block.
    """

    def __init__(self, block: ODEBlock, t_start: float = T_START, t_end: float = T_END):
        super().__init__()
        t0, t1 = block.time_points[0], block.time_points[-1]
        if not t0 < t_start < t1 or t_end <= t_start:
            raise ValueError(f"need {t0} < t_start < {t1} and t_end > t_start, got t_start={t_start}, t_end={t_end}")
        self.block = block
        self.t_start, self.t_end = t_start, t_end
        self._times = (float(t0), float(t_start), float(t1))
        self.z_start: torch.Tensor | None = None

    def forward(self, h0: torch.Tensor) -> torch.Tensor:
        if not self.training:
            self.z_start = None
            return self.block(h0)
        # Python floats, not a tensor: the engine's loop backend would read a tensor's values on the host
        # inside every captured step
        states = self.block.trajectory(h0, self._times)
        self.z_start = states[1]
        return states[-1]

    def penalty(self) -> torch.Tensor:
        """The steady-state term for the last training forward pass."""
        if self.z_start is None:
            raise RuntimeError("no training forward pass recorded: call the model in train mode first")
        return steady_state_loss(self.block, self.z_start, self.t_start, self.t_end)

    @property
    def step_size(self) -> float | None:
        return self.block.step_size


@dataclass
class SteadyStateRegulariser:
    """``TrainSpec.regulariser``: weight x (sum of the steady-state terms of the model's SteadyState blocks)."""

    weight: float = WEIGHT
    start_epoch: int = START_EPOCH

    def __call__(self, model: nn.Module, x: torch.Tensor, epoch: int) -> torch.Tensor | None:
        if epoch < self.start_epoch:
            return None
        terms = [m.penalty() for m in model.modules() if isinstance(m, SteadyState)]
        if not terms:
            raise ValueError("the model has no SteadyState block to regularise")
        return self.weight * torch.stack(terms).sum()
