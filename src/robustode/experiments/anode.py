"""Chapter 5: ANODEs at image scale (Dupont et al. 2019, Sec. 5.2; the survey's Figs. 3-4) and what
continuous depth costs (Chen et al. 2018's constant-memory adjoint).

* :func:`image_classification` trains conv NODE / ANODE variants (a sweep over the augmented
  dimension p) on one image set, recording per iteration the loss and the forward / backward NFE,
  then the test accuracy and a solver-accuracy check; its NODE and parameter-matched ANODE rows
  feed Dupont et al.'s Table 1.
* :func:`instability` trains the NODE for longer and keeps every repetition's trace, failures
  included (a solve over the step budget or with an underflowing step ends the run, recorded).
* :func:`memory_cost` measures one ODE block's training step (peak memory, wall time) with the
  adjoint against backpropagation through the solver as the number of solver steps grows, and the
  same-depth ResNet.

Each run writes a results file; every summary below reads only those files.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from robustode.budget import Deadline
from robustode.data.images import check_dataset, is_available, load_tensors, subset, tensor_batches
from robustode.experiments import run_once
from robustode.memory import step_cost
from robustode.models import count_parameters
from robustode.models.conv_anode import ConvDynamics, ConvODENet
from robustode.odeblock import FIXED_GRID_METHODS, ODEBlock, SolverFailure, check_method, solver_guard
from robustode.profiles import check_choice, check_positive, experiment_config, resolve_device
from robustode.reference import compare, reference_values
from robustode.results import config_key, fmt_mean_sd, load_results, mean_sd
from robustode.seeding import seed_everything
from robustode.timing import cpu_threads
from robustode.training import TrainSpec, train

DATA_MISSING = "data missing ({} files not in the data folder)"
TABLE_1_ROLES = ("NODE", "ANODE")


def _profile_name(profile: str | dict) -> str:
    return profile if isinstance(profile, str) else profile["name"]


def _config(profile: str | dict, part: str) -> dict:
    section = experiment_config(profile, "anode")
    cfg = {**section["common"], **section[part]}
    sizes = ("epochs", "batch_size", "lr", "repetitions", "tol", "max_num_steps", "eval_batch",
             "repeats", "batch", "channels", "filters", "image_size", "threads")
    check_positive(**{k: cfg[k] for k in sizes if k in cfg and cfg[k] is not None})
    for key in ("train_size", "test_size"):
        if cfg.get(key) is not None:
            check_positive(**{key: cfg[key]})
    if "method" in cfg:
        check_method(cfg["method"])
    return cfg


def experiment_name(dataset: str) -> str:
    return f"anode-{dataset}"


def missing_reason(dataset: str) -> str | None:
    """Why ``dataset``'s runs cannot be made here ("data missing (...)"), or None when it is on disk."""
    return None if is_available(dataset) else DATA_MISSING.format(dataset)


def _not_run_rows(runs: list[dict], dataset: str, **keys: str) -> list[dict]:
    """One "not run: data missing (...)" row when nothing is stored and the data set is missing, else []."""
    why = None if runs else missing_reason(dataset)
    return [{**keys, "result": f"not run: {why}"}] if why else []


# --- models and data -------------------------------------------------------------------------------


def build_variant(dataset: str, variant: dict, cfg: dict) -> ConvODENet:
    """A conv ODE classifier for ``dataset`` at the profile's image size, dopri5 + adjoint as the original."""
    spec = check_dataset(dataset)
    size = cfg.get("image_size") or spec.size
    return ConvODENet(
        (spec.channels, size, size), variant["filters"], variant["augment_dim"], spec.classes,
        time_dependent=cfg["time_dependent"], adjoint=True, method=cfg["method"], rtol=cfg["tol"], atol=cfg["tol"],
        max_num_steps=cfg["max_num_steps"],
    )


def resize(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """Bilinear, antialiased resize to ``size`` x ``size`` (Dupont et al.'s loaders take a ``size`` too)."""
    if size is None or size == x.shape[-1]:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)


