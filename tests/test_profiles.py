import pytest
import torch

from robustode.profiles import check_positive, experiment_config, load_profile, resolve_device


@pytest.mark.parametrize("name", ["quick", "full"])
def test_both_profiles_load_with_a_topology_section(name):
    prof = load_profile(name)
    assert prof["name"] == name
    assert set(prof["topology"]) >= {"common", "flip", "intervals", "spheres"}


def test_full_profile_follows_dupont_et_al():
    spheres = load_profile("full")["topology"]["spheres"]
    common = load_profile("full")["topology"]["common"]
    assert (spheres["num_inner"], spheres["num_outer"], spheres["batch_size"]) == (500, 1500, 64)
    assert (spheres["epochs"], spheres["repetitions"]) == (30, 10)
    assert (common["hidden"], common["lr"], common["tol"]) == (32, 1e-3, 1e-3)


def test_unknown_profile_lists_the_allowed_ones():
    with pytest.raises(ValueError, match="choose one of: quick, paper-short, full"):
        load_profile("fast")


def test_unknown_experiment_is_rejected():
    with pytest.raises(ValueError, match="unknown experiment"):
        experiment_config("quick", "nope")


def test_non_positive_sizes_are_named_in_one_error():
    with pytest.raises(ValueError, match="epochs=0, batch_size=-1"):
        check_positive(epochs=0, batch_size=-1, hidden=3)


def test_cuda_request_without_cuda_fails_clearly(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="cuda"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_settings_are_read_only_all_the_way_down_and_hash_like_the_profiles_own_values():
    from robustode.chapters.robustness.config import config
    from robustode.profiles import Settings, plain
    from robustode.results import config_key

    cfg = config("paper-short")
    assert isinstance(cfg, Settings) and cfg.width == cfg["width"] == 64 and cfg.strong.restarts == 5
    with pytest.raises(AttributeError, match="read-only"):
        cfg.width = 32
    with pytest.raises(TypeError):
        cfg["width"] = 32  # no item assignment either
    with pytest.raises(TypeError):
        cfg.strong["images"] = 1  # nested sections are read-only too
    assert isinstance(cfg.milestones, tuple)
    params = {**cfg, "model": "CNN"}
    assert config_key(params) == config_key(plain(params))  # the run's identity does not see the freezing
