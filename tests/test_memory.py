import pytest
import torch

from robustode.chapters import anode
from robustode.core.memory import SavedTensorMeter, allocator_peak, saved_bytes_peak, step_cost, wall_times
from robustode.core.odeblock import ODEBlock
from robustode.core.timing import cpu_threads
from robustode.models.conv_anode import ConvDynamics


@pytest.fixture(autouse=True)
def _one_thread():
    """These tensors are tiny: on a busy 2-core machine a second OpenMP thread only adds waiting."""
    with cpu_threads(1):
        yield


def test_saved_bytes_count_exactly_what_autograd_keeps():
    x = torch.rand(1000, 250, requires_grad=True)  # 1,000,000 bytes
    # exp saves its output (1 MB); x * x saves x twice, which is one storage (1 MB).
    assert saved_bytes_peak(lambda: x.exp().sum().backward()) == 1_000_000
    assert saved_bytes_peak(lambda: (x * x).sum().backward()) == 1_000_000


def test_saved_bytes_are_released_once_backward_has_used_them():
    x = torch.rand(100, 100, requires_grad=True)
    with SavedTensorMeter() as meter:
        y = x.exp().exp().sum()
        assert meter.live == 2 * 40_000
        y.backward()
    assert meter.live == 0 and meter.peak == 80_000


def test_allocator_peak_sees_torch_cpp_allocations_that_tracemalloc_misses():
    def step():
        a = torch.ones(1_000_000)  # 4 MB from torch's C++ allocator
        b = a * 2  # + 4 MB while both live
        return float(b[0])

    assert 8_000_000 <= allocator_peak(step) < 9_000_000


def test_tracemalloc_misses_torch_allocations_which_is_why_it_is_not_used():
    import tracemalloc

    tracemalloc.start()
    try:
        big = torch.ones(1_000_000)  # 4 MB
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert float(big[0]) == 1.0 and peak < 1_000_000


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_peak_counts_the_bytes_a_step_allocates():
    from robustode.core.memory import cuda_peak

    device = torch.device("cuda")
    assert cuda_peak(lambda: torch.ones(1_000_000, device=device) * 2, device) >= 8_000_000


def test_wall_times_returns_one_time_per_repeat_and_rejects_bad_counts():
    assert len(wall_times(lambda: None, torch.device("cpu"), warmup=1, repeats=4)) == 4
    with pytest.raises(ValueError, match="repeats >= 1"):
        wall_times(lambda: None, torch.device("cpu"), warmup=0, repeats=0)


def _saved(steps: int, adjoint: bool) -> int:
    torch.manual_seed(0)
    block = ODEBlock(ConvDynamics(2, 3), method="euler", step_size=1.0 / steps, adjoint=adjoint)
    h = torch.rand(2, 2, 5, 5)
    return step_cost(lambda: block(h).square().sum().backward(), torch.device("cpu"), warmup=0, repeats=1)["saved_bytes"]


def test_backprop_memory_grows_by_the_same_amount_per_euler_step():
    b2, b4, b8 = (_saved(n, adjoint=False) for n in (2, 4, 8))
    assert b8 - b4 == 2 * (b4 - b2) > 0


def test_adjoint_memory_does_not_grow_with_the_number_of_steps():
    assert _saved(2, adjoint=True) == _saved(8, adjoint=True) < _saved(8, adjoint=False)


def _memory_profile() -> dict:
    return {"name": "quick", "anode": {
        "common": {"method": "dopri5", "tol": 1e-3, "max_num_steps": 1000, "lr": 1e-3, "time_dependent": True,
                   "cpu_threads": 1, "checkpoint": False, "resume": False},
        "memory": {"channels": 2, "filters": 3, "image_size": 5, "batch": 2, "fixed": {"euler": [1, 4], "rk4": [1, 2]},
                   "adaptive_method": "dopri5", "tolerances": [1e-2], "resnet_depths": [1, 4], "warmup": 0, "repeats": 1},
    }}


