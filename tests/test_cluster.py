"""The run plan fanned out with submitit (robustode.cluster): no cluster here, so submitit's local executor
(processes on this machine), its debug executor (in this process) and a stand-in for SLURM's commands."""

import importlib.util
import json
import os
import signal
import socket
import stat
import sys
import threading
import time
from pathlib import Path

import pytest

from robustode import cluster, plan
from robustode.cli import main
from robustode.data.images import is_available
from robustode.paths import data_dir
from robustode.store import RunLocked, Store
from test_plan import FakeClock, stub_unit
from test_robustness import tiny_profile

needs_submitit = pytest.mark.skipif(importlib.util.find_spec("submitit") is None,
                                    reason="submitit not installed: pip install 'robustode[cluster]'")
needs_mnist = pytest.mark.skipif(not is_available("MNIST"), reason="MNIST not in data/ (.ci/run copies it)")
MNIST_UNITS = ["robustness/MNIST/CNN/seed0", "robustness/MNIST/ODENet/seed0", "robustness/MNIST/TisODE/seed0",
               "robustness/MNIST/TisODE+denoise/seed0"]


# ---------------------------------------------------------------------------------------------- helpers

@pytest.fixture
def stubbed(monkeypatch, tmp_path):
    """Three stub units (b fails) in place of a profile's; only jobs in this process (debug) see them."""
    clock, log = FakeClock(), []
    units = [stub_unit("a", 2, 1.0, clock, log), stub_unit("b", 1, 1.0, clock, log), stub_unit("c", 1, 1.0, clock, log)]

    def boom(ctx):
        raise RuntimeError("b cannot be computed")

    units[1].compute = boom
    monkeypatch.setattr(plan, "units", lambda profile, device="auto": units)
    return Store("stubbed", tmp_path / "results"), units


def tiny(models=("CNN", "ODENet", "TisODE", "TisODE+denoise"), **common) -> dict:
    """The robustness chapter's tiny profile (named quick) on MNIST only, with ``models``."""
    prof = tiny_profile()
    prof = {k: v for k, v in prof.items() if k in ("name", "tier", "robustness")}
    prof["robustness"]["models"] = list(models)
    prof["robustness"]["datasets"] = {"MNIST": prof["robustness"]["datasets"]["MNIST"]}
    prof["robustness"]["common"].update(common)
    # chapter 3's read-outs wait for their models' training: a later fan-out submits them (the serial runner's
    # extra pass is tested in test_readout); here the fan-out is compared with the serial runner on the same units
    prof["robustness"].pop("readout", None)
    return prof