def image_data(dataset: str, cfg: dict) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Seeded train / test subsets (the same for every repetition), resized to the profile's size."""
    x, y = subset(*load_tensors(dataset, train=True), cfg["train_size"], seed=0)
    x_test, y_test = subset(*load_tensors(dataset, train=False), cfg["test_size"], seed=0)
    return (resize(x, cfg.get("image_size")), y), (resize(x_test, cfg.get("image_size")), y_test)


# --- evaluation -------------------------------------------------------------------------------------


def evaluate(model: ConvODENet, x: torch.Tensor, y: torch.Tensor, batch: int) -> dict:
    """Test accuracy and mean forward NFE; a failed solve gives accuracy ``None`` and its reason."""
    device = next(model.parameters()).device
    model.eval()
    correct, nfes = 0, []
    try:
        with torch.no_grad():
            for start in range(0, len(x), batch):
                xb, yb = x[start : start + batch].to(device), y[start : start + batch].to(device)
                correct += int((model(xb).argmax(1) == yb).sum())
                nfes.append(model.nfe_forward)
    except SolverFailure as failure:
        return {"accuracy": None, "nfe_forward": None, "failure": failure.reason}
    return {"accuracy": correct / len(x), "nfe_forward": sum(nfes) / len(nfes), "failure": None}


def solver_check(model: ConvODENet, x: torch.Tensor, y: torch.Tensor, reference_tol: float) -> dict:
    """How far the trained classifier is from the ODE it claims to solve, and its gradient from the model's.

    Solves the images' ODE at the training tolerance (float32) and at ``reference_tol`` in float64,
    and compares final states (relative L2 error per image), logits and predicted classes. Then
    compares the adjoint gradient of the cross-entropy on these images with backpropagation through
    the same forward solve (relative L2 error over all parameters).
    """
    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)
    block = model.block
    try:
        with torch.no_grad():
            h = model.features(x)
            nfe = model.nfe_forward
            reference = _reference_copy(model, reference_tol)
            h_ref = reference.features(x.double())
            nfe_ref = reference.nfe_forward
            logits, logits_ref = model.head(h.flatten(1)), reference.head(h_ref.flatten(1))
        adjoint_grad, nfe_backward = _gradient(model, x, y, adjoint=True)
        backprop_grad, _ = _gradient(model, x, y, adjoint=False)
    except SolverFailure as failure:
        return {"failure": failure.reason}
    error = (h.double() - h_ref).flatten(1).norm(dim=1) / h_ref.flatten(1).norm(dim=1).clamp_min(1e-12)
    pred, pred_ref = logits.argmax(1), logits_ref.argmax(1)
    return {
        "images": len(x),
        "tolerance": block.rtol,
        "reference_tolerance": reference_tol,
        "nfe_forward": nfe,
        "nfe_forward_reference": nfe_ref,
        "state_rel_error_mean": error.mean().item(),
        "state_rel_error_max": error.max().item(),
        "logit_abs_diff_max": (logits.double() - logits_ref).abs().max().item(),
        "prediction_agreement": (pred == pred_ref).double().mean().item(),
        "accuracy": (pred == y).double().mean().item(),
        "accuracy_reference": (pred_ref == y).double().mean().item(),
        "nfe_backward_adjoint": nfe_backward,
        "gradient_rel_error": ((adjoint_grad - backprop_grad).norm() / backprop_grad.norm()).item(),
        "failure": None,
    }


def _gradient(model: ConvODENet, x: torch.Tensor, y: torch.Tensor, adjoint: bool) -> tuple[torch.Tensor, int]:
    """All parameters' gradient of the cross-entropy, by the adjoint or through the solver; and backward NFE."""
    saved = model.block.adjoint
    model.block.adjoint = adjoint
    try:
        model.zero_grad(set_to_none=True)
        with solver_guard():
            F.cross_entropy(model(x), y).backward()
        grad = torch.cat([p.grad.flatten() for p in model.parameters()]).double()
        return grad, model.nfe_backward
    finally:
        model.block.adjoint = saved
        model.zero_grad(set_to_none=True)


def _reference_copy(model: ConvODENet, tol: float) -> ConvODENet:
    import copy

    reference = copy.deepcopy(model).double()
    reference.block.rtol = reference.block.atol = tol
    reference.block.max_num_steps = max(reference.block.max_num_steps, 100_000)
    return reference


