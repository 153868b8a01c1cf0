import subprocess
import sys

import pytest

from robustode.cli import main
from robustode.reproduce import select_notebooks


def test_params_prints_every_registered_toy_model(capsys):
    assert main(["params"]) == 0
    out = capsys.readouterr().out
    for name in ("toy-NODE", "toy-ANODE-p1", "toy-ResNet"):
        assert name in out


def test_params_of_an_unknown_model_exits_with_the_allowed_names(capsys):
    assert main(["params", "GPT"]) == 2
    err = capsys.readouterr().err
    assert "unknown model" in err and "toy-NODE" in err


def test_unknown_notebook_fails_before_anything_runs():
    with pytest.raises(ValueError, match="unknown notebook"):
        select_notebooks(["99_nope"])


def test_reproduce_with_an_unknown_notebook_exits_non_zero(capsys):
    assert main(["reproduce", "--notebooks", "nope"]) == 2
    assert "choose from" in capsys.readouterr().err


def test_module_entry_point_shows_help():
    out = subprocess.run([sys.executable, "-m", "robustode", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "reproduce" in out.stdout and "params" in out.stdout


def test_data_command_reports_missing_sets_and_survives_a_failed_fetch(tmp_path, monkeypatch, capsys):
    import robustode.data.images as images

    def offline(name, train, root=None, download=False):
        raise images.DataMissing(f"{name} is not in {tmp_path}")

    monkeypatch.setenv("ROBUSTODE_DATA", str(tmp_path))
    monkeypatch.setattr(images, "load_tensors", offline)
    assert main(["data", "--fetch", "SVHN"]) == 0
    assert "SVHN" in capsys.readouterr().out
    assert main(["data", "--fetch", "--strict", "SVHN"]) == 1
    assert main(["data", "Imagenet21k"]) == 2


def _notebook(path, code: str) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "quick"\ndevice = "auto"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(code)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.mark.slow
def test_reproduce_replaces_an_executed_copy_only_when_the_notebook_finished(tmp_path, monkeypatch):
    import json

    from robustode.reproduce import NotebookFailed, reproduce

    monkeypatch.setenv("ROBUSTODE_ROOT", str(tmp_path))
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: index\n")
    (tmp_path / "notebooks").mkdir()
    _notebook(tmp_path / "notebooks" / "a_ok.ipynb", "print(profile * 2)")
    _notebook(tmp_path / "notebooks" / "b_bad.ipynb", "raise RuntimeError('boom')")
    executed = tmp_path / "results" / "quick" / "notebooks"
    executed.mkdir(parents=True)
    (executed / "b_bad.ipynb").write_text("the last finished copy")
    with pytest.raises(NotebookFailed, match=r"b_bad.ipynb failed in cell \d+ .*RuntimeError: boom.*b_bad.failed.ipynb"):
        reproduce("quick")
    assert "quickquick" in (executed / "a_ok.ipynb").read_text()
    assert (executed / "b_bad.ipynb").read_text() == "the last finished copy"
    assert (executed / "b_bad.failed.ipynb").exists() and not list(executed.glob("*.partial.ipynb"))
    manifest = json.loads((tmp_path / "results" / "quick" / "manifest.json").read_text())
    assert [(e["notebook"], e["status"]) for e in manifest["notebooks"]] == [("a_ok.ipynb", "ok"), ("b_bad.ipynb", "failed")]


@pytest.mark.slow
def test_reproduce_advances_the_run_plan_then_renders_without_computing(tmp_path, monkeypatch):
    from robustode import plan
    from robustode.reproduce import profile_notebooks, reproduce

    monkeypatch.setenv("ROBUSTODE_ROOT", str(tmp_path))
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: index\n")
    (tmp_path / "notebooks").mkdir()
    for name in ("02_robustness", "04_attention", "06_report"):
        _notebook(tmp_path / "notebooks" / f"{name}.ipynb", "print('compute =', compute)")
    calls = []
    monkeypatch.setattr(plan, "advance", lambda profile, budget, only, device: calls.append((profile, budget, only)))
    assert profile_notebooks("paper-short") == ["02_robustness", "06_report"]  # paper-short has no attention section
    with pytest.raises(ValueError, match="configures no chapter for 04_attention"):
        reproduce("paper-short", ["04_attention"])
    assert not calls
    reproduce("paper-short", budget=60.0)
    assert calls == [("paper-short", 60.0, ["robustness/*"])]
    executed = tmp_path / "results" / "paper-short" / "notebooks" / "02_robustness.ipynb"
    assert "compute = False" in executed.read_text()
    executed.unlink()
    reproduce("paper-short", advance=False)  # render only: the plan is not touched, the notebook still renders
    assert len(calls) == 1 and "compute = False" in executed.read_text()
    with pytest.raises(SystemExit, match="takes no --budget"):
        main(["reproduce", "--profile", "paper-short", "--render-only", "--budget", "1m"])


def test_data_lists_imgnet10_and_says_how_to_provide_it(monkeypatch, capsys):
    monkeypatch.delenv("ROBUSTODE_IMAGENET", raising=False)
    assert main(["data"]) == 0
    assert "ImgNet10       missing: ROBUSTODE_IMAGENET is not set" in capsys.readouterr().out
    assert main(["data", "--fetch", "--strict", "ImgNet10"]) == 1
    assert "not downloadable" in capsys.readouterr().err


def test_help_has_no_restructuredtext_markup():
    from robustode.cli import parser

    top = parser()
    texts = [top.format_help()] + [sub.format_help() for sub in top._subparsers._group_actions[0].choices.values()]
    assert not [t for t in texts if "``" in t or ":func:" in t]

