"""The authors' checkpoints: safe legacy-format reading, strict mapping into our models, the run-plan unit, the table.

Every pickle here is written by the test itself (``torch.save(..., _use_new_zipfile_serialization=False)`` or
the standard pickler); the authors' files are only read by the slow test, when ``ROBUSTODE_AUTHORS_CHECKPOINTS``
points at a clone of github.com/HanshuYAN/TisODE.
"""

import io
import os
import pickle
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from robustode import cluster, plan
from robustode.chapters.robustness import authors, tables
from robustode.data.images import is_available
from robustode.models.robust import build
from robustode.reference import reference_values
from robustode.store import Store

WIDTH = 8  # small models: the mapping does not depend on the width


def legacy_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=False)
    return buf.getvalue()


# A module tree laid out as the authors' CNN_MNIST (module names and layer order of their mnist/networks.py,
# written here from its description), so that a legacy save of it has their key names.
class AuthorsResBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.norm1 = nn.GroupNorm(width // 2, width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.norm2 = nn.GroupNorm(width // 2, width)

    def forward(self, x):
        out = self.relu(self.norm1(self.conv1(x)))
        return self.relu(self.norm2(self.conv2(out))) + x


class AuthorsCNN(nn.Module):
    def __init__(self, width: int = WIDTH):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 3, 1), nn.GroupNorm(width // 2, width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 4, 2, 1), nn.GroupNorm(width // 2, width), nn.ReLU(inplace=True),
            AuthorsResBlock(width), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10))

    def forward(self, x):
        return self.net(x)


def randomised(model: nn.Module) -> nn.Module:
    """Non-default values everywhere (GroupNorm starts at 1 / 0), so a mix-up of tensors shows."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p))
    return model


# ------------------------------------------------------------------------------------ reading

def test_tensors_are_recovered_exactly_from_a_legacy_module_pickle():
    theirs = randomised(AuthorsCNN())
    record, info = authors.recover_module(legacy_bytes(theirs))
    assert record.type_name.endswith("AuthorsCNN") and info["protocol_version"] == authors.LEGACY_PROTOCOL
    state = record.state()
    assert state.keys() == theirs.state_dict().keys()
    for key, tensor in theirs.state_dict().items():
        assert state[key].dtype == tensor.dtype and torch.equal(state[key], tensor), key  # bit-exact copies
    assert record.modules()["net.1"].attributes["num_groups"] == WIDTH // 2


def test_views_offsets_strides_and_dtypes_are_rebuilt():
    base = torch.arange(24, dtype=torch.float64).reshape(4, 6)
    obj = {"t": base.t(), "row": base[2], "slice": base[1:3, 2:5], "long": torch.tensor([3, -1], dtype=torch.int64),
           "half": torch.tensor([0.5, 2.0], dtype=torch.float16), "mask": torch.tensor([True, False])}
    legacy = authors.read_legacy(legacy_bytes(obj))
    values = {k: authors._value(v, legacy.storages) for k, v in legacy.obj.items()}
    assert len(legacy.storages) == 4  # t, row and slice share one storage
    for key, tensor in obj.items():
        assert values[key].dtype == tensor.dtype and torch.equal(values[key], tensor), key


class Boom:
    """Pickles as a call of ``os.system`` (pickling runs nothing; unpickling with pickle.loads would)."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def hand_written_legacy(obj) -> bytes:
    """The legacy layout by hand: magic number, protocol, system info, object, storage keys (none)."""
    parts = [authors.LEGACY_MAGIC, authors.LEGACY_PROTOCOL,
             {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}, obj, []]
    return b"".join(pickle.dumps(p, protocol=2) for p in parts)