# --- training runs ----------------------------------------------------------------------------------


def _variants(cfg: dict, dataset: str) -> dict[str, dict]:
    variants = cfg["variants"].get(dataset)
    if not variants:
        raise ValueError(f"profile has no anode variants for {dataset!r}; it has: {', '.join(cfg['variants'])}")
    for name, variant in variants.items():
        check_positive(**{f"{name}.filters": variant["filters"]})
        if variant["augment_dim"] < 0:
            raise ValueError(f"{name}: augment_dim must be >= 0, got {variant['augment_dim']}")
    return variants


def _train_variant(
    dataset: str, name: str, variant: dict, cfg: dict, seed: int, data: tuple, device: torch.device,
    checkpoint: Path | None, progress: bool, desc: str, deadline: Deadline | None = None, epoch_estimate: float = 0.0,
    evaluate_estimate: float = 0.0, on_epoch: Callable[[dict], None] | None = None,
) -> dict:
    """Train one variant (checkpointed per epoch), then test it. With ``deadline``, an epoch starts only if it
    fits, and the evaluation (test set and solver check, one piece that cannot resume) only if
    ``evaluate_estimate`` seconds fit; else :class:`~robustode.budget.OutOfBudget` at that boundary (the
    checkpoint then holds the trained model, and the next call goes straight to the evaluation)."""
    (x, y), (x_test, y_test) = data
    seed_everything(seed)
    model = build_variant(dataset, variant, cfg)
    spec = TrainSpec(epochs=cfg["epochs"], lr=cfg["lr"], seed=seed)
    hist = train(model, tensor_batches(x.to(device), y.to(device), cfg["batch_size"], seed), spec, device,
                 checkpoint=checkpoint, progress=progress, desc=desc, deadline=deadline, epoch_estimate=epoch_estimate,
                 on_epoch=on_epoch)
    if deadline is not None:
        deadline.check(evaluate_estimate, f"{desc}: evaluation")
    metrics = {
        "parameters": count_parameters(model),
        "history": hist.as_dict(),
        "failure": hist.failure,
        "train_seconds": sum(e["seconds"] for e in hist.epochs),
        "test": evaluate(model, x_test, y_test, cfg["eval_batch"]),
    }
    if "solver_check" in cfg:
        n = cfg["solver_check"]["images"]
        metrics["solver_check"] = solver_check(model, x_test[:n], y_test[:n], cfg["solver_check"]["reference_tol"])
    return metrics


def _checkpoint(results_dir: Path, cfg: dict, experiment: str, run: str, params: dict) -> Path | None:
    """Named with the parameters' hash: a changed profile never resumes a stale run."""
    return Path(results_dir) / "checkpoints" / experiment / f"{run}-{config_key(params)}.pt" if cfg["checkpoint"] else None


def image_classification(
    profile: str | dict, dataset: str, device: str = "auto", results_dir: Path | None = None, progress: bool = True
) -> list[dict]:
    """Dupont et al.'s image experiment: every variant (NODE and ANODEs over p) x repetitions on ``dataset``.

    Returns ``[]`` without running anything when the data set is not on disk.
    """
    cfg = _config(profile, "images")
    check_choice("dataset", dataset, cfg["datasets"])
    variants = _variants(cfg, dataset)
    if not is_available(dataset):
        return []
    dev = resolve_device(device)
    data = image_data(dataset, cfg)
    experiment = experiment_name(dataset)
    runs = []
    with cpu_threads(cfg["threads"]):
        for seed in range(cfg["repetitions"]):
            for name, variant in variants.items():
                run = f"{name}-seed{seed}"
                params = {**cfg, "variants": None, "dataset": dataset, "model": name, **variant}
                runs.append(run_once(
                    results_dir, experiment, run, params=params, seed=seed, profile=_profile_name(profile), device=dev,
                    resume=cfg["resume"],
                    compute=lambda name=name, variant=variant, seed=seed, run=run, params=params: _train_variant(
                        dataset, name, variant, cfg, seed, data, dev,
                        _checkpoint(results_dir, cfg, experiment, run, params), progress, f"{dataset} {name} seed {seed}"),
                ))
    return runs


