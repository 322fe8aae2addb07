"""Standalone MobileNetV2-family network built from 19 layer choices, such as NoisyDARTS-A."""

from __future__ import annotations

import logging
from typing import List, Mapping, Sequence

import torch
from torch import nn

from .blocks import ACTIVATIONS, MBConv, ClassifierHead, first_block, init_weights, scale_channels, stem
from .choices import (FIRST_BLOCK_CHANNELS, HEAD_CHANNELS, LAYER_SPECS, SKIP, STEM_CHANNELS,
                      MobileNetV2Choices, as_choices, parse_candidate)

_logger = logging.getLogger(__name__)


class MobileNetV2Network(nn.Module):
    """The network of one architecture of the MobileNetV2 space, with every skip layer removed.

    A layer whose choice is ``skip`` is an identity, so it is left out of ``blocks`` altogether.
    The stem, the fixed first block and the head always use ReLU, and ``activation`` and ``se``
    apply to the searched MBConv blocks only.

    Parameters
    ----------
    choices
        The 19 candidate names: a :class:`MobileNetV2Choices`, its text or JSON form, a list of
        names or an NNI sample ``{"layer1": name, ...}``.
    num_classes
        Classifier outputs.
    width_mult
        Channel multiplier. Channels are rounded to multiples of 8 and the head keeps at least
        1280 channels, as in MobileNetV2.
    se
        Squeeze-excite in every MBConv block.
    activation
        "relu" or "swish" inside the MBConv blocks.
    dropout
        Dropout probability before the classifier.
    drop_connect_rate
        Drop-connect (stochastic depth) rate scaled by depth as in EfficientNet: block ``i``
        (from 0) of the ``n`` blocks left after removing skips uses ``drop_connect_rate * i / n``.
        Only blocks with a residual connection drop anything.
    """

    def __init__(self, choices: MobileNetV2Choices | str | Sequence[str] | Mapping[str, str],
                 num_classes: int = 1000, width_mult: float = 1.0, se: bool = False,
                 activation: str = "relu", dropout: float = 0.0, drop_connect_rate: float = 0.0):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"invalid activation {activation!r}: use one of {', '.join(ACTIVATIONS)}")
        if num_classes < 1:
            raise ValueError(f"invalid num_classes {num_classes}: use a positive number of classes")
        if not 0.0 <= drop_connect_rate < 1.0:
            raise ValueError(f"invalid drop_connect_rate {drop_connect_rate}: use a value in [0, 1)")
        self.choices = as_choices(choices)

        stem_channels = scale_channels(STEM_CHANNELS, width_mult)
        in_channels = scale_channels(FIRST_BLOCK_CHANNELS, width_mult)
        self.stem = stem(stem_channels)
        self.first_block = first_block(stem_channels, in_channels)

        kept_layers = [(spec, name) for spec, name in zip(LAYER_SPECS, self.choices.names) if name != SKIP]
        #: NNI label (``layer1`` .. ``layer19``) of each module in ``blocks``.
        self.block_labels: List[str] = [spec.label for spec, _ in kept_layers]
        blocks = []
        for index, (spec, name) in enumerate(kept_layers):
            expansion, kernel_size = parse_candidate(name)
            out_channels = scale_channels(spec.out_channels, width_mult)
            blocks.append(MBConv(in_channels, out_channels, kernel_size, spec.stride, expansion, se=se,
                                 activation=activation,
                                 drop_connect_rate=drop_connect_rate * index / len(kept_layers)))
            in_channels = out_channels
        self.blocks = nn.Sequential(*blocks)

        head_channels = scale_channels(HEAD_CHANNELS, max(1.0, width_mult))
        self.head = ClassifierHead(in_channels, head_channels, num_classes, dropout)
        init_weights(self)
        _logger.debug("built MobileNetV2Network %s (%d blocks, %d skipped)", self.choices,
                      len(blocks), self.choices.num_skips)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the output of the last searched block (before the head)."""
        return self.blocks(self.first_block(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))
