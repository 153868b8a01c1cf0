"""The report speaks the reader's language: labels, not the keys of reference-values.yaml."""

from __future__ import annotations

from robustode.reference import Printed, printed_numbers


def test_quantities_are_labelled_not_keyed():
    printed = Printed("table_1_robustness", ("MNIST", "gaussian_sigma_100", "ODENet"), 99.4, 0.1)
    assert printed.label == "MNIST / Gaussian σ = 100 / ODENet"
    assert Printed("anode_parameters", ("MNIST", "ANODE_64_filters_p5"), 85462).label == "MNIST / ANODE, 64 filters, p = 5"


def test_no_printed_number_is_labelled_with_a_raw_key():
    import re

    raw = [p.label for p in printed_numbers() if re.search(r"[a-z]_[a-z0-9]", p.label)]
    assert not raw
