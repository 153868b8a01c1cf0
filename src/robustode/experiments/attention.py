"""Chapter 4: the survey's Neural ODE Attention against Classic Attention (its Sec. 7, Tables III-IV, Fig. 5).

Four experiments, each writing results files that the summaries below read back:

* ``attention-audit``: which layouts reproduce Table IV's eight parameter counts (a small search
  over building blocks), and whether the text's hidden x hidden ``W_q, W_k, W_v`` fit at all;
* ``attention-table3``: train and test each model on each dataset for several seeds (validation split
  for model selection), with scikit-learn's loss / accuracy / precision / recall / F1, a per-class
  report and attention statistics (entropy, largest weight) over the test set;
  the first seed's run also times inference (warm-up, device synchronisation, median of repeats,
  batch 1 and a large batch, CPU and, when the run is on CUDA, the GPU) with the solver's NFE;
* ``attention-precision``: NFE per forward pass against the tolerance, in float32 and in bfloat16;
* ``attention-first-call``: the first forward pass in a fresh process, in both model orders — the
  cost an unwarmed measurement adds to whichever model it times first.
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

from robustode.budget import Deadline
from robustode.data.images import IMAGE_SETS, is_available, load_tensors, subset, tensor_batches, train_val_split
from robustode.experiments import run_once
from robustode.models import count_parameters
from robustode.models.attention import CLASSES, DATASETS, ROW_WIDTH, build
from robustode.odeblock import SolverFailure
from robustode.profiles import check_choice, check_positive, experiment_config, resolve_device
from robustode.reference import compare, reference_values
from robustode.results import fmt_mean_sd, load_results, mean_sd
from robustode.seeding import seed_everything
from robustode.store import Store
from robustode.tables import flag
from robustode.timing import autocast, cpu_threads, fresh_process_first_calls, time_forward
from robustode.training import TrainSpec, train

EXPERIMENTS = ("attention-audit", "attention-table3", "attention-first-call", "attention-precision")
MODELS = ("ClassicAttention", "ODEAttention", "ClassicAttention-PE", "ODEAttention-PE", "ClassicAttention-QKV",
          "ODEAttention-QKV", "SoftmaxRegression")
PAPER_NAMES = {"ODEAttention": "Neural ODE Attention", "ClassicAttention": "Classic Attention"}
AMP = ("auto", "off", "fp16", "bf16")
METRICS = ("test_loss", "accuracy", "precision", "recall", "f1")


# ---------------------------------------------------------------- configuration


def _profile_name(profile: str | dict) -> str:
    return profile if isinstance(profile, str) else profile["name"]


def config(profile: str | dict) -> dict:
    """The profile's ``attention`` section, checked before any work starts."""
    cfg = experiment_config(profile, "attention")
    check_positive(**{k: cfg[k] for k in ("val_size", "epochs", "batch_size", "lr", "tol", "max_num_steps", "examples")},
                   **{f"runs[{i}].repetitions": group["repetitions"] for i, group in enumerate(cfg["runs"])},
                   **{f"timing.{k}": v for k, v in cfg["timing"].items() if k != "fresh_process"},
                   **{k: cfg[k] for k in ("train_size", "test_size") if cfg[k] is not None})
    for group in cfg["runs"]:
        for name in group["models"]:
            check_choice("attention model", name, MODELS)
        for name in group["datasets"]:
            check_choice("dataset", name, DATASETS)
    check_choice("amp setting", cfg["amp"], AMP)
    check_positive(**{f"precision_check.{k}": v for k, v in cfg["precision_check"].items() if k != "tolerances"},
                   **{f"precision_check.tolerance{i}": t for i, t in enumerate(cfg["precision_check"]["tolerances"])})
    if not 0.0 <= cfg["dropout"] < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {cfg['dropout']}")
    if list(cfg["times"]) != sorted(set(cfg["times"])) or cfg["times"][0] <= 0:
        raise ValueError(f"times must be positive and strictly increasing, got {cfg['times']}")
    return cfg


def autocast_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """Mixed precision (Sec. 7.3.1) on CUDA only: bf16 where the GPU has it (no loss scaling needed), else fp16."""
    if setting == "off" or device.type != "cuda":
        return None
    if setting == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp16": torch.float16, "bf16": torch.bfloat16}[setting]