def comparable(value):
    """A results file's metrics without the wall times (every ``seconds`` entry)."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def metrics_under(root: Path) -> dict[str, dict]:
    return {p.name: comparable(json.loads(p.read_text())["metrics"])
            for p in sorted((root / "results" / "quick" / "robustness-MNIST").glob("*.json"))}


def quiet(lines: list) -> callable:
    return lines.append


# ---------------------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("argv, message", [
    (["--executor", "local", "--max-parallel", "0"], "--max-parallel must be positive, got 0"),
    (["--executor", "local", "--threads", "0"], "--threads must be at least 1"),
    (["--executor", "local", "--gpus-per-job", "-1"], "--gpus-per-job must be zero or more, got -1"),
    (["--executor", "local", "--max-requeues", "-2"], "--max-requeues must be zero or more"),
    (["--executor", "slurm", "--time-per-job", "0m"], "--time-per-job must look like 2h"),
    (["--executor", "local", "--time-per-job", "30s"], "--time-per-job must be at least one minute"),
    (["--executor", "local", "--partition", "gpu"], "--partition applies to --executor slurm only"),
    (["--executor", "local", "--slurm-option", "account=x"], "--slurm-option applies to --executor slurm only"),
    (["--executor", "slurm", "--slurm-option", "account"], "--slurm-option takes KEY=VALUE"),
    (["--max-parallel", "2"], "need --executor"),
    (["--executor", "local", "--budget", "1h"], "--budget is for the runner here"),
    (["--executor", "local", "--only", "no-such-unit"], "no unit matches 'no-such-unit'"),
    (["--executor", "slurm"], "--executor slurm needs SLURM's sbatch, srun, sacct on the PATH"),
    (["--executor", "local", "--no-wait"], "--no-wait needs --executor slurm"),
    pytest.param(["--executor", "local", "--gpus-per-job", "1"], "this machine has 0", marks=needs_submitit),
])
def test_bad_input_is_one_clear_error_before_anything_is_submitted(argv, message, capsys, results_tmp, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no SLURM commands
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU, whatever this machine has
    assert main(["run", "--profile", "quick", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err, err
    assert not (results_tmp / "results" / "quick" / "jobs").exists()


def test_an_unknown_executor_is_refused_by_the_parser_and_by_the_api(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["run", "--profile", "quick", "--executor", "pbs"])
    assert stop.value.code == 2 and "invalid choice: 'pbs'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown executor 'pbs'; choose one of: slurm, local, debug"):
        cluster.fan_out("quick", cluster.Options("pbs"))


def test_without_submitit_the_error_says_how_to_install_it(capsys, results_tmp, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit now fails as if it were not installed
    assert main(["run", "--profile", "quick", "--executor", "local"]) == 2
    err = capsys.readouterr().err
    assert "needs the optional package submitit: pip install 'robustode[cluster]'" in err and "Traceback" not in err
    assert not (results_tmp / "results" / "quick" / "jobs").exists()


# ---------------------------------------------------------------------------------------------- locks

def test_a_lock_from_another_host_holds_unless_it_is_this_same_job_requeued(tmp_path):
    lock = tmp_path / "locks" / "e" / "r.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text("1 some-other-node slurm:77_3")  # pid 1 is alive here too, but it is another machine's
    with pytest.raises(RunLocked, match=r"process 1 on some-other-node \(job slurm:77_3\); if it is gone, delete"):
        with Store("x", tmp_path, owner="slurm:78_0").lock("e", "r"):
            pass
    with Store("x", tmp_path, owner="slurm:77_3").lock("e", "r"):  # the same job after a requeue: its own lock
        assert lock.read_text().split() == [str(os.getpid()), socket.gethostname(), "slurm:77_3"]
    assert not lock.exists()


@needs_submitit
def test_a_second_job_for_a_unit_is_refused_while_the_first_holds_it(stubbed):
    store, units = stubbed
    with Store(store.profile, store.root, owner="local:1").lock("stub", "a"):  # a live job on this host holds a
        out = cluster.fan_out("stubbed", cluster.Options("debug"), only=["stub/a"], store=store, progress=False,
                              log=quiet([]))
    assert out.done == [] and out.skipped[0][0] == "stub/a" and "stub/a is being computed by process" in out.skipped[0][1]
    assert cluster.read_records(store)["stub/a"]["state"] == "locked"
    assert store.run("stub", "a") is None


# ---------------------------------------------------------------------------------------------- debug executor

@needs_submitit
def test_debug_jobs_finish_the_units_report_the_failing_one_and_plan_shows_the_jobs(stubbed, capsys):
    store, units = stubbed
    lines: list[str] = []
    out = cluster.fan_out("stubbed", cluster.Options("debug"), store=store, progress=False, log=lines.append)
    assert out.done == ["stub/a", "stub/c"] and [f.unit for f in out.failed] == ["stub/b"]
    assert out.failed[0].error == "RuntimeError: b cannot be computed" and out.remaining == 1
    assert store.run("stub", "a") is not None and store.run("stub", "c") is not None
    assert cluster.report(out, "stubbed") == 1
    err = capsys.readouterr().err
    assert "failed: stub/b (job DEBUG_" in err and "error: 1 unit(s) failed: stub/b" in err
    rows = {r["unit"]: r for r in cluster.with_jobs(plan.plan_rows("stubbed", store=store, device="cpu"), store)}
    assert rows["stub/a"]["job"] == out.submitted["stub/a"] and rows["stub/a"]["job state"] == "done"
    assert rows["stub/b"]["job state"] == "failed" and rows["stub/b"]["state"] == plan.PENDING
    # again: the finished units are not submitted a second time, only the failed one
    units[1].compute = lambda ctx: {"epochs": 1}
    again = cluster.fan_out("stubbed", cluster.Options("debug"), store=store, progress=False, log=lines.append)
    assert list(again.submitted) == ["stub/b"] and again.done == ["stub/b"] and again.all_done


def test_plan_without_any_job_keeps_its_columns(stubbed):
    store, _ = stubbed
    rows = cluster.with_jobs(plan.plan_rows("stubbed", store=store, device="cpu"), store)
    assert "job" not in rows[0]


@needs_submitit
def test_robustode_plan_shows_the_job_id_and_state_of_each_submitted_unit(stubbed, results_tmp, capsys):
    cluster.fan_out("quick", cluster.Options("debug"), only=["stub/a", "stub/b"], progress=False, log=quiet([]))
    capsys.readouterr()
    assert main(["plan", "--profile", "quick"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| order | unit | state | detail | spent | CPU left | GPU left | job | job state |"
    rows = {line.split(" | ")[1]: line.split(" | ")[-2:] for line in lines[2:5]}
    assert rows["stub/a"][0].startswith("DEBUG_") and rows["stub/a"][1] == "done |"
    assert rows["stub/b"][1] == "failed |" and rows["stub/c"] == ["—", "— |"]


# ---------------------------------------------------------------------------------------------- SLURM, stood in for

FAKE_SBATCH = """#!/bin/sh
n=$(ls "{spool}" | wc -l)
cp "$1" "{spool}/sbatch-$n.sh"
echo "Submitted batch job 4242"
"""
FAKE_SACCT = """#!/bin/sh
printf 'JobID|State|NodeList\\n4242_0|RUNNING|node7\\n4242_1|PENDING|None assigned\\n4242_2|PENDING|None assigned\\n'
"""


@needs_submitit
def test_slurm_gets_one_requeueable_job_array_with_the_asked_resources(stubbed, tmp_path, monkeypatch):
    store, _ = stubbed
    bin_dir, spool = tmp_path / "bin", tmp_path / "spool"
    bin_dir.mkdir()
    spool.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH.format(spool=spool)), ("sacct", FAKE_SACCT), ("srun", "#!/bin/sh\n"),
                       ("scancel", "#!/bin/sh\n")):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod((bin_dir / name).stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    options = cluster.Options("slurm", partition="gpu", max_parallel=2, time_per_job=7200.0,
                              slurm_options=(("account", "proj1"),))
    out = cluster.fan_out("stubbed", options, store=store, progress=False, log=quiet([]), wait=False)
    assert out.submitted == {"stub/a": "4242_0", "stub/b": "4242_1", "stub/c": "4242_2"} and not out.waited
    script = (spool / "sbatch-0.sh").read_text()
    for line in ("--partition=gpu", "--array=0-2%2", "--gpus-per-node=1", "--time=120", "--signal=USR2@90",
                 "--requeue", "--account=proj1", "--job-name=robustode-stubbed", "--open-mode=append"):
        assert f"#SBATCH {line}\n" in script, line
    assert len(list(spool.iterdir())) == 1  # one sbatch call for the three units
    record = cluster.read_records(store)["stub/a"]
    assert record["stderr"].endswith("4242_0/4242_0_0_log.err") and record["executor"] == "slurm"
    rows = {r["unit"]: r for r in cluster.with_jobs(plan.plan_rows("stubbed", store=store, device="cpu"), store)}
    assert (rows["stub/a"]["job"], rows["stub/a"]["job state"]) == ("4242_0", "running")
    assert rows["stub/b"]["job state"] == "pending"
    # submitted again while they run: nothing new is submitted
    again = cluster.fan_out("stubbed", options, store=store, progress=False, log=quiet([]), wait=False)
    assert not again.submitted and [u for u, _ in again.skipped] == ["stub/a", "stub/b", "stub/c"]
    assert again.skipped[0][1].startswith("already submitted as job 4242_0 (running); if it is gone, delete ")
    assert len(list(spool.iterdir())) == 1


@pytest.mark.parametrize("state, active", [("running", True), ("pending", True), ("unknown", True),
                                           ("submitted (scheduler not reachable)", True), ("requeued", True),
                                           ("completed", False), ("cancelled by 1234", False), ("timeout", False),
                                           ("failed", False), ("ended without a result", False), ("done", False)])
def test_only_a_job_known_to_have_ended_lets_its_unit_be_submitted_again(state, active):
    assert cluster.still_active(state) is active


@needs_submitit
def test_an_invalid_slurm_option_fails_before_anything_is_submitted(stubbed, tmp_path, monkeypatch):
    store, _ = stubbed
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("sbatch", "sacct", "srun"):
        (bin_dir / name).write_text("#!/bin/sh\nexit 1\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    with pytest.raises(ValueError, match="--slurm-option: Unavailable parameter"):
        cluster.fan_out("stubbed", cluster.Options("slurm", slurm_options=(("acount", "x"),)), store=store,
                        progress=False, log=quiet([]))
    (bin_dir / "sbatch").write_text("#!/bin/sh\necho 'sbatch: error: invalid partition specified: nope' >&2\nexit 1\n")
    with pytest.raises(ValueError, match="sbatch refused the job array, nothing was submitted: .*invalid partition"):
        cluster.fan_out("stubbed", cluster.Options("slurm", partition="nope"), store=store, progress=False,
                        log=quiet([]))
    assert not cluster.read_records(store)


# ---------------------------------------------------------------------------------------------- local executor, real units

@pytest.fixture
def mnist_env(monkeypatch, tmp_path):
    monkeypatch.setenv("ROBUSTODE_DATA", str(data_dir()))  # the real data, isolated results folders
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")

    def root(name: str) -> Path:
        monkeypatch.setenv("ROBUSTODE_ROOT", str(tmp_path / name))
        return tmp_path / name

    return root


@needs_submitit
@needs_mnist
@pytest.mark.slow
def test_two_local_workers_and_the_debug_executor_give_the_serial_results_and_the_notebooks_render_them(mnist_env):
    from robustode.reproduce import reproduce

    prof = tiny()
    serial = mnist_env("serial")
    tic = time.monotonic()
    assert plan.advance(prof, device="cpu", progress=False, threads=1, log=quiet([])).finished == MNIST_UNITS
    serial_s = time.monotonic() - tic

    fanned = mnist_env("fanned")
    store = Store("quick", fanned / "results" / "quick")
    tic = time.monotonic()
    out = cluster.fan_out(prof, cluster.Options("local", max_parallel=2, threads=1, gpus_per_job=0), device="cpu",
                          store=store, progress=False, log=quiet([]))
    fanned_s = time.monotonic() - tic
    print(f"serial {serial_s:.1f} s, two local workers {fanned_s:.1f} s")
    assert sorted(out.done) == sorted(MNIST_UNITS) and not out.failed and out.all_done
    assert len(set(out.submitted.values())) == 4  # one job (process) per unit
    assert metrics_under(fanned) == metrics_under(serial) and len(metrics_under(serial)) == 4
    records = cluster.read_records(store)
    assert all(Path(r["stdout"]).exists() and r["state"] == "done" for r in records.values())
    # the runner then finds nothing to do: reproduce only renders
    assert plan.advance(prof, device="cpu", store=store, progress=False, log=quiet([])).finished == []

    debug = mnist_env("debug")
    out = cluster.fan_out(prof, cluster.Options("debug", threads=1), device="cpu",
                          store=Store("quick", debug / "results" / "quick"), progress=False, log=quiet([]))
    assert sorted(out.done) == sorted(MNIST_UNITS) and metrics_under(debug) == metrics_under(serial)

    # the report notebook renders the fanned-out runs (papermill, no training)
    mnist_env("fanned")
    (fanned / "notebooks").symlink_to(Path(__file__).resolve().parents[1] / "notebooks")
    manifest = json.loads(reproduce("quick", ["06_report"], "cpu").read_text())
    assert [e["status"] for e in manifest["notebooks"]] == ["ok"]
    rendered = (fanned / "results" / "quick" / "notebooks" / "06_report.ipynb").read_text()
    assert "(n = 1, quick, cpu)" in rendered


@needs_submitit
@needs_mnist
@pytest.mark.slow
def test_a_failing_unit_is_named_with_its_log_and_the_others_still_finish(mnist_env, capsys):
    prof = tiny(models=("TisODE+denoise", "CNN"))
    prof["robustness"]["defences"]["denoiser"] = "no-such-denoiser"  # fails when the model is built, in the job
    root = mnist_env("failing")
    store = Store("quick", root / "results" / "quick")
    out = cluster.fan_out(prof, cluster.Options("local", max_parallel=2, threads=1, gpus_per_job=0), device="cpu",
                          store=store, progress=False, log=quiet([]))
    assert out.done == ["robustness/MNIST/CNN/seed0"] and len(out.failed) == 1
    failure = out.failed[0]
    assert failure.unit == "robustness/MNIST/TisODE+denoise/seed0"
    assert failure.error.startswith("ValueError: unknown denoiser 'no-such-denoiser'")
    assert "unknown denoiser" in Path(failure.log).read_text()  # the job's own log has the traceback
    assert cluster.report(out, "quick") == 1
    err = capsys.readouterr().err
    assert f"failed: {failure.unit} (job {failure.job_id})" in err and f"log: {failure.log}" in err
    assert cluster.read_records(store)[failure.unit]["state"] == "failed"


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


@needs_submitit
@needs_mnist
@pytest.mark.slow
def test_a_unit_signalled_mid_way_is_requeued_and_resumes_from_its_last_epoch(mnist_env):
    prof = tiny(models=("CNN",), epochs=4, train_size=512, checkpoint=True, resume=True)
    prof["robustness"]["defences"].update(randomise=[])
    root = mnist_env("requeue")
    store = Store("quick", root / "results" / "quick")
    checkpoints = store.root / "checkpoints" / "robustness-MNIST"
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(out=cluster.fan_out(
        prof, cluster.Options("local", threads=1, gpus_per_job=0), device="cpu", store=store, progress=False,
        log=quiet([]), sleep=lambda s: time.sleep(0.05))))
    worker.start()
    deadline = time.monotonic() + 300
    while not list(checkpoints.glob("CNN-seed0-*.pt")) and time.monotonic() < deadline:
        time.sleep(0.02)
    found = list(checkpoints.glob("CNN-seed0-*.pt"))
    assert found, "the job wrote no checkpoint"
    before = __import__("torch").load(found[0], weights_only=True)["history"]["epochs"]
    job_id = int(cluster.read_records(store)["robustness/MNIST/CNN/seed0"]["job_id"])
    tasks = _children(job_id)
    assert len(tasks) == 1
    os.kill(tasks[0], signal.SIGUSR2)  # what SLURM sends before a preemption or the time limit
    worker.join(600)
    out = result["out"]
    assert out.done == ["robustness/MNIST/CNN/seed0"] and list(out.submitted.values()) == [str(job_id)]
    record = cluster.read_records(store)["robustness/MNIST/CNN/seed0"]
    log = Path(record["stdout"]).read_text()
    assert "preempted or at the time limit; requeued" in log
    assert log.count("robustness/MNIST/CNN/seed0 on ") == 2 and "partial (epoch" in log  # started twice, resumed
    epochs = json.loads((store.root / "robustness-MNIST" / "CNN-seed0.json").read_text())["metrics"]["history"]["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4]
    assert epochs[: len(before)] == before and len(before) >= 1  # the epochs before the signal were not trained again
    assert not list(checkpoints.glob("*.pt"))


def test_a_unit_done_elsewhere_is_not_listed_as_blocked_here(stubbed):
    """The authors' units need their checkpoints to run, but once their results are committed a machine without the
    checkpoints must count them done, not 'not submitted: blocked'."""
    store, units = stubbed
    units[0].requires = units[2].requires = lambda: "checkpoints not given"
    store.write("stub", "a", params={"epochs": 2}, seed=0, started="2026-01-01T00:00:00+00:00", device="cpu",
                metrics={"epochs": 2})
    units[1].compute = lambda ctx: {"epochs": 1}
    out = cluster.fan_out("stubbed", cluster.Options("debug"), store=store, progress=False, log=quiet([]))
    assert [uid for uid, _ in out.skipped] == ["stub/c"] and out.done == ["stub/b"]
