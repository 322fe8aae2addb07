"""Training and test sets of a run, with the transforms and subsets that its ``TrainConfig`` sets."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Tuple

from torch.utils.data import DataLoader, Dataset

from ..data import CIFAR_FOLDER, DATA_ENV, class_balanced_subset, default_cifar_root, load_cifar10, load_image_folder
from .augment import cifar_transforms, imagenet_transforms
from .config import TrainConfig

logger = logging.getLogger(__name__)

#: Evaluation split names tried, in order, in an ImageNet-layout folder.
EVAL_SPLITS = ("val", "test")


def resolve_data_root(config: TrainConfig) -> Path:
    """Return the data set folder: ``config.data_root``, else ``$NOISYDARTS_DATA/cifar10-jpeg`` for CIFAR-10.

    Raises FileNotFoundError when the folder is missing or no folder is given.
    """
    if config.data_root is not None:
        root = Path(config.data_root).expanduser()
    else:
        root = default_cifar_root()
        if root is None or config.dataset != "cifar10":
            raise FileNotFoundError(f"no data folder given: pass --data-root (or set {DATA_ENV} to the folder "
                                    f"that contains '{CIFAR_FOLDER}' for CIFAR-10)")
    if config.download and config.dataset == "cifar10":
        root.mkdir(parents=True, exist_ok=True)
    if not root.is_dir():
        raise FileNotFoundError(f"data root {str(root)!r} not found; pass --data-root with an existing folder")
    return root


def build_datasets(config: TrainConfig) -> Tuple[Dataset, Dataset, int]:
    """Return ``(train_set, test_set, num_classes)`` for ``config``."""
    root = resolve_data_root(config)
    if config.dataset == "cifar10":
        train_set = load_cifar10(root, train=True, transform=cifar_transforms(
            True, config.cutout_length, config.autoaugment, config.resolution), download=config.download)
        test_set = load_cifar10(root, train=False, transform=cifar_transforms(False, resolution=config.resolution),
                                download=config.download)
        num_classes = 10
    else:
        resolution = config.resolution or 224
        train_set = load_image_folder(root, "train", transform=imagenet_transforms(
            True, resolution, config.cutout_length, config.autoaugment))
        eval_split = next((split for split in EVAL_SPLITS if (root / split).is_dir()), None)
        if eval_split is None:
            raise FileNotFoundError(f"no evaluation split under {str(root)!r}; expected "
                                    f"{' or '.join(repr(s + '/') for s in EVAL_SPLITS)} next to 'train/'")
        test_set = load_image_folder(root, eval_split, transform=imagenet_transforms(False, resolution))
        num_classes = len(train_set.classes)

    if config.subset is not None:
        train_set = class_balanced_subset(train_set, config.subset, config.seed)
    if config.test_subset is not None:
        test_set = class_balanced_subset(test_set, config.test_subset, config.seed + 1)
    logger.info("data: %s from %s, %d training and %d test images, %d classes",
                config.dataset, root, len(train_set), len(test_set), num_classes)
    return train_set, test_set, num_classes


def build_loaders(config: TrainConfig, train_set: Dataset, test_set: Dataset, pin_memory: bool) -> Tuple[DataLoader, DataLoader]:
    # The last partial batch is dropped in training: a batch of one breaks batch norm.
    train_loader = DataLoader(train_set, batch_size=config.batch_size, shuffle=True,
                              num_workers=config.num_workers, pin_memory=pin_memory,
                              drop_last=len(train_set) > config.batch_size,
                              persistent_workers=config.num_workers > 0)
    test_loader = DataLoader(test_set, batch_size=config.batch_size, shuffle=False,
                             num_workers=config.num_workers, pin_memory=pin_memory)
    return train_loader, test_loader
