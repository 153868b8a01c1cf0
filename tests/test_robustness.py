import pytest
import torch
from torch import nn

from robustode.chapters import robustness
from robustode.cli import main
from robustode.core.defences import FeatureDenoising, InputRandomisation
from robustode.core.evaluation import sanity_checks
from robustode.core.noise import NoiseAugmentation, gaussian_noise
from robustode.core.odeblock import ODEBlock
from robustode.core.regularisers import SteadyState, SteadyStateRegulariser, steady_state_loss
from robustode.data.images import data_missing
from robustode.models import build_model, count_parameters
from robustode.models.robust import ConvField, build
from robustode.paths import data_dir
from robustode.store import Store


@pytest.mark.parametrize("name, count", [("CNN", 141_130), ("ODENet", 142_410), ("TisODE", 141_130)])
def test_mnist_models_have_the_authors_parameter_counts(name, count):
    assert count_parameters(build_model(name, "MNIST")) == count


def test_params_command_prints_the_three_mnist_counts(capsys):
    assert main(["params", "CNN", "ODENet", "TisODE", "--dataset", "MNIST"]) == 0
    out = capsys.readouterr().out
    for count in ("141,130", "142,410"):
        assert count in out
    assert out.count("141,130") == 2


def test_three_channel_variants_only_change_the_first_conv():
    assert count_parameters(build("CNN", "SVHN")) - count_parameters(build("CNN", "MNIST")) == 2 * 64 * 9
    assert build("TisODE", "ImgNet10")(torch.rand(2, 3, 64, 64)).shape == (2, 10)


def test_solvers_are_euler_with_the_authors_steps():
    odenet, tisode = build("ODENet").middle, build("TisODE").middle.block
    assert (odenet.method, odenet.step_size) == ("euler", 0.1)
    assert (tisode.method, tisode.step_size) == ("euler", 0.05)
    assert odenet.times.tolist() == tisode.times.tolist() == [0.0, 1.0]


def test_tisode_dynamics_ignore_time_but_odenet_dynamics_do_not():
    h = torch.randn(2, 64, 5, 5)
    tis, ode = ConvField(time_dependent=False), ConvField(time_dependent=True)
    assert torch.equal(tis(torch.tensor(0.0), h), tis(torch.tensor(0.7), h))
    assert not torch.allclose(ode(torch.tensor(0.0), h), ode(torch.tensor(0.7), h))


class Constant(nn.Module):
    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, t, h):
        return torch.full_like(h, self.value)


def test_steady_state_term_is_zero_for_zero_dynamics():
    block = ODEBlock(Constant(0.0), method="euler", step_size=0.05)
    assert steady_state_loss(block, torch.randn(3, 4)).item() == 0.0


def test_steady_state_term_integrates_the_absolute_field_from_0_9_to_1_5():
    block = ODEBlock(Constant(-2.0), method="euler", step_size=0.05)
    assert steady_state_loss(block, torch.randn(3, 4)).item() == pytest.approx(0.6 * 2.0, rel=1e-5)


def test_steady_state_wrapper_keeps_the_state_at_0_9_and_predicts_like_the_block():
    torch.manual_seed(0)
    block = ODEBlock(ConvField(8, time_dependent=False), method="euler", step_size=0.05)
    wrapped = SteadyState(block).train()
    h0 = torch.randn(2, 8, 5, 5)
    out = wrapped(h0)
    states = block.trajectory(h0, torch.tensor([0.0, 0.9, 1.0]))
    assert torch.allclose(out, states[-1], atol=1e-6)
    assert torch.allclose(wrapped.z_start, states[1], atol=1e-6)
    assert torch.allclose(wrapped.eval()(h0), out, atol=1e-6)


def test_steady_state_regulariser_switches_on_at_its_epoch_with_weight():
    torch.manual_seed(0)
    model = build("TisODE", width=8).train()
    model(torch.rand(2, 1, 28, 28))
    reg = SteadyStateRegulariser(weight=0.01, start_epoch=5)
    assert reg(model, None, 4) is None
    term = reg(model, None, 5)
    assert term.item() == pytest.approx(0.01 * model.middle.penalty().item())
    assert term.requires_grad
    with pytest.raises(ValueError, match="no SteadyState"):
        reg(build("CNN", width=8), None, 5)


def test_gaussian_noise_has_the_stated_scale_on_the_0_255_axis_and_is_clamped():
    x = torch.full((200, 1, 28, 28), 0.5)
    noisy = gaussian_noise(x, 25, torch.Generator().manual_seed(0))
    assert (noisy - x).std().item() == pytest.approx(25 / 255, rel=0.02)
    loud = gaussian_noise(x, 300, torch.Generator().manual_seed(0))
    assert loud.min() == 0.0 and loud.max() == 1.0


