"""Image data sets: CIFAR-10 in either on-disk layout, ImageNet-layout folders, and the search split.

Paths always come from the caller (``--data-root`` or the ``NOISYDARTS_DATA`` environment
variable). No path to a data set is built in.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional, Sequence, Tuple

import torch
from torch.utils.data import Dataset, Subset
from torchvision import datasets, transforms

logger = logging.getLogger(__name__)

#: Environment variable that points at the folder with ``cifar10-jpeg`` and ``tiny-coco`` in it.
DATA_ENV = "NOISYDARTS_DATA"

#: Folder name of CIFAR-10 inside the ``NOISYDARTS_DATA`` folder.
CIFAR_FOLDER = "cifar10-jpeg"

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def default_data_dir() -> Optional[Path]:
    """Return the folder named by ``NOISYDARTS_DATA``, or None when the variable is unset."""
    value = os.environ.get(DATA_ENV)
    return Path(value) if value else None


def default_cifar_root() -> Optional[Path]:
    """Return ``$NOISYDARTS_DATA/cifar10-jpeg``, or None when the variable is unset."""
    base = default_data_dir()
    return base / CIFAR_FOLDER if base is not None else None


def cifar10_layout(root: Path) -> str:
    """Return ``"pickle"`` for torchvision's ``cifar-10-batches-py`` layout or ``"folder"`` for train/ and test/ class folders."""
    if (root / "cifar-10-batches-py").is_dir():
        return "pickle"
    if (root / "train").is_dir() and (root / "test").is_dir():
        return "folder"
    raise FileNotFoundError(
        f"no CIFAR-10 found under --data-root {str(root)!r}: expected 'cifar-10-batches-py/' "
        "(torchvision layout) or 'train/<class>/*.jpg' and 'test/<class>/*.jpg' (ImageFolder layout); "
        "pass --download to fetch the torchvision copy when online"
    )


def load_cifar10(root, train: bool, transform=None, download: bool = False) -> Dataset:
    """Load the CIFAR-10 train or test split from ``root`` in whichever layout it is stored.

    ``download=True`` lets torchvision fetch ``cifar-10-batches-py`` when the folder contains
    neither layout.
    """
    root = Path(root).expanduser()
    if download and not (root / "cifar-10-batches-py").is_dir() and not (root / "train").is_dir():
        return datasets.CIFAR10(str(root), train=train, transform=transform, download=True)

    if cifar10_layout(root) == "pickle":
        return datasets.CIFAR10(str(root), train=train, transform=transform, download=False)

    dataset = datasets.ImageFolder(str(root / ("train" if train else "test")), transform=transform)
    if len(dataset.classes) != 10:
        raise ValueError(f"{root} contains {len(dataset.classes)} class folders; CIFAR-10 has 10")
    return dataset


def load_image_folder(root, split: str = "train", transform=None) -> Dataset:
    """Load an ImageNet-layout folder ``root/<split>/<class>/*`` (``root`` itself when it has no ``split`` folder)."""
    root = Path(root).expanduser()
    folder = root / split if (root / split).is_dir() else root
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {str(folder)!r} not found; expected '<data-root>/{split}/<class>/<image>'")
    try:
        return datasets.ImageFolder(str(folder), transform=transform)
    except FileNotFoundError as error:
        # torchvision raises this for a folder without class subfolders or without images in them.
        raise FileNotFoundError(f"no images in class folders under {str(folder)!r} ({error}); --data-root needs "
                                f"the layout '<data-root>/{split}/<class>/<image>'") from error


def class_balanced_subset(dataset: Dataset, size: int, seed: int) -> Subset:
    """Pick ``size`` samples with (as nearly as possible) the same number from every class.

    Used to run on a few hundred real images: CIFAR folders are sorted by class, so a plain
    prefix would contain one class only.
    """
    targets = torch.as_tensor(_targets(dataset))
    if size <= 0:
        raise ValueError(f"subset size must be positive, got {size}")
    if size >= len(targets):
        return Subset(dataset, list(range(len(targets))))

    generator = torch.Generator().manual_seed(seed)
    classes = torch.unique(targets)
    per_class = [torch.nonzero(targets == c).flatten() for c in classes]
    per_class = [idx[torch.randperm(len(idx), generator=generator)] for idx in per_class]

    # Round-robin over classes keeps them balanced whatever `size` is.
    picked = []
    depth = 0
    while len(picked) < size:
        for idx in per_class:
            if depth < len(idx) and len(picked) < size:
                picked.append(int(idx[depth]))
        depth += 1
    order = torch.randperm(len(picked), generator=generator)
    return Subset(dataset, [picked[i] for i in order])


def search_split(dataset: Dataset, seed: int, subset: Optional[int] = None) -> Tuple[Subset, Subset]:
    """Split a training set 50/50 into search-train (weights) and search-val (architecture).

    With ``subset`` only that many class-balanced samples are used in total.
    """
    if subset is not None:
        dataset = class_balanced_subset(dataset, subset, seed)
    n = len(dataset)
    if n < 2:
        raise ValueError(f"the search split needs at least 2 images, got {n}")

    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    half = n // 2
    return Subset(dataset, order[:half]), Subset(dataset, order[half:])


def _targets(dataset: Dataset) -> Sequence[int]:
    if isinstance(dataset, Subset):
        parent = _targets(dataset.dataset)
        return [parent[i] for i in dataset.indices]
    if hasattr(dataset, "targets"):
        return list(dataset.targets)
    raise TypeError(f"{type(dataset).__name__} has no 'targets'; cannot balance classes")


def cifar_search_transform() -> transforms.Compose:
    """Augmentation used during the CIFAR-10 search: random crop with padding 4, horizontal flip."""
    return transforms.Compose([
        transforms.RandomCrop(32, padding=4),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(CIFAR_MEAN, CIFAR_STD),
    ])


def imagenet_search_transform(resolution: int) -> transforms.Compose:
    """Augmentation used during an ImageNet-style search at ``resolution`` pixels."""
    return transforms.Compose([
        transforms.RandomResizedCrop(resolution, scale=(0.25, 1.0)),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])
