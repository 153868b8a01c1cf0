import json
import math

import pytest

from robustode.results import fmt_mean_sd, load_run, mean_sd, write_result
from robustode.store import Store
from robustode.units import run_once


def test_mean_sd_uses_the_sample_standard_deviation():
    mean, sd, n = mean_sd([1.0, 2.0, 3.0])
    assert (mean, n) == (2.0, 3)
    assert sd == pytest.approx(1.0)  # ddof=1; the population sd would be 0.816


def test_mean_sd_of_one_value_has_no_spread():
    assert math.isnan(mean_sd([4.0])[1])
    assert fmt_mean_sd([]) == "not run"


def test_results_file_carries_provenance(results_tmp):
    path = write_result(results_tmp, "exp", "run-seed0", profile="quick", params={"a": 1}, seed=0,
                        started="2026-01-01T00:00:00+00:00", device="cpu", metrics={"acc": 0.5})
    data = json.loads(path.read_text())
    assert data["metrics"] == {"acc": 0.5}
    assert set(data["provenance"]) >= {"git_commit", "versions", "device", "python"}
    assert data["provenance"]["versions"]["torch"]
    assert not list(path.parent.glob(".*.tmp"))


def test_a_stored_run_is_reused_only_with_identical_parameters(results_tmp):
    calls = []

    def compute():
        calls.append(1)
        return {"value": len(calls)}

    kw = dict(seed=0, device="cpu", resume=True, compute=compute)
    store = Store("full", results_tmp)
    first = run_once(store, "exp", "r", params={"epochs": 3}, **kw)
    again = run_once(store, "exp", "r", params={"epochs": 3}, **kw)
    changed = run_once(store, "exp", "r", params={"epochs": 4}, **kw)
    assert first["metrics"] == again["metrics"] == {"value": 1}
    assert changed["metrics"] == {"value": 2}
    assert load_run(results_tmp, "exp", "r", {"epochs": 3}) is None


def test_a_copy_without_git_cites_the_commit_it_was_given(results_tmp, monkeypatch):
    from robustode.results import git_commit

    monkeypatch.delenv("ROBUSTODE_GIT_COMMIT", raising=False)
    assert git_commit() is None  # results_tmp is no git checkout
    monkeypatch.setenv("ROBUSTODE_GIT_COMMIT", "abc123-dirty")
    assert git_commit() == "abc123-dirty"


def test_config_key_ignores_execution_only_settings_and_follows_the_others():
    from robustode.results import EXECUTION_ONLY, config_key

    params = {"width": 64, "epochs": 100, "lr": 1e-3, "trainer": "auto", "concurrent_seeds": True, "cpu_threads": None,
              "checkpoint": True, "resume": True}
    key = config_key(params)
    switched = {"trainer": "plain", "concurrent_seeds": False, "cpu_threads": 2, "checkpoint": False, "resume": False}
    assert set(switched) <= EXECUTION_ONLY
    for name, value in switched.items():
        assert config_key({**params, name: value}) == key, name  # how a run is executed: same stored run
    assert config_key({**params, **switched}) == key
    for name, value in {"width": 32, "epochs": 99, "lr": 2e-3}.items():
        assert config_key({**params, name: value}) != key, name  # what it computes: another run
    assert config_key({**params, "new_setting": 1}) != key