def test_noise_augmentation_noises_half_the_images_with_sigmas_from_the_list():
    assert NoiseAugmentation().p == 0.5 and NoiseAugmentation().sigmas == (50.0, 75.0, 100.0)
    x = torch.full((2000, 1, 28, 28), 0.5)
    levels = torch.tensor([5.0, 10.0, 20.0])  # small enough that clamping to [0, 1] never bites
    noisy = NoiseAugmentation(0.5, levels.tolist())(x, torch.Generator().manual_seed(0))
    sd = (noisy - x).flatten(1).std(1) * 255
    clean = sd == 0
    assert 0.45 < clean.float().mean().item() < 0.55
    nearest = levels[(sd[~clean, None] - levels).abs().argmin(1)]
    assert ((sd[~clean] - nearest).abs() < 0.1 * nearest).all()
    assert set(nearest.tolist()) == set(levels.tolist())


def test_input_randomisation_resizes_once_per_batch_and_pads_each_image_at_its_own_offset():
    x = torch.ones(64, 1, 28, 28)
    torch.manual_seed(3)
    out = InputRandomisation(extra=4)(x)
    assert out.shape == (64, 1, 32, 32)
    ones = out[:, 0] == 1
    sides = {int(ones[i].any(1).sum()) for i in range(64)}
    assert len(sides) == 1 and 28 <= sides.pop() <= 31  # one size r in {28, ..., 31} for the whole batch
    # every image is an r x r block of the (resized) image in a zero canvas, the block's corner varies by image
    r = int(ones[0].any(1).sum())
    corners = set()
    for i in range(64):
        rows, cols = ones[i].any(1).nonzero().squeeze(1), ones[i].any(0).nonzero().squeeze(1)
        assert int(ones[i].sum()) == r * r and out[i, 0][~ones[i]].abs().sum() == 0
        assert rows.max() - rows.min() + 1 == r and cols.max() - cols.min() + 1 == r
        corners.add((int(rows.min()), int(cols.min())))
    assert len(corners) > 1 or r == 32


def test_feature_denoising_starts_as_the_identity():
    h = torch.randn(2, 16, 7, 7)
    for kind in ("nonlocal", "mean"):
        assert torch.equal(FeatureDenoising(16, kind)(h), h)


def test_sanity_checks_flag_pgd_weaker_than_fgsm_and_autoattack_weaker_than_pgd():
    metrics = {
        "faithful": {"fgsm": {"0.3": 0.5}, "pgd": {"0.3": 0.6}}, "attack_images": 1000,
        "strong": {"0.3": {"by_steps": {"10": 0.2, "20": 0.1}, "by_restarts": [0.1, 0.1], "images": 500,
                           "autoattack": {"accuracy": 0.3, "pgd_same_images": 0.1, "images": 10, "config": "standard"}}},
        "sanity": {"eps_one": {"strong": 0.0, "faithful": 0.1}},
    }
    results = {c["check"]: c["ok"] for c in sanity_checks(metrics)}
    assert results["eps = 1 gives 0 %"]
    assert not results["PGD <= FGSM at eps 0.3"]
    assert results["more PGD steps never help (eps 0.3)"]
    assert not results["AutoAttack <= PGD (eps 0.3)"]


def test_heuristic_checks_allow_one_image_and_no_more_while_restarts_are_exact():
    def checks(pgd: float, restarts: list[float]) -> dict:
        metrics = {"faithful": {"fgsm": {"0.3": 0.500}, "pgd": {"0.3": pgd}}, "attack_images": 1000,
                   "strong": {"0.3": {"by_steps": {"10": 0.1}, "by_restarts": restarts, "images": 500}}}
        return {c["check"]: c["ok"] for c in sanity_checks(metrics)}

    assert checks(0.501, [0.1, 0.1])["PGD <= FGSM at eps 0.3"]  # one image of 1,000 above FGSM: allowed
    assert not checks(0.502, [0.1, 0.1])["PGD <= FGSM at eps 0.3"]  # two images: a failed check
    assert not checks(0.4, [0.100, 0.102])["more restarts never help (eps 0.3)"]  # restarts accumulate: exact


def test_one_image_of_slack_holds_for_accuracies_stored_as_float32():
    import numpy as np

    # TisODE seed 1 at paper-short: 124 then 125 of 500 images after 50 and 100 steps, stored as float32 means
    # (0.24799999594688416 and 0.25): one image apart, which the one-image rule allows
    def steps(a: int, b: int) -> bool:
        by_steps = {"50": float(np.float32(a / 500)), "100": float(np.float32(b / 500))}
        metrics = {"faithful": {"fgsm": {}, "pgd": {}}, "strong": {"0.2": {"by_steps": by_steps,
                                                                            "by_restarts": [0.2], "images": 500}}}
        return {c["check"]: c["ok"] for c in sanity_checks(metrics)}["more PGD steps never help (eps 0.2)"]

    assert steps(124, 125) and steps(125, 125) and not steps(124, 126)
    assert all(steps(k, k + 1) for k in range(0, 499)) and not any(steps(k, k + 2) for k in range(0, 498))


def test_table_one_rows_and_epsilons_come_from_the_reference_values():
    rows = robustness.config.table_one_rows("SVHN")
    assert ("gaussian_sigma_35", "gaussian", "35") in rows and ("fgsm_8/255", "fgsm", "8/255") in rows
    assert robustness.config.eps_value("8/255") == pytest.approx(8 / 255)
    assert robustness.config.eps_grid(robustness.config.config("quick"), "pgd")[-2:] == ["0.2", "0.3"]


