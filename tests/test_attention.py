import copy
import math

import pytest
import torch

from robustode.chapters import attention as exp
from robustode.chapters.attention import figures as figs
from robustode.cli import main
from robustode.core.timing import cpu_threads, time_forward
from robustode.data.images import data_missing, is_available
from robustode.models import build_model, count_parameters
from robustode.models.attention import ODEFunc, build, sinusoidal_positions
from robustode.paths import data_dir
from robustode.profiles import load_profile
from robustode.reference import reference_values
from robustode.store import Store

TABLE_IV = reference_values()["table_4_parameters"]
PAPER = {"ClassicAttention": "Classic Attention", "ODEAttention": "Neural ODE Attention"}
DATA = data_dir()
needs_mnist = pytest.mark.skipif(not is_available("MNIST"), reason="MNIST not in data/ (.ci/run copies it)")


@pytest.mark.parametrize("dataset", ["MNIST", "FashionMNIST", "CIFAR10", "CIFAR100"])
@pytest.mark.parametrize("name", ["ClassicAttention", "ODEAttention"])
def test_registered_models_have_exactly_table_iv_parameter_counts(name, dataset):
    assert count_parameters(build_model(name, dataset)) == TABLE_IV[PAPER[name]][dataset]


def test_params_command_prints_all_eight_table_iv_counts(capsys):
    assert main(["params", "ClassicAttention", "ODEAttention"]) == 0
    out = capsys.readouterr().out
    for count in ("5,387", "5,899", "17,509", "3,531", "3,659", "6,629"):
        assert count in out


def test_text_faithful_qkv_variants_add_three_hidden_squared_per_attention():
    # encoder Linear(28 -> h) + decoder Linear(h -> 10) [+ field 2h^2 + 4h] + 3 h^2 per time point
    classic = 28 * 128 + 128 + 3 * 128 * 128 + 128 * 10 + 10
    ode = 28 * 32 + 32 + (2 * 32 * 32 + 4 * 32) + 4 * 3 * 32 * 32 + 32 * 10 + 10
    assert count_parameters(build_model("ClassicAttention-QKV", "MNIST")) == classic == 54154
    assert count_parameters(build_model("ODEAttention-QKV", "MNIST")) == ode == 15722


def test_sinusoidal_positions_add_no_parameters():
    for name in ("ClassicAttention", "ODEAttention"):
        assert count_parameters(build_model(f"{name}-PE", "CIFAR100")) == TABLE_IV[PAPER[name]]["CIFAR100"]


@pytest.mark.parametrize("name, times", [("ClassicAttention", 1), ("ODEAttention", 4), ("ODEAttention-QKV", 4)])
def test_attention_weights_are_distributions_over_rows_at_each_time_point(name, times):
    model = build_model(name, "MNIST").eval()
    logits, weights = model.attend(torch.rand(3, 1, 28, 28))
    assert logits.shape == (3, 10)
    assert weights.shape == (3, times, 28)
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(3, times))


def test_without_positions_the_models_cannot_tell_row_order_apart():
    x = torch.rand(2, 1, 28, 28)
    shuffled = x[:, :, torch.randperm(28)]
    for name in ("ClassicAttention", "ODEAttention"):
        plain, placed = build_model(name, "MNIST").eval(), build_model(f"{name}-PE", "MNIST").eval()
        with torch.no_grad():
            torch.testing.assert_close(plain(x), plain(shuffled), rtol=1e-4, atol=1e-5)
            assert not torch.allclose(placed(x), placed(shuffled), atol=1e-4)


def test_sinusoidal_table_matches_its_formula():
    table = sinusoidal_positions(5, 8)
    assert table[3, 2].item() == pytest.approx(math.sin(3 / 10000 ** (2 / 8)))
    assert table[3, 3].item() == pytest.approx(math.cos(3 / 10000 ** (2 / 8)))


def test_ode_attention_counts_evaluations_and_needs_more_for_a_tighter_tolerance():
    x = torch.rand(2, 1, 28, 28)
    nfe = []
    for tol in (1e-2, 1e-6):
        torch.manual_seed(0)
        model = build("ODEAttention", "MNIST", rtol=tol, atol=tol).eval()
        with torch.no_grad():
            model(x)
        nfe.append(model.nfe_forward)
    assert 0 < nfe[0] < nfe[1]


def test_cifar_images_are_read_as_single_channel_rows():
    rgb = torch.rand(2, 3, 32, 32)
    grey = exp.run.single_channel(rgb)
    assert grey.shape == (2, 1, 32, 32)
    assert build("ClassicAttention", "CIFAR10")(grey).shape == (2, 10)
    with pytest.raises(ValueError, match="single-channel"):
        build("ClassicAttention", "CIFAR10")(rgb)


