"""Chapters 2-3 runs: Yan et al.'s training recipe, the evaluation stages (noise, faithful and strong attacks,
AutoAttack, sanity checks, input randomisation) and the run plan's units (one per data set x model x seed; the
profile's controls after the main models, with their own seed count).

One run = one model trained with Yan et al.'s protocol (Gaussian-noise augmentation, Adam, weight decay,
MultiStepLR; the steady-state term for the models whose catalog spec asks for it: TisODE and two controls), saved as
a model file, then evaluated stage by stage; its results file is
``results/<profile>/robustness-<dataset>/<model>-seed<k>.json``.
"""

from __future__ import annotations

import copy
import functools
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from robustode.chapters.robustness.config import (
    CHAPTER_MODELS,
    DATASETS,
    MODELS,
    TABLE_MODELS,
    available,
    base_model,
    config,
    control_config,
    control_plan,
    controlled,
    eps_grid,
    eps_value,
    experiment_name,
    missing_reason,
    pgd_table_eps,
    profile_name,
    run_params,
    sigma_grid,
    steady_state,
    table_one_rows,
    training_params,
)
from robustode.core import attacks
from robustode.core.budget import Deadline, FirstPassDone
from robustode.core.defences import FeatureDenoising, InputRandomisation
from robustode.core.engine import train_fast, train_fast_many
from robustode.core.evaluation import (
    accuracy,
    attack_indices,
    batched_attack,
    field_profile,
    noise_accuracy,
    predictions,
    robust_accuracy,
    sanity_checks,
)
from robustode.core.noise import NoiseAugmentation
from robustode.core.odeblock import nfe_counts
from robustode.core.regularisers import SteadyStateRegulariser
from robustode.core.timing import cpu_threads
from robustode.core.training import TrainSpec, train
from robustode.data import imgnet10
from robustode.data.images import load_tensors, subset, tensor_batches, train_val_split
from robustode.models import count_parameters
from robustode.models.robust import RobustNet, build
from robustode.profiles import check_choice, experiment_config, resolve_device
from robustode.reference import reference_values
from robustode.results import device_name, pack_flags, unpack_flags
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


def make_model(name: str, cfg: dict) -> RobustNet:
    """``CNN`` / ``ODENet`` / ``TisODE`` (optionally ``+denoise``) or a control, at the profile's width."""
    arch = base_model(name)
    denoise = FeatureDenoising(cfg["width"], cfg["defences"]["denoiser"]) if name.endswith("+denoise") else None
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
    if steady_state(name):
        regulariser = SteadyStateRegulariser(cfg["steady_weight"], cfg["steady_start_epoch"])
    return TrainSpec(
        epochs=cfg["epochs"], lr=cfg["lr"], weight_decay=cfg["weight_decay"], milestones=tuple(cfg["milestones"]),
        gamma=cfg["gamma"], regulariser=regulariser, augment=augment, evaluate=evaluate,
        select_on="noisy_accuracy", seed=seed,
    )


def with_solver(model: RobustNet, solver: float | str) -> RobustNet:
    """A copy of an ODE model solved with Euler at step ``solver`` (a number) or with the adaptive method
    ``solver`` (a name) at its own tolerances; same weights."""
    other = copy.deepcopy(model)
    other.set_solver(solver)
    return other


def transfer_solvers(deployed: float | str, euler_steps: list[float]) -> list[float | str]:
    """The solvers of the solver-transfer check: the Euler steps (with the deployed one, when it is a step) in
    increasing order, then the deployed adaptive method (when it is one)."""
    if isinstance(deployed, str):
        return [*sorted(set(euler_steps)), deployed]
    return sorted({*euler_steps, deployed})


def randomised(model: RobustNet, extra: int) -> RobustNet:
    """A copy of the model with Xie et al.'s input randomisation in front (inference-time defence).

    ``extra`` pixels of random resize and padding; Xie et al. used 299 -> up to 331 (about 10 %)."""
    other = copy.deepcopy(model)
    other.pre = nn.Sequential(InputRandomisation(extra), other.pre)
    return other


def _faithful(model: nn.Module, xa: torch.Tensor, ya: torch.Tensor, cfg: dict, keep: torch.Tensor | None,
              kinds: dict[str, list[str]]) -> tuple[dict, dict]:
    """Accuracy under Yan et al.'s FGSM / PGD at each eps (``{kind: {eps: accuracy}}``), and the same shape of
    per-image robust flags (packed with :func:`robustode.results.pack_flags`) for paired comparisons of models
    attacked on the same images."""
    out: dict = {}
    flags: dict = {}
    for kind, grid in kinds.items():
        attack = attacks.fgsm if kind == "fgsm" else attacks.pgd
        out[kind], flags[kind] = {}, {}
        for eps in grid:
            value = eps_value(eps)
            robust = batched_attack(lambda a, b, f=attack, e=value: f(model, a, b, e), xa, ya, cfg["eval_batch"])
            out[kind][eps] = robust_accuracy(robust, keep)
            flags[kind][eps] = pack_flags(robust.tolist())
    return out, flags


# Images per resumable piece of a strong stage (see :class:`Pieces`). A PGD piece computes exactly what the whole
# call computes for its images (attacks.pgd_strong(rows=...)), so its size changes nothing but how much a stop
# loses. AutoAttack draws its random starts per batch, so its pieces are its batches: the size is recorded with
# the result ("images_per_part").
PGD_PIECE = 100
AUTOATTACK_PIECE = 25


