"""The ODE block: h(T) = h(0) + int_0^T f(h(t), t) dt, solved with torchdiffeq (Chen et al., 2018).

One module wraps any vector field ``f`` and integrates it with ``odeint`` (backpropagation through
the solver) or ``odeint_adjoint`` (the adjoint method), counting function evaluations (NFE) the way
Dupont et al. (2019) do: a counter inside the dynamics, reset at each forward pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn
from torchdiffeq import odeint, odeint_adjoint
from torchdiffeq._impl.odeint import SOLVERS

FIXED_GRID_METHODS = frozenset({"euler", "midpoint", "heun2", "heun3", "rk4", "explicit_adams", "implicit_adams"})
METHODS = tuple(sorted(SOLVERS))


class SolverFailure(RuntimeError):
    """An ODE solve that could not finish: step budget exceeded, step size underflow or non-finite state.

    ``reason`` is one of ``"max_num_steps"``, ``"step_underflow"``, ``"non_finite"``.
    """

    def __init__(self, reason: str, message: str):
        super().__init__(f"ODE solve failed ({reason}): {message}")
        self.reason = reason


_FAILURE_MARKERS = {
    "max_num_steps exceeded": "max_num_steps",
    "underflow in dt": "step_underflow",
    "non-finite values": "non_finite",
}


@contextlib.contextmanager
def solver_guard() -> Iterator[None]:
    """Turn torchdiffeq's bare ``assert`` failures into one typed, catchable :class:`SolverFailure`.

    Wrap both the forward solve and ``loss.backward()`` (the adjoint solves again backwards).
    """
    try:
        yield
    except AssertionError as err:
        text = str(err)
        for marker, reason in _FAILURE_MARKERS.items():
            if marker in text:
                raise SolverFailure(reason, text[:200]) from err
        raise


class CountingField(nn.Module):
    """Wraps a vector field ``f(t, h)`` and counts how often the solver calls it."""

    def __init__(self, field: nn.Module):
        super().__init__()
        self.field = field
        self.nfe = 0

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        return self.field(t, h)


def check_method(method: str) -> str:
    if method not in SOLVERS:
        raise ValueError(f"unknown ODE method {method!r}; choose one of {', '.join(METHODS)}")
    return method


class ODEBlock(nn.Module):
    """Integrates ``dh/dt = f(h, t)`` from ``times[0]`` to ``times[-1]`` with a torchdiffeq solver.

    Args:
        field: module called as ``field(t, h)``.
        times: integration times; the block returns the state at the last one (or all of them with
            ``return_trajectory=True``).
        method: any torchdiffeq method name (``dopri5``, ``euler``, ``rk4``, ...).
        rtol, atol: tolerances of adaptive methods (ignored by fixed-grid ones).
        step_size: step of fixed-grid methods; ``None`` steps once between consecutive ``times``.
        adjoint: use the adjoint method for gradients (constant memory in the number of steps).
        max_num_steps: step budget of adaptive methods; exceeding it raises :class:`SolverFailure`.

    After a forward pass ``nfe_forward`` holds the number of evaluations it took; after
    ``backward()`` ``nfe_backward`` holds the evaluations the backward pass made (zero when
    gradients flow through the solver's operations instead of an adjoint solve).
    """

    def __init__(
        self,
        field: nn.Module,
        times: Sequence[float] = (0.0, 1.0),
        method: str = "dopri5",
        rtol: float = 1e-3,
        atol: float = 1e-3,
        step_size: float | None = None,
        adjoint: bool = False,
        max_num_steps: int = 1000,
        return_trajectory: bool = False,
    ):
        super().__init__()
        check_method(method)
        if len(times) < 2 or any(b <= a for a, b in zip(times, times[1:], strict=False)):
            raise ValueError(f"times must be strictly increasing with at least two points, got {list(times)}")
        if step_size is not None and step_size <= 0:
            raise ValueError(f"step_size must be positive, got {step_size}")
        if max_num_steps <= 0:
            raise ValueError(f"max_num_steps must be positive, got {max_num_steps}")
        self.func = CountingField(field)
        self.register_buffer("times", torch.tensor(list(times), dtype=torch.float32), persistent=False)
        self.method = method
        self.rtol = rtol
        self.atol = atol
        self.step_size = step_size
        self.adjoint = adjoint
        self.max_num_steps = max_num_steps
        self.return_trajectory = return_trajectory
        self.nfe_forward = 0

    @property
    def field(self) -> nn.Module:
        return self.func.field

    @property
    def nfe_backward(self) -> int:
        return self.func.nfe - self.nfe_forward

    def solver_options(self) -> dict:
        if self.method in FIXED_GRID_METHODS:
            return {} if self.step_size is None else {"step_size": self.step_size}
        return {"max_num_steps": self.max_num_steps}

    def trajectory(self, h0: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        """States at every integration time, shape ``(len(times), *h0.shape)``."""
        times = (self.times if times is None else times).to(h0)
        self.func.nfe = 0
        solve = odeint_adjoint if self.adjoint else odeint
        extra = {"adjoint_params": tuple(self.func.parameters())} if self.adjoint else {}
        if self.adjoint:
            extra["adjoint_options"] = self.solver_options()
        with solver_guard():
            states = solve(
                self.func, h0, times, method=self.method, rtol=self.rtol, atol=self.atol,
                options=self.solver_options(), **extra,
            )
        self.nfe_forward = self.func.nfe
        return states

    def forward(self, h0: torch.Tensor) -> torch.Tensor:
        states = self.trajectory(h0)
        return states if self.return_trajectory else states[-1]

    def extra_repr(self) -> str:
        step = f", step_size={self.step_size}" if self.method in FIXED_GRID_METHODS else ""
        tol = "" if self.method in FIXED_GRID_METHODS else f", rtol={self.rtol}, atol={self.atol}"
        return f"method={self.method!r}{step}{tol}, adjoint={self.adjoint}, times={self.times.tolist()}"