def test_an_unknown_model_or_dataset_is_rejected_before_any_work():
    with pytest.raises(ValueError, match="choose one of"):
        robustness.run.ensure_runs("quick", ["ResNet152"])
    with pytest.raises(ValueError, match="MNIST, SVHN, ImgNet10"):
        robustness.config.config("quick", "CIFAR100")


needs_mnist = pytest.mark.skipif(not robustness.config.available("MNIST")[0], reason="MNIST not in data/")


def tiny_profile() -> dict:
    from robustode.profiles import load_profile

    prof = load_profile("quick")
    section = prof["robustness"]
    section["common"].update(width=4, train_size=64, val_size=32, epochs=1, batch_size=32, steady_start_epoch=0)
    section["evaluation"].update(noise_images=64, attack_images=8)
    section["evaluation"]["strong"].update(images=4, steps=[2, 3], restarts=2)
    section["evaluation"]["autoattack"].update(images=4, overrides={"apgd.n_iter": 2, "apgd_targeted.n_iter": 2,
                                                                     "apgd_targeted.n_target_classes": 1})
    section["evaluation"]["sanity"].update(images=4, solver_steps=[0.25])
    section["defences"].update(randomise=["TisODE"], steps=2)
    return prof


@needs_mnist
@pytest.mark.slow
def test_a_tiny_run_writes_results_that_the_tables_read_back(monkeypatch, tmp_path):
    monkeypatch.setenv("ROBUSTODE_DATA", str(data_dir()))  # the real data, an isolated results folder
    monkeypatch.setenv("ROBUSTODE_ROOT", str(tmp_path))
    results_tmp = tmp_path
    runs = robustness.run.ensure_runs(tiny_profile(), ["TisODE"], "MNIST", "cpu", results_tmp / "r", progress=False)
    metrics = runs[0]["metrics"]
    assert metrics["history"]["epochs"][0]["iterations"] == 2
    assert set(metrics["faithful"]["pgd"]) >= {"0.2", "0.3"} and "100.0" in metrics["noise"]
    assert {c["check"] for c in metrics["checks"]} >= {"eps = 1 gives 0 %", "no gradient masking by the solver (faithful PGD-0.2)"}
    assert "randomised" in metrics and metrics["field_profile"]["t"][-1] == 2.0
    store = Store("quick", results_tmp / "r")
    rows = robustness.tables.table_one(store, "MNIST", models=("TisODE",))
    assert len(rows) == 5 and all(r["reproduced"].endswith("(n = 1)") for r in rows)  # profile and device: in the caption
    assert all(r["verdict"] == "not comparable" for r in rows)  # the tier is said once, in the caption
    # the randomised copy, and before it the model itself under the same attacks on the same images
    assert [r["model"] for r in robustness.tables.defence_table(store)][1:3] == [
        "TisODE, same images and attacks as the row below", "TisODE + input randomisation"]
    assert set(metrics["without_defence"]["strong"]) == set(metrics["randomised"]["strong"])
    assert set(metrics["faithful_flags"]["fgsm"]) == set(metrics["faithful"]["fgsm"])  # per-image flags for paired tests


def checkpointed_profile(monkeypatch, tmp_path, **common) -> dict:
    """The tiny profile with checkpoints, a two-image AutoAttack, real data and an isolated results folder."""
    monkeypatch.setenv("ROBUSTODE_DATA", str(data_dir()))
    monkeypatch.setenv("ROBUSTODE_ROOT", str(tmp_path))
    prof = tiny_profile()
    prof["robustness"]["common"].update(checkpoint=True, **common)
    prof["robustness"]["evaluation"]["autoattack"]["images"] = 2
    return prof


@needs_mnist
@pytest.mark.slow
def test_the_engine_trains_a_run_with_checkpoints_and_the_plain_loop_stays_the_cpu_default(monkeypatch, tmp_path):
    prof = checkpointed_profile(monkeypatch, tmp_path, epochs=2)
    assert robustness.run.trainer_for(robustness.config.config(prof), torch.device("cpu")) == "plain"
    prof["robustness"]["common"]["trainer"] = "engine"
    run = robustness.run.ensure_runs(prof, ["CNN"], "MNIST", "cpu", tmp_path / "r", progress=False)[0]
    assert run["metrics"]["trainer"] == "engine (eager)" and run["params"]["trainer"] == "engine"
    assert [e["epoch"] for e in run["metrics"]["history"]["epochs"]] == [1, 2]
    # The finished model is kept (re-evaluation needs no retraining); its resume state is dropped.
    assert len(list((tmp_path / "r" / "models" / "robustness-MNIST").glob("CNN-seed0-*.pt"))) == 1
    assert not list((tmp_path / "r" / "checkpoints").rglob("*.pt"))