def test_nothing_named_in_the_pickle_is_imported_or_called(tmp_path):
    sentinel = tmp_path / "ran"
    data = hand_written_legacy({"payload": Boom(f"touch {sentinel}"),
                                "class": pickle.loads(pickle.dumps(dict))})  # a plain global reference too
    data = data.replace(b"c__builtin__\ndict\n", b"cnetworks\nCNN\n")  # a module that does not exist here
    assert b"system" in data and b"networks" in data
    before = set(sys.modules)
    legacy = authors.read_legacy(data)
    assert not sentinel.exists()
    assert "networks" not in sys.modules and set(sys.modules) - before == set()
    payload = legacy.obj["payload"]
    assert isinstance(payload, authors.Inert) and payload.name.endswith(".system")  # posix.system / nt.system
    assert payload.args == (f"touch {sentinel}",)
    assert legacy.obj["class"].name == "networks.CNN"
    with pytest.raises(authors.CheckpointError, match="not a whole nn.Module"):
        authors.recover_module(data)
    assert not sentinel.exists()


@pytest.mark.parametrize(("data", "message"), [
    (b"PK\x03\x04rest", "zip-format"),
    (pickle.dumps(123, protocol=2), "magic number 123"),
    (hand_written_legacy({})[:-30], "cannot read"),
])
def test_foreign_or_broken_files_fail_with_one_clear_error(data, message):
    with pytest.raises(authors.CheckpointError, match=message):
        authors.read_legacy(data)


def test_a_truncated_storage_is_reported():
    data = legacy_bytes(torch.arange(10.0))
    with pytest.raises(authors.CheckpointError, match="ends inside storage"):
        authors.read_legacy(data[:-8])


# ------------------------------------------------------------------------------------ mapping

def test_the_authors_cnn_maps_onto_ours_and_computes_the_same_function():
    theirs = randomised(AuthorsCNN()).eval()
    record, _ = authors.recover_module(legacy_bytes(theirs))
    ours = authors.load_weights(build("CNN", "MNIST", width=WIDTH), record, "CNN").eval()
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        # the same operations in the same order; 1e-5 leaves room for a different kernel choice
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-5)


def test_subnormal_weights_are_zeroed_at_load_and_counted(tmp_path):
    """A third of the authors' weights are subnormal (slow on x86); the loader zeroes them and says how many."""
    theirs = randomised(AuthorsCNN(width=64)).eval()
    tiny = torch.finfo(torch.float32).tiny
    with torch.no_grad():
        weight = theirs.net[0].weight
        weight.view(-1)[:7] = torch.tensor([tiny / 2, -tiny / 4, tiny * 2**-20, 1e-45, -1e-45, tiny, 0.0])
    path = tmp_path / "model_best.pth"
    path.write_bytes(legacy_bytes(theirs))
    model, read = authors.load_model("CNN", path)
    assert read["subnormal_weights_zeroed"] == 5  # tiny itself is normal, and a zero was zero already
    loaded = model.stem[0].weight.view(-1)[:7]
    assert loaded[:5].eq(0).all() and loaded[5] == tiny and loaded[6] == 0
    assert all(((p == 0) | (p.abs() >= tiny)).all() for p in model.parameters())
    assert authors.zero_subnormals(model) == 0  # nothing left to zero


@pytest.mark.parametrize("arch", list(authors.KEY_MAP))
def test_every_key_map_covers_exactly_our_model(arch):
    model = build(arch, "MNIST", width=WIDTH)
    ours = [mine for _, mine in authors.KEY_MAP[arch]]
    covered = {k for k in model.state_dict() if any(k.startswith(m + ".") for m in ours)}
    assert covered == set(model.state_dict())
    for mine in ours:
        assert list(model.get_submodule(mine).parameters(recurse=False)), mine  # a layer, not a container


def test_strict_mapping_lists_missing_unexpected_shape_and_setting_mismatches():
    theirs = randomised(AuthorsCNN())
    theirs.net[9] = nn.Linear(WIDTH, 7)  # a shape mismatch
    del theirs.net[6].conv2.weight  # a missing key (the attribute goes, so the state has no such entry)
    theirs.net[6].conv2.register_parameter("weight", None)
    theirs.net.add_module("10", nn.Linear(3, 3))  # unexpected keys
    theirs.net[4].num_groups = 1  # a layer setting that changes the function but not the shapes
    record, _ = authors.recover_module(legacy_bytes(theirs))
    with pytest.raises(authors.CheckpointMismatch) as err:
        authors.load_weights(build("CNN", "MNIST", width=WIDTH), record, "CNN")
    text = str(err.value)
    assert "unexpected keys: net.10.weight, net.10.bias" in text
    assert "missing keys: middle.branch.3.weight" in text
    assert "net.9.weight -> head.2.weight: (7, 8) vs (10, 8)" in text and "net.9.bias -> head.2.bias: (7,) vs (10,)" in text
    assert "net.4 -> stem.4: num_groups 1 vs 4" in text


