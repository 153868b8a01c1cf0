"""Where the project keeps data and results, found from the working directory (notebooks run in notebooks/)."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """``$ROBUSTODE_ROOT``, else the nearest folder up from the cwd holding ``_toc.yml``, else the cwd."""
    if env := os.environ.get("ROBUSTODE_ROOT"):
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").is_file() and (folder / "notebooks").is_dir():
            return folder
    return here


def data_dir() -> Path:
    """``$ROBUSTODE_DATA``, else ``<root>/data`` (git-ignored; ``.ci/run`` fills it from ../shared/data)."""
    return Path(os.environ.get("ROBUSTODE_DATA", project_root() / "data")).resolve()


def results_dir(profile: str) -> Path:
    return project_root() / "results" / profile
