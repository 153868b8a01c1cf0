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
    assert verdict(75.7, 1.4, 75.7, 0.1, 3, "quick").endswith(", indicative: quick profile")


def test_missing_runs_say_not_run_and_why():
    row = compare("FGSM 0.3", 75.7, 1.4, [], "full", not_run_reason="data missing")
    assert row["verdict"] == "not run: data missing"
    assert row["reproduced"] == "—"


def test_the_report_lists_every_printed_number_once():
    from robustode.report import printed_numbers

    numbers = list(printed_numbers())
    # Table I: 3 data sets x 5 perturbations x 3 models; authors' log: 2 x 3 x 3 runs; Table III: 2 x 4 x 6;
    # Table IV: 8; ANODE Table 1: 6; ANODE counts: 4; TisODE repo counts: 3.
    assert len(numbers) == 45 + 18 + 48 + 8 + 6 + 4 + 3
    assert len({(p.section, p.key) for p in numbers}) == len(numbers)


def test_report_rows_give_every_printed_number_a_verdict(tmp_path):
    from robustode.report import report_rows

    rows = report_rows(tmp_path, "full")
    assert len(rows) == 132
    assert all(r["verdict"] for r in rows)
    counts = [r for r in rows if r["section"] == "table_4_parameters"]
    assert all(r["verdict"] == "reproduced (exact)" for r in counts)
    assert any(r["verdict"].startswith("not run") for r in rows if r["section"] == "table_1_robustness")


def test_report_command_prints_json(capsys):
    import json

    from robustode.cli import main

    assert main(["report", "--profile", "full", "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 132
