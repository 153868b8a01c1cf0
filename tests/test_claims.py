"""The claims scorecard: the rule that turns measured effects into a verdict, and the command that prints it."""

import json

import pytest

from robustode import claims
from robustode.cli import main
from robustode.compare import Difference
from robustode.store import Store


def claim_with(effects_by_profile: dict[str, list[tuple[float, float, float]]], exact: bool = False) -> claims.Claim:
    def evidence(store: Store) -> list[claims.Effect]:
        return [claims.Effect(f"effect {i}", Difference(v, lo, hi, "test"), store.profile, "3 seeds")
                for i, (v, lo, hi) in enumerate(effects_by_profile.get(store.profile, []))]

    return claims.Claim("test", "a claim", "nowhere", evidence, exact=exact)


STORES = [Store("full"), Store("paper-short"), Store("quick")]


@pytest.mark.parametrize("effects, verdict", [
    ([(2.0, 1.0, 3.0), (1.0, 0.1, 2.0)], "supported"),
    ([(-2.0, -3.0, -1.0)], "contradicted"),
    ([(2.0, 1.0, 3.0), (-2.0, -3.0, -1.0)], "mixed"),
    ([(2.0, 1.0, 3.0), (0.5, -0.5, 1.5)], "unresolved"),
])
def test_a_claim_is_judged_on_its_primary_effects(effects, verdict):
    assert claims.judge(claim_with({"paper-short": effects}), STORES).verdict == verdict


def test_the_strongest_profile_with_effects_decides_and_quick_never_does():
    both = claim_with({"full": [(-1.0, -2.0, -0.5)], "paper-short": [(1.0, 0.5, 2.0)]})
    judged = claims.judge(both, STORES)
    assert (judged.verdict, judged.decided_by) == ("contradicted", "full")
    only_quick = claims.judge(claim_with({"quick": [(5.0, 4.0, 6.0)]}), STORES)
    assert only_quick.verdict.startswith("not tested") and only_quick.decided_by == ""
    exact = claims.judge(claim_with({"quick": [(5.0, 5.0, 5.0)]}, exact=True), STORES)
    assert (exact.verdict, exact.decided_by) == ("supported", "quick")  # exact measurements may decide at any size
    assert claims.judge(claim_with({}), STORES).verdict == "not tested"


def test_an_effect_without_an_interval_is_unresolved():
    effect = claims.Effect("x", Difference(3.0, None, None, "one run"), "full", "1 seed")
    assert effect.reading == "unresolved"