def instability(profile: str | dict, device: str = "auto", results_dir: Path | None = None, progress: bool = True) -> list[dict]:
    """Dupont et al.'s Fig. 4: the NODE trained for longer; each repetition's loss / NFE trace and failure."""
    cfg = _config(profile, "instability")
    dataset = check_choice("dataset", cfg["dataset"], ("MNIST", "CIFAR10"))
    if not is_available(dataset):
        return []
    dev = resolve_device(device)
    data = image_data(dataset, cfg)
    runs = []
    with cpu_threads(cfg["threads"]):
        for seed in range(cfg["repetitions"]):
            run = f"{cfg['model']}-seed{seed}"
            params = {**cfg, "dataset": dataset}
            runs.append(run_once(
                results_dir, "anode-instability", run, params=params, seed=seed, profile=_profile_name(profile),
                device=dev, resume=cfg["resume"],
                compute=lambda seed=seed, run=run, params=params: _train_variant(
                    dataset, cfg["model"], {"filters": cfg["filters"], "augment_dim": cfg["augment_dim"]}, cfg, seed,
                    data, dev, _checkpoint(results_dir, cfg, "anode-instability", run, params), progress,
                    f"instability seed {seed}"),
            ))
    return runs


# --- summaries --------------------------------------------------------------------------------------


def variants_table(profile: str | dict, dataset: str) -> list[dict]:
    """The profile's variants for ``dataset``: filters, p, image size and parameter count as built."""
    cfg = _config(profile, "images")
    spec = check_dataset(dataset)
    rows = []
    for name, variant in _variants(cfg, dataset).items():
        size = cfg.get("image_size") or spec.size
        rows.append({
            "model": name, "filters": variant["filters"], "p": variant["augment_dim"],
            "input": f"{spec.channels}x{size}x{size}",
            "parameters": f"{count_parameters(build_variant(dataset, variant, cfg)):,}",
        })
    return rows


