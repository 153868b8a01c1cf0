"""Controls for the survey's confounds (issue 13): the control models, their run-plan units and their tables."""

import copy

import pytest
import torch

from robustode import plan
from robustode.chapters import attention, robustness
from robustode.core.evaluation import sanity_checks
from robustode.core.regularisers import SteadyState
from robustode.data.images import is_available
from robustode.models import build_model, count_parameters, model_spec
from robustode.models.robust import ResidualFlow, RobustNet
from robustode.paths import data_dir
from robustode.profiles import load_profile
from robustode.reference import reference_values
from robustode.results import config_key
from robustode.store import Store

needs_mnist = pytest.mark.skipif(not is_available("MNIST"), reason="MNIST not in data/")
DATA = data_dir()  # resolved before any fixture moves the project root (results_tmp)


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a loaded 2-core machine two threads made the attack tests ten times slower."""
    from robustode.core.timing import cpu_threads

    with cpu_threads(1):
        yield


# ---------------------------------------------------------------------------------------------- the robustness controls

@pytest.mark.parametrize("name, count", [
    ("ResNet10-tied", 142_410),     # ODENet's count: the same field, applied ten times
    ("ResNet10-untied", 819_786),   # 10 x 75,264 (ODENet's middle) + 67,146 (stem and head)
    ("TisODE-step0.1", 141_130),
    ("ODENet+steady", 142_410),
    ("TisODE-nosteady", 141_130),
    ("ODENet-dopri5", 142_410),
    ("ODENet-aug8", 162_266),       # field on 72 channels (73 with t): +19,744; GroupNorms +32; head +80
])
def test_controls_have_their_stated_parameter_counts_on_mnist(name, count):
    assert count_parameters(build_model(name, "MNIST")) == count


def test_the_untied_resnet_has_ten_times_the_odenets_middle():
    odenet, untied = build_model("ODENet", "MNIST"), build_model("ResNet10-untied", "MNIST")
    assert count_parameters(odenet.middle) == 75_264
    assert count_parameters(untied.middle) == 10 * count_parameters(odenet.middle)


def _discrete_twin(name: str, odenet: RobustNet) -> RobustNet:
    """``name`` (a ResNet10 control) with the ODENet's stem, head and, in every residual step, its field."""
    twin = build_model(name, "MNIST").eval()
    twin.stem.load_state_dict(odenet.stem.state_dict())
    twin.head.load_state_dict(odenet.head.state_dict())
    for field in twin.middle.fields:
        field.load_state_dict(odenet.middle.field.state_dict())
    return twin


@pytest.mark.parametrize("name", ["ResNet10-tied", "ResNet10-untied"])
def test_the_ten_block_resnet_with_the_odenets_field_is_the_odenet_at_euler_step_0_1(name):
    odenet = build_model("ODENet", "MNIST").eval()
    twin = _discrete_twin(name, odenet)
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        h = odenet.middle_input(x)
        # equal up to float32 rounding of torchdiffeq's time grid (its dt is t_{k+1} - t_k, not exactly 0.1)
        assert torch.allclose(twin.middle(h), odenet.middle(h), rtol=0, atol=1e-5)
        assert torch.allclose(twin(x), odenet(x), rtol=0, atol=1e-5)
        odenet.set_solver(0.05)  # a different solver of the same field is far outside that tolerance
        assert (twin(x) - odenet(x)).abs().max() > 100 * 1e-5


def test_the_tied_resnet_shares_one_field_and_the_untied_one_has_a_field_per_step():
    tied, untied = build_model("ResNet10-tied", "MNIST").middle, build_model("ResNet10-untied", "MNIST").middle
    assert isinstance(tied, ResidualFlow) and len(tied.fields) == 1 and tied.blocks == 10 and tied.scale == 0.1
    assert len(untied.fields) == 10 and untied.fields[0].conv1.conv.weight is not untied.fields[1].conv1.conv.weight
    assert torch.allclose(tied.times, torch.arange(10) * 0.1)
    assert not build_model("ResNet10-tied", "MNIST").ode_blocks()  # no solver to change or attack through


def test_the_tisode_ablations_change_one_thing_each():
    def solver(name: str) -> tuple:
        model = build_model(name, "MNIST")
        block = model.ode_blocks()[0]
        steady = any(isinstance(m, SteadyState) for m in model.modules())
        return block.method, block.step_size, block.field.time_dependent, steady

    assert solver("ODENet") == ("euler", 0.1, True, False)
    assert solver("TisODE") == ("euler", 0.05, False, True)
    assert solver("TisODE-step0.1") == ("euler", 0.1, False, True)
    assert solver("ODENet+steady") == ("euler", 0.1, True, True)
    assert solver("TisODE-nosteady") == ("euler", 0.05, False, False)
    dopri = build_model("ODENet-dopri5", "MNIST").ode_blocks()[0]
    assert (dopri.method, dopri.rtol, dopri.atol, dopri.field.time_dependent) == ("dopri5", 1e-3, 1e-3, True)