def test_the_scorecard_command_prints_every_claim_as_json(capsys, results_tmp):
    assert main(["report", "--claims", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [c["key"] for c in out] == [c.key for c in (*claims.CLAIMS, *claims.CONTROLS)]
    assert {c["kind"] for c in out} == {"claim", "control"}
    assert all(c["verdict"].startswith("not tested") for c in out)  # an empty results folder tests nothing
    why = {c["key"]: c["untested"] for c in out}
    assert "ODENet-aug8, both in the run plan of the paper-short profile" in why["anode-robustness"]
    assert "TisODE+denoise, both in the run plan of the full profile" in why["tisode-plugin-denoising"]


def test_an_untested_claim_says_which_plan_would_test_it_and_every_model_it_needs_is_planned():
    robustness = [c for c in (*claims.CLAIMS, *claims.CONTROLS) if c.needs]
    assert {c.key for c in robustness} >= {"odenet-vs-cnn", "anode-robustness", "control-adaptive"}
    for c in robustness:  # a model no profile plans would leave its claim untestable: say so here, not in the book
        assert claims.why_untested(c).startswith("no runs yet: the evidence"), c.key
    steady = next(c for c in claims.CONTROLS if c.key == "control-steady")
    assert "TisODE-nosteady, TisODE, ODENet and ODENet+steady, all in" in claims.why_untested(steady)
    judged = claims.judge(claims.Claim("x", "a claim", "nowhere", lambda store: [], needs=("ResNet10-tied",)), STORES)
    assert claims.as_json([judged])[0]["untested"].startswith("no runs yet: the evidence reads ResNet10-tied's runs")
    assert claims.why_untested(claims.Claim("y", "a claim", "nowhere", lambda store: [])) == "no runs yet"
    with_runs = claims.judge(claim_with({"paper-short": [(2.0, 1.0, 3.0)]}), STORES)
    assert claims.as_json([with_runs])[0]["untested"] is None


def test_an_untested_claim_names_the_runs_it_waits_for_and_how_far_they_have_come(results_tmp):
    import torch

    from robustode.chapters.robustness.config import experiment_name, training_params
    from robustode.chapters.robustness.run import planned_runs

    adaptive = next(c for c in claims.CONTROLS if c.key == "control-adaptive")
    assert "under way" not in claims.why_untested(adaptive)  # nothing started yet
    seed, name, cfg, _ = next(r for r in planned_runs("paper-short")["MNIST"] if r[1] == "ODENet-dopri5")
    path = Store("paper-short").checkpoint(experiment_name("MNIST"), f"{name}-seed{seed}", training_params(name, cfg))
    path.parent.mkdir(parents=True)
    torch.save({"epoch": 2}, path)  # a resume checkpoint after two epochs
    why = claims.why_untested(adaptive)
    assert why.startswith("no runs yet: the evidence compares ODENet and ODENet-dopri5")
    assert why.endswith(f"; under way: ODENet-dopri5 seed {seed} (epoch 2 of {cfg['epochs']})")


def _robustness_run(store: Store, model: str, seed: int, robust_images: int) -> None:
    """A made-up paper-short run (a fixture, not a result): the first ``robust_images`` of the 1,000 attack images
    robust under every faithful attack."""
    from robustode.chapters.robustness.config import table_one_rows
    from robustode.results import pack_flags

    rows = table_one_rows("MNIST")
    grid = {kind: [v for _, k, v in rows if k == kind] for kind in ("fgsm", "pgd")}
    flags = pack_flags([i < robust_images for i in range(1000)])
    metrics = {"clean": 0.99, "noise": {str(float(v)): 0.98 for _, k, v in rows if k == "gaussian"},
               "attack_images": 1000, "faithful": {k: {e: robust_images / 1000 for e in eps} for k, eps in grid.items()},
               "faithful_flags": {k: {e: flags for e in eps} for k, eps in grid.items()}, "checks": []}
    store.write("robustness-MNIST", f"{model}-seed{seed}", params={"model": model, "dataset": "MNIST"}, seed=seed,
                started="t", device="cpu", metrics=metrics)


def test_a_control_is_judged_by_the_claims_rule_and_listed_apart_from_the_claims(tmp_path):
    store = Store("paper-short", tmp_path / "paper-short")
    for seed in range(3):
        _robustness_run(store, "CNN", seed, 300)
    _robustness_run(store, "ResNet10-tied", 0, 600)
    for seed in range(2):
        _robustness_run(store, "ODENet", seed, 600)
    by = {j.claim.key: j for j in claims.scorecard([store], claims=claims.CONTROLS)}
    assert all(c.kind == "control" for c in claims.CONTROLS) and all(c.kind == "claim" for c in claims.CLAIMS)
    assert not {c.key for c in claims.CONTROLS} & {c.key for c in claims.CLAIMS}
    depth = by["control-depth"]
    assert (depth.verdict, depth.decided_by) == ("supported", "paper-short")  # +30 points on the same images
    fgsm = next(e for e in depth.effects if "FGSM-0.3" in e.quantity)
    assert fgsm.quantity.startswith("ResNet10-tied − CNN") and fgsm.runs == "1 ResNet10-tied + 3 CNN seeds"
    assert fgsm.difference.value == pytest.approx(30.0) and fgsm.primary
    # the same flags on the same images: no difference, so the solver hypothesis stays unresolved
    assert by["control-solver"].verdict == "unresolved"
    assert by["control-steady"].verdict == "not tested"  # no TisODE ablation in this store


def test_the_scorecard_command_prints_the_controls_after_the_claims(capsys, results_tmp):
    assert main(["report", "--claims"]) == 0
    out = capsys.readouterr().out
    claims_part, rest = out.split("What the controls say")
    controls_part, why = rest.split("Why some are not tested")
    assert all(c.statement in claims_part for c in claims.CLAIMS)
    assert all(c.statement in controls_part for c in claims.CONTROLS)
    # an empty results folder tests nothing, and each says why
    assert all(f"* {c.statement} — no runs" in why for c in (*claims.CLAIMS, *claims.CONTROLS))


def test_each_claims_row_says_what_the_controls_that_qualify_it_say(tmp_path):
    assert all(c.qualifies in {k.key for k in claims.CLAIMS} and c.short for c in claims.CONTROLS)
    store = Store("paper-short", tmp_path / "paper-short")
    for seed in range(3):
        _robustness_run(store, "CNN", seed, 300)
    _robustness_run(store, "ResNet10-tied", 0, 600)
    rows = claims.scorecard_rows(claims.scorecard([store]), claims.scorecard([store], claims=claims.CONTROLS))
    by = {r["claim"]: r["controls"] for r in rows}
    odenet = next(c.statement for c in claims.CLAIMS if c.key == "odenet-vs-cnn")
    assert by[odenet].startswith("depth alone: supported; the solver: not tested")
    memory = next(c.statement for c in claims.CLAIMS if c.key == "memory")
    assert by[memory] == "—"  # no control qualifies it
    assert "controls" not in claims.scorecard_rows(claims.scorecard([store]))[0]


def test_the_forest_draws_the_deciding_effects_of_the_claims_with_a_verdict():
    import matplotlib

    matplotlib.use("Agg")
    decided = claims.judge(claim_with({"paper-short": [(2.0, 1.0, 3.0), (1.0, 0.5, 1.5)]}), STORES)
    untested = claims.judge(claim_with({}), STORES)
    fig = claims.forest([decided, untested])
    [ax] = fig.axes  # the untested claim has no panel
    assert ax.get_title(loc="right").startswith("a claim — supported (paper-short)")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["effect 0", "effect 1"]
    assert claims.forest([untested]) is None