def _by_model(runs: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for r in runs:
        grouped.setdefault(r["params"]["model"], []).append(r)
    return grouped


def _last_fraction(values: list[float], fraction: float = 0.1) -> list[float]:
    return values[-max(1, math.ceil(fraction * len(values))):] if values else []


def _final_means(iterations: list[dict], key: str) -> list[float]:
    """Per run: the mean of ``key`` over its last 10 % of iterations (the end-of-training level)."""
    tails = [_last_fraction(its[key]) for its in iterations]
    return [sum(t) / len(t) for t in tails if t]


def sweep_summary(results_dir: Path, dataset: str) -> list[dict]:
    """Per variant: parameters, runs, failures, final loss / NFE (mean of the last 10 % of iterations), test accuracy.

    Nothing stored and the data set missing: one "not run: data missing (...)" row.
    """
    stored = load_results(results_dir, experiment_name(dataset))
    rows = _not_run_rows(stored, dataset, model="all variants")
    for name, runs in _by_model(stored).items():
        its = [r["metrics"]["history"]["iterations"] for r in runs]
        ok = [r for r in runs if not r["metrics"]["failure"]]
        rows.append({
            "model": name,
            "p": runs[0]["params"]["augment_dim"],
            "filters": runs[0]["params"]["filters"],
            "parameters": f"{runs[0]['metrics']['parameters']:,}",
            "runs": len(runs),
            "failed": len(runs) - len(ok),
            "iterations": fmt_mean_sd([len(i["loss"]) for i in its], 0),
            "final loss": fmt_mean_sd(_final_means(its, "loss"), 3),
            "forward NFE": fmt_mean_sd(_final_means(its, "nfe_forward"), 1),
            "backward NFE": fmt_mean_sd(_final_means(its, "nfe_backward"), 1),
            "test accuracy (%)": fmt_mean_sd([r["metrics"]["test"]["accuracy"] for r in ok], 1, 100),
            "train s / iteration": fmt_mean_sd(
                [r["metrics"]["train_seconds"] / max(1, len(r["metrics"]["history"]["iterations"]["loss"])) for r in runs], 2),
        })
    return rows


def table_1(results_dir: Path, profile: str, datasets: list[str], pairs: dict[str, dict[str, str]]) -> list[dict]:
    """Dupont et al.'s Table 1 (test accuracy, %), printed next to ours: one row per data set and role."""
    printed = reference_values()["anode_table_1"]
    rows = []
    for dataset in datasets:
        runs = _by_model(load_results(results_dir, experiment_name(dataset)))
        for role in TABLE_1_ROLES:
            variant = pairs[dataset][role]
            mine = [r for r in runs.get(variant, []) if not r["metrics"]["failure"]]
            accuracies = [100 * r["metrics"]["test"]["accuracy"] for r in mine if r["metrics"]["test"]["accuracy"] is not None]
            reason = missing_reason(dataset)
            value, pm = printed[dataset][role]
            row = compare(f"{dataset} {role} ({variant})", value, pm, accuracies, profile, digits=1, not_run_reason=reason)
            row["failed runs"] = sum(1 for r in runs.get(variant, []) if r["metrics"]["failure"])
            rows.append(row)
    return rows


def _solver_checks(results_dir: Path, dataset: str) -> dict[str, list[dict]]:
    grouped = {}
    for name, runs in _by_model(load_results(results_dir, experiment_name(dataset))).items():
        checks = [r["metrics"].get("solver_check") for r in runs]
        checks = [c for c in checks if c and not c.get("failure")]
        if checks:
            grouped[name] = checks
    return grouped


def solver_check_summary(results_dir: Path, dataset: str) -> list[dict]:
    """Per variant: trained-tolerance vs reference solve of the trained models (mean +- sd over runs).

    Nothing stored and the data set missing: one "not run: data missing (...)" row.
    """
    rows = _not_run_rows(load_results(results_dir, experiment_name(dataset)), dataset, model="all variants")
    for name, checks in _solver_checks(results_dir, dataset).items():
        rows.append({
            "model": name,
            "images": checks[0]["images"],
            "tolerance vs reference": f"{checks[0]['tolerance']:g} vs {checks[0]['reference_tolerance']:g} (float64)",
            "NFE (trained tol.)": fmt_mean_sd([c["nfe_forward"] for c in checks], 0),
            "NFE (reference)": fmt_mean_sd([c["nfe_forward_reference"] for c in checks], 0),
            "relative state error, mean": fmt_mean_sd([c["state_rel_error_mean"] for c in checks], 4),
            "relative state error, max": fmt_mean_sd([c["state_rel_error_max"] for c in checks], 4),
            "max abs. logit difference": fmt_mean_sd([c["logit_abs_diff_max"] for c in checks], 4),
            "same prediction (%)": fmt_mean_sd([c["prediction_agreement"] for c in checks], 1, 100),
            "accuracy (%), trained tol. / reference": f"{fmt_mean_sd([c['accuracy'] for c in checks], 1, 100)} / "
                                                      f"{fmt_mean_sd([c['accuracy_reference'] for c in checks], 1, 100)}",
        })
    return rows


def gradient_check_summary(results_dir: Path, dataset: str) -> list[dict]:
    """Per variant: the adjoint gradient against backpropagation through the same forward solve.

    Nothing stored and the data set missing: one "not run: data missing (...)" row.
    """
    return _not_run_rows(load_results(results_dir, experiment_name(dataset)), dataset, model="all variants") + [{
        "model": name,
        "images": checks[0]["images"],
        "backward NFE (adjoint)": fmt_mean_sd([c["nfe_backward_adjoint"] for c in checks], 0),
        "relative gradient error (%)": fmt_mean_sd([c["gradient_rel_error"] for c in checks], 2, 100),
    } for name, checks in _solver_checks(results_dir, dataset).items()]


def failure_summary(runs: list[dict], dataset: str | None = None) -> list[dict]:
    """One row per run: iterations done, failure reason (or none), and the largest forward NFE seen.

    No runs and ``dataset`` (the one they train on) missing: one "not run: data missing (...)" row.
    """
    rows = _not_run_rows(runs, dataset, run="all seeds") if dataset else []
    for r in runs:
        its = r["metrics"]["history"]["iterations"]
        rows.append({
            "run": r["run"],
            "iterations": len(its["loss"]),
            "failure": r["metrics"]["failure"] or "none",
            "max forward NFE": max(its["nfe_forward"], default=0),
            "max backward NFE": max(its["nfe_backward"], default=0),
            "final loss": f"{sum(_last_fraction(its['loss'])) / max(1, len(_last_fraction(its['loss']))):.4f}"
            if its["loss"] else "—",
        })
    return rows


# --- memory and compute -----------------------------------------------------------------------------


class ConvResNet(nn.Module):
    """The same-depth discrete network: ``depth`` residual blocks h <- h + f_k(h), each its own conv field."""

    def __init__(self, channels: int, num_filters: int, depth: int):
        super().__init__()
        self.fields = nn.ModuleList(ConvDynamics(channels, num_filters, time_dependent=False) for _ in range(depth))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for f in self.fields:
            h = h + f(None, h)
        return h


def _memory_settings(cfg: dict) -> list[dict]:
    """Every measured configuration: fixed-grid methods x steps, dopri5 x tolerances, ResNet x depth, both gradients."""
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


def _measure(setting: dict, cfg: dict, device: torch.device) -> dict:
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
        **cost,
        "nfe_forward": net.nfe_forward if is_ode else setting["depth"],
        "nfe_backward": net.nfe_backward if is_ode else 0,
        "parameters": count_parameters(net),
        "state_bytes": h0.numel() * h0.element_size(),
    }


