"""Chapter 5 runs: ANODEs at image scale (Dupont et al. 2019, Sec. 5.2) — every variant (NODE and ANODEs over
p) x repetitions, and the longer NODE runs of the instability figure; the run plan's units are built here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn import functional as F

from robustode.chapters.anode.config import (
    TEST_IMAGES,
    TRAIN_IMAGES,
    _config,
    _profile_name,
    _variants,
    experiment_name,
    missing_reason,
)
from robustode.chapters.anode.memory import units as memory_units
from robustode.core.budget import Deadline
from robustode.core.odeblock import SolverFailure, solver_guard
from robustode.core.timing import cpu_threads
from robustode.core.training import TrainSpec, train
from robustode.data.images import check_dataset, load_tensors, subset, tensor_batches
from robustode.models import count_parameters
from robustode.models.conv_anode import ConvODENet
from robustode.profiles import check_choice, experiment_config, resolve_device
from robustode.seeding import seed_everything
from robustode.store import Store
from robustode.units import (
    DONE,
    PARTIAL,
    PENDING,
    Context,
    Progress,
    Unit,
    checkpoint_epoch,
    checkpoint_payload,
    ensure,
    recorded_seconds,
    stored_seconds,
    time_steps,
)


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


def _train_variant(
    dataset: str, name: str, variant: dict, cfg: dict, seed: int, data: tuple, device: torch.device,
    checkpoint: Path | None, progress: bool, desc: str, deadline: Deadline | None = None, epoch_estimate: float = 0.0,
    on_epoch: Callable[[dict], None] | None = None, evaluate_estimate: float = 0.0,
) -> dict:
    """Train one variant (checkpointed per epoch), then test it. With ``deadline``, an epoch starts only if it
    fits, and the evaluation (test set and solver check, one piece that cannot resume) only if
    ``evaluate_estimate`` seconds fit; else :class:`~robustode.core.budget.OutOfBudget` at that boundary (the
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


def image_classification(
    profile: str | dict, dataset: str, device: str = "auto", results_dir: Path | None = None, progress: bool = True,
    compute: bool = True,
) -> list[dict]:
    """Dupont et al.'s image experiment: every variant (NODE and ANODEs over p) x repetitions on ``dataset`` (the
    run plan's units, stored runs reused). Returns ``[]`` without running anything when the data set is not on disk.
    """
    cfg = _config(profile, "images")
    check_choice("dataset", dataset, cfg["datasets"])
    _variants(cfg, dataset)
    return _ensure_all([u for u in units(profile) if u.experiment == experiment_name(dataset)], cfg, device,
                       results_dir, profile, progress, compute)


def instability(profile: str | dict, device: str = "auto", results_dir: Path | None = None, progress: bool = True,
                compute: bool = True) -> list[dict]:
    """Dupont et al.'s Fig. 4: the NODE trained for longer; each repetition's loss / NFE trace and failure."""
    cfg = _config(profile, "instability")
    check_choice("dataset", cfg["dataset"], ("MNIST", "CIFAR10"))
    return _ensure_all([u for u in units(profile) if u.experiment == "anode-instability"], cfg, device, results_dir,
                       profile, progress, compute)


def _ensure_all(chosen: list, cfg: dict, device: str, results_dir: Path | None, profile, progress: bool,
                compute: bool = True) -> list[dict]:
    if not chosen or chosen[0].requires():
        return []
    ctx = Context(Store(_profile_name(profile), results_dir), resolve_device(device), Deadline(), progress)
    with cpu_threads(cfg["cpu_threads"]):
        found = [ensure(u, ctx, cfg["resume"], compute) for u in chosen]
    return [r for r in found if r is not None]


def _cached_data(ctx, dataset: str, cfg: dict) -> tuple:
    """:func:`image_data` once for all units run with ``ctx``."""
    key = ("anode", dataset, cfg.get("image_size"), cfg["train_size"], cfg["test_size"])
    return ctx.shared(key, lambda: image_data(dataset, cfg))


def probe(dataset: str, variant: dict, cfg: dict) -> dict:
    """Measured here, on random images of the data set's shape: seconds per training epoch (adjoint dopri5 steps
    of ``batch_size`` through a fresh model: a lower bound, since the solver's NFE grows as the field learns) and
    for the evaluation (the test set, plus the solver check's float64 reference solve, counted as 30 forward
    passes, and its two gradients per image)."""
    spec = check_dataset(dataset)
    size = cfg.get("image_size") or spec.size
    torch.manual_seed(0)
    model = build_variant(dataset, variant, cfg)
    x, y = torch.rand(cfg["batch_size"], spec.channels, size, size), torch.randint(0, spec.classes, (cfg["batch_size"],))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["lr"])

    def step() -> None:
        model.train()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        with solver_guard():
            loss.backward()
        optimizer.step()

    with cpu_threads(cfg["cpu_threads"]):
        step_s = time_steps(step, repeats=1)
        model.eval()
        with torch.no_grad():
            forward_s = time_steps(lambda: model(x), repeats=1) / len(x)
    n_train = cfg["train_size"] or TRAIN_IMAGES[dataset]
    n_test = cfg["test_size"] or TEST_IMAGES[dataset]
    n_check = cfg["solver_check"]["images"] if "solver_check" in cfg else 0
    evaluate_s = n_test * forward_s + n_check * (30 * forward_s + 2 * step_s / len(x))
    return {"epoch_s": math.ceil(n_train / cfg["batch_size"]) * step_s, "step_s": step_s, "forward_s": forward_s,
            "stages_s": {"evaluate": evaluate_s}}