def test_unknown_architecture_is_rejected():
    record, _ = authors.recover_module(legacy_bytes(AuthorsCNN()))
    with pytest.raises(ValueError, match="unknown architecture 'ResNet'"):
        authors.load_weights(build("CNN", "MNIST", width=WIDTH), record, "ResNet")


# ------------------------------------------------------------------------------------ the run plan

def test_units_are_blocked_without_the_checkpoints(monkeypatch, results_tmp):
    monkeypatch.delenv(authors.ENV, raising=False)
    units = authors.units("full")
    assert [u.id for u in units] == ["authors/MNIST/CNN", "authors/MNIST/ODENet", "authors/MNIST/TisODE",
                                     "authors-randomised/MNIST/CNN", "authors-randomised/MNIST/ODENet",
                                     "authors-randomised/MNIST/TisODE"]
    assert {u.requires() for u in units} == {authors.NOT_GIVEN}
    assert "clone github.com/HanshuYAN/TisODE and set ROBUSTODE_AUTHORS_CHECKPOINTS" in authors.NOT_GIVEN
    rows = plan.plan_rows("full", ["authors"], Store("full", results_tmp / "results" / "full"))
    assert {(r["state"], r["detail"]) for r in rows} == {(plan.BLOCKED, authors.NOT_GIVEN)}
    with pytest.raises(FileNotFoundError, match="not given"):
        units[0].compute(None)


def test_the_plan_takes_the_authors_units_after_the_robustness_chapters_own(monkeypatch):
    monkeypatch.delenv(authors.ENV, raising=False)
    ids = [u.id for u in plan.units("full", "cpu")]
    chapters = [i.split("/")[0] for i in ids]
    last_robustness = max(i for i, c in enumerate(chapters) if c == "robustness")
    first_anode = min(i for i, c in enumerate(chapters) if c == "anode")
    evaluations = [i for i, c in enumerate(chapters) if c == "authors"]
    assert evaluations == [last_robustness + 1 + k for k in range(3)]
    assert [i for i, c in enumerate(chapters) if c == "authors-randomised"] == [evaluations[-1] + 1 + k for k in range(3)]
    # then chapter 3's read-outs: ours (seed 0 of each ODE model), then the authors' two ODE checkpoints
    readouts = [i for i, c in enumerate(chapters) if c in ("readout", "authors-readout")]
    assert readouts == list(range(last_robustness + 7, first_anode))
    assert [chapters[i] for i in readouts[-2:]] == ["authors-readout"] * 2
    assert not any(c == "authors" for c in (i.split("/")[0] for i in (u.id for u in plan.units("paper-short", "cpu"))))
    assert authors.ENV in cluster.PASSED_ENVIRONMENT  # a cluster job sees the clone too


def test_a_path_without_the_files_says_which_file_is_missing(monkeypatch, tmp_path):
    monkeypatch.setenv(authors.ENV, str(tmp_path))
    why = authors.units("full")[2].requires()
    assert why.startswith("authors' checkpoint not found") and "MNIST_tisode_gaus_1/model_best.pth" in why


def test_the_cli_option_sets_the_path(monkeypatch, tmp_path, capsys, results_tmp):
    from robustode.cli import main

    # an empty results folder: committed results of these units would make them read done, whatever the path
    monkeypatch.setenv(authors.ENV, "")  # empty = not given; monkeypatch restores what main() sets
    clone = tmp_path / "clone"
    clone.mkdir()
    assert main(["plan", "--profile", "full", "--only", "authors", "--authors-checkpoints", str(clone)]) == 0
    assert "authors' checkpoint not found" in capsys.readouterr().out


