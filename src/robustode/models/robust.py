"""Yan et al. (ICLR 2020) robustness models: CNN, ODENet and TisODE, as in their public MNIST code.

Source read for the layout: ``HanshuYAN/TisODE``, ``mnist/networks.py`` (no code copied). All three
share a down-sampling stem and a head; only the middle differs:

* stem: Conv(C->64, 3x3, stride 1, no padding) -> GroupNorm(32, 64) -> ReLU -> Conv(64->64, 4x4,
  stride 2, padding 1) -> GroupNorm -> ReLU (MNIST: 28x28 -> 13x13);
* CNN middle: one residual block ``x + relu(gn(conv(relu(gn(conv(x))))))`` (3x3 convs, no bias);
* ODENet middle: an ODE block whose field is two time-concatenated 3x3 convs (65 -> 64 channels,
  with bias), each followed by GroupNorm and ReLU, Euler with step 0.1 on [0, 1];
* TisODE middle: the same field without the time channel and without conv biases (time-invariant),
  Euler with step 0.05 on [0, 1], plus the steady-state regulariser (:mod:`robustode.core.regularisers`);
* head: AdaptiveAvgPool -> Linear(64 -> classes).

The layouts give 141,130 / 142,410 / 141,130 parameters on MNIST, the counts in the authors' logs.
``protocols.md`` calls the residual block "pre-activation"; the code applies the conv first, and we
follow the code (the count is the same either way). Both fields end in a ReLU, so f >= 0 elementwise.

Controls for the survey's confounds (issue 13; every one shares the stem and the head, and differs from the model it
controls in one respect, :data:`CONTROLS`):

* ``ResNet10-tied``: ODENet's middle with the solver written out. Euler with step 0.1 on [0, 1] *is* the weight-tied
  residual network ``h <- h + 0.1 f(h, t_k)``, ``t_k = 0.1 k``, k = 0..9 (:class:`ResidualFlow`): the same function
  (equal to float32 rounding of the time grid; tested), the same 142,410 parameters, no ODE solver to change or to
  blame. It separates "continuous depth" from "this particular residual network".
* ``ResNet10-untied``: the same ten residual steps (scale 0.1, t as an input channel), each with its own field:
  10 x 75,264 middle parameters, 819,786 in all. An ordinary deep ResNet of the ODENet's compute.
* ``TisODE-step0.1``, ``ODENet+steady``, ``TisODE-nosteady``: TisODE differs from ODENet in three ways at once (no t,
  the steady-state term, half the Euler step); each control changes one of them (TisODE at ODENet's step; ODENet
  with the term; TisODE without the term).
* ``ODENet-dopri5``: ODENet's field solved with dopri5 at rtol = atol = 1e-3 (adaptive; torchdiffeq's default method,
  the tolerance of the book's other adaptive models), for the solver-masking critiques (Huang et al. 2021,
  Carrara et al.): it is attacked through the adaptive solver and through fixed Euler steps.
* ``ODENet-aug8``: ODENet as an ANODE (Dupont et al. 2019): :data:`AUGMENT` = 8 zero channels appended to the
  stem's 64 before the ODE block, whose field then maps 72 channels (73 with t) to 72; the head reads all 72, as
  Dupont et al.'s conv ANODE feeds its augmented state to the classifier (``EmilienDupont/augmented-neural-odes``,
  ``anode/conv_models.py``, read, not copied). Keeping them is the ANODE; dropping them would give the head the
  same 64 inputs but throw away whatever the flow moved into the extra dimensions. p = 8: between Dupont et al.'s
  image choices (p = 5 with 64 filters on MNIST, p = 10 on CIFAR-10), even (GroupNorm keeps its two channels per
  group) and cheap (+19,856 parameters, +14 %), so a robustness gain cannot simply be a much larger model.

3-channel variants (SVHN, ImgNet10) change only the stem's first conv (3 input channels, +1,152
parameters); the ImgNet10 variant also normalises with the ImageNet mean and std inside the model,
so attacks work on [0, 1] pixels with an exact per-channel epsilon (the original divided epsilon by a
single 0.225 instead). Yan et al. did not publish SVHN / ImgNet10 code: these variants are ours.
"""

from __future__ import annotations

import torch
from torch import nn