class Pieces:
    """The resumable pieces of one long evaluation stage (a strong attack on hundreds of images can take hours on a
    CPU, longer than one working session). Each piece's result is kept in ``memo`` (a part of the run's partial
    file, saved by ``save`` after every piece), so a stopped stage resumes at its next piece. Before a piece
    starts, ``deadline`` must leave room for it: the seconds per image measured on this stage's finished pieces of
    the same kind, else ``guess`` times :meth:`calibration` (how far the guesses were off for the kinds measured).
    ``report(line)`` is told of every piece this call finishes (a piece can take half an hour on a CPU core)."""

    def __init__(self, memo: dict, save: Callable[[], None] | None = None, deadline: Deadline | None = None,
                 what: str = "", report: Callable[[str], None] | None = None):
        self.memo, self.save, self.deadline, self.what, self.report = memo, save, deadline, what, report
        self.fresh: set[str] = set()  # the pieces computed by this call (the others were resumed)
        self.guessed: dict[str, float] = {}  # kind -> the guess, in seconds per image, its pieces were asked with

    def per_image(self, kind: str) -> float | None:
        seen = [v for v in self.memo.values() if v["kind"] == kind]
        return sum(v["seconds"] for v in seen) / sum(v["images"] for v in seen) if seen else None

    def calibration(self) -> float:
        """Measured over guessed seconds of the finished pieces whose kind has a guess: the guesses come from a probe
        that may have run on a loaded machine (several times off), and the attacks of one stage share one model and
        one machine, so the first piece of a new kind (AutoAttack after the PGDs) is priced at this ratio. 1 before
        anything is measured."""
        pairs = [(v["seconds"], self.guessed[v["kind"]] * v["images"]) for v in self.memo.values()
                 if self.guessed.get(v["kind"])]
        guessed = sum(g for _, g in pairs)
        return sum(s for s, _ in pairs) / guessed if guessed > 0 else 1.0

    def run(self, key: str, kind: str, images: int, guess: float, compute: Callable[[], object]):
        if images:
            self.guessed.setdefault(kind, guess / images)
        if key in self.memo:
            return self.memo[key]["value"]
        if self.deadline is not None:
            rate = self.per_image(kind)
            self.deadline.check(guess * self.calibration() if rate is None else rate * images, f"{self.what}: {key}")
        tic = time.perf_counter()
        value = compute()
        seconds = time.perf_counter() - tic
        self.memo[key] = {"kind": kind, "images": images, "seconds": seconds, "value": value}
        self.fresh.add(key)
        if self.save is not None:
            self.save()
        if self.report is not None:
            self.report(f"{self.what}: {key} done in {seconds:,.0f} s ({len(self.memo)} pieces stored)")
        return value


def strong_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, restarts: int, eot: int,
               seed: int, batch_size: int, pieces: Pieces | None = None, guess: float = 0.0) -> list[list[bool]]:
    """:func:`robustode.core.attacks.pgd_strong` on chunks of ``batch_size`` images (chunk k seeded ``seed + k``);
    per restart r, the per-image flags "robust against restarts 0..r". With ``pieces``, each chunk runs in pieces
    of :data:`PGD_PIECE` images (the same flags; ``guess``: estimated seconds per image before any is measured)."""
    parts = []
    for k, i in enumerate(range(0, len(x), batch_size)):
        xc, yc = x[i : i + batch_size], y[i : i + batch_size]
        size = PGD_PIECE if pieces is not None else len(xc)
        for j in range(0, len(xc), size):
            rows = slice(j, min(j + size, len(xc)))

            def attack(rows: slice = rows, xc: torch.Tensor = xc, yc: torch.Tensor = yc, k: int = k) -> list:
                return attacks.pgd_strong(model, xc, yc, eps, steps, restarts, eot=eot, seed=seed + k,
                                          rows=rows)["robust_after_restart"]

            n = rows.stop - rows.start
            parts.append(attack() if pieces is None else pieces.run(
                f"pgd {steps}x{restarts} images {i + rows.start}-{i + rows.stop}", f"pgd {steps}x{restarts}", n,
                guess * n, attack))
    return [sum((c[r] for c in parts), []) for r in range(restarts)]


def strong_guess(name: str, cfg: dict, eps: str, seconds: float) -> dict[str, float]:
    """``seconds`` (a strong stage's estimate) shared out over its parts as :func:`strong_seconds` prices them (a
    forward pass taken as half an input gradient, about what the probes measure)."""
    try:
        parts = strong_seconds(name, cfg, eps, 1.0, 0.5)
    except (KeyError, ValueError):  # a model without printed numbers: even shares
        parts = {"main": 1.0, "steps": 1.0, "autoattack": 1.0}
    total = sum(parts.values()) or 1.0
    return {k: seconds * v / total for k, v in parts.items()}


def strong_seconds(name: str, cfg: dict, eps: str, grad_s: float, forward_s: float) -> dict[str, float]:
    """Estimated seconds of a strong stage's parts at ``eps``: ``main`` PGD (most steps x restarts), ``steps`` (the
    shorter one-restart PGDs) and ``autoattack``. Broken images are skipped, so steps are counted on the robust
    fraction (:func:`prior_robustness`) plus a fifth of them on the rest (the images a restart breaks on its way)."""
    strong, aa = cfg["strong"], cfg["autoattack"]
    n_test = 10_000
    n_strong = min(strong["images"] or n_test, n_test)
    n_aa = min(aa["images"] or 0, n_strong)
    r = prior_robustness(name, cfg["dataset"], eps)
    share = strong["eot"] * (r + 0.2 * (1 - r)) * n_strong * grad_s
    # standard AutoAttack on the images left: APGD-CE (100), APGD-T (9 x 100), FAB-T (9 x 100) gradients and
    # Square (5,000 queries); a custom version is counted as two 100-step attacks
    if aa["version"] == "standard":
        autoattack = n_aa * ((100 + 1800 * r) * grad_s + 5000 * r * forward_s)
    else:
        autoattack = n_aa * 200 * grad_s
    return {"main": max(strong["steps"]) * strong["restarts"] * share, "steps": sum(sorted(strong["steps"])[:-1]) * share,
            "autoattack": autoattack}