def test_units_resume_from_partial_stages(monkeypatch, tmp_path):
    monkeypatch.setenv(authors.ENV, str(tmp_path))
    unit = authors.units("full")[0]
    store = Store("full", tmp_path / "store")
    assert unit.status(store).state == plan.PENDING and unit.status(store).stages_left == unit.stages
    store.save_partial(unit.experiment, unit.run, unit.params, {"noise": {"metrics": {}, "seconds": 1.0}})
    progress = unit.status(store)
    assert progress.state == plan.PARTIAL and progress.stages_left == unit.stages[1:]


def test_evaluation_settings_come_from_the_named_profile():
    settings = authors.config("full")
    cfg = settings["evaluation"]
    assert settings["evaluation_profile"] == "paper-short"
    assert cfg["strong"]["images"] == 500 and cfg["autoattack"] == {"images": 100, "version": "standard"}
    assert cfg["attack_images"] == 1000 and "0.15" in {str(e) for e in cfg["fgsm_eps"]}
    assert cfg["defences"]["randomise"] == () and cfg["width"] == 64
    with pytest.raises(ValueError, match="unknown experiment"):
        authors.config("quick")


# ------------------------------------------------------------------------------------ the table

def synthetic_metrics(fgsm_03: float) -> dict:
    """A results file's shape with made-up accuracies (a fixture for the table code, not a result)."""
    return {"clean": 0.99, "noise_images": 10_000, "noise": {"0.0": 0.99, "100.0": 0.98}, "attack_images": 1000,
            "faithful": {"fgsm": {"0.15": 0.9, "0.3": fgsm_03, "0.5": 0.2, "0.1": 0.95},
                         "pgd": {"0.2": 0.5, "0.3": 0.1}},
            "strong": {"0.2": {"accuracy": 0.3, "images": 500, "steps": 100, "restarts": 5,
                               "by_steps": {"10": 0.3, "100": 0.35},  # more steps helping: a failed check
                               "by_restarts": [0.35, 0.3],
                               "autoattack": {"accuracy": 0.2, "images": 100, "config": "standard",
                                              "pgd_same_images": 0.3}}}}


def test_table_judges_printed_numbers_compares_with_the_log_in_images_and_says_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.delenv(authors.ENV, raising=False)
    log = reference_values()["authors_mnist_fgsm_runs"]["fgsm_0.3"]["CNN"][0]
    store = Store("full", tmp_path)
    store.write(authors.EXPERIMENT, "CNN", params={"model": "CNN", "sanity": {"tolerance": 0.0}}, seed=None,
                started="now", device="cpu", metrics=synthetic_metrics((log + 0.2) / 100))
    rows = tables.authors_table(store)
    assert len({tuple(r) for r in rows}) == 1  # one set of columns
    cnn = {r["quantity"]: r for r in rows if r["model"] == "CNN"}
    assert cnn["FGSM-0.3"]["here − log (images)"] == "+2"
    assert cnn["FGSM-0.3"]["authors' log, run 1"] == f"{log:.1f}"
    assert cnn["FGSM-0.3"]["reproduced"] == f"{log + 0.2:.1f} (n = 1)"
    assert cnn["FGSM-0.3"]["verdict"].startswith("inconclusive")  # one checkpoint: no spread for an interval
    assert cnn["σ = 100"]["printed"] == "98.7 ± 0.1" and cnn["σ = 100"]["difference [95 % CI]"] == "-0.7"
    assert cnn["σ = 0"]["printed"] == "—" and cnn["σ = 0"]["reproduced"] == "99.0"
    assert "FGSM-0.15" in cnn and "FGSM-0.1" not in cnn
    assert cnn["AutoAttack-0.2 (standard)"]["images"] == "100"
    assert cnn["sanity checks"]["verdict"] == "failed: more PGD steps never help (eps 0.2)"
    others = [r for r in rows if r["model"] != "CNN"]
    assert [r["verdict"] for r in others] == [f"not run: {authors.NOT_GIVEN}"] * 2
    assert tables.authors_table(Store("paper-short", tmp_path)) == []  # no authors section there


# ------------------------------------------------------------------------------------ the real files

REAL = os.environ.get(authors.ENV)