from robustode.core.odeblock import FIXED_GRID_METHODS, ODEBlock, check_method
from robustode.core.regularisers import SteadyState

WIDTH = 64
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CHANNELS = {"MNIST": 1, "FashionMNIST": 1, "SVHN": 3, "CIFAR10": 3, "ImgNet10": 3}
ODENET_STEP = 0.1
TISODE_STEP = 0.05
ADAPTIVE_TOL = 1e-3
AUGMENT = 8
RESIDUAL_BLOCKS = 10


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


class ResidualFlow(nn.Module):
    """``blocks`` residual steps ``h <- h + scale * f_k(h, t_k)`` with ``t_k = k * scale`` (time-dependent conv fields).

    ``tied=True``: one field for every step, i.e. Euler's method with step ``scale`` written out as a network
    (``ResNet10-tied``); ``tied=False``: a field of its own per step (``ResNet10-untied``). The times are a float32
    buffer built as torchdiffeq builds its Euler grid (``arange(blocks) * scale``) and indexed on the device, with no
    host read or copy per step (what the engine's CUDA graphs need; not yet exercised on a GPU).
    """

    def __init__(self, width: int = WIDTH, blocks: int = RESIDUAL_BLOCKS, scale: float = ODENET_STEP,
                 tied: bool = True):
        super().__init__()
        if blocks < 1 or scale <= 0:
            raise ValueError(f"need blocks >= 1 and scale > 0, got blocks={blocks}, scale={scale}")
        self.blocks, self.scale, self.tied = blocks, scale, tied
        self.fields = nn.ModuleList(ConvField(width, time_dependent=True) for _ in range(1 if tied else blocks))
        self.register_buffer("times", torch.arange(blocks, dtype=torch.float32) * scale, persistent=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for k in range(self.blocks):
            h = h + self.scale * self.fields[0 if self.tied else k](self.times[k], h)
        return h

    def extra_repr(self) -> str:
        return f"blocks={self.blocks}, scale={self.scale}, tied={self.tied}"


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
    stem's features before the middle (feature denoising); both are identity by default. ``augment``
    zero channels are appended to the middle's input (ANODE); the middle and the head then see
    ``width + augment`` channels.
    """

    def __init__(self, middle: nn.Module, in_channels: int = 1, classes: int = 10, pre: nn.Module | None = None,
                 denoise: nn.Module | None = None, width: int = WIDTH, augment: int = 0):
        super().__init__()
        if augment < 0:
            raise ValueError(f"augment must be >= 0 channels, got {augment}")
        self.pre = pre if pre is not None else nn.Identity()
        self.stem = stem(in_channels, width)
        self.denoise = denoise if denoise is not None else nn.Identity()
        self.augment = augment
        self.middle = middle
        self.head = head(width + augment, classes)

    def middle_input(self, x: torch.Tensor) -> torch.Tensor:
        """The middle's input: stem features (denoised), with ``augment`` zero channels appended."""
        h = self.denoise(self.stem(self.pre(x)))
        if self.augment:
            h = torch.cat([h, h.new_zeros(h.shape[0], self.augment, *h.shape[2:])], dim=1)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.middle(self.middle_input(x)))

    def ode_blocks(self) -> list[ODEBlock]:
        return [m for m in self.modules() if isinstance(m, ODEBlock)]

    def set_step_size(self, step_size: float) -> None:
        """Change the Euler step of every ODE block (test-time solver changes, cf. Carrara et al.)."""
        for block in self.ode_blocks():
            block.step_size = step_size

    def set_solver(self, solver: float | str) -> None:
        """Solve every ODE block with Euler at step ``solver`` (a number) or with the adaptive method ``solver``
        (a name, at the block's own tolerances): test-time solver changes in both directions. An adaptive method
        runs on torchdiffeq (a block the engine switched to its fixed-step loop goes back)."""
        if isinstance(solver, str):
            check_method(solver)
            if solver in FIXED_GRID_METHODS:
                raise ValueError(f"a fixed-grid solver is given by its Euler step, not by name ({solver!r})")
        elif not solver > 0:
            raise ValueError(f"an Euler step must be positive, got {solver}")
        for block in self.ode_blocks():
            if isinstance(solver, str):
                block.method, block.step_size, block.backend = solver, None, "torchdiffeq"
            else:
                block.method, block.step_size = "euler", solver

    def deployed_solver(self) -> float | str | None:
        """The first ODE block's solver: its Euler step (a number), an adaptive method's name, or ``None``
        when the model has no ODE block."""
        blocks = self.ode_blocks()
        if not blocks:
            return None
        block = blocks[0]
        if block.method == "euler":
            return block.step_size
        if block.method in FIXED_GRID_METHODS:
            raise ValueError(f"solver transfer knows Euler steps and adaptive methods, not {block.method!r}")
        return block.method


