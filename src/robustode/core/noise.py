"""Gaussian noise on the 0-255 scale: Table I's random perturbation and Yan et al.'s training augmentation.

Images live in [0, 1]; ``sigma`` is given on the 0-255 scale (sigma = 100 means a standard deviation
of 100/255 = 0.39), and the noisy image is clamped back to [0, 1], as the original
``add_noise_tensor`` does (``HanshuYAN/TisODE``, ``mnist/MiscTools.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def gaussian_noise(x: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """clamp(x + N(0, (sigma/255)^2), 0, 1), one independent draw per pixel."""
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    if sigma == 0:
        return x.clone()
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (x + noise * (sigma / 255.0)).clamp_(0.0, 1.0)


class NoiseAugmentation:
    """Yan et al.'s training augmentation: each image, with probability ``p``, gets Gaussian noise with
    sigma drawn uniformly from ``sigmas`` (0-255 scale), then is clamped; the rest stay clean.

    Used as ``TrainSpec.augment``: ``augment(x, generator)`` with the generator on x's device.
    """

    def __init__(self, p: float = 0.5, sigmas: Sequence[float] = (50, 75, 100)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        if not sigmas or min(sigmas) < 0:
            raise ValueError(f"sigmas must be a non-empty list of values >= 0, got {list(sigmas)}")
        self.p = p
        self.sigmas = tuple(float(s) for s in sigmas)
        self._tables: dict[tuple[str, torch.dtype], torch.Tensor] = {}

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        n = x.shape[0]
        shape = (n,) + (1,) * (x.dim() - 1)
        add = torch.rand(n, generator=generator, device=x.device) < self.p
        choice = torch.randint(len(self.sigmas), (n,), generator=generator, device=x.device)
        sigma = self._sigma_table(x.device, x.dtype)[choice] * add.to(x.dtype)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return (x + noise * (sigma / 255.0).view(shape)).clamp_(0.0, 1.0)

    def _sigma_table(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        # Made once per device: a host-to-device copy inside a CUDA-graph capture is illegal.
        key = (str(device), dtype)
        if key not in self._tables:
            self._tables[key] = torch.tensor(self.sigmas, device=device, dtype=dtype)
        return self._tables[key]

    def __repr__(self) -> str:
        return f"NoiseAugmentation(p={self.p}, sigmas={list(self.sigmas)})"
