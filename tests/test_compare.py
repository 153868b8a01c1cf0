"""Differences with intervals (robustode.compare): the value is b − a, and the text names b's runs first."""

import pytest

from robustode.compare import paired_bootstrap, welch_interval


def test_a_paired_bootstrap_is_b_minus_a_and_names_the_runs_in_that_order():
    a = [[True, False, False, False]]  # one seed, 25 %
    b = [[True, True, True, False], [True, True, False, False]]  # two seeds, 62.5 % on average
    diff = paired_bootstrap(a, b, replicates=500)
    assert diff.value == pytest.approx(37.5)  # 100 x (0.625 - 0.25), up to float rounding
    assert diff.low <= diff.value <= diff.high
    assert diff.method == "paired bootstrap over 4 images and 2 and 1 seeds"  # b's 2 seeds, then a's 1
    assert paired_bootstrap(b[:1], a).method.endswith("one seed each")


def test_welch_names_the_runs_in_the_differences_order():
    diff = welch_interval([10.0, 12.0, 11.0], [20.0, 22.0])
    assert diff.value == pytest.approx(21.0 - 11.0)
    assert diff.method == "Welch interval over 2 and 3 seeds"
    single = welch_interval([10.0, 12.0, 11.0], [20.0])
    assert single.low is None and single.method == "1 and 3 runs: no seed spread"


def test_bad_flags_are_refused_before_any_resampling():
    with pytest.raises(ValueError, match="same images"):
        paired_bootstrap([[True, False]], [[True, False, True]])


def test_an_interval_of_zero_width_says_why():
    zero = [[False] * 5]
    assert paired_bootstrap(zero, zero * 2).method.endswith("both models at 0 % on every image")
    right = [[True] * 5]
    assert paired_bootstrap(right, right).method.endswith("both models right on every image")
    same = [[True, False, True, False, False]]
    assert paired_bootstrap(same, same).method.endswith("the models are right on the same images")
    assert ";" not in paired_bootstrap(same, [[True, True, True, False, False]]).method
