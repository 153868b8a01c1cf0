"""Low-dimensional models of Dupont et al. (2019): NODE / ANODE with an MLP field, and the ResNet baseline."""

from __future__ import annotations

import torch
from torch import nn

from robustode.core.dynamics import Augment, MLPDynamics
from robustode.core.odeblock import ODEBlock, ReportsNFE


class FirstCoordinates(nn.Module):
    """Fixed read-out: the first ``k`` coordinates of the state (a projection, no parameters)."""

    def __init__(self, k: int):
        super().__init__()
        self.k = k

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h[:, : self.k]


class ODENet(ReportsNFE, nn.Module):
    """x -> [x; 0_p] -> ODE flow phi_T -> Linear(d+p -> out). ``augment_dim=0`` is a plain NODE."""

    def __init__(
        self,
        data_dim: int,
        hidden: int = 32,
        out_dim: int = 1,
        augment_dim: int = 0,
        time_dependent: bool = True,
        linear_head: bool = True,
        **solver,
    ):
        super().__init__()
        self.augment = Augment(augment_dim)
        self.block = ODEBlock(MLPDynamics(data_dim + augment_dim, hidden, time_dependent), **solver)
        # Without a learnable head the output is the first out_dim coordinates of h(T): the flow
        # itself must fit the map (Dupont et al., Sec. 4), so a head cannot undo its limits.
        self.head = nn.Linear(data_dim + augment_dim, out_dim) if linear_head else FirstCoordinates(out_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.augment(x))

    def trajectory(self, x: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """Hidden states (lifted when augmented) at ``times``: shape ``(len(times), batch, d+p)``."""
        return self.block.trajectory(self.augment(x), times)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ResNet(nn.Module):
    """Discrete counterpart: h_{k+1} = h_k + f_k(h_k), ``num_layers`` MLP blocks, then Linear(d -> out).

    Each block is one explicit Euler step of size 1 with its own field, so nothing stops two
    trajectories from jumping over each other (Dupont et al., Fig. 2).
    """

    def __init__(
        self, data_dim: int, hidden: int = 32, num_layers: int = 5, out_dim: int = 1, linear_head: bool = True
    ):
        super().__init__()
        if num_layers <= 0:
            raise ValueError(f"num_layers must be positive, got {num_layers}")
        self.blocks = nn.ModuleList(MLPDynamics(data_dim, hidden, time_dependent=False) for _ in range(num_layers))
        self.head = nn.Linear(data_dim, out_dim) if linear_head else FirstCoordinates(out_dim)

    def trajectory(self, x: torch.Tensor) -> torch.Tensor:
        """States after each block, ``(num_layers + 1, batch, d)``, the input first."""
        states = [x]
        for block in self.blocks:
            states.append(states[-1] + block(None, states[-1]))
        return torch.stack(states)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trajectory(x)[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def toy_node(dataset: str) -> nn.Module:
    return ODENet(2, hidden=32)


def toy_anode1(dataset: str) -> nn.Module:
    return ODENet(2, hidden=32, augment_dim=1)


def toy_anode5(dataset: str) -> nn.Module:
    return ODENet(2, hidden=32, augment_dim=5)


def toy_resnet(dataset: str) -> nn.Module:
    return ResNet(2, hidden=32, num_layers=5)