@needs_mnist
@pytest.mark.slow
def test_seeds_trained_together_give_the_runs_they_give_one_at_a_time(monkeypatch, tmp_path):
    prof = checkpointed_profile(monkeypatch, tmp_path, repetitions=2, trainer="engine")
    prof["robustness"]["defences"].update(randomise=[])
    metrics = {}
    for together in (False, True):
        prof["robustness"]["common"]["concurrent_seeds"] = together
        runs = robustness.run.ensure_runs(prof, ["ODENet"], "MNIST", "cpu", tmp_path / str(together), progress=False)
        metrics[together] = [(r["metrics"]["history"]["epochs"][-1]["loss"], r["metrics"]["clean"]) for r in runs]
        shared = {r["metrics"]["history"]["epochs"][-1].get("concurrent_runs") for r in runs}
        assert shared == ({2} if together else {None})
    assert metrics[True] == metrics[False] and metrics[True][0] != metrics[True][1]


def test_an_unknown_trainer_is_refused_before_any_work():
    prof = tiny_profile()
    prof["robustness"]["common"]["trainer"] = "turbo"
    with pytest.raises(ValueError, match="auto, plain, engine"):
        robustness.run.ensure_runs(prof, ["CNN"], "MNIST", "cpu")


def test_imgnet10_reads_its_ten_class_folders_and_names_what_is_missing(tmp_path):
    from PIL import Image

    from robustode.data.images import DataMissing
    from robustode.data.imgnet10 import IMGNET10_CLASSES, load_imgnet10

    with pytest.raises(DataMissing, match="train/n01440764"):
        load_imgnet10(tmp_path, train=True)
    for split in ("train", "val"):
        for k, wnid in enumerate(sorted(IMGNET10_CLASSES)):
            (tmp_path / split / wnid).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (40, 30), (20 * k, i * 100, 0)).save(tmp_path / split / wnid / f"{i}.JPEG")
    (tmp_path / "train" / "n99999999").mkdir()  # another ImageNet class: ignored
    x, y = load_imgnet10(tmp_path, train=True, size=16, limit=1)
    assert x.shape == (10, 3, 16, 16) and y.tolist() == list(range(10))
    assert robustness.config.available("ImgNet10", str(tmp_path)) == (True, "")


def test_without_data_runs_are_skipped_and_every_table_says_not_run_data_missing(monkeypatch, tmp_path, capsys):
    from robustode.chapters.robustness import figures as figs

    monkeypatch.setenv("ROBUSTODE_DATA", str(tmp_path / "empty"))
    out = tmp_path / "results"
    assert robustness.run.ensure_runs("quick", ["CNN", "ODENet"], "MNIST", "cpu", out, progress=False) == []
    assert not out.exists()
    store = Store("quick", out)
    tables = {
        "table I": robustness.tables.table_one(store, "MNIST"),
        "strong": robustness.tables.strong_table(store, "MNIST"),
        "sanity": robustness.tables.sanity_table(store, "MNIST"),
        "solver": robustness.tables.solver_transfer_table(store, "MNIST"),
        "summary": robustness.tables.run_summary(store, "MNIST"),
        "steadiness": robustness.tables.steadiness_rows(robustness.tables.settling(store, "MNIST")),
        "defences": robustness.tables.defence_table(store, "MNIST"),
    }
    assert all(rows == [] for rows in tables.values())  # the chapter says why in one line instead:
    assert robustness.tables.why_empty(store, "MNIST") == "not run: " + data_missing("MNIST")
    assert all(r["ours (quick)"].startswith("not run: data missing") for r in robustness.tables.authors_spread(store))
    assert robustness.findings.findings(store, "MNIST") == []
    assert figs.accuracy_curves(robustness.tables.curves(store, "MNIST"), "MNIST") is None
    assert figs.field_profiles(robustness.tables.settling(store, "MNIST")) is None
    assert capsys.readouterr().out.count("Figure not drawn") == 2


class StopsAfter:
    """A deadline that lets ``n`` pieces start and refuses the next."""

    def __init__(self, n):
        self.n, self.asked = n, []

    def check(self, seconds, what):
        from robustode.core.budget import OutOfBudget

        self.asked.append(seconds)
        if len(self.asked) > self.n:
            raise OutOfBudget(what)


def test_a_strong_stage_stopped_between_pieces_resumes_to_what_an_unbroken_run_gives(monkeypatch):
    import json

    from robustode.chapters.robustness.run import Pieces, _strong
    from robustode.core.budget import OutOfBudget

    monkeypatch.setattr(robustness.run, "PGD_PIECE", 3)
    monkeypatch.setattr(robustness.run, "AUTOATTACK_PIECE", 2)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
    x = torch.rand(8, 1, 4, 4)
    with torch.no_grad():
        y = model(x).argmax(1)
    cfg = {"strong": {"steps": [2, 5], "restarts": 2, "eot": 1, "images": 8}, "eval_batch": 500,
           "autoattack": {"images": 4, "version": "custom", "attacks": ["apgd-ce"], "overrides": {"apgd.n_iter": 3}}}
    unbroken = _strong(model, x, y, "0.2", cfg, seed=1, pieces=Pieces({}))

    memo, saved = {}, []
    deadline = StopsAfter(4)
    with pytest.raises(OutOfBudget):
        _strong(model, x, y, "0.2", cfg, seed=1, pieces=Pieces(memo, lambda: saved.append(json.dumps(memo)), deadline))
    assert len(saved) == 4 and len(memo) == 4  # each piece saved as it finished: 3 of the main PGD, 1 of 2 steps
    assert {v["kind"] for v in memo.values()} == {"pgd 5x2", "pgd 2x1"}
    resumed_memo = json.loads(saved[-1])  # what a new process reads back from the partial file
    resumed = Pieces(resumed_memo)
    assert _strong(model, x, y, "0.2", cfg, seed=1, pieces=resumed) == unbroken
    assert len(resumed.fresh) == len(resumed_memo) - 4  # the four stored pieces were not recomputed
    assert unbroken["autoattack"]["images_per_part"] == 2 and unbroken["autoattack"]["images"] == 4
    # after the first piece of a kind, a piece is priced at the rate measured on its kind, not at the guess
    assert resumed.per_image("pgd 5x2") == pytest.approx(
        sum(v["seconds"] for v in resumed_memo.values() if v["kind"] == "pgd 5x2") / 8)


