"""The MobileNetV2 (ProxylessNAS / FairNAS) search space as an NNI 3.0 model space."""

from __future__ import annotations

from collections import OrderedDict

import torch
from nni.nas.nn.pytorch import LayerChoice, ModelSpace
from torch import nn

from .blocks import ACTIVATIONS, MBConv, ClassifierHead, first_block, init_weights, scale_channels, stem
from .choices import FIRST_BLOCK_CHANNELS, HEAD_CHANNELS, LAYER_SPECS, MBCONV_CANDIDATES, SKIP, STEM_CHANNELS


class MobileNetV2Space(ModelSpace):
    """Supernet of 19 searchable layers between a fixed stem and a fixed classifier head.

    Each layer is an NNI ``LayerChoice`` labelled ``layer1`` .. ``layer19`` whose candidates are
    MBConv blocks ``e{3,6}_k{3,5,7}`` (expansion 3 or 6, depthwise kernel 3, 5 or 7). Layers that
    keep their shape (stride 1, same input and output width) also offer ``skip``, a plain
    ``nn.Identity`` that noise injection can find by its name and type. That gives 7 candidates on
    13 layers and 6 on the 6 stage-first layers (layers 1, 3, 7, 11, 15 and 19). A stage-first
    layer changes the width or halves the resolution, so a skip there would need a strided or 1x1
    projection. That projection is a convolution with its own weights, not an identity, so it is
    not the parameter-free shortcut whose unfair advantage NoisyDARTS suppresses, and dropping the
    layer from a derived network would no longer leave the shapes intact.

    DARTS-style strategies (``nni.nas.strategy.DARTS`` and subclasses) turn each ``LayerChoice``
    into a ``DifferentiableMixedLayer`` with one alpha entry per candidate, keyed by the label.

    Parameters
    ----------
    num_classes
        Classifier outputs.
    resolution
        Input height and width the space is meant for. It is only stored (``self.resolution``)
        for profiling and documentation, because every layer works at any resolution.
    width_mult
        Channel multiplier. Channels are rounded to multiples of 8 and the head keeps at least
        1280 channels, as in MobileNetV2.
    se
        Squeeze-excite in every MBConv candidate.
    activation
        "relu" or "swish" inside the MBConv candidates. The stem, first block and head use ReLU.
    affine
        Learnable scale and shift in the batch norms of the candidates. The default ``False``
        follows DARTS, where per-candidate affine parameters could absorb the softmax weight.
        The stem, first block and head always use affine batch norm.
    dropout
        Dropout probability before the classifier.
    """

    def __init__(self, num_classes: int = 1000, resolution: int = 224, width_mult: float = 1.0,
                 se: bool = False, activation: str = "relu", affine: bool = False, dropout: float = 0.0):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"invalid activation {activation!r}: use one of {', '.join(ACTIVATIONS)}")
        if num_classes < 1:
            raise ValueError(f"invalid num_classes {num_classes}: use a positive number of classes")
        if resolution < 32:
            raise ValueError(f"invalid resolution {resolution}: the network downsamples by 32, use at least 32")
        self.resolution = resolution

        stem_channels = scale_channels(STEM_CHANNELS, width_mult)
        in_channels = scale_channels(FIRST_BLOCK_CHANNELS, width_mult)
        self.stem = stem(stem_channels)
        self.first_block = first_block(stem_channels, in_channels)

        layers = []
        for spec in LAYER_SPECS:
            out_channels = scale_channels(spec.out_channels, width_mult)
            candidates = OrderedDict(
                (name, MBConv(in_channels, out_channels, kernel_size, spec.stride, expansion, se=se,
                              activation=activation, affine=affine))
                for name, expansion, kernel_size in MBCONV_CANDIDATES
            )
            if spec.allows_skip:
                candidates[SKIP] = nn.Identity()
            layers.append(LayerChoice(candidates, label=spec.label))
            in_channels = out_channels
        self.layers = nn.Sequential(*layers)

        head_channels = scale_channels(HEAD_CHANNELS, max(1.0, width_mult))
        self.head = ClassifierHead(in_channels, head_channels, num_classes, dropout)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.first_block(self.stem(x))))
