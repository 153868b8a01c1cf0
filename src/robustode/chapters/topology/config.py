"""Chapter 1 configuration: the profile's topology sections (flip, intervals, spheres) checked once.
"""

from __future__ import annotations

from robustode.profiles import Settings, check_positive, experiment_config


def model_names(augment_dims: list[int]) -> list[str]:
    return ["ResNet"] + ["NODE" if p == 0 else f"ANODE-p{p}" for p in augment_dims]


def augment_dim_of(name: str) -> int:
    return 0 if name == "NODE" else int(name.removeprefix("ANODE-p"))


def _config(profile: str | dict, part: str) -> Settings:
    base = experiment_config(profile, "topology")
    cfg = {**base["common"], **base[part]}
    check_positive(**{k: v for k, v in cfg.items() if k in ("hidden", "epochs", "batch_size", "lr", "repetitions")})
    return Settings(cfg)


def _profile_name(profile: str | dict) -> str:
    return profile if isinstance(profile, str) else profile["name"]