def test_the_augmented_odenet_appends_zero_channels_and_its_head_reads_them():
    model = build_model("ODENet-aug8", "MNIST").eval()
    h = model.middle_input(torch.rand(3, 1, 28, 28))
    assert h.shape == (3, 72, 13, 13) and torch.equal(h[:, 64:], torch.zeros(3, 8, 13, 13))
    assert model.head[-1].in_features == 72
    with torch.no_grad():
        assert model.middle(h)[:, 64:].abs().sum() > 0  # the flow moves the state into the extra channels


def _cfg(profile: str | dict = "paper-short", **common) -> dict:
    return {**robustness.config.config(profile), **common}  # settings are read-only: a new mapping


def test_the_steady_state_term_is_added_for_exactly_the_models_whose_spec_says_so():
    cfg = _cfg(width=8)
    val = (torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,)))
    with_term = set()
    for name in robustness.config.MODELS:
        spec = robustness.config.steady_state(name)
        holds_block = any(isinstance(m, SteadyState) for m in robustness.run.make_model(name, cfg).modules())
        regularised = robustness.run.train_spec(name, cfg, 0, val).regulariser is not None
        keyed = "steady_weight" in robustness.config.training_params(name, cfg)
        assert spec == holds_block == regularised == keyed, name
        if spec:
            with_term.add(name)
    # TisODE-nosteady starts with "TisODE" and has no term; ODENet+steady does not and has it
    assert with_term == {"TisODE", "TisODE+denoise", "TisODE-step0.1", "ODENet+steady"}
    assert model_spec("TisODE").steady_state and not model_spec("TisODE-nosteady").steady_state


def test_solver_transfer_lists_euler_steps_then_the_deployed_adaptive_solver():
    transfer = robustness.run.transfer_solvers
    assert transfer(0.1, [0.025, 0.05, 0.1, 0.25, 0.5]) == [0.025, 0.05, 0.1, 0.25, 0.5]  # Euler models as before
    assert transfer(0.05, [0.25, 0.1]) == [0.05, 0.1, 0.25]
    assert transfer("dopri5", [0.1, 0.05, 0.1]) == [0.05, 0.1, "dopri5"]


def test_a_model_switches_between_adaptive_and_euler_solvers_and_refuses_others():
    model = build_model("ODENet-dopri5", "MNIST")
    euler = robustness.run.with_solver(model, 0.1)
    block = euler.ode_blocks()[0]
    assert (block.method, block.step_size) == ("euler", 0.1) and model.deployed_solver() == "dopri5"
    back = robustness.run.with_solver(euler, "dopri5").ode_blocks()[0]
    assert (back.method, back.step_size, back.rtol) == ("dopri5", None, 1e-3)
    assert build_model("TisODE", "MNIST").deployed_solver() == 0.05 and build_model("CNN", "MNIST").deployed_solver() is None
    with pytest.raises(ValueError, match="Euler step"):
        model.set_solver("rk4")
    with pytest.raises(ValueError, match="positive"):
        model.set_solver(-0.1)


def test_dopri5_is_attacked_through_euler_steps_and_the_adaptive_solver_and_judged_by_each():
    torch.manual_seed(0)
    cfg = _cfg(width=4, eval_batch=3)
    cfg["sanity"] = {**cfg["sanity"], "images": 3, "solver_steps": [0.1, 0.05]}
    model = robustness.run.make_model("ODENet-dopri5", cfg).eval()
    x, y = torch.rand(4, 1, 14, 14), torch.randint(0, 10, (4,))
    st = robustness.run._solver_transfer(model, x, y, cfg)
    assert st["deployed_step"] == "dopri5" and st["steps"] == [0.05, 0.1, "dopri5"] and st["images"] == 3
    assert set(st["accuracy"]) == {"0.05", "0.1", "dopri5"}
    assert all(set(row) == {"0.05", "0.1", "dopri5"} for row in st["accuracy"].values())
    assert model.ode_blocks()[0].method == "dopri5"  # the judges are copies
    metrics = {"faithful": {"fgsm": {}, "pgd": {}}, "sanity": {"solver_transfer": st}}
    [check] = sanity_checks(metrics)
    assert check["check"] == "no gradient masking by the solver (faithful PGD-0.2)"
    assert check["detail"].startswith("white-box at step dopri5: ") and "step 0.05:" in check["detail"]


