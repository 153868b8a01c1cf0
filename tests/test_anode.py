import json

import pytest
import torch

from robustode.chapters import anode
from robustode.chapters.anode import figures as anode_figures
from robustode.cli import main
from robustode.core.timing import cpu_threads
from robustode.data.images import data_missing
from robustode.models import build_model, count_parameters
from robustode.models.conv_anode import TABLE_1_MODELS, ConvDynamics, ConvODENet
from robustode.profiles import load_profile
from robustode.reference import reference_values
from robustode.store import Store


@pytest.fixture(autouse=True)
def _one_thread():
    """These tensors are tiny: on a busy 2-core machine a second OpenMP thread only adds waiting."""
    with cpu_threads(1):
        yield


COUNTS = {("ConvNODE", "MNIST"): 85_316, ("ConvANODE", "MNIST"): 85_462,
          ("ConvNODE", "CIFAR10"): 173_611, ("ConvANODE", "CIFAR10"): 172_452}


@pytest.mark.parametrize(("name", "dataset"), list(COUNTS))
def test_registered_conv_models_have_dupont_et_als_parameter_counts(name, dataset):
    assert count_parameters(build_model(name, dataset)) == COUNTS[(name, dataset)]


def test_the_counts_agree_with_the_reference_values_file():
    ref = reference_values()["anode_parameters"]
    assert ref["MNIST"] == {"NODE_92_filters": 85_316, "ANODE_64_filters_p5": 85_462}
    assert ref["CIFAR10"] == {"NODE_125_filters": 173_611, "ANODE_64_filters_p10": 172_452}


def test_params_command_prints_the_four_counts(capsys):
    assert main(["params", "ConvNODE", "ConvANODE"]) == 0
    out = capsys.readouterr().out
    for count in ("85,316", "85,462", "173,611", "172,452"):
        assert count in out


def test_registered_models_solve_with_dopri5_at_1e_3_with_the_adjoint():
    block = build_model("ConvANODE", "MNIST").block
    assert (block.method, block.rtol, block.atol, block.max_num_steps, block.adjoint) == ("dopri5", 1e-3, 1e-3, 1000, True)


def test_the_time_dependent_field_keeps_the_shape_and_depends_on_time():
    field = ConvDynamics(channels=3, num_filters=5)
    h = torch.randn(2, 3, 6, 6)
    at0, at1 = field(torch.tensor(0.0), h), field(torch.tensor(1.0), h)
    assert at0.shape == h.shape
    assert not torch.allclose(at0, at1)


def test_an_autonomous_field_ignores_time():
    field = ConvDynamics(channels=3, num_filters=5, time_dependent=False)
    h = torch.randn(2, 3, 6, 6)
    assert torch.equal(field(torch.tensor(0.0), h), field(torch.tensor(1.0), h))


def test_anode_appends_p_zero_channels_and_classifies_the_flattened_state():
    model = ConvODENet((1, 8, 8), num_filters=4, augment_dim=3, num_classes=10)
    x = torch.rand(2, 1, 8, 8)
    lifted = model.augment(x)
    assert lifted.shape == (2, 4, 8, 8) and torch.equal(lifted[:, 1:], torch.zeros(2, 3, 8, 8))
    assert model.head.in_features == 4 * 8 * 8
    assert model(x).shape == (2, 10)


def test_adjoint_gradients_approach_backpropagation_through_the_solver():
    x, y = torch.rand(2, 1, 4, 4, dtype=torch.float64), torch.tensor([0, 1])
    grads = []
    for adjoint in (True, False):
        torch.manual_seed(1)
        model = ConvODENet((1, 4, 4), 3, 1, 2, adjoint=adjoint, rtol=1e-5, atol=1e-5).double()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
        assert (model.nfe_backward > 0) == adjoint
    # Not equal: the adjoint solves a second ODE backwards, with its own error (ReLU makes it rough).
    assert (grads[0] - grads[1]).norm() < 0.05 * grads[1].norm()


