"""Chapter 3's read-out time: the decision read along the solve, the run-plan units, the table and the findings."""

import copy

import pytest
import torch

from robustode import plan
from robustode.chapters.robustness import readout
from robustode.chapters.robustness.config import available, training_params
from robustode.chapters.robustness.findings import readout_findings
from robustode.chapters.robustness.run import make_model, planned_runs
from robustode.chapters.robustness.tables import readout_rows
from robustode.core import attacks
from robustode.profiles import load_profile
from robustode.store import Store

needs_mnist = pytest.mark.skipif(not available("MNIST")[0], reason="MNIST not in data/ (.ci/run copies it)")


def tiny(name: str = "ODENet"):
    cfg = next(cfg for seed, n, cfg, _ in planned_runs("quick")["MNIST"] if n == name and seed == 0)
    torch.manual_seed(0)
    return make_model(name, cfg).eval(), cfg


@pytest.mark.parametrize("name", ["ODENet", "TisODE"])  # TisODE's block sits inside its steady-state wrapper
def test_the_read_out_at_t_is_the_faithful_attack_and_the_grid_holds_t_and_2t(name):
    model, cfg = tiny(name)
    side = cfg["image_size"]
    x, y = torch.rand(12, 1, side, side), torch.randint(0, 10, (12,))
    out = readout.read_out(model, x, y, ["0.1", "0.3"], horizon=2, points=9, batch_size=5)
    assert out["times"][4] == pytest.approx(out["T"]) and out["times"][-1] == pytest.approx(2 * out["T"])
    at_t = readout.index_of(out, 1.0)
    assert at_t == 4 and readout.index_of(out, 2.0) == 8
    assert out["clean"]["agreement"][at_t] == 1.0  # a decision always equals itself
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean().item()
    assert out["clean"]["accuracy"][at_t] == pytest.approx(clean)
    for eps in ("0.1", "0.3"):
        # read_out checks every batch against the attack's own verdict; the whole set agrees with one call too
        assert out["pgd"][eps]["accuracy"][at_t] == pytest.approx(attacks.pgd(model, x, y, float(eps)).accuracy)
        assert len(out["pgd"][eps]["accuracy"]) == 9 and all(0 <= a <= 1 for a in out["pgd"][eps]["accuracy"])
        # under attack an image can only be robust where it is also right without the attack (x0 is checked)
        assert all(p <= c for p, c in zip(out["pgd"][eps]["accuracy"], out["clean"]["accuracy"], strict=True))


def test_the_clean_read_out_serves_as_pgds_first_iterate(monkeypatch):
    model, cfg = tiny("ODENet")
    side = cfg["image_size"]
    x, y = torch.rand(12, 1, side, side), torch.randint(0, 10, (12,))
    reference = readout.read_out(model, x, y, ["0.2"], horizon=2, points=5, batch_size=5)
    block, solves = model.ode_blocks()[0], []
    trajectory = block.trajectory
    monkeypatch.setattr(block, "trajectory", lambda z, times=None: solves.append(len(times or ())) or trajectory(z, times))
    again = readout.read_out(model, x, y, ["0.2"], horizon=2, points=5, batch_size=5)
    solves = [n for n in solves if n == 5]  # the read-out's grid (the attack's own passes solve to T only)
    # 3 batches: one clean read-out each, then nine iterates x1 .. x9 each (x0 is the clean batch)
    assert len(solves) == 3 + 3 * (readout.PGD_ITERATIONS - 1)
    assert again["pgd"] == reference["pgd"] and again["clean"] == reference["clean"]


def test_a_model_without_a_single_ode_middle_is_refused():
    model, cfg = tiny("CNN")
    with pytest.raises(ValueError, match="single ODE block"):
        readout.read_out(model, torch.rand(2, 1, 14, 14), torch.zeros(2, dtype=torch.long), ["0.1"], 2, 9)


