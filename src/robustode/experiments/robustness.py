"""Chapters 2-3: robustness of CNN, ODENet and TisODE (the survey's Table I, after Yan et al., ICLR 2020).

One run = one model trained with Yan et al.'s protocol (Gaussian-noise augmentation, Adam, weight
decay, MultiStepLR; the steady-state term for TisODE) and evaluated on

* clean and Gaussian-noise accuracy (sigma on the 0-255 scale, one seeded draw);
* the faithful attack protocol (margin-loss FGSM / PGD on Yan et al.'s seeded 1,000 images);
* the strong protocol (cross-entropy PGD with random starts, more steps and restarts; AutoAttack);
* sanity checks (eps = 1, PGD <= FGSM, steps / restarts, AutoAttack <= PGD, solver transfer);
* optionally input randomisation on top of the model (``defences.randomise``).

Model names: ``CNN``, ``ODENet``, ``TisODE``, each optionally with ``+denoise`` (a feature-denoising
block after the stem). Each run writes ``results/<profile>/robustness-<dataset>/<model>-seed<k>.json``;
the tables below read those files back.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from robustode import attacks
from robustode.budget import Deadline
from robustode.data import imgnet10
from robustode.data.images import is_available as torchvision_available
from robustode.data.images import load_tensors, subset, tensor_batches, train_val_split
from robustode.defences import FeatureDenoising, InputRandomisation
from robustode.engine import train_fast, train_fast_many
from robustode.evaluation import (
    accuracy,
    attack_indices,
    batched_attack,
    field_profile,
    noise_accuracy,
    predictions,
    robust_accuracy,
    sanity_checks,
)
from robustode.models import count_parameters
from robustode.models.robust import ARCHITECTURES, ODENET_STEP, TISODE_STEP, RobustNet, build
from robustode.noise import NoiseAugmentation
from robustode.profiles import check_choice, check_positive, experiment_config, resolve_device
from robustode.reference import compare, reference_values
from robustode.regularisers import SteadyStateRegulariser
from robustode.results import fmt_mean_sd, load_results, mean_sd, now
from robustode.seeding import seed_everything
from robustode.store import Store
from robustode.tables import flag
from robustode.timing import cpu_threads
from robustode.training import TrainSpec, train

DATASETS = ("MNIST", "SVHN", "ImgNet10")
TRAINERS = ("auto", "plain", "engine")
MODELS = (*ARCHITECTURES, *(f"{a}+denoise" for a in ARCHITECTURES))
TABLE_MODELS = ("CNN", "ODENet", "TisODE")
CHAPTER_MODELS = (*TABLE_MODELS, "TisODE+denoise")  # what chapters 2-3 train; their "not run" rows when data are missing


# ----------------------------------------------------------------------------------- configuration

def config(profile: str | dict, dataset: str = "MNIST") -> dict:
    """The profile's ``robustness`` settings for one dataset, checked before any work."""
    check_choice("dataset", dataset, DATASETS)
    section = experiment_config(profile, "robustness")
    cfg = {**section["common"], **section["evaluation"], **section["datasets"][dataset],
           "defences": section["defences"], "dataset": dataset}
    check_positive(**{k: cfg[k] for k in ("width", "epochs", "batch_size", "lr", "seeds", "val_size", "attack_images",
                                          "eval_batch")})
    optional = {"train_size": cfg["train_size"], "noise_images": cfg["noise_images"], "strong.images": cfg["strong"]["images"],
                "autoattack.images": cfg["autoattack"]["images"]}
    check_positive(**{k: v for k, v in optional.items() if v is not None})
    check_positive(**{f"strong.{k}": cfg["strong"][k] for k in ("restarts", "eot")},
                   **{f"strong.steps[{i}]": s for i, s in enumerate(cfg["strong"]["steps"])},
                   **{f"sanity.solver_steps[{i}]": s for i, s in enumerate(cfg["sanity"]["solver_steps"])})
    for name in cfg["defences"]["randomise"]:
        check_choice("model in defences.randomise", name, MODELS)
    check_choice("trainer", cfg["trainer"], TRAINERS)
    if not isinstance(cfg["concurrent_seeds"], bool):
        raise ValueError(f"concurrent_seeds must be true or false, got {cfg['concurrent_seeds']!r}")
    return cfg


def profile_name(profile: str | dict) -> str:
    return profile if isinstance(profile, str) else profile["name"]


def eps_value(eps: str | float) -> float:
    """'0.3' -> 0.3, '8/255' -> 0.0314 (epsilons are keyed by the text the paper prints)."""
    return float(Fraction(str(eps))) if "/" in str(eps) else float(eps)


def eps_key(eps: str | float) -> str:
    return str(eps)


def table_one_rows(dataset: str) -> list[tuple[str, str, str]]:
    """(reference key, kind, value) for the dataset's Table I rows, e.g. ('fgsm_0.3', 'fgsm', '0.3')."""
    rows = []
    for key in reference_values()["table_1_robustness"][dataset]:
        if key.startswith("gaussian_sigma_"):
            rows.append((key, "gaussian", key.removeprefix("gaussian_sigma_")))
        else:
            kind, value = key.split("_", 1)
            rows.append((key, kind, value))
    return rows


def eps_grid(cfg: dict, kind: str) -> list[str]:
    """The profile's eps curve for ``fgsm`` / ``pgd`` plus every eps of that kind in Table I, sorted."""
    keys = {eps_key(e) for e in cfg[f"{kind}_eps"]}
    keys |= {v for _, k, v in table_one_rows(cfg["dataset"]) if k == kind}
    return sorted(keys, key=eps_value)


def sigma_grid(cfg: dict) -> list[float]:
    sigmas = {float(s) for s in cfg["noise_sigmas"]}
    sigmas |= {float(v) for _, k, v in table_one_rows(cfg["dataset"]) if k == "gaussian"}
    return sorted(sigmas)


# ------------------------------------------------------------------------------------------- data

def available(dataset: str, imagenet_root: str | None = None) -> tuple[bool, str]:
    """Whether the dataset is on disk, and if not, why (for "not run: data missing" rows)."""
    check_choice("dataset", dataset, DATASETS)
    if dataset == "ImgNet10":
        missing = imgnet10.missing_folders(imagenet_root)
        where = f"under {imagenet_root}" if imagenet_root else "given: set ROBUSTODE_IMAGENET or imagenet_root"
        return (not missing, "" if not missing else f"data missing (no ImageNet class folders {where})")
    ok = torchvision_available(dataset)
    return ok, "" if ok else f"data missing ({dataset} files not in the data folder)"


def missing_reason(dataset: str, imagenet_root: str | None = None) -> str:
    """``""`` when the dataset is on disk, else why not ("data missing (...)"), for "not run" rows."""
    ok, why = available(dataset, imagenet_root)
    return "" if ok else why