def test_support_weighted_recall_equals_accuracy():
    logits = torch.randn(300, 10)
    y = torch.randint(0, 10, (300,))
    m = exp.run.classification_metrics(logits, y)
    assert m["recall"] == pytest.approx(m["accuracy"])
    assert m["macro"]["recall"] != pytest.approx(m["accuracy"])
    assert set(m["per_class"]) == {str(c) for c in range(10)}


def test_attention_statistics_separate_one_row_from_uniform_attention():
    one_hot = torch.zeros(5, 1, 28)
    one_hot[:, 0, 3] = 1.0
    uniform = torch.full((5, 1, 28), 1 / 28)
    focused, spread = exp.run.attention_statistics(one_hot), exp.run.attention_statistics(uniform)
    assert focused["normalised_entropy"] == pytest.approx(0.0, abs=1e-6)
    assert focused["max_weight"] == 1.0 and focused["argmax_mode_share"] == 1.0
    assert spread["normalised_entropy"] == pytest.approx(1.0)
    assert spread["effective_positions"] == pytest.approx(28.0)


def test_audit_solves_hidden_sizes_and_keeps_the_built_layout_among_candidates():
    classic = exp.audit.decompositions(TABLE_IV["Classic Attention"], ode=False)
    ode = exp.audit.decompositions(TABLE_IV["Neural ODE Attention"], ode=True)
    assert (classic["hidden"], ode["hidden"]) == (128, 32)
    assert classic["decoder_exact"] and ode["decoder_exact"]
    assert classic["row_width_gain"] == ode["row_width_gain"] == 4  # rows of 32 values against 28
    built = {"encoder_bias": True, "attention": "score vector w . h_i + b", "attention_blocks": 1,
             "extra_layernorms": 1, "extra_scalars": 0}
    assert {**built, "field": "none"} in classic["candidates"]
    assert {**built, "field": exp.audit.TEXT_FIELD.format(h=32)} in ode["candidates"]
    assert not any("h x h" in c["attention"] or "Multihead" in c["attention"] for c in classic["candidates"] + ode["candidates"])


def test_time_forward_reports_the_median_and_the_models_nfe():
    model = build_model("ODEAttention", "MNIST")
    t = time_forward(model, torch.rand(4, 1, 28, 28), warmup=1, repeats=3)
    assert t["batch"] == 4 and t["nfe_forward"] == model.nfe_forward > 0
    assert t["q1_s"] <= t["median_s"] <= t["q3_s"]
    assert t["images_per_s"] == pytest.approx(4 / t["median_s"])
    with pytest.raises(ValueError, match="warmup"):
        time_forward(model, torch.rand(1, 1, 28, 28), warmup=0)


def test_cpu_threads_sets_the_count_and_restores_it_even_after_an_error():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # the autouse fixtures may have set 1 already: start from a count the block changes
        with pytest.raises(RuntimeError, match="inside"):
            with cpu_threads(1):
                assert torch.get_num_threads() == 1
                raise RuntimeError("inside")
        assert torch.get_num_threads() == 2
        with cpu_threads(None):
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_mixed_precision_is_cuda_only_and_prefers_what_the_gpu_supports(monkeypatch):
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert exp.config.autocast_dtype("auto", cpu) is None and exp.config.autocast_dtype("bf16", cpu) is None
    assert exp.config.autocast_dtype("off", cuda) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert exp.config.autocast_dtype("auto", cuda) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert exp.config.autocast_dtype("auto", cuda) == torch.float16  # with a GradScaler in the training loop
    assert exp.config.autocast_dtype("fp16", cuda) == torch.float16 and exp.config.autocast_dtype("bf16", cuda) == torch.bfloat16