@pytest.mark.slow
@pytest.mark.skipif(not REAL, reason=f"{authors.ENV} not set (a clone of github.com/HanshuYAN/TisODE)")
@pytest.mark.skipif(not is_available("MNIST"), reason="MNIST not in data/")
@pytest.mark.parametrize(("arch", "parameters"), [("CNN", 141_130), ("ODENet", 142_410), ("TisODE", 141_130)])
def test_the_authors_checkpoints_load_and_classify_mnist(arch, parameters):
    from robustode.core.evaluation import accuracy
    from robustode.data.images import load_tensors

    relative = authors.config("full")["checkpoints"][arch]
    model, read = authors.load_model(arch, Path(REAL) / relative)
    assert sum(p.numel() for p in model.parameters()) == parameters  # the counts in the authors' training logs
    x, y = load_tensors("MNIST", train=False)
    # 1,000 test images: the authors' models score about 99 %; a wrong mapping gives chance level (~10 %)
    assert accuracy(model, x[:1000], y[:1000], 500) > 0.97
    assert len(read["sha256"]) == 64
    # the subnormal weights the loader zeroes change nothing measurable (here the logits came out bit-identical;
    # 1e-6 leaves room for another CPU's kernels)
    record, _ = authors.recover_module((Path(REAL) / relative).read_bytes())
    as_saved = authors.load_weights(build(arch, "MNIST", width=64), record, arch).eval()
    assert read["subnormal_weights_zeroed"] > 0 and authors.zero_subnormals(as_saved) == read["subnormal_weights_zeroed"]
    as_saved = authors.load_weights(build(arch, "MNIST", width=64), record, arch).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x[:200]), as_saved(x[:200]), rtol=0, atol=1e-6)


def test_an_evaluation_in_progress_shows_its_finished_stages_and_feeds_the_claims(monkeypatch, tmp_path):
    from robustode import claims
    from robustode.results import pack_flags

    monkeypatch.delenv(authors.ENV, raising=False)
    store = Store("full", tmp_path)
    settings = authors.config("full")

    from robustode.chapters.robustness.config import table_one_rows

    rows = table_one_rows("MNIST")

    def faithful_stage(robust_images: int) -> dict:
        """Made-up flags (a fixture, not a result): the first ``robust_images`` of the shared 1,000 robust."""
        flags = pack_flags([i < robust_images for i in range(1000)])
        grid = {kind: [v for _, k, v in rows if k == kind] for kind in ("fgsm", "pgd")}
        return {"metrics": {"attack_images": 1000,
                            "faithful": {k: {e: robust_images / 1000 for e in eps} for k, eps in grid.items()},
                            "faithful_flags": {k: {e: flags for e in eps} for k, eps in grid.items()}},
                "seconds": 1.0}

    sigmas = {str(float(v)): 0.98 for _, k, v in rows if k == "gaussian"}
    noise = {"metrics": {"clean": 0.99, "noise_images": 10_000, "noise": {"0.0": 0.99, **sigmas}}, "seconds": 1.0}
    for name, robust_images in (("CNN", 300), ("ODENet", 700)):
        store.save_partial(authors.EXPERIMENT, name, authors.unit_params(settings, name),
                           {"noise": noise, "faithful": faithful_stage(robust_images), "device": "cpu (test)",
                            "strong 0.2 (pieces)": {}})
    found = authors.evaluations(store)
    assert found["CNN"]["partial"] == {"done": ["noise", "faithful"], "left": ["strong 0.2", "strong 0.3", "sanity"]}
    assert found["CNN"]["provenance"]["device"] == "cpu (test)" and "TisODE" not in found
    by = {r["quantity"]: r for r in tables.authors_table(store) if r["model"] == "CNN"}
    assert by["FGSM-0.3"]["reproduced"] == "30.0 (n = 1)" and "strong" not in " ".join(by)
    assert by["evaluation in progress"]["verdict"] == "stages done: noise, faithful; left: strong 0.2, strong 0.3, sanity"
    # ODENet - CNN on the same images: +40 points, an interval from the images alone, deciding the claim in `full`
    judged = claims.judge(next(c for c in claims.CLAIMS if c.key == "odenet-vs-cnn"), [store])
    authors_effects = [e for e in judged.effects if "authors' checkpoints" in e.quantity]
    fgsm = next(e for e in authors_effects if "FGSM-0.3" in e.quantity)
    assert fgsm.difference.value == pytest.approx(40.0) and fgsm.reading == "supports" and fgsm.primary
    assert not any("strong" in e.quantity for e in authors_effects)  # that stage has not run
    from robustode.chapters.robustness.findings import authors_comparisons

    rows = {r["perturbation"]: r for r in authors_comparisons(store) if r["comparison"] == "ODENet − CNN"}
    assert rows["FGSM-0.3"]["checkpoints [95 % CI]"].startswith("+40.0") and rows["FGSM-0.3"]["same sign as printed"] == "yes"
    assert [r for r in authors_comparisons(store) if "TisODE" in r["comparison"]] == []  # no TisODE stages yet
    assert judged.verdict == "supported" and judged.decided_by == "full"
    # with no Table I runs of its own in this profile, the report holds the printed number against the checkpoint
    from robustode.reference import printed

    got = tables.report_values(printed("table_1_robustness", "MNIST", "fgsm_0.3", "ODENet"), store)
    assert got.values == (70.0,) and got.extra["source"] == "the authors' checkpoint" and got.profile == "full"
    assert not tables.report_values(printed("table_1_robustness", "MNIST", "fgsm_0.3", "TisODE"), store).values