def _strong(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: str, cfg: dict, seed: int, eot: int = 1,
            run_autoattack: bool = True, pieces: Pieces | None = None, guess: dict[str, float] | None = None) -> dict:
    """Strong PGD (cross-entropy, random starts, restarts; by steps and by restarts) and AutoAttack at ``eps``.
    With ``pieces``, resumable piece by piece; ``guess``: :func:`strong_seconds` of this stage (seconds), which
    sizes the deadline check of a piece before any piece of its kind is measured."""
    strong = cfg["strong"]
    steps = sorted(strong["steps"])
    guess = guess or {}
    n_steps_total = sum(steps[:-1]) or 1

    def pgd(n_steps: int, restarts: int, seconds: float) -> list[list[bool]]:
        return strong_pgd(model, x, y, eps_value(eps), n_steps, restarts, eot, seed, cfg["eval_batch"], pieces,
                          seconds / max(len(x), 1))

    main = pgd(steps[-1], strong["restarts"], guess.get("main", 0.0))
    robust = torch.tensor(main[-1])
    by_steps = {str(s): robust_accuracy(pgd(s, 1, guess.get("steps", 0.0) * s / n_steps_total)[0]) for s in steps[:-1]}
    by_steps[str(steps[-1])] = robust_accuracy(main[0])
    out = {"accuracy": robust_accuracy(robust), "flags": pack_flags(robust.tolist()), "images": len(x),
           "steps": steps[-1], "restarts": strong["restarts"],
           "eot": eot, "by_steps": by_steps,
           "by_restarts": [robust_accuracy(r) for r in main]}
    aa = cfg["autoattack"]
    if run_autoattack and aa["images"]:
        n = min(aa["images"], len(x))
        size = AUTOATTACK_PIECE if pieces is not None else n

        def autoattack(a: int, b: int) -> list[bool]:
            return attacks.autoattack(model, x[a:b], y[a:b], eps_value(eps), aa["version"], aa.get("attacks"),
                                      aa.get("overrides"), seed=seed, batch_size=cfg["eval_batch"]).cpu().tolist()

        flags: list[bool] = []
        for a in range(0, n, size):
            b = min(a + size, n)
            flags += (autoattack(a, b) if pieces is None else pieces.run(
                f"autoattack images {a}-{b}", "autoattack", b - a, guess.get("autoattack", 0.0) * (b - a) / n,
                lambda a=a, b=b: autoattack(a, b)))
        label = aa["version"] if aa["version"] != "custom" else (
            "custom: " + ", ".join(aa["attacks"]) + "".join(f", {k}={v}" for k, v in (aa.get("overrides") or {}).items()))
        out["autoattack"] = {"accuracy": robust_accuracy(torch.tensor(flags)), "flags": pack_flags(flags), "images": n,
                             "config": label, "images_per_part": min(size, n),
                             "pgd_same_images": robust_accuracy(robust[:n])}
    return out


def _solver_transfer(model: RobustNet, xa: torch.Tensor, ya: torch.Tensor, cfg: dict) -> dict:
    """accuracy[craft solver][judge solver] of Yan et al.'s PGD crafted through one solver, judged with another.

    A solver is an Euler step (``"0.1"``) or, for a model deployed with an adaptive method, that method
    (``"dopri5"``): such a model is attacked through the adaptive solver and through every Euler step of
    ``sanity.solver_steps``, and each attack is judged by all of them (Huang et al. 2021; Carrara et al.)."""
    san = cfg["sanity"]
    deployed = model.deployed_solver()
    steps = transfer_solvers(deployed, san["solver_steps"])
    eps = eps_value(cfg["solver_eps"])
    n = min(san["images"], len(xa))
    x, y = xa[:n], ya[:n]
    judges = {s: with_solver(model, s) for s in steps}
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


def evaluation_stages(name: str, cfg: dict) -> list[str]:
    """The resumable pieces of one model's evaluation, in order: ``noise``, ``faithful``, ``strong <eps>`` per
    Table I PGD eps, ``sanity`` and, for models in ``defences.randomise``, ``randomised``."""
    stages = ["noise", "faithful", *(f"strong {eps}" for eps in pgd_table_eps(cfg["dataset"])), "sanity"]
    return stages + (["randomised"] if name in cfg["defences"]["randomise"] else [])


def _stage(stage: str, model: RobustNet, data: dict, cfg: dict, seed: int, pieces: Pieces | None = None,
           guess: dict[str, float] | None = None) -> dict:
    """One evaluation stage's metrics (accuracies in [0, 1]); see :func:`evaluate`. ``pieces`` and ``guess``: a
    strong stage's resumable pieces (:func:`_strong`)."""
    x_test, y_test = data["test"]
    xa, ya = attack_set(data, cfg)
    if stage == "noise":
        xn, yn = subset(x_test, y_test, cfg["noise_images"], seed=0)
        return {"clean": accuracy(model, xn, yn, cfg["eval_batch"]), "noise_images": len(xn),
                "noise": {str(s): noise_accuracy(model, xn, yn, s, seed=0, batch_size=cfg["eval_batch"]) for s in sigma_grid(cfg)}}
    if stage == "faithful":
        clean_correct = predictions(model, xa, cfg["eval_batch"]) == ya
        keep = clean_correct if cfg.get("conditional") else None
        faithful, flags = _faithful(model, xa, ya, cfg, keep, {"fgsm": eps_grid(cfg, "fgsm"), "pgd": eps_grid(cfg, "pgd")})
        return {"attack_images": len(xa), "attack_clean": robust_accuracy(clean_correct),
                "attack_clean_flags": pack_flags(clean_correct.tolist()), "conditional": bool(cfg.get("conditional")),
                "faithful": faithful, "faithful_flags": flags}
    if stage.startswith("strong "):
        eps = stage.removeprefix("strong ")
        n = min(cfg["strong"]["images"] or len(x_test), len(x_test))
        xs, ys = (xa[:n], ya[:n]) if n <= len(xa) else subset(x_test, y_test, n, seed=0)
        return {"strong": {eps: _strong(model, xs, ys, eps, cfg, seed, pieces=pieces, guess=guess)}}
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
        return {"randomised": evaluate_randomised(model, data, cfg, seed),
                "without_defence": {"strong": same_attack_without_defence(model, data, cfg, seed)}}
    raise ValueError(f"unknown evaluation stage {stage!r}")


