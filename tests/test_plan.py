"""The run plan: units, the budget, resume after a kill, and bad input refused before any work."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from robustode import plan
from robustode.cli import main
from robustode.core.budget import Deadline, OutOfBudget, parse_duration
from robustode.core.training import TrainSpec, train
from robustode.data.images import is_available
from robustode.paths import data_dir
from robustode.store import RunLocked, Store

needs_mnist = pytest.mark.skipif(not is_available("MNIST"), reason="MNIST not in data/ (.ci/run copies it)")


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def stub_unit(uid: str, epochs: int, epoch_s: float, clock: FakeClock, log: list) -> plan.Unit:
    """A unit whose epochs take ``epoch_s`` seconds on ``clock``; it checks the deadline as real units do."""
    done: dict[str, int] = {"epochs": 0}

    def compute(ctx: plan.Context) -> dict:
        while done["epochs"] < epochs:
            ctx.deadline.check(epoch_s, f"{uid} epoch {done['epochs'] + 1}")
            clock.now += epoch_s
            done["epochs"] += 1
            log.append((uid, done["epochs"], clock.now))
        return {"epochs": done["epochs"]}

    def status(store: Store) -> plan.Progress:
        if store.run("stub", uid) is not None:
            return plan.Progress(plan.DONE)
        left = epochs - done["epochs"]
        return plan.Progress(plan.PARTIAL if done["epochs"] else plan.PENDING, f"epoch {done['epochs']} of {epochs}", left)

    return plan.Unit(id=f"stub/{uid}", experiment="stub", run=uid, params={"epochs": epochs}, seed=0, epochs=epochs,
                     stages=[], kind=f"stub/{uid}", compute=compute, status=status, probe=lambda: {"epoch_s": epoch_s})


@pytest.fixture
def stubbed(monkeypatch, tmp_path):
    clock, log = FakeClock(), []
    units = [stub_unit("a", 3, 10.0, clock, log), stub_unit("b", 2, 50.0, clock, log), stub_unit("c", 1, 5.0, clock, log)]
    monkeypatch.setattr(plan, "units", lambda profile, device="auto": units)
    monkeypatch.setattr(plan, "Deadline", lambda seconds: Deadline(seconds, clock=clock))
    return Store("stubbed", tmp_path / "results"), clock, log


def test_the_runner_never_starts_an_epoch_that_would_overrun_the_budget(stubbed):
    store, clock, log = stubbed
    outcome = plan.advance("stubbed", budget=45.0, store=store, log=lambda text: None)
    # a: 3 x 10 s fits; b's first epoch (50 s) does not fit the 15 s left, so b waits; c (5 s) still fits
    assert outcome.finished == ["stub/a", "stub/c"] and outcome.stopped == ["stub/b"]
    assert clock.now <= 45.0 and plan.exit_status(outcome) == 3
    outcome = plan.advance("stubbed", budget=200.0, store=store, log=lambda text: None)
    assert outcome.finished == ["stub/b"] and plan.exit_status(outcome) == 0
    assert [entry[:2] for entry in log] == [("a", 1), ("a", 2), ("a", 3), ("c", 1), ("b", 1), ("b", 2)]


def staged_unit(uid: str, stages: list[str], stage_s: float, clock: FakeClock, log: list) -> plan.Unit:
    """A unit whose evaluation stages take ``stage_s`` each; it stops after ``ctx.first_stages`` as real ones do."""
    from robustode.core.budget import FirstPassDone

    done: list[str] = []

    def compute(ctx: plan.Context) -> dict:
        for stage in stages:
            if stage in done:
                continue
            if ctx.first_stages and all(s in done for s in ctx.first_stages):
                raise FirstPassDone(f"{uid}: first stages done")
            ctx.deadline.check(stage_s, f"{uid} {stage}")
            clock.now += stage_s
            done.append(stage)
            log.append((uid, stage))
        return {"stages": list(done)}

    def status(store: Store) -> plan.Progress:
        if store.run("staged", uid) is not None:
            return plan.Progress(plan.DONE)
        return plan.Progress(plan.PARTIAL if done else plan.PENDING, "", 0, [s for s in stages if s not in done])

    return plan.Unit(id=f"staged/{uid}", experiment="staged", run=uid, params={}, seed=0, epochs=0, stages=stages,
                     kind=f"staged/{uid}", compute=compute, status=status, probe=lambda: {"epoch_s": 0.0})


def test_a_first_pass_takes_every_unit_to_table_ones_stages_before_any_long_attack(monkeypatch, tmp_path):
    clock, log = FakeClock(), []
    stages = ["noise", "faithful", "strong 0.2", "sanity"]
    units = [staged_unit("x", stages, 10.0, clock, log), staged_unit("y", stages, 10.0, clock, log)]
    monkeypatch.setattr(plan, "units", lambda profile, device="auto": units)
    monkeypatch.setattr(plan, "Deadline", lambda seconds: Deadline(seconds, clock=clock))
    store = Store("staged", tmp_path / "results")
    outcome = plan.advance("staged", budget=55.0, store=store, log=lambda text: None, first_stages=("noise", "faithful"))
    # first pass: x and y up to faithful (40 s); second pass: x's strong stage (10 s); then nothing fits the 5 s left
    assert log == [("x", "noise"), ("x", "faithful"), ("y", "noise"), ("y", "faithful"), ("x", "strong 0.2")]
    assert outcome.stopped == ["staged/x", "staged/y"] and not outcome.finished and plan.exit_status(outcome) == 3
    outcome = plan.advance("staged", budget=100.0, store=store, log=lambda text: None)  # no first pass: plan order
    assert log[5:] == [("x", "sanity"), ("y", "strong 0.2"), ("y", "sanity")]
    assert outcome.finished == ["staged/x", "staged/y"]


def test_the_first_pass_stops_an_evaluation_after_the_asked_stages(monkeypatch):
    from robustode.chapters.robustness.run import evaluate
    from robustode.core.budget import FirstPassDone

    seen = []
    monkeypatch.setattr("robustode.chapters.robustness.run._stage",
                        lambda stage, *args, **kwargs: seen.append(stage) or {})
    monkeypatch.setattr("robustode.chapters.robustness.run.evaluation_stages",
                        lambda name, cfg: ["noise", "faithful", "strong 0.2", "sanity"])
    saved = []
    with pytest.raises(FirstPassDone):
        evaluate(torch.nn.Linear(1, 1), {}, {}, 0, progress=False, save=saved.append, stop_after=("noise", "faithful"))
    assert seen == ["noise", "faithful"] and set(saved[-1]) == {"noise", "faithful", "device"}


def test_plan_rows_say_done_partial_pending_and_estimate_what_is_left(stubbed):
    store, clock, _ = stubbed
    plan.advance("stubbed", budget=25.0, store=store, log=lambda text: None)  # a: 2 of 3 epochs, then c (5 s) fits
    plan.measure(store, plan.units("stubbed"), torch.device("cpu"))
    rows = {r["unit"]: r for r in plan.plan_rows("stubbed", store=store, device="cpu")}
    assert rows["stub/a"]["state"] == plan.PARTIAL and rows["stub/a"]["detail"] == "epoch 2 of 3"
    assert rows["stub/a"]["CPU left"] == "10 s" and rows["stub/b"]["CPU left"] == "2 min"
    assert rows["stub/b"]["GPU left"] == "not measured"
    assert "3 units: 1 done, 1 partial, 1 pending" in plan.plan_summary(list(rows.values()))


def test_a_probe_is_re_priced_with_the_units_own_settings_where_the_unit_can(stubbed):
    # a kind's probe is stored once; its stage figures must follow the unit's settings as they are now
    store, clock, log = stubbed
    stale = {"epoch_s": 10.0, "grad_s": 2.0, "forward_s": 1.0, "stages_s": {"attack": 1000.0}}
    unit = stub_unit("priced", 1, 10.0, clock, log)
    progress = plan.Progress(plan.PENDING, "", 1, ["attack"])
    assert plan.remaining_seconds(unit, progress, {unit.kind: stale}, {}) == pytest.approx(1010.0)
    unit.price = lambda m: {"attack": 30 * m["grad_s"] + 10 * m["forward_s"]} if "grad_s" in m else None
    assert plan.remaining_seconds(unit, progress, {unit.kind: stale}, {}) == pytest.approx(10.0 + 70.0)
    assert plan.remaining_seconds(unit, progress, {}, {}) is None  # never probed stays "not measured"
    # a probe written before it kept the per-image figures is used as stored
    assert plan.probed_stages(unit, {"epoch_s": 10.0, "stages_s": {"attack": 5.0}}) == {"attack": 5.0}
    # times seen on finished units of the kind still come first
    assert plan.remaining_seconds(unit, progress, {unit.kind: stale}, {"stages_s": {"attack": 40.0}}) == pytest.approx(50.0)
    # a pricing bug is not mistaken for an old probe: it surfaces instead of falling back to stale figures
    unit.price = lambda m: {"attack": m["no such figure"]}
    with pytest.raises(KeyError):
        plan.probed_stages(unit, stale)


def test_stage_prices_are_calibrated_by_what_finished_units_took_here(stubbed):
    """A probe prices an attack as if it ran its course; finished units show what it took on this machine."""
    store, clock, log = stubbed
    units = [stub_unit(name, 1, 10.0, clock, log) for name in ("x", "y", "z", "v")]
    for u in units:
        u.stages = ["attack", "check"]
    costs = {u.kind: {"epoch_s": 10.0, "stages_s": {"attack": 1000.0, "check": 10.0}} for u in units}
    for name, attack_s in (("x", 100.0), ("y", 300.0), ("z", 5000.0)):
        store.write("stub", name, params={"epochs": 1}, seed=0, started="t", device="cpu",
                    metrics={"seconds": {"attack": attack_s}})
    from robustode.results import run_path

    # v's file was written with other parameters than the unit has now: not the unit's run, as its status says
    store.write("stub", "v", params={"epochs": 2}, seed=0, started="t", device="cpu", metrics={"seconds": {"attack": 9e4}})
    z = run_path(store.root, "stub", "z")  # as if z had run on a GPU
    z.write_text(z.read_text().replace('"device": "cpu', '"device": "cuda:0 (NVIDIA H200'))
    assert '"cuda:0 (NVIDIA H200' in z.read_text()
    calibration = plan.stage_calibration(store, units, costs, "cpu")
    # x and y ran here: 400 s of 2,000 priced; z's GPU run says nothing about this CPU, v's stale file nothing about
    # v; no unit timed "check"
    assert calibration == pytest.approx({"attack": 0.2})
    pending = stub_unit("w", 1, 10.0, clock, log)
    progress = plan.Progress(plan.PENDING, "", 1, ["attack", "check"])
    cost = {pending.kind: {"epoch_s": 10.0, "stages_s": {"attack": 1000.0, "check": 10.0}}}
    assert plan.remaining_seconds(pending, progress, cost, {}, calibration) == pytest.approx(10.0 + 200.0 + 10.0)
    # its own kind's finished seeds still come first
    seen = {"stages_s": {"attack": 700.0}}
    assert plan.remaining_seconds(pending, progress, cost, seen, calibration) == pytest.approx(10.0 + 700.0 + 10.0)
    rows = [{"state": plan.PENDING, "_cpu_s": 1.0, "_calibration": calibration}]
    assert "attack × 0.20" in plan.plan_summary(rows)


def test_the_robustness_units_price_their_stages_from_their_own_settings():
    units = {u.id: u for u in plan.units("paper-short", torch.device("cpu"))}
    measured = {"epoch_s": 600.0, "grad_s": 0.01, "forward_s": 0.004, "nfe_forward": 0}
    odenet, tied = units["robustness/MNIST/ODENet/seed0"], units["robustness/MNIST/ResNet10-tied/seed0"]
    with_aa, without = odenet.price(measured), tied.price(measured)
    assert odenet.price({"epoch_s": 600.0, "stages_s": {"noise": 1.0}}) is None  # an old probe: used as stored
    assert set(with_aa) >= {"noise", "faithful", "strong 0.2", "strong 0.3"}
    # the same per-image costs and attacks, but the control is not attacked with AutoAttack
    assert without["faithful"] == pytest.approx(with_aa["faithful"])
    assert without["strong 0.2"] < 0.6 * with_aa["strong 0.2"]


def test_the_plan_says_which_estimates_rest_on_a_probe_taken_on_a_busy_machine(stubbed, monkeypatch):
    store, _, _ = stubbed
    monkeypatch.setattr(plan.os, "cpu_count", lambda: 2)
    # a: recorded before the CPU share was kept, under a load above the cores; b: a low load but a starved probe;
    # c: a load of nice background runs that left the probe its cores; d: nothing recorded about the machine
    costs = {"cpu": {"stub/a": {"epoch_s": 10.0, "load_average": 4.5},
                     "stub/b": {"epoch_s": 50.0, "load_average": 1.2, "cpu_share": 0.4},
                     "stub/c": {"epoch_s": 5.0, "load_average": 3.1, "cpu_share": 0.97}}}
    (store.root / "costs.json").parent.mkdir(parents=True, exist_ok=True)
    (store.root / "costs.json").write_text(json.dumps(costs))
    assert plan.load_costs(store) == costs
    rows = plan.plan_rows("stubbed", store=store, device="cpu")
    assert [r["_busy_probe"] for r in rows] == ["stub/a", "stub/b", None]
    summary = plan.plan_summary(rows)
    assert "2 kinds of unit still priced by a probe taken on a busy machine" in summary and "stub/a, stub/b" in summary
    assert not plan.busy_probe({"epoch_s": 1.0})
    store.write("stub", "a", params={"epochs": 3}, seed=0, started="2026-01-01T00:00:00+00:00", device="cpu", metrics={})
    assert "1 kind of unit" in plan.plan_summary(plan.plan_rows("stubbed", store=store, device="cpu"))  # a is done


def test_a_probe_records_the_share_of_the_time_it_had_a_core(stubbed):
    store, _, _ = stubbed
    unit = plan.units("stubbed")[0]

    def idle() -> dict:  # waits without computing, as a probe does whose cores other work has taken
        time.sleep(0.2)
        return {"epoch_s": 1.0}

    unit.probe = idle
    share = plan.measure(store, [unit], torch.device("cpu"))["cpu"][unit.kind]["cpu_share"]
    assert share < 0.2 and plan.busy_probe(plan.load_costs(store)["cpu"][unit.kind])  # ~0 seen


def test_recorded_seconds_add_training_epochs_finished_stages_and_stored_pieces():
    from robustode.units import recorded_seconds

    results = {"history": {"epochs": [{"epoch": 1, "seconds": 100.0}, {"epoch": 2, "seconds": 120.0}]},
               "seconds": {"noise": 30.0, "faithful": 50.0}, "noise": {"0": 0.99}}
    partial = {"device": "cpu", "noise": {"metrics": {"clean": 0.99}, "seconds": 30.0},
               "strong 0.2 (pieces)": {"pgd 100x5 images 0-100": {"images": 100, "seconds": 400.0},
                                       "pgd 10x1 images 0-100": {"images": 100, "seconds": 15.0}}}
    assert recorded_seconds(results) == pytest.approx(300.0)
    assert recorded_seconds({"history": results["history"]}, partial) == pytest.approx(220.0 + 30.0 + 415.0)
    assert recorded_seconds(None, {}, {"device": "cpu"}) is None  # nothing recorded is not "0 s"


def test_plan_rows_say_what_each_unit_has_cost_so_far(stubbed):
    store, _, _ = stubbed
    store.write("stub", "a", params={"epochs": 3}, seed=0, started="2026-01-01T00:00:00+00:00", device="cpu",
                metrics={"history": {"epochs": [{"epoch": e, "seconds": 600.0} for e in (1, 2, 3)]}})
    store.save_partial("stub", "b", {"epochs": 2}, {"noise": {"metrics": {}, "seconds": 90.0}})
    rows = {r["unit"]: r for r in plan.plan_rows("stubbed", store=store, device="cpu")}
    assert rows["stub/a"]["state"] == plan.DONE and rows["stub/a"]["spent"] == "30 min"
    assert rows["stub/b"]["spent"] == "2 min" and rows["stub/c"]["spent"] == "—"
    assert "32 min of compute recorded so far" in plan.plan_summary(list(rows.values()))


def test_a_locked_unit_is_skipped_and_a_dead_holders_lock_is_taken_over(stubbed):
    store, _, _ = stubbed
    lock = store.root / "locks" / "stub" / "a.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(str(os.getpid()))  # alive: this test's own process
    outcome = plan.advance("stubbed", store=store, log=lambda text: None, only=["stub/a"])
    assert outcome.skipped == ["stub/a"] and not outcome.finished
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(str(dead.pid))
    outcome = plan.advance("stubbed", store=store, log=lambda text: None, only=["stub/a"])
    assert outcome.finished == ["stub/a"] and not lock.exists()


def test_the_store_lock_refuses_a_second_holder(tmp_path):
    store = Store("x", tmp_path)
    with store.lock("e", "r"):
        with pytest.raises(RunLocked, match="e/r is being computed by process"):
            with store.lock("e", "r"):
                pass
    with store.lock("e", "r"):  # released
        pass


def test_a_lock_appears_with_its_holder_written_and_leaves_no_files_behind(tmp_path, monkeypatch):
    import robustode.store as store_module

    store = Store("x", tmp_path)
    seen = []
    real_link = os.link

    def link(source, target):  # the moment the lock appears, it already names its holder
        real_link(source, target)
        seen.append(Path(target).read_text())

    monkeypatch.setattr(store_module.os, "link", link)
    with store.lock("e", "r"):
        assert seen == [Path(tmp_path / "locks" / "e" / "r.lock").read_text()] and seen[0].split()[0] == str(os.getpid())
        with pytest.raises(RunLocked):
            with store.lock("e", "r"):
                pass
    assert list((tmp_path / "locks" / "e").iterdir()) == []  # no lock, no temporary holder files


def test_training_stops_at_an_epoch_boundary_when_the_next_epoch_would_not_fit(tmp_path, monkeypatch):
    import robustode.core.training

    clock = FakeClock()
    monkeypatch.setattr(robustode.core.training.time, "perf_counter", clock)  # epoch times recorded on the same clock
    x, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    model = torch.nn.Linear(3, 2)

    def batches(epoch):
        clock.now += 10.0  # each epoch "takes" 10 s
        return [(x, y)]

    spec = TrainSpec(epochs=5)
    with pytest.raises(OutOfBudget, match="epoch 3 of 5"):
        train(model, batches, spec, checkpoint=tmp_path / "c.pt", progress=False,
              deadline=Deadline(25.0, clock=clock), epoch_estimate=10.0)
    assert torch.load(tmp_path / "c.pt", weights_only=True)["epoch"] == 2


@pytest.mark.parametrize("text, seconds", [("150m", 9000.0), ("2h", 7200.0), ("1h30m", 5400.0), ("90s", 90.0), ("45", 45.0)])
def test_budgets_parse(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("argv, message", [
    (["run", "--profile", "paper-short", "--budget", "10x"], "a budget must look like"),
    (["run", "--profile", "paper-short", "--budget", "0m"], "a budget must look like"),
    (["run", "--profile", "paper-short", "--only", "no-such-unit"], "no unit matches 'no-such-unit'"),
    (["plan", "--profile", "paper-short", "--only", "no-such-unit"], "no unit matches 'no-such-unit'"),
    (["run", "--profile", "paper-short", "--threads", "0"], "--threads must be at least 1"),
])
def test_bad_input_is_one_clear_error_before_any_work(argv, message, capsys, results_tmp):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (results_tmp / "results").exists()


def test_an_unknown_profile_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["run", "--profile", "weekly"])
    assert stop.value.code == 2 and "invalid choice: 'weekly'" in capsys.readouterr().err


RUNNER = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {tests!r})
    from test_robustness import tiny_profile
    from robustode import plan
    prof = tiny_profile()
    prof["robustness"]["common"].update(epochs=4, train_size=256, checkpoint=True, resume=True, repetitions=1)
    prof["robustness"]["defences"].update(randomise=[])
    outcome = plan.advance(prof, only=["robustness/MNIST/CNN/seed0"], device="cpu", progress=False, threads=1)
    print(json.dumps(outcome.finished))
""")