class Asked:
    """A deadline that records the seconds each piece is priced at and never stops anything."""

    def __init__(self):
        self.asked: list[tuple[float, str]] = []

    def check(self, seconds: float, what: str) -> None:
        self.asked.append((seconds, what))


def test_the_first_piece_of_a_new_kind_is_priced_by_how_far_the_guesses_were_off_so_far():
    from robustode.chapters.robustness.run import Pieces

    # stored pieces of the PGD (from an earlier call) that took a tenth of their guess
    memo = {f"pgd images {i}": {"kind": "pgd", "images": 10, "seconds": 2.0, "value": [True]} for i in range(3)}
    deadline = Asked()
    pieces = Pieces(memo, deadline=deadline)
    assert pieces.calibration() == 1.0  # nothing guessed yet: no evidence either way
    for i in range(3):  # the stage asks for the stored pieces again, with the same guess as before: not recomputed
        assert pieces.run(f"pgd images {i}", "pgd", 10, 20.0, lambda: pytest.fail("recomputed")) == [True]
    assert pieces.calibration() == pytest.approx(0.1) and deadline.asked == []
    pieces.run("aa images 0", "autoattack", 5, 300.0, lambda: [False])
    assert deadline.asked[0][0] == pytest.approx(30.0)
    # once a piece of the kind is measured, its own rate prices the next one
    memo["aa images 0"]["seconds"] = 50.0
    pieces.run("aa images 1", "autoattack", 5, 300.0, lambda: [False])
    assert deadline.asked[1][0] == pytest.approx(50.0)
    # guesses that were too low raise the price as much
    slow = Pieces({"p": {"kind": "pgd", "images": 10, "seconds": 60.0, "value": []}}, deadline=Asked())
    slow.run("p", "pgd", 10, 20.0, lambda: [])
    slow.run("q", "autoattack", 10, 100.0, lambda: [])
    assert slow.deadline.asked[0][0] == pytest.approx(300.0)


def test_each_piece_a_call_finishes_is_reported_and_resumed_pieces_are_not():
    from robustode.chapters.robustness.run import Pieces

    lines: list[str] = []
    memo = {"pgd images 0-100": {"kind": "pgd", "images": 100, "seconds": 81.0, "value": [True]}}
    pieces = Pieces(memo, what="evaluate ODENet seed 0: strong 0.2", report=lines.append)
    pieces.run("pgd images 0-100", "pgd", 100, 50.0, lambda: pytest.fail("recomputed"))
    assert lines == []
    pieces.run("pgd images 100-200", "pgd", 100, 50.0, lambda: [False])
    assert len(lines) == 1 and lines[0].startswith("evaluate ODENet seed 0: strong 0.2: pgd images 100-200 done in ")
    assert lines[0].endswith("(2 pieces stored)")


def test_a_run_whose_evaluation_is_in_progress_counts_in_table_one_once_its_stages_are_done(monkeypatch, tmp_path):
    from robustode.chapters.robustness.config import config, run_params, training_params
    from robustode.chapters.robustness.run import in_progress, make_model
    from robustode.display import caption

    monkeypatch.setenv("ROBUSTODE_ROOT", str(tmp_path))
    store = Store("paper-short", tmp_path / "r")
    cfg = config("paper-short", "MNIST")
    experiment, run = "robustness-MNIST", "ODENet-seed0"
    history = {"epochs": [{"epoch": 1, "seconds": 60.0, "val_noisy_accuracy": 0.9}], "best_epoch": 1}
    store.save_model(experiment, run, training_params("ODENet", cfg), make_model("ODENet", cfg).state_dict(),
                     history=history, trainer="plain")
    kinds = robustness.config.table_one_rows("MNIST")
    noise = {"metrics": {"clean": 0.99, "noise_images": 10_000,
                         "noise": {str(float(v)): 0.9 for _, k, v in kinds if k == "gaussian"}}, "seconds": 1.0}
    faithful = {"metrics": {"attack_images": 1000, "faithful": {
        kind: {v: 0.5 for _, k, v in kinds if k == kind} for kind in ("fgsm", "pgd")}}, "seconds": 1.0}
    params = run_params("ODENet", cfg)
    store.save_partial(experiment, run, params, {"noise": noise, "device": "cpu (test)"})
    assert in_progress(store, "MNIST") == []  # the noise stage alone is not Table I
    store.save_partial(experiment, run, params, {"noise": noise, "faithful": faithful, "device": "cpu (test)"})
    [going] = in_progress(store, "MNIST")
    assert going["partial"]["left"] == ["strong 0.2", "strong 0.3", "sanity"]
    table = {(r["perturbation"], r["model"]): r for r in robustness.tables.table_one(store, "MNIST")}
    assert table[("FGSM-0.3", "ODENet")]["reproduced"] == "50.0 (n = 1)"
    assert table[("FGSM-0.3", "CNN")]["reproduced"] == "—"
    spread = {(r["attack"], r["model"]): r for r in robustness.tables.authors_spread(store)}
    assert spread[("FGSM-0.3", "ODENet")]["ours (paper-short)"] == "50.0"  # beside the authors' logged runs too
    [summary] = robustness.tables.run_summary(store, "MNIST")
    assert summary["evaluation"] == "in progress: strong 0.2, strong 0.3, sanity left"
    assert "1 more in progress" in caption(store, [experiment])
    assert robustness.tables.strong_table(store, "MNIST") == []  # the strong attacks have not run


