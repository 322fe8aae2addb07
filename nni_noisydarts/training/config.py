"""Settings of one classification training run and their validation."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

#: Data sets the trainer reads: CIFAR-10 (either on-disk layout) or an ImageNet-layout folder.
DATASETS = ("cifar10", "image-folder")


@dataclass
class TrainConfig:
    """One training run: architecture, data, optimisation, regularisation and bookkeeping.

    Rates and probabilities are fractions in [0, 1). A value of 0 switches a regulariser off.
    """

    # Architecture: exactly one of ``genotype`` (zoo name or genotype text, DARTS CIFAR network)
    # and ``model`` (a name registered in nni_noisydarts.zoo).
    genotype: Optional[str] = None
    model: Optional[str] = None
    # The 19 MobileNetV2-space choices as text, for ``model="mobilenetv2-choices"``.
    choices: Optional[str] = None
    width: int = 36
    cells: int = 20
    width_mult: Optional[float] = None
    dropout: float = 0.0
    drop_connect_rate: float = 0.0

    # Data.
    dataset: str = "cifar10"
    data_root: Optional[str] = None
    download: bool = False  # let torchvision fetch CIFAR-10 into data_root when no copy is there
    resolution: Optional[int] = None
    subset: Optional[int] = None
    test_subset: Optional[int] = None
    cutout_length: int = 0
    autoaugment: bool = False
    num_workers: int = 4

    # Optimisation: SGD with momentum, linear warm-up, then cosine decay to ``lr_min``.
    epochs: int = 600
    batch_size: int = 96
    lr: float = 0.025
    lr_min: float = 0.0
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 3e-4
    warmup_epochs: int = 0
    grad_clip: float = 0.0

    # Regularisation and loss.
    aux_weight: float = 0.0
    drop_path_prob: float = 0.0
    label_smoothing: float = 0.0
    ema_decay: float = 0.0

    # Bookkeeping.
    seed: int = 0
    device: str = "auto"
    eval_interval: int = 1
    preset: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training settings {unknown}; known settings: {sorted(known)}")
        return cls(**values)

    def validate(self) -> "TrainConfig":
        """Raise ValueError naming the first invalid setting; return ``self`` otherwise."""
        if (self.genotype is None) == (self.model is None):
            raise ValueError("give exactly one architecture: --genotype NAME|FILE|STRING or --model NAME "
                             f"(got genotype={self.genotype!r}, model={self.model!r})")
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; expected one of {', '.join(DATASETS)}")

        _require(self.epochs >= 1, "epochs", self.epochs, "an integer >= 1")
        _require(self.batch_size >= 1, "batch_size", self.batch_size, "an integer >= 1")
        _require(self.width >= 2 and self.width % 2 == 0, "width", self.width, "a positive even integer")
        _require(self.cells >= 3, "cells", self.cells, "an integer >= 3")
        _require(self.width_mult is None or self.width_mult > 0, "width_mult", self.width_mult, "a positive number")
        _require(_finite(self.lr) and self.lr > 0, "lr", self.lr, "a positive number")
        _require(_finite(self.lr_min) and 0 <= self.lr_min <= self.lr, "lr_min", self.lr_min, "a number in [0, lr]")
        _require(0 <= self.momentum < 1, "momentum", self.momentum, "a number in [0, 1)")
        _require(_finite(self.weight_decay) and self.weight_decay >= 0, "weight_decay", self.weight_decay,
                 "a number >= 0")
        _require(0 <= self.warmup_epochs < self.epochs, "warmup_epochs", self.warmup_epochs,
                 f"an integer in [0, epochs={self.epochs})")
        _require(_finite(self.grad_clip) and self.grad_clip >= 0, "grad_clip", self.grad_clip, "a number >= 0 (0 = off)")
        _require(_finite(self.aux_weight) and self.aux_weight >= 0, "aux_weight", self.aux_weight, "a number >= 0 (0 = off)")
        for name in ("dropout", "drop_connect_rate", "drop_path_prob", "label_smoothing", "ema_decay"):
            value = getattr(self, name)
            _require(0 <= value < 1, name, value, "a number in [0, 1) (0 = off)")
        _require(self.cutout_length >= 0, "cutout_length", self.cutout_length, "an integer >= 0 (0 = off)")
        _require(self.resolution is None or self.resolution >= 8, "resolution", self.resolution,
                 "an image size in pixels >= 8")
        _require(self.subset is None or self.subset >= 1, "subset", self.subset, "a positive number of images")
        _require(self.test_subset is None or self.test_subset >= 1, "test_subset", self.test_subset,
                 "a positive number of images")
        _require(self.num_workers >= 0, "num_workers", self.num_workers, "an integer >= 0")
        _require(self.eval_interval >= 0, "eval_interval", self.eval_interval,
                 "an integer >= 0 (0 = evaluate after the last epoch only)")
        return self


def _finite(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _require(condition: bool, name: str, value: Any, expected: str) -> None:
    if not condition:
        raise ValueError(f"invalid {name}={value!r}; expected {expected}")