def test_the_field_keeps_the_solver_state_in_float32_under_autocast():
    field = ODEFunc(8)
    h = torch.randn(2, 3, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert field(torch.tensor(0.0), h).dtype == torch.float32


def test_training_under_bf16_autocast_solves_in_float32_and_learns():
    from robustode.core.training import TrainSpec, train

    model = build_model("ODEAttention", "MNIST")
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    history = train(model, lambda epoch: [(x, y)], TrainSpec(epochs=3, lr=1e-2, autocast_dtype=torch.bfloat16), progress=False)
    assert history.failure is None and history.epochs[-1]["loss"] < history.epochs[0]["loss"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        states = model.states(model.encoder(x[:, 0]))
    assert states.dtype == torch.float32 and states.shape == (4, 16, 28, 32)


def test_config_rejects_unknown_models_and_bad_sizes_before_any_work():
    profile = load_profile("quick")
    bad = copy.deepcopy(profile)
    bad["attention"]["runs"][0]["models"] = ["Transformer"]
    with pytest.raises(ValueError, match="ClassicAttention"):
        exp.config.config(bad)
    bad = copy.deepcopy(profile)
    bad["attention"]["epochs"] = 0
    with pytest.raises(ValueError, match="epochs=0"):
        exp.config.config(bad)


def test_pruning_removes_only_runs_the_profile_no_longer_plans(tmp_path):
    folder = tmp_path / "attention-table3"
    folder.mkdir()
    for run in ("A-MNIST-seed0", "B-MNIST-seed0"):
        (folder / f"{run}.json").write_text("{}")
    assert exp.run.prune_unplanned(tmp_path, "attention-table3", {"A-MNIST-seed0"}) == ["B-MNIST-seed0"]
    assert [p.name for p in folder.iterdir()] == ["A-MNIST-seed0.json"]


def _tiny_profile() -> dict:
    profile = load_profile("quick")
    profile["attention"].update(
        runs=[{"models": ["ClassicAttention", "ODEAttention"], "datasets": ["MNIST", "CIFAR10"], "repetitions": 1}],
        train_size=64, val_size=32, test_size=32, epochs=1, batch_size=32, examples=2,
        timing={"warmup": 1, "repeats": 2, "large_batch": 8, "fresh_process": False},
    )
    return profile


def test_with_an_empty_data_folder_the_experiments_run_nothing_and_the_summaries_say_data_missing(results_tmp, monkeypatch):
    monkeypatch.setenv("ROBUSTODE_DATA", str(results_tmp / "empty-data"))
    out = results_tmp / "results" / "quick"
    assert exp.run.table3(_tiny_profile(), "cpu", out, progress=False) == []
    assert exp.run.precision_nfe(_tiny_profile(), out) is None
    store = Store("quick", out)
    for table in (exp.tables.table3_rows, exp.tables.accuracy_rows, exp.tables.timing_ratio_rows, exp.tables.attention_rows,
                  exp.tables.precision_rows):
        assert table(store) == []
    assert exp.tables.per_class_rows(store, "MNIST") == []
    assert exp.tables.why_empty(store, "MNIST") == "not run: " + data_missing("MNIST")
    assert exp.tables.printed_table_checks(store)["mnist_accuracy_text"].startswith("not run: data missing (MNIST")
    findings = exp.findings.findings(store)
    assert all(findings[k][0].startswith("Not run: data missing") for k in ("positions", "attention"))
    assert figs.validation_curves([], "MNIST") is None and figs.mean_attention([], []) is None


def test_a_machine_without_the_data_keeps_results_computed_where_the_data_were(results_tmp, monkeypatch):
    monkeypatch.setenv("ROBUSTODE_DATA", str(results_tmp / "empty-data"))
    out = results_tmp / "results" / "quick"
    kept = [out / "attention-table3" / "ODEAttention-MNIST-seed0.json", out / "attention-precision" / "MNIST.json"]
    stale = out / "attention-table3" / "ODEAttention-SVHN-seed0.json"  # no longer in the plan
    for path in (*kept, stale):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    assert exp.run.table3(_tiny_profile(), "cpu", out, progress=False) == []
    assert exp.run.precision_nfe(_tiny_profile(), out) is None
    assert all(path.exists() for path in kept) and not stale.exists()


@needs_mnist
def test_a_tiny_table3_run_writes_files_that_the_summaries_read(results_tmp, monkeypatch):
    monkeypatch.setenv("ROBUSTODE_DATA", str(DATA))
    out = results_tmp / "results" / "quick"
    runs = exp.run.table3(_tiny_profile(), "cpu", out, progress=False)
    assert {r["params"]["model"] for r in runs} == {"ClassicAttention", "ODEAttention"}
    assert all(r["metrics"]["sizes"] == {"train": 64, "val": 32, "test": 32} for r in runs)
    store = Store("quick", out)
    rows = exp.tables.table3_rows(store)
    mnist = [r for r in rows if r["dataset"] == "MNIST"]
    assert len(mnist) == 2 * len(exp.config.METRICS) and all(r["verdict"].startswith("not comparable") for r in mnist)
    assert not any(r["dataset"] == "CIFAR10" for r in rows) or is_available("CIFAR10")
    assert {r["batch"] for r in exp.tables.timing_rows(store)} == {1, 8}
    assert len(exp.tables.attention_rows(store)) == 2
