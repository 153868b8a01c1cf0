import pytest
import torch
from torch import nn

from robustode.core.odeblock import ODEBlock, SolverFailure


class Linear(nn.Module):
    def __init__(self, dim=3):
        super().__init__()
        self.lin = nn.Linear(dim, dim)

    def forward(self, t, h):
        return self.lin(h)


@pytest.mark.parametrize("steps", [1, 4, 10])
def test_euler_with_n_steps_evaluates_the_field_n_times(steps):
    block = ODEBlock(Linear(), method="euler", step_size=1.0 / steps)
    block(torch.randn(5, 3))
    assert block.nfe_forward == steps


def test_rk4_evaluates_the_field_four_times_per_step():
    block = ODEBlock(Linear(), method="rk4", step_size=0.25)
    block(torch.randn(5, 3))
    assert block.nfe_forward == 4 * 4


def test_euler_matches_the_hand_written_recursion():
    field = Linear()
    block = ODEBlock(field, method="euler", step_size=0.1)
    h = torch.randn(4, 3)
    expected = h.clone()
    for _ in range(10):
        expected = expected + 0.1 * field(None, expected)
    torch.testing.assert_close(block(h), expected)


def test_adjoint_gradients_equal_backprop_through_the_solver():
    torch.manual_seed(1)
    field = Linear()
    h0 = torch.randn(6, 3)
    grads = []
    for adjoint in (False, True):
        block = ODEBlock(field, method="dopri5", rtol=1e-9, atol=1e-9, adjoint=adjoint)
        field.zero_grad()
        block(h0).pow(2).sum().backward()
        grads.append([p.grad.clone() for p in field.parameters()])
    for direct, adj in zip(*grads, strict=True):
        torch.testing.assert_close(direct, adj, rtol=1e-5, atol=1e-6)


def test_backward_nfe_counts_adjoint_solves_and_is_zero_for_direct_backprop():
    direct = ODEBlock(Linear(), method="euler", step_size=0.1)
    direct(torch.randn(2, 3)).sum().backward()
    assert direct.nfe_backward == 0
    adjoint = ODEBlock(Linear(), method="euler", step_size=0.1, adjoint=True)
    adjoint(torch.randn(2, 3)).sum().backward()
    assert adjoint.nfe_forward == 10
    assert adjoint.nfe_backward == 10


def test_exceeding_the_step_budget_raises_one_typed_error():
    class Stiff(nn.Module):
        def forward(self, t, h):
            return -1e4 * h + torch.sin(1e3 * t)

    block = ODEBlock(Stiff(), method="dopri5", rtol=1e-8, atol=1e-8, max_num_steps=5)
    with pytest.raises(SolverFailure) as info:
        block(torch.ones(1, 1))
    assert info.value.reason == "max_num_steps"


def test_trajectory_returns_every_requested_time():
    block = ODEBlock(Linear(), method="rk4", step_size=0.1)
    states = block.trajectory(torch.randn(2, 3), torch.linspace(0, 1, 7))
    assert states.shape == (7, 2, 3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"method": "rk45"}, "unknown ODE method"),
        ({"times": (1.0, 0.0)}, "strictly increasing"),
        ({"method": "euler", "step_size": 0.0}, "step_size must be positive"),
        ({"max_num_steps": 0}, "max_num_steps must be positive"),
    ],
)
def test_bad_settings_fail_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ODEBlock(Linear(), **kwargs)


@pytest.mark.parametrize("method, step, nfe", [("euler", 0.1, 10), ("midpoint", 0.25, 8), ("rk4", 0.25, 16)])
def test_loop_backend_matches_torchdiffeq_in_outputs_gradients_and_nfe(method, step, nfe):
    torch.manual_seed(2)
    field = Linear()
    h0 = torch.randn(5, 3)
    results = []
    for backend in ("torchdiffeq", "loop"):
        block = ODEBlock(field, method=method, step_size=step, backend=backend)
        field.zero_grad()
        out = block(h0)
        out.pow(2).sum().backward()
        results.append((out.detach(), [p.grad.clone() for p in field.parameters()], block.nfe_forward))
    (out_a, grads_a, nfe_a), (out_b, grads_b, nfe_b) = results
    torch.testing.assert_close(out_a, out_b, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert nfe_a == nfe_b == nfe


def test_loop_backend_returns_states_at_intermediate_times():
    field = Linear()
    h0 = torch.randn(2, 3)
    times = torch.tensor([0.0, 0.9, 1.0, 1.5])
    ref = ODEBlock(field, method="euler", step_size=0.05).trajectory(h0, times)
    loop = ODEBlock(field, method="euler", step_size=0.05, backend="loop").trajectory(h0, times)
    torch.testing.assert_close(ref, loop, rtol=1e-4, atol=1e-5)


def test_loop_backend_rejects_times_off_its_grid_and_adaptive_methods():
    with pytest.raises(ValueError, match="whole number of steps"):
        ODEBlock(Linear(), times=(0.0, 1.0), method="euler", step_size=0.3, backend="loop")(torch.randn(1, 3))
    with pytest.raises(ValueError, match="loop backend needs"):
        ODEBlock(Linear(), method="dopri5", backend="loop")