def test_the_logged_run_of_a_released_checkpoint_is_compared_with_its_evaluation_to_the_image(monkeypatch, tmp_path):
    from robustode.reference import Printed
    from robustode.verdict import judge

    monkeypatch.delenv(authors.ENV, raising=False)
    store = Store("full", tmp_path)
    settings = authors.config("full")
    log = reference_values()["authors_mnist_fgsm_runs"]
    # made-up accuracies (a fixture): FGSM-0.3 on exactly the logged number of images, FGSM-0.5 two images fewer
    robust = {"0.3": round(10 * log["fgsm_0.3"]["CNN"][0]), "0.5": round(10 * log["fgsm_0.5"]["CNN"][0]) - 2}
    stage = {"metrics": {"attack_images": 1000, "faithful": {"fgsm": {e: n / 1000 for e, n in robust.items()}, "pgd": {}}},
             "seconds": 1.0}
    store.save_partial(authors.EXPERIMENT, "CNN", authors.unit_params(settings, "CNN"),
                       {"faithful": stage, "device": "cpu (test)"})

    def verdict(eps: str, run: str):
        p = Printed("authors_mnist_fgsm_runs", ("MNIST", f"fgsm_{eps}", "CNN", run), log[f"fgsm_{eps}"]["CNN"][0], runs=1)
        got = tables.report_values(p, store)
        return got, judge(p, got)

    got, v = verdict("0.3", "run 1")
    assert got.exact and got.device == "cpu" and v.word == "reproduced (exact)"
    got, v = verdict("0.5", "run 1")
    assert v.word == "differs" and v.difference == pytest.approx(-0.2)
    got, v = verdict("0.3", "run 2")  # no checkpoint of the second run was released: not this evaluation
    assert not got.exact


# ------------------------------------------------------------------------------------ input randomisation


def test_randomisation_units_take_the_evaluation_profiles_defence_settings_one_per_model(monkeypatch, tmp_path):
    monkeypatch.setenv(authors.ENV, str(tmp_path))
    units = [u for u in authors.units("full") if u.experiment == authors.RANDOMISED]
    assert [u.run for u in units] == ["CNN", "ODENet", "TisODE"] and all(u.stages == ["randomised"] for u in units)
    params = units[2].params
    # paper-short's defences section: input randomisation 10 % larger, EOT over 5 draws, 20 steps, 1 restart, 200 images
    assert (params["resize_fraction"], params["eot"], params["steps"], params["restarts"], params["images"]) == (
        0.1, 5, 20, 1, 200)
    assert params["checkpoint"] == "checkpoints/MNIST_tisode_gaus_1/model_best.pth"
    # the main evaluation's identity is untouched by the new units (its committed results stay valid)
    assert authors.config("full")["evaluation"]["defences"] == {"randomise": ()}
    store = Store("full", tmp_path / "store")
    assert units[0].status(store).state == plan.PENDING
    store.write(authors.RANDOMISED, "CNN", params=units[0].params, seed=None, started="now", device="cpu",
                metrics={"seconds": {"randomised": 2.0, "without defence": 1.0}})
    assert units[0].status(store).state == plan.DONE and units[0].spent(store) == 3.0
    assert units[1].status(store).state == plan.PENDING


