"""Image transforms of the training recipes: crop and flip, AutoAugment, cutout and resolution changes."""

from __future__ import annotations

from typing import Optional

import torch
from torchvision import transforms

from ..data import CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD

CIFAR_SIZE = 32

#: Ratio of crop size to resize size at ImageNet evaluation (224 of 256).
IMAGENET_CROP_RATIO = 0.875


class Cutout:
    """Zero one ``length`` x ``length`` square at a uniformly random centre of a normalised image tensor.

    The square is clipped at the image border (DeVries and Taylor, 2017).
    """

    def __init__(self, length: int):
        if length <= 0:
            raise ValueError(f"cutout length must be a positive number of pixels, got {length}")
        self.length = length

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        centre_y = int(torch.randint(height, (1,)))
        centre_x = int(torch.randint(width, (1,)))
        top, bottom = max(centre_y - self.length // 2, 0), min(centre_y + self.length // 2, height)
        left, right = max(centre_x - self.length // 2, 0), min(centre_x + self.length // 2, width)
        image = image.clone()
        image[..., top:bottom, left:right] = 0.0
        return image

    def __repr__(self) -> str:
        return f"Cutout(length={self.length})"


def cifar_transforms(train: bool, cutout_length: int = 0, autoaugment: bool = False,
                     resolution: Optional[int] = None) -> transforms.Compose:
    """Build the CIFAR train or test transform.

    Augmentation and cutout act on the 32x32 image; ``resolution`` then upsamples the tensor
    bilinearly, so cutout keeps its size relative to the image.
    """
    steps = []
    if train:
        steps += [transforms.RandomCrop(CIFAR_SIZE, padding=4), transforms.RandomHorizontalFlip()]
        if autoaugment:
            steps.append(transforms.AutoAugment(transforms.AutoAugmentPolicy.CIFAR10))
    steps += [transforms.ToTensor(), transforms.Normalize(CIFAR_MEAN, CIFAR_STD)]
    if train and cutout_length > 0:
        steps.append(Cutout(cutout_length))
    if resolution is not None and resolution != CIFAR_SIZE:
        steps.append(transforms.Resize((resolution, resolution), antialias=True))
    return transforms.Compose(steps)


def imagenet_transforms(train: bool, resolution: int, cutout_length: int = 0,
                        autoaugment: bool = False) -> transforms.Compose:
    """Build the ImageNet-style train transform (random resized crop) or test transform (resize, centre crop)."""
    if train:
        steps = [transforms.RandomResizedCrop(resolution), transforms.RandomHorizontalFlip()]
        if autoaugment:
            steps.append(transforms.AutoAugment(transforms.AutoAugmentPolicy.IMAGENET))
    else:
        steps = [transforms.Resize(int(round(resolution / IMAGENET_CROP_RATIO))), transforms.CenterCrop(resolution)]
    steps += [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if train and cutout_length > 0:
        steps.append(Cutout(cutout_length))
    return transforms.Compose(steps)
