"""Per-space adapters of the search loop: building the space, loading its data, deriving an
architecture from the alphas, and writing and plotting it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

from torch.utils.data import Dataset

from .. import data as datasets
from .config import SearchConfig

Probs = Dict[str, Dict[str, float]]


class SpaceAdapter:
    """Interface between the generic search loop and one search space."""

    name: str = ""

    def build_space(self, config: SearchConfig):
        raise NotImplementedError

    def load_train_set(self, config: SearchConfig) -> Dataset:
        raise NotImplementedError

    def derive(self, probs: Probs):
        """Return the discrete architecture for the current softmax weights."""
        raise NotImplementedError

    def to_text(self, architecture) -> str:
        raise NotImplementedError

    def to_dict(self, architecture) -> dict:
        raise NotImplementedError

    def skip_counts(self, architecture) -> Dict[str, int]:
        raise NotImplementedError

    def plot(self, history: List[dict], architecture, output: Path) -> List[Path]:
        """Write the PNG plots of a finished (or resumed) search and return their paths."""
        raise NotImplementedError


class DartsAdapter(SpaceAdapter):
    """The DARTS cell space on CIFAR-10."""

    name = "darts"

    def __init__(self):
        self.steps = 4

    def build_space(self, config: SearchConfig):
        from ..darts.space import DartsSearchSpace

        width = int(config.width)
        if width != config.width:
            raise ValueError(f"the DARTS space needs an integer --width (channels), got {config.width}")
        space = DartsSearchSpace(width=width, cells=config.cells, num_classes=10)
        self.steps = space.steps
        return space

    def load_train_set(self, config: SearchConfig) -> Dataset:
        return datasets.load_cifar10(config.data_root, train=True, transform=datasets.cifar_search_transform(),
                                     download=config.download)

    def derive(self, probs: Probs):
        from ..darts.space import genotype_from_probs

        return genotype_from_probs(probs, self.steps)

    def to_text(self, architecture) -> str:
        from ..darts.genotype import format_genotype

        return format_genotype(architecture)

    def to_dict(self, architecture) -> dict:
        from ..darts.genotype import genotype_to_dict

        return genotype_to_dict(architecture)

    def skip_counts(self, architecture) -> Dict[str, int]:
        return architecture.skip_counts()

    def plot(self, history: List[dict], architecture, output: Path) -> List[Path]:
        from ..plots import darts as darts_plots

        return darts_plots.plot_search(history, architecture, output, steps=self.steps)


def get_adapter(space: str) -> SpaceAdapter:
    if space == "darts":
        return DartsAdapter()
    if space == "mobilenetv2":
        from .mobilenetv2_adapter import MobileNetV2Adapter

        return MobileNetV2Adapter()
    raise ValueError(f"unknown search space {space!r}; expected darts or mobilenetv2")