@pytest.mark.parametrize(("change", "message"), [
    ({"colour": 1}, "unknown key"),
    ({"points": 8}, "1 \\+ a multiple of horizon"),
    ({"horizon": 1}, "whole number >= 2"),
    ({"images": 0}, "positive whole number"),
    ({"eps": [0.1]}, "as strings"),
    ({"eps": ["2"]}, "not in \\(0, 1\\]"),
])
def test_bad_readout_settings_are_one_clear_error(change, message):
    prof = copy.deepcopy(load_profile("quick"))
    prof["robustness"]["readout"] = {**prof["robustness"]["readout"], **change}
    with pytest.raises(ValueError, match=message):
        readout.settings(prof)


def test_the_readout_entry_is_outside_the_settings_that_key_the_runs_results():
    from robustode.chapters.robustness.config import config

    assert "readout" not in config("paper-short", "MNIST")  # adding it re-evaluates no stored run
    prof = copy.deepcopy(load_profile("quick"))
    del prof["robustness"]["readout"]
    assert readout.settings(prof) is None and readout.units(prof) == []


def test_units_wait_for_their_model_then_run_and_read_done(tmp_path):
    store = Store("quick", tmp_path / "results")
    units = readout.units("quick")
    planned = [n for seed, n, cfg, _ in planned_runs("quick")["MNIST"] if seed == 0 and make_model(n, cfg).ode_blocks()]
    assert [u.run for u in units] == [f"{n}-seed0" for n in planned] and "CNN-seed0" not in [u.run for u in units]
    unit = units[0]
    assert unit.status(store).state == plan.WAITING and "to be trained" in unit.status(store).detail
    # the chapter names what its table leaves out, and why
    missing = readout.not_read(store)
    assert len(missing) == len(units) and missing[0] == f"{unit.params['model']} (seed 0): {unit.status(store).detail}"
    name = unit.params["model"]
    model, cfg = tiny(name)
    store.save_model("robustness-MNIST", unit.run, training_params(name, cfg), model.state_dict(),
                     history={"epochs": []}, trainer="plain")
    assert unit.status(store).state == plan.PENDING
    store.write(unit.experiment, unit.run, params=unit.params, seed=0, started="2026-01-01T00:00:00+00:00",
                device="cpu", metrics={"seconds": {"clean": 1.0}})
    assert unit.status(store).state == plan.DONE and unit.spent(store) == 1.0
    assert len(readout.not_read(store)) == len(units) - 1 and not any(m.startswith(f"{name} (") for m in
                                                                         readout.not_read(store))


def test_the_runner_leaves_a_unit_that_waits_for_another(monkeypatch, tmp_path):
    computed = []

    def status(store):
        return plan.Progress(plan.WAITING, "waits for x to be trained")

    waiting = plan.Unit(id="readout/x", experiment="readout", run="x", params={}, seed=0, epochs=0, stages=["readout"],
                        kind="readout/x", compute=lambda ctx: computed.append(1) or {}, status=status,
                        probe=lambda: {"epoch_s": 0.0, "stages_s": {"readout": 1.0}})
    monkeypatch.setattr(plan, "units", lambda profile, device="auto": [waiting])
    outcome = plan.advance("quick", store=Store("quick", tmp_path / "results"), device="cpu", progress=False,
                       log=lambda text: None)
    assert computed == [] and outcome.remaining == 1
    # the plan says it waits (not "blocked here": this machine can run it) and prices all of its work
    rows = plan.plan_rows("quick", store=Store("quick", tmp_path / "results"), device="cpu")
    assert [(r["state"], r["detail"]) for r in rows] == [(plan.WAITING, "waits for x to be trained")]
    assert rows[0]["_cpu_s"] == 1.0 and rows[0]["CPU left"] != "—"
    [chapter] = plan.chapter_account(rows)
    assert (chapter["waiting"], chapter["blocked here"], chapter["CPU time left here"]) == (1, 0, plan.fmt_seconds(1.0))
    assert "0 pending, 1 waiting for another unit, 0 blocked" in plan.plan_summary(rows)


def fake(t_flags: list[bool], late_flags: list[bool], agree_late: float = 1.0) -> dict:
    n = len(t_flags)
    from robustode.results import pack_flags

    rows = [t_flags, t_flags, late_flags]
    return {"times": [0.0, 1.0, 2.0], "T": 1.0, "images": n,
            "clean": {"accuracy": [0.1, 1.0, 1.0], "agreement": [0.1, 1.0, agree_late],
                      "flags": [pack_flags([True] * n)] * 3},
            "pgd": {"0.2": {"accuracy": [sum(r) / n for r in rows], "flags": [pack_flags(r) for r in rows]}}}


