"""Vector fields f(h, t) for ODE blocks, and the zero augmentation of Dupont et al. (2019)."""

from __future__ import annotations

import torch
from torch import nn


class MLPDynamics(nn.Module):
    """Dupont et al.'s MLP field: Linear(d[+1] -> hidden) -> ReLU -> Linear -> ReLU -> Linear(hidden -> d).

    With ``time_dependent=True`` the scalar time is concatenated in front of the state, so
    ``f = f(h, t)``; otherwise ``f = f(h)`` is autonomous (time-invariant).
    """

    def __init__(self, dim: int, hidden: int = 32, time_dependent: bool = True):
        super().__init__()
        if dim <= 0 or hidden <= 0:
            raise ValueError(f"dim and hidden must be positive, got dim={dim}, hidden={hidden}")
        self.time_dependent = time_dependent
        self.net = nn.Sequential(
            nn.Linear(dim + int(time_dependent), hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, dim),
        )

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        if self.time_dependent:
            h = torch.cat([t.expand(h.shape[0], 1).to(h), h], dim=1)
        return self.net(h)


class Augment(nn.Module):
    """Appends ``augment_dim`` zero features (dimension 1: features or channels): [x; 0] of ANODE Eq. (2)."""

    def __init__(self, augment_dim: int):
        super().__init__()
        if augment_dim < 0:
            raise ValueError(f"augment_dim must be >= 0, got {augment_dim}")
        self.augment_dim = augment_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.augment_dim == 0:
            return x
        zeros = x.new_zeros((x.shape[0], self.augment_dim, *x.shape[2:]))
        return torch.cat([x, zeros], dim=1)

    def extra_repr(self) -> str:
        return f"augment_dim={self.augment_dim}"