def load_data(cfg: dict, device: torch.device, imagenet_root: str | None = None) -> dict:
    """Train subset, validation split (carved from train, seed 0) and test set, as tensors on ``device``."""
    dataset = cfg["dataset"]
    if dataset == "ImgNet10":
        x, y = imgnet10.load_imgnet10(imagenet_root, True, cfg["size"], cfg.get("limit_per_class"))
        x_test, y_test = imgnet10.load_imgnet10(imagenet_root, False, cfg["size"])
    else:
        x, y = load_tensors(dataset, train=True)
        x_test, y_test = load_tensors(dataset, train=False)
    (x, y), (x_val, y_val) = train_val_split(x, y, cfg["val_size"], seed=0)
    x, y = subset(x, y, cfg["train_size"], seed=0)

    def move(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if cfg["image_size"] and cfg["image_size"] != x.shape[-1]:  # quick only: 2x2 area averaging, 28 -> 14
            x = F.interpolate(x, size=(cfg["image_size"],) * 2, mode="area")
        return x.to(device), y.to(device)

    return {"train": move(x, y), "val": move(x_val, y_val), "test": move(x_test, y_test)}


# ----------------------------------------------------------------------------------------- models

def make_model(name: str, cfg: dict) -> RobustNet:
    """``CNN`` / ``ODENet`` / ``TisODE``, optionally ``+denoise``, at the profile's width."""
    check_choice("model", name, MODELS)
    arch, _, extra = name.partition("+")
    denoise = FeatureDenoising(cfg["width"], cfg["defences"]["denoiser"]) if extra == "denoise" else None
    return build(arch, cfg["dataset"], denoise=denoise, width=cfg["width"])


def train_spec(name: str, cfg: dict, seed: int, val: tuple[torch.Tensor, torch.Tensor]) -> TrainSpec:
    """Yan et al.'s recipe; model selection on the noisy *validation* split (they used the noisy test set)."""
    augment = NoiseAugmentation(cfg["augment_p"], cfg["augment_sigmas"])
    x_val, y_val = val

    def evaluate(model: nn.Module) -> dict:
        gen = torch.Generator(device=x_val.device).manual_seed(12_345)
        noisy = augment(x_val, gen)
        return {"accuracy": accuracy(model, x_val, y_val, cfg["eval_batch"]),
                "noisy_accuracy": accuracy(model, noisy, y_val, cfg["eval_batch"])}

    regulariser = None
    if name.startswith("TisODE"):
        regulariser = SteadyStateRegulariser(cfg["steady_weight"], cfg["steady_start_epoch"])
    return TrainSpec(
        epochs=cfg["epochs"], lr=cfg["lr"], weight_decay=cfg["weight_decay"], milestones=tuple(cfg["milestones"]),
        gamma=cfg["gamma"], regulariser=regulariser, augment=augment, evaluate=evaluate,
        select_on="noisy_accuracy", seed=seed,
    )


def with_step(model: RobustNet, step: float) -> RobustNet:
    """A copy of an ODE model whose Euler step is ``step`` (same weights)."""
    other = copy.deepcopy(model)
    other.set_step_size(step)
    return other


def randomised(model: RobustNet, extra: int) -> RobustNet:
    """A copy of the model with Xie et al.'s input randomisation in front (inference-time defence).

    ``extra`` pixels of random resize and padding; Xie et al. used 299 -> up to 331 (about 10 %)."""
    other = copy.deepcopy(model)
    other.pre = nn.Sequential(InputRandomisation(extra), other.pre)
    return other


# ------------------------------------------------------------------------------------- evaluation

def _faithful(model: nn.Module, xa: torch.Tensor, ya: torch.Tensor, cfg: dict, keep: torch.Tensor | None,
              kinds: dict[str, list[str]]) -> dict:
    out = {}
    for kind, grid in kinds.items():
        attack = attacks.fgsm if kind == "fgsm" else attacks.pgd
        out[kind] = {}
        for eps in grid:
            value = eps_value(eps)
            robust = batched_attack(lambda a, b, f=attack, e=value: f(model, a, b, e), xa, ya, cfg["eval_batch"])
            out[kind][eps] = robust_accuracy(robust, keep)
    return out


def strong_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, restarts: int, eot: int,
               seed: int, batch_size: int) -> list[list[bool]]:
    """:func:`robustode.attacks.pgd_strong` on chunks of ``batch_size`` images (chunk k seeded ``seed + k``);
    per restart r, the per-image flags "robust against restarts 0..r"."""
    chunks = [attacks.pgd_strong(model, x[i : i + batch_size], y[i : i + batch_size], eps, steps, restarts, eot=eot,
                                 seed=seed + k)["robust_after_restart"]
              for k, i in enumerate(range(0, len(x), batch_size))]
    return [sum((c[r] for c in chunks), []) for r in range(restarts)]


def _strong(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: str, cfg: dict, seed: int, eot: int = 1,
            run_autoattack: bool = True) -> dict:
    strong = cfg["strong"]
    steps = sorted(strong["steps"])
    pgd = lambda n_steps, restarts: strong_pgd(model, x, y, eps_value(eps), n_steps, restarts, eot, seed,  # noqa: E731
                                               cfg["eval_batch"])
    main = pgd(steps[-1], strong["restarts"])
    robust = torch.tensor(main[-1])
    by_steps = {str(s): robust_accuracy(pgd(s, 1)[0]) for s in steps[:-1]}
    by_steps[str(steps[-1])] = robust_accuracy(main[0])
    out = {"accuracy": robust_accuracy(robust), "images": len(x), "steps": steps[-1], "restarts": strong["restarts"],
           "eot": eot, "by_steps": by_steps,
           "by_restarts": [robust_accuracy(r) for r in main]}
    aa = cfg["autoattack"]
    if run_autoattack and aa["images"]:
        n = min(aa["images"], len(x))
        flags = attacks.autoattack(model, x[:n], y[:n], eps_value(eps), aa["version"], aa.get("attacks"),
                                   aa.get("overrides"), seed=seed, batch_size=cfg["eval_batch"])
        label = aa["version"] if aa["version"] != "custom" else (
            "custom: " + ", ".join(aa["attacks"]) + "".join(f", {k}={v}" for k, v in (aa.get("overrides") or {}).items()))
        out["autoattack"] = {"accuracy": robust_accuracy(flags.cpu()), "images": n, "config": label,
                             "pgd_same_images": robust_accuracy(robust[:n])}
    return out


