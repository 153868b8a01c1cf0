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
BACKENDS = ("torchdiffeq", "loop")
LOOP_METHODS = ("euler", "midpoint", "rk4")


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


def _euler(f, t, dt, h):
    return h + dt * f(t, h)


def _midpoint(f, t, dt, h):
    return h + dt * f(t + dt / 2, h + dt / 2 * f(t, h))


def _rk4_38(f, t, dt, h):
    # torchdiffeq's "rk4" is Kutta's 3/8 rule (rk4_alt_step_func); the loop matches it.
    k1 = f(t, h)
    k2 = f(t + dt / 3, h + dt * k1 / 3)
    k3 = f(t + dt * 2 / 3, h + dt * (k2 - k1 / 3))
    k4 = f(t + dt, h + dt * (k1 - k2 + k3))
    return h + dt * (k1 + 3 * (k2 + k3) + k4) / 8


_LOOP_STEPS = {"euler": _euler, "midpoint": _midpoint, "rk4": _rk4_38}


def fixed_grid(times: Sequence[float], step_size: float) -> tuple[list[float], list[int]]:
    """The step grid through ``times`` and the grid index of each time; every interval must be a
    whole number of steps (checked here, once, instead of per step on the device)."""
    grid, marks = [float(times[0])], [0]
    for a, b in zip(times, times[1:], strict=False):
        n = round((b - a) / step_size)
        if n < 1 or abs(n * step_size - (b - a)) > 1e-6 * max(1.0, abs(b - a)):
            raise ValueError(f"loop backend: [{a}, {b}] is not a whole number of steps of {step_size}")
        grid += [a + (b - a) * k / n for k in range(1, n + 1)]
        marks.append(len(grid) - 1)
    return grid, marks


_GRIDS: dict[tuple[tuple[float, ...], torch.device, torch.dtype], torch.Tensor] = {}


def _grid_tensor(grid: tuple[float, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The grid as a tensor on ``device``, made once and kept for the process: a host-to-device copy inside a
    CUDA-graph capture is illegal, and a captured graph reads this tensor's memory at every replay, so it is
    never evicted (a bounded cache could free it under a live graph). A model has a handful of grids."""
    key = (grid, torch.device(device), dtype)
    if key not in _GRIDS:
        _GRIDS[key] = torch.tensor(grid, dtype=dtype, device=device)
    return _GRIDS[key]


def loop_integrate(
    field: nn.Module, h0: torch.Tensor, times: Sequence[float], method: str, step_size: float
) -> torch.Tensor:
    """Fixed-step solve as a plain Python loop: no per-step host synchronisation, so it can be
    captured in a CUDA graph. Same numbers as torchdiffeq's fixed-grid solvers (up to rounding of
    the grid); states at ``times`` stacked on dimension 0."""
    step = _LOOP_STEPS[method]
    grid, marks = fixed_grid(times, step_size)
    ts = _grid_tensor(tuple(grid), h0.device, h0.dtype)
    states, h = [h0], h0
    for k in range(len(grid) - 1):
        h = step(field, ts[k], grid[k + 1] - grid[k], h)
        if k + 1 in marks:
            states.append(h)
    return torch.stack(states)


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
        backend: ``"torchdiffeq"`` (default) or ``"loop"``, a hand-written fixed-step loop for
            euler / midpoint / rk4 without host synchronisation (CUDA-graph capturable), same numbers.

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
        backend: str = "torchdiffeq",
    ):
        super().__init__()
        check_method(method)
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
        if backend == "loop" and (method not in LOOP_METHODS or step_size is None or adjoint):
            raise ValueError(f"the loop backend needs method in {LOOP_METHODS}, a step_size and adjoint=False")
        if len(times) < 2 or any(b <= a for a, b in zip(times, times[1:], strict=False)):
            raise ValueError(f"times must be strictly increasing with at least two points, got {list(times)}")
        if step_size is not None and step_size <= 0:
            raise ValueError(f"step_size must be positive, got {step_size}")
        if max_num_steps <= 0:
            raise ValueError(f"max_num_steps must be positive, got {max_num_steps}")
        self.func = CountingField(field)
        self.register_buffer("times", torch.tensor(list(times), dtype=torch.float32), persistent=False)
        self._time_points = [float(t) for t in times]  # host copy: reading the buffer would sync
        self.method = method
        self.rtol = rtol
        self.atol = atol
        self.step_size = step_size
        self.adjoint = adjoint
        self.max_num_steps = max_num_steps
        self.return_trajectory = return_trajectory
        self.backend = backend
        self.nfe_forward = 0

    @property
    def field(self) -> nn.Module:
        return self.func.field

    @property
    def time_points(self) -> list[float]:
        """The integration times as Python floats (reading the ``times`` buffer on a GPU would sync)."""
        return list(self._time_points)

    @property
    def nfe_backward(self) -> int:
        return self.func.nfe - self.nfe_forward

    def solver_options(self) -> dict:
        if self.method in FIXED_GRID_METHODS:
            return {} if self.step_size is None else {"step_size": self.step_size}
        return {"max_num_steps": self.max_num_steps}

    def trajectory(self, h0: torch.Tensor, times: Sequence[float] | torch.Tensor | None = None) -> torch.Tensor:
        """States at every integration time, shape ``(len(times), *h0.shape)``. ``times``: Python floats (the
        loop backend uses them as they are: reading a tensor's values would be a host read inside a captured
        step) or a tensor (torchdiffeq's backends)."""
        self.func.nfe = 0
        if self.backend == "loop":
            points = self._time_points if times is None else [float(t) for t in times]
            states = loop_integrate(self.func, h0, points, self.method, self.step_size)
            self.nfe_forward = self.func.nfe
            return states
        if times is None:
            times = self.times
        elif not isinstance(times, torch.Tensor):
            times = torch.tensor([float(t) for t in times])
        times = times.to(h0)
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


def nfe_counts(model: nn.Module) -> tuple[int, int]:
    """(forward NFE of the last forward pass, backward NFE of the last backward pass), all ODE blocks."""
    blocks = [m for m in model.modules() if isinstance(m, ODEBlock)]
    return sum(b.nfe_forward for b in blocks), sum(b.nfe_backward for b in blocks)


class ReportsNFE:
    """Mixin for models holding ODE blocks: ``nfe_forward`` / ``nfe_backward`` summed over all of them."""

    @property
    def nfe_forward(self) -> int:
        return nfe_counts(self)[0]

    @property
    def nfe_backward(self) -> int:
        return nfe_counts(self)[1]
