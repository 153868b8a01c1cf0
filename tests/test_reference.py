"""Printed numbers as data, and the one verdict rule that judges them (robustode.verdict)."""

import json

import pytest

from robustode.cli import main
from robustode.reference import Printed, printed, printed_numbers, reference_values
from robustode.verdict import Reproduced, interval, judge, margin_for, row

FGSM = printed("table_1_robustness", "MNIST", "fgsm_0.3", "TisODE")  # 75.7 ± 1.4 over 3 runs


def test_reference_values_hold_the_papers_tables():
    ref = reference_values()
    assert ref["table_1_robustness"]["MNIST"]["fgsm_0.3"]["TisODE"] == [75.7, 1.4]
    assert ref["table_4_parameters"]["Neural ODE Attention"]["MNIST"] == 3531


def test_margins_are_per_section_and_quantity():
    assert margin_for(FGSM) == 5.0
    assert margin_for(printed("table_1_robustness", "MNIST", "gaussian_sigma_100", "CNN")) == 1.0
    assert margin_for(printed("table_3_ode_attention", "Classic Attention", "MNIST", "test_loss")) == 0.05
    assert margin_for(printed("table_3_ode_attention", "Classic Attention", "MNIST", "accuracy")) == 0.02


def test_the_interval_is_welchs_on_both_standard_errors():
    d, low, high = interval([76.0, 77.0, 78.0], 75.7, 1.4, 3)
    # se = sqrt(1/3 + 1.96/3) = 0.9933; Welch df = 0.9867^2 / (0.3333^2/2 + 0.6533^2/2) = 3.62;
    # t(0.975, 3.62) = 2.896 (tables interpolate to about 2.9: 0.03 absorbs that rounding)
    assert d == pytest.approx(1.3)
    assert (high - low) / 2 == pytest.approx(2.896 * 0.9933, abs=0.03)


def test_an_interval_inside_the_margin_is_reproduced():
    assert judge(FGSM, Reproduced((75.0, 76.0, 75.5), "full")).word == "reproduced"


def test_an_interval_outside_the_margin_is_not_reproduced_with_its_direction():
    assert judge(FGSM, Reproduced((40.0, 41.0, 39.0), "full")).word == "not reproduced (lower)"
    assert judge(FGSM, Reproduced((95.0, 96.0, 94.0), "full")).word == "not reproduced (higher)"


def test_an_interval_across_the_margin_or_a_single_run_is_inconclusive():
    assert judge(FGSM, Reproduced((72.0, 82.0, 77.0), "full")).word == "inconclusive"
    assert judge(FGSM, Reproduced((75.7,), "full")).word == "inconclusive"


def test_a_single_run_is_placed_inside_or_outside_the_printed_runs_prediction_interval():
    # FGSM prints 75.7 +- 1.4 over 3 runs: t(0.975, 2) = 4.303, 4.303 * 1.4 * sqrt(4/3) = 6.96, plus 0.05 for the
    # printed rounding: 7.01 (the runs' 4 and 10 points away are far from that edge, so no float tie decides them)
    from robustode.verdict import prediction_half_width

    assert prediction_half_width(FGSM) == pytest.approx(7.01, abs=0.01)
    near, far = judge(FGSM, Reproduced((79.7,), "full")), judge(FGSM, Reproduced((65.7,), "full"))
    assert near.word == far.word == "inconclusive"
    assert "inside the printed runs' 95 % prediction interval" in near.text
    assert "outside the printed runs' 95 % prediction interval" in far.text
    unspread = Printed("table_3_ode_attention", ("Neural ODE Attention", "MNIST", "accuracy"), 0.8874, None, 4, runs=1)
    assert "prediction" not in judge(unspread, Reproduced((0.8,), "full")).text  # no printed spread: nothing to say


def test_runs_that_are_not_the_printed_protocol_are_not_comparable_but_show_the_difference():
    v = judge(FGSM, Reproduced((75.0, 76.0, 75.5), "paper-short"))
    assert v.text == "not comparable" and v.difference == pytest.approx(-0.2) and v.low is not None
    assert judge(FGSM, Reproduced((75.0, 76.0), "quick")).word == "not comparable"


def test_missing_runs_say_not_run_and_why():
    r = row(FGSM, Reproduced(reason="data missing (MNIST files not in the data folder)"))
    assert r["verdict"] == "not run: data missing (MNIST files not in the data folder)" and r["reproduced"] == "—"


def test_counts_chosen_to_match_are_matched_by_construction_and_given_counts_reproduced():
    table_4 = printed("table_4_parameters", "Neural ODE Attention", "MNIST")
    assert judge(table_4, Reproduced((3531.0,), exact=True)).word == "matched by construction"
    assert judge(table_4, Reproduced((3530.0,), exact=True)).word == "differs"
    given = printed("tisode_repo_parameters", "MNIST", "CNN")
    assert judge(given, Reproduced((141130.0,), exact=True)).word == "reproduced (exact)"


def test_inference_times_on_unstated_hardware_are_not_judged_as_seconds():
    t = printed("table_3_ode_attention", "Neural ODE Attention", "MNIST", "inference_time_s")
    assert judge(t, Reproduced((0.01, 0.011, 0.012), "full")).word == "not comparable"


def test_the_report_lists_every_printed_number_once():
    numbers = list(printed_numbers())
    # Table I: 3 data sets x 5 perturbations x 3 models; authors' log: 2 x 3 x 3 runs; Table III: 2 x 4 x 6;
    # Table IV: 8; ANODE Table 1: 6; ANODE counts: 4; TisODE repo counts: 3.
    assert len(numbers) == 45 + 18 + 48 + 8 + 6 + 4 + 3
    assert len({(p.section, p.key) for p in numbers}) == len(numbers)
    assert all(isinstance(p, Printed) for p in numbers)


