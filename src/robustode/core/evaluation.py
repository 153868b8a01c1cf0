"""Robustness evaluation: clean and noisy accuracy, the attack image set, batched attacks, sanity checks.

The attack images follow Yan et al.'s code (``HanshuYAN/TisODE``, ``ad_attack/adversarial_attack_method.py``):
``np.random.seed(1216); idx = np.random.choice(10000, 1025, replace=False)[25:]`` over the test set
in its standard order. A smaller evaluation takes the first ``n`` of those 1,000 (still a random
subset). The sanity checks are the ones a trustworthy robustness evaluation should pass
(Athalye et al., 2018; Carlini et al., 2019; Croce & Hein, 2020).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from robustode.core.attacks import AttackResult
from robustode.core.noise import gaussian_noise

ATTACK_SEED, ATTACK_SKIP = 1216, 25


def attack_indices(num_test: int = 10_000, count: int = 1000) -> np.ndarray:
    """Yan et al.'s 1,000 attack images: seed 1216, draw 1,025 without replacement, drop the first 25.

    When the test set is too small for that (ImgNet10's validation split), every test image is used.
    """
    if count <= 0:
        raise ValueError(f"count must be positive, got {count}")
    if num_test < count + ATTACK_SKIP:
        return np.arange(num_test)
    return np.random.RandomState(ATTACK_SEED).choice(num_test, count + ATTACK_SKIP, replace=False)[ATTACK_SKIP:]


def predictions(model: Callable, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def accuracy(model: Callable, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    return (predictions(model, x, batch_size) == y).float().mean().item()


def noise_accuracy(model: Callable, x: torch.Tensor, y: torch.Tensor, sigma: float, seed: int = 0,
                   batch_size: int = 1000) -> float:
    """Accuracy on clamp(x + N(0, (sigma/255)^2)), one seeded draw over all of ``x`` (Table I's sigma rows)."""
    gen = torch.Generator(device=x.device).manual_seed(seed)
    return accuracy(model, gaussian_noise(x, sigma, gen), y, batch_size)


def batched_attack(attack: Callable[[torch.Tensor, torch.Tensor], AttackResult], x: torch.Tensor, y: torch.Tensor,
                   batch_size: int = 500) -> torch.Tensor:
    """Per-image robust flags of ``attack`` run on chunks of ``batch_size`` images (bounds memory)."""
    return torch.cat([attack(x[i : i + batch_size], y[i : i + batch_size]).robust for i in range(0, len(x), batch_size)])


def robust_accuracy(robust: torch.Tensor | list[bool], clean_correct: torch.Tensor | list[bool] | None = None) -> float:
    """Fraction of robust images; with ``clean_correct``, among the correctly classified ones only
    (Yan et al.'s ImgNet10 figures are this conditional robustness)."""
    robust = torch.as_tensor(robust, dtype=torch.bool)
    if clean_correct is None:
        return robust.float().mean().item()
    keep = torch.as_tensor(clean_correct, dtype=torch.bool)
    return (robust & keep).sum().item() / max(1, keep.sum().item())


def field_profile(model, x: torch.Tensor, t_max: float = 2.0, points: int = 21) -> dict:
    """Mean |f(z(t))| along the trajectories of ``x`` through the model's ODE block, t in [0, t_max].

    A steady state means |f| -> 0 after T; TisODE's regulariser penalises its integral over [0.9, 1.5].
    The block's own Euler step is used beyond T as well (a time-dependent field is evaluated at t > T).
    """
    block = model.ode_blocks()[0]
    times = torch.linspace(0.0, t_max, points, device=x.device)
    with torch.no_grad():
        h0 = model.middle_input(x)
        states = block.trajectory(h0, times)
        mean_abs = [block.field(t, z).abs().mean().item() for t, z in zip(times, states, strict=True)]
    return {"t": times.tolist(), "mean_abs_f": mean_abs}


def check(name: str, ok: bool, detail: str) -> dict:
    return {"check": name, "ok": bool(ok), "detail": detail}


def sanity_checks(metrics: dict, tolerance: float = 0.0) -> list[dict]:
    """The checks every model's evaluation must pass, from its stored metrics (accuracies in [0, 1]).

    1. eps = 1 (the whole image box): the strong attack must reach 0 %.
    2. Faithful PGD-eps <= FGSM-eps at every eps evaluated with both.
    3. More PGD steps, and more restarts, never raise the strong PGD accuracy.
    4. AutoAttack <= strong PGD on the same images.
    5. Solver transfer (ODE models): the white-box attack through the deployed solver must be at least as
       strong as attacks crafted through other Euler step sizes; otherwise the solver masks gradients.

    Checks 1 and "more restarts" are guaranteed by construction (restarts accumulate; eps = 1 admits any image)
    and are exact. The others compare *different* attacks, none of which contains the other (PGD's step is
    eps/5, FGSM's eps; runs with more steps take smaller steps): they are heuristics, so a gap of one image
    is allowed there (and said in the detail). ``tolerance`` (accuracy, e.g. 0.01) adds to every check.
    """
    out = []
    s = metrics.get("sanity", {})

    def slack(images: int) -> float:
        # one image, plus half an image so that accuracies stored as float32 (124 / 500 = 0.24799999594...) still
        # compare as the counts they are: accuracies are multiples of 1 / images, so two images never pass
        return tolerance + 1.5 / max(1, images)

    if "eps_one" in s:
        acc = s["eps_one"]["strong"]
        out.append(check("eps = 1 gives 0 %", acc <= tolerance,
                         f"strong PGD {100 * acc:.1f} %, faithful PGD {100 * s['eps_one']['faithful']:.1f} %"))
    fgsm, pgd = metrics["faithful"]["fgsm"], metrics["faithful"]["pgd"]
    n_attack = metrics.get("attack_images", 0)
    for eps in sorted(set(fgsm) & set(pgd), key=float):
        ok = pgd[eps] <= fgsm[eps] + slack(n_attack)
        out.append(check(f"PGD <= FGSM at eps {eps}", ok, f"PGD {100 * pgd[eps]:.1f} % vs FGSM {100 * fgsm[eps]:.1f} %; "
                         "a heuristic, one image of slack"))
    for eps, strong in metrics.get("strong", {}).items():
        by_steps = strong["by_steps"]
        steps = sorted(by_steps, key=int)
        accs = [by_steps[k] for k in steps]
        ok = all(b <= a + slack(strong["images"]) for a, b in zip(accs, accs[1:], strict=False))
        out.append(check(f"more PGD steps never help (eps {eps})", ok,
                         ", ".join(f"{k} steps {100 * a:.1f} %" for k, a in zip(steps, accs, strict=True))
                         + "; a heuristic, one image of slack"))
        restarts = strong["by_restarts"]
        ok = all(b <= a + tolerance for a, b in zip(restarts, restarts[1:], strict=False))
        out.append(check(f"more restarts never help (eps {eps})", ok,
                         ", ".join(f"{i + 1}: {100 * a:.1f} %" for i, a in enumerate(restarts))))
        if "autoattack" in strong:
            aa, ref = strong["autoattack"]["accuracy"], strong["autoattack"]["pgd_same_images"]
            out.append(check(f"AutoAttack <= PGD (eps {eps})", aa <= ref + slack(strong["autoattack"]["images"]),
                             f"AutoAttack {100 * aa:.1f} % vs strong PGD {100 * ref:.1f} % on the same "
                             f"{strong['autoattack']['images']} images ({strong['autoattack']['config']})"))
    if "solver_transfer" in s:
        st = s["solver_transfer"]
        own = st["deployed_step"]
        white = st["accuracy"][str(own)][str(own)]
        others = {c: row[str(own)] for c, row in st["accuracy"].items() if c != str(own)}
        ok = all(white <= acc + slack(st["images"]) for acc in others.values())
        detail = f"white-box at step {own}: {100 * white:.1f} %; crafted at " + ", ".join(
            f"step {c}: {100 * a:.1f} %" for c, a in others.items())
        out.append(check(f"no gradient masking by the solver ({st['attack']})", ok, detail))
    return out