def stages_left(partial: dict, stages: list[str]) -> tuple[list[str], str]:
    """The stages a partial file does not hold yet, and a line for the plan ("evaluation stage 3 of 5 (strong
    0.2, 4 pieces stored)")."""
    left = [s for s in stages if s not in partial]
    if not left:
        return left, "evaluated"
    pieces = len(partial.get(f"{left[0]} (pieces)", {}))
    stored = f", {pieces} piece{'s' * (pieces != 1)} stored" if pieces else ""
    return left, f"evaluation stage {len(stages) - len(left) + 1} of {len(stages)} ({left[0]}{stored})"


def evaluate(model: RobustNet, data: dict, cfg: dict, seed: int, progress: bool = True, desc: str = "",
             name: str = "", done: dict | None = None, save: Callable[[dict], None] | None = None,
             deadline: Deadline | None = None, estimate: Callable[[str], float] = lambda stage: 0.0,
             stop_after: tuple[str, ...] = ()) -> dict:
    """Everything Table I and the sanity checks need, for one trained model (accuracies in [0, 1]).

    Runs :func:`evaluation_stages` in order. ``done`` holds stages finished earlier (``{stage: metrics}``),
    which are not redone; ``save(done)`` is called after each stage, so a stopped evaluation resumes at
    the next one. A strong stage is also saved piece by piece (:class:`Pieces`, under ``"<stage> (pieces)"``
    until the stage is whole), so it resumes at its next piece. With ``deadline``, a stage (a piece of a strong
    stage) starts only if ``estimate(stage)`` seconds (its share of them, then the measured rate) fit, else
    :class:`~robustode.core.budget.OutOfBudget` is raised between stages (pieces). With ``stop_after``,
    :class:`~robustode.core.budget.FirstPassDone` is raised once those stages are done and others are left.
    """
    model.eval()
    done = dict(done or {})
    if save is not None:  # the device is kept with the stages: an evaluation in progress shown in the book names it
        where, persist = device_name(next(model.parameters()).device), save
        save = lambda d: persist({**d, "device": where})  # noqa: E731
    stages = evaluation_stages(name, cfg)
    bar = tqdm(stages, desc=f"evaluate {desc}", disable=not progress, leave=False)
    for stage in bar:
        if stage in done:
            continue
        if stop_after and all(s in done for s in stop_after):
            raise FirstPassDone(f"evaluate {desc}: {', '.join(stop_after)} done; {stage} and after left")
        pieces = guess = None
        if stage.startswith("strong ") and save is not None:
            memo = done.setdefault(f"{stage} (pieces)", {})
            pieces = Pieces(memo, lambda: save(done), deadline, f"evaluate {desc}: {stage}",
                            report=(lambda line: tqdm.write(line, file=sys.stderr)) if progress else None)
            guess = strong_guess(name, cfg, stage.removeprefix("strong "), estimate(stage))
        elif deadline is not None:
            deadline.check(estimate(stage), f"evaluate {desc}: {stage}")
        bar.set_postfix_str(stage)
        tic = time.perf_counter()
        metrics = _stage(stage, model, data, cfg, seed, pieces, guess)
        # a resumed stage's time: this call's plus its pieces' from earlier calls
        earlier = sum(v["seconds"] for k, v in (pieces.memo.items() if pieces else ()) if k not in pieces.fresh)
        done[stage] = {"metrics": metrics, "seconds": time.perf_counter() - tic + earlier}
        done.pop(f"{stage} (pieces)", None)
        if save is not None:
            save(done)
    metrics = merge_stages(done, stages)
    metrics["checks"] = sanity_checks(metrics, cfg["sanity"]["tolerance"])
    return metrics


def merge_stages(done: dict, stages: list[str]) -> dict:
    """One metrics dict from the finished ``stages`` in ``done`` (a partial file's content): the strong stages'
    eps merged under ``strong``, every stage's seconds under ``seconds``; stages not in ``done`` are left out."""
    metrics: dict = {"seconds": {}}
    for stage in stages:
        if stage not in done:
            continue
        for key, value in done[stage]["metrics"].items():
            if key == "strong":
                metrics.setdefault("strong", {}).update(value)
            else:
                metrics[key] = value
        metrics["seconds"][stage] = done[stage]["seconds"]
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
    faithful, flags = _faithful(rand, xa, ya, cfg, None, {k: [v for _, kk, v in rows if kk == k] for k in ("fgsm", "pgd")})
    out = {"extra_pixels": extra, "images": n, "clean": accuracy(rand, xn, yn, cfg["eval_batch"]),
           "noise": {str(float(v)): noise_accuracy(rand, xn, yn, float(v), seed=0, batch_size=cfg["eval_batch"])
                     for _, k, v in rows if k == "gaussian"},
           "faithful": faithful, "faithful_flags": flags}
    out["strong"] = {v: _strong(rand, xa, ya, v, _defence_attack(cfg), seed, eot=d["eot"], run_autoattack=False)
                     for _, k, v in rows if k == "pgd"}
    return out


def _defence_attack(cfg: dict) -> dict:
    """``cfg`` with the strong PGD of the ``defences`` section: its steps and restarts (EOT is the caller's)."""
    d = cfg["defences"]
    return {**cfg, "strong": {**cfg["strong"], "steps": [d["steps"]], "restarts": d["restarts"]}}


