"""Staging the book: which executed copy each page shows, and what is hidden from the reader."""

from __future__ import annotations

import nbformat
import pytest

from robustode import book
from robustode.cli import main


def _source(path, title: str) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "quick"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}\n\nWhat this chapter shows."), params,
                nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(profile)")]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def _executed(root, profile: str, name: str) -> None:
    nb = nbformat.read(root / "notebooks" / f"{name}.ipynb", as_version=4)
    injected = nbformat.v4.new_code_cell(f'# Parameters\nprofile = "{profile}"\n')
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(2, injected)
    path = root / "results" / profile / "notebooks" / f"{name}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


@pytest.fixture
def project(results_tmp):
    (results_tmp / "_toc.yml").write_text("format: jb-book\nroot: book/intro\n")
    (results_tmp / "_config.yml").write_text("title: t\n")
    (results_tmp / "book").mkdir()
    for name in ("01_a", "02_b", "03_c"):
        _source(results_tmp / "notebooks" / f"{name}.ipynb", f"Chapter {name}")
    _executed(results_tmp, "full", "01_a")
    _executed(results_tmp, "quick", "02_b")
    return results_tmp


def _staged(staging, name: str):
    return nbformat.read(staging / "notebooks" / f"{name}.ipynb", as_version=4)


def test_each_page_shows_the_profile_it_has_and_says_so(project):
    staging, shown = book.stage("full", project)
    assert shown == {"01_a": "full", "02_b": "quick", "03_c": None}
    quick = _staged(staging, "02_b")
    assert quick.cells[0].source == "# Chapter 02_b" and "shows the **quick** profile" in quick.cells[1].source
    assert "reproduce --profile full --notebooks 02_b" in quick.cells[1].source
    missing = _staged(staging, "03_c")
    assert [c.cell_type for c in missing.cells] == ["markdown"] * 3
    assert "Not run on the `full` profile" in missing.cells[1].source and "What this chapter shows." in missing.cells[2].source
    assert "warning" not in _staged(staging, "01_a").cells[1].source


def test_parameter_cells_are_removed_and_nbval_markers_dropped(project):
    staging, _ = book.stage("full", project)
    nb = _staged(staging, "01_a")
    removed = [c for c in nb.cells if "remove-cell" in c.metadata.get("tags", [])]
    assert {t for c in removed for t in c.metadata["tags"]} == {"parameters", "injected-parameters", "remove-cell"}
    assert [c.source for c in nb.cells if c.cell_type == "code" and c not in removed] == ["print(profile)"]


def test_a_failed_build_is_one_line_and_exit_status_1(project, monkeypatch, capsys):
    import subprocess

    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 2))
    assert main(["book", "--profile", "full", "--no-run"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "error: jupyter-book build failed (exit 2); its messages are above"
    assert "Traceback" not in "\n".join(err)


def test_bibliography_labels_are_author_year_like_the_citations():
    from pybtex.database import parse_string

    from robustode.bibstyle import AuthorYearLabels

    db = parse_string("""
@misc{a, author = {Krizhevsky, Alex}, year = {2009}}
@misc{b, author = {Carlini, Nicholas and Wagner, David}, year = {2017}}
@misc{c, author = {Xie, C. and Wu, Y. and He, K.}, year = {2019}}
@misc{d, author = {Xie, C. and Wang, J. and Yuille, A.}, year = {2019}}
""", "bibtex")
    labels = list(AuthorYearLabels().format_labels(db.entries.values()))
    assert labels == ["Krizhevsky, 2009", "Carlini and Wagner, 2017", "Xie et al., 2019a", "Xie et al., 2019b"]


def test_a_chapter_the_profile_does_not_configure_says_so_instead_of_a_command(project):
    _source(project / "notebooks" / "04_attention.ipynb", "Attention")
    staging, shown = book.stage("paper-short", project)
    assert shown["04_attention"] is None
    note = _staged(staging, "04_attention").cells[1].source
    assert "The `paper-short` profile does not run this chapter." in note and "reproduce" not in note
