"""The benchmark scripts run end to end (tiny sizes on CPU) and print the rows they promise."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from robustode.chapters import robustness
from robustode.paths import data_dir

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ROBUSTODE_DATA": str(data_dir())}
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True,
                          env=env, timeout=600)


@pytest.mark.slow
def test_epoch_time_prints_plain_engine_and_together_times_with_ratios():
    out = _run("epoch_time.py", "--device", "cpu", "--batches", "1", "--models", "CNN", "--together", "2")
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if line.startswith("CNN"))
    assert len(re.findall(r"\d+\.\d+x", row)) == 2


def test_epoch_time_refuses_bad_arguments_before_any_work():
    out = _run("epoch_time.py", "--batches", "0")
    assert out.returncode == 2 and "--batches must be positive" in out.stderr


@pytest.mark.slow
@pytest.mark.skipif(not robustness.config.available("MNIST")[0], reason="MNIST not in data/")
def test_engine_accuracy_compares_both_paths_over_seeds():
    out = _run("engine_accuracy.py", "--device", "cpu", "--train-size", "256", "--width", "4", "--epochs", "1",
               "--seeds", "2", "--model", "CNN")
    assert out.returncode == 0, out.stderr
    assert re.search(r"^plain .* ± .* ± ", out.stdout, re.M) and re.search(r"^engine .* ± .* ± ", out.stdout, re.M)
    assert re.search(r"clean: engine - plain = [+-]\d+\.\d\d points, (within|outside)", out.stdout)


def _epoch_time_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("epoch_time", ROOT / "benchmarks" / "epoch_time.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_engine_timing_builds_its_runs_once_and_times_a_synchronised_epoch_after_capture(monkeypatch):
    import torch

    from robustode.core import engine

    bench = _epoch_time_module()
    built, synced = [], []
    real_init = engine.EngineRun.__init__

    def counting_init(self, *args, **kwargs):
        built.append(self)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(engine.EngineRun, "__init__", counting_init)
    monkeypatch.setattr(engine, "synchronize", lambda device: synced.append(device))
    monkeypatch.setattr(bench, "build", lambda arch: __import__("robustode.models.robust", fromlist=["build"]).build(
        arch, width=4))
    x, y = torch.rand(6, 1, 28, 28), torch.randint(0, 10, (6,))
    monkeypatch.setattr(bench, "BATCH", 4)
    seconds = bench.time_together("CNN", x, y, torch.device("cpu"), 2)
    assert len(built) == 2  # one run per model: the timed epoch replays the graphs the first epoch captured
    assert len(synced) == 2  # each epoch (capture, timed) ends with a device synchronisation
    assert seconds > 0


def test_gpu_fill_refuses_bad_arguments_before_any_work():
    out = _run("gpu_fill.py", "--streams", "1")
    assert out.returncode == 2 and "counts of 2 or more" in out.stderr
    out = _run("gpu_fill.py", "--batches", "0")
    assert out.returncode == 2 and "must be positive" in out.stderr


@pytest.mark.slow
def test_gpu_fill_measures_its_configurations_side_by_side_on_the_cpu(tmp_path):
    import json

    out = _run("gpu_fill.py", "--device", "cpu", "--width", "4", "--batches", "2", "--batch-size", "8", "--streams", "2",
               "--processes", "2", "--budget", "300", "--out", str(tmp_path / "fill.json"))
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "fill.json").read_text())
    configs = [r["config"] for r in report["rows"]]
    assert configs == ["eager (no graphs off CUDA) x1", "eager (no graphs off CUDA) x1, channels_last",
                       "x2 in turn (no streams off CUDA)", "processes x2"]
    assert all(r.get("epoch_s_per_model", 0) > 0 for r in report["rows"]), report["rows"]
    assert report["skipped"] == ["cudnn.benchmark: needs CUDA"]
