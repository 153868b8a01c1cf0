import pytest
import torch
from torch import nn

from robustode.odeblock import ODEBlock, SolverFailure


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
