"""The DARTS cell search space as an NNI 3.0 model space, built as in the NoisyDARTS paper.

Differences from NNI's hub ``DARTS`` space, on purpose:

* seven candidates per edge and no ``none``. Every edge is a plain ``LayerChoice``, so
  NNI's ``DifferentiableMixedCell`` (which appends an implicit zero op) is never used;
* batch norm is non-affine everywhere and every pooling candidate is followed by a
  non-affine batch norm;
* all normal cells share one set of alphas and all reduction cells another: every
  edge's ``LayerChoice`` label is ``"<cell type>_<node>_<input>"``, the same in each cell
  of a type, and NNI's DARTS strategy keeps one alpha vector per label.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List, Sequence

import numpy as np
import torch
from nni.nas.nn.pytorch import LayerChoice, ModelSpace
from torch import nn

from .genotype import Genotype, derive_genotype, edge_index
from .ops import PRIMITIVES, build_op, build_preprocess

CELL_TYPES = ("normal", "reduce")


def edge_label(cell_type: str, node: int, source: int) -> str:
    """Label of the alphas of the edge from ``source`` to intermediate ``node`` (2-based) in a cell type."""
    return f"{cell_type}_{node}_{source}"


def reduction_layers(cells: int) -> List[int]:
    """Indices of the reduction cells: at one third and two thirds of the depth."""
    return [cells // 3, 2 * cells // 3]


class SearchCell(nn.Module):
    """One DARTS cell of the supernet: ``steps`` intermediate nodes, each summing a mixed op over every earlier node."""

    def __init__(self, steps: int, multiplier: int, c_prev_prev: int, c_prev: int, channels: int,
                 reduction: bool, reduction_prev: bool, primitives: Sequence[str]):
        super().__init__()
        self.reduction = reduction
        self.steps = steps
        self.multiplier = multiplier
        self.preprocess0, self.preprocess1 = build_preprocess(
            c_prev_prev, c_prev, channels, reduction_prev, affine=False)

        cell_type = "reduce" if reduction else "normal"
        self.edges = nn.ModuleDict()
        for node, source in edge_index(steps):
            # Edges leaving the two cell inputs halve the resolution in a reduction cell.
            stride = 2 if reduction and source < 2 else 1
            candidates = OrderedDict(
                (name, build_op(name, channels, stride, affine=False, bn_after_pool=True))
                for name in primitives
            )
            self.edges[f"{node}_{source}"] = LayerChoice(candidates, label=edge_label(cell_type, node, source))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for node in range(2, self.steps + 2):
            states.append(sum(self.edges[f"{node}_{source}"](states[source]) for source in range(node)))
        return torch.cat(states[-self.multiplier:], dim=1)


class DartsSearchSpace(ModelSpace):
    """The DARTS supernet for CIFAR-sized images (paper settings: ``width=16``, ``cells=8``).

    Args:
        width: channels of the first cell (C).
        cells: number of stacked cells; reductions sit at 1/3 and 2/3 of the depth.
        steps: intermediate nodes per cell.
        num_classes: classifier outputs.
        stem_multiplier: the stem convolution outputs ``stem_multiplier * width`` channels.
        primitives: candidate ops on every edge.
    """

    def __init__(self, width: int = 16, cells: int = 8, steps: int = 4, num_classes: int = 10,
                 stem_multiplier: int = 3, primitives: Sequence[str] = PRIMITIVES):
        super().__init__()
        if width < 2 or width % 2:
            raise ValueError(f"width must be an even number >= 2 (factorized reduce halves it), got {width}")
        if cells < 3:
            raise ValueError(f"cells must be >= 3 so that both reduction cells exist, got {cells}")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        unknown = [name for name in primitives if name not in PRIMITIVES]
        if unknown:
            raise ValueError(f"unknown candidates {unknown}; expected a subset of {', '.join(PRIMITIVES)}")

        self.width = width
        self.num_cells = cells
        self.steps = steps
        self.primitives = tuple(primitives)

        c_stem = stem_multiplier * width
        self.stem = nn.Sequential(
            nn.Conv2d(3, c_stem, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_stem, affine=False),
        )

        c_prev_prev, c_prev, channels = c_stem, c_stem, width
        reduction_prev = False
        self.cells = nn.ModuleList()
        for index in range(cells):
            reduction = index in reduction_layers(cells)
            if reduction:
                channels *= 2
            cell = SearchCell(steps, steps, c_prev_prev, c_prev, channels, reduction, reduction_prev, primitives)
            self.cells.append(cell)
            c_prev_prev, c_prev = c_prev, steps * channels
            reduction_prev = reduction

        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        out = self.global_pooling(s1).flatten(1)
        return self.classifier(out)

    def edge_labels(self, cell_type: str) -> List[str]:
        """Alpha labels of one cell type, in the row order that ``derive_genotype`` expects."""
        return [edge_label(cell_type, node, source) for node, source in edge_index(self.steps)]


def weight_matrices(probs: Dict[str, Dict[str, float]], steps: int,
                    primitives: Sequence[str] = PRIMITIVES) -> Dict[str, np.ndarray]:
    """Arrange NNI's ``export_probs()`` output as one ``(edges, candidates)`` softmax matrix per cell type."""
    matrices = {}
    for cell_type in CELL_TYPES:
        rows = []
        for node, source in edge_index(steps):
            label = edge_label(cell_type, node, source)
            if label not in probs:
                raise KeyError(f"no architecture weights for edge {label!r}; is this a DARTS cell supernet?")
            rows.append([probs[label][name] for name in primitives])
        matrices[cell_type] = np.asarray(rows)
    return matrices


def genotype_from_probs(probs: Dict[str, Dict[str, float]], steps: int,
                        primitives: Sequence[str] = PRIMITIVES) -> Genotype:
    """Derive the DARTS genotype from NNI's per-label softmax weights."""
    matrices = weight_matrices(probs, steps, primitives)
    return derive_genotype(matrices["normal"], matrices["reduce"], primitives)
