"""Chapter 4 runs: the survey's Neural ODE Attention against Classic Attention (its Sec. 7, Table III, Fig. 5).

Each Table III run trains one model on one data set for one seed (validation split for model selection) and
writes scikit-learn's loss / accuracy / precision / recall / F1, a per-class report and attention statistics
over the test set; the first seed of each pair also times inference. Also: the fresh-process first-call
timing and the NFE cost of mixed precision. The run plan's units are built here.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import accuracy_score, classification_report, precision_recall_fscore_support
from torch import nn
from torchvision.transforms.functional import rgb_to_grayscale

from robustode.chapters.attention.config import (
    CONTROLS,
    MODELS,
    PAPER_NAMES,
    TRAIN_IMAGES,
    _profile_name,
    autocast_dtype,
    config,
    missing_reason,
    table3_params,
)
from robustode.core.budget import Deadline
from robustode.core.odeblock import SolverFailure
from robustode.core.timing import autocast, cpu_threads, fresh_process_first_calls, time_forward
from robustode.core.training import TrainSpec, train
from robustode.data.images import is_available, load_tensors, subset, tensor_batches, train_val_split
from robustode.models import count_parameters
from robustode.models.attention import CLASSES, ODE_HIDDEN, ROW_WIDTH, build
from robustode.profiles import check_choice, resolve_device
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
    run_once,
    stored_seconds,
    time_steps,
)


def make_model(name: str, dataset: str, cfg: dict) -> nn.Module:
    """A registered attention model with the profile's dropout and solver, or the softmax-regression yardstick
    (``-PE``: sinusoidal positions; ``-QKV``: the text's W_q, W_k, W_v; ``-32``: hidden size 32; ``-conv``: the
    Conv1d score)."""
    if name == "SoftmaxRegression":
        return nn.Sequential(nn.Flatten(), nn.Linear(ROW_WIDTH[dataset] ** 2, CLASSES[dataset]))
    check_choice("attention model", name, MODELS)
    base, _, variant = name.partition("-")
    options = {"dropout": cfg["dropout"], "positions": "sinusoidal" if variant == "PE" else "none"}
    if variant == "32":
        options["hidden"] = ODE_HIDDEN
    if base == "ODEAttention":
        options.update(times=tuple(cfg["times"]), method=cfg["method"], rtol=cfg["tol"], atol=cfg["tol"],
                       max_num_steps=cfg["max_num_steps"])
    return build(base, dataset, attention={"QKV": "qkv", "conv": "conv"}.get(variant, "score"), **options)


def single_channel(x: torch.Tensor) -> torch.Tensor:
    """RGB -> luminance (ITU-R 601 weights, torchvision's ``rgb_to_grayscale``); single-channel images pass through.

    Table IV's CIFAR counts are those of 32 rows of 32 values: one channel, not three.
    """
    return rgb_to_grayscale(x) if x.shape[1] == 3 else x


@cache
def _split(dataset: str, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_tensors(dataset, train=train)
    return single_channel(x), y


def splits(dataset: str, cfg: dict) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Train / validation (carved from the training set, seed 0) / test, subset to the profile's sizes."""
    x, y = _split(dataset, True)
    train_part, val = train_val_split(x, y, cfg["val_size"], seed=0)
    return {
        "train": subset(*train_part, cfg["train_size"], seed=0),
        "val": val,
        "test": subset(*_split(dataset, False), cfg["test_size"], seed=0),
    }


@torch.no_grad()
def predict(
    model: nn.Module, x: torch.Tensor, batch_size: int, dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits (N, classes) and, for attention models, attention weights (N, T, L), in float32 on the CPU."""
    model.eval()
    device = next(model.parameters()).device
    logits, weights = [], []
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].to(device)
        with autocast(device, dtype):
            if hasattr(model, "attend"):
                out, w = model.attend(xb)
                weights.append(w.float().cpu())
            else:
                out = model(xb)
        logits.append(out.float().cpu())
    return torch.cat(logits), (torch.cat(weights) if weights else None)


def classification_metrics(logits: torch.Tensor, y: torch.Tensor) -> dict:
    """Table III's columns with scikit-learn: mean cross-entropy, accuracy, and support-weighted P / R / F1.

    Support-weighted recall equals accuracy by construction (sum_c n_c/N * TP_c/n_c = sum_c TP_c/N),
    which is why the survey's recall column repeats its accuracy column.
    """
    pred = logits.argmax(dim=1).numpy()
    true = y.numpy()
    labels = list(range(logits.shape[1]))
    precision, recall, f1, _ = precision_recall_fscore_support(true, pred, labels=labels, average="weighted", zero_division=0)
    macro = precision_recall_fscore_support(true, pred, labels=labels, average="macro", zero_division=0)
    report = classification_report(true, pred, labels=labels, output_dict=True, zero_division=0)
    return {
        "test_loss": nn.functional.cross_entropy(logits, y).item(),
        "accuracy": accuracy_score(true, pred),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "macro": {"precision": macro[0], "recall": macro[1], "f1": macro[2]},
        "per_class": {str(c): report[str(c)] for c in labels},
    }


def attention_statistics(weights: torch.Tensor) -> dict:
    """How concentrated attention is, over the test set: weights (N, T, L), each row a distribution over L rows.

    Normalised entropy H / log L is 0 when one position takes all the weight and 1 when weights are
    uniform; ``exp(H)`` is the effective number of positions attended. ``argmax_mode_share`` is the
    share of images whose most-attended row is the single most common one (the same row for every image).
    """
    length = weights.shape[-1]
    entropy = -(weights * weights.clamp_min(1e-12).log()).sum(dim=-1)  # (N, T)
    largest = weights.max(dim=-1).values
    argmax = weights.argmax(dim=-1)
    mode_share = [float(torch.bincount(argmax[:, t], minlength=length).max()) / len(weights) for t in range(weights.shape[1])]
    return {
        "positions": length,
        "normalised_entropy": (entropy / math.log(length)).mean().item(),
        "normalised_entropy_per_time": (entropy / math.log(length)).mean(dim=0).tolist(),
        "effective_positions": entropy.exp().mean().item(),
        "max_weight": largest.mean().item(),
        "max_weight_per_time": largest.mean(dim=0).tolist(),
        "share_max_above_half": (largest > 0.5).float().mean().item(),
        "argmax_mode_share": float(np.mean(mode_share)),
        "mean_map": weights.mean(dim=0).tolist(),
    }


def _runs(cfg: dict) -> Iterator[tuple[str, str, int]]:
    for group in cfg["runs"]:
        for name, dataset in itertools.product(group["models"], group["datasets"]):
            yield name, dataset, group["repetitions"]


def _train_and_test(name: str, dataset: str, seed: int, cfg: dict, device: torch.device, progress: bool,
                    checkpoint: Path | None, time_it: bool, deadline: Deadline | None = None, epoch_estimate: float = 0.0,
                    on_epoch: Callable[[dict], None] | None = None,
                    keep: Callable[[nn.Module, dict], None] | None = None) -> dict:
    seed_everything(seed)
    data = splits(dataset, cfg)
    x, y = (t.to(device) for t in data["train"])
    model = make_model(name, dataset, cfg).to(device)
    dtype = autocast_dtype(cfg["amp"], device)

    def validate(m: nn.Module) -> dict:
        logits, _ = predict(m, data["val"][0], cfg["batch_size"] * 4, dtype)
        return {"accuracy": accuracy_score(data["val"][1].numpy(), logits.argmax(1).numpy())}

    spec = TrainSpec(epochs=cfg["epochs"], lr=cfg["lr"], weight_decay=cfg["weight_decay"], evaluate=validate,
                     select_on="accuracy", seed=seed, autocast_dtype=dtype)
    history = train(model, tensor_batches(x, y, cfg["batch_size"], seed), spec, device, checkpoint=checkpoint,
                    progress=progress, desc=f"{name} {dataset} seed {seed}", deadline=deadline,
                    epoch_estimate=epoch_estimate, on_epoch=on_epoch)
    logits, weights = predict(model, data["test"][0], cfg["batch_size"] * 4, dtype)
    metrics = {
        "parameters": count_parameters(model),
        "history": history.as_dict(),
        "failure": history.failure,
        "sizes": {k: len(v[1]) for k, v in data.items()},
        "autocast": None if dtype is None else str(dtype).removeprefix("torch."),
        **classification_metrics(logits, data["test"][1]),
    }
    if weights is not None:
        metrics["attention"] = attention_statistics(weights)
        k = cfg["examples"]
        metrics["examples"] = {
            "images": (data["test"][0][:k, 0] * 255).round().to(torch.uint8).tolist(),
            "labels": data["test"][1][:k].tolist(),
            "predicted": logits[:k].argmax(1).tolist(),
            "weights": weights[:k].tolist(),
        }
    if time_it:
        metrics["timings"] = inference_timings(model, data["test"][0], cfg, device)
    if keep is not None:
        keep(model.cpu(), history.as_dict())
    return metrics


def inference_timings(model: nn.Module, x: torch.Tensor, cfg: dict, device: torch.device) -> list[dict]:
    """Batch 1 and a large batch of test images, on the CPU and, when training ran on CUDA, on the GPU too
    (there with the training's mixed precision). Timed on the trained model: an adaptive solver's NFE,
    hence its time, depends on the learned dynamics."""
    tcfg = cfg["timing"]
    measured = []
    for target in dict.fromkeys([torch.device("cpu"), device]):
        model.to(target)
        for batch in (1, tcfg["large_batch"]):
            measured.append(time_forward(model, x[:batch].to(target), tcfg["warmup"], tcfg["repeats"],
                                         autocast_dtype(cfg["amp"], target)))
    return measured


def table3(profile: str | dict, device: str = "auto", results_dir: Path | None = None, progress: bool = True,
           compute: bool = True) -> list[dict]:
    """Train every configured (model, dataset) pair for each seed (the run plan's Table III units, resuming
    stored runs when the profile says ``resume``); datasets not on disk are skipped (and reported by the
    summaries as "not run: data missing"). The experiment's folder is created even when nothing can run:
    it marks that this profile's Table III was attempted here."""
    cfg = config(profile)
    dev = resolve_device(device)
    store = Store(_profile_name(profile), results_dir)
    (store.root / "attention-table3").mkdir(parents=True, exist_ok=True)
    # Runs of data sets missing here stay: they are part of the plan, computed where the data were.
    planned = units(profile, dev)
    prune_unplanned(store.root, "attention-table3", {u.run for u in planned})
    ctx = Context(store, dev, Deadline(), progress)
    with cpu_threads(cfg["cpu_threads"]):
        found = [ensure(u, ctx, cfg["resume"], compute) for u in planned if not u.requires()]
    return [r for r in found if r is not None]


def keep_model(store: Store, run: str, params: dict, model: nn.Module, history: dict) -> None:
    """Keep a trained Table III model (selected weights and history, a few tens of KB) in the store and drop its
    resume checkpoint (weights, Adam state and the selected weights again)."""
    store.save_model("attention-table3", run, params, model.state_dict(), history=history)
    store.checkpoint("attention", run, params).unlink(missing_ok=True)


def prune_unplanned(results_dir: Path, experiment: str, planned: set[str]) -> list[str]:
    """Delete this experiment's results files for runs the profile no longer plans, so that summaries, which
    read the whole folder, show only the current configuration. (Planned runs with other parameters are
    recomputed and overwritten.) Returns the removed run names."""
    folder = Path(results_dir) / experiment
    stale = [p for p in folder.glob("*.json") if p.stem not in planned] if folder.is_dir() else []
    for path in stale:
        path.unlink()
    return sorted(p.stem for p in stale)


def probe(name: str, dataset: str, cfg: dict) -> dict:
    """Seconds per training epoch measured here: steps of ``batch_size`` random rows through a fresh model
    (an adaptive solver's cost grows as the field learns, so this is a lower bound for the ODE models)."""
    torch.manual_seed(0)
    model = make_model(name, dataset, cfg)
    x = torch.rand(cfg["batch_size"], 1, ROW_WIDTH[dataset], ROW_WIDTH[dataset])
    y = torch.randint(0, CLASSES[dataset], (cfg["batch_size"],))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["lr"])

    def step() -> None:
        model.train()
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    with cpu_threads(cfg["cpu_threads"]):
        step_s = time_steps(step)
    n_train = cfg["train_size"] or TRAIN_IMAGES[dataset] - cfg["val_size"]
    return {"epoch_s": math.ceil(n_train / cfg["batch_size"]) * step_s * 1.1, "step_s": step_s}


def units(profile: str | dict, device: torch.device | None = None) -> list:
    """The run plan's units of chapter 4: one Table III run per (model, data set, seed), seed-major; the first
    seed of each pair also times inference. (The audit, first-call and precision measurements take seconds and
    run with the notebook.)"""
    cfg = config(profile)
    device_type = (device or resolve_device("auto")).type
    out = []
    for index, (name, dataset, repetitions) in enumerate(_runs(cfg)):
        for seed in range(repetitions):
            run = f"{name}-{dataset}-seed{seed}"
            if any(u.run == run for u in out):
                continue
            params = table3_params(name, dataset, cfg, device_type)

            def status(store: Store, run=run, params=params) -> Progress:
                if store.run("attention-table3", run, params) is not None:
                    return Progress(DONE, "results file written")
                epoch = checkpoint_epoch(store.checkpoint("attention", run, params)) if cfg["resume"] else None
                if epoch is not None:
                    return Progress(PARTIAL, f"epoch {epoch} of {cfg['epochs']}", cfg["epochs"] - epoch)
                return Progress(PENDING, "", cfg["epochs"])

            def spent(store: Store, run=run, params=params) -> float | None:
                done = stored_seconds(store, "attention-table3", run, params)
                return done if done is not None else recorded_seconds(
                    checkpoint_payload(store.checkpoint("attention", run, params)))

            def compute(ctx, name=name, dataset=dataset, seed=seed, run=run, params=params) -> dict:
                checkpoint = ctx.store.checkpoint("attention", run, params) if cfg["resume"] else None
                return _train_and_test(name, dataset, seed, cfg, ctx.device, ctx.progress, checkpoint, seed == 0,
                                       ctx.deadline, ctx.epoch_estimate, ctx.on_epoch,
                                       keep=(lambda model, history, ctx=ctx, run=run, params=params: keep_model(
                                           ctx.store, run, params, model, history)) if cfg["resume"] else None)

            out.append(Unit(
                id=f"attention/{dataset}/{name}/seed{seed}", experiment="attention-table3", run=run, params=params,
                seed=seed, epochs=cfg["epochs"], stages=[], kind=f"attention/{dataset}/{name}", compute=compute,
                status=status, probe=lambda name=name, dataset=dataset: probe(name, dataset, cfg),
                requires=lambda dataset=dataset: missing_reason(dataset), spent=spent,
                # the survey's pair (Classic, ODE) first, seed-major; then the variants; then the controls
                priority=10_000 * (0 if name in PAPER_NAMES else 2 if name in CONTROLS else 1) + 100 * seed + index,
            ))
    return sorted(out, key=lambda u: u.priority)


def first_call(profile: str | dict, device: str = "auto", results_dir: Path | None = None,
               targets: list[str] | None = None) -> list[dict]:
    """Both orders of (Classic, ODE) in fresh processes: the first forward pass of each (batch 1, fresh weights),
    and its warm median. Start-up costs are fixed costs: one image shows them best. ``targets``: the devices to
    time on (default: the CPU and ``device``); a GPU piece names only ``cuda``, leaving the CPU rows to the CPU."""
    cfg = config(profile)
    dev = resolve_device(device)
    if not cfg["timing"]["fresh_process"]:
        return []
    pair = ["ClassicAttention", "ODEAttention"]
    targets = list(dict.fromkeys(targets if targets is not None else ["cpu", dev.type]))
    # CUDA runs stay when a CPU-only machine re-renders: they were measured where a GPU was.
    store = Store(_profile_name(profile), results_dir)
    prune_unplanned(store.root, "attention-first-call",
                    {f"{t}-{'-then-'.join(order)}" for t in ("cpu", "cuda") for order in (pair, pair[::-1])})
    runs = []
    for target in targets:
        for order in (pair, pair[::-1]):
            params = {"order": order, "dataset": "MNIST", "device": target, "batch": 1,
                      "repeats": cfg["timing"]["repeats"], "threads": cfg["cpu_threads"]}
            runs.append(run_once(
                store, "attention-first-call", f"{target}-{'-then-'.join(order)}", params=params, seed=None,
                device=target, resume=cfg["resume"],
                compute=lambda order=order, target=target: fresh_process_first_calls(
                    order, "MNIST", (1, 28, 28), target, 1, cfg["timing"]["repeats"], cfg["cpu_threads"]),
            ))
    return runs


def precision_nfe(profile: str | dict, results_dir: Path | None = None) -> dict | None:
    """Solver cost of mixed precision: NFE of one ODE Attention forward pass per tolerance, float32 against
    bfloat16 autocast (on the CPU, so that it runs anywhere), on MNIST test images with fresh weights.

    A half-precision field is only accurate to about 1e-3 relative; an adaptive solver asked for a tighter
    tolerance sees that rounding noise as local error and keeps shrinking its steps.
    Without MNIST on disk nothing runs and None is returned; a result stored where the data were stays,
    and :func:`precision_rows` says "not run: data missing" only when there is none.
    """
    cfg = config(profile)
    if not is_available("MNIST"):
        return None
    check = cfg["precision_check"]
    params = {**check, "dataset": "MNIST", "times": cfg["times"], "method": cfg["method"]}

    def compute() -> dict:
        x = splits("MNIST", cfg)["test"][0][: check["batch"]]
        out = []
        for tol, dtype in itertools.product(check["tolerances"], (None, torch.bfloat16)):
            torch.manual_seed(0)
            model = build("ODEAttention", "MNIST", times=tuple(cfg["times"]), method=cfg["method"], rtol=tol, atol=tol,
                          max_num_steps=check["max_num_steps"]).eval()
            row = {"tol": tol, "precision": "bfloat16 autocast" if dtype else "float32"}
            try:
                with torch.no_grad(), autocast(torch.device("cpu"), dtype):
                    model(x)
                row.update(nfe_forward=model.nfe_forward, failure=None)
            except SolverFailure as failure:
                row.update(nfe_forward=None, failure=failure.reason)
            out.append(row)
        return {"rows": out}

    with cpu_threads(cfg["cpu_threads"]):
        return run_once(Store(_profile_name(profile), results_dir), "attention-precision", "nfe", params=params, seed=0,
                        device="cpu", resume=cfg["resume"], compute=compute)
