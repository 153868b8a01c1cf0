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
    assert [c["key"] for c in out] == [c.key for c in claims.CLAIMS]
    assert all(c["verdict"].startswith("not tested") for c in out)  # an empty results folder tests nothing