def test_report_rows_give_every_printed_number_a_verdict(results_tmp):
    from robustode.report import report_rows

    rows = report_rows("full")
    assert len(rows) == 132 and all(r["verdict"] for r in rows)
    assert all(r["verdict"] == "matched by construction" for r in rows if r["section"].startswith("Table IV"))
    assert all(r["verdict"].startswith("not run") for r in rows if r["section"].startswith("Table I "))


def test_one_printed_number_gets_the_same_verdict_in_the_chapter_and_in_the_report(results_tmp):
    """The chapters' printed-vs-reproduced rows and the report are built by the same function."""
    from robustode.chapters import robustness
    from robustode.report import report_rows
    from robustode.results import write_result

    for seed, value in enumerate((0.74, 0.77, 0.76)):
        metrics = {"faithful": {"fgsm": {"0.3": value, "0.5": value / 3}, "pgd": {"0.2": value, "0.3": 0.1}},
                   "noise": {"100.0": 0.99}, "checks": []}
        write_result(results_tmp / "results" / "full", "robustness-MNIST", f"TisODE-seed{seed}", profile="full",
                     params={"model": "TisODE"}, seed=seed, started="t", device="cpu", metrics=metrics)
    from robustode.store import Store

    report = next(r for r in report_rows("full") if r["quantity"] == "MNIST / FGSM ε = 0.3 / TisODE")
    chapter = robustness.tables.report_values(FGSM, Store("full"))
    assert report["verdict"] == row(FGSM, chapter)["verdict"] == judge(FGSM, chapter).text


def test_report_command_prints_json(capsys, results_tmp):
    assert main(["report", "--profile", "full", "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 132


def test_a_missing_data_set_is_named_with_the_command_that_adds_it():
    from robustode.data.images import data_missing

    assert data_missing("SVHN") == ("data missing (SVHN not in the data folder: "
                                    "python -m robustode data --fetch SVHN downloads it)")
    assert data_missing("CIFAR10", "CIFAR100").endswith("--fetch CIFAR10 CIFAR100 downloads them)")
    with pytest.raises(ValueError, match="names"):
        data_missing()


def test_the_book_folds_the_numbers_that_wait_on_missing_data_into_one_line_per_data_set():
    from robustode.data.images import data_missing
    from robustode.report import fold_missing_data

    rows = [row(FGSM, Reproduced((75.0,), "full")), row(FGSM, Reproduced(reason="to be computed by robustode run"))]
    rows += [row(FGSM, Reproduced(reason=data_missing("SVHN"))) for _ in range(10)]
    rows += [row(FGSM, Reproduced(reason="data missing (no ImageNet class folders given)")) for _ in range(2)]
    shown, waiting = fold_missing_data(rows)
    assert shown == rows[:2]  # evidence, and runs not made for another reason, keep their rows
    assert waiting == ["10 printed numbers not run: " + data_missing("SVHN"),
                       "2 printed numbers not run: data missing (no ImageNet class folders given)"]
    assert fold_missing_data(rows[:2]) == (rows[:2], [])


def test_the_books_report_sections_keep_every_row_with_evidence_in_order(results_tmp):
    from robustode.report import SECTION_TITLES, book_sections, report_rows

    rows = report_rows("full")
    sections = book_sections(rows)
    assert [title for title, _, _ in sections] == list(SECTION_TITLES.values())
    shown = sum(len(kept) for _, kept, _ in sections)
    waiting = sum(int(line.split()[0]) for _, _, lines in sections for line in lines)
    assert shown + waiting == len(rows) == 132 and all("section" not in r for _, kept, _ in sections for r in kept)


def test_a_build_of_one_profile_never_shows_another_machines_quick_results(results_tmp):
    """results/quick/ is git-ignored: a full render on a machine that also ran the quick book must not pick it up."""
    from robustode import claims
    from robustode.display import evidence
    from robustode.profiles import evidence_tiers
    from robustode.report import report_rows
    from robustode.results import write_result

    assert [t.profile for t in evidence_tiers("full")] == ["full", "paper-short"]
    assert [t.profile for t in evidence_tiers("quick")] == ["full", "paper-short", "quick"]
    assert [t.profile for t in evidence_tiers()] == ["full", "paper-short", "quick"]  # the command line: all
    metrics = {"faithful": {"fgsm": {"0.3": 0.5, "0.5": 0.2}, "pgd": {"0.2": 0.4, "0.3": 0.1}},
               "noise": {"100.0": 0.9}, "checks": []}
    write_result(results_tmp / "results" / "quick", "robustness-MNIST", "TisODE-seed0", profile="quick",
                 params={"model": "TisODE"}, seed=0, started="t", device="cpu", metrics=metrics)
    assert [s.profile for s in evidence(["robustness-MNIST"], "quick")] == ["quick"]
    assert [s.profile for s in evidence(["robustness-MNIST"], "full")] == ["full"]
    key = "MNIST / FGSM ε = 0.3 / TisODE"
    assert next(r for r in report_rows(build="quick") if r["quantity"] == key)["reproduced"].endswith("quick, cpu)")
    assert next(r for r in report_rows(build="full") if r["quantity"] == key)["reproduced"] == "—"
    judged = claims.judge(next(c for c in claims.CLAIMS if c.key == "tisode-vs-odenet"), build="full")
    assert all(e.profile != "quick" for e in judged.effects)
