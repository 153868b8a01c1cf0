"""Chapters 2-3 configuration: the profile's robustness section for one data set, checked once; the eps and sigma
grids Table I needs; which parameters identify a trained model and a run; the controls for the confounds (issue 13)
and the models they control.
"""

from __future__ import annotations

from fractions import Fraction

from robustode.data import imgnet10
from robustode.data.images import DATA_MISSING, data_missing
from robustode.data.images import is_available as torchvision_available
from robustode.models import model_spec
from robustode.models.robust import ARCHITECTURES
from robustode.models.robust import CONTROLS as CONTROLLED
from robustode.profiles import Settings, check_choice, check_positive, experiment_config
from robustode.reference import reference_values

DATASETS = ("MNIST", "SVHN", "ImgNet10")


TRAINERS = ("auto", "plain", "engine")


MAIN_MODELS = (*ARCHITECTURES, *(f"{a}+denoise" for a in ARCHITECTURES))  # the chapter's models and their defences


CONTROLS = tuple(CONTROLLED)  # one change each against the model they control (robustode.models.robust.CONTROLS)


MODELS = (*MAIN_MODELS, *CONTROLS)


TABLE_MODELS = ("CNN", "ODENet", "TisODE")


CHAPTER_MODELS = (*TABLE_MODELS, "TisODE+denoise")  # what chapters 2-3 train; their "not run" rows when data are missing


def config(profile: str | dict, dataset: str = "MNIST") -> Settings:
    """The profile's ``robustness`` settings for one dataset, checked before any work."""
    check_choice("dataset", dataset, DATASETS)
    section = experiment_config(profile, "robustness")
    cfg = {**section["common"], **section["evaluation"], **section["datasets"][dataset],
           "defences": section["defences"], "dataset": dataset}
    check_positive(**{k: cfg[k] for k in ("width", "epochs", "batch_size", "lr", "repetitions", "val_size", "attack_images",
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
    control_plan(profile)
    if not isinstance(cfg["concurrent_seeds"], bool):
        raise ValueError(f"concurrent_seeds must be true or false, got {cfg['concurrent_seeds']!r}")
    return Settings(cfg)


def control_plan(profile: str | dict) -> tuple[list[str], int, list[str]]:
    """The profile's ``robustness.controls`` (``{models: [...], repetitions: k, autoattack: [...]}``): the control
    models trained on every data set of the section after its main models, how many seeds each gets, and which of
    them are also attacked with AutoAttack (:func:`control_config`); ``([], 0, [])`` when absent."""
    entry = experiment_config(profile, "robustness").get("controls")
    if not entry:
        return [], 0, []
    unknown = set(entry) - {"models", "repetitions", "autoattack"}
    if unknown:
        raise ValueError(f"unknown key(s) in robustness.controls: {', '.join(sorted(unknown))}; "
                         "expected models, repetitions, autoattack")
    models, seeds = list(entry.get("models") or []), entry.get("repetitions")
    for name in models:
        check_choice("control model", name, CONTROLS)
    if len(set(models)) != len(models):
        raise ValueError(f"robustness.controls.models lists a model twice: {models}")
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise ValueError(f"robustness.controls.repetitions must be a positive whole number, got {seeds!r}")
    main = experiment_config(profile, "robustness").get("models", [])
    if both := [m for m in models if m in main]:
        raise ValueError(f"model(s) {', '.join(both)} listed both as main models and as controls")
    autoattacked = entry.get("autoattack", models)
    if not isinstance(autoattacked, (list, tuple)):
        raise ValueError(f"robustness.controls.autoattack must be a list of control models, got {autoattacked!r}")
    if stray := [m for m in autoattacked if m not in models]:
        raise ValueError(f"robustness.controls.autoattack names {', '.join(map(str, stray))}, not in controls.models")
    return models, seeds, list(autoattacked)


def control_config(main_cfg: dict, name: str, seeds: int, autoattacked: list[str]) -> dict:
    """A control's run settings: a main run's (``main_cfg``, one data set) with the controls' seed count and, for a
    control not in ``autoattacked`` (:func:`control_plan`), no AutoAttack (``autoattack.images`` 0). Controls answer
    relative questions (is a gain continuity or depth, the steady-state term or the step?), which the faithful
    attacks and the strong PGD settle; standard AutoAttack is ~60 % of an ODE model's strong stage on a CPU (the
    authors' ODENet at eps 0.2: ~4,900 of 8,057 s) and is kept for the controls where masking is the question (the
    adaptive solver). A profile without ``controls.autoattack`` attacks every control with it."""
    cfg = {**main_cfg, "repetitions": seeds}
    if name not in autoattacked:
        cfg["autoattack"] = {**main_cfg["autoattack"], "images": 0}
    return cfg


def base_model(name: str) -> str:
    """The catalog model behind a chapter model name (``TisODE+denoise`` -> ``TisODE``)."""
    check_choice("model", name, MODELS)
    return name.removesuffix("+denoise")


def steady_state(name: str) -> bool:
    """Whether ``name`` is trained with TisODE's steady-state term: a property of its catalog spec
    (:attr:`robustode.models.ModelSpec.steady_state`), not of its name."""
    return model_spec(base_model(name)).steady_state


def controlled(name: str) -> str | None:
    """The model a control controls (``ResNet10-tied`` -> ``ODENet``); ``None`` for the chapter's own models."""
    check_choice("model", name, MODELS)
    return CONTROLLED.get(name)


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


def available(dataset: str, imagenet_root: str | None = None) -> tuple[bool, str]:
    """Whether the dataset is on disk, and if not, why (for "not run: data missing" rows)."""
    check_choice("dataset", dataset, DATASETS)
    if dataset == "ImgNet10":
        missing = imgnet10.missing_folders(imagenet_root)
        where = f"under {imagenet_root}" if imagenet_root else "given: set the ROBUSTODE_IMAGENET environment variable"
        return (not missing, "" if not missing else f"{DATA_MISSING} (no ImageNet class folders {where})")
    ok = torchvision_available(dataset)
    return ok, "" if ok else data_missing(dataset)


def missing_reason(dataset: str, imagenet_root: str | None = None) -> str:
    """``""`` when the dataset is on disk, else why not ("data missing (...)"), for "not run" rows."""
    ok, why = available(dataset, imagenet_root)
    return "" if ok else why


def pgd_table_eps(dataset: str) -> list[str]:
    """The PGD epsilons Table I prints for ``dataset`` (strong attacks run at these)."""
    return [v for _, k, v in table_one_rows(dataset) if k == "pgd"]


TRAINING_KEYS = ("dataset", "width", "image_size", "size", "limit_per_class", "train_size", "val_size", "epochs",
                 "batch_size", "lr", "weight_decay", "milestones", "gamma", "augment_p", "augment_sigmas")


def training_params(name: str, cfg: dict) -> dict:
    """The settings that determine a trained model; its checkpoint and model file are keyed by their hash, so a
    change to the *evaluation* settings re-evaluates the stored model instead of retraining it."""
    params = {"model": name, **{k: cfg[k] for k in TRAINING_KEYS if k in cfg}}
    if steady_state(name):
        params.update(steady_weight=cfg["steady_weight"], steady_start_epoch=cfg["steady_start_epoch"])
    if name.endswith("+denoise"):
        params["denoiser"] = cfg["defences"]["denoiser"]
    return params


def run_params(name: str, cfg: dict) -> dict:
    """Everything a run's results file depends on (its reuse is keyed by their hash)."""
    return {**cfg, "model": name}


def experiment_name(dataset: str) -> str:
    return f"robustness-{dataset}"