def same_attack_without_defence(model: RobustNet, data: dict, cfg: dict, seed: int) -> dict:
    """The strong PGD :func:`evaluate_randomised` runs on the randomised model (the ``defences`` steps and restarts,
    the same images and random starts), on ``model`` itself: without randomisation the model is deterministic, so
    one pass per step is what EOT over any number of draws computes. The per-image flags pair with the randomised
    model's for "what does the defence add" at an equal attack (the main strong stage has many more steps and
    restarts, which would credit the defence with the weaker attack's failures)."""
    d = cfg["defences"]
    xa, ya = attack_set(data, cfg)
    n = min(d.get("images") or cfg["strong"]["images"] or len(xa), len(xa))
    return {v: _strong(model.eval(), xa[:n], ya[:n], v, _defence_attack(cfg), seed, run_autoattack=False)
            for _, k, v in table_one_rows(cfg["dataset"]) if k == "pgd"}


def trainer_for(cfg: dict, device: torch.device, model: RobustNet | None = None) -> str:
    """``plain`` (torchdiffeq loop), ``engine (CUDA graphs)`` or ``engine (eager)`` for ``cfg['trainer']``. A model
    with an adaptive solver always trains with the plain loop: the engine needs fixed steps (an adaptive solve
    reads its error estimate on the host at every step, which a CUDA graph cannot capture)."""
    adaptive = model is not None and isinstance(model.deployed_solver(), str)
    if cfg["trainer"] == "plain" or adaptive or (cfg["trainer"] == "auto" and device.type != "cuda"):
        return "plain"
    return "engine (CUDA graphs)" if device.type == "cuda" else "engine (eager)"