@needs_mnist
@pytest.mark.slow
def test_a_killed_run_resumes_where_it_stopped_and_loses_at_most_one_epoch(tmp_path):
    env = {**os.environ, "ROBUSTODE_ROOT": str(tmp_path), "ROBUSTODE_DATA": str(data_dir())}
    script = RUNNER.format(tests=str(Path(__file__).parent))
    checkpoints = tmp_path / "results" / "quick" / "checkpoints" / "robustness-MNIST"
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list(checkpoints.glob("CNN-seed0-*.pt")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    found = list(checkpoints.glob("CNN-seed0-*.pt"))
    assert found, "the run wrote no checkpoint before it was killed"
    before = torch.load(found[0], weights_only=True)["history"]["epochs"]
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == ["robustness/MNIST/CNN/seed0"], done.stderr[-2000:]
    result = json.loads((tmp_path / "results" / "quick" / "robustness-MNIST" / "CNN-seed0.json").read_text())
    epochs = result["metrics"]["history"]["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4]
    # the epochs finished before the kill were resumed from the checkpoint, not trained again
    assert epochs[: len(before)] == before and len(before) >= 1
    # the plan accounts for the finished unit's compute: its training epochs and its evaluation stages
    sys.path.insert(0, str(Path(__file__).parent))
    from test_robustness import tiny_profile

    prof = tiny_profile()  # the runner's profile, as RUNNER builds it
    prof["robustness"]["common"].update(epochs=4, train_size=256, checkpoint=True, resume=True, repetitions=1)
    prof["robustness"]["defences"].update(randomise=[])
    unit = plan.select(plan.units(prof, "cpu"), ["robustness/MNIST/CNN/seed0"])[0]
    spent = plan.spent_seconds(Store("quick", tmp_path / "results" / "quick"), unit)
    expected = sum(e["seconds"] for e in epochs) + sum(result["metrics"]["seconds"].values())
    assert spent == pytest.approx(expected) and spent > 0
    assert not list(checkpoints.glob("*.pt"))  # resume state dropped once the model was saved


def test_a_plan_reads_each_experiments_results_files_once(stubbed, monkeypatch):
    # every unit used to read every results file of its experiment again: half a minute for the full profile
    store, _, _ = stubbed
    for unit in plan.units("stubbed"):
        unit.params = {**unit.params, "model": "same kind"}
    store.write("stub", "a", params={"epochs": 3, "model": "same kind"}, seed=0, started="2026-01-01T00:00:00+00:00",
                device="cpu", metrics={"history": {"epochs": [{"epoch": 1, "seconds": 42.0}]}})
    reads: list[str] = []
    original = Store.runs

    def counting(self, experiment):
        reads.append(experiment)
        return original(self, experiment)

    monkeypatch.setattr(Store, "runs", counting)
    rows = {r["unit"]: r for r in plan.plan_rows("stubbed", store=store, device="cpu")}
    assert reads == ["stub"]
    # what a finished seed took still prices the others of its kind (b: 2 epochs, c: 1, at a's 42 s)
    assert rows["stub/b"]["_cpu_s"] == pytest.approx(84.0) and rows["stub/c"]["_cpu_s"] == pytest.approx(42.0)


def test_a_unit_another_runner_finished_after_this_one_chose_it_is_not_computed_again(stubbed):
    store, clock, log = stubbed
    a = plan.units("stubbed")[0]
    compute_a = a.compute

    def a_then_another_runner_finishes_b(ctx):
        result = compute_a(ctx)
        # meanwhile a second runner (same results folder) finished b: written after this runner chose its units
        store.write("stub", "b", params={"epochs": 2}, seed=0, started="2026-01-01T00:00:00+00:00", device="cpu",
                    metrics={"epochs": 2, "by": "the other runner"})
        return result

    a.compute = a_then_another_runner_finishes_b
    lines = []
    outcome = plan.advance("stubbed", store=store, log=lines.append)
    assert outcome.finished == ["stub/a", "stub/c"] and plan.exit_status(outcome) == 0
    assert [entry[0] for entry in log] == ["a", "a", "a", "c"]  # b's epochs never ran here
    assert store.run("stub", "b", {"epochs": 2})["metrics"]["by"] == "the other runner"  # and its file is untouched
    assert any("stub/b was finished by another runner" in line for line in lines)


def test_recomputing_on_purpose_still_overwrites_a_stored_unit(stubbed):
    store, clock, log = stubbed
    c = plan.units("stubbed")[2]
    store.write("stub", "c", params={"epochs": 1}, seed=0, started="2026-01-01T00:00:00+00:00", device="cpu",
                metrics={"epochs": 0})
    ctx = plan.Context(store, torch.device("cpu"), Deadline(None), False)
    assert plan.ensure(c, ctx, resume=True)["metrics"] == {"epochs": 0} and not log  # stored: nothing computed
    assert plan.ensure(c, ctx, resume=False)["metrics"] == {"epochs": 1} and log == [("c", 1, 5.0)]


def test_a_unit_finished_elsewhere_reads_done_even_where_it_could_not_run(stubbed):
    """The authors' units need their checkpoints: a fresh clone without them must still count the committed results
    as done (and as compute spent), not as blocked with nothing recorded."""
    from robustode.cluster import chapter_estimates

    store, _, _ = stubbed
    a, b, _ = plan.units("stubbed")
    a.requires = b.requires = lambda: "checkpoints not given"
    store.write("stub", "a", params={"epochs": 3}, seed=0, started="2026-01-01T00:00:00+00:00", device="cpu",
                metrics={"history": {"epochs": [{"epoch": e, "seconds": 600.0} for e in (1, 2, 3)]}})
    rows = {r["unit"]: r for r in plan.plan_rows("stubbed", store=store, device="cpu")}
    assert rows["stub/a"]["state"] == plan.DONE and rows["stub/a"]["spent"] == "30 min"
    assert rows["stub/b"]["state"] == plan.BLOCKED and rows["stub/b"]["detail"] == "checkpoints not given"
    [chapter] = chapter_estimates("stubbed", plan.units("stubbed"), store)
    assert chapter["units left"] == 2 and chapter["blocked here"] == 1  # b and c are left; only b is blocked


def test_the_chapter_account_adds_up_each_chapters_units_spent_and_left(stubbed):
    store, _, _ = stubbed
    store.write("stub", "a", params={"epochs": 3}, seed=0, started="2026-01-01T00:00:00+00:00", device="cpu",
                metrics={"history": {"epochs": [{"epoch": e, "seconds": 600.0} for e in (1, 2, 3)]}})
    store.save_partial("stub", "b", {"epochs": 2}, {"noise": {"metrics": {}, "seconds": 90.0}})
    units = plan.units("stubbed")
    units[2].requires = lambda: "data missing"
    [chapter] = plan.chapter_account(plan.plan_rows("stubbed", store=store, device="cpu"))
    assert chapter["CPU time left here"] == "not measured"  # b's kind never timed here: not guessed
    plan.measure(store, units[:2], torch.device("cpu"))
    [chapter] = plan.chapter_account(plan.plan_rows("stubbed", store=store, device="cpu"))
    assert {k: chapter[k] for k in ("chapter", "units", "done", "partial", "pending", "blocked here")} == {
        "chapter": "stub", "units": 3, "done": 1, "partial": 0, "pending": 1, "blocked here": 1}
    # a: 30 min recorded, b: 90 s of a stage; left: b's two epochs of 50 s (c is blocked: not priced here)
    assert chapter["compute recorded"] == "32 min" and chapter["CPU time left here"] == "2 min"