def test_the_engine_is_never_used_for_an_adaptive_solver():
    cfg, cuda = {"trainer": "auto"}, torch.device("cuda")
    trainer = robustness.run.trainer_for
    assert trainer(cfg, cuda, build_model("ODENet", "MNIST")) == "engine (CUDA graphs)"
    assert trainer(cfg, cuda, build_model("ODENet-dopri5", "MNIST")) == "plain"
    assert trainer({"trainer": "engine"}, cuda, build_model("ODENet-dopri5", "MNIST")) == "plain"


# ---------------------------------------------------------------------------------------------- the run plan

# The paper-short main units as they were before the controls existed: their runs are being computed, so their
# results files (keyed by the parameters) and model files (keyed by the training parameters) must keep these keys.
MAIN_KEYS = {"CNN": ("59d66b21e2f3", "9fc4e5e126fb"), "ODENet": ("fa6277473897", "33ddde2d9f84"),
             "TisODE": ("fd00e8b7deb0", "acb3b746121d")}
CONTROLS = ["ResNet10-tied", "ResNet10-untied", "ODENet-aug8", "TisODE-nosteady", "TisODE-step0.1", "ODENet+steady",
            "ODENet-dopri5"]


def test_paper_short_keeps_its_nine_main_units_and_runs_the_controls_after_them_with_one_seed():
    units = [u for u in plan.units("paper-short", torch.device("cpu")) if u.id.startswith("robustness/")]
    main = [f"robustness/MNIST/{m}/seed{s}" for s in range(3) for m in ("CNN", "ODENet", "TisODE")]
    assert [u.id for u in units] == main + [f"robustness/MNIST/{m}/seed0" for m in CONTROLS]
    cfg = robustness.config.config("paper-short")
    for unit in units[:9]:
        name = unit.params["model"]
        assert unit.params == robustness.config.run_params(name, cfg) and unit.params["repetitions"] == 3
        assert (config_key(unit.params), config_key(robustness.config.training_params(name, cfg))) == MAIN_KEYS[name]
        assert unit.run == f"{name}-seed{unit.seed}" and unit.priority == 10 * unit.seed + main.index(unit.id) % 3
    for unit in units[9:]:
        # a control's run has a main run's parameters but for the execution-only seed count and, except for the
        # adaptive solver (where masking is the question), AutoAttack
        name = unit.params["model"]
        aa = {**cfg["autoattack"], "images": 100 if name == "ODENet-dopri5" else 0}
        assert unit.seed == 0 and unit.params == {**robustness.config.run_params(name, cfg), "repetitions": 1,
                                                  "autoattack": aa}
        assert unit.stages == ["noise", "faithful", "strong 0.2", "strong 0.3", "sanity"]


def test_a_control_without_autoattack_is_priced_and_run_without_it():
    cfg = robustness.config.config("paper-short")
    _, seeds, autoattacked = robustness.config.control_plan("paper-short")
    assert (seeds, autoattacked) == (1, ["ODENet-dopri5"])
    tied = robustness.config.control_config(cfg, "ResNet10-tied", seeds, autoattacked)
    dopri = robustness.config.control_config(cfg, "ODENet-dopri5", seeds, autoattacked)
    assert tied["autoattack"]["images"] == 0 and dopri["autoattack"] == cfg["autoattack"]
    assert {k: v for k, v in tied.items() if k not in ("autoattack", "repetitions")} == {
        k: v for k, v in cfg.items() if k not in ("autoattack", "repetitions")}
    for eps in ("0.2", "0.3"):
        assert robustness.run.strong_seconds("ODENet", tied, eps, 1.0, 0.5)["autoattack"] == 0
        with_aa = robustness.run.strong_seconds("ODENet", dopri, eps, 1.0, 0.5)
        assert with_aa["autoattack"] > 0.3 * sum(with_aa.values())  # why it is left out where it is not needed
    # without the key every control keeps AutoAttack, as before it existed
    profile = load_profile("paper-short")
    del profile["robustness"]["controls"]["autoattack"]
    models, seeds, autoattacked = robustness.config.control_plan(profile)
    assert autoattacked == models
    assert robustness.config.control_config(cfg, "ResNet10-tied", seeds, autoattacked)["autoattack"] == cfg["autoattack"]


def test_asking_for_models_by_name_keeps_each_its_own_seed_count():
    found = robustness.run.units("paper-short", torch.device("cpu"), models=["ODENet-dopri5", "ODENet"])
    assert [u.id.split("/", 2)[2] for u in found] == ["ODENet/seed0", "ODENet/seed1", "ODENet/seed2", "ODENet-dopri5/seed0"]


