"""Image models of Dupont et al. (2019), Sec. 5.2: convolutional NODE / ANODE classifiers.

The architecture follows the authors' public code (EmilienDupont/augmented-neural-odes,
``anode/conv_models.py`` and ``config_img.json``): the image, with ``p`` zero channels appended,
flows through one ODE block whose field is 1x1 conv -> ReLU -> 3x3 conv -> ReLU -> 1x1 conv (a time
channel in front of every conv), and a linear layer classifies the flattened final state. No
downsampling, no normalisation. Gradients use the adjoint method, as in their image runs.
"""

from __future__ import annotations

import torch
from torch import nn

from robustode.core.dynamics import Augment
from robustode.core.odeblock import ODEBlock, ReportsNFE
from robustode.data.images import check_dataset


class TimeConv2d(nn.Conv2d):
    """A convolution that sees time: a constant channel holding ``t`` is put in front of the input."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0):
        super().__init__(in_channels + 1, out_channels, kernel_size, padding=padding)

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        time_channel = torch.ones_like(h[:, :1]) * t
        return super().forward(torch.cat([time_channel, h], dim=1))


class ConvDynamics(nn.Module):
    """Dupont et al.'s conv field f(h, t): 1x1 (C -> F) -> ReLU -> 3x3 (F -> F, pad 1) -> ReLU -> 1x1 (F -> C).

    ``channels`` counts the augmented channels too (C + p). With ``time_dependent=False`` the convs
    do not see ``t`` and the field is autonomous.
    """

    def __init__(self, channels: int, num_filters: int, time_dependent: bool = True):
        super().__init__()
        if channels <= 0 or num_filters <= 0:
            raise ValueError(f"channels and num_filters must be positive, got {channels}, {num_filters}")
        self.time_dependent = time_dependent
        conv = TimeConv2d if time_dependent else nn.Conv2d
        self.conv1 = conv(channels, num_filters, 1)
        self.conv2 = conv(num_filters, num_filters, 3, padding=1)
        self.conv3 = conv(num_filters, channels, 1)

    def _conv(self, layer: nn.Module, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return layer(t, h) if self.time_dependent else layer(h)

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self._conv(self.conv1, t, h))
        h = torch.relu(self._conv(self.conv2, t, h))
        return self._conv(self.conv3, t, h)


class ConvODENet(ReportsNFE, nn.Module):
    """x (C, H, W) -> [x; 0_p] -> ODE flow phi_1 -> flatten -> Linear((C+p)*H*W -> classes). ``p=0``: NODE."""

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        num_filters: int,
        augment_dim: int = 0,
        num_classes: int = 10,
        time_dependent: bool = True,
        adjoint: bool = True,
        **solver,
    ):
        super().__init__()
        channels, height, width = image_shape
        self.augment = Augment(augment_dim)
        self.block = ODEBlock(ConvDynamics(channels + augment_dim, num_filters, time_dependent), adjoint=adjoint, **solver)
        self.head = nn.Linear((channels + augment_dim) * height * width, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The final state h(1), shape (batch, C+p, H, W)."""
        return self.block(self.augment(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


# Dupont et al.'s parameter-matched pairs (config_img.json; Sec. 5.2 and Table 1).
TABLE_1_MODELS = {
    "MNIST": {"NODE": {"num_filters": 92, "augment_dim": 0}, "ANODE": {"num_filters": 64, "augment_dim": 5}},
    "CIFAR10": {"NODE": {"num_filters": 125, "augment_dim": 0}, "ANODE": {"num_filters": 64, "augment_dim": 10}},
}


def conv_odenet(dataset: str, num_filters: int, augment_dim: int, **solver) -> ConvODENet:
    """A ConvODENet shaped for ``dataset`` (its channels, size and classes)."""
    spec = check_dataset(dataset)
    return ConvODENet((spec.channels, spec.size, spec.size), num_filters, augment_dim, spec.classes, **solver)


def conv_node(dataset: str) -> nn.Module:
    return conv_odenet(dataset, **TABLE_1_MODELS[dataset]["NODE"])


def conv_anode(dataset: str) -> nn.Module:
    return conv_odenet(dataset, **TABLE_1_MODELS[dataset]["ANODE"])
