"""A GPU piece on the CPU: its deadline, the files it returns, what it carries, which processes it stops, and
the count of pieces left. Steps are stubbed with sleeps and file writes; one slow test runs a whole dry run."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch

from robustode import piece
from robustode.piece import LIMITS, Limits, MiB, Packer, PieceError, PieceRun, Step
from robustode.store import Store

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def _robustness_units():
    from robustode import plan

    return plan.select(plan.units("full", "cpu"), ["robustness/MNIST/*"])


def _store_with_checkpoints(root: Path, done: int = 4, size: int = int(2.2 * MiB)) -> tuple[Store, list]:
    """A full-profile store whose 12 robustness/MNIST units each have an engine checkpoint of ``size`` bytes
    (random, so that it does not compress), the first ``done`` of them finished."""
    from robustode.chapters.robustness.config import config, training_params

    store = Store("full", root)
    units = _robustness_units()
    assert len(units) == 12
    cfg = config("full", "MNIST")
    for i, unit in enumerate(units):
        name = unit.params["model"]
        path = store.checkpoint(unit.experiment, unit.run, training_params(name, cfg), ".engine.pt")
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"epoch": 7, "blob": torch.rand(size // 4)}, path)
        if i < done:
            store.write(unit.experiment, unit.run, params=unit.params, seed=unit.seed, started="2026-01-01T00:00:00",
                        device="cpu", metrics={"clean": 0.9})
    return store, units


def _tar_names(folder: Path, stem: str) -> list[str]:
    parts = piece._parts(folder, stem)
    whole = folder / f".{stem}.joined"
    whole.write_bytes(b"".join(p.read_bytes() for p in parts))
    try:
        with tarfile.open(whole, "r:gz") as tar:
            return tar.getnames()
    finally:
        whole.unlink()


def _within_limits(out: Path, limits: Limits = LIMITS) -> list[Path]:
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= 8 and len(files) <= limits.out_files
    assert all(p.stat().st_size <= 16 * MiB and p.stat().st_size <= limits.out_file_bytes for p in files)
    return files


# ---------------------------------------------------------------------------------- point 1: packing

def test_packing_drops_finished_units_checkpoints_and_splits_every_file_under_the_limit(tmp_path):
    store, units = _store_with_checkpoints(tmp_path / "results", done=4)
    out = tmp_path / "out"
    out.mkdir()
    before = time.time() - 1
    (store.root / "costs.json").write_text("{}")
    packer = Packer(store.root, out, before, LIMITS, units=lambda: units)
    files = packer.pack()
    assert not packer.errors
    assert len(list((store.root / "checkpoints").rglob("*.pt"))) == 8  # the 4 finished units' are gone
    names = {p.name for p in files}
    assert {"checkpoints.tar.gz.1of2", "checkpoints.tar.gz.2of2", "results.tar.gz"} <= names  # 8 x 2.2 MiB > 15 MiB
    _within_limits(out)
    assert len(_tar_names(out, "checkpoints")) == 8
    results = _tar_names(out, "results")
    assert piece.MANIFEST in results and "costs.json" in results
    assert not any(n.startswith("checkpoints/") or n.startswith("locks/") for n in results)
    # a second pack with nothing new writes nothing; after more units finish, the parts shrink and stale ones go
    stamp = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    packer.pack()
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamp
    for unit in units[4:10]:
        store.write(unit.experiment, unit.run, params=unit.params, seed=unit.seed, started="x", device="cpu", metrics={})
    packer.pack()
    assert {p.name for p in out.iterdir() if p.name.startswith("checkpoints")} == {"checkpoints.tar.gz"}
    assert len(_tar_names(out, "checkpoints")) == 2


def test_a_pack_that_would_need_too_many_files_is_refused_and_the_files_already_in_out_stay(tmp_path):
    store, units = _store_with_checkpoints(tmp_path / "results", done=0, size=MiB)
    out = tmp_path / "out"
    out.mkdir()
    small = Limits(part_bytes=MiB, out_file_bytes=MiB, checkpoint_parts=3)
    with pytest.raises(PieceError, match="at most 3 fit"):
        piece.write_parts(out, "checkpoints", sorted((store.root / "checkpoints").rglob("*.pt")), store.root, 3, small)
    assert not list(out.iterdir())


def test_unpack_restores_results_and_live_checkpoints_and_merges_costs_newest_first(tmp_path):
    store, units = _store_with_checkpoints(tmp_path / "device", done=4)
    (store.root / "costs.json").write_text(json.dumps({"cuda": {"k": {"epoch_s": 2.0, "measured": "2026-12-02"}}}))
    out = tmp_path / "out"
    out.mkdir()
    manifest = {"chapters": ["robustness"], "dry_run": False}
    Packer(store.root, out, 0.0, LIMITS, units=lambda: units, manifest=lambda: manifest).pack()
    local = Store("full", tmp_path / "local")
    local.root.mkdir(parents=True)
    (local.root / "costs.json").write_text(json.dumps({"cpu": {"k": {"epoch_s": 60.0, "measured": "2026-12-01"}},
                                                       "cuda": {"k": {"epoch_s": 9.0, "measured": "2026-11-01"}}}))
    report = piece.unpack(out, local.root)
    assert report["checkpoints"] == 8 and report["manifest"]["chapters"] == ["robustness"]
    costs = json.loads((local.root / "costs.json").read_text())
    assert costs["cpu"]["k"]["epoch_s"] == 60.0 and costs["cuda"]["k"]["epoch_s"] == 2.0
    assert all(local.run(u.experiment, u.run, u.params) is not None for u in units[:4])
    assert len(list((local.root / "checkpoints").rglob("*.pt"))) == 8


def test_a_dry_runs_toy_results_are_not_unpacked_into_the_results(tmp_path):
    store, units = _store_with_checkpoints(tmp_path / "device", done=2, size=1000)
    out = tmp_path / "out"
    out.mkdir()
    Packer(store.root, out, 0.0, LIMITS, manifest=lambda: {"chapters": ["robustness"], "dry_run": True}).pack()
    local = tmp_path / "local"
    with pytest.raises(PieceError, match="dry run"):
        piece.unpack(out, local)
    assert not local.exists()
    assert piece.unpack(out, local, allow_dry_run=True)["results"] == 2


# ---------------------------------------------------------------------------------- point 2: the kit

def _git_repo(path: Path, tracked_bytes: int) -> Path:
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    (path / ".gitignore").write_text((ROOT / ".gitignore").read_text())
    (path / "big.bin").write_bytes(os.urandom(tracked_bytes))
    subprocess.run(["git", "-C", str(path), "add", "."], check=True)
    (path / "untracked.txt").write_bytes(b"x" * 1000)  # travels too: untracked, not ignored
    (path / "data").mkdir()
    (path / "data" / "ignored.bin").write_bytes(b"y" * 5000)  # ignored: stays here
    return path


def _data_dir(path: Path) -> Path:
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        f = path / "MNIST" / "raw" / f"{name}.gz"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(os.urandom(200_000))
    return path


def test_kit_counts_every_carried_byte_for_a_plan_with_12_checkpoints(tmp_path):
    repo = _git_repo(tmp_path / "repo", 3 * MiB)
    store, units = _store_with_checkpoints(repo / "results" / "full", done=4)
    site = tmp_path / "site"
    (site / "pyautoattack").mkdir(parents=True)
    (site / "pyautoattack" / "__init__.py").write_text("x = 1\n" * 100)
    sizes = piece.build_kit(repo, ["robustness"], data=_data_dir(tmp_path / "data"), results=store.root, site=site,
                            commit="abc")
    assert sizes["checkpoint_files"] == 8  # only the unfinished units' checkpoints travel
    assert len(list((repo / ".device" / "checkpoints").rglob("*.pt"))) == 8
    carried = piece.carried_bytes(repo, [".device"])
    assert sizes["total"] == carried["total"]
    # counted independently: the travelling tree (git's view) plus every byte under .device
    listed = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.decode().split("\0")
    tree = sum((repo / n).stat().st_size for n in listed if n)
    kit = sum(p.stat().st_size for p in (repo / ".device").rglob("*") if p.is_file())
    assert carried["total"] == tree + kit
    assert kit > 8 * 2.2 * MiB and tree < 4 * MiB  # checkpoints counted; ignored data and checkpoints folder not
    assert not (repo / ".device" / "data" / "MNIST" / "raw" / "train-images-idx3-ubyte").exists()  # only .gz


def test_a_kit_over_the_carry_limit_is_refused_and_the_last_kit_stays(tmp_path):
    repo = _git_repo(tmp_path / "repo", 1000)
    store, _ = _store_with_checkpoints(repo / "results" / "full", done=0)
    data = _data_dir(tmp_path / "data")
    piece.build_kit(repo, ["anode"], data=data, results=store.root, site=None, commit="abc")
    before = sorted(p.name for p in (repo / ".device").rglob("*"))
    small = Limits(carry_bytes=20 * MiB, carry_margin=MiB)  # 12 live checkpoints of 2.2 MiB do not fit
    site = tmp_path / "site"
    (site / "pyautoattack").mkdir(parents=True)
    with pytest.raises(PieceError, match="kit too large"):
        piece.build_kit(repo, ["robustness"], data=data, results=store.root, site=site, commit="abc", limits=small)
    assert sorted(p.name for p in (repo / ".device").rglob("*")) == before
    assert not (repo / ".device.new").exists()


def test_kit_refuses_unknown_chapters_and_missing_data_before_any_work(tmp_path):
    repo = _git_repo(tmp_path / "repo", 10)
    with pytest.raises(PieceError, match="unknown chapter"):
        piece.build_kit(repo, ["chapter9"], data=tmp_path, results=tmp_path, site=None, commit="x")
    with pytest.raises(PieceError, match="data missing"):
        piece.build_kit(repo, ["anode"], data=tmp_path / "nothing", results=tmp_path, site=None, commit="x")
    assert not (repo / ".device").exists() and not (repo / ".device.new").exists()


# ----------------------------------------------------------------- point 3: one deadline, stubbed steps

def _writer_script(tmp_path: Path) -> Path:
    """A stand-in runner: a finished unit's results file every half second, a 2.2 MiB checkpoint, then sleeps."""
    script = tmp_path / "runner.py"
    script.write_text(
        "import os, sys, time, json\n"
        "from pathlib import Path\n"
        "root = Path(sys.argv[1])\n"
        "ck = root / 'checkpoints' / 'robustness-MNIST'\n"
        "ck.mkdir(parents=True, exist_ok=True)\n"
        "for i in range(3):\n"
        "    (ck / f'unit{i}-0123456789ab.engine.pt').write_bytes(os.urandom(int(2.2 * 2**20)))\n"
        "for i in range(1000):\n"
        "    folder = root / 'robustness-MNIST'\n"
        "    folder.mkdir(parents=True, exist_ok=True)\n"
        "    (folder / f'unit{i}.json').write_text(json.dumps({'i': i}))\n"
        "    print('finished unit', i, flush=True)\n"
        "    time.sleep(0.5)\n")
    return script