def make_model(name: str, dataset: str, cfg: dict) -> nn.Module:
    """A registered attention model with the profile's dropout and solver, or the softmax-regression yardstick."""
    if name == "SoftmaxRegression":
        return nn.Sequential(nn.Flatten(), nn.Linear(ROW_WIDTH[dataset] ** 2, CLASSES[dataset]))
    base, _, variant = name.partition("-")
    options = {"dropout": cfg["dropout"], "positions": "sinusoidal" if variant == "PE" else "none"}
    if base == "ODEAttention":
        options.update(times=tuple(cfg["times"]), method=cfg["method"], rtol=cfg["tol"], atol=cfg["tol"],
                       max_num_steps=cfg["max_num_steps"])
    return build(base, dataset, attention="qkv" if variant == "QKV" else "score", **options)


# ---------------------------------------------------------------- data


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


# ---------------------------------------------------------------- evaluation


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


# ---------------------------------------------------------------- Table III runs


def _runs(cfg: dict) -> Iterator[tuple[str, str, int]]:
    for group in cfg["runs"]:
        for name, dataset in itertools.product(group["models"], group["datasets"]):
            yield name, dataset, group["repetitions"]


def _train_and_test(name: str, dataset: str, seed: int, cfg: dict, device: torch.device, progress: bool,
                    checkpoint: Path | None, time_it: bool, deadline: Deadline | None = None, epoch_estimate: float = 0.0,
                    on_epoch: Callable[[dict], None] | None = None) -> dict:
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


def table3(profile: str | dict, device: str = "auto", results_dir: Path | None = None, progress: bool = True) -> list[dict]:
    """Train every configured (model, dataset) pair for each seed (the run plan's Table III units, resuming
    stored runs when the profile says ``resume``); datasets not on disk are skipped (and reported by the
    summaries as "not run: data missing"). The experiment's folder is created even when nothing can run:
    it marks that this profile's Table III was attempted here."""
    from robustode.plan import Context, ensure

    cfg = config(profile)
    dev = resolve_device(device)
    store = Store(_profile_name(profile), results_dir)
    (store.root / "attention-table3").mkdir(parents=True, exist_ok=True)
    # Runs of data sets missing here stay: they are part of the plan, computed where the data were.
    planned = units(profile, dev)
    prune_unplanned(store.root, "attention-table3", {u.run for u in planned})
    ctx = Context(store, dev, Deadline(), progress)
    with cpu_threads(cfg["cpu_threads"]):
        return [ensure(u, ctx, cfg["resume"]) for u in planned if not u.requires()]


def prune_unplanned(results_dir: Path, experiment: str, planned: set[str]) -> list[str]:
    """Delete this experiment's results files for runs the profile no longer plans, so that summaries, which
    read the whole folder, show only the current configuration. (Planned runs with other parameters are
    recomputed and overwritten.) Returns the removed run names."""
    folder = Path(results_dir) / experiment
    stale = [p for p in folder.glob("*.json") if p.stem not in planned] if folder.is_dir() else []
    for path in stale:
        path.unlink()
    return sorted(p.stem for p in stale)


def table3_params(name: str, dataset: str, cfg: dict, device_type: str) -> dict:
    """A Table III run's parameters: the profile's settings (not the run list), the model and data set, and the
    device type (mixed precision runs only on CUDA)."""
    return {**{k: v for k, v in cfg.items() if k != "runs"}, "model": name, "dataset": dataset, "device_type": device_type}


def probe(name: str, dataset: str, cfg: dict) -> dict:
    """Seconds per training epoch measured here: steps of ``batch_size`` random rows through a fresh model
    (an adaptive solver's cost grows as the field learns, so this is a lower bound for the ODE models)."""
    from robustode.plan import time_steps

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


def missing_reason(dataset: str) -> str:
    """``""`` when the data set is on disk, else "data missing (...)"."""
    return "" if is_available(dataset) else f"data missing ({dataset} files not in the data folder)"


TRAIN_IMAGES = {"MNIST": 60_000, "FashionMNIST": 60_000, "CIFAR10": 50_000, "CIFAR100": 50_000}


