"""ImgNet10: ten ImageNet classes read with ``torchvision.datasets.ImageFolder`` from a path the user gives.

Yan et al. (2020) report an "ImgNet10" set but never published which ten classes it holds. We use the
ten classes of fast.ai's Imagenette (listed below by WordNet id): a public, widely used ten-class
ImageNet subset of easily distinguished objects, so anyone can rebuild it (from ImageNet itself or
from the Imagenette download, which uses the same folder names). Numbers on it are therefore not
directly comparable with the paper's ImgNet10 row; the book says so.

Expected layout: ``<root>/train/<wnid>/*.JPEG`` and ``<root>/val/<wnid>/*.JPEG`` (ImageNet's
validation images sorted into class folders, as ImageFolder needs). Images are resized (shorter
side) and centre-cropped to ``size`` x ``size`` and returned as tensors in [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import torch

from robustode.data.images import DataMissing

IMGNET10_CLASSES = {
    "n01440764": "tench",
    "n02102040": "English springer",
    "n02979186": "cassette player",
    "n03000684": "chain saw",
    "n03028079": "church",
    "n03394916": "French horn",
    "n03417042": "garbage truck",
    "n03425413": "gas pump",
    "n03445777": "golf ball",
    "n03888605": "parachute",
}


def _ten_classes_folder():
    from torchvision import datasets

    class TenClasses(datasets.ImageFolder):
        """ImageFolder restricted to the ten ImgNet10 class folders (labels in sorted WordNet-id order)."""

        def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
            wnids = sorted(IMGNET10_CLASSES)
            return wnids, {w: i for i, w in enumerate(wnids)}

    return TenClasses


def missing_folders(root: Path | str | None) -> list[str]:
    """The class folders ImgNet10 needs that are not under ``root`` (all of them when root is None)."""
    needed = [f"{split}/{wnid}" for split in ("train", "val") for wnid in IMGNET10_CLASSES]
    if not root:
        return needed
    return [f for f in needed if not (Path(root) / f).is_dir()]


def is_available(root: Path | str | None) -> bool:
    return not missing_folders(root)


def load_imgnet10(root: Path | str | None, train: bool, size: int = 64, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The split as ``(x, y)``, x float32 in [0, 1] of shape (N, 3, size, size); labels 0..9 in the order above.

    ``limit`` keeps the first ``limit`` images per class (for small runs).
    """
    from torchvision import transforms

    missing = missing_folders(root)
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise DataMissing(
            f"ImgNet10 needs ImageNet class folders under {root or '(no path given)'}: missing {shown}. Pass the "
            "folder holding train/ and val/ in ImageFolder layout (ImageNet, or the Imagenette download) as "
            "imagenet_root; the ten WordNet ids are robustode.data.imgnet10.IMGNET10_CLASSES."
        )
    tf = transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor()])
    ds = _ten_classes_folder()(str(Path(root) / ("train" if train else "val")), transform=tf)
    keep, per_class = [], {}
    for i, (_, label) in enumerate(ds.samples):
        per_class[label] = per_class.get(label, 0) + 1
        if limit is None or per_class[label] <= limit:
            keep.append(i)
    xs = [ds[i][0] for i in keep]
    return torch.stack(xs), torch.tensor([ds.samples[i][1] for i in keep], dtype=torch.long)