def _stub_steps(tmp_path: Path, results: Path) -> list[Step]:
    script = _writer_script(tmp_path)
    return [
        Step("device", call=lambda: 0),
        Step("tests", argv=lambda s: [PY, "-c", "import time; time.sleep(1)"]),
        Step("fill", argv=lambda s: [PY, "-c", "import time; time.sleep(60)"], cap_s=2, keep_s=3, needs=("tests",)),
        Step("run", argv=lambda s: [PY, str(script), str(results)], min_s=1, needs=("tests",), pack_while=True,
             ok_codes=(0, 3)),
        Step("count", call=lambda: 0, min_s=5),
    ]


def test_a_piece_with_stubbed_steps_ends_before_its_deadline_with_its_files_within_the_limits(tmp_path):
    repo, out = tmp_path / "repo", tmp_path / "out"
    results = repo / "results" / "full"
    results.mkdir(parents=True)
    limits = Limits(part_bytes=2 * MiB, out_file_bytes=2 * MiB, results_parts=2, checkpoint_parts=4)
    start = time.time()
    end = start + 12
    status = piece.run_piece(repo, out, end, data=_data_dir(tmp_path / "data"), chapters=["robustness"],
                             steps=_stub_steps(tmp_path, results), limits=limits, reserve_s=3, poll_s=0.3)
    finished = time.time()
    assert finished < end, f"ended {finished - end:.1f} s after the deadline"
    assert status == 3  # the runner was stopped: more to do
    files = _within_limits(out, limits)
    assert {p.name for p in files} >= {"piece.log", "results.tar.gz", "checkpoints.tar.gz.1of4"}
    log = (out / "piece.log").read_text()
    assert "fill: stopped" in log and "run: stopped" in log and "count: skipped" in log
    names = _tar_names(out, "results")
    written = sorted(p.name for p in (results / "robustness-MNIST").glob("*.json"))
    assert len(written) >= 3 and all(f"robustness-MNIST/{n}" in names for n in written)  # nothing left behind
    assert len(_tar_names(out, "checkpoints")) == 3


