"""The repository's own rules: notebooks without outputs, a parameters cell, environment in sync."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CONDA_NAMES = {"torch": "pytorch"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].strip().lower()


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and (c["outputs"] or c["execution_count"])]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs or execution counts"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_have_one_parameters_cell_defaulting_to_quick(path):
    nb = json.loads(path.read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1
    assert 'profile = "quick"' in "".join(cells[0]["source"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_in_the_table_of_contents(path):
    toc = (ROOT / "_toc.yml").read_text()
    assert f"notebooks/{path.stem}" in toc


def test_environment_yml_lists_every_dependency_of_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {_name(d) for d in env["dependencies"] if isinstance(d, str)}
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = conda | {_name(p) for p in pip if not p.startswith("-e")}
    for requirement in project["dependencies"]:
        name = _name(requirement)
        assert CONDA_NAMES.get(name, name) in listed, f"{name} missing from environment.yml"
    editable = next(p for p in pip if p.startswith("-e"))
    extras = set(re.search(r"\[(.*)\]", editable).group(1).split(","))
    assert extras == set(project["optional-dependencies"])


def test_the_device_script_refuses_a_bad_time_budget_before_any_work(tmp_path):
    out = subprocess.run(["bash", str(ROOT / "tools" / "device_run.sh"), "ten"], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "OUT": str(tmp_path)}, timeout=60)
    assert out.returncode == 2 and "SECONDS must be a whole number" in out.stderr
    assert not any(tmp_path.iterdir())


def test_the_device_script_keeps_inside_the_device_commands_limit(tmp_path):
    for seconds in ("600", "10"):  # a piece must end, packing included, inside a 600 s command
        out = subprocess.run(["bash", str(ROOT / "tools" / "device_run.sh"), seconds], capture_output=True, text=True,
                             env={"PATH": "/usr/bin:/bin", "OUT": str(tmp_path)}, timeout=60)
        assert out.returncode == 2 and "SECONDS must be 30 to 590" in out.stderr
    assert not any(tmp_path.iterdir())


def test_nbval_waits_longer_than_its_fixed_5_s_for_a_cells_output():
    # collect a chapter the way `make test` does (no kernel starts at collection) and read each cell's wait
    code = ("import sys, pytest\n"
            "class Seen:\n"
            "    def pytest_collection_finish(self, session):\n"
            "        print('waits', sorted({item.output_timeout for item in session.items}))\n"
            "sys.exit(pytest.main(['--collect-only', '-q', '--nbval-lax', '--nbval-current-env', '-p', "
            "'no:cacheprovider', 'notebooks/01_topology.ipynb'], plugins=[Seen()]))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "waits [60]" in out.stdout