def memory_cost(profile: str | dict, device: str = "auto", results_dir: Path | None = None, progress: bool = True) -> list[dict]:
    """Peak memory and wall time of one training step of one ODE block (adjoint vs backprop) and of ResNets."""
    cfg = _config(profile, "memory")
    for key in ("tolerances", "resnet_depths"):
        check_positive(**{f"{key}[{i}]": v for i, v in enumerate(cfg[key])})
    settings = _memory_settings(cfg)
    dev = resolve_device(device)
    runs = []
    with cpu_threads(cfg["threads"]):
        for setting in tqdm(settings, desc="memory", disable=not progress, mininterval=2.0):
            params = {**cfg, "setting": setting}
            runs.append(run_once(
                results_dir, "anode-memory", memory_run_name(setting), params=params, seed=0,
                profile=_profile_name(profile), device=dev, resume=cfg["resume"],
                compute=lambda setting=setting: {"setting": setting, **_measure(setting, cfg, dev)},
            ))
    return runs


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
                    f"{m['steps']} steps" if "steps" in m else f"tol {m['tol']:g}")
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


# --- run plan ---------------------------------------------------------------------------------------

TRAIN_IMAGES = {"MNIST": 60_000, "CIFAR10": 50_000}
TEST_IMAGES = {"MNIST": 10_000, "CIFAR10": 10_000}
UNIT_PRIORITY = 30_000  # after chapters 2-4 in the plan's order
_DATA: dict[tuple, tuple] = {}


def _cached_data(dataset: str, cfg: dict) -> tuple:
    """:func:`image_data`, kept for the process (the last data set and sizes asked for): units share it."""
    key = (dataset, cfg["train_size"], cfg["test_size"], cfg.get("image_size"))
    if key not in _DATA:
        _DATA.clear()
        _DATA[key] = image_data(dataset, cfg)
    return _DATA[key]


def probe(dataset: str, variant: dict, cfg: dict) -> dict:
    """Measured here, on random images of the data set's shape: seconds per training epoch (adjoint dopri5 steps
    of ``batch_size`` through a fresh model: a lower bound, since the solver's NFE grows as the field learns) and
    for the evaluation (the test set, plus the solver check's float64 reference solve, counted as 30 forward
    passes, and its two gradients per image)."""
    from robustode.plan import time_steps

    spec = check_dataset(dataset)
    size = cfg.get("image_size") or spec.size
    torch.manual_seed(0)
    model = build_variant(dataset, variant, cfg)
    x = torch.rand(cfg["batch_size"], spec.channels, size, size)
    y = torch.randint(0, spec.classes, (cfg["batch_size"],))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["lr"])

    def step() -> None:
        model.train()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        with solver_guard():
            loss.backward()
        optimizer.step()

    with cpu_threads(cfg["threads"]):
        step_s = time_steps(step)
        model.eval()
        with torch.no_grad():
            forward_s = time_steps(lambda: model(x)) / len(x)
    n_train = cfg["train_size"] or TRAIN_IMAGES[dataset]
    n_test = cfg["test_size"] or TEST_IMAGES[dataset]
    n_check = cfg["solver_check"]["images"] if "solver_check" in cfg else 0
    evaluate_s = n_test * forward_s + n_check * (30 * forward_s + 2 * step_s / len(x))
    return {"epoch_s": math.ceil(n_train / cfg["batch_size"]) * step_s, "step_s": step_s, "forward_s": forward_s,
            "stages_s": {"evaluate": evaluate_s}}


