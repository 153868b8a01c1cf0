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


def test_the_steady_state_erratum_reads_the_authors_checkpoints_profiles(monkeypatch, tmp_path):
    from robustode import errata
    from robustode.store import Store

    monkeypatch.setenv("ROBUSTODE_ROOT", str(tmp_path))
    store = Store("full", tmp_path / "r")
    assert errata.steady_state(store) == []  # nothing evaluated: the report says so in one line
    for name, values in (("ODENet", [0.48, 0.53, 0.54]), ("TisODE", [0.46, 0.2, 0.01])):
        store.write("authors-MNIST", name, params={"model": name}, seed=None, started="2026-01-01T00:00:00+00:00",
                    device="cpu", metrics={"field_profile": {"t": [0.0, 1.0, 2.0], "mean_abs_f": values}})
    rows = {r["checkpoint"]: r for r in errata.steady_state(store)}
    ode, tis = rows["ODENet, the authors' checkpoint"], rows["TisODE, the authors' checkpoint"]
    assert (ode["steady-state term"], ode["ratio 2T / T"], ode["at rest (ratio under 0.1)"]) == ("no", "1.02", "no")
    assert (tis["steady-state term"], tis["mean ∣f∣ at T = 1"], tis["at rest (ratio under 0.1)"]) == ("yes", "0.200", "yes")
    assert "clean decisions kept at 2T (%)" not in tis  # no read-out stored yet
    from robustode.chapters.robustness import readout
    from robustode.results import pack_flags

    unit = next(u for u in readout.authors_units("full") if u.run == "TisODE")
    flags = [[True] * 8 + [False] * 2, [False] * 10, [True] * 5 + [False] * 5]  # PGD-0.2 at 0, T, 2T
    store.write(readout.AUTHORS, "TisODE", params=unit.params, seed=None, started="2026-01-01T00:00:00+00:00",
                device="cpu", metrics={"times": [0.0, 1.0, 2.0], "T": 1.0, "images": 10,
                                       "clean": {"accuracy": [0.2, 1.0, 1.0], "agreement": [0.2, 1.0, 0.9]},
                                       "pgd": {"0.1": {"accuracy": [1.0, 1.0, 1.0], "flags": []},
                                               "0.2": {"accuracy": [0.8, 0.0, 0.5], "flags": [pack_flags(f) for f in flags]}}})
    tis = {r["checkpoint"]: r for r in errata.steady_state(store)}["TisODE, the authors' checkpoint"]
    assert tis["clean decisions kept at 2T (%)"] == "90.0"
    assert tis["PGD-0.2 crafted at T: at T → at 2T (%)"].startswith("0.0 → 50.0 (+50.0 [")
