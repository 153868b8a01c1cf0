"""Render the Jupyter Book from executed notebooks (execution off), one path for every profile.

The staging folder holds the book's pages and, for each notebook, what the reader of that profile
should see:

* the profile's executed copy (``results/<profile>/notebooks/``), when there is one;
* otherwise the quick profile's executed copy, with a warning under its title that says so;
* otherwise a page with the chapter's introduction and a note that it has not been run on this
  profile, with the command that runs it — so ``book --profile full --no-run`` renders on a fresh
  clone, where only some full-profile notebooks are committed.

Staged copies are prepared for reading: papermill's ``parameters`` and ``injected-parameters`` cells
are removed (the chapter states its profile in prose), and nbval's ``# NBVAL_...`` marker lines are
dropped from the code shown. The notebooks themselves are never changed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from robustode.paths import project_root, results_dir
from robustode.profiles import PROFILES, check_choice
from robustode.reproduce import available_notebooks, reproduce

BOOK_FILES = ("_config.yml", "_toc.yml", "book", "_static")
HIDDEN_TAGS = {"parameters", "injected-parameters"}
NBVAL_MARKER = re.compile(r"^[ \t]*# ?NBVAL_[A-Z_]+[ \t]*\n?", re.M)


class BookFailed(RuntimeError):
    """The book could not be rendered; the message is one line saying why and what to do."""


def executed_copy(name: str, profile: str) -> tuple[Path | None, str | None]:
    """The executed notebook to show for ``name`` on ``profile``: (path, profile it ran on), or (None, None)."""
    for prof in dict.fromkeys([profile, "quick"]):
        path = results_dir(prof) / "notebooks" / f"{name}.ipynb"
        if path.exists():
            return path, prof
    return None, None


def run_command(name: str, profile: str) -> str:
    return f"python -m robustode reproduce --profile {profile} --notebooks {name}"


def how_to_run(name: str, profile: str) -> str:
    """One sentence: the command that produces this chapter's executed copy, or that the profile has none."""
    from robustode.reproduce import profile_notebooks

    if name not in profile_notebooks(profile):
        return f"The `{profile}` profile does not run this chapter."
    return (f"Run it with `{run_command(name, profile)}`, then render again with "
            f"`python -m robustode book --profile {profile} --no-run`.")


def prepare(nb, name: str, profile: str, shown: str | None):
    """Ready an executed notebook (``nbformat`` node) for the page; ``shown``: the profile it ran on."""
    import nbformat

    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if HIDDEN_TAGS & set(tags) and "remove-cell" not in tags:
            tags.append("remove-cell")
        if cell.cell_type == "code":
            cell.source = NBVAL_MARKER.sub("", cell.source)
    if shown is not None and shown != profile:
        note = (f"```{{warning}}\nThis page shows the **{shown}** profile: the `{profile}` profile has no executed copy "
                f"of this chapter. {how_to_run(name, profile)}\n```")
        _under_title(nb, nbformat.v4.new_markdown_cell(note))
    return nb


def placeholder(source: Path, name: str, profile: str):
    """A page for a notebook without any executed copy: its introduction and how to run it."""
    import nbformat

    original = nbformat.read(source, as_version=4)
    intro = next((c for c in original.cells if c.cell_type == "markdown"), None)
    nb = nbformat.v4.new_notebook(metadata=original.metadata)
    nb.cells = [nbformat.v4.new_markdown_cell(intro.source if intro else f"# {name}")]
    note = (f"```{{important}}\nNot run on the `{profile}` profile: this chapter has no executed copy here, so its "
            f"tables and figures are missing from this page. {how_to_run(name, profile)}\n```")
    _under_title(nb, nbformat.v4.new_markdown_cell(note))
    return nb


def _under_title(nb, cell) -> None:
    """Insert ``cell`` right below the notebook's first heading (splitting its markdown cell)."""
    import nbformat

    for i, first in enumerate(nb.cells):
        if first.cell_type != "markdown":
            continue
        title, _, rest = first.source.partition("\n")
        if not title.startswith("# "):
            break
        first.source = title
        extra = [nbformat.v4.new_markdown_cell(rest.strip("\n"))] if rest.strip() else []
        nb.cells[i + 1:i + 1] = [cell, *extra]
        return
    nb.cells.insert(0, cell)


def stage(profile: str, root: Path) -> tuple[Path, dict[str, str | None]]:
    """Copy the book's pages and each notebook's page into ``_build/stage``; returns it and what each page shows."""
    import nbformat

    staging = root / "_build" / "stage"
    if staging.exists():
        shutil.rmtree(staging)
    (staging / "notebooks").mkdir(parents=True)
    for name in BOOK_FILES:
        src = root / name
        if src.exists():
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, staging / name)
    shown: dict[str, str | None] = {}
    for name, source in available_notebooks(root).items():
        executed, shown[name] = executed_copy(name, profile)
        if executed is None:
            nb = placeholder(source, name, profile)
        else:
            nb = prepare(nbformat.read(executed, as_version=4), name, profile, shown[name])
        nbformat.write(nb, staging / "notebooks" / source.name)
    return staging, shown


def build_book(profile: str = "quick", run: bool = True, device: str = "auto") -> Path:
    """Execute what is missing (on quick, unless ``run=False``) and render; returns ``_build/html``.

    The quick profile is always executed when ``run``; other profiles execute nothing of their own
    (their runs are long: ``reproduce``), and chapters without any executed copy run on quick.
    """
    check_choice("profile", profile, PROFILES)
    root = project_root()
    if run and profile == "quick":
        reproduce("quick", device=device)
    elif run:
        missing = [n for n in available_notebooks(root) if executed_copy(n, profile)[0] is None]
        if missing:
            reproduce("quick", notebooks=missing, device=device)
    staging, shown = stage(profile, root)
    for name, prof in shown.items():
        if prof != profile:
            print(f"[book] {name}: " + (f"shows the {prof} profile" if prof else "not run, a placeholder page"),
                  file=sys.stderr, flush=True)
    try:
        import jupyter_book  # noqa: F401
    except ImportError as err:
        raise BookFailed("jupyter-book is not installed: pip install -e '.[book]'") from err
    # jupyter_book has no __main__; call its click entry point from this interpreter.
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(staging),
           "--path-output", str(root), "-W", "-n", "--keep-going"]
    done = subprocess.run(cmd)
    if done.returncode != 0:
        raise BookFailed(f"jupyter-book build failed (exit {done.returncode}); its messages are above")
    return root / "_build" / "html"