def test_a_piece_killed_mid_run_has_already_packed_the_units_it_finished(tmp_path):
    """A command killed before its end (the device tool's limit) still returns what was packed so far."""
    repo, out = tmp_path / "repo", tmp_path / "out"
    results = repo / "results" / "full"
    results.mkdir(parents=True)
    data = _data_dir(tmp_path / "data")
    driver = tmp_path / "driver.py"
    driver.write_text(
        "import sys, time\nfrom pathlib import Path\nsys.path.insert(0, sys.argv[1])\n"
        "from test_piece import _stub_steps\nfrom robustode import piece\n"
        "tmp = Path(sys.argv[2])\nresults = tmp / 'repo' / 'results' / 'full'\n"
        "piece.run_piece(tmp / 'repo', tmp / 'out', time.time() + 120, data=tmp / 'data', chapters=['robustness'],\n"
        "                steps=_stub_steps(tmp, results), reserve_s=3, poll_s=0.3)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([PY, str(driver), str(ROOT / "tests"), str(tmp_path)], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        limit = time.time() + 90
        while time.time() < limit:  # the runner is still running: the results it wrote are packed as they come
            if (out / "results.tar.gz").exists() and "robustness-MNIST/unit2.json" in _tar_names(out, "results"):
                break
            time.sleep(0.2)
        else:
            pytest.fail("the stubbed runner's results were not packed while it ran")
        assert proc.poll() is None and (out / "piece.log").read_text().count("run: starting") == 1
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the process group this test started
        proc.wait()
        # a SIGKILL leaves the piece no time to end its steps, each in a group of its own, which its log names
        log = (out / "piece.log").read_text() if (out / "piece.log").exists() else ""
        for group in map(int, re.findall(r"process group (\d+)", log)):
            cmdline = Path(f"/proc/{group}/cmdline")
            with contextlib.suppress(OSError):  # ended already; and never a reused PID that is not this test's
                if str(tmp_path) in cmdline.read_bytes().decode(errors="replace"):
                    os.killpg(group, signal.SIGKILL)
    assert data.exists()
    names = _tar_names(out, "results")
    assert {"robustness-MNIST/unit0.json", "robustness-MNIST/unit1.json", "robustness-MNIST/unit2.json"} <= set(names)
    _within_limits(out)


def test_the_run_step_gets_the_time_left_less_its_start_up_as_the_runners_budget(tmp_path):
    steps = piece.default_steps(PY, ROOT, tmp_path, [piece.CHAPTERS["robustness"]], "full", "cuda", [], [], 25.0)
    run = next(s for s in steps if s.name == "run")
    argv = run.argv(300.0)
    assert argv[argv.index("--budget") + 1] == "275s"
    assert argv[argv.index("--only") + 1:] == ["robustness/MNIST/*"]
    assert run.cap_s == float("inf") and run.pack_while  # it gets whatever is left before the deadline


def test_the_advance_command_passes_its_budget_to_the_plans_runner(monkeypatch):
    from robustode import plan

    seen = {}

    def fake_advance(profile, budget, only, device, progress=True, **kw):
        seen.update(profile=profile, budget=budget, only=only, device=device)
        return plan.Outcome(remaining=2)

    monkeypatch.setattr(plan, "advance", fake_advance)
    status = piece.main(["advance", "--profile", "full", "--budget", "275s", "--device", "cpu", "--only", "robustness/*"])
    assert status == 3 and seen == {"profile": "full", "budget": 275.0, "only": ["robustness/*"], "device": "cpu"}


# ------------------------------------------------------------------- point 5: whose processes are stopped

def test_a_piece_stops_only_the_processes_it_started(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    code = (f"import subprocess, time; p = subprocess.Popen(['sleep', '60']); "
            f"open({str(pidfile)!r}, 'w').write(str(p.pid)); time.sleep(60)")
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True)  # not the piece's
    out = tmp_path / "out"
    out.mkdir()
    try:
        with (out / "piece.log").open("a") as log:
            run = PieceRun([Step("slow", argv=lambda s: [PY, "-c", code], cap_s=3)], time.time() + 30, out,
                           Packer(tmp_path, out, time.time()), dict(os.environ), tmp_path, log, reserve_s=1, grace_s=1)
            outcomes = run.run()
        assert outcomes[0].state == "stopped"
        grandchild = int(pidfile.read_text())
        assert not _running(grandchild) and not _running(run.started[0])
        assert _running(bystander.pid)
    finally:
        bystander.kill()  # by its PID: this test started it
        bystander.wait()


def _running(pid: int) -> bool:
    for _ in range(50):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except FileNotFoundError:
            return False
        if state == "Z":
            return False
        time.sleep(0.05)
    return True


def test_no_script_or_module_kills_processes_by_name():
    for path in [*ROOT.glob("tools/*.sh"), *ROOT.glob("tools/*.py"), *ROOT.glob("src/robustode/**/*.py"),
                 *ROOT.glob("benchmarks/*.py")]:
        text = path.read_text()
        assert "pkill" not in text and "killall" not in text, path


# ------------------------------------------------------------------------------------- counting pieces

def test_gpu_pieces_lays_epochs_and_stages_into_pieces_and_says_what_is_unmeasured(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTODE_DATA", str(_data_dir(tmp_path / "data")))
    store = Store("full", tmp_path)
    costs = {"cuda": {"robustness/MNIST/CNN": {"epoch_s": 3.0, "stages_s": {"noise": 1.0, "strong 0.3": 500.0}},
                      "robustness/MNIST/ODENet": {"epoch_s": 4.0, "stages_s": {}}}}
    (tmp_path / "costs.json").write_text(json.dumps(costs))
    report = piece.gpu_pieces("full", [piece.CHAPTERS["robustness"]], store, "cuda", seconds_per_piece=390)
    assert report["units"] == 12 and report["done"] == 0
    assert set(report["unmeasured"]) == {"robustness/MNIST/TisODE", "robustness/MNIST/TisODE+denoise"}
    # 3 CNN units: 100 epochs of 3 s + 1 s; 3 ODENet units: 100 epochs of 4 s; strong stages too long for a piece
    assert report["seconds"] == pytest.approx(3 * (300 + 1 + 500) + 3 * 400)
    assert len(report["too_long"]) == 3 and all("500 s" in item for item in report["too_long"])
    assert report["pieces"] == 6  # 3 x 301 s + 3 x 400 s = 2,103 s of epochs laid in plan order into 390 s pieces
    text = piece.count_text(report, [piece.CHAPTERS["robustness"]])
    assert "not measured on cuda" in text and "at least 6 piece(s)" in text and "cannot run in any piece" in text
    empty = piece.gpu_pieces("full", [piece.CHAPTERS["anode"]], store, "cuda")
    assert "pieces needed: not measured yet" in piece.count_text(empty, [piece.CHAPTERS["anode"]])


# ------------------------------------------------------------------------------- chapter 5 in the plan

def test_anode_units_write_the_results_files_the_notebook_functions_reuse(tmp_path, monkeypatch):
    from robustode import plan
    from robustode.chapters import anode
    from robustode.core.budget import Deadline

    monkeypatch.setenv("ROBUSTODE_DATA", str(_data_dir(tmp_path / "data")))
    profile = piece.tiny_profile()
    calls = []

    def fake_train(dataset, name, variant, cfg, seed, data, device, checkpoint, progress, desc, *rest):
        calls.append(f"{name}-seed{seed}")
        return {"test": {"accuracy": 0.5}}

    monkeypatch.setattr(anode.run, "_train_variant", fake_train)
    monkeypatch.setattr(anode.run, "image_data", lambda dataset, cfg: ((None, None), (None, None)))
    units = piece.piece_units(profile, [piece.CHAPTERS["anode"]])
    assert [u.id for u in units][:4] == ["anode/MNIST/NODE/seed0", "anode/MNIST/ANODE-p1/seed0",
                                         "anode/MNIST/ANODE-p5/seed0", "anode/MNIST/ANODE-p10/seed0"]
    assert len(units) == 3 * 4 + 2  # 3 of 5 repetitions of 4 variants, 2 of 5 instability seeds
    store = Store("full", tmp_path / "results")
    ctx = plan.Context(store, torch.device("cpu"), Deadline(), progress=False)
    plan.run_unit(units[0], ctx)
    assert units[0].status(store).state == plan.DONE
    calls.clear()
    anode.run.image_classification(profile, "MNIST", "cpu", store.root, progress=False)
    assert "NODE-seed0" not in calls and "ANODE-p1-seed0" in calls  # the plan's run is the notebook's run


# ------------------------------------------------------------------------------------------ the dry run

@pytest.mark.slow
def test_a_dry_run_of_a_whole_piece_keeps_a_60_second_deadline(tmp_path):
    from robustode.chapters import robustness

    if not robustness.config.available("MNIST")[0]:
        pytest.skip("MNIST not in data/")
    from robustode.paths import data_dir

    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": PY}
    start = time.time()
    done = subprocess.run(["bash", str(ROOT / "tools" / "device_run.sh"), "60", "--dry-run", "--data", str(data_dir()),
                           "--chapters", "robustness", "anode", "attention"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert time.time() - start <= 61, done.stdout[-3000:]
    assert done.returncode in (0, 3), done.stdout[-3000:] + done.stderr[-3000:]
    _within_limits(out)
    assert "[piece] done" in (out / "piece.log").read_text()


def test_an_anode_unit_does_not_start_an_evaluation_that_cannot_finish(tmp_path):
    from robustode.chapters import anode
    from robustode.core.budget import Deadline, OutOfBudget
    from robustode.plan import checkpoint_epoch

    cfg = anode.config._config(piece.tiny_profile(), "images")
    g = torch.Generator().manual_seed(0)
    data = ((torch.rand(8, 1, 14, 14, generator=g), torch.randint(0, 10, (8,), generator=g)),
            (torch.rand(4, 1, 14, 14, generator=g), torch.randint(0, 10, (4,), generator=g)))
    checkpoint = tmp_path / "NODE.pt"
    variant = {"filters": 2, "augment_dim": 0}
    with pytest.raises(OutOfBudget, match="evaluation"):
        anode.run._train_variant("MNIST", "NODE", variant, {**cfg, "batch_size": 8}, 0, data, torch.device("cpu"),
                             checkpoint, False, "NODE", Deadline(3600), 0.0, evaluate_estimate=1e9)
    assert checkpoint_epoch(checkpoint) == cfg["epochs"]  # trained and kept: the next piece goes straight to testing
    metrics = anode.run._train_variant("MNIST", "NODE", variant, {**cfg, "batch_size": 8}, 0, data, torch.device("cpu"),
                                   checkpoint, False, "NODE", Deadline(3600), 0.0, evaluate_estimate=1.0)
    assert metrics["test"]["failure"] is None and len(metrics["history"]["epochs"]) == cfg["epochs"]


def test_a_piece_reads_a_private_copy_of_the_kits_data_so_the_kit_never_grows(tmp_path):
    kit = tmp_path / "repo" / ".device"
    _data_dir(kit / "data")
    (kit / "data" / "MNIST" / "raw" / "left-over-unpacked").write_bytes(b"z" * 1000)  # only the .gz are copied
    before = sorted((p.relative_to(kit), p.stat().st_size) for p in kit.rglob("*"))
    staged = piece._stage_data(kit, None)
    try:
        assert kit not in staged.parents and staged != kit / "data"
        assert sorted(p.name for p in staged.rglob("*.gz")) == sorted(p.name for p in (kit / "data").rglob("*.gz"))
        assert not list(staged.rglob("left-over-unpacked"))
        (staged / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"u" * 100_000)  # what torchvision does
        assert sorted((p.relative_to(kit), p.stat().st_size) for p in kit.rglob("*")) == before
    finally:
        import shutil

        shutil.rmtree(staged)
