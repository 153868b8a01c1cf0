"""The one table helper: cell text stays text, marked-up cells stay markup, wide tables scroll."""

from __future__ import annotations

import re

import pytest
from markdown_it import MarkdownIt
from mdit_py_plugins.dollarmath import dollarmath_plugin

from robustode.tables import Markdown, escape, flag, markdown_table, maths, table_block

# The parts of MyST that matter here: pipe tables, dollar maths, raw HTML blocks.
MYST = MarkdownIt("commonmark").enable("table").use(dollarmath_plugin)


def _cells(html: str, tag: str) -> list[str]:
    return re.findall(rf"<{tag}>(.*?)</{tag}>", html, re.S)


def test_a_pipe_in_a_header_or_a_cell_stays_inside_its_cell():
    html = MYST.render(markdown_table([{"model": "ODENet", "mean |f| at t=0": "a | b"}]))
    assert _cells(html, "th") == ["model", "mean |f| at t=0"]
    assert _cells(html, "td") == ["ODENet", "a | b"]


@pytest.mark.parametrize("text", ["$5 and $x$", "*not emphasis*", "_nor this_", "`no code`", "[no](link)",
                                  "<b>no tag</b>", "a \\ b", "&amp;"])
def test_markdown_syntax_in_cell_text_is_shown_literally(text):
    html = MYST.render(markdown_table([{"c": text}]))
    shown = _cells(html, "td")[0]
    assert shown.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&") == text, html
    assert "math" not in html


def test_identifiers_keep_their_underscores_unescaped():
    assert escape("gaussian_sigma_100") == "gaussian_sigma_100"


def test_maths_cells_are_maths_and_a_bar_cannot_split_the_cell():
    cell = maths(r"\sum_i |\int f\,dt|")
    html = MYST.render(markdown_table([{"formula": cell, "n": 1}]))
    assert _cells(html, "td")[0] == r'<span class="math inline">\sum_i \vert \int f\,dt\vert</span>'
    with pytest.raises(ValueError):
        maths("  ")


def test_markdown_cells_keep_their_markup_and_flags_are_red_only_when_failed():
    html = MYST.render(markdown_table([{"a": Markdown("*kept*"), "b": flag(False, "x<y"), "c": flag(True, "a|b")}]))
    assert _cells(html, "td")[0] == "<em>kept</em>"
    assert "FAILED: x&lt;y" in _cells(html, "td")[1] and _cells(html, "td")[2] == "a|b"


def test_none_is_shown_as_a_dash_and_missing_keys_as_empty_cells():
    html = MYST.render(markdown_table([{"a": None}, {"b": 2}]))
    assert _cells(html, "td") == ["—", "", "", "2"]


def test_a_book_table_scrolls_and_details_are_collapsed_with_the_key_column():
    rows = [{"model": "CNN", "acc": 1, "seed 0": 2, "seed 1": 3}]
    html = MYST.render(table_block(rows, title="Table | one", details=["seed 0", "seed 1"]))
    assert html.count('<div class="robustode-table">') == 2 and "<details" in html
    assert html.index("<strong>Table | one</strong>") < html.index("<table>")
    heads = _cells(html, "th")
    assert heads == ["model", "acc", "model", "seed 0", "seed 1"]


def test_settings_become_named_rows_instead_of_a_printed_dict():
    from robustode.tables import settings_rows

    rows = settings_rows({"hidden": 32, "augment_dims": [0, 1, 2], "plot_points": 150}, skip=["plot_points"])
    assert rows == [{"setting": "hidden", "value": 32}, {"setting": "augment dims", "value": "0, 1, 2"}]


def test_wording_helpers():
    from robustode.wording import counted, device_label, key_label, not_run, plural

    assert [plural(1, "step"), plural(3, "restart"), plural(0, "run"), plural(2, "data set", "data sets")] == [
        "1 step", "3 restarts", "0 runs", "2 data sets"]
    assert not_run("not run: data missing") == not_run("data missing") == "not run: data missing" and not_run() == "not run"
    assert device_label("cpu (x86_64, 1 cores, 1 threads)") == "cpu (x86_64, 1 core, 1 thread)"
    assert device_label("cpu (x86_64, 12 cores, 11 threads)") == "cpu (x86_64, 12 cores, 11 threads)"
    assert counted([]) == "—" and counted([0.0, 0.0], measured=False) == "—" and counted([2.0]) == "2.0"
    assert [key_label(k) for k in ("gaussian_sigma_100", "pgd_3/255", "fgsm_0.3", "ANODE_64_filters_p10", "test_loss")] == [
        "Gaussian σ = 100", "PGD ε = 3/255", "FGSM ε = 0.3", "ANODE, 64 filters, p = 10", "test loss"]