@pytest.mark.parametrize("controls, message", [
    ({"models": ["ResNet152"], "repetitions": 1}, "unknown control model 'ResNet152'"),
    ({"models": ["ResNet10-tied"], "repetitions": 0}, "controls.repetitions must be a positive whole number"),
    ({"models": ["ResNet10-tied"]}, "controls.repetitions must be a positive whole number"),
    ({"models": ["ResNet10-tied", "ResNet10-tied"], "repetitions": 1}, "lists a model twice"),
    ({"models": ["ResNet10-tied"], "repetitions": 1, "seed": 2}, "unknown key(s) in robustness.controls: seed"),
    ({"models": ["ResNet10-tied"], "repetitions": 1, "autoattack": ["ODENet-dopri5"]},
     "controls.autoattack names ODENet-dopri5, not in controls.models"),
    ({"models": ["ResNet10-tied"], "repetitions": 1, "autoattack": "ResNet10-tied"},
     "controls.autoattack must be a list of control models"),
])
def test_a_bad_controls_section_is_one_clear_error_before_any_work(controls, message):
    profile = load_profile("paper-short")
    profile["robustness"]["controls"] = controls
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        robustness.run.units(profile, torch.device("cpu"))


def test_a_model_cannot_be_both_a_main_model_and_a_control():
    profile = load_profile("paper-short")
    profile["robustness"]["models"] = ["CNN", "ODENet-dopri5"]
    with pytest.raises(ValueError, match="both as main models and as controls"):
        robustness.config.config(profile)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_full_keeps_its_attention_units_and_adds_the_controls_after_them(device):
    full = load_profile("full")
    before = copy.deepcopy(full)
    before["attention"]["runs"] = [g for g in full["attention"]["runs"]
                                   if not set(g["models"]) & set(attention.config.CONTROLS)]
    old = attention.run.units(before, torch.device(device))
    new = attention.run.units("full", torch.device(device))
    assert [(u.id, u.params, u.priority) for u in new[: len(old)]] == [(u.id, u.params, u.priority) for u in old]
    added = new[len(old):]
    assert len(added) == 3 * 2 * 3 and min(u.priority for u in added) > max(u.priority for u in old)
    assert {u.params["model"] for u in added} == set(attention.config.CONTROLS)
    assert {u.params["dataset"] for u in added} == {"MNIST", "FashionMNIST"}
    assert {u.seed for u in added} == {0, 1, 2}


# ---------------------------------------------------------------------------------------------- the attention controls

TABLE_IV = reference_values()["table_4_parameters"]


@pytest.mark.parametrize("layout", ["", "-conv"])
@pytest.mark.parametrize("dataset", ["MNIST", "FashionMNIST", "CIFAR10", "CIFAR100"])
def test_both_score_layouts_give_all_eight_table_iv_counts(layout, dataset):
    assert count_parameters(build_model(f"ClassicAttention{layout}", dataset)) == TABLE_IV["Classic Attention"][dataset]
    assert count_parameters(build_model(f"ODEAttention{layout}", dataset)) == TABLE_IV["Neural ODE Attention"][dataset]


def test_classic_attention_at_hidden_32_has_1355_parameters_on_mnist():
    # encoder 28 x 32 + 32, score LayerNorm(32) + Linear(32, 1) = 97, decoder 32 x 10 + 10
    assert count_parameters(build_model("ClassicAttention-32", "MNIST")) == 928 + 97 + 330 == 1_355
    assert build_model("ClassicAttention-32", "MNIST").hidden == build_model("ODEAttention", "MNIST").hidden == 32


@pytest.mark.parametrize("name, position_aware", [("ClassicAttention", False), ("ClassicAttention-conv", True),
                                                  ("ODEAttention", False), ("ODEAttention-conv", True)])
def test_only_the_conv_score_sees_the_order_of_the_rows(name, position_aware):
    torch.manual_seed(0)
    model = build_model(name, "MNIST").eval()
    x, perm = torch.rand(4, 1, 28, 28), torch.randperm(28)
    with torch.no_grad():
        change = (model(x) - model(x[:, :, perm])).abs().max().item()
    # a permutation-invariant model changes by rounding only (~3e-7 seen); the conv score by ~5e-3 or more at init
    assert (change > 1e-3) if position_aware else (change < 1e-5)


