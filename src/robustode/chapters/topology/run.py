"""Chapter 1 runs: what a Neural ODE flow cannot do, and how augmentation (ANODE) lifts the limit.

Three experiments after Dupont et al. (2019), Sec. 4-5: the 1-D flip g(+-1) = -+1, the survey's intervals
[-1, 1] vs [-3, -2] u [2, 3], and 2-D concentric spheres with NODE, ANODE (several p) and a ResNet. Each run
writes a results file; the run plan's units are built here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

from robustode.chapters.topology.config import _config, augment_dim_of, model_names
from robustode.core.budget import Deadline
from robustode.core.timing import cpu_threads
from robustode.core.training import TrainSpec, correct_sign, train
from robustode.data.toy import concentric_spheres, flip_1d, intervals_1d
from robustode.models.toy import ODENet, ResNet
from robustode.profiles import experiment_config, resolve_device
from robustode.seeding import seed_everything
from robustode.store import Store
from robustode.units import DONE, PENDING, Context, Progress, Unit, ensure


def build(name: str, data_dim: int, cfg: dict, linear_head: bool = True) -> nn.Module:
    """'ResNet', 'NODE' or 'ANODE-p<k>' with the profile's hidden size and solver settings."""
    if name == "ResNet":
        return ResNet(data_dim, cfg["hidden"], cfg["resnet_layers"], out_dim=1, linear_head=linear_head)
    if name != "NODE" and not name.startswith("ANODE-p"):
        raise ValueError(f"unknown toy model {name!r}; use 'ResNet', 'NODE' or 'ANODE-p<k>'")
    return ODENet(
        data_dim, cfg["hidden"], out_dim=1, augment_dim=augment_dim_of(name), linear_head=linear_head,
        method=cfg["method"], rtol=cfg["tol"], atol=cfg["tol"], max_num_steps=cfg["max_num_steps"],
    )


def shuffled_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int) -> Callable[[int], Iterator]:
    def batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            yield x[idx], y[idx]

    return batches


def _spec(cfg: dict, seed: int) -> TrainSpec:
    return TrainSpec(epochs=cfg["epochs"], loss_fn=nn.SmoothL1Loss(), correct=correct_sign, lr=cfg["lr"], seed=seed)


def _states(model: nn.Module, x: torch.Tensor, num_times: int) -> torch.Tensor:
    """Hidden-state trajectories (time, point, dim): solver states for ODE models, layer outputs for ResNets."""
    with torch.no_grad():
        if isinstance(model, ResNet):
            return model.trajectory(x)
        return model.trajectory(x, torch.linspace(0.0, 1.0, num_times))


def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    with torch.no_grad():
        out = model(x)
        nfe = getattr(model, "nfe_forward", 0)
        return {
            "loss": nn.functional.smooth_l1_loss(out, y).item(),
            "accuracy": correct_sign(out, y) / len(y),
            "nfe_forward": nfe,
        }


def _flip_compute(cfg: dict, name: str, seed: int, ctx) -> dict:
    seed_everything(seed)
    x, y = flip_1d(cfg["num_points"], seed)
    model = build(name, 1, cfg, linear_head=False)
    hist = train(model, shuffled_batches(x, y, cfg["batch_size"], seed), _spec(cfg, seed), ctx.device,
                 progress=ctx.progress, desc=f"flip {name} seed {seed}", deadline=ctx.deadline,
                 epoch_estimate=ctx.epoch_estimate)
    model.cpu()
    probe = torch.tensor([[-1.0], [1.0]])
    with torch.no_grad():
        mapped = model(probe).squeeze(1).tolist()
    return {
        "history": hist.as_dict(), "final": _evaluate(model, x, y),
        "g_minus1": mapped[0], "g_plus1": mapped[1],
        "trajectory": _states(model, probe, cfg["plot_times"]).tolist(),
    }


def _classification_compute(cfg: dict, name: str, seed: int, data_dim: int, make_data: Callable[[int], tuple],
                            keep_flows_for: tuple[str, ...], part: str, ctx) -> dict:
    seed_everything(seed)
    x, y = make_data(seed)
    x_test, y_test = make_data(seed + 10_000)
    model = build(name, data_dim, cfg)
    hist = train(model, shuffled_batches(x, y, cfg["batch_size"], seed), _spec(cfg, seed), ctx.device,
                 progress=ctx.progress, desc=f"{part} {name} seed {seed}", deadline=ctx.deadline,
                 epoch_estimate=ctx.epoch_estimate)
    model.cpu()
    metrics = {"history": hist.as_dict(), "train": _evaluate(model, x, y),
               "test": _evaluate(model, x_test, y_test), "failure": hist.failure}
    if seed == 0 and name in keep_flows_for:
        sample = x[: cfg["plot_points"]]
        metrics["flow"] = {
            "x": sample.tolist(), "y": y[: cfg["plot_points"]].squeeze(1).tolist(),
            "trajectory": _states(model, sample, cfg["plot_times"]).tolist(),
        }
        if data_dim == 2 and name == "NODE":
            metrics["flow"]["field"] = vector_field(model, cfg["field_grid"])
    return metrics