def _solver_transfer(model: RobustNet, xa: torch.Tensor, ya: torch.Tensor, cfg: dict) -> dict:
    """accuracy[craft step][judge step] of Yan et al.'s PGD crafted through one Euler step size, judged with another."""
    san = cfg["sanity"]
    deployed = model.ode_blocks()[0].step_size
    steps = sorted({*san["solver_steps"], deployed})
    eps = eps_value(cfg["solver_eps"])
    n = min(san["images"], len(xa))
    x, y = xa[:n], ya[:n]
    judges = {s: with_step(model, s) for s in steps}
    table = {}
    for craft in steps:
        robust = {j: [] for j in steps}
        for i in range(0, n, cfg["eval_batch"]):
            xb, yb = x[i : i + cfg["eval_batch"]], y[i : i + cfg["eval_batch"]]
            result = attacks.pgd(judges[craft], xb, yb, eps, keep_iterates=True)
            for j, m in judges.items():
                robust[j].append(attacks.robust_under(m, result.iterates, yb))
        table[str(craft)] = {str(j): robust_accuracy(torch.cat(r)) for j, r in robust.items()}
    return {"attack": f"faithful PGD-{cfg['solver_eps']}", "images": n, "deployed_step": deployed,
            "steps": steps, "accuracy": table}