def test_a_control_in_its_evaluation_shows_beside_its_model_with_the_strong_attacks_pending(monkeypatch, tmp_path):
    from robustode.chapters.robustness.config import run_params, training_params
    from robustode.chapters.robustness.run import make_model, planned_runs

    monkeypatch.setenv("ROBUSTODE_ROOT", str(tmp_path))
    store = Store("paper-short", tmp_path / "r")
    kinds = robustness.config.table_one_rows("MNIST")
    history = {"epochs": [{"epoch": 1, "seconds": 60.0, "val_noisy_accuracy": 0.9}], "best_epoch": 1}
    planned = {(seed, name): cfg for seed, name, cfg, _ in planned_runs("paper-short")["MNIST"]}
    for name, accuracy in (("ODENet", 0.5), ("ResNet10-tied", 0.25)):
        cfg = planned[(0, name)]
        store.save_model("robustness-MNIST", f"{name}-seed0", training_params(name, cfg),
                         make_model(name, cfg).state_dict(), history=history, trainer="plain")
        noise = {"metrics": {"clean": 0.99, "noise_images": 10_000,
                             "noise": {str(float(v)): 0.9 for _, k, v in kinds if k == "gaussian"}}, "seconds": 1.0}
        faithful = {"metrics": {"attack_images": 1000, "faithful": {
            kind: {v: accuracy for _, k, v in kinds if k == kind} for kind in ("fgsm", "pgd")}}, "seconds": 1.0}
        store.save_partial("robustness-MNIST", f"{name}-seed0", run_params(name, cfg),
                           {"noise": noise, "faithful": faithful, "device": "cpu (test)"})
    rows = {r["model"]: r for r in robustness.tables.controls_table(store, "MNIST")}
    assert list(rows) == ["ODENet", "ResNet10-tied"]  # shown while the strong attacks are still to come
    tied = rows["ResNet10-tied"]
    assert tied["controls"] == "ODENet" and tied["seeds"] == "0 (in progress)"
    assert tied["FGSM-0.3"] == "25.0 (n = 1)" and rows["ODENet"]["FGSM-0.3"] == "50.0 (n = 1)"
    assert tied["strong PGD-0.2"] == "pending" and tied["failed sanity checks"] == "—"  # unchecked is not passed
    [odenet] = robustness.tables.defence_table(store)  # the defence table's base rows likewise
    assert odenet["model"] == "ODENet" and odenet["PGD-0.2"] == "50.0 (n = 1)" and odenet["strong PGD-0.3"] == "pending"


def test_the_device_of_runs_counts_the_runs_that_did_not_record_one():
    from robustode.chapters.robustness.tables import device_of

    def ran_on(device):
        return {"provenance": {"device": device}}

    assert device_of([ran_on("cpu (x86_64, 2 cores)"), ran_on("cpu (arm64)")]) == "cpu"
    assert device_of([ran_on("cuda (H200)"), ran_on("cpu (x86_64)")]) == "cpu and cuda"
    assert device_of([ran_on("cpu (x86_64)"), ran_on("not recorded")]) == "cpu; 1 run's device not recorded"
    assert device_of([ran_on("not recorded")] * 2) == "device not recorded (2 runs)"