def units(profile: str | dict, device: torch.device | None = None) -> list:
    """The run plan's units of chapter 4: one Table III run per (model, data set, seed), seed-major; the first
    seed of each pair also times inference. (The audit, first-call and precision measurements take seconds and
    run with the notebook.)"""
    from robustode.plan import DONE, PARTIAL, PENDING, Progress, Unit, checkpoint_epoch

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

            def compute(ctx, name=name, dataset=dataset, seed=seed, run=run, params=params) -> dict:
                checkpoint = ctx.store.checkpoint("attention", run, params) if cfg["resume"] else None
                return _train_and_test(name, dataset, seed, cfg, ctx.device, ctx.progress, checkpoint, seed == 0,
                                       ctx.deadline, ctx.epoch_estimate, ctx.on_epoch)

            out.append(Unit(
                id=f"attention/{dataset}/{name}/seed{seed}", experiment="attention-table3", run=run, params=params,
                seed=seed, epochs=cfg["epochs"], stages=[], kind=f"attention/{dataset}/{name}", compute=compute,
                status=status, probe=lambda name=name, dataset=dataset: probe(name, dataset, cfg),
                requires=lambda dataset=dataset: missing_reason(dataset),
                # the survey's pair (Classic, ODE) first, seed-major; then the variants
                priority=10_000 * (name not in PAPER_NAMES) + 100 * seed + index,
            ))
    return sorted(out, key=lambda u: u.priority)


