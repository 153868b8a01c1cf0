"""Chapters 2-3 prose computed from the results files: the profile banner and the findings sentences.
"""

from __future__ import annotations

from pathlib import Path

from robustode.chapters.robustness.config import TABLE_MODELS, missing_reason, table_one_rows
from robustode.chapters.robustness.tables import _by_model, _runs, failed_checks, table_value
from robustode.reference import reference_values
from robustode.results import mean_sd


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