def _tiny_profile(**images) -> dict:
    variants = {"NODE": {"filters": 3, "augment_dim": 0}, "ANODE-p2": {"filters": 2, "augment_dim": 2}}
    return {"name": "quick", "anode": {
        "common": {"method": "dopri5", "tol": 1e-3, "max_num_steps": 1000, "lr": 1e-3, "time_dependent": True,
                   "cpu_threads": 1, "checkpoint": False, "resume": False},
        "images": {"datasets": ["MNIST"], "image_size": 6, "train_size": 16, "test_size": 8, "batch_size": 8,
                   "epochs": 1, "repetitions": 1, "eval_batch": 8, "variants": {"MNIST": variants},
                   "table_1": {"MNIST": {"NODE": "NODE", "ANODE": "ANODE-p2"}},
                   "solver_check": {"images": 4, "reference_tol": 1e-6}, **images},
    }}


@pytest.fixture
def fake_mnist(monkeypatch):
    """Random 6x6 'MNIST' so the experiment runs without the data set and in a second."""
    gen = torch.Generator().manual_seed(0)
    data = ((torch.rand(16, 1, 6, 6, generator=gen), torch.randint(0, 10, (16,), generator=gen)),
            (torch.rand(8, 1, 6, 6, generator=gen), torch.randint(0, 10, (8,), generator=gen)))
    monkeypatch.setattr(anode.config, "is_available", lambda name: True)
    monkeypatch.setattr(anode.run, "image_data", lambda dataset, cfg: data)


def test_image_runs_record_per_iteration_loss_and_both_nfes(results_tmp, fake_mnist):
    out = results_tmp / "results" / "quick"
    runs = anode.run.image_classification(_tiny_profile(), "MNIST", "cpu", out, progress=False)
    assert sorted(p.name for p in (out / "anode-MNIST").glob("*.json")) == ["ANODE-p2-seed0.json", "NODE-seed0.json"]
    its = runs[0]["metrics"]["history"]["iterations"]
    assert len(its["loss"]) == len(its["nfe_forward"]) == len(its["nfe_backward"]) == 2
    assert min(its["nfe_forward"]) >= 8 and min(its["nfe_backward"]) >= 8  # dopri5: >= 1 step each way
    assert runs[0]["metrics"]["solver_check"]["prediction_agreement"] >= 0.75


def test_summaries_read_one_row_per_variant_back_from_the_results_files(results_tmp, fake_mnist):
    out = results_tmp / "results" / "quick"
    anode.run.image_classification(_tiny_profile(), "MNIST", "cpu", out, progress=False)
    for summary in (anode.tables.sweep_summary, anode.tables.solver_check_summary, anode.tables.gradient_check_summary):
        assert sorted(row["model"] for row in summary(Store("quick", out), "MNIST")) == ["ANODE-p2", "NODE"]


def test_variants_table_counts_the_models_as_the_profile_builds_them():
    rows = {r["model"]: r for r in anode.tables.variants_table(_tiny_profile(), "MNIST")}
    # NODE, 3 filters, 1x6x6 image, time channel in front of each conv: 1x1 (2->3), 3x3 (4->3), 1x1 (4->1), Linear(36->10)
    assert rows["NODE"]["parameters"] == f"{(2 * 3 + 3) + (4 * 3 * 9 + 3) + (4 + 1) + (36 * 10 + 10):,}"
    assert rows["NODE"]["input"] == "1x6x6"


def test_a_run_over_the_step_budget_is_recorded_as_a_failure_and_the_others_go_on(results_tmp, fake_mnist):
    profile = _tiny_profile()
    profile["anode"]["common"]["max_num_steps"] = 1
    out = results_tmp / "results" / "quick"
    runs = anode.run.image_classification(profile, "MNIST", "cpu", out, progress=False)
    assert [r["metrics"]["failure"] for r in runs] == ["max_num_steps", "max_num_steps"]
    stored = json.loads((out / "anode-MNIST" / "NODE-seed0.json").read_text())
    assert stored["metrics"]["test"]["failure"] == "max_num_steps"
    rows = anode.tables.table_1(Store("quick", out), ["MNIST"], profile["anode"]["images"]["table_1"])
    assert [r["failed runs"] for r in rows] == [1, 1]
    assert all(r["verdict"] == "not run: all 1 runs failed (max_num_steps)" for r in rows)
    assert [r["failed"] for r in anode.tables.sweep_summary(Store("quick", out), "MNIST")] == [1, 1]