# ---------------------------------------------------------------- timing


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
    prune_unplanned(results_dir, "attention-first-call",
                    {f"{t}-{'-then-'.join(order)}" for t in ("cpu", "cuda") for order in (pair, pair[::-1])})
    runs = []
    for target in targets:
        for order in (pair, pair[::-1]):
            params = {"order": order, "dataset": "MNIST", "device": target, "batch": 1,
                      "repeats": cfg["timing"]["repeats"], "threads": cfg["cpu_threads"]}
            runs.append(run_once(
                results_dir, "attention-first-call", f"{target}-{'-then-'.join(order)}", params=params, seed=None,
                profile=_profile_name(profile), device=target, resume=cfg["resume"],
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
        return run_once(results_dir, "attention-precision", "nfe", params=params, seed=0, profile=_profile_name(profile),
                        device="cpu", resume=cfg["resume"], compute=compute)


# ---------------------------------------------------------------- architecture audit (Table IV)


def _attention_menu(h: int) -> Iterator[tuple[str, int]]:
    """Attention blocks a reader of Sec. 7 might build, with their parameter counts at hidden size ``h``."""
    yield "score vector w . h_i + b", h + 1
    yield "score vector w . h_i (no bias)", h
    yield "learned query q . h_i", h
    for d in (1, 2, 4, 8, 16, 32, "h"):
        width = h if d == "h" else d
        for bias in (False, True):
            extra = " + bias" if bias else ""
            yield f"W_q, W_k, W_v: h x {d}{extra}", 3 * (h * width + bias * width)
            yield f"W_q, W_k: h x {d}{extra}, V = states", 2 * (h * width + bias * width)
    yield "nn.MultiheadAttention", 4 * h * h + 4 * h


def _field_menu(h: int) -> Iterator[tuple[str, int]]:
    """ODE fields Linear(h[+t] -> m) -> LayerNorm(m) -> ReLU -> Linear(m[+t] -> h), with or without time inputs."""
    for m in sorted({h // 2, h, 2 * h}):
        for t1, t2 in itertools.product((0, 1), repeat=2):
            for affine in (True, False):
                label = f"Linear({h}{'+t' * t1}->{m}), LayerNorm({m}{'' if affine else ', no affine'}), Linear({m}{'+t' * t2}->{h})"
                yield label, (h + t1) * m + m + 2 * m * affine + (m + t2) * h + h


TEXT_FIELD = "Linear({h}->{h}), LayerNorm({h}), Linear({h}->{h})"


def decompositions(counts: dict[str, int], ode: bool, menu_sizes=(1, 2, 3, 4, 5)) -> dict:
    """Solve Table IV for one model: hidden size and row width from count differences, then every
    combination of menu blocks that makes up the rest exactly.

    Differences between datasets cancel everything that does not depend on the data: CIFAR-100 minus
    CIFAR-10 is ``90 * (h + 1)`` for a decoder ``Linear(h -> classes)``, and CIFAR-10 minus MNIST is
    ``(W_cifar - W_mnist) * h`` for an encoder ``Linear(W -> h)`` reading rows of W values.
    """
    diff_classes = counts["CIFAR100"] - counts["CIFAR10"]
    h = diff_classes // 90 - 1
    exact = 90 * (h + 1) == diff_classes
    width_gain = (counts["CIFAR10"] - counts["MNIST"]) / h
    rest = counts["MNIST"] - 28 * h - (10 * h + 10)
    found = []
    fields = list(_field_menu(h)) if ode else [("none", 0)]
    for (field, nf), (att, na), k, enc_bias, norms, scalars in itertools.product(
        fields, list(_attention_menu(h)), menu_sizes, (True, False), (0, 1, 2), (0, 1)
    ):
        if enc_bias * h + nf + k * na + norms * 2 * h + scalars == rest:
            found.append({"encoder_bias": enc_bias, "field": field, "attention": att, "attention_blocks": k,
                          "extra_layernorms": norms, "extra_scalars": scalars})
    return {"hidden": h, "decoder_exact": exact, "row_width_gain": width_gain, "rest": rest, "candidates": found}


def architecture_audit(profile: str | dict, results_dir: Path | None = None) -> dict:
    """Table IV audit: the solved sizes, the candidate layouts per model, those both models share, and room for QKV."""
    printed = reference_values()["table_4_parameters"]
    classic = decompositions(printed["Classic Attention"], ode=False)
    ode = decompositions(printed["Neural ODE Attention"], ode=True)
    h_c, h_o = classic["hidden"], ode["hidden"]
    text_field = TEXT_FIELD.format(h=h_o)

    def head(c: dict) -> tuple:
        return c["encoder_bias"], c["attention"], c["attention_blocks"], c["extra_layernorms"], c["extra_scalars"]

    classic_heads = {head(c) for c in classic["candidates"]}
    shared = [c for c in ode["candidates"] if c["field"] == text_field and head(c) in classic_heads]

    def room(counts: dict, h: int, field: int) -> dict:
        free = counts["MNIST"] - (28 * h + h) - (10 * h + 10) - field
        return {"free_after_encoder_decoder_field": free, "one_hxh": h * h, "three_hxh": 3 * h * h}

    built = {name: {ds: count_parameters(build(name.split("-")[0], ds, attention="qkv" if "QKV" in name else "score"))
                    for ds in DATASETS}
             for name in ("ClassicAttention", "ODEAttention", "ClassicAttention-QKV", "ODEAttention-QKV")}
    metrics = {
        "classic": classic, "ode": ode, "text_field": text_field, "shared": shared,
        "room": {"ClassicAttention": room(printed["Classic Attention"], h_c, 0),
                 "ODEAttention": room(printed["Neural ODE Attention"], h_o, 2 * h_o * h_o + 4 * h_o)},
        "built": built,
    }
    cfg_params = {"menu": "encoder bias x field x attention x blocks 1-5 x LayerNorms 0-2 x scalars 0-1", "version": 1}
    return run_once(results_dir, "attention-audit", "table4", params=cfg_params, seed=None,
                    profile=_profile_name(profile), device="cpu", resume=False, compute=lambda: metrics)


# ---------------------------------------------------------------- summaries (read results files only)


def _audit(results_dir: Path) -> dict:
    found = load_results(results_dir, "attention-audit")
    if not found:
        raise FileNotFoundError(f"no attention-audit results in {results_dir}: run architecture_audit first")
    return found[0]["metrics"]


def table4_rows(results_dir: Path) -> list[dict]:
    """Table IV printed against the parameter counts of the models we built (exact match required)."""
    printed = reference_values()["table_4_parameters"]
    built = _audit(results_dir)["built"]
    rows = []
    for dataset in DATASETS:
        row = {"dataset": dataset}
        for name in ("ClassicAttention", "ODEAttention"):
            ours, theirs = built[name][dataset], printed[PAPER_NAMES[name]][dataset]
            row[f"{PAPER_NAMES[name]}: printed"] = theirs
            row[f"{PAPER_NAMES[name]}: ours"] = flag(ours == theirs, f"{ours} (exact)" if ours == theirs else str(ours))
        for name in ("ClassicAttention-QKV", "ODEAttention-QKV"):
            row[f"{name} (text-faithful)"] = built[name][dataset]
        rows.append(row)
    return rows


def solved_rows(results_dir: Path) -> list[dict]:
    """What the count differences fix: hidden size, row width, and the data-independent remainder."""
    audit = _audit(results_dir)
    rows = []
    for key, name in (("classic", "Classic Attention"), ("ode", "Neural ODE Attention")):
        a = audit[key]
        h = a["hidden"]
        rows.append({
            "model": name,
            "CIFAR100 - CIFAR10 = 90 (h + 1) gives h": h,
            "CIFAR10 - MNIST = gain x h gives gain": f"{a['row_width_gain']:g} (32 vs 28 values per row)",
            "MNIST - 28h (encoder weights) - 10(h + 1) (decoder)": a["rest"],
            "layouts in the menu that fit": len(a["candidates"]),
        })
    return rows


def shared_rows(results_dir: Path) -> list[dict]:
    """Layouts whose non-ODE part is identical in both models, with the text's field in the ODE model."""
    rows = []
    for c in _audit(results_dir)["shared"]:
        chosen = c["encoder_bias"] and c["attention"] == "score vector w . h_i + b" and c["attention_blocks"] == 1 \
            and c["extra_layernorms"] == 1 and c["extra_scalars"] == 0
        rows.append({"encoder bias": c["encoder_bias"], "attention block": c["attention"],
                     "copies": c["attention_blocks"], "extra LayerNorm(h)": c["extra_layernorms"],
                     "lone scalar parameters": c["extra_scalars"], "built here": "yes" if chosen else ""})
    return rows


def room_rows(results_dir: Path) -> list[dict]:
    """Parameters left after encoder, decoder (and the text's field) against what W_q, W_k, W_v would cost."""
    rows = []
    for name, r in _audit(results_dir)["room"].items():
        rows.append({"model": PAPER_NAMES[name], "left for attention and anything else": r["free_after_encoder_decoder_field"],
                     "one hidden x hidden matrix": r["one_hxh"], "W_q, W_k, W_v (hidden x hidden)": r["three_hxh"],
                     "fits": "yes" if r["three_hxh"] <= r["free_after_encoder_decoder_field"] else "no"})
    return rows


def precision_rows(results_dir: Path) -> list[dict]:
    found = load_results(results_dir, "attention-precision")
    if not found:
        if is_available("MNIST"):
            return []
        return [{"tolerance (rtol = atol)": "—", "precision": "—", "NFE / forward pass": f"not run: {_missing_reason('MNIST')}"}]
    return [{"tolerance (rtol = atol)": f"{r['tol']:g}", "precision": r["precision"],
             "NFE / forward pass": r["nfe_forward"] if r["failure"] is None else f"failed: {r['failure']}"}
            for r in found[0]["metrics"]["rows"]]


def _by(runs: list[dict], name: str, dataset: str) -> list[dict]:
    return [r["metrics"] for r in runs if r["params"]["model"] == name and r["params"]["dataset"] == dataset]


def _groups(runs: list[dict]) -> Iterator[tuple[str, str, list[dict]]]:
    """(model, data set, metrics of its seeds) for every pair that has runs, models in first-seen order."""
    for name in dict.fromkeys(r["params"]["model"] for r in runs):
        for dataset in DATASETS:
            if mine := _by(runs, name, dataset):
                yield name, dataset, mine


def _missing_reason(dataset: str) -> str:
    return f"data missing ({dataset} not in the data folder)" if not is_available(dataset) else "not in this profile"


def _not_run_rows(results_dir: Path, columns: tuple[str, ...], reason_column: str, **fixed) -> list[dict]:
    """Rows for a summary that found no runs at all: one per dataset whose data are missing, saying so, when this
    profile's Table III was attempted here (its folder exists; a profile never run, e.g. uncommitted full
    results, stays empty). Summaries that found runs are left as they are."""
    if not (Path(results_dir) / "attention-table3").is_dir():
        return []
    return [{**dict.fromkeys(columns, "—"), **fixed, "dataset": d, reason_column: f"not run: {_missing_reason(d)}"}
            for d in DATASETS if not is_available(d)]


def table3_rows(results_dir: Path, profile: str) -> list[dict]:
    """Table III printed against ours: one row per (model, dataset, column); a dataset not run gets one row."""
    printed = reference_values()["table_3_ode_attention"]
    runs = load_results(results_dir, "attention-table3")
    rows = []
    for name in ("ODEAttention", "ClassicAttention"):
        for dataset in DATASETS:
            mine = _by(runs, name, dataset)
            values = printed[PAPER_NAMES[name]][dataset]
            if not mine:
                rows.append({"model": PAPER_NAMES[name], "dataset": dataset, **compare(
                    "all columns", values[1], None, [], profile, 4, not_run_reason=_missing_reason(dataset))})
                continue
            for i, metric in enumerate(METRICS):
                resolution = 0.05 if metric == "test_loss" else 0.01
                rows.append({"model": PAPER_NAMES[name], "dataset": dataset,
                             **compare(metric, values[i], None, [m[metric] for m in mine], profile, 4, resolution)})
    return rows


def accuracy_rows(results_dir: Path) -> list[dict]:
    """Every model run (the faithful pair, the text's QKV variants, the linear yardstick): size and test metrics."""
    runs = load_results(results_dir, "attention-table3")
    rows = []
    for name, dataset, mine in _groups(runs):
        rows.append({
            "model": name, "dataset": dataset, "parameters": f"{mine[0]['parameters']:,}",
            "test accuracy": fmt_mean_sd([m["accuracy"] for m in mine], 4),
            "weighted F1": fmt_mean_sd([m["f1"] for m in mine], 4),
            "macro F1": fmt_mean_sd([m["macro"]["f1"] for m in mine], 4),
            "test loss": fmt_mean_sd([m["test_loss"] for m in mine], 4),
            "recall - accuracy": f"{max(abs(m['recall'] - m['accuracy']) for m in mine):.1e}",
            "best epoch (val)": ", ".join(str(m["history"]["best_epoch"]) for m in mine),
        })
    return rows or _not_run_rows(results_dir, ("model", "dataset", "parameters", "test accuracy", "weighted F1", "macro F1",
                                               "test loss", "recall - accuracy", "best epoch (val)"), "test accuracy",
                                 model="all models")


def per_class_rows(results_dir: Path, dataset: str, models=("ClassicAttention", "ODEAttention")) -> list[dict]:
    """scikit-learn's per-class precision / recall / F1 (mean over seeds) for the faithful pair."""
    runs = load_results(results_dir, "attention-table3")
    found = {name: _by(runs, name, dataset) for name in models}
    if not all(found.values()):
        if runs or is_available(dataset) or not (Path(results_dir) / "attention-table3").is_dir():
            return []
        return [{"class": "all", "support": "—", **{f"{name} {short}": "—" for name in models for short in ("P", "R", "F1")},
                 f"{models[0]} P": f"not run: {_missing_reason(dataset)}"}]
    rows = []
    for c in range(CLASSES[dataset]):
        row = {"class": c, "support": int(found[models[0]][0]["per_class"][str(c)]["support"])}
        for name in models:
            for key, short in (("precision", "P"), ("recall", "R"), ("f1-score", "F1")):
                row[f"{name} {short}"] = f"{mean_sd([m['per_class'][str(c)][key] for m in found[name]])[0]:.3f}"
        rows.append(row)
    return rows


def attention_rows(results_dir: Path) -> list[dict]:
    """The "collapses to one position" claim as numbers: entropy, effective positions, largest weight, mean +- sd over seeds."""
    runs = load_results(results_dir, "attention-table3")
    rows = []
    for name, dataset, metrics in _groups(runs):
        mine = [m["attention"] for m in metrics if "attention" in m]
        if not mine:
            continue
        rows.append({
            "model": name, "dataset": dataset, "rows (L)": mine[0]["positions"],
            "normalised entropy (0 = one row, 1 = uniform)": fmt_mean_sd([a["normalised_entropy"] for a in mine], 3),
            "effective rows exp(H)": fmt_mean_sd([a["effective_positions"] for a in mine], 2),
            "largest weight": fmt_mean_sd([a["max_weight"] for a in mine], 3),
            "images with a weight > 0.5": fmt_mean_sd([a["share_max_above_half"] for a in mine], 3),
            "same top row across images": fmt_mean_sd([a["argmax_mode_share"] for a in mine], 3),
        })
    return rows or _not_run_rows(results_dir, ("model", "dataset", "rows (L)", "normalised entropy (0 = one row, 1 = uniform)",
                                               "effective rows exp(H)", "largest weight", "images with a weight > 0.5",
                                               "same top row across images"), "normalised entropy (0 = one row, 1 = uniform)",
                                 model="all models")


def _timed(results_dir: Path) -> list[dict]:
    return [r for r in load_results(results_dir, "attention-table3") if "timings" in r["metrics"]]


def timing_rows(results_dir: Path) -> list[dict]:
    """Measured inference time per forward pass next to Table III's printed seconds (whose batch and hardware are unstated)."""
    printed = reference_values()["table_3_ode_attention"]
    rows = []
    for run in _timed(results_dir):
        name, dataset = run["params"]["model"], run["params"]["dataset"]
        for t in run["metrics"]["timings"]:
            rows.append({
                "model": name, "dataset": dataset, "device": t["device"], "batch": t["batch"],
                "median ms / pass": f"{1e3 * t['median_s']:.2f}",
                "IQR ms": f"{1e3 * t['q1_s']:.2f}-{1e3 * t['q3_s']:.2f}",
                "images / s": f"{t['images_per_s']:,.0f}",
                "NFE / pass": f"{t['nfe_forward']:.0f}",
                "printed s": printed[PAPER_NAMES[name]][dataset][5] if name in PAPER_NAMES else "—",
            })
    return rows or _not_run_rows(results_dir, ("model", "dataset", "device", "batch", "median ms / pass", "IQR ms", "images / s",
                                               "NFE / pass", "printed s"), "median ms / pass", model="all models")


def timing_ratio_rows(results_dir: Path) -> list[dict]:
    """Classic time / ODE time, measured per (dataset, device, batch), beside the printed ratio (about 10)."""
    printed = reference_values()["table_3_ode_attention"]
    runs = {(r["params"]["model"], r["params"]["dataset"]): r["metrics"]["timings"] for r in _timed(results_dir)}
    rows = []
    for dataset in DATASETS:
        if ("ClassicAttention", dataset) not in runs or ("ODEAttention", dataset) not in runs:
            continue
        ratio_printed = printed["Classic Attention"][dataset][5] / printed["Neural ODE Attention"][dataset][5]
        for c, o in zip(runs[("ClassicAttention", dataset)], runs[("ODEAttention", dataset)], strict=True):
            rows.append({"dataset": dataset, "device": c["device_type"], "batch": c["batch"],
                         "Classic / ODE time, printed": f"{ratio_printed:.1f}",
                         "Classic / ODE time, measured": f"{c['median_s'] / o['median_s']:.3g}",
                         "ODE NFE / pass": f"{o['nfe_forward']:.0f}"})
    return rows or _not_run_rows(results_dir, ("dataset", "device", "batch", "Classic / ODE time, printed",
                                               "Classic / ODE time, measured", "ODE NFE / pass"), "Classic / ODE time, measured")


def first_call_rows(results_dir: Path) -> list[dict]:
    rows = []
    for run in load_results(results_dir, "attention-first-call"):
        for position, call in enumerate(run["metrics"]["calls"], start=1):
            rows.append({"device": run["params"]["device"], "order": " then ".join(run["params"]["order"]),
                         "model": call["model"], "timed": "first" if position == 1 else "second",
                         "move to device ms": f"{1e3 * call['to_device_s']:.1f}",
                         "first call ms": f"{1e3 * call['first_call_s']:.1f}",
                         "warm median ms": f"{1e3 * call['warm_median_s']:.2f}",
                         "first / warm": f"{call['first_call_s'] / call['warm_median_s']:.1f}"})
    return rows


def printed_table_checks(results_dir: Path) -> dict:
    """Numbers behind the flags raised against the printed Table III, from our runs; the ``*_text`` entries are
    ready to print and say "not run: data missing (...)" where our runs are missing for that reason."""
    printed = reference_values()["table_3_ode_attention"]
    runs = load_results(results_dir, "attention-table3")
    acc = {(n, d): mean_sd([m["accuracy"] for m in _by(runs, n, d)]) for n in MODELS for d in DATASETS}
    out = {}
    for name in ("ODEAttention", "ClassicAttention"):
        p = printed[PAPER_NAMES[name]]
        out[name] = {
            "printed_mnist_minus_fashion": p["MNIST"][1] - p["FashionMNIST"][1],
            "ours_mnist_minus_fashion": acc[(name, "MNIST")][0] - acc[(name, "FashionMNIST")][0],
            "printed_recall_equals_accuracy": all(abs(v[3] - v[1]) < 1e-9 for v in p.values()),
        }
        diff = out[name]["ours_mnist_minus_fashion"]
        out[name]["ours_mnist_minus_fashion_text"] = (f"{diff:+.4f}" if not math.isnan(diff)
                                                      else _not_run_text(("MNIST", "FashionMNIST")))
    out["mnist_accuracy"] = {n: acc[(n, "MNIST")][0] for n in MODELS if acc[(n, "MNIST")][2]}
    out["mnist_accuracy_text"] = str({k: round(v, 4) for k, v in out["mnist_accuracy"].items()}) if out["mnist_accuracy"] \
        else _not_run_text(("MNIST",))
    return out


def _not_run_text(datasets: tuple[str, ...]) -> str:
    """Why a number from our runs is absent: data missing for some of ``datasets``, else not run."""
    missing = [d for d in datasets if not is_available(d)]
    return f"not run: data missing ({', '.join(missing)} not in the data folder)" if missing else "not run"


def findings(results_dir: Path) -> dict[str, list[str]]:
    """Plain-language statements computed from the results files, by topic (``timing``, ``start-up``,
    ``positions``, ``attention``), so that the chapter's prose cannot drift from its numbers."""
    out: dict[str, list[str]] = {"timing": [], "start-up": [], "positions": [], "attention": []}
    ratios = [float(r["Classic / ODE time, measured"]) for r in timing_ratio_rows(results_dir)
              if not r["Classic / ODE time, measured"].startswith("not run")]
    if ratios:
        verdict = "slower" if all(r < 1 for r in ratios) else ("faster" if all(r > 1 for r in ratios) else "mixed")
        out["timing"].append(
            f"Measured Classic / ODE time ratios lie between {min(ratios):.3g} and {max(ratios):.3g} (printed: about 10); "
            + {"slower": f"the ODE model is slower in every measured configuration, by {1 / max(ratios):.0f}x to "
                         f"{1 / min(ratios):.0f}x.",
               "faster": "the ODE model is faster in every measured configuration.",
               "mixed": "which model is faster depends on the configuration."}[verdict])
    firsts = load_results(results_dir, "attention-first-call")
    for run in firsts:
        first, second = run["metrics"]["calls"][:2]
        out["start-up"].append(
            f"Fresh process on {run['params']['device']}, {first['model']} timed first: first call "
            f"{1e3 * first['first_call_s']:.1f} ms, warm median {1e3 * first['warm_median_s']:.1f} ms; {second['model']} "
            f"second: {1e3 * second['first_call_s']:.1f} ms against {1e3 * second['warm_median_s']:.1f} ms.")
    if firsts:
        extra = max(c["first_call_s"] - c["warm_median_s"] for r in firsts for c in r["metrics"]["calls"])
        out["start-up"].append(
            f"The largest start-up surcharge measured is {1e3 * extra:.1f} ms: "
            + ("far too small to create the printed 0.9 s gap on this device." if extra < 0.1 else
               "large enough to matter at the printed scale."))
    runs = load_results(results_dir, "attention-table3")
    acc = {(n, d): mean_sd([m["accuracy"] for m in _by(runs, n, d)]) for n in MODELS for d in DATASETS}
    for name in ("ClassicAttention", "ODEAttention"):
        (mn, _, n1), (fm, _, n2) = acc[(name, "MNIST")], acc[(name, "FashionMNIST")]
        if n1 and n2:
            out["positions"].append(f"{name}: MNIST accuracy {mn:.3f} against FashionMNIST {fm:.3f} "
                                    f"({'MNIST lower' if mn < fm else 'MNIST higher'}).")
        (pe, _, n3) = acc[(f"{name}-PE", "MNIST")]
        if n1 and n3:
            out["positions"].append(f"{name} on MNIST: {mn:.3f} without positions, {pe:.3f} with sinusoidal positions "
                                    f"({pe - mn:+.3f}, same parameter count).")
    att = {(r["model"], r["dataset"]): r for r in attention_rows(results_dir)}
    for dataset in DATASETS:
        pair = [att.get((m, dataset)) for m in ("ClassicAttention", "ODEAttention")]
        if all(pair):
            out["attention"].append(
                f"{dataset}: largest weight Classic {pair[0]['largest weight']} vs ODE {pair[1]['largest weight']}; "
                f"effective rows Classic {pair[0]['effective rows exp(H)']} vs ODE {pair[1]['effective rows exp(H)']} "
                f"of {pair[0]['rows (L)']}; images with one row above 0.5: Classic {pair[0]['images with a weight > 0.5']}.")
    for topic, needs in (("positions", ("MNIST", "FashionMNIST")), ("attention", DATASETS)):
        if not out[topic] and any(not is_available(d) for d in needs):
            text = _not_run_text(needs)
            out[topic].append(text[0].upper() + text[1:] + ".")
    return out


def available_datasets() -> dict[str, bool]:
    return {d: is_available(d) for d in DATASETS if d in IMAGE_SETS}