@needs_mnist
def test_committed_models_are_attacked_again_in_progress_ones_too_and_a_changed_flag_shows(monkeypatch, tmp_path):
    from robustode.chapters.robustness.config import config, run_params, training_params
    from robustode.chapters.robustness.run import attack_set, load_data, make_model, reevaluate
    from robustode.core import attacks
    from robustode.results import pack_flags

    monkeypatch.setenv("ROBUSTODE_DATA", str(data_dir()))
    monkeypatch.setenv("ROBUSTODE_ROOT", str(tmp_path))
    store = Store("paper-short", tmp_path / "r")
    cfg = config("paper-short", "MNIST")
    torch.manual_seed(0)
    model = make_model("ODENet", cfg).eval()  # untrained: the check compares flags, not accuracy
    xa, ya = attack_set(load_data(cfg, torch.device("cpu")), cfg)
    flags = attacks.fgsm(model, xa[:20], ya[:20], 0.3).robust.tolist()
    experiment, run = "robustness-MNIST", "ODENet-seed0"
    history = {"epochs": [{"epoch": 1, "seconds": 60.0, "val_noisy_accuracy": 0.9}], "best_epoch": 1}
    store.save_model(experiment, run, training_params("ODENet", cfg), model.state_dict(), history=history,
                     trainer="plain")
    kinds = robustness.config.table_one_rows("MNIST")
    noise = {"metrics": {"clean": 0.1, "noise_images": 10_000,
                         "noise": {str(float(v)): 0.1 for _, k, v in kinds if k == "gaussian"}}, "seconds": 1.0}

    def store_flags(stored: list[bool]) -> None:
        faithful = {"metrics": {"attack_images": 1000, "faithful": {
            kind: {v: 0.1 for _, k, v in kinds if k == kind} for kind in ("fgsm", "pgd")},
            "faithful_flags": {"fgsm": {"0.3": pack_flags(stored + [False] * 980)}}}, "seconds": 1.0}
        store.save_partial(experiment, run, run_params("ODENet", cfg), {"noise": noise, "faithful": faithful,
                                                                         "device": "cpu (test)"})

    store_flags(flags)  # the run is still in its evaluation: its strong stages are left
    # the same attack on the same images, recomputed: a gradient sign at a rounding tie may flip on another CPU's
    # arithmetic, so one image of slack (the chapter's own allowance)
    [row] = reevaluate(store, images=20)
    assert (row["model"], row["seed"]) == ("ODENet", 0) and row["images that differ"] <= 1
    store_flags([not f for f in flags[:3]] + flags[3:])  # numbers that are not this model's
    assert 2 <= reevaluate(store, images=20)[0]["images that differ"] <= 4


def test_the_compute_table_reads_what_each_run_has_cost_from_its_records(monkeypatch, tmp_path):
    from robustode.chapters.robustness.config import run_params, training_params
    from robustode.chapters.robustness.run import make_model, planned_runs
    from robustode.chapters.robustness.tables import compute_table

    monkeypatch.setenv("ROBUSTODE_ROOT", str(tmp_path))
    store = Store("paper-short", tmp_path / "r")
    planned = {(seed, name): cfg for seed, name, cfg, _ in planned_runs("paper-short")["MNIST"]}
    epochs = lambda *seconds: {"epochs": [{"epoch": i + 1, "seconds": s} for i, s in enumerate(seconds)],  # noqa: E731
                               "best_epoch": len(seconds)}
    cnn, odenet, tisode = planned[(0, "CNN")], planned[(0, "ODENet")], planned[(0, "TisODE")]
    store.write("robustness-MNIST", "CNN-seed0", params=run_params("CNN", cnn), seed=0, started="2026-01-01T00:00:00+00:00",
                device="cpu", metrics={"history": epochs(*[120.0] * 5), "seconds": {
                    "noise": 30.0, "faithful": 60.0, "strong 0.2": 600.0, "strong 0.3": 120.0, "sanity": 5.0}})
    store.save_model("robustness-MNIST", "ODENet-seed0", training_params("ODENet", odenet),
                     make_model("ODENet", odenet).state_dict(), history=epochs(*[600.0] * 5), trainer="plain")
    store.save_partial("robustness-MNIST", "ODENet-seed0", run_params("ODENet", odenet), {
        "noise": {"metrics": {}, "seconds": 60.0}, "faithful": {"metrics": {}, "seconds": 120.0},
        "strong 0.2 (pieces)": {"pgd 0-100": {"seconds": 300.0}, "pgd 100-200": {"seconds": 300.0}},
        "device": "cpu (x86_64, 2 cores, 1 threads)"})
    path = store.checkpoint("robustness-MNIST", "TisODE-seed0", training_params("TisODE", tisode))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 2, "history": epochs(100.0, 200.0)}, path)

    rows = {r["model"]: r for r in compute_table(store, "MNIST")}
    assert list(rows) == ["CNN", "ODENet", "TisODE"]  # runs not started are left out
    c, o, t = rows["CNN"], rows["ODENet"], rows["TisODE"]
    assert (c["training"], c["noise"], c["strong 0.2"], c["so far"], c["state"]) == (
        "5 epochs, 10 min", "30 s", "10 min", "24 min", "done")
    assert c["randomised"] == "" and t["randomised"] == "—"  # only TisODE is evaluated behind input randomisation
    assert c["device"].startswith("cpu")
    assert (o["training"], o["faithful"], o["strong 0.2"], o["strong 0.3"], o["so far"], o["state"]) == (
        "5 epochs, 50 min", "2 min", "under way: 2 pieces, 10 min", "—", "1 h 03 min", "evaluating")
    assert o["device"] == "cpu (x86_64, 2 cores, 1 thread)"
    assert (t["training"], t["noise"], t["so far"], t["state"], t["device"]) == (
        "epoch 2 of 5: 5 min so far", "—", "5 min", "training", "not recorded")
    assert compute_table(Store("paper-short", tmp_path / "empty"), "MNIST") == []


