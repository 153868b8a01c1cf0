"""Render the Jupyter Book from executed notebooks (execution off), one path for every profile.

The staging folder holds the book's pages and, for each notebook, the executed copy of the chosen
profile (falling back to the quick copy where that profile has none), so the rendered page shows
exactly what a papermill run produced.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from robustode.paths import project_root, results_dir
from robustode.profiles import PROFILES, check_choice
from robustode.reproduce import available_notebooks, reproduce

BOOK_FILES = ("_config.yml", "_toc.yml", "book")


def stage(profile: str, root: Path) -> Path:
    staging = root / "_build" / "stage"
    if staging.exists():
        shutil.rmtree(staging)
    (staging / "notebooks").mkdir(parents=True)
    for name in BOOK_FILES:
        src = root / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, staging / name)
    for name, source in available_notebooks(root).items():
        candidates = [results_dir(profile) / "notebooks" / source.name, results_dir("quick") / "notebooks" / source.name]
        executed = next((c for c in candidates if c.exists()), None)
        if executed is None:
            raise FileNotFoundError(f"no executed copy of {name}; run: python -m robustode reproduce --profile quick")
        shutil.copy2(executed, staging / "notebooks" / source.name)
    return staging


def build_book(profile: str = "quick", run: bool = True, device: str = "auto") -> Path:
    """Execute (quick profile, unless ``run=False``) and render; returns ``_build/html``."""
    check_choice("profile", profile, PROFILES)
    root = project_root()
    if run and profile == "quick":
        reproduce("quick", device=device)
    elif profile == "full":
        missing = [n for n, p in available_notebooks(root).items()
                   if not (results_dir("full") / "notebooks" / p.name).exists()
                   and not (results_dir("quick") / "notebooks" / p.name).exists()]
        if missing and run:
            reproduce("quick", notebooks=missing, device=device)
    staging = stage(profile, root)
    # jupyter_book has no __main__; call its click entry point from this interpreter.
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(staging),
           "--path-output", str(root), "-W", "-n", "--keep-going"]
    subprocess.run(cmd, check=True)
    return root / "_build" / "html"