def test_one_pass_of_a_deterministic_model_is_what_eot_over_several_draws_computes():
    """The equal-attack pairing rests on it: summing k identical gradients keeps every sign (and every zero)."""
    from robustode.core import attacks

    torch.manual_seed(0)
    model = build("CNN", "MNIST", width=WIDTH).eval()
    x, y = torch.rand(6, 1, 28, 28), torch.randint(0, 10, (6,))
    once = attacks.pgd_strong(model, x, y, 0.3, steps=4, restarts=2, eot=1, seed=3)
    thrice = attacks.pgd_strong(model, x, y, 0.3, steps=4, restarts=2, eot=3, seed=3)
    assert once == thrice


def _randomised_fixture(store: Store, name: str, plain_robust: int, ir_robust: int, n: int = 200,
                        strong_ir: int | None = None) -> None:
    """Made-up flags (a fixture, not a result): of the shared attack images, the first ``plain_robust`` resist the model
    and the first ``ir_robust`` of the first ``n`` resist it behind input randomisation, under every attack."""
    from robustode.chapters.robustness.config import table_one_rows
    from robustode.results import pack_flags

    rows = table_one_rows("MNIST")
    grid = {kind: [v for _, k, v in rows if k == kind] for kind in ("fgsm", "pgd")}
    plain = pack_flags([i < plain_robust for i in range(1000)])
    ir = pack_flags([i < ir_robust for i in range(n)])
    noise = {str(float(v)): 0.98 for _, k, v in rows if k == "gaussian"}
    store.write(authors.EXPERIMENT, name, params={"model": name}, seed=None, started="now", device="cpu",
                metrics={"clean": 0.99, "noise": noise, "faithful_flags": {k: {e: plain for e in eps} for k, eps in grid.items()}})
    strong = {e: {"flags": pack_flags([i < plain_robust for i in range(n)])} for e in grid["pgd"]}
    store.write(authors.RANDOMISED, name, params={"model": name}, seed=None, started="now", device="cpu",
                metrics={"randomised": {"images": n, "clean": 0.98, "noise": noise,
                                        "faithful_flags": {k: {e: ir for e in eps} for k, eps in grid.items()},
                                        "strong": {e: {"flags": ir if strong_ir is None else pack_flags(
                                            [i < strong_ir for i in range(n)])} for e in grid["pgd"]}},
                         "without_defence": {"strong": strong}})


def test_randomisation_on_the_checkpoints_is_compared_on_the_same_images_and_decides_the_claim(monkeypatch, tmp_path):
    from robustode import claims
    from robustode.chapters.robustness import findings

    monkeypatch.delenv(authors.ENV, raising=False)
    store = Store("full", tmp_path)
    assert findings.defence_differences(store) == [] and findings.defence_rows(store) == []
    for name, plain, ir in (("CNN", 30, 40), ("ODENet", 60, 80), ("TisODE", 70, 100)):
        _randomised_fixture(store, name, plain, ir)
    diffs = {(c, a): d for c, a, d in findings.defence_differences(store)}
    # the plain model's faithful flags are read on the first 200 of its 1,000 images: 70 of 200 robust, 100 with IR
    assert diffs[("TisODE + input randomisation − TisODE", "FGSM-0.3")].value == pytest.approx(15.0)
    assert diffs[("TisODE + input randomisation − TisODE", "strong PGD-0.2")].value == pytest.approx(15.0)
    assert diffs[("TisODE + input randomisation − CNN + input randomisation", "PGD-0.2")].value == pytest.approx(30.0)
    assert "paired bootstrap over 200 images" in diffs[("CNN + input randomisation − CNN", "PGD-0.3")].method
    rows = {r["model"]: r for r in findings.defence_rows(store)}
    assert rows["TisODE"]["FGSM-0.3"] == "35.0" and rows["TisODE + input randomisation"]["strong PGD-0.2"] == "50.0"
    judged = claims.judge(next(c for c in claims.CLAIMS if c.key == "tisode-plugin-randomisation"), [store])
    primary = [e for e in judged.effects if e.primary]
    assert len(primary) == 6 and all("ODENet" not in e.quantity for e in primary)
    assert judged.verdict == "supported" and judged.decided_by == "full"
    lines = findings.defence_findings(store)
    assert len(lines) == 6 and not any("does not confirm" in line for line in lines)
    # a gain under the single-draw attack that the EOT attack does not show is called what it is
    _randomised_fixture(store, "TisODE", 70, 100, strong_ir=70)
    tisode = [line for line in findings.defence_findings(store) if line.startswith("TisODE")]
    assert len(tisode) == 2 and all("+15.0" in line and "does not confirm" in line for line in tisode)


