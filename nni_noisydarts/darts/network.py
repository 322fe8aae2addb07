"""The DARTS evaluation network for CIFAR: a stack of discrete cells built from a genotype.

Layout (Liu et al. 2019, also used by NoisyDARTS): a 3x3 stem convolution to
``stem_multiplier * width`` channels with batch norm, ``cells`` cells with the channel count
doubled and the resolution halved at cells ``cells // 3`` and ``2 * cells // 3``, global
average pooling and a linear classifier. An auxiliary classifier reads the output of cell
``2 * cells // 3`` during training only. It is the ``auxiliary_head`` attribute, so parameter
counts can leave it out by name.
"""

from __future__ import annotations

import logging
from typing import List, Optional, Union

import torch
from torch import nn

from .genotype import Genotype, format_genotype
from .ops import build_op, build_preprocess

logger = logging.getLogger(__name__)

#: Spatial size of the feature map that the CIFAR auxiliary head expects (32x32 input, two reductions).
AUX_INPUT_SIZE = 8


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples of ``x`` with probability ``drop_prob`` and rescale the kept ones by ``1 / (1 - drop_prob)``."""
    if drop_prob <= 0.0:
        return x
    keep_prob = 1.0 - drop_prob
    mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device).bernoulli_(keep_prob)
    return x * mask / keep_prob


class Cell(nn.Module):
    """One discrete cell: two preprocessed inputs, ``steps`` intermediate nodes, each the sum of two ops."""

    def __init__(self, genotype: Genotype, c_prev_prev: int, c_prev: int, channels: int,
                 reduction: bool, reduction_prev: bool):
        super().__init__()
        self.reduction = reduction
        self.preprocess0, self.preprocess1 = build_preprocess(c_prev_prev, c_prev, channels, reduction_prev,
                                                              affine=True)

        edges = genotype.reduce if reduction else genotype.normal
        self.concat: List[int] = list(genotype.reduce_concat if reduction else genotype.normal_concat)
        self.sources: List[int] = [source for _, source in edges]
        self.steps = len(edges) // 2
        self.multiplier = len(self.concat)

        # In a reduction cell only the edges that read the two cell inputs halve the resolution.
        self.ops = nn.ModuleList()
        for op_name, source in edges:
            stride = 2 if reduction and source < 2 else 1
            self.ops.append(build_op(op_name, channels, stride, affine=True, bn_after_pool=False))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for step in range(self.steps):
            node = None
            for edge in (2 * step, 2 * step + 1):
                op = self.ops[edge]
                h = op(states[self.sources[edge]])
                # Drop-path leaves identity edges alone, so a cell keeps at least its skip paths.
                if self.training and drop_prob > 0.0 and not isinstance(op, nn.Identity):
                    h = drop_path(h, drop_prob)
                node = h if node is None else node + h
            states.append(node)
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHeadCIFAR(nn.Module):
    """Auxiliary classifier on the 8x8 feature map of the second reduction stage."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),
            nn.Conv2d(channels, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != (AUX_INPUT_SIZE, AUX_INPUT_SIZE):
            raise ValueError(
                f"the CIFAR auxiliary head needs an {AUX_INPUT_SIZE}x{AUX_INPUT_SIZE} feature map (32x32 input images), "
                f"got {tuple(x.shape[-2:])}; train at 32x32 or build the network with auxiliary=False"
            )
        x = self.features(x)
        return self.classifier(x.flatten(1))


class DartsCifarNetwork(nn.Module):
    """DARTS evaluation network for CIFAR built from ``genotype``.

    In training mode with ``auxiliary=True`` the forward pass returns ``(logits, aux_logits)``;
    otherwise it returns the logits. ``drop_path_prob`` is read at every forward pass, so a
    trainer can change it between epochs.
    """

    def __init__(self, genotype: Genotype, width: int = 36, cells: int = 20, num_classes: int = 10,
                 auxiliary: bool = True, dropout: float = 0.0, stem_multiplier: int = 3,
                 drop_path_prob: float = 0.0):
        super().__init__()
        if width <= 0 or width % 2 != 0:
            raise ValueError(f"width must be a positive even number of channels, got {width}")
        if cells < 3:
            raise ValueError(f"cells must be at least 3 so that both reduction cells exist, got {cells}")
        if num_classes <= 0:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")

        self.genotype = genotype
        self.width = width
        self.num_cells = cells
        self.auxiliary = auxiliary
        self.drop_path_prob = drop_path_prob
        self.reduction_indices = (cells // 3, 2 * cells // 3)
        self.aux_index = 2 * cells // 3

        stem_channels = stem_multiplier * width
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(stem_channels),
        )

        c_prev_prev, c_prev, channels = stem_channels, stem_channels, width
        reduction_prev = False
        aux_channels = None
        self.cells = nn.ModuleList()
        for index in range(cells):
            reduction = index in self.reduction_indices
            if reduction:
                channels *= 2
            cell = Cell(genotype, c_prev_prev, c_prev, channels, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, cell.multiplier * channels
            if index == self.aux_index:
                aux_channels = c_prev

        self.auxiliary_head: Optional[AuxiliaryHeadCIFAR] = (
            AuxiliaryHeadCIFAR(aux_channels, num_classes) if auxiliary else None
        )
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, tuple]:
        aux_logits = None
        s0 = s1 = self.stem(x)
        for index, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if index == self.aux_index and self.auxiliary_head is not None and self.training:
                aux_logits = self.auxiliary_head(s1)

        out = self.global_pooling(s1).flatten(1)
        logits = self.classifier(self.dropout(out))
        if aux_logits is not None:
            return logits, aux_logits
        return logits

    def extra_repr(self) -> str:
        return f"width={self.width}, cells={self.num_cells}, genotype={format_genotype(self.genotype)}"