def units(profile: str | dict, device: torch.device | None = None) -> list:
    """The run plan's units of chapter 5: the image runs (data set x variant x repetition) and the instability
    runs, each training with per-epoch checkpoints; and first the memory measurements, one unit each."""
    out, jobs = [], []
    parts = experiment_config(profile, "anode")
    if "memory" in parts:
        out += memory_units(profile, device)
    if "images" in parts:
        images = _config(profile, "images")
        for dataset in images["datasets"]:
            for name, variant in _variants(images, dataset).items():
                for seed in range(images["repetitions"]):
                    params = {**images, "variants": None, "dataset": dataset, "model": name, **variant}
                    jobs.append((experiment_name(dataset), f"{name}-seed{seed}", params, images, dataset, name, variant, seed))
    if "instability" in parts:
        unstable = _config(profile, "instability")
        for seed in range(unstable["repetitions"]):
            variant = {"filters": unstable["filters"], "augment_dim": unstable["augment_dim"]}
            jobs.append(("anode-instability", f"{unstable['model']}-seed{seed}", {**unstable, "dataset": unstable["dataset"]},
                         unstable, unstable["dataset"], unstable["model"], variant, seed))
    for index, (experiment, run, params, cfg, dataset, name, variant, seed) in enumerate(jobs):

        def status(store: Store, experiment=experiment, run=run, params=params, cfg=cfg) -> Progress:
            if store.run(experiment, run, params) is not None:
                return Progress(DONE, "results file written")
            epoch = checkpoint_epoch(store.checkpoint(experiment, run, params)) if cfg["checkpoint"] else None
            if epoch is not None:
                return Progress(PARTIAL, f"epoch {epoch} of {cfg['epochs']}", cfg["epochs"] - epoch, ["evaluate"])
            return Progress(PENDING, "", cfg["epochs"], ["evaluate"])

        def spent(store: Store, experiment=experiment, run=run, params=params) -> float | None:
            done = stored_seconds(store, experiment, run, params)
            return done if done is not None else recorded_seconds(
                checkpoint_payload(store.checkpoint(experiment, run, params)))

        def compute(ctx, experiment=experiment, run=run, params=params, cfg=cfg, dataset=dataset, name=name,
                    variant=variant, seed=seed) -> dict:
            checkpoint = ctx.store.checkpoint(experiment, run, params) if cfg["checkpoint"] else None
            desc = f"instability seed {seed}" if experiment == "anode-instability" else f"{dataset} {name} seed {seed}"
            return _train_variant(dataset, name, variant, cfg, seed, _cached_data(ctx, dataset, cfg), ctx.device, checkpoint,
                                  ctx.progress, desc, ctx.deadline, ctx.epoch_estimate, ctx.on_epoch,
                                  ctx.stage_estimate("evaluate"))

        kind = f"{experiment}/{name}/{cfg['epochs']}x{cfg['batch_size']}"
        out.append(Unit(
            id=f"anode/{experiment.removeprefix('anode-')}/{name}/seed{seed}", experiment=experiment, run=run,
            params=params, seed=seed, epochs=cfg["epochs"], stages=["evaluate"], kind=kind, compute=compute, status=status,
            probe=lambda dataset=dataset, variant=variant, cfg=cfg: probe(dataset, variant, cfg),
            requires=lambda dataset=dataset: missing_reason(dataset) or "", priority=100 * seed + index, spent=spent,
        ))
    return out
