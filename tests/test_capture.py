"""CUDA-graph capture hazards, checked on the CPU: what the capture path does to streams, generators and the
tensors a live graph reads, and the host reads and per-image kernels that a captured or attacked step must not make."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustode.core.engine import TrainStep
from robustode.core.odeblock import ODEBlock, _grid_tensor
from robustode.core.training import TrainSpec


def _noise(x, generator):
    return x + 0.1 * torch.randn(x.shape, generator=generator)


def _step_and_data(seed: int = 0) -> tuple[TrainStep, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    spec = TrainSpec(epochs=1, weight_decay=5e-4, augment=_noise)
    step = TrainStep(model, spec, torch.device("cpu"), torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(1)
    return step, torch.rand(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)


def test_warm_up_leaves_the_generator_weights_and_adam_state_as_they_were():
    step, x, y = _step_and_data()
    before = step.generator.get_state()
    weights = [p.detach().clone() for p in step.model.parameters()]
    step.warm_up(x, y, epoch=0)
    assert torch.equal(step.generator.get_state(), before)  # else graphed runs draw other noise than eager ones
    for a, b in zip(weights, step.model.parameters(), strict=True):
        assert torch.equal(a, b)
    # the next (eager) step is the step a fresh run would make: same noise, same Adam update
    fresh, _, _ = _step_and_data()
    step(x, y, epoch=0, graph=False)
    fresh(x, y, epoch=0, graph=False)
    for a, b in zip(fresh.model.parameters(), step.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


class _FakeCuda:
    """Just enough of ``torch.cuda`` to run TrainStep's capture path on the CPU and record its streams."""

    def __init__(self):
        self.default = self.Stream()
        self.current = self.default  # the stream work is issued to
        self.captured_on: list = []

    def Stream(self, device=None):  # noqa: N802 - mirrors torch.cuda.Stream
        return SimpleNamespace(device=device, wait_stream=lambda other: None, name=f"stream{id(object())}")

    def current_stream(self, device=None):
        return self.current

    @contextlib.contextmanager
    def stream(self, s):
        previous, self.current = self.current, s
        try:
            yield
        finally:
            self.current = previous

    def CUDAGraph(self):  # noqa: N802
        return SimpleNamespace(register_generator_state=lambda g: None, replay=lambda: None)

    @contextlib.contextmanager
    def graph(self, graph, stream=None):
        self.captured_on.append(stream)
        with self.stream(stream):
            yield


def test_each_train_step_warms_up_and_captures_on_its_own_stream_and_keeps_it(monkeypatch):
    fake = _FakeCuda()
    for name in ("Stream", "current_stream", "stream", "CUDAGraph", "graph"):
        monkeypatch.setattr(torch.cuda, name, getattr(fake, name))
    steps = []
    for seed in (0, 1, 2):
        step, x, y = _step_and_data(seed)
        step.device = SimpleNamespace(type="cuda")  # the capture path, on CPU tensors
        issued_on = []
        original = step._step

        def recording(*args, original=original, issued_on=issued_on):
            issued_on.append(fake.current)
            return original(*args)

        step._step = recording
        before = step.generator.get_state()
        step(x, y, epoch=0, graph=True)
        stream = step.capture_stream()
        assert stream is not None
        assert issued_on == [stream] * 4  # three warm-up steps and the captured one, all on the step's stream
        assert fake.captured_on[-1] is stream
        assert torch.equal(step.generator.get_state(), before)  # warm-up and capture drew nothing the replays miss
        step(x[:4], y[:4], epoch=0, graph=True)  # a second graph: same stream, still held by the step
        assert fake.captured_on[-1] is stream and step.capture_stream() is stream and len(step.graphs) == 2
        steps.append(step)
    assert len({id(s.capture_stream()) for s in steps}) == 3  # no stream (hence no cuBLAS workspace) shared


def test_grid_tensors_a_graph_reads_are_never_evicted():
    first = _grid_tensor((0.0, 0.5, 1.0), torch.device("cpu"), torch.float32)
    for k in range(200):  # far more grids than the old lru_cache(64) held
        _grid_tensor((0.0, 1.0 + k), torch.device("cpu"), torch.float32)
    assert _grid_tensor((0.0, 0.5, 1.0), torch.device("cpu"), torch.float32) is first


def test_a_tisode_training_step_on_the_loop_backend_reads_no_tensor_value_on_the_host(monkeypatch):
    from robustode.core.engine import use_loop_backend
    from robustode.core.regularisers import SteadyStateRegulariser
    from robustode.models.robust import build

    model = build("TisODE", width=4)
    use_loop_backend(model)
    x, y = torch.rand(2, 1, 28, 28), torch.tensor([1, 2])

    def host_read(*_):
        raise AssertionError("a tensor value read on the host inside the step")

    for name in ("__float__", "__int__", "__bool__", "item", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, host_read)
    model.train()
    loss = F.cross_entropy(model(x), y) + SteadyStateRegulariser(start_epoch=0)(model, x, 0)
    loss.backward()


def test_loop_and_torchdiffeq_trajectories_take_float_times_alike():
    from robustode.models.robust import ConvField

    torch.manual_seed(0)
    field = ConvField(4, time_dependent=False)
    h = torch.randn(2, 4, 5, 5)
    loop = ODEBlock(field, method="euler", step_size=0.1, backend="loop").trajectory(h, (0.0, 0.9, 1.0))
    plain = ODEBlock(field, method="euler", step_size=0.1).trajectory(h, (0.0, 0.9, 1.0))
    torch.testing.assert_close(loop, plain, rtol=1e-5, atol=1e-6)


def _randomise_per_image(x: torch.Tensor, extra: int) -> torch.Tensor:
    """The former implementation, one copy per image: the reference the vectorised one must equal."""
    size = x.shape[-1]
    out = size + extra
    r = int(torch.randint(size, out, (1,)))
    resized = F.interpolate(x, size=(r, r), mode="nearest") if r != size else x
    pad = out - r
    left = torch.randint(0, pad + 1, (x.shape[0],)).tolist()
    top = torch.randint(0, pad + 1, (x.shape[0],)).tolist()
    canvas = x.new_zeros(x.shape[0], x.shape[1], out, out)
    for i, (a, b) in enumerate(zip(top, left, strict=True)):
        canvas[i, :, a : a + r, b : b + r] = resized[i]
    return canvas


@pytest.mark.parametrize("seed", range(6))
def test_input_randomisation_equals_the_per_image_loop_for_a_seed(seed):
    from robustode.core.defences import InputRandomisation

    x = torch.rand(16, 3, 10, 10, requires_grad=True)
    torch.manual_seed(seed)
    reference = _randomise_per_image(x, 4)
    torch.manual_seed(seed)
    out = InputRandomisation(4)(x)
    assert out.shape == reference.shape and torch.equal(out, reference)
    # gradients reach the input as before (the EOT attacks differentiate through it)
    weights = torch.rand_like(out)
    (g_new,) = torch.autograd.grad((out * weights).sum(), x)
    (g_old,) = torch.autograd.grad((reference * weights).sum(), x)
    assert torch.equal(g_new, g_old)


def test_input_randomisation_launches_a_fixed_number_of_kernels_whatever_the_batch():
    from torch.profiler import ProfilerActivity, profile

    from robustode.core.defences import InputRandomisation

    counts = []
    for n in (4, 64):
        torch.manual_seed(0)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            InputRandomisation(4)(torch.rand(n, 1, 28, 28))
        counts.append(sum(e.count for e in prof.key_averages() if e.key in ("aten::copy_", "aten::slice")))
    assert counts[0] == counts[1]  # the per-image loop made a copy and slices per image
