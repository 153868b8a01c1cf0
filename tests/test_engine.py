"""The engine must train exactly like the plain loop: same batches, same noise, same updates."""

import pytest
import torch
from torch import nn

from robustode.engine import _lr_at, train_fast, use_loop_backend
from robustode.odeblock import ODEBlock
from robustode.training import TrainSpec, train


class Field(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 6)

    def forward(self, t, h):
        return torch.tanh(self.lin(h))


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), ODEBlock(Field(), method="euler", step_size=0.25), nn.Linear(6, 3))


def _data():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(70, 4, generator=g)
    return x, (x.sum(dim=1) * 1.5).long().clamp(max=2)


def _noise(x, generator):
    return (x + 0.1 * torch.randn(x.shape, generator=generator)).clamp(0, 1)


class L2Field:
    start_epoch = 1

    def __call__(self, model, x, epoch):
        return None if epoch < self.start_epoch else 1e-2 * sum(p.pow(2).sum() for p in model[1].parameters())


def _plain_batches(x, y, batch_size, seed):
    order_gen = torch.Generator().manual_seed(seed + 1)

    def batches(epoch):
        order = torch.randperm(len(x), generator=order_gen)
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            yield x[idx], y[idx]

    return batches


def test_engine_on_cpu_ends_with_the_plain_loops_parameters():
    x, y = _data()
    spec = TrainSpec(epochs=3, milestones=(2,), gamma=0.2, weight_decay=5e-4, augment=_noise,
                     regulariser=L2Field(), seed=4)
    plain, fast = _model(), _model()
    h_plain = train(plain, _plain_batches(x, y, 16, 4), spec, progress=False)
    h_fast = train_fast(fast, x, y, spec, batch_size=16, device="cpu", progress=False)
    for a, b in zip(plain.parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for ea, eb in zip(h_plain.epochs, h_fast.epochs, strict=True):
        assert ea["loss"] == pytest.approx(eb["loss"], rel=1e-4)
        assert ea["accuracy"] == eb["accuracy"]
        assert ea["nfe_forward"] == eb["nfe_forward"] == 4


def test_engine_switches_fixed_step_blocks_to_the_loop_backend_only():
    model = nn.Sequential(ODEBlock(Field(), method="euler", step_size=0.1), ODEBlock(Field(), method="dopri5"))
    assert use_loop_backend(model) == 1
    assert [m.backend for m in model] == ["loop", "torchdiffeq"]


def test_learning_rate_schedule_matches_multisteplr():
    spec = TrainSpec(epochs=100, lr=1e-3, milestones=(30, 60, 90), gamma=0.2)
    assert [round(_lr_at(spec, e), 10) for e in (0, 29, 30, 60, 99)] == [1e-3, 1e-3, 2e-4, 4e-5, 8e-6]


def test_graphs_are_refused_off_cuda():
    x, y = _data()
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        train_fast(_model(), x, y, TrainSpec(epochs=1), batch_size=8, device="cpu", graphs=True)


def test_steady_state_term_is_the_same_on_the_loop_backend():
    from robustode.models.robust import ConvField
    from robustode.regularisers import steady_state_loss

    torch.manual_seed(0)
    field = ConvField(8, time_dependent=False)
    z = torch.randn(2, 8, 5, 5)
    plain = steady_state_loss(ODEBlock(field, method="euler", step_size=0.05), z)
    loop = steady_state_loss(ODEBlock(field, method="euler", step_size=0.05, backend="loop"), z)
    torch.testing.assert_close(plain, loop, rtol=1e-4, atol=1e-6)


def test_engine_trains_tisode_like_the_plain_loop():
    from robustode.models.robust import build
    from robustode.noise import NoiseAugmentation
    from robustode.regularisers import SteadyStateRegulariser

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(24, 1, 28, 28, generator=g), torch.randint(0, 10, (24,), generator=g)
    spec = TrainSpec(epochs=2, weight_decay=5e-4, augment=NoiseAugmentation(),
                     regulariser=SteadyStateRegulariser(start_epoch=1), seed=3)
    torch.manual_seed(1)
    plain = build("TisODE", width=8)
    torch.manual_seed(1)
    fast = build("TisODE", width=8)
    train(plain, _plain_batches(x, y, 8, 3), spec, progress=False)
    train_fast(fast, x, y, spec, batch_size=8, device="cpu", progress=False)
    for a, b in zip(plain.parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