def units(profile: str | dict, device: torch.device | None = None) -> list:
    """The run plan's units of chapter 5: one per (data set, variant, repetition) of the image experiment and one
    per repetition of the instability run; same parameters and results files as :func:`image_classification`
    and :func:`instability`, so the notebook reuses what the plan computed. Repetition-major, so that a selection
    of the first seeds (a GPU piece's, say) is a complete smaller experiment."""
    from robustode.plan import DONE, PARTIAL, PENDING, Progress, Unit, checkpoint_epoch
    from robustode.store import Store

    section = experiment_config(profile, "anode")
    out = []

    def add(experiment: str, run: str, unit_id: str, params: dict, seed: int, cfg: dict, dataset: str, name: str,
            variant: dict, priority: int) -> None:
        def status(store: Store) -> Progress:
            if store.run(experiment, run, params) is not None:
                return Progress(DONE, "results file written")
            epoch = checkpoint_epoch(store.checkpoint(experiment, run, params)) if cfg["checkpoint"] else None
            if epoch is not None:
                return Progress(PARTIAL, f"epoch {epoch} of {cfg['epochs']}", cfg["epochs"] - epoch, ["evaluate"])
            return Progress(PENDING, "", cfg["epochs"], ["evaluate"])

        def compute(ctx) -> dict:
            checkpoint = ctx.store.checkpoint(experiment, run, params) if cfg["checkpoint"] else None
            with cpu_threads(cfg["threads"]):
                return _train_variant(dataset, name, variant, cfg, seed, _cached_data(dataset, cfg), ctx.device,
                                      checkpoint, ctx.progress, unit_id, ctx.deadline, ctx.epoch_estimate,
                                      ctx.stage_estimate("evaluate"), ctx.on_epoch)

        out.append(Unit(id=unit_id, experiment=experiment, run=run, params=params, seed=seed, epochs=cfg["epochs"],
                        stages=["evaluate"], kind=f"{experiment}/{name}", compute=compute, status=status,
                        probe=lambda: probe(dataset, variant, cfg), requires=lambda: missing_reason(dataset) or "",
                        priority=priority))

    if "images" in section:
        cfg = _config(profile, "images")
        for d_index, dataset in enumerate(cfg["datasets"]):
            variants = _variants(cfg, dataset)
            for seed in range(cfg["repetitions"]):
                for v_index, (name, variant) in enumerate(variants.items()):
                    params = {**cfg, "variants": None, "dataset": dataset, "model": name, **variant}
                    add(experiment_name(dataset), f"{name}-seed{seed}", f"anode/{dataset}/{name}/seed{seed}", params,
                        seed, cfg, dataset, name, variant, UNIT_PRIORITY + 1000 * d_index + 10 * seed + v_index)
    if "instability" in section:
        cfg = _config(profile, "instability")
        dataset = check_choice("dataset", cfg["dataset"], ("MNIST", "CIFAR10"))
        variant = {"filters": cfg["filters"], "augment_dim": cfg["augment_dim"]}
        for seed in range(cfg["repetitions"]):
            add("anode-instability", f"{cfg['model']}-seed{seed}", f"anode/instability/{cfg['model']}/seed{seed}",
                {**cfg, "dataset": dataset}, seed, cfg, dataset, cfg["model"], variant,
                UNIT_PRIORITY + 900 + 10 * seed)
    return sorted(out, key=lambda u: u.priority)
