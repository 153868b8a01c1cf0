from robustode.reference import compare, reference_values, verdict


def test_reference_values_hold_the_papers_tables():
    ref = reference_values()
    assert ref["table_1_robustness"]["MNIST"]["fgsm_0.3"]["TisODE"] == [75.7, 1.4]
    assert ref["table_4_parameters"]["Neural ODE Attention"]["MNIST"] == 3531


def test_a_value_within_the_combined_spread_is_reproduced():
    assert verdict(75.7, 1.4, 77.0, 1.0, 3, "full") == "reproduced"


def test_a_value_far_below_is_reported_lower():
    assert verdict(75.7, 1.4, 40.0, 1.0, 3, "full") == "lower than printed"


def test_quick_profile_verdicts_are_labelled_indicative():
    assert verdict(75.7, 1.4, 75.7, 0.1, 3, "quick").endswith("(quick profile, indicative)")


def test_missing_runs_say_not_run_and_why():
    row = compare("FGSM 0.3", 75.7, 1.4, [], "full", not_run_reason="data missing")
    assert row["verdict"] == "not run: data missing"
    assert row["reproduced"] == "—"