def test_missing_data_runs_nothing_and_table_1_says_why(results_tmp, monkeypatch):
    monkeypatch.setattr(anode.config, "is_available", lambda name: False)
    out = results_tmp / "results" / "quick"
    assert anode.run.image_classification(_tiny_profile(), "MNIST", "cpu", out, progress=False) == []
    store = Store("quick", out)
    assert anode.tables.table_1(store, ["MNIST"], {"MNIST": {"NODE": "NODE", "ANODE": "ANODE-p2"}}) == []
    assert anode.tables.why_empty(store, "MNIST") == "not run: " + data_missing("MNIST")


def test_an_empty_data_folder_gives_not_run_rows_and_no_figure_instead_of_raising(results_tmp, monkeypatch, tmp_path):
    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv("ROBUSTODE_DATA", str(empty))
    out = results_tmp / "results" / "quick"
    assert anode.run.image_classification(_tiny_profile(), "MNIST", "cpu", out, progress=False) == []
    store = Store("quick", out)
    for summary in (anode.tables.sweep_summary, anode.tables.solver_check_summary, anode.tables.gradient_check_summary):
        assert summary(store, "MNIST") == []
    assert anode.tables.why_empty(store, "MNIST") == "not run: " + data_missing("MNIST")
    assert anode.tables.failure_summary([]) == []
    assert anode_figures.sweep([], "MNIST, profile quick") is None
    assert anode_figures.instability([], "NODE on MNIST") is None


def test_the_solver_check_error_shrinks_as_the_trained_tolerance_tightens():
    torch.manual_seed(0)
    x, y = torch.rand(4, 1, 6, 6), torch.tensor([0, 1, 2, 3])
    model = ConvODENet((1, 6, 6), 4, 1, 10)
    for p in model.block.field.parameters():
        p.data.mul_(3.0)  # a field with some curvature
    errors = []
    for tol in (1e-1, 1e-2, 1e-4):
        model.block.rtol = model.block.atol = tol
        check = anode.run.solver_check(model, x, y, reference_tol=1e-7)
        assert (model.block.rtol, model.block.atol) == (tol, tol)  # restored after the check
        errors.append(check["state_rel_error_mean"])
    assert errors[0] > errors[1] > errors[2]
    assert 0 < check["gradient_rel_error"] < 0.1 and check["nfe_backward_adjoint"] > 0  # at rtol = atol = 1e-4
    assert all(p.grad is None for p in model.parameters())


def test_unknown_dataset_and_negative_augmentation_fail_before_any_work(results_tmp):
    with pytest.raises(ValueError, match="unknown dataset 'SVHN'; choose one of: MNIST"):
        anode.run.image_classification(_tiny_profile(), "SVHN", "cpu", results_tmp, progress=False)
    bad = _tiny_profile()
    bad["anode"]["images"]["variants"]["MNIST"]["NODE"]["augment_dim"] = -1
    with pytest.raises(ValueError, match="augment_dim must be >= 0"):
        anode.run.image_classification(bad, "MNIST", "cpu", results_tmp, progress=False)


def test_non_positive_sizes_are_rejected_in_one_error():
    with pytest.raises(ValueError, match="batch_size=0"):
        anode.run.image_classification(_tiny_profile(batch_size=0), "MNIST", "cpu", None, progress=False)


@pytest.mark.parametrize("name", ["quick", "full"])
def test_both_profiles_have_an_anode_section_whose_table_1_pairs_exist(name):
    images = load_profile(name)["anode"]["images"]
    for dataset, pair in images["table_1"].items():
        assert set(pair) == {"NODE", "ANODE"}
        assert set(pair.values()) <= set(images["variants"][dataset])
        assert {images["variants"][dataset][v]["augment_dim"] for v in images["variants"][dataset]} >= {0, 1, 5, 10}


def test_full_profile_follows_dupont_et_als_image_protocol():
    section = load_profile("full")["anode"]
    common, images = section["common"], section["images"]
    assert (common["method"], common["tol"], common["max_num_steps"], common["lr"]) == ("dopri5", 1e-3, 1000, 1e-3)
    assert (images["batch_size"], images["epochs"], images["repetitions"]) == (256, 20, 5)
    assert images["image_size"] is None and images["train_size"] is None and images["test_size"] is None
    for dataset, pair in images["table_1"].items():
        for role, variant in pair.items():
            chosen = images["variants"][dataset][variant]
            expected = TABLE_1_MODELS[dataset][role]
            assert (chosen["filters"], chosen["augment_dim"]) == (expected["num_filters"], expected["augment_dim"])