def trained_model(name: str, seed: int, cfg: dict, store: Store, device: torch.device, data: Callable[[], dict],
                  progress: bool = True, deadline: Deadline | None = None, epoch_estimate: float = 0.0,
                  on_epoch: Callable[[dict], None] | None = None) -> tuple[RobustNet, dict]:
    """The model trained with Yan et al.'s recipe, and ``{"history", "trainer"}``: read from the store's model
    file when it was trained before, else trained (checkpointed per epoch when ``cfg['checkpoint']``) and saved.

    ``data()`` gives the tensors (called only when training is needed). ``deadline``: see
    :func:`robustode.core.training.train`."""
    experiment, run, params = experiment_name(cfg["dataset"]), f"{name}-seed{seed}", training_params(name, cfg)
    seed_everything(seed)
    model = make_model(name, cfg)
    saved = store.load_model(experiment, run, params) if cfg["resume"] else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        return model.to(device).eval(), {"history": saved["history"], "trainer": saved["trainer"]}
    tensors = data()
    spec, desc = train_spec(name, cfg, seed, tensors["val"]), f"{name} seed {seed}"
    trainer = trainer_for(cfg, device, model)
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
    """Train the seeds of one model at once with :func:`robustode.core.engine.train_fast_many` (one CUDA stream
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
                on_epoch: Callable[[dict], None] | None = None, stop_after: tuple[str, ...] = ()) -> dict:
    """One run's metrics: the trained model (:func:`trained_model`), then :func:`evaluate`, resumable per stage
    through the store's partial file. Raises :class:`~robustode.core.budget.OutOfBudget` at an epoch or stage
    boundary when the deadline does not leave room for the next piece."""
    model, trained = trained_model(name, seed, cfg, store, device, data, progress, deadline, epoch_estimate, on_epoch)
    experiment, run, params = experiment_name(cfg["dataset"]), f"{name}-seed{seed}", run_params(name, cfg)
    done = store.load_partial(experiment, run, params) if cfg["resume"] else {}
    metrics = {"parameters": count_parameters(model), "trainer": trained["trainer"], "history": trained["history"],
               **evaluate(model, data(), cfg, seed, progress, f"{name} seed {seed}", name, done,
                          (lambda d: store.save_partial(experiment, run, params, d))
                          if cfg["checkpoint"] else None, deadline, stage_estimate, stop_after)}
    return metrics


def ensure_runs(
    profile: str | dict, models: tuple[str, ...] | list[str] = TABLE_MODELS, dataset: str = "MNIST", device: str = "auto",
    results_dir: Path | None = None, imagenet_root: str | None = None, progress: bool = True, resume: bool | None = None,
    compute: bool = True,
) -> list[dict]:
    """Every ``models`` x seed run on ``dataset`` (the run plan's units), computed where not stored; one results
    file per run. ``resume`` (default: the profile's) reuses stored runs with identical parameters (chapter 3
    reuses chapter 2's CNN and ODENet this way); ``compute=False`` only reads what is stored (a notebook
    rendering runs that ``robustode run`` made).

    Returns ``[]`` without running anything when the dataset is not on disk (the tables then say
    "not run: data missing").
    """
    cfg = config(profile, dataset)
    for name in models:
        check_choice("model", name, MODELS)
    if not available(dataset, imagenet_root)[0]:
        return []
    dev = resolve_device(device)
    ctx = Context(Store(profile_name(profile), results_dir), dev, Deadline(), progress)
    chosen = [u for u in units(profile, dev, imagenet_root, models) if u.params["dataset"] == dataset]
    with cpu_threads(cfg["cpu_threads"] if dev.type == "cpu" else None):
        found = [ensure(u, ctx, cfg["resume"] if resume is None else resume, compute) for u in chosen]
    return [r for r in found if r is not None]


def ensure_datasets(profile: str | dict, models: tuple[str, ...] | list[str], datasets: tuple[str, ...] | list[str],
                    device: str = "auto", imagenet_root: str | None = None, progress: bool = True,
                    compute: bool = True) -> dict[str, list[dict]]:
    """:func:`ensure_runs` for each of ``datasets`` that the profile plans (others, and data sets missing here,
    give ``[]``)."""
    planned = experiment_config(profile, "robustness")["datasets"]
    return {d: ensure_runs(profile, models, d, device, imagenet_root=imagenet_root, progress=progress, compute=compute)
            if d in planned else [] for d in datasets}


def cached_data(ctx, cfg: dict, imagenet_root: str | None = None) -> dict:
    """:func:`load_data` once for all units run with ``ctx`` (:meth:`robustode.units.Context.shared`)."""
    key = ("robustness", cfg["dataset"], cfg["image_size"], cfg["train_size"], cfg["val_size"], cfg.get("size"),
           cfg.get("limit_per_class"), str(ctx.device), imagenet_root)
    return ctx.shared(key, lambda: load_data(cfg, ctx.device, imagenet_root))


def prior_robustness(name: str, dataset: str, eps: str) -> float:
    """What fraction of images a strong attack at ``eps`` leaves robust, before anything is measured: the printed
    Table I PGD accuracy of the model (TisODE's for its variants, the controlled model's for a control), else one
    half. Only sizes cost estimates."""
    printed = reference_values()["table_1_robustness"].get(dataset, {}).get(f"pgd_{eps}", {})
    return printed.get(controlled(name) or base_model(name), (50.0, 0))[0] / 100


def stage_costs(name: str, cfg: dict, grad_s: float, forward_s: float, nfe: float | None = None) -> dict[str, float]:
    """Estimated seconds for each evaluation stage from the per-image cost of an input gradient and of a forward
    pass. Noise, faithful and sanity stages count every step on every image (upper bounds); the strong attacks
    skip broken images, so their steps are counted on the robust fraction (:func:`prior_robustness`) plus a
    fifth of the steps on the rest (the images a restart breaks on its way). ``nfe``: field evaluations of one
    forward pass of an adaptive model (what an Euler pass at step s, 1 / s evaluations, is compared with)."""
    attack, n_test = cfg["attack_images"], 10_000
    noise_n = cfg["noise_images"] or n_test
    n_strong = min(cfg["strong"]["images"] or n_test, n_test)
    costs = {
        "noise": noise_n * (len(sigma_grid(cfg)) + 1) * forward_s,
        "faithful": attack * (len(eps_grid(cfg, "fgsm")) * (grad_s + 2 * forward_s)
                              + len(eps_grid(cfg, "pgd")) * (9 * grad_s + 10 * forward_s)),
    }
    for eps in pgd_table_eps(cfg["dataset"]):
        costs[f"strong {eps}"] = sum(strong_seconds(name, cfg, eps, grad_s, forward_s).values())
    n_sanity = min(cfg["sanity"]["images"], attack)
    ratios = 0.0
    deployed = make_model(name, cfg).deployed_solver()
    if deployed is not None:
        steps = transfer_solvers(deployed, cfg["sanity"]["solver_steps"])

        def relative(s: float | str) -> float:  # one pass through solver s, in passes through the deployed one
            if isinstance(deployed, str):
                return 1.0 if isinstance(s, str) else 1 / (s * max(1.0, nfe or 1.0))
            return deployed / s

        ratios = sum(relative(s) for s in steps) * (9 * grad_s + 10 * forward_s * len(steps))
    costs["sanity"] = n_sanity * (20 * grad_s + ratios)
    if name in cfg["defences"]["randomise"]:
        d = cfg["defences"]
        n = min(d.get("images") or n_strong, attack)
        # the strong PGD with EOT on the randomised model, then once more without the defence (one pass per step)
        costs["randomised"] = (n * len(pgd_table_eps(cfg["dataset"])) * (d["eot"] + 1) * d["steps"] * d["restarts"] * grad_s
                               + n * 4 * 10 * grad_s + noise_n * 2 * forward_s)
    return costs


def probe_price(name: str, cfg: dict, measured: dict) -> dict[str, float] | None:
    """:func:`stage_costs` from a stored probe's per-image figures with ``cfg``'s settings; ``None`` for a probe
    stored before it kept them (the plan then uses the probe's stage estimates as stored)."""
    if "grad_s" not in measured or "forward_s" not in measured:
        return None
    return stage_costs(name, cfg, measured["grad_s"], measured["forward_s"], measured.get("nfe_forward"))


def probe(name: str, cfg: dict) -> dict:
    """Measured here, on random images of the data set's shape: seconds per training epoch (steps of
    ``batch_size`` over the training images, with the steady-state term where the model's spec asks for it, plus
    validation) and upper bounds for the evaluation stages (:func:`stage_costs`)."""
    channels = 1 if cfg["dataset"] == "MNIST" else 3
    side = cfg["image_size"] or {"MNIST": 28, "SVHN": 32, "ImgNet10": cfg.get("size") or 64}[cfg["dataset"]]
    n_train = (cfg["train_size"] or {"MNIST": 60_000, "SVHN": 73_257, "ImgNet10": 13_000}[cfg["dataset"]] - cfg["val_size"])
    torch.manual_seed(0)
    model = make_model(name, cfg)
    x = torch.rand(cfg["batch_size"], channels, side, side)
    y = torch.randint(0, 10, (cfg["batch_size"],))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    regulariser = SteadyStateRegulariser(cfg["steady_weight"], 0) if steady_state(name) else None

    def step() -> None:
        model.train()
        loss = F.cross_entropy(model(x), y)
        if regulariser is not None:
            loss = loss + regulariser(model, x, 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


    step_s = time_steps(step)
    passes = pass_costs(model, (channels, side, side))
    epoch_s = math.ceil(n_train / cfg["batch_size"]) * step_s + 2 * cfg["val_size"] * passes["forward_s"]
    return {"epoch_s": epoch_s, "step_s": step_s, **passes,
            "stages_s": stage_costs(name, cfg, passes["grad_s"], passes["forward_s"], passes["nfe_forward"])}


def pass_costs(model: RobustNet, shape: tuple[int, ...]) -> dict:
    """Measured here, in eval mode on 100 random images of ``shape``: seconds per image of an input gradient
    (``grad_s``) and of a forward pass (``forward_s``), and the field evaluations of one forward pass
    (``nfe_forward``), what :func:`stage_costs` prices the evaluation stages with."""
    model.eval()
    xb = torch.rand(100, *shape, requires_grad=True)
    grad_s = time_steps(lambda: torch.autograd.grad(model(xb).sum(), xb)) / 100
    with torch.no_grad():
        forward_s = time_steps(lambda: model(xb)) / 100
    return {"grad_s": grad_s, "forward_s": forward_s, "nfe_forward": nfe_counts(model)[0]}


CONTROL_PRIORITY = 500  # a data set's controls: after its main units (10 x seed + model index), before the next one's


def planned_runs(profile: str | dict, models: tuple[str, ...] | list[str] | None = None
                 ) -> dict[str, list[tuple[int, str, dict, int]]]:
    """Per data set of the profile, its runs as ``(seed, model, config, priority)`` (see :func:`units`)."""
    section = experiment_config(profile, "robustness")
    control_models, control_seeds, autoattacked = control_plan(profile)
    requested = list(models) if models else [*section.get("models", CHAPTER_MODELS), *control_models]
    for name in requested:
        check_choice("model", name, MODELS)
    main = [m for m in requested if m not in control_models]
    extra = [m for m in requested if m in control_models]
    out = {}
    for d_index, dataset in enumerate(d for d in DATASETS if d in section["datasets"]):
        main_cfg = config(profile, dataset)
        planned = [(seed, name, main_cfg, 1000 * d_index + 10 * seed + m_index)
                   for seed in range(main_cfg["repetitions"]) for m_index, name in enumerate(main)]
        planned += [(seed, name, control_config(main_cfg, name, control_seeds, autoattacked),
                     1000 * d_index + CONTROL_PRIORITY + len(extra) * seed + c_index)
                    for seed in range(control_seeds) for c_index, name in enumerate(extra)]
        out[dataset] = planned
    return out


# The stages Table I's numbers come from (Gaussian noise; Yan et al.'s FGSM and PGD).
TABLE_ONE_STAGES = ("noise", "faithful")


def in_progress(store: Store, dataset: str) -> list[dict]:
    """The runs of ``store``'s profile on ``dataset`` that are trained and whose evaluation has finished Table I's
    stages (:data:`TABLE_ONE_STAGES`) but not yet the rest: run-shaped dicts (``run``, ``seed``, ``params``,
    ``metrics`` with the finished stages, the model file's history, trainer and parameter count; ``provenance``
    with the device kept in the partial file, ``"not recorded"`` for files written before it was) plus
    ``"partial": {"done": [...], "left": [...]}``. ``[]`` for a profile without the data set."""
    try:
        planned = planned_runs(store.profile).get(dataset, [])
    except (KeyError, ValueError):
        return []
    out = []
    experiment = experiment_name(dataset)
    for seed, name, cfg, _ in planned:
        run, params = f"{name}-seed{seed}", run_params(name, cfg)
        partial = store.load_partial(experiment, run, params) if not store.run(experiment, run, params) else {}
        if not all(stage in partial for stage in TABLE_ONE_STAGES):
            continue
        saved = store.load_model(experiment, run, training_params(name, cfg))
        if saved is None:
            continue
        stages = evaluation_stages(name, cfg)
        left, _ = stages_left(partial, stages)
        model = make_model(name, cfg)
        metrics = {"parameters": count_parameters(model), "trainer": saved["trainer"], "history": saved["history"],
                   **merge_stages(partial, stages)}
        out.append({"experiment": experiment, "run": run, "seed": seed, "params": params, "profile": store.profile,
                    "metrics": metrics, "provenance": {"device": partial.get("device", "not recorded")},
                    "partial": {"done": [s for s in stages if s in partial], "left": left}})
    return out


def units(profile: str | dict, device: torch.device | None = None, imagenet_root: str | None = None,
          models: tuple[str, ...] | list[str] | None = None) -> list:
    """The run plan's units of chapters 2-3: one per data set x model x seed, seed-major so that a complete first
    seed of every model comes first. The main models (the section's ``models``) get ``seeds`` seeds; then, on the
    same data set, the section's ``controls.models`` get ``controls.repetitions`` (priorities after every main unit of
    the data set, so the runner finishes the main tables first). ``models`` restricts the units to those names
    (a name listed under ``controls`` keeps the control seeds). A control's run parameters are those of a main
    run of the same model but for the (execution-only) seed count and, outside ``controls.autoattack``, no
    AutoAttack (:func:`~robustode.chapters.robustness.config.control_config`)."""

    imagenet_root = imagenet_root or os.environ.get("ROBUSTODE_IMAGENET")
    out = []
    for dataset, planned in planned_runs(profile, models).items():
        for seed, name, cfg, priority in planned:
            experiment, run = experiment_name(dataset), f"{name}-seed{seed}"
            params, tparams, stages = run_params(name, cfg), training_params(name, cfg), evaluation_stages(name, cfg)

            def status(store: Store, experiment=experiment, run=run, params=params, tparams=tparams, stages=stages,
                       cfg=cfg) -> Progress:
                if store.run(experiment, run, params) is not None:
                    return Progress(DONE, "results file written")
                if store.model_file(experiment, run, tparams).exists():
                    left, detail = stages_left(store.load_partial(experiment, run, params), stages)
                    return Progress(PARTIAL, f"trained; {detail}", 0, left)
                for suffix in (".pt", ".engine.pt"):
                    epoch = checkpoint_epoch(store.checkpoint(experiment, run, tparams, suffix))
                    if epoch is not None:
                        return Progress(PARTIAL, f"epoch {epoch} of {cfg['epochs']}", cfg["epochs"] - epoch, stages)
                return Progress(PENDING, "", cfg["epochs"], stages)

            def spent(store: Store, experiment=experiment, run=run, params=params, tparams=tparams) -> float | None:
                done = stored_seconds(store, experiment, run, params)
                if done is not None:
                    return done
                trained = store.load_model(experiment, run, tparams) or checkpoint_payload(
                    store.checkpoint(experiment, run, tparams))  # the engine's checkpoints keep no plain history
                return recorded_seconds(trained, store.load_partial(experiment, run, params))

            def compute(ctx, name=name, seed=seed, cfg=cfg) -> dict:
                data = lambda: cached_data(ctx, cfg, imagenet_root)  # noqa: E731
                if cfg["concurrent_seeds"] and cfg["checkpoint"] and trainer_for(cfg, ctx.device,
                                                                               make_model(name, cfg)) != "plain":
                    # at a model's first seed to train: every seed without a model file, at once (engine)
                    pending = [s for s in range(cfg["repetitions"]) if ctx.store.load_model(
                        experiment_name(cfg["dataset"]), f"{name}-seed{s}", training_params(name, cfg)) is None]
                    if len(pending) > 1 and seed in pending:
                        train_seeds_together(name, pending, cfg, ctx.store, data(), ctx.device, ctx.progress)
                return compute_run(name, seed, cfg, ctx.store, ctx.device, data, ctx.progress, ctx.deadline,
                                   ctx.epoch_estimate, ctx.stage_estimate, ctx.on_epoch, ctx.first_stages)

            out.append(Unit(
                id=f"robustness/{dataset}/{name}/seed{seed}", experiment=experiment, run=run, params=params, seed=seed,
                epochs=cfg["epochs"], stages=stages, kind=f"robustness/{dataset}/{name}", compute=compute,
                status=status, probe=lambda name=name, cfg=cfg: probe(name, cfg),
                requires=lambda dataset=dataset: missing_reason(dataset, imagenet_root),
                priority=priority,
                spent=spent,
                price=functools.partial(probe_price, name, cfg),
            ))
    return out


def reevaluate(store: Store, dataset: str = "MNIST", images: int = 100, eps: str = "0.3",
               device: str = "cpu") -> list[dict]:
    """Load every trained model ``store`` keeps for ``dataset`` and attack it again with Yan et al.'s FGSM at
    ``eps`` on the first ``images`` attack images: per model and seed, the robust flags now against the per-image
    flags stored when the run was evaluated (a cheap check that the committed models are the ones behind the
    committed numbers). Runs still in their evaluation count once their faithful stage is stored
    (:func:`in_progress`); runs without a model file or without stored flags are left out."""
    dev = resolve_device(device)
    rows, data = [], None
    runs = store.runs(experiment_name(dataset)) + in_progress(store, dataset)
    for run in sorted(runs, key=lambda r: (r["params"]["model"], r["seed"])):
        stored = run["metrics"].get("faithful_flags", {}).get("fgsm", {}).get(eps)
        cfg, name, seed = run["params"], run["params"]["model"], run["seed"]
        saved = store.load_model(experiment_name(dataset), run["run"], training_params(name, cfg))
        if stored is None or saved is None:
            continue
        if data is None:
            data = load_data(cfg, dev)
        model = make_model(name, cfg)
        model.load_state_dict(saved["model"])
        model.to(dev).eval()
        xa, ya = attack_set(data, cfg)
        now = attacks.fgsm(model, xa[:images], ya[:images], eps_value(eps)).robust.cpu().tolist()
        before = unpack_flags(stored)[:images]
        rows.append({"model": name, "seed": seed, "images": images, f"FGSM-{eps} stored": f"{100 * sum(before) / images:.0f} %",
                     f"FGSM-{eps} now": f"{100 * sum(now) / images:.0f} %",
                     "images that differ": sum(a != b for a, b in zip(now, before, strict=True))})
    return rows


def field_profiles_now(store: Store, dataset: str = "MNIST", device: str = "cpu") -> dict[str, dict]:
    """Per ODE model the profile plans on ``dataset``, seed 0: the mean |f(z(t))| profile its sanity stage stored
    (:func:`robustode.core.evaluation.field_profile`), or, while its evaluation has not reached that stage, the same
    profile computed now from its committed model file on the same images (the first ``sanity.images`` attack
    images). Each profile says which (``"source"``). Models not trained yet are left out; ``{}`` for a profile
    without ``dataset`` or without its data here."""
    try:
        planned = [(name, cfg) for seed, name, cfg, _ in planned_runs(store.profile).get(dataset, []) if seed == 0]
    except (KeyError, ValueError):
        return {}
    experiment, dev = experiment_name(dataset), resolve_device(device)
    out, data = {}, None
    for name, cfg in planned:
        stored = store.run(experiment, f"{name}-seed0", run_params(name, cfg))
        if stored is not None and "field_profile" in stored["metrics"]:
            out[name] = {**stored["metrics"]["field_profile"], "source": "stored by the sanity stage"}
            continue
        saved = store.load_model(experiment, f"{name}-seed0", training_params(name, cfg))
        model = make_model(name, cfg)
        if saved is None or not model.ode_blocks() or missing_reason(dataset):
            continue
        if data is None:
            data = load_data(cfg, dev)
        model.load_state_dict(saved["model"])
        model.to(dev).eval()
        xa, _ = attack_set(data, cfg)
        n = min(cfg["sanity"]["images"], len(xa))
        out[name] = {**field_profile(model, xa[:n]), "source": f"computed now from the committed model ({n} images)"}
    return out
