"""Chapter 5, memory and compute: peak memory and wall time of one training step of one ODE block (adjoint
against backprop through the solver) and of ResNets of growing depth.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from robustode.chapters.anode.config import _config, _profile_name
from robustode.core.memory import step_cost
from robustode.core.odeblock import FIXED_GRID_METHODS, ODEBlock, check_method
from robustode.core.timing import cpu_threads
from robustode.models import count_parameters
from robustode.models.conv_anode import ConvDynamics
from robustode.profiles import check_positive, resolve_device
from robustode.results import mean_sd, now
from robustode.seeding import seed_everything
from robustode.store import Store
from robustode.units import DONE, PENDING, Progress, Unit, time_steps
from robustode.wording import plural


class ConvResNet(nn.Module):
    """The same-depth discrete network: ``depth`` residual blocks h <- h + f_k(h), each its own conv field."""

    def __init__(self, channels: int, num_filters: int, depth: int):
        super().__init__()
        self.fields = nn.ModuleList(ConvDynamics(channels, num_filters, time_dependent=False) for _ in range(depth))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for f in self.fields:
            h = h + f(None, h)
        return h


def memory_settings(cfg: dict) -> list[dict]:
    """Every measured configuration: fixed-grid methods x steps, dopri5 x tolerances, ResNet x depth, both gradients."""
    for key in ("tolerances", "resnet_depths"):
        check_positive(**{f"{key}[{i}]": v for i, v in enumerate(cfg[key])})
    settings = []
    for method, steps in cfg["fixed"].items():
        if method not in FIXED_GRID_METHODS:
            raise ValueError(f"{method!r} is not a fixed-grid method; choose from {', '.join(sorted(FIXED_GRID_METHODS))}")
        check_positive(**{f"{method} steps[{i}]": n for i, n in enumerate(steps)})
        settings += [{"kind": "ode", "method": method, "steps": n, "adjoint": a} for n in steps for a in (False, True)]
    check_method(cfg["adaptive_method"])
    settings += [{"kind": "ode", "method": cfg["adaptive_method"], "tol": tol, "adjoint": a}
                 for tol in cfg["tolerances"] for a in (False, True)]
    settings += [{"kind": "resnet", "depth": d, "adjoint": False} for d in cfg["resnet_depths"]]
    return settings


def memory_run_name(setting: dict) -> str:
    grad = "adjoint" if setting["adjoint"] else "backprop"
    if setting["kind"] == "resnet":
        return f"resnet-depth{setting['depth']}"
    size = f"n{setting['steps']}" if "steps" in setting else f"tol{setting['tol']:.0e}"
    return f"{setting['method']}-{size}-{grad}"


def measure(setting: dict, cfg: dict, device: torch.device) -> dict:
    """One setting's saved-for-backward bytes, allocator peak, median step time and NFE."""
    seed_everything(0)
    channels, size = cfg["channels"], cfg["image_size"]
    if setting["kind"] == "resnet":
        net: nn.Module = ConvResNet(channels, cfg["filters"], setting["depth"])
    else:
        solver = ({"step_size": 1.0 / setting["steps"]} if "steps" in setting
                  else {"rtol": setting["tol"], "atol": setting["tol"], "max_num_steps": cfg["max_num_steps"]})
        net = ODEBlock(ConvDynamics(channels, cfg["filters"], cfg["time_dependent"]), method=setting["method"],
                       adjoint=setting["adjoint"], **solver)
    net.to(device)
    h0 = torch.rand(cfg["batch"], channels, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    target = torch.rand(h0.shape, generator=torch.Generator().manual_seed(1)).to(device)

    def step() -> None:
        net.zero_grad(set_to_none=True)
        F.mse_loss(net(h0), target).backward()

    cost = step_cost(step, device, cfg["warmup"], cfg["repeats"])
    is_ode = isinstance(net, ODEBlock)
    return {
        "setting": setting,
        **cost,
        "nfe_forward": net.nfe_forward if is_ode else setting["depth"],
        "nfe_backward": net.nfe_backward if is_ode else 0,
        "parameters": count_parameters(net),
        "state_bytes": h0.numel() * h0.element_size(),
    }


def memory_cost(profile: str | dict, device: str = "auto", results_dir: Path | None = None, progress: bool = True,
                compute: bool = True) -> list[dict]:
    """Peak memory and wall time of one training step of one ODE block (adjoint vs backprop) and of ResNets: the
    stored measurements, and with ``compute`` the missing ones measured now (the run plan's ``anode/memory``
    units measure them in the background: at paper scale on a CPU they take hours, not seconds)."""
    cfg = _config(profile, "memory")
    store = Store(_profile_name(profile), results_dir)
    dev = resolve_device(device)
    runs = []
    with cpu_threads(cfg["cpu_threads"]):
        for setting in tqdm(memory_settings(cfg), desc="memory", disable=not progress, mininterval=2.0):
            params = {**cfg, "setting": setting}
            stored = store.run("anode-memory", memory_run_name(setting), params) if cfg["resume"] or not compute else None
            if stored is None and compute:
                stored = store.write("anode-memory", memory_run_name(setting), params=params, seed=0, started=now(),
                                     device=dev, metrics=measure(setting, cfg, dev))
            if stored is not None:
                runs.append(stored)
    return runs


def memory_caption(profile: str | dict, runs: list[dict]) -> str:
    """What the memory section measured: the block, the device, the repeats, and how many measurements are stored."""
    cfg = _config(profile, "memory")
    total = len(memory_settings(cfg))
    devices = "; ".join(sorted({r["provenance"]["device"] for r in runs})) or "none yet"
    stored = "" if len(runs) == total else (
        f" {len(runs)} of {plural(total, 'measurement')} stored; the rest: "
        f"`python -m robustode run --profile {_profile_name(profile)} --only anode/memory`.")
    return (f"One block: batch {cfg['batch']}, {cfg['channels']} channels of {cfg['image_size']}×{cfg['image_size']}, "
            f"{cfg['filters']} filters, time-dependent; device `{devices}`; median of {cfg['repeats']} timed steps.{stored}")


@functools.lru_cache(maxsize=8)
def _eval_seconds(channels: int, filters: int, size: int, batch: int, time_dependent: bool) -> float:
    """Seconds of one forward and backward evaluation of the conv field at this size, timed here."""
    field = ConvDynamics(channels, filters, time_dependent)
    h = torch.rand(batch, channels, size, size, requires_grad=True)
    return time_steps(lambda: field(torch.zeros(()), h).sum().backward(), repeats=2)


def expected_evaluations(setting: dict) -> float:
    """Field evaluations of one training step, forward and backward (an estimate for adaptive dopri5: its steps
    depend on the field; about two more accepted steps per decade of tolerance, six evaluations each)."""
    if setting["kind"] == "resnet":
        return setting["depth"]
    per_step = {"euler": 1, "midpoint": 2, "rk4": 4}.get(setting["method"], 6)
    steps = setting["steps"] if "steps" in setting else 2 + 2 * max(0.0, -math.log10(setting["tol"]))
    forward = per_step * steps
    return forward * (2 if setting["adjoint"] else 1)


def units(profile: str | dict, device: torch.device | None = None) -> list[Unit]:
    """One run-plan unit per memory measurement (``anode/memory/<setting>``), cheapest first: each is seconds on
    the quick profile and up to an hour at paper scale on a 2-core CPU."""
    cfg = _config(profile, "memory")
    out = []
    for index, setting in enumerate(sorted(memory_settings(cfg), key=expected_evaluations)):
        run, params = memory_run_name(setting), {**cfg, "setting": setting}

        def status(store: Store, run=run, params=params) -> Progress:
            if store.run("anode-memory", run, params) is not None:
                return Progress(DONE, "results file written")
            return Progress(PENDING, "", 0, ["measure"])

        def compute(ctx, setting=setting) -> dict:
            with cpu_threads(cfg["cpu_threads"]):
                return measure(setting, cfg, ctx.device)

        def probe(setting=setting) -> dict:
            t = _eval_seconds(cfg["channels"], cfg["filters"], cfg["image_size"], cfg["batch"], cfg["time_dependent"])
            return {"epoch_s": 0.0, "stages_s": {"measure": (cfg["warmup"] + cfg["repeats"]) * expected_evaluations(setting) * t}}

        out.append(Unit(id=f"anode/memory/{run}", experiment="anode-memory", run=run, params=params, seed=0, epochs=0,
                        stages=["measure"], kind=f"anode-memory/{run}", compute=compute, status=status, probe=probe,
                        priority=-1000 + index))
    return out


def memory_series(runs: list[dict]) -> dict[str, list[dict]]:
    """Measurements grouped into curves ('rk4, adjoint', 'dopri5, backprop', 'ResNet', ...), ordered by forward NFE."""
    series: dict[str, list[dict]] = {}
    for r in runs:
        s = r["metrics"]["setting"]
        label = "ResNet (backprop)" if s["kind"] == "resnet" else f"{s['method']}, {'adjoint' if s['adjoint'] else 'backprop'}"
        series.setdefault(label, []).append({**s, **{k: v for k, v in r["metrics"].items() if k != "setting"}})
    return {k: sorted(v, key=lambda m: m["nfe_forward"]) for k, v in series.items()}


def peak_bytes(measurement: dict) -> int:
    """The allocator's peak: CUDA's on a GPU, torch.profiler's on the CPU."""
    return measurement.get("cuda_peak_bytes", measurement.get("allocator_peak_bytes"))


def memory_table(runs: list[dict]) -> list[dict]:
    """One row per measured configuration, in MiB and milliseconds."""
    rows = []
    for label, points in memory_series(runs).items():
        for m in points:
            size = (f"depth {m['depth']}" if m["kind"] == "resnet" else
                    plural(m["steps"], "step") if "steps" in m else f"tol {m['tol']:g}")
            rows.append({
                "solver / gradient": label,
                "setting": size,
                "NFE fwd / bwd": f"{m['nfe_forward']} / {m['nfe_backward']}",
                "saved for backward (MiB)": f"{m['saved_bytes'] / 2**20:.2f}",
                "allocator peak (MiB)": f"{peak_bytes(m) / 2**20:.2f}",
                "step time (ms, median)": f"{1000 * m['seconds']:.1f}",
            })
    return rows


def constant_memory_check(runs: list[dict], method: str) -> dict:
    """Growth of memory and time from the fewest to the most steps of a fixed-grid ``method``, both gradients.

    The adjoint's "constant memory" holds when its memory ratio stays near 1 while backprop's grows
    with the steps; ``time_ratio`` is what the adjoint's extra backward solve costs.
    """
    series = memory_series(runs)
    adjoint, backprop = series.get(f"{method}, adjoint"), series.get(f"{method}, backprop")
    if not adjoint or not backprop:
        raise ValueError(f"no {method!r} measurements; measured: {', '.join(series)}")
    first, last = adjoint[0], adjoint[-1]
    b_first, b_last = backprop[0], backprop[-1]
    by_steps = {m["steps"]: m for m in backprop}
    return {
        "method": method,
        "steps": (first["steps"], last["steps"]),
        "adjoint_saved_ratio": last["saved_bytes"] / first["saved_bytes"],
        "adjoint_peak_ratio": peak_bytes(last) / peak_bytes(first),
        "backprop_saved_ratio": b_last["saved_bytes"] / b_first["saved_bytes"],
        "backprop_peak_ratio": peak_bytes(b_last) / peak_bytes(b_first),
        "memory_saving_at_most_steps": peak_bytes(b_last) / peak_bytes(last),
        "time_ratio": {m["steps"]: m["seconds"] / by_steps[m["steps"]]["seconds"] for m in adjoint if m["steps"] in by_steps},
    }


def slope(points: list[dict], key: Callable[[dict], float]) -> float:
    """Least-squares bytes (or seconds) per forward function evaluation along one curve."""
    xs = [p["nfe_forward"] for p in points]
    ys = [key(p) for p in points]
    mx, my = mean_sd(xs)[0], mean_sd(ys)[0]
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else math.nan
