"""Seeded toy problems of Dupont et al. (2019) and the survey: the 1-D flip, intervals, concentric spheres.

Every generator returns ``(x, y)`` float tensors; labels are -1 / +1 regression targets, as in the
original code (trained with a Smooth-L1 loss and classified by the sign of the output).
"""

from __future__ import annotations

import torch


def flip_1d(num_points: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The map g(-1) = 1, g(1) = -1: half the points at -1, half at +1, targets flipped."""
    if num_points < 2 or num_points % 2:
        raise ValueError(f"num_points must be an even number >= 2, got {num_points}")
    half = num_points // 2
    x = torch.cat([-torch.ones(half, 1), torch.ones(half, 1)])
    perm = torch.randperm(num_points, generator=torch.Generator().manual_seed(seed))
    x = x[perm]
    return x, -x


def points_in_shell(
    num_points: int, dim: int, radius_range: tuple[float, float], generator: torch.Generator
) -> torch.Tensor:
    """Points with radius (max - min) * U^(1/d) + min and a uniformly random direction (original sampling)."""
    low, high = radius_range
    if not 0 <= low < high:
        raise ValueError(f"radius range must satisfy 0 <= min < max, got {radius_range}")
    direction = torch.randn(num_points, dim, generator=generator)
    direction = direction / direction.norm(dim=1, keepdim=True)
    radius = (high - low) * torch.rand(num_points, 1, generator=generator) ** (1.0 / dim) + low
    return radius * direction


def concentric_spheres(
    dim: int = 2,
    num_inner: int = 500,
    num_outer: int = 1500,
    inner_range: tuple[float, float] = (0.0, 0.5),
    outer_range: tuple[float, float] = (1.0, 1.5),
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dupont et al.'s nested spheres: label -1 for radius in ``inner_range``, +1 for ``outer_range``."""
    if dim <= 0 or num_inner <= 0 or num_outer <= 0:
        raise ValueError(f"dim, num_inner and num_outer must be positive, got {dim}, {num_inner}, {num_outer}")
    if inner_range[1] > outer_range[0]:
        raise ValueError(f"inner range {inner_range} must lie inside outer range {outer_range}")
    gen = torch.Generator().manual_seed(seed)
    inner = points_in_shell(num_inner, dim, inner_range, gen)
    outer = points_in_shell(num_outer, dim, outer_range, gen)
    x = torch.cat([inner, outer])
    y = torch.cat([-torch.ones(num_inner, 1), torch.ones(num_outer, 1)])
    perm = torch.randperm(len(x), generator=gen)
    return x[perm], y[perm]


def intervals_1d(num_inner: int = 100, num_outer: int = 200, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The survey's example: [-1, 1] (label -1) against [-3, -2] u [2, 3] (label +1), i.e. 1-D spheres."""
    return concentric_spheres(1, num_inner, num_outer, (0.0, 1.0), (2.0, 3.0), seed)
