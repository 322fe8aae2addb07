"""Search settings and the named presets (``quick`` for a 2-core CPU, ``paper`` for a GPU)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Optional

import torch

from ..noise import NoiseConfig

SPACES = ("darts", "mobilenetv2")


@dataclass
class SearchConfig:
    """Everything one NoisyDARTS search needs. Units: epochs, images, pixels, channels."""

    space: str = "darts"
    data_root: Optional[Path] = None
    download: bool = False     # let torchvision fetch CIFAR-10 into data_root when no copy is there
    output: Path = Path("runs/search")
    epochs: int = 50
    batch_size: int = 64
    learning_rate: float = 0.025
    min_learning_rate: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 3e-4
    arc_learning_rate: float = 3e-4
    gradient_clip: Optional[float] = 5.0
    width: float = 16          # DARTS: channels C of the first cell; MobileNetV2: width multiplier
    cells: int = 8             # DARTS only
    resolution: int = 32       # MobileNetV2 only: training image size
    subset: Optional[int] = None
    seed: int = 0
    workers: int = 0
    device: str = "auto"
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    resume: bool = False

    def validate(self) -> "SearchConfig":
        if self.space not in SPACES:
            raise ValueError(f"unknown search space {self.space!r}; expected one of {', '.join(SPACES)}")
        _positive_int("epochs", self.epochs)
        _positive_int("batch_size", self.batch_size)
        _positive_int("cells", self.cells)
        _positive_int("resolution", self.resolution)
        if self.subset is not None:
            _positive_int("subset", self.subset)
            if self.subset < 2:
                raise ValueError(f"subset must be >= 2 (half goes to search-train, half to search-val), got {self.subset}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        for name in ("learning_rate", "arc_learning_rate", "width"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {value}")
        for name in ("min_learning_rate", "momentum", "weight_decay"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.gradient_clip is not None and not self.gradient_clip > 0:
            raise ValueError(f"gradient_clip must be > 0 or None (no clipping), got {self.gradient_clip}")
        if self.device not in ("auto", "cpu", "gpu"):
            raise ValueError(f"device must be auto, cpu or gpu, got {self.device!r}")
        if self.device == "gpu" and not torch.cuda.is_available():
            raise ValueError("device 'gpu' was requested but PyTorch finds no CUDA device; "
                             "pass --device cpu or --device auto")
        if self.data_root is None:
            raise ValueError("no data root: pass --data-root DIR or set NOISYDARTS_DATA")
        return self

    def to_dict(self) -> dict:
        values = asdict(self)
        values["noise"] = self.noise.to_dict()
        values["data_root"] = str(self.data_root) if self.data_root is not None else None
        values["output"] = str(self.output)
        return values


def _positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


#: Presets per space. ``paper`` contains the published settings, and ``quick`` finishes on a
#: 2-core CPU within minutes on 600 to 2,000 real images.
PRESETS = {
    ("darts", "paper"): dict(epochs=50, batch_size=64, learning_rate=0.025, min_learning_rate=0.001,
                             weight_decay=3e-4, arc_learning_rate=3e-4, gradient_clip=5.0,
                             width=16, cells=8, subset=None),
    ("darts", "quick"): dict(epochs=4, batch_size=32, learning_rate=0.025, min_learning_rate=0.001,
                             weight_decay=3e-4, arc_learning_rate=3e-4, gradient_clip=5.0,
                             width=8, cells=5, subset=2000),
    # ImageNet search: SGD batch 768, lr 0.045 cosine to 0 over 30 epochs; Adam 1e-3 constant.
    # NOTE: Chu et al. (NoisyDARTS, BMVC 2021) give no weight decay for this search, so this uses
    # 4e-5, the usual MobileNetV2 value.
    ("mobilenetv2", "paper"): dict(epochs=30, batch_size=768, learning_rate=0.045, min_learning_rate=0.0,
                                   weight_decay=4e-5, arc_learning_rate=1e-3, gradient_clip=5.0,
                                   width=1.0, resolution=224, subset=None),
    ("mobilenetv2", "quick"): dict(epochs=2, batch_size=32, learning_rate=0.045, min_learning_rate=0.0,
                                   weight_decay=4e-5, arc_learning_rate=1e-3, gradient_clip=5.0,
                                   width=0.25, resolution=32, subset=600),
}


def preset(space: str, name: str, **overrides) -> SearchConfig:
    """Return the ``name`` preset of ``space`` with ``overrides`` (None values are ignored) applied."""
    key = (space, name)
    if key not in PRESETS:
        known = ", ".join(sorted({preset_name for _, preset_name in PRESETS}))
        raise ValueError(f"unknown preset {name!r} for space {space!r}; expected one of {known}")
    known_fields = {f.name for f in fields(SearchConfig)}
    values = dict(PRESETS[key], space=space)
    values.update({k: v for k, v in overrides.items() if v is not None and k in known_fields})
    return replace(SearchConfig(), **values)
