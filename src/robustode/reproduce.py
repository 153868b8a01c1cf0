"""Batch reproduction: the run plan's units of a profile, then the book's notebooks through papermill.

For every profile but ``quick``, :func:`reproduce` first advances the run plan (:func:`robustode.plan.advance`,
the same runner as ``robustode run``) over the chapters of the chosen notebooks, then executes the notebooks
with ``compute=False``: they find the finished runs and only render them. The ``quick`` profile computes inside
its notebooks (the pipeline check CI runs). A profile's notebooks are those of the chapters it configures,
and the report.

Executed copies go to ``results/<profile>/notebooks/`` and a manifest (status, duration, parameters,
commit) to ``results/<profile>/manifest.json``. A notebook executes into ``<name>.partial.ipynb`` and
replaces ``<name>.ipynb`` only when it finished, so a run that is stopped or fails never leaves a
half-executed copy where the book looks for one (and never loses the last finished copy). A failing
notebook is kept as ``<name>.failed.ipynb`` and stops the batch with a message naming the notebook
and the cell; the manifest of what already ran is kept.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from robustode.paths import project_root, results_dir
from robustode.profiles import DEVICES, PROFILES, check_choice
from robustode.results import git_commit, now, write_json_atomic


class NotebookFailed(RuntimeError):
    pass


# The chapter (profile section) behind each notebook; the report belongs to every profile.
NOTEBOOK_CHAPTERS = {"01_topology": "topology", "02_robustness": "robustness", "03_tisode": "robustness",
                     "04_attention": "attention", "05_anode": "anode", "06_report": None, "07_claims": None}


def profile_notebooks(profile: str, root: Path | None = None) -> list[str]:
    """The notebooks a profile can execute: those whose chapter it configures, and the report."""
    from robustode.profiles import load_profile

    settings = load_profile(profile)
    return [name for name in available_notebooks(root)
            if NOTEBOOK_CHAPTERS.get(name) is None or NOTEBOOK_CHAPTERS[name] in settings]


def available_notebooks(root: Path | None = None) -> dict[str, Path]:
    folder = (root or project_root()) / "notebooks"
    return {p.stem: p for p in sorted(folder.glob("*.ipynb"))}


def select_notebooks(names: list[str] | None, root: Path | None = None) -> list[Path]:
    """The notebooks to run, in book order; unknown names fail before anything runs."""
    found = available_notebooks(root)
    if not names:
        return list(found.values())
    unknown = [n for n in names if n.removesuffix(".ipynb") not in found]
    if unknown:
        raise ValueError(f"unknown notebook(s) {', '.join(unknown)}; choose from: {', '.join(found)}")
    return [found[n.removesuffix(".ipynb")] for n in names]


def _failed_cell(notebook_path: Path) -> str:
    import nbformat

    nb = nbformat.read(notebook_path, as_version=4)
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return f"cell {index} (execution count {cell.get('execution_count')}): {output.get('ename')}: {output.get('evalue')}"
    return "cell unknown"


def reproduce(
    profile: str = "quick",
    notebooks: list[str] | None = None,
    device: str = "auto",
    out_dir: Path | None = None,
    log_output: bool = False,
    budget: float | None = None,
    advance: bool = True,
) -> Path:
    """Advance the run plan (every profile but ``quick``; within ``budget`` seconds if given), then execute the
    notebooks for ``profile``; return the manifest path. With ``advance=False`` no run starts: the notebooks render
    what the store holds. Raises :class:`NotebookFailed`."""
    import papermill as pm

    check_choice("profile", profile, PROFILES)
    check_choice("device", device, DEVICES)
    root = project_root()
    chosen = select_notebooks(notebooks or profile_notebooks(profile, root), root)
    unknown = [p.stem for p in chosen if p.stem not in profile_notebooks(profile, root)]
    if unknown:
        raise ValueError(f"profile {profile!r} configures no chapter for {', '.join(unknown)}; "
                         f"its notebooks: {', '.join(profile_notebooks(profile, root))}")
    compute = profile == "quick"
    if not compute and advance:
        from robustode import plan

        chapters = sorted({NOTEBOOK_CHAPTERS[p.stem] for p in chosen if NOTEBOOK_CHAPTERS.get(p.stem)})
        if chapters:
            print(f"[reproduce] run plan for {', '.join(chapters)} (profile={profile})", file=sys.stderr, flush=True)
            plan.advance(profile, budget, [f"{c}/*" for c in chapters], device)
    out = Path(out_dir) if out_dir else results_dir(profile)
    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    manifest = {"profile": profile, "device": device, "git_commit": git_commit(), "started": now(), "notebooks": []}
    parameters = {"profile": profile, "device": device, "compute": compute}
    for path in chosen:
        target = out / "notebooks" / path.name
        entry = {"notebook": path.name, "output": _shown(target, root), "parameters": parameters, "started": now()}
        tic = time.perf_counter()
        print(f"[reproduce] {path.name} (profile={profile}, device={device})", file=sys.stderr, flush=True)
        partial = target.with_name(f"{path.stem}.partial.ipynb")
        try:
            pm.execute_notebook(
                str(path), str(partial), parameters=parameters, kernel_name="python3",
                cwd=str(path.parent), log_output=log_output, progress_bar=False,
            )
            os.replace(partial, target)
            entry["status"] = "ok"
        except pm.PapermillExecutionError as err:
            target = target.with_name(f"{path.stem}.failed.ipynb")
            os.replace(partial, target)
            entry["status"] = "failed"
            entry["error"] = f"{err.ename}: {err.evalue}"
            entry["cell"] = _failed_cell(target)
            entry["output"] = _shown(target, root)
        entry["seconds"] = round(time.perf_counter() - tic, 1)
        entry["finished"] = now()
        manifest["notebooks"] = [e for e in manifest["notebooks"] if e["notebook"] != path.name] + [entry]
        write_json_atomic(manifest_path, _merge(manifest_path, manifest))
        print(f"[reproduce] {path.name}: {entry['status']} in {entry['seconds']} s", file=sys.stderr, flush=True)
        if entry["status"] != "ok":
            raise NotebookFailed(f"notebook {path.name} failed in {entry['cell']}; executed copy: {target}")
    return manifest_path


def _shown(path: Path, root: Path) -> str:
    """``path`` relative to the project root where it lies inside it (the manifest travels with the project)."""
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def _merge(manifest_path: Path, current: dict) -> dict:
    """Keep entries of notebooks not run this time (a batch split into pieces adds up)."""
    import json

    if not manifest_path.exists():
        return current
    previous = json.loads(manifest_path.read_text())
    ran = {e["notebook"] for e in current["notebooks"]}
    kept = [e for e in previous.get("notebooks", []) if e["notebook"] not in ran]
    return {**current, "notebooks": sorted(kept + current["notebooks"], key=lambda e: e["notebook"])}
