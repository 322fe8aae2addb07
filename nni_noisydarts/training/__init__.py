"""Classification training of the DARTS CIFAR networks and the MobileNetV2-space models, in plain PyTorch."""

from .config import TrainConfig
from .loop import evaluate, run_training
from .presets import PRESETS, get_preset, preset_names

__all__ = ["TrainConfig", "PRESETS", "get_preset", "preset_names", "run_training", "evaluate"]
