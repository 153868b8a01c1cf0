import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)


@pytest.fixture
def results_tmp(tmp_path, monkeypatch):
    """An isolated project root so tests never touch the real results/ folder."""
    monkeypatch.setenv("ROBUSTODE_ROOT", str(tmp_path))
    return tmp_path