@needs_mnist
def test_field_profiles_are_read_where_stored_and_computed_from_committed_models_where_not(monkeypatch, tmp_path):
    from robustode.chapters.robustness.config import run_params, training_params
    from robustode.chapters.robustness.run import attack_set, field_profiles_now, load_data, make_model, planned_runs
    from robustode.core.evaluation import field_profile

    monkeypatch.setenv("ROBUSTODE_DATA", str(data_dir()))
    monkeypatch.setenv("ROBUSTODE_ROOT", str(tmp_path))
    store = Store("paper-short", tmp_path / "r")
    planned = {(seed, name): cfg for seed, name, cfg, _ in planned_runs("paper-short")["MNIST"]}
    history = {"epochs": [{"epoch": 1, "seconds": 60.0, "val_noisy_accuracy": 0.9}], "best_epoch": 1}
    torch.manual_seed(0)
    models = {}
    for name in ("CNN", "ODENet", "TisODE-nosteady"):  # untrained weights: the profile is compared, not judged
        cfg = planned[(0, name)]
        models[name] = make_model(name, cfg).eval()
        store.save_model("robustness-MNIST", f"{name}-seed0", training_params(name, cfg), models[name].state_dict(),
                         history=history, trainer="plain")
    stored = {"t": [0.0, 1.0, 2.0], "mean_abs_f": [0.2, 0.1, 0.01]}
    store.write("robustness-MNIST", "ODENet-seed0", params=run_params("ODENet", planned[(0, "ODENet")]), seed=0,
                started="2026-01-01T00:00:00+00:00", device="cpu", metrics={"field_profile": stored})

    found = field_profiles_now(store, "MNIST", "cpu")
    assert list(found) == ["ODENet", "TisODE-nosteady"]  # the CNN has no field; untrained models are left out
    assert found["ODENet"] == {**stored, "source": "stored by the sanity stage"}
    cfg = planned[(0, "TisODE-nosteady")]
    xa, _ = attack_set(load_data(cfg, torch.device("cpu")), cfg)
    direct = field_profile(models["TisODE-nosteady"], xa[: cfg["sanity"]["images"]])  # what its sanity stage stores
    now = found["TisODE-nosteady"]
    assert now["source"] == "computed now from the committed model (200 images)" and now["t"] == direct["t"]
    # the same model, images and solver: equal up to float summation order (rtol 1e-5, far below the 3 digits shown)
    assert now["mean_abs_f"] == pytest.approx(direct["mean_abs_f"], rel=1e-5)
    labels = list(robustness.tables.settling(store, "MNIST", "cpu"))
    assert labels == ["ODENet (seed 0)", "TisODE-nosteady (seed 0)"]  # no authors' checkpoints in paper-short
    [row, _] = robustness.tables.steadiness_rows(robustness.tables.settling(store, "MNIST", "cpu"))
    assert (row["at T = 1"], row["at 2T = 2"], row["ratio 2T / T"]) == ("0.100", "0.010", "0.10")


def test_settling_findings_say_which_models_come_to_rest_slow_down_or_keep_moving():
    from robustode.chapters.robustness.findings import settling_findings

    def prof(at_t, at_2t):
        return {"t": [0.0, 1.0, 2.0], "mean_abs_f": [1.0, at_t, at_2t]}

    moving = {"ODENet, the authors' checkpoint": prof(0.5, 0.52), "TisODE, the authors' checkpoint": prof(0.5, 0.5)}
    mixed = {"TisODE (seed 0)": prof(0.4, 0.02), "ODENet (seed 0)": prof(0.4, 0.12), "X (seed 0)": prof(0.4, 0.4)}
    lines = settling_findings({"full": moving, "paper-short": mixed, "quick": {}})
    assert lines == [
        "Profile `full`: mean |f| at 2T over its value at T ranges from 1.00 to 1.04 over 2 models; none is at rest or "
        "slowing by 2T (ratios under 0.1 or 0.5 would say so).",
        "Profile `paper-short`: mean |f| at 2T over its value at T ranges from 0.05 to 1.00 over 3 models; at rest "
        "(under 0.1): TisODE (seed 0); slowing (under 0.5): ODENet (seed 0).",
    ]


def test_the_authors_checkpoints_field_profiles_come_first_under_their_own_label(monkeypatch, tmp_path):
    monkeypatch.setenv("ROBUSTODE_ROOT", str(tmp_path))
    monkeypatch.setenv("ROBUSTODE_DATA", str(tmp_path / "no-data"))  # own models could not be profiled: none exist
    store = Store("full", tmp_path / "r")
    stored = {"t": [0.0, 1.0, 2.0], "mean_abs_f": [0.46, 0.49, 0.49]}
    for name, metrics in (("CNN", {}), ("TisODE", {"field_profile": stored})):
        store.write("authors-MNIST", name, params={"model": name}, seed=None, started="2026-01-01T00:00:00+00:00",
                    device="cpu", metrics=metrics)
    assert robustness.tables.settling(store, "MNIST") == {
        "TisODE, the authors' checkpoint": {**stored, "source": "stored by the sanity stage"}}