def test_the_attention_chapter_builds_the_controls_with_the_profiles_settings():
    cfg = attention.config.config("full")
    classic32 = attention.run.make_model("ClassicAttention-32", "MNIST", cfg)
    ode_conv = attention.run.make_model("ODEAttention-conv", "MNIST", cfg)
    assert classic32.hidden == 32 and count_parameters(classic32) == 1_355
    assert type(ode_conv.attention[0]).__name__ == "ConvScoreAttention" and ode_conv.block.method == cfg["method"]
    with pytest.raises(ValueError, match="unknown attention model"):
        attention.run.make_model("ClassicAttention-64", "MNIST", cfg)


# ---------------------------------------------------------------------------------------------- end to end

def _tiny_with_controls() -> dict:
    from test_robustness import tiny_profile

    prof = tiny_profile()
    prof["robustness"]["controls"] = {"models": ["ResNet10-tied", "ODENet-dopri5"], "repetitions": 1,
                                      "autoattack": ["ODENet-dopri5"]}
    prof["robustness"]["defences"].update(randomise=[])
    return prof


@needs_mnist
@pytest.mark.slow
def test_a_tiny_control_run_goes_through_the_plan_and_shows_beside_its_model(monkeypatch, tmp_path):
    monkeypatch.setenv("ROBUSTODE_DATA", str(DATA))
    monkeypatch.setenv("ROBUSTODE_ROOT", str(tmp_path))
    prof = _tiny_with_controls()
    runs = robustness.run.ensure_runs(prof, ["ODENet", "ResNet10-tied", "ODENet-dopri5"], "MNIST", "cpu",
                                      tmp_path / "r", progress=False)
    by = {r["params"]["model"]: r for r in runs}
    assert list(by) == ["ODENet", "ResNet10-tied", "ODENet-dopri5"] and by["ResNet10-tied"]["params"]["repetitions"] == 1
    dopri = by["ODENet-dopri5"]["metrics"]
    assert dopri["trainer"] == "plain" and dopri["sanity"]["solver_transfer"]["steps"] == [0.25, "dopri5"]
    assert "solver_transfer" not in by["ResNet10-tied"]["metrics"]["sanity"]  # no solver to transfer
    for name, attacked in (("ODENet", True), ("ResNet10-tied", False), ("ODENet-dopri5", True)):
        strong = by[name]["metrics"]["strong"]
        assert strong and all(("autoattack" in s) == attacked for s in strong.values()), name
    store = Store("quick", tmp_path / "r")
    rows = robustness.tables.controls_table(store, "MNIST")
    assert [(r["model"], r["controls"]) for r in rows] == [("ODENet", ""), ("ResNet10-tied", "ODENet"),
                                                          ("ODENet-dopri5", "ODENet")]
    assert rows[1]["parameters"] == "750" and rows[1]["seeds"] == "0"  # width 4
    assert all(r[k].endswith("(n = 1)") for r in rows for k in ("clean", "σ = 100", "FGSM-0.5", "strong PGD-0.3"))
    assert len(robustness.tables.table_one(store, "MNIST", ("ODENet",))) == 5
    assert [r["model"] for r in robustness.tables.defence_table(store)] == ["ODENet"]  # controls stay out
    assert {r["model"].split(" (")[0] for r in robustness.tables.solver_transfer_table(
        store, "MNIST", ("ODENet-dopri5",))} == {"ODENet-dopri5"}


@needs_mnist
def test_a_tiny_attention_control_run_shows_beside_the_models_it_is_compared_with(results_tmp, monkeypatch):
    monkeypatch.setenv("ROBUSTODE_DATA", str(DATA))
    profile = load_profile("quick")
    profile["attention"].update(
        runs=[{"models": ["ODEAttention", "ClassicAttention-32"], "datasets": ["MNIST"], "repetitions": 1}],
        train_size=64, val_size=32, test_size=32, epochs=1, batch_size=32, examples=2,
        timing={"warmup": 1, "repeats": 2, "large_batch": 8, "fresh_process": False})
    out = results_tmp / "results" / "quick"
    attention.run.table3(profile, "cpu", out, progress=False)
    rows = attention.tables.controls_rows(Store("quick", out))
    assert [(r["control"], r["model"]) for r in rows] == [("ClassicAttention-32", "ClassicAttention-32"),
                                                          ("ClassicAttention-32", "ODEAttention"),
                                                          ("ClassicAttention-32", "ClassicAttention")]
    assert [r["parameters"] for r in rows] == ["1,355", "3,531", "5,387"]
    assert rows[0]["layout"] == "hidden 32, LayerNorm + score vector" and rows[0]["test accuracy"].endswith("(n = 1)")
    assert rows[1]["control − model, accuracy"].startswith(("+", "-"))
    assert rows[2]["test accuracy"].startswith("not run") and rows[2]["control − model, accuracy"] == "—"
