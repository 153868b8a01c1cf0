import json
import math

import pytest
import torch

from robustode.results import dumps_results, fmt_mean_sd, load_run, mean_sd, write_result
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


def test_a_results_file_keeps_every_value_and_writes_a_list_of_numbers_on_one_line(results_tmp):
    history = {"epochs": [{"epoch": 1, "loss": 0.25, "failure": None}],
               "iterations": {"loss": [2.3919036388397217, float("inf"), 1e-30], "nfe_forward": [20, 26, 32]}}
    payload = {"metrics": {"history": history, "grid": [[0.5, 0.25], [], ["a]", "{b"]], "empty": {}},
               "tensor": torch.tensor([0.5, 1.5]), 3: True, "names": ["x", None, False]}
    text = dumps_results(payload)
    as_before = json.dumps(payload, indent=1, default=lambda value: value.tolist())  # the earlier format
    assert json.loads(text) == json.loads(as_before)  # every value back, floats to the last bit
    lines = text.splitlines()
    assert '    "loss": [2.3919036388397217, Infinity, 1e-30],' in lines
    assert '   [0.5, 0.25],' in lines and '   ["a]", "{b"]' in lines  # nested lists stay indented, one row a line
    assert ' "tensor": [0.5, 1.5],' in lines
    assert len(text) < len(as_before)
    path = write_result(results_tmp, "exp", "run-seed0", profile="quick", params={}, seed=0,
                        started="2026-01-01T00:00:00+00:00", device="cpu", metrics={"history": history})
    assert json.loads(path.read_text())["metrics"]["history"]["iterations"]["nfe_forward"] == [20, 26, 32]


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


def test_provenance_cites_the_code_a_run_started_with_and_results_files_are_not_code(tmp_path, monkeypatch):
    import shutil
    import subprocess

    from robustode import results

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "checkout"
    (repo / "src").mkdir(parents=True)
    (repo / "results").mkdir()
    (repo / "src" / "code.py").write_text("x = 1\n")
    (repo / "results" / "run.json").write_text("{}\n")

    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                              capture_output=True, text=True).stdout.strip()

    monkeypatch.setattr(results, "_PINNED", {})  # this process's pins stay out of the other tests
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "start")
    monkeypatch.setenv("ROBUSTODE_ROOT", str(repo))
    start = git("rev-parse", "HEAD")
    (repo / "results" / "run.json").write_text('{"written": "by a runner"}\n')
    assert results.git_dirty() is False  # a runner's own results files do not make the code dirty
    assert results.pin_code_state() == (start, False)
    # the checkout moves on while the run goes: new code committed, and a file modified
    (repo / "src" / "code.py").write_text("x = 2\n")
    git("commit", "-qam", "later")
    (repo / "src" / "code.py").write_text("x = 3\n")
    assert results.git_dirty() is True and results.git_commit() != start
    provenance = results.provenance("cpu")
    assert (provenance["git_commit"], provenance["git_dirty"]) == (start, False)