def test_the_table_and_findings_give_the_change_at_2t_with_its_interval():
    n = 200
    tuned = fake([False] * n, [True] * 100 + [False] * 100, agree_late=0.98)  # 0 % at T, 50 % read at 2T
    settled = fake([True] * 50 + [False] * 150, [True] * 50 + [False] * 150)  # nothing changes
    rows = readout_rows({"ODENet (seed 0)": tuned, "TisODE (seed 0)": settled})
    assert rows[0]["PGD-0.2 at T"] == "0.0" and rows[0]["PGD-0.2 read at 2T"] == "50.0"
    assert rows[0]["PGD-0.2 change"].startswith("+50.0 [") and rows[0]["decisions kept at 2T"] == "98.0"
    assert rows[1]["PGD-0.2 change"].startswith("+0.0")
    (line,) = readout_findings({"paper-short": {"ODENet (seed 0)": tuned, "TisODE (seed 0)": settled}})
    assert "98.0-100.0 % of clean decisions" in line
    assert "+0.0 to +50.0 points" in line and "rises outside its 95 % interval for 1 of 2, falls for 0" in line
    assert readout_findings({"quick": {}}) == []
    (one,) = readout_findings({"full": {"ODENet, the authors' checkpoint": settled}})
    assert "at 2T, 100.0 % of clean decisions" in one and "changes by +0.0 points" in one


def test_the_plan_lists_the_readouts_after_chapter_3s_runs_and_the_authors_with_their_checkpoints():
    ids = [u.id for u in plan.units("full", "cpu")]
    assert "authors-readout/MNIST/TisODE" in ids and "authors-readout/MNIST/CNN" not in ids
    assert ids.index("readout/MNIST/ODENet/seed0") > max(i for i, u in enumerate(ids) if u.startswith("robustness/"))


@needs_mnist
@pytest.mark.slow
def test_one_runner_call_trains_a_model_and_then_reads_it_out(monkeypatch, tmp_path):
    import sys
    from pathlib import Path

    from robustode.paths import data_dir

    sys.path.insert(0, str(Path(__file__).parent))
    from test_robustness import tiny_profile

    monkeypatch.setenv("ROBUSTODE_DATA", str(data_dir()))
    monkeypatch.setenv("ROBUSTODE_ROOT", str(tmp_path))
    prof = tiny_profile()
    prof["robustness"]["common"].update(checkpoint=True)
    prof["robustness"]["readout"].update(images=6)
    store = Store("quick", tmp_path / "results" / "quick")
    outcome = plan.advance(prof, only=["robustness/MNIST/ODENet/seed0", "readout/MNIST/ODENet/seed0"], device="cpu",
                           progress=False, store=store, threads=1, log=lambda text: None)
    # the read-out was blocked when the call began and ran once the training had finished
    assert outcome.finished == ["robustness/MNIST/ODENet/seed0", "readout/MNIST/ODENet/seed0"] and outcome.all_done
    unit = plan.select(plan.units(prof, "cpu"), ["readout/MNIST/ODENet/seed0"])[0]
    found = store.run(unit.experiment, unit.run, unit.params)["metrics"]
    assert found["images"] == 6 and set(found["pgd"]) == {"0.1", "0.2"}


def test_the_figure_draws_the_largest_eps_read_and_nothing_without_read_outs():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from robustode.chapters.robustness import figures as figs

    m = fake([False] * 10, [True] * 10)
    m["pgd"]["0.1"] = {"accuracy": [0.9, 0.9, 0.9], "flags": []}
    fig = figs.readout_curves({"ODENet (seed 0)": m, "TisODE-step0.1 (seed 0)": m})
    left, right = fig.axes
    assert "PGD-0.2" in right.get_ylabel() and len(right.lines) == 2 + 1  # two models and the line at T
    assert list(right.lines[0].get_ydata()) == [0.0, 0.0, 100.0]
    plt.close(fig)
    assert figs.readout_curves({}) is None
