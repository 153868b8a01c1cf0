"""Image data sets through ``torchvision.datasets``, loaded whole into tensors in [0, 1].

MNIST and Fashion-MNIST are small enough to live on the GPU as tensors (no DataLoader workers in
the hot loop). Files are looked for under :func:`robustode.paths.data_dir` in torchvision's layout;
a missing data set raises :class:`DataMissing` naming the files and how to get them, before any
work starts. Nothing is downloaded unless ``download=True`` is passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision import datasets

from robustode.paths import data_dir


@dataclass(frozen=True)
class ImageSet:
    name: str
    channels: int
    size: int
    classes: int
    files: tuple[str, ...]  # what must exist under the data folder


IMAGE_SETS = {
    "MNIST": ImageSet("MNIST", 1, 28, 10, tuple(
        f"MNIST/raw/{f}.gz" for f in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                      "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))),
    "FashionMNIST": ImageSet("FashionMNIST", 1, 28, 10, tuple(
        f"FashionMNIST/raw/{f}.gz" for f in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))),
    "CIFAR10": ImageSet("CIFAR10", 3, 32, 10, ("cifar-10-batches-py/data_batch_1", "cifar-10-batches-py/test_batch")),
    "CIFAR100": ImageSet("CIFAR100", 3, 32, 100, ("cifar-100-python/train", "cifar-100-python/test")),
    "SVHN": ImageSet("SVHN", 3, 32, 10, ("train_32x32.mat", "test_32x32.mat")),
}


class DataMissing(FileNotFoundError):
    """A data set is not on disk (and was not downloaded); the message says what and how."""


def check_dataset(name: str) -> ImageSet:
    if name not in IMAGE_SETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(IMAGE_SETS)}")
    return IMAGE_SETS[name]


def missing_files(name: str, root: Path | None = None) -> list[str]:
    root = Path(root) if root else data_dir()
    return [f for f in check_dataset(name).files if not (root / f).exists()]


def is_available(name: str, root: Path | None = None) -> bool:
    return not missing_files(name, root)


DATA_MISSING = "data missing"


def data_missing(*names: str) -> str:
    """The one reason for rows that need torchvision data sets not on disk, with the command that adds them:
    "data missing (SVHN not in the data folder: python -m robustode data --fetch SVHN downloads it)"."""
    if not names:
        raise ValueError("data_missing() needs the names of the missing data sets")
    them = " ".join(names)
    return (f"{DATA_MISSING} ({', '.join(names)} not in the data folder: python -m robustode data --fetch {them} "
            f"downloads {'it' if len(names) == 1 else 'them'})")


def _missing_message(name: str, root: Path, missing: list[str]) -> str:
    return (
        f"{name} is not in {root}: missing {', '.join(missing)}. Get it with "
        f"torchvision (robustode.data.images.load_tensors({name!r}, download=True) when online), "
        f"or set ROBUSTODE_DATA to a folder that holds it in torchvision's layout."
    )


def load_tensors(
    name: str, train: bool, root: Path | None = None, download: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole split as ``(x, y)``: x float32 in [0, 1], shape (N, C, H, W); y int64 labels."""
    spec = check_dataset(name)
    root = Path(root) if root else data_dir()
    missing = missing_files(name, root)
    if missing and not download:
        raise DataMissing(_missing_message(name, root, missing))
    try:
        if name in ("MNIST", "FashionMNIST"):
            # With the .gz files present, torchvision verifies their MD5 and unpacks them offline.
            ds = getattr(datasets, name)(str(root), train=train, download=True)
            x, y = ds.data.unsqueeze(1), ds.targets
        elif name == "SVHN":
            ds = datasets.SVHN(str(root), split="train" if train else "test", download=download)
            x, y = torch.from_numpy(ds.data), torch.from_numpy(ds.labels.astype(np.int64))
        else:
            ds = getattr(datasets, name)(str(root), train=train, download=download)
            x, y = torch.from_numpy(ds.data).permute(0, 3, 1, 2), torch.tensor(ds.targets)
    except (RuntimeError, OSError) as err:
        raise DataMissing(f"{_missing_message(name, root, missing_files(name, root))} ({err})") from err
    assert x.shape[1:] == (spec.channels, spec.size, spec.size)
    return x.float().div_(255.0).contiguous(), y.long()


def train_val_split(
    x: torch.Tensor, y: torch.Tensor, val_size: int, seed: int = 0
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Carve a seeded validation set out of the training set (model selection never sees the test set)."""
    if not 0 < val_size < len(x):
        raise ValueError(f"val_size must be between 1 and {len(x) - 1}, got {val_size}")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    val, tr = order[:val_size], order[val_size:]
    return (x[tr], y[tr]), (x[val], y[val])


def subset(x: torch.Tensor, y: torch.Tensor, size: int | None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random subset of ``size`` examples (all of them when ``size`` is None)."""
    if size is None or size >= len(x):
        return x, y
    if size <= 0:
        raise ValueError(f"subset size must be positive, got {size}")
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:size]
    return x[idx], y[idx]


class TensorEpoch:
    """One epoch's batches over tensors, in a seeded order: iterable, and sized (``len`` is the number of batches,
    which a progress bar shows as its total)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, order_seed: int | None):
        self.x, self.y, self.batch_size, self.order_seed = x, y, batch_size, order_seed

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __iter__(self):
        x, y = self.x, self.y
        if self.order_seed is not None:
            order = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.order_seed)).to(x.device)
        else:
            order = torch.arange(len(x), device=x.device)
        for start in range(0, len(x), self.batch_size):
            idx = order[start : start + self.batch_size]
            yield x[idx], y[idx]


def tensor_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int, shuffle: bool = True):
    """``batches(epoch)`` over tensors (on any device), reshuffled per epoch with a seeded permutation
    (a :class:`TensorEpoch`)."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    return lambda epoch: TensorEpoch(x, y, batch_size, seed * 100_003 + epoch if shuffle else None)


def fetch(name: str, root: Path | None = None) -> None:
    """Download a data set with torchvision (both splits) unless it is already on disk."""
    if is_available(name, root):
        return
    for train in (True, False):
        load_tensors(name, train, root, download=True)