def test_seeds_randomised_stage_pairs_each_model_with_its_randomised_copy_at_an_equal_attack(tmp_path):
    """A seed's own randomised stage now also attacks the model without the defence the same way: the table gets that
    row and the claim a paired per-image effect; the main strong attack's comparison is shown but never decides."""
    from robustode import claims
    from robustode.chapters.robustness.config import table_one_rows
    from robustode.results import pack_flags

    store = Store("paper-short", tmp_path)
    rows = table_one_rows("MNIST")
    grid = {kind: [v for _, k, v in rows if k == kind] for kind in ("fgsm", "pgd")}
    noise = {str(float(v)): 0.98 for _, k, v in rows if k == "gaussian"}
    for seed, (plain_robust, ir_robust) in enumerate(((60, 90), (64, 96))):
        plain = pack_flags([i < plain_robust for i in range(1000)])  # made-up flags: a fixture, not a result
        ir = pack_flags([i < ir_robust for i in range(200)])
        equal = pack_flags([i < plain_robust for i in range(200)])
        metrics = {"clean": 0.99, "noise": noise, "faithful": {k: {e: plain_robust / 1000 for e in eps} for k, eps in grid.items()},
                   "faithful_flags": {k: {e: plain for e in eps} for k, eps in grid.items()},
                   "strong": {e: {"accuracy": 0.2} for e in grid["pgd"]},
                   "randomised": {"images": 200, "clean": 0.98, "noise": noise,
                                  "faithful": {k: {e: ir_robust / 200 for e in eps} for k, eps in grid.items()},
                                  "faithful_flags": {k: {e: ir for e in eps} for k, eps in grid.items()},
                                  "strong": {e: {"accuracy": ir_robust / 200, "flags": ir} for e in grid["pgd"]}},
                   "without_defence": {"strong": {e: {"flags": equal} for e in grid["pgd"]}}}
        store.write("robustness-MNIST", f"TisODE-seed{seed}", params={"model": "TisODE"}, seed=seed, started="now",
                    device="cpu", metrics=metrics)
    table = {r["model"]: r for r in tables.defence_table(store, "MNIST")}
    assert list(table) == ["TisODE", "TisODE, same images and attacks as the row below", "TisODE + input randomisation"]
    assert table["TisODE, same images and attacks as the row below"]["strong PGD-0.2"] == "31.0 ± 1.4 (n = 2)"
    judged = claims.judge(next(c for c in claims.CLAIMS if c.key == "tisode-plugin-randomisation"), [store])
    primary = {e.quantity: e for e in judged.effects if e.primary}
    equal_strong = primary["TisODE + input randomisation − TisODE, strong PGD-0.2, same images and attack (points)"]
    assert equal_strong.difference.value == pytest.approx(15.5) and equal_strong.runs == "2 seeds"
    assert len(primary) == 3 and all("cheaper" not in q for q in primary)
    assert any("cheaper EOT attack" in e.quantity and not e.primary for e in judged.effects)
    assert judged.verdict == "supported" and judged.decided_by == "paper-short"