def test_memory_cost_writes_one_file_per_setting_and_the_check_reads_them(results_tmp):
    out = results_tmp / "results" / "quick"
    runs = anode.memory.memory_cost(_memory_profile(), "cpu", out, progress=False)
    assert len(runs) == 2 * 2 + 2 * 2 + 2 + 2
    assert (out / "anode-memory" / "rk4-n2-adjoint.json").exists()
    check = anode.memory.constant_memory_check(runs, "euler")
    assert check["adjoint_saved_ratio"] == 1.0
    assert check["backprop_saved_ratio"] > 2.0
    assert set(check["time_ratio"]) == {1, 4}
    resnet = anode.memory.memory_series(runs)["ResNet (backprop)"]
    assert [m["nfe_forward"] for m in resnet] == [1, 4] and resnet[1]["saved_bytes"] > resnet[0]["saved_bytes"]


def test_a_non_fixed_grid_method_in_the_step_sweep_is_rejected(results_tmp):
    profile = _memory_profile()
    profile["anode"]["memory"]["fixed"] = {"dopri5": [1]}
    with pytest.raises(ValueError, match="not a fixed-grid method"):
        anode.memory.memory_cost(profile, "cpu", results_tmp, progress=False)


def test_the_profilers_known_noise_is_held_back_and_other_lines_pass(capfd):
    import os

    from robustode.core.memory import quiet_profiler

    with quiet_profiler():
        os.write(2, b"USDT:2026-01-01 00:00:00 1:1 SyncActivityProfilerHandler.cpp:39] profiler_start\n")
        os.write(2, b"ERROR:2026-01-01 00:00:00 1:1 DeviceProperties.cpp:56] gpuGetDeviceCount failed with code 35\n")
        os.write(2, b"a real problem\n")
    assert capfd.readouterr().err == "a real problem\n"


def test_a_cpu_allocator_measurement_prints_nothing(capfd):
    x = torch.rand(100, 100, requires_grad=True)
    allocator_peak(lambda: (x @ x).sum().backward())
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


def test_memory_measurements_are_plan_units_and_a_render_shows_only_what_is_stored(results_tmp):
    """At paper scale the sweep takes hours on a CPU: the run plan measures it (one unit per setting, cheapest
    first), and a notebook rendering with compute=False shows the stored subset and says what is missing."""
    from robustode import plan
    from robustode.store import Store

    profile = _memory_profile()
    memory = [u for u in anode.run.units(profile, torch.device("cpu")) if u.id.startswith("anode/memory/")]
    assert len(memory) == 12 and len({u.id for u in memory}) == 12
    costs = [anode.memory.expected_evaluations(u.params["setting"]) for u in memory]
    assert costs == sorted(costs)  # cheapest first
    assert anode.memory.memory_cost(profile, "cpu", progress=False, compute=False) == []
    assert "0 of 12 measurements stored" in anode.memory.memory_caption(profile, [])
    store = Store("quick")
    outcome = plan.advance(profile, only=["anode/memory/euler-*"], store=store, progress=False, log=lambda text: None)
    assert sorted(outcome.finished) == sorted(u.id for u in memory if u.id.startswith("anode/memory/euler-"))
    stored = anode.memory.memory_cost(profile, "cpu", progress=False, compute=False)
    assert {r["metrics"]["setting"]["method"] for r in stored} == {"euler"} and len(stored) == 4
    caption = anode.memory.memory_caption(profile, stored)
    assert "4 of 12 measurements stored" in caption and "--only anode/memory" in caption
    claims = anode.findings.memory_claims(stored, ["euler", "rk4"])
    assert claims and all(k.startswith("euler") for k in claims) and all(claims.values())
    assert anode.findings.memory_findings(stored, ["euler", "rk4"], "dopri5")  # the partial sweep still reads
    everything = anode.memory.memory_cost(profile, "cpu", progress=False)  # compute=True fills the rest
    assert len(everything) == 12 and "stored;" not in anode.memory.memory_caption(profile, everything)