def units(profile: str | dict, device: torch.device | None = None) -> list:
    """The run plan's units of chapter 1: flip, intervals and spheres, one per model x repetition (each a few
    seconds to minutes on a CPU, so no checkpoints: a stopped run starts again)."""
    parts = [p for p in ("flip", "intervals", "spheres") if p in experiment_config(profile, "topology")]
    cfgs = {part: _config(profile, part) for part in parts}
    jobs = []  # (part, cfg, name, seed, params, compute(ctx))
    if "flip" in cfgs:
        flip_cfg = cfgs["flip"]
        for seed in range(flip_cfg["repetitions"]):
            for name in ("NODE", "ResNet", "ANODE-p1"):
                jobs.append(("flip", flip_cfg, name, seed,
                             {**flip_cfg, "model": name, "readout": "first coordinate (no learnable head)"},
                             lambda ctx, name=name, seed=seed: _flip_compute(flip_cfg, name, seed, ctx)))
    classifications = []
    if "intervals" in cfgs:
        c = cfgs["intervals"]
        classifications.append(("intervals", c, 1, lambda seed, c=c: intervals_1d(c["num_inner"], c["num_outer"], seed),
                                ["NODE", "ANODE-p1", "ResNet"], ("NODE", "ANODE-p1", "ResNet")))
    if "spheres" in cfgs:
        c = cfgs["spheres"]
        if any(p < 0 for p in c["augment_dims"]):
            raise ValueError(f"augment_dims must be >= 0, got {c['augment_dims']}")
        classifications.append(("spheres", c, 2, lambda seed, c=c: concentric_spheres(
            2, c["num_inner"], c["num_outer"], tuple(c["inner_range"]), tuple(c["outer_range"]), seed),
            model_names(c["augment_dims"]), ("NODE", "ANODE-p1")))
    for part, cfg, dim, make, names, keep in classifications:
        for seed in range(cfg["repetitions"]):
            for name in names:
                jobs.append((part, cfg, name, seed, {**cfg, "model": name},
                             lambda ctx, cfg=cfg, name=name, seed=seed, dim=dim, make=make, keep=keep, part=part:
                             _classification_compute(cfg, name, seed, dim, make, keep, part, ctx)))
    out = []
    for index, (part, cfg, name, seed, params, compute) in enumerate(jobs):
        experiment, run = f"topology-{part}", f"{name}-seed{seed}"

        def status(store, experiment=experiment, run=run, params=params, epochs=cfg["epochs"]) -> Progress:
            stored = store.run(experiment, run, params) is not None
            return Progress(DONE, "results file written") if stored else Progress(PENDING, "", epochs)

        out.append(Unit(id=f"topology/{part}/{name}/seed{seed}", experiment=experiment, run=run, params=params, seed=seed,
                        epochs=cfg["epochs"], stages=[], kind=f"topology/{part}/{name}", compute=compute, status=status,
                        probe=lambda: {"epoch_s": 1.0}, priority=index))
    return out


def _run_part(profile: str | dict, part: str, device: str, results_dir: Path | None, progress: bool,
              compute: bool = True) -> list[dict]:
    cfg = _config(profile, part)
    name = profile if isinstance(profile, str) else profile["name"]
    ctx = Context(Store(name, results_dir), resolve_device(device), Deadline(), progress)
    # tiny models: a second intra-op thread only spins on a shared machine (the quick profile sets one)
    with cpu_threads(cfg.get("cpu_threads")):
        found = [ensure(u, ctx, cfg["resume"], compute) for u in units(profile) if u.experiment == f"topology-{part}"]
    return [r for r in found if r is not None]


def flip(profile: str | dict, device: str = "auto", results_dir: Path | None = None, progress: bool = True,
         compute: bool = True) -> list[dict]:
    """Fit g(-1) = 1, g(1) = -1 with the flow itself (no learnable read-out): NODE, ResNet, ANODE p=1."""
    return _run_part(profile, "flip", device, results_dir, progress, compute)


def vector_field(model: ODENet, grid: int, extent: float = 2.0, t: float = 0.0) -> dict:
    """The learned field f(h, t) of a 2-D NODE on a grid x grid lattice."""
    axis = torch.linspace(-extent, extent, grid)
    xx, yy = torch.meshgrid(axis, axis, indexing="xy")
    h = torch.stack([xx.flatten(), yy.flatten()], dim=1)
    with torch.no_grad():
        f = model.block.field(torch.tensor(t), h)
    return {"x": xx.tolist(), "y": yy.tolist(), "u": f[:, 0].reshape(grid, grid).tolist(),
            "v": f[:, 1].reshape(grid, grid).tolist()}


def intervals(profile, device: str = "auto", results_dir: Path | None = None, progress: bool = True,
              compute: bool = True) -> list[dict]:
    """Classify [-1, 1] against [-3, -2] u [2, 3] (1-D): NODE, ANODE p=1 and ResNet with a linear head."""
    return _run_part(profile, "intervals", device, results_dir, progress, compute)


def spheres(profile, device: str = "auto", results_dir: Path | None = None, progress: bool = True,
            compute: bool = True) -> list[dict]:
    """Dupont et al.'s 2-D concentric spheres: ResNet, NODE and ANODE for every configured p."""
    return _run_part(profile, "spheres", device, results_dir, progress, compute)
