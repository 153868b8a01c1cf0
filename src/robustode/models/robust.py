"""Yan et al. (ICLR 2020) robustness models: CNN, ODENet and TisODE, as in their public MNIST code.

Source read for the layout: ``HanshuYAN/TisODE``, ``mnist/networks.py`` (no code copied). All three
share a down-sampling stem and a head; only the middle differs:

* stem: Conv(C->64, 3x3, stride 1, no padding) -> GroupNorm(32, 64) -> ReLU -> Conv(64->64, 4x4,
  stride 2, padding 1) -> GroupNorm -> ReLU (MNIST: 28x28 -> 13x13);
* CNN middle: one residual block ``x + relu(gn(conv(relu(gn(conv(x))))))`` (3x3 convs, no bias);
* ODENet middle: an ODE block whose field is two time-concatenated 3x3 convs (65 -> 64 channels,
  with bias), each followed by GroupNorm and ReLU, Euler with step 0.1 on [0, 1];
* TisODE middle: the same field without the time channel and without conv biases (time-invariant),
  Euler with step 0.05 on [0, 1], plus the steady-state regulariser (:mod:`robustode.regularisers`);
* head: AdaptiveAvgPool -> Linear(64 -> classes).

The layouts give 141,130 / 142,410 / 141,130 parameters on MNIST, the counts in the authors' logs.
``protocols.md`` calls the residual block "pre-activation"; the code applies the conv first, and we
follow the code (the count is the same either way). Both fields end in a ReLU, so f >= 0 elementwise.

3-channel variants (SVHN, ImgNet10) change only the stem's first conv (3 input channels, +1,152
parameters); the ImgNet10 variant also normalises with the ImageNet mean and std inside the model,
so attacks work on [0, 1] pixels with an exact per-channel epsilon (the original divided epsilon by a
single 0.225 instead). Yan et al. did not publish SVHN / ImgNet10 code: these variants are ours.
"""

from __future__ import annotations

import torch
from torch import nn

from robustode.odeblock import ODEBlock
from robustode.regularisers import SteadyState

WIDTH = 64
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CHANNELS = {"MNIST": 1, "FashionMNIST": 1, "SVHN": 3, "CIFAR10": 3, "ImgNet10": 3}
ODENET_STEP = 0.1
TISODE_STEP = 0.05


def norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with two channels per group: GroupNorm(32, 64) at the authors' width (their min(32, C)).

    Narrower (quick-profile) models keep the authors' group *size* rather than their group count, so
    GroupNorm does not degenerate into a per-channel instance norm at width 16 or less.
    """
    return nn.GroupNorm(max(1, channels // 2), channels)


def stem(in_channels: int, width: int = WIDTH) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, 1), norm(width), nn.ReLU(),
        nn.Conv2d(width, width, 4, 2, 1), norm(width), nn.ReLU(),
    )


def head(width: int = WIDTH, classes: int = 10) -> nn.Sequential:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes))


class ResidualBlock(nn.Module):
    """The CNN's middle: ``x + relu(gn(conv(relu(gn(conv(x))))))``, 3x3 convs without bias."""

    def __init__(self, width: int = WIDTH):
        super().__init__()
        self.branch = nn.Sequential(
            nn.Conv2d(width, width, 3, 1, 1, bias=False), norm(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, 1, 1, bias=False), norm(width), nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


class ConcatConv2d(nn.Module):
    """A 3x3 conv that sees the time as an extra constant input channel in front: conv([t; h])."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels + 1, channels, 3, 1, 1)

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        tt = torch.ones_like(h[:, :1]) * t.to(h)
        return self.conv(torch.cat([tt, h], dim=1))


class ConvField(nn.Module):
    """Yan et al.'s conv vector field f(h, t) (ODENet) or f(h) (TisODE, Eq. 5 without the t).

    conv -> GroupNorm -> ReLU -> conv -> GroupNorm -> ReLU. Time-dependent: each conv also sees t
    (65 -> 64 channels, with bias); time-invariant: plain convs without bias, t is ignored.
    """

    def __init__(self, width: int = WIDTH, time_dependent: bool = True):
        super().__init__()
        self.time_dependent = time_dependent
        if time_dependent:
            self.conv1, self.conv2 = ConcatConv2d(width), ConcatConv2d(width)
        else:
            self.conv1 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
            self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.norm1, self.norm2 = norm(width), norm(width)
        self.relu = nn.ReLU()

    def _conv(self, conv: nn.Module, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return conv(t, h) if self.time_dependent else conv(h)

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.norm1(self._conv(self.conv1, t, h)))
        return self.relu(self.norm2(self._conv(self.conv2, t, h)))


class Normalise(nn.Module):
    """(x - mean) / std per channel, inside the model so that attacks act on [0, 1] pixels."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class RobustNet(nn.Module):
    """stem -> middle -> head, with optional input-side and feature-side defences.

    ``pre`` acts on the [0, 1] image (normalisation, input randomisation), ``denoise`` on the
    stem's features before the middle (feature denoising); both are identity by default.
    """

    def __init__(self, middle: nn.Module, in_channels: int = 1, classes: int = 10, pre: nn.Module | None = None,
                 denoise: nn.Module | None = None, width: int = WIDTH):
        super().__init__()
        self.pre = pre if pre is not None else nn.Identity()
        self.stem = stem(in_channels, width)
        self.denoise = denoise if denoise is not None else nn.Identity()
        self.middle = middle
        self.head = head(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.middle(self.denoise(self.stem(self.pre(x)))))

    def ode_blocks(self) -> list[ODEBlock]:
        return [m for m in self.modules() if isinstance(m, ODEBlock)]

    def set_step_size(self, step_size: float) -> None:
        """Change the Euler step of every ODE block (test-time solver changes, cf. Carrara et al.)."""
        for block in self.ode_blocks():
            block.step_size = step_size


ARCHITECTURES = ("CNN", "ODENet", "TisODE")


def middle(arch: str, width: int = WIDTH, step_size: float | None = None) -> nn.Module:
    """The architecture's middle part; ``step_size`` overrides the default Euler step (0.1 / 0.05)."""
    if arch == "CNN":
        return ResidualBlock(width)
    if arch == "ODENet":
        return ODEBlock(ConvField(width, time_dependent=True), (0.0, 1.0), method="euler",
                        step_size=step_size or ODENET_STEP)
    if arch == "TisODE":
        block = ODEBlock(ConvField(width, time_dependent=False), (0.0, 1.0), method="euler",
                         step_size=step_size or TISODE_STEP)
        return SteadyState(block)
    raise ValueError(f"unknown architecture {arch!r}; choose one of: {', '.join(ARCHITECTURES)}")


def build(arch: str, dataset: str = "MNIST", pre: nn.Module | None = None, denoise: nn.Module | None = None,
          step_size: float | None = None, width: int = WIDTH) -> RobustNet:
    """CNN / ODENet / TisODE for a dataset (1 or 3 input channels; ImgNet10 normalised inside)."""
    if dataset not in CHANNELS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of: {', '.join(CHANNELS)}")
    if dataset == "ImgNet10":
        norm_layer = Normalise(IMAGENET_MEAN, IMAGENET_STD)
        pre = norm_layer if pre is None else nn.Sequential(pre, norm_layer)
    return RobustNet(middle(arch, width, step_size), CHANNELS[dataset], 10, pre=pre, denoise=denoise, width=width)


DATASETS = ("MNIST", "SVHN", "ImgNet10")