def attack_set(data: dict, cfg: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``attack_images`` of Yan et al.'s 1,000 seeded test images."""
    x_test, y_test = data["test"]
    idx = torch.as_tensor(attack_indices(len(x_test), 1000)[: cfg["attack_images"]], device=x_test.device)
    return x_test[idx], y_test[idx]


def pgd_table_eps(dataset: str) -> list[str]:
    """The PGD epsilons Table I prints for ``dataset`` (strong attacks run at these)."""
    return [v for _, k, v in table_one_rows(dataset) if k == "pgd"]


def evaluation_stages(name: str, cfg: dict) -> list[str]:
    """The resumable pieces of one model's evaluation, in order: ``noise``, ``faithful``, ``strong <eps>`` per
    Table I PGD eps, ``sanity`` and, for models in ``defences.randomise``, ``randomised``."""
    stages = ["noise", "faithful", *(f"strong {eps}" for eps in pgd_table_eps(cfg["dataset"])), "sanity"]
    return stages + (["randomised"] if name in cfg["defences"]["randomise"] else [])


def _stage(stage: str, model: RobustNet, data: dict, cfg: dict, seed: int) -> dict:
    """One evaluation stage's metrics (accuracies in [0, 1]); see :func:`evaluate`."""
    x_test, y_test = data["test"]
    xa, ya = attack_set(data, cfg)
    if stage == "noise":
        xn, yn = subset(x_test, y_test, cfg["noise_images"], seed=0)
        return {"clean": accuracy(model, xn, yn, cfg["eval_batch"]), "noise_images": len(xn),
                "noise": {str(s): noise_accuracy(model, xn, yn, s, seed=0, batch_size=cfg["eval_batch"]) for s in sigma_grid(cfg)}}
    if stage == "faithful":
        clean_correct = predictions(model, xa, cfg["eval_batch"]) == ya
        keep = clean_correct if cfg.get("conditional") else None
        return {"attack_images": len(xa), "attack_clean": robust_accuracy(clean_correct),
                "conditional": bool(cfg.get("conditional")),
                "faithful": _faithful(model, xa, ya, cfg, keep, {"fgsm": eps_grid(cfg, "fgsm"), "pgd": eps_grid(cfg, "pgd")})}
    if stage.startswith("strong "):
        eps = stage.removeprefix("strong ")
        n = min(cfg["strong"]["images"] or len(x_test), len(x_test))
        xs, ys = (xa[:n], ya[:n]) if n <= len(xa) else subset(x_test, y_test, n, seed=0)
        return {"strong": {eps: _strong(model, xs, ys, eps, cfg, seed)}}
    if stage == "sanity":
        n = min(cfg["sanity"]["images"], len(xa))
        strong_one = strong_pgd(model, xa[:n], ya[:n], 1.0, min(cfg["strong"]["steps"]), 1, 1, seed, cfg["eval_batch"])
        faithful_one = batched_attack(lambda a, b: attacks.pgd(model, a, b, 1.0), xa[:n], ya[:n], cfg["eval_batch"])
        out = {"sanity": {"eps_one": {"images": n, "strong": robust_accuracy(strong_one[0]),
                                      "faithful": robust_accuracy(faithful_one)}}}
        if model.ode_blocks():
            out["sanity"]["solver_transfer"] = _solver_transfer(model, xa, ya, cfg)
            out["field_profile"] = field_profile(model, xa[:n])
        return out
    if stage == "randomised":
        return {"randomised": evaluate_randomised(model, data, cfg, seed)}
    raise ValueError(f"unknown evaluation stage {stage!r}")


def evaluate(model: RobustNet, data: dict, cfg: dict, seed: int, progress: bool = True, desc: str = "",
             name: str = "", done: dict | None = None, save: Callable[[dict], None] | None = None,
             deadline: Deadline | None = None, estimate: Callable[[str], float] = lambda stage: 0.0) -> dict:
    """Everything Table I and the sanity checks need, for one trained model (accuracies in [0, 1]).

    Runs :func:`evaluation_stages` in order. ``done`` holds stages finished earlier (``{stage: metrics}``),
    which are not redone; ``save(done)`` is called after each stage, so a stopped evaluation resumes at
    the next one. With ``deadline``, a stage starts only if ``estimate(stage)`` seconds fit, else
    :class:`~robustode.budget.OutOfBudget` is raised between stages.
    """
    model.eval()
    done = dict(done or {})
    stages = evaluation_stages(name, cfg)
    bar = tqdm(stages, desc=f"evaluate {desc}", disable=not progress, leave=False)
    for stage in bar:
        if stage in done:
            continue
        if deadline is not None:
            deadline.check(estimate(stage), f"evaluate {desc}: {stage}")
        bar.set_postfix_str(stage)
        tic = time.perf_counter()
        done[stage] = {"metrics": _stage(stage, model, data, cfg, seed), "seconds": time.perf_counter() - tic}
        if save is not None:
            save(done)
    metrics: dict = {"seconds": {}}
    for stage in stages:
        for key, value in done[stage]["metrics"].items():
            if key == "strong":
                metrics.setdefault("strong", {}).update(value)
            else:
                metrics[key] = value
        metrics["seconds"][stage] = done[stage]["seconds"]
    metrics["checks"] = sanity_checks(metrics, cfg["sanity"]["tolerance"])
    return metrics


def evaluate_randomised(model: RobustNet, data: dict, cfg: dict, seed: int) -> dict:
    """Input randomisation on top of a trained model: Table I's perturbations, faithful (one random draw per
    gradient) and strong (cross-entropy PGD with EOT over ``defences.eot`` draws per step; no AutoAttack), the
    attacks on the first ``defences.images`` attack images (default: the strong attack's count)."""
    x_test, y_test = data["test"]
    d = cfg["defences"]
    extra = max(1, round(d["resize_fraction"] * x_test.shape[-1]))
    rand = randomised(model, extra).eval()
    torch.manual_seed(seed)
    xn, yn = subset(x_test, y_test, cfg["noise_images"], seed=0)
    xa, ya = attack_set(data, cfg)
    n = min(d.get("images") or cfg["strong"]["images"] or len(xa), len(xa))
    xa, ya = xa[:n], ya[:n]
    rows = table_one_rows(cfg["dataset"])
    out = {"extra_pixels": extra, "images": n, "clean": accuracy(rand, xn, yn, cfg["eval_batch"]),
           "noise": {str(float(v)): noise_accuracy(rand, xn, yn, float(v), seed=0, batch_size=cfg["eval_batch"])
                     for _, k, v in rows if k == "gaussian"},
           "faithful": _faithful(rand, xa, ya, cfg, None, {k: [v for _, kk, v in rows if kk == k] for k in ("fgsm", "pgd")})}
    strong_cfg = {**cfg, "strong": {**cfg["strong"], "steps": [d["steps"]], "restarts": d["restarts"]}}
    out["strong"] = {v: _strong(rand, xa, ya, v, strong_cfg, seed, eot=d["eot"], run_autoattack=False)
                     for _, k, v in rows if k == "pgd"}
    return out


# ------------------------------------------------------------------------------------------- runs

def trainer_for(cfg: dict, device: torch.device) -> str:
    """``plain`` (torchdiffeq loop), ``engine (CUDA graphs)`` or ``engine (eager)`` for ``cfg['trainer']``."""
    if cfg["trainer"] == "plain" or (cfg["trainer"] == "auto" and device.type != "cuda"):
        return "plain"
    return "engine (CUDA graphs)" if device.type == "cuda" else "engine (eager)"


TRAINING_KEYS = ("dataset", "width", "image_size", "size", "limit_per_class", "train_size", "val_size", "epochs",
                 "batch_size", "lr", "weight_decay", "milestones", "gamma", "augment_p", "augment_sigmas")


def training_params(name: str, cfg: dict) -> dict:
    """The settings that determine a trained model; its checkpoint and model file are keyed by their hash, so a
    change to the *evaluation* settings re-evaluates the stored model instead of retraining it."""
    params = {"model": name, **{k: cfg[k] for k in TRAINING_KEYS if k in cfg}}
    if name.startswith("TisODE"):
        params.update(steady_weight=cfg["steady_weight"], steady_start_epoch=cfg["steady_start_epoch"])
    if name.endswith("+denoise"):
        params["denoiser"] = cfg["defences"]["denoiser"]
    return params


def run_params(name: str, cfg: dict) -> dict:
    """Everything a run's results file depends on (its reuse is keyed by their hash)."""
    return {**cfg, "model": name}


def experiment_name(dataset: str) -> str:
    return f"robustness-{dataset}"


def trained_model(name: str, seed: int, cfg: dict, store: Store, device: torch.device, data: Callable[[], dict],
                  progress: bool = True, deadline: Deadline | None = None, epoch_estimate: float = 0.0,
                  on_epoch: Callable[[dict], None] | None = None) -> tuple[RobustNet, dict]:
    """The model trained with Yan et al.'s recipe, and ``{"history", "trainer"}``: read from the store's model
    file when it was trained before, else trained (checkpointed per epoch when ``cfg['checkpoint']``) and saved.

    ``data()`` gives the tensors (called only when training is needed). ``deadline``: see
    :func:`robustode.training.train`."""
    experiment, run, params = experiment_name(cfg["dataset"]), f"{name}-seed{seed}", training_params(name, cfg)
    seed_everything(seed)
    model = make_model(name, cfg)
    saved = store.load_model(experiment, run, params) if cfg["resume"] else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        return model.to(device).eval(), {"history": saved["history"], "trainer": saved["trainer"]}
    tensors = data()
    spec, desc = train_spec(name, cfg, seed, tensors["val"]), f"{name} seed {seed}"
    trainer = trainer_for(cfg, device)
    checkpoint = store.checkpoint(experiment, run, params) if cfg["checkpoint"] else None
    budget = {"deadline": deadline, "epoch_estimate": epoch_estimate}
    if trainer == "plain":
        hist = train(model, tensor_batches(*tensors["train"], cfg["batch_size"], seed), spec, device,
                     checkpoint=checkpoint, progress=progress, desc=desc, on_epoch=on_epoch, **budget)
    else:
        engine_checkpoint = checkpoint.with_suffix(".engine.pt") if checkpoint else None
        hist = train_fast(model, *tensors["train"], spec, cfg["batch_size"], device, progress=progress, desc=desc,
                          checkpoint=engine_checkpoint, **budget)
    if cfg["checkpoint"]:
        store.save_model(experiment, run, params, model.state_dict(), history=hist.as_dict(), trainer=trainer)
    return model, {"history": hist.as_dict(), "trainer": trainer}


def train_seeds_together(name: str, seeds: list[int], cfg: dict, store: Store, data: dict, device: torch.device,
                         progress: bool = True) -> None:
    """Train the seeds of one model at once with :func:`robustode.engine.train_fast_many` (one CUDA stream
    each), leaving a finished engine checkpoint per seed; :func:`trained_model` then finds it and saves the
    model. Each seed gets the initial weights and the spec it would get alone."""
    experiment, models, specs, checkpoints = experiment_name(cfg["dataset"]), [], [], []
    for seed in seeds:
        seed_everything(seed)
        models.append(make_model(name, cfg))
        specs.append(train_spec(name, cfg, seed, data["val"]))
        checkpoints.append(store.checkpoint(experiment, f"{name}-seed{seed}", training_params(name, cfg), ".engine.pt"))
    train_fast_many(models, *data["train"], specs, cfg["batch_size"], device, progress=progress,
                    desc=f"{name} seeds {', '.join(map(str, seeds))}", checkpoints=checkpoints)


def compute_run(name: str, seed: int, cfg: dict, store: Store, device: torch.device, data: Callable[[], dict],
                progress: bool = True, deadline: Deadline | None = None, epoch_estimate: float = 0.0,
                stage_estimate: Callable[[str], float] = lambda stage: 0.0,
                on_epoch: Callable[[dict], None] | None = None) -> dict:
    """One run's metrics: the trained model (:func:`trained_model`), then :func:`evaluate`, resumable per stage
    through the store's partial file. Raises :class:`~robustode.budget.OutOfBudget` at an epoch or stage
    boundary when the deadline does not leave room for the next piece."""
    model, trained = trained_model(name, seed, cfg, store, device, data, progress, deadline, epoch_estimate, on_epoch)
    experiment, run, params = experiment_name(cfg["dataset"]), f"{name}-seed{seed}", run_params(name, cfg)
    done = store.load_partial(experiment, run, params) if cfg["resume"] else {}
    metrics = {"parameters": count_parameters(model), "trainer": trained["trainer"], "history": trained["history"],
               **evaluate(model, data(), cfg, seed, progress, f"{name} seed {seed}", name, done,
                          (lambda d: store.save_partial(experiment, run, params, d)) if cfg["checkpoint"] else None,
                          deadline, stage_estimate)}
    return metrics


def run(
    profile: str | dict, models: tuple[str, ...] | list[str] = TABLE_MODELS, dataset: str = "MNIST", device: str = "auto",
    results_dir: Path | None = None, imagenet_root: str | None = None, progress: bool = True, resume: bool | None = None,
) -> list[dict]:
    """Train and evaluate every model x seed; one results file per run. ``resume=True`` reuses stored runs
    with identical parameters (chapter 3 reuses chapter 2's CNN and ODENet this way).

    Returns ``[]`` without running anything when the dataset is not on disk (the tables then say
    "not run: data missing").
    """
    cfg = config(profile, dataset)
    for name in models:
        check_choice("model", name, MODELS)
    if not available(dataset, imagenet_root)[0]:
        return []
    dev = resolve_device(device)
    store = Store(profile_name(profile), results_dir)
    if resume is not None:
        cfg = {**cfg, "resume": resume}
    tensors: dict = {}

    def data() -> dict:
        if not tensors:
            tensors.update(load_data(cfg, dev, imagenet_root))
        return tensors

    together = cfg["concurrent_seeds"] and cfg["checkpoint"] and trainer_for(cfg, dev) != "plain"
    experiment, runs = experiment_name(dataset), []
    with cpu_threads(cfg["cpu_threads"] if dev.type == "cpu" else None):
        for seed in range(cfg["seeds"]):
            for name in models:
                params = run_params(name, cfg)
                stored = store.run(experiment, f"{name}-seed{seed}", params) if cfg["resume"] else None
                if stored is None:
                    if together and seed == 0:
                        pending = [s for s in range(cfg["seeds"]) if store.load_model(
                            experiment, f"{name}-seed{s}", training_params(name, cfg)) is None]
                        if len(pending) > 1:
                            train_seeds_together(name, pending, cfg, store, data(), dev, progress)
                    started = now()
                    metrics = compute_run(name, seed, cfg, store, dev, data, progress)
                    stored = store.write(experiment, f"{name}-seed{seed}", params=params, seed=seed, started=started,
                                         device=dev, metrics=metrics)
                    store.drop_partial(experiment, f"{name}-seed{seed}", params)
                runs.append(stored)
    return runs


# -------------------------------------------------------------------------------------- summaries

def _runs(results_dir: Path, dataset: str) -> list[dict]:
    """Stored runs in model order (CNN, ODENet, TisODE, then the +denoise variants), then by seed."""
    runs = load_results(results_dir, f"robustness-{dataset}")
    order = {name: i for i, name in enumerate(MODELS)}
    return sorted(runs, key=lambda r: (order.get(r["params"]["model"], len(order)), r["seed"]))


def _by_model(runs: list[dict], name: str) -> list[dict]:
    return [r["metrics"] for r in runs if r["params"]["model"] == name]


def _not_run_rows(runs: list[dict], dataset: str, models: tuple[str, ...], **keys: str) -> list[dict]:
    """One "not run: data missing (...)" row per model when nothing is stored and the data are missing, else []."""
    why = "" if runs else missing_reason(dataset)
    return [{**keys, "model": name, "result": f"not run: {why}"} for name in models] if why else []


def table_value(metrics: dict, kind: str, value: str) -> float:
    """The Table I quantity of one run, in percent."""
    if kind == "gaussian":
        return 100 * metrics["noise"][str(float(value))]
    return 100 * metrics["faithful"][kind][value]


def table_one(results_dir: Path, dataset: str, profile: str, available_reason: str | None = None,
              models: tuple[str, ...] = TABLE_MODELS) -> list[dict]:
    """Table I rows for a dataset: printed value, reproduced mean +- sd, difference, verdict.

    Rows without stored runs say why (``available_reason``; by default "data missing (...)" when the
    dataset is not on disk, worked out here; pass ``""`` for a plain "not run").
    """
    if available_reason is None:
        available_reason = missing_reason(dataset)
    printed = reference_values()["table_1_robustness"][dataset]
    runs = _runs(results_dir, dataset)
    rows = []
    for key, kind, value in table_one_rows(dataset):
        label = f"σ = {value}" if kind == "gaussian" else f"{kind.upper()}-{value}"
        for name in models:
            values = [table_value(m, kind, value) for m in _by_model(runs, name)]
            p, pm = printed[key][name]
            row = compare(f"{dataset} {label}", p, pm, values, profile, 1, not_run_reason=available_reason or None)
            rows.append({"perturbation": row.pop("quantity"), "model": name, **row})
    return rows


def strong_table(results_dir: Path, dataset: str, models: tuple[str, ...] = TABLE_MODELS) -> list[dict]:
    """Faithful PGD beside strong PGD and AutoAttack at Table I's PGD epsilons (mean +- sd over seeds, %)."""
    runs = _runs(results_dir, dataset)
    rows = []
    for _, kind, eps in table_one_rows(dataset):
        if kind != "pgd":
            continue
        rows += _not_run_rows(runs, dataset, models, eps=eps)
        for name in models:
            mine = _by_model(runs, name)
            if not mine:
                continue
            strong = [m["strong"][eps] for m in mine]
            aa = [s["autoattack"] for s in strong if "autoattack" in s]
            rows.append({
                "eps": eps, "model": name,
                "faithful PGD (margin, 10 it.)": fmt_mean_sd([100 * m["faithful"]["pgd"][eps] for m in mine]),
                f"strong PGD (CE, {strong[0]['steps']} steps x {strong[0]['restarts']} restarts)":
                    fmt_mean_sd([100 * s["accuracy"] for s in strong]),
                "AutoAttack": fmt_mean_sd([100 * a["accuracy"] for a in aa]) if aa else "not run",
                "AutoAttack setting": f"{aa[0]['config']}, {aa[0]['images']} images" if aa else "—",
                "images (faithful / strong)": f"{mine[0]['attack_images']} / {strong[0]['images']}",
            })
    return rows


def sanity_table(results_dir: Path, dataset: str) -> list[dict]:
    """Every stored check of every run; a failed check is shown in red (:func:`robustode.tables.flag`)."""
    runs = _runs(results_dir, dataset)
    rows = _not_run_rows(runs, dataset, CHAPTER_MODELS)
    for r in runs:
        for c in r["metrics"]["checks"]:
            rows.append({"model": r["params"]["model"], "seed": r["seed"], "check": c["check"],
                         "result": flag(c["ok"], ("passed: " if c["ok"] else "") + c["detail"])})
    return rows


def failed_checks(results_dir: Path, dataset: str) -> list[str]:
    return [f"{r['params']['model']} seed {r['seed']}: {c['check']} ({c['detail']})"
            for r in _runs(results_dir, dataset) for c in r["metrics"]["checks"] if not c["ok"]]


def solver_transfer_table(results_dir: Path, dataset: str) -> list[dict]:
    """Accuracy (%) of faithful PGD crafted through one Euler step size (rows) and judged with another."""
    runs = _runs(results_dir, dataset)
    rows = _not_run_rows(runs, dataset, tuple(m for m in CHAPTER_MODELS if m != "CNN"))
    for r in runs:
        st = r["metrics"].get("sanity", {}).get("solver_transfer")
        if not st or r["seed"] != 0:
            continue
        for craft, judged in st["accuracy"].items():
            rows.append({"model": f"{r['params']['model']} (deployed step {st['deployed_step']})",
                         "crafted with step": craft,
                         **{f"judged with step {j}": f"{100 * a:.1f}" for j, a in judged.items()}})
    return rows


def authors_spread(results_dir: Path, profile: str) -> list[dict]:
    """The authors' own three FGSM runs per MNIST model (their log) beside ours: run-to-run spread."""
    authors = reference_values()["authors_mnist_fgsm_runs"]
    runs = _runs(results_dir, "MNIST")
    not_run = "not run" + (f": {why}" if (why := missing_reason("MNIST")) else "")
    rows = []
    for key, per_model in authors.items():
        eps = key.removeprefix("fgsm_")
        for name, values in per_model.items():
            ours = [100 * m["faithful"]["fgsm"][eps] for m in _by_model(runs, name) if eps in m["faithful"]["fgsm"]]
            mean, sd, _ = mean_sd(values)
            printed = reference_values()["table_1_robustness"]["MNIST"][key][name]
            rows.append({"attack": f"FGSM-{eps}", "model": name, "authors' runs": ", ".join(f"{v:.1f}" for v in values),
                         "authors' mean ± sd": f"{mean:.1f} ± {sd:.1f}", "printed in Table I": f"{printed[0]:.1f} ± {printed[1]:.1f}",
                         "range": f"{max(values) - min(values):.1f}",
                         f"ours ({profile})": ", ".join(f"{v:.1f}" for v in ours) or not_run})
    return rows


def defence_table(results_dir: Path, dataset: str = "MNIST") -> list[dict]:
    """Sec. 5.3: each model alone, with feature denoising, with input randomisation, with both (%, mean +- sd)."""
    runs = _runs(results_dir, dataset)
    rows = _not_run_rows(runs, dataset, CHAPTER_MODELS)
    for name in MODELS:
        mine = _by_model(runs, name)
        if not mine:
            continue
        variants = [(name, mine)]
        rand = [m["randomised"] for m in mine if "randomised" in m]
        if rand:
            variants.append((f"{name} + input randomisation", rand))
        for label, ms in variants:
            row = {"model": label, "runs": len(ms), "clean": fmt_mean_sd([100 * m["clean"] for m in ms])}
            for _, kind, value in table_one_rows(dataset):
                if kind == "gaussian":
                    row[f"σ = {value}"] = fmt_mean_sd([100 * m["noise"][str(float(value))] for m in ms])
                else:
                    row[f"{kind.upper()}-{value}"] = fmt_mean_sd([100 * m["faithful"][kind][value] for m in ms])
            for eps in [v for _, k, v in table_one_rows(dataset) if k == "pgd"]:
                strong = [m["strong"][eps] for m in ms]
                row[f"strong PGD-{eps}"] = fmt_mean_sd([100 * s["accuracy"] for s in strong])
            first = ms[0]["strong"][next(iter(ms[0]["strong"]))]
            row["strong setting"] = (f"{first['steps']} steps x {first['restarts']} restarts, {first['images']} images"
                                     + (f", EOT over {first['eot']} draws" if first["eot"] > 1 else ""))
            rows.append(row)
    return rows


def curves(results_dir: Path, dataset: str, models: tuple[str, ...] = TABLE_MODELS) -> dict[str, dict]:
    """Per model: mean accuracy (%) vs sigma and vs eps (FGSM, PGD), averaged over seeds, for the plots."""
    runs = _runs(results_dir, dataset)
    out = {}
    for name in models:
        mine = _by_model(runs, name)
        if not mine:
            continue
        entry = {"noise": {}, "fgsm": {}, "pgd": {}, "runs": len(mine)}
        for s in mine[0]["noise"]:
            entry["noise"][float(s)] = mean_sd([100 * m["noise"][s] for m in mine])[:2]
        for kind in ("fgsm", "pgd"):
            for eps in mine[0]["faithful"][kind]:
                entry[kind][eps_value(eps)] = mean_sd([100 * m["faithful"][kind][eps] for m in mine])[:2]
        out[name] = entry
    return out


def run_summary(results_dir: Path, dataset: str) -> list[dict]:
    """Per run: parameters, epochs, best epoch, validation accuracy, clean test accuracy, trainer, wall time
    (for seeds trained together, the wall time they shared)."""
    runs = _runs(results_dir, dataset)
    rows = _not_run_rows(runs, dataset, CHAPTER_MODELS)
    for r in runs:
        m, p = r["metrics"], r["params"]
        epochs = m["history"]["epochs"]
        best = m["history"]["best_epoch"]
        rows.append({"model": p["model"], "seed": r["seed"], "width": p["width"], "parameters": f"{m['parameters']:,}",
                     "train images": p["train_size"] or "all", "epochs": len(epochs), "selected epoch": best,
                     "val. acc. (noisy) %": f"{100 * epochs[best - 1]['val_noisy_accuracy']:.1f}" if best else "—",
                     "clean test acc. %": f"{100 * m['clean']:.1f}",
                     "trainer": _trainer_label(m, epochs, r["provenance"]["device"]),
                     "train time s": f"{sum(e['seconds'] for e in epochs):.0f}"})
    return rows


def _trainer_label(metrics: dict, epochs: list[dict], device: str) -> str:
    label = metrics.get("trainer", "plain")
    together = max((e.get("concurrent_runs", 1) for e in epochs), default=1)
    return f"{label}{f', {together} seeds at once' if together > 1 else ''} on {device}"


def steadiness_table(results_dir: Path, dataset: str) -> list[dict]:
    """Mean |f(z(t))| at t = 0, T = 1 and 2T (seed 0): a steady state would bring it near 0 after T."""
    rows = _not_run_rows(_runs(results_dir, dataset), dataset, tuple(m for m in CHAPTER_MODELS if m != "CNN"))
    for name, prof in field_profiles(results_dir, dataset).items():
        t = torch.tensor(prof["t"])
        f0, f1, f2 = (prof["mean_abs_f"][int((t - when).abs().argmin())] for when in (0.0, 1.0, 2.0))
        rows.append({"model": name, "mean |f| at t=0": f"{f0:.3f}", "at T=1": f"{f1:.3f}", "at 2T=2": f"{f2:.3f}",
                     "ratio 2T / T": f"{f2 / f1:.2f}"})
    return rows


def field_profiles(results_dir: Path, dataset: str) -> dict[str, dict]:
    """Seed-0 profile of mean |f(z(t))| for every ODE model that has one."""
    return {r["params"]["model"]: r["metrics"]["field_profile"] for r in _runs(results_dir, dataset)
            if r["seed"] == 0 and "field_profile" in r["metrics"]}


def profile_banner(cfg: dict, profile: str) -> str:
    """What this profile's runs are, in one paragraph built from its settings (shown at the top of a chapter)."""
    size = f"{cfg['image_size']}x{cfg['image_size']} (area-downsampled)" if cfg["image_size"] else "native-size"
    aa = cfg["autoattack"]
    aa_text = "standard AutoAttack" if aa["version"] == "standard" else (
        f"a reduced AutoAttack ({', '.join(aa['attacks'])}; " + ", ".join(f"{k} = {v}" for k, v in aa["overrides"].items()) + ")")
    text = (
        f"width {cfg['width']} channels, {size} {cfg['dataset']} images, "
        f"{cfg['train_size'] or 'all'} training images less a {cfg['val_size']}-image validation split, "
        f"{cfg['epochs']} epochs of batch "
        f"{cfg['batch_size']}, Adam lr {cfg['lr']}, weight decay {cfg['weight_decay']}, LR milestones {cfg['milestones'] or 'none'}, "
        f"steady-state term from epoch {cfg['steady_start_epoch']} (0-based), {cfg['seeds']} seed(s); faithful attacks on "
        f"{cfg['attack_images']} of Yan et al.'s 1,000 images; strong PGD on {cfg['strong']['images'] or 'all test'} images "
        f"({max(cfg['strong']['steps'])} steps x {cfg['strong']['restarts']} restarts); {aa_text} on "
        f"{aa['images'] or 'all test'} images"
    )
    if profile == "quick":
        return ("**Quick profile — not the paper's setting.** The 64-channel models take far too long to train on "
                f"two CPU cores, so quick runs use {text}. These models are small and under-trained: their numbers show the "
                "pipeline and the protocols at work, not paper-scale values, and every verdict says *indicative*.")
    return f"**Full profile — Yan et al.'s protocol:** {text}."


def table_one_all(results_dir: Path, profile: str, imagenet_root: str | None = None,
                  models: tuple[str, ...] = TABLE_MODELS) -> list[dict]:
    """Table I for every dataset; datasets whose data are missing get "not run: data missing" rows."""
    rows = []
    for dataset in DATASETS:
        ok, why = available(dataset, imagenet_root)
        rows += table_one(results_dir, dataset, profile, "" if ok else why, models)
    return rows


def findings(results_dir: Path, dataset: str = "MNIST", models: tuple[str, ...] = TABLE_MODELS) -> list[str]:
    """Sentences that compare the stored runs (mean over seeds, percentage points); nothing is typed by hand."""
    runs = _runs(results_dir, dataset)
    if not runs and (why := missing_reason(dataset)):
        return [f"{dataset}: not run: {why}."]
    present = [m for m in models if _by_model(runs, m)]
    out = []
    mean = lambda vals: mean_sd(vals)[0]  # noqa: E731
    for a, b in zip(present, present[1:], strict=False):
        for _, kind, value in table_one_rows(dataset):
            if kind == "gaussian":
                continue
            da = mean([table_value(m, kind, value) for m in _by_model(runs, a)])
            db = mean([table_value(m, kind, value) for m in _by_model(runs, b)])
            printed = reference_values()["table_1_robustness"][dataset][f"{kind}_{value}"]
            out.append(f"{kind.upper()}-{value}: {b} − {a} = {db - da:+.1f} points here; the paper prints "
                       f"{printed[b][0] - printed[a][0]:+.1f}.")
    for name in present:
        mine = _by_model(runs, name)
        for eps in [v for _, k, v in table_one_rows(dataset) if k == "pgd"]:
            faithful = mean([100 * m["faithful"]["pgd"][eps] for m in mine])
            strong = mean([100 * m["strong"][eps]["accuracy"] for m in mine])
            out.append(f"{name}, PGD-{eps}: faithful {faithful:.1f} % ({mine[0]['attack_images']} images), strong "
                       f"{strong:.1f} % ({mine[0]['strong'][eps]['images']} images): a gap of {faithful - strong:+.1f} points.")
    failed = [f for f in failed_checks(results_dir, dataset) if f.split(" seed")[0] in present]
    out.append("Failed sanity checks: " + ("; ".join(failed) if failed else "none."))
    return out


# ------------------------------------------------------------------------------------------ run plan

_TENSORS: dict[tuple, dict] = {}


def cached_data(cfg: dict, device: torch.device, imagenet_root: str | None = None) -> dict:
    """:func:`load_data`, kept for the process: the units of one data set share their tensors."""
    key = (cfg["dataset"], cfg["image_size"], cfg["train_size"], cfg["val_size"], cfg.get("size"),
           cfg.get("limit_per_class"), str(device), imagenet_root)
    if key not in _TENSORS:
        _TENSORS.clear()
        _TENSORS[key] = load_data(cfg, device, imagenet_root)
    return _TENSORS[key]


def prior_robustness(name: str, dataset: str, eps: str) -> float:
    """What fraction of images a strong attack at ``eps`` leaves robust, before anything is measured: the printed
    Table I PGD accuracy of the model (TisODE's for its variants), else one half. Only sizes cost estimates."""
    printed = reference_values()["table_1_robustness"].get(dataset, {}).get(f"pgd_{eps}", {})
    return printed.get(name.split("+")[0], (50.0, 0))[0] / 100


def stage_costs(name: str, cfg: dict, grad_s: float, forward_s: float) -> dict[str, float]:
    """Estimated seconds for each evaluation stage from the per-image cost of an input gradient and of a forward
    pass. Noise, faithful and sanity stages count every step on every image (upper bounds); the strong attacks
    skip broken images, so their steps are counted on the robust fraction (:func:`prior_robustness`) plus a
    fifth of the steps on the rest (the images a restart breaks on its way)."""
    attack, n_test = cfg["attack_images"], 10_000
    noise_n = cfg["noise_images"] or n_test
    strong, aa = cfg["strong"], cfg["autoattack"]
    n_strong = min(strong["images"] or n_test, n_test)
    n_aa = min(aa["images"] or 0, n_strong)
    costs = {
        "noise": noise_n * (len(sigma_grid(cfg)) + 1) * forward_s,
        "faithful": attack * (len(eps_grid(cfg, "fgsm")) * (grad_s + 2 * forward_s)
                              + len(eps_grid(cfg, "pgd")) * (9 * grad_s + 10 * forward_s)),
    }
    for eps in pgd_table_eps(cfg["dataset"]):
        r = prior_robustness(name, cfg["dataset"], eps)
        steps = max(strong["steps"]) * strong["restarts"] + sum(sorted(strong["steps"])[:-1])
        grads = n_strong * steps * strong["eot"] * (r + 0.2 * (1 - r))
        # standard AutoAttack on the images left: APGD-CE (100), APGD-T (9 x 100), FAB-T (9 x 100) gradients and
        # Square (5,000 queries); a custom version is counted as two 100-step attacks
        if aa["version"] == "standard":
            grads += n_aa * (100 + 1800 * r)
            forwards = n_aa * 5000 * r
        else:
            grads, forwards = grads + n_aa * 200, 0
        costs[f"strong {eps}"] = grads * grad_s + forwards * forward_s
    n_sanity = min(cfg["sanity"]["images"], attack)
    ratios = 0.0
    if name != "CNN":
        deployed = TISODE_STEP if name.startswith("TisODE") else ODENET_STEP
        steps = sorted({*cfg["sanity"]["solver_steps"], deployed})
        ratios = sum(deployed / s for s in steps) * (9 * grad_s + 10 * forward_s * len(steps))
    costs["sanity"] = n_sanity * (20 * grad_s + ratios)
    if name in cfg["defences"]["randomise"]:
        d = cfg["defences"]
        n = min(d.get("images") or n_strong, attack)
        costs["randomised"] = (n * len(pgd_table_eps(cfg["dataset"])) * d["eot"] * d["steps"] * d["restarts"] * grad_s
                               + n * 4 * 10 * grad_s + noise_n * 2 * forward_s)
    return costs


def probe(name: str, cfg: dict) -> dict:
    """Measured here, on random images of the data set's shape: seconds per training epoch (steps of
    ``batch_size`` over the training images, with the steady-state term for TisODE, plus validation) and
    upper bounds for the evaluation stages (:func:`stage_costs`)."""
    channels = 1 if cfg["dataset"] == "MNIST" else 3
    side = cfg["image_size"] or {"MNIST": 28, "SVHN": 32, "ImgNet10": cfg.get("size") or 64}[cfg["dataset"]]
    n_train = (cfg["train_size"] or {"MNIST": 60_000, "SVHN": 73_257, "ImgNet10": 13_000}[cfg["dataset"]] - cfg["val_size"])
    torch.manual_seed(0)
    model = make_model(name, cfg)
    x = torch.rand(cfg["batch_size"], channels, side, side)
    y = torch.randint(0, 10, (cfg["batch_size"],))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    regulariser = SteadyStateRegulariser(cfg["steady_weight"], 0) if name.startswith("TisODE") else None

    def step() -> None:
        model.train()
        loss = F.cross_entropy(model(x), y)
        if regulariser is not None:
            loss = loss + regulariser(model, x, 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    from robustode.plan import time_steps

    step_s = time_steps(step)
    model.eval()
    xb = torch.rand(100, channels, side, side, requires_grad=True)
    grad_s = time_steps(lambda: torch.autograd.grad(model(xb).sum(), xb)) / 100
    with torch.no_grad():
        forward_s = time_steps(lambda: model(xb)) / 100
    epoch_s = math.ceil(n_train / cfg["batch_size"]) * step_s + 2 * cfg["val_size"] * forward_s
    return {"epoch_s": epoch_s, "step_s": step_s, "grad_s": grad_s, "forward_s": forward_s,
            "stages_s": stage_costs(name, cfg, grad_s, forward_s)}


def units(profile: str | dict, device: torch.device | None = None) -> list:
    """The run plan's units of chapters 2-3: one per data set x model x seed (``models`` of the profile's
    robustness section), seed-major so that a complete first seed of every model comes first."""
    from robustode.plan import DONE, PARTIAL, PENDING, Progress, Unit, checkpoint_epoch

    section = experiment_config(profile, "robustness")
    models = section.get("models", list(CHAPTER_MODELS))
    imagenet_root = os.environ.get("ROBUSTODE_IMAGENET")
    out = []
    for d_index, dataset in enumerate(d for d in DATASETS if d in section["datasets"]):
        cfg = config(profile, dataset)
        for name in models:
            check_choice("model", name, MODELS)
        for seed in range(cfg["seeds"]):
            for m_index, name in enumerate(models):
                experiment, run = experiment_name(dataset), f"{name}-seed{seed}"
                params, tparams, stages = run_params(name, cfg), training_params(name, cfg), evaluation_stages(name, cfg)

                def status(store: Store, experiment=experiment, run=run, params=params, tparams=tparams, stages=stages,
                           cfg=cfg) -> Progress:
                    if store.run(experiment, run, params) is not None:
                        return Progress(DONE, "results file written")
                    if store.model_file(experiment, run, tparams).exists():
                        left = [s for s in stages if s not in store.load_partial(experiment, run, params)]
                        return Progress(PARTIAL, f"trained; evaluation stage {len(stages) - len(left) + 1} of "
                                                 f"{len(stages)} ({left[0]})" if left else "evaluated", 0, left)
                    for suffix in (".pt", ".engine.pt"):
                        epoch = checkpoint_epoch(store.checkpoint(experiment, run, tparams, suffix))
                        if epoch is not None:
                            return Progress(PARTIAL, f"epoch {epoch} of {cfg['epochs']}", cfg["epochs"] - epoch, stages)
                    return Progress(PENDING, "", cfg["epochs"], stages)

                def compute(ctx, name=name, seed=seed, cfg=cfg) -> dict:
                    return compute_run(name, seed, cfg, ctx.store, ctx.device,
                                       lambda: cached_data(cfg, ctx.device, imagenet_root), ctx.progress, ctx.deadline,
                                       ctx.epoch_estimate, ctx.stage_estimate, ctx.on_epoch)

                out.append(Unit(
                    id=f"robustness/{dataset}/{name}/seed{seed}", experiment=experiment, run=run, params=params, seed=seed,
                    epochs=cfg["epochs"], stages=stages, kind=f"robustness/{dataset}/{name}", compute=compute,
                    status=status, probe=lambda name=name, cfg=cfg: probe(name, cfg),
                    requires=lambda dataset=dataset: missing_reason(dataset, imagenet_root),
                    priority=1000 * d_index + 10 * seed + m_index,
                ))
    return out
