"""Search-loop adapter for the 19-layer MobileNetV2 space on ImageNet-layout folders."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

from torch.utils.data import Dataset

from .. import data as datasets
from .adapters import Probs, SpaceAdapter
from .config import SearchConfig


class MobileNetV2Adapter(SpaceAdapter):
    """The MobileNetV2 space; data is ``<data-root>/train/<class>/*`` at ``config.resolution`` pixels."""

    name = "mobilenetv2"

    def __init__(self):
        self.num_classes = None

    def load_train_set(self, config: SearchConfig) -> Dataset:
        train_set = datasets.load_image_folder(config.data_root, "train",
                                               transform=datasets.imagenet_search_transform(config.resolution))
        self.num_classes = len(train_set.classes)
        return train_set

    def build_space(self, config: SearchConfig):
        from ..mobilenetv2.space import MobileNetV2Space

        if self.num_classes is None:
            raise RuntimeError("load_train_set must run before build_space: the classifier size comes from the data")
        return MobileNetV2Space(num_classes=self.num_classes, resolution=config.resolution, width_mult=config.width)

    def derive(self, probs: Probs):
        from ..mobilenetv2.choices import derive_choices

        return derive_choices(probs)

    def to_text(self, architecture) -> str:
        return architecture.to_text()

    def to_dict(self, architecture) -> dict:
        return architecture.to_dict()

    def skip_counts(self, architecture) -> Dict[str, int]:
        return {"layers": architecture.num_skips}

    def plot(self, history: List[dict], architecture, output: Path) -> List[Path]:
        from ..plots import mobilenetv2 as mobilenetv2_plots

        return mobilenetv2_plots.plot_search(history, architecture, output)
