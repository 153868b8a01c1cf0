"""The report speaks the reader's language: labels, not keys; a link, not "(see Reproducing)"."""

from __future__ import annotations

import json

from robustode.report import Printed, Reproduced, render, report_rows, row, verdict_counts
from robustode.tables import Markdown


def test_quantities_are_labelled_not_keyed():
    printed = Printed("table_1_robustness", ("MNIST", "gaussian_sigma_100", "ODENet"), 99.4, 0.1)
    assert printed.label == "MNIST / Gaussian σ = 100 / ODENet"
    assert Printed("anode_parameters", ("MNIST", "ANODE_64_filters_p5"), 85462).label == "MNIST / ANODE, 64 filters, p = 5"


def test_missing_full_results_link_to_reproducing_in_markdown_and_read_plainly_in_json(tmp_path, monkeypatch):
    from robustode.data.images import IMAGE_SETS

    for name in IMAGE_SETS["MNIST"].files:  # MNIST "on disk", so the reason is the missing run, not the data
        (tmp_path / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / name).touch()
    monkeypatch.setenv("ROBUSTODE_DATA", str(tmp_path / "data"))
    full = tmp_path / "full"
    full.mkdir()
    rows = [r for r in report_rows(full, "full") if r["section"] == "table_3_ode_attention"]
    linked = [r for r in rows if "GPU time" in r["verdict"]]
    assert linked and all(isinstance(r["verdict"], Markdown) for r in linked)
    assert "[Reproducing](../book/reproducing.md)" in render(linked)
    assert "(see Reproducing)" in json.loads(render(linked, "json"))[0]["verdict"]


def test_verdicts_quoted_in_parentheses_do_not_nest_them():
    got = row(Printed("x", ("a",), 75.7, 1.4), Reproduced((75.0, 76.0)), "quick")
    assert "(" not in got["verdict"] and got["verdict"].endswith("indicative: quick profile")
    assert verdict_counts([got]) == {"reproduced": 1}