ARCHITECTURES = ("CNN", "ODENet", "TisODE")


CONTROLS = {
    "ResNet10-tied": "ODENet",
    "ResNet10-untied": "ODENet",
    "TisODE-step0.1": "TisODE",
    "ODENet+steady": "ODENet",
    "TisODE-nosteady": "TisODE",
    "ODENet-dopri5": "ODENet",
    f"ODENet-aug{AUGMENT}": "ODENet",
}
"""Each control and the architecture it controls (it differs from it in one respect; see the module docstring)."""


def _euler_block(width: int, time_dependent: bool, step: float) -> ODEBlock:
    return ODEBlock(ConvField(width, time_dependent=time_dependent), (0.0, 1.0), method="euler", step_size=step)


def middle(arch: str, width: int = WIDTH, step_size: float | None = None) -> nn.Module:
    """The architecture's middle part; ``step_size`` overrides the default Euler step (0.1 / 0.05) of the Euler
    models. ``width`` is the state's channel count (the augmented width for ``ODENet-aug8``)."""
    if arch == "CNN":
        return ResidualBlock(width)
    if arch in ("ODENet", f"ODENet-aug{AUGMENT}"):
        return _euler_block(width, True, step_size or ODENET_STEP)
    if arch == "TisODE":
        return SteadyState(_euler_block(width, False, step_size or TISODE_STEP))
    if arch == "TisODE-step0.1":
        return SteadyState(_euler_block(width, False, step_size or ODENET_STEP))
    if arch == "TisODE-nosteady":
        return _euler_block(width, False, step_size or TISODE_STEP)
    if arch == "ODENet+steady":
        return SteadyState(_euler_block(width, True, step_size or ODENET_STEP))
    if arch in ("ResNet10-tied", "ResNet10-untied"):
        return ResidualFlow(width, RESIDUAL_BLOCKS, ODENET_STEP, tied=arch == "ResNet10-tied")
    if arch == "ODENet-dopri5":
        return ODEBlock(ConvField(width, time_dependent=True), (0.0, 1.0), method="dopri5", rtol=ADAPTIVE_TOL,
                        atol=ADAPTIVE_TOL)
    raise ValueError(f"unknown architecture {arch!r}; choose one of: {', '.join((*ARCHITECTURES, *CONTROLS))}")


def build(arch: str, dataset: str = "MNIST", pre: nn.Module | None = None, denoise: nn.Module | None = None,
          step_size: float | None = None, width: int = WIDTH) -> RobustNet:
    """CNN / ODENet / TisODE or one of their :data:`CONTROLS` for a dataset (1 or 3 input channels; ImgNet10
    normalised inside)."""
    if dataset not in CHANNELS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of: {', '.join(CHANNELS)}")
    if arch not in ARCHITECTURES and arch not in CONTROLS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of: {', '.join((*ARCHITECTURES, *CONTROLS))}")
    if step_size is not None and arch in ("CNN", "ResNet10-tied", "ResNet10-untied", "ODENet-dopri5"):
        raise ValueError(f"{arch} has no Euler step to set (step_size={step_size})")
    if dataset == "ImgNet10":
        norm_layer = Normalise(IMAGENET_MEAN, IMAGENET_STD)
        pre = norm_layer if pre is None else nn.Sequential(pre, norm_layer)
    augment = AUGMENT if arch == f"ODENet-aug{AUGMENT}" else 0
    return RobustNet(middle(arch, width + augment, step_size), CHANNELS[dataset], 10, pre=pre, denoise=denoise,
                     width=width, augment=augment)


DATASETS = ("MNIST", "SVHN", "ImgNet10")
