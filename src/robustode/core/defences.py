"""Two defences to combine with TisODE (the survey's Sec. 5.3; Yan et al., 2020, Sec. 5):

* :class:`InputRandomisation` (Xie et al., ICLR 2018): resize the image to a random size r in
  [size, size + extra) and zero-pad it at a random position to size + extra, at inference time;
* :class:`FeatureDenoising` (Xie et al., CVPR 2019): a residual block ``x + conv1x1(D(x))`` where D is
  a non-local means (softmax over dot products of all positions) or a 3x3 mean filter.

Both are plain modules that slot into :class:`robustode.models.robust.RobustNet` (``pre`` / ``denoise``).
The randomised model is stochastic: gradient attacks through one random draw understate its
weakness, so the strong protocol averages gradients over draws (EOT, Athalye et al., 2018).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DENOISERS = ("nonlocal", "mean")


class InputRandomisation(nn.Module):
    """Random resize to r x r, r uniform in {size, ..., size + extra - 1}, then random zero padding to
    (size + extra)^2. One draw per batch for the size (as Xie et al.), per image for the padding offset."""

    def __init__(self, extra: int = 4):
        super().__init__()
        if extra < 1:
            raise ValueError(f"extra must be >= 1, got {extra}")
        self.extra = extra

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, size = x.shape[0], x.shape[-1]
        out = size + self.extra
        r = int(torch.randint(size, out, (1,)))
        resized = F.interpolate(x, size=(r, r), mode="nearest") if r != size else x
        pad = out - r
        left = torch.randint(0, pad + 1, (n,)).to(x.device)
        top = torch.randint(0, pad + 1, (n,)).to(x.device)
        # every image at its own offset in one indexed write (not one copy kernel per image)
        span = torch.arange(r, device=x.device)
        rows = (top[:, None] + span)[:, :, None]  # (n, r, 1)
        cols = (left[:, None] + span)[:, None, :]  # (n, 1, r)
        images = torch.arange(n, device=x.device)[:, None, None]
        canvas = x.new_zeros(n, out, out, x.shape[1])  # channels last, so that the index picks whole pixels
        canvas = canvas.index_put((images, rows, cols), resized.permute(0, 2, 3, 1))
        return canvas.permute(0, 3, 1, 2).contiguous()

    def extra_repr(self) -> str:
        return f"extra={self.extra}"


class FeatureDenoising(nn.Module):
    """Xie et al.'s denoising block: ``x + conv1x1(D(x))``, D = non-local means or a 3x3 mean filter.

    The 1x1 conv starts at zero, so the block starts as the identity (their zero-initialised BN gamma
    plays that role).
    """

    def __init__(self, channels: int, kind: str = "nonlocal"):
        super().__init__()
        if kind not in DENOISERS:
            raise ValueError(f"unknown denoiser {kind!r}; choose one of: {', '.join(DENOISERS)}")
        self.kind = kind
        self.mix = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.mix.weight)
        nn.init.zeros_(self.mix.bias)

    def denoise(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "mean":
            return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
        n, c, h, w = x.shape
        flat = x.flatten(2)  # (n, c, hw)
        weights = torch.softmax(flat.transpose(1, 2) @ flat / c**0.5, dim=-1)  # (n, hw, hw)
        return (flat @ weights.transpose(1, 2)).view(n, c, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mix(self.denoise(x))

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"
