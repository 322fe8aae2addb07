"""Candidate operations of the DARTS cell space.

The same builders serve the search supernet (``affine=False`` batch norm, a
batch norm after each pooling candidate) and the standalone evaluation network
(affine batch norm, bare pooling), so both always build the same layers.
"""

from __future__ import annotations

from typing import Callable, Dict

import torch
from torch import nn

#: The seven candidates of the NoisyDARTS (Chu et al.) DARTS-space search, in a fixed order. The
#: DARTS ``none`` (zero) candidate is left out on purpose.
PRIMITIVES = (
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)

SKIP_PRIMITIVE = "skip_connect"


class ReLUConvBN(nn.Module):
    """ReLU, convolution without bias, batch norm."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int, affine: bool = True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class DilConv(nn.Module):
    """ReLU, depthwise (optionally dilated) convolution, pointwise convolution, batch norm."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int,
                 dilation: int, affine: bool = True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel_size, stride=stride, padding=padding, dilation=dilation,
                      groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, kernel_size=1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class SepConv(nn.Module):
    """Two stacked separable convolutions; only the first one applies the stride."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int, affine: bool = True):
        super().__init__()
        self.op = nn.Sequential(
            DilConv(c_in, c_in, kernel_size, stride, padding, dilation=1, affine=affine),
            DilConv(c_in, c_out, kernel_size, 1, padding, dilation=1, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class FactorizedReduce(nn.Module):
    """Halve the resolution with two offset 1x1 stride-2 convolutions whose outputs are concatenated.

    This is the skip connection of a stride-2 edge, so NoisyDARTS injects noise into it too.
    """

    def __init__(self, c_in: int, c_out: int, affine: bool = True):
        super().__init__()
        if c_out % 2 != 0:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got c_out={c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_even = nn.Conv2d(c_in, c_out // 2, kernel_size=1, stride=2, bias=False)
        self.conv_odd = nn.Conv2d(c_in, c_out // 2, kernel_size=1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)

        # The second branch starts one pixel later so the two sample disjoint grids.
        # An odd input size leaves the shifted branch one pixel short, so it is padded back.
        even = self.conv_even(x)
        odd = self.conv_odd(x[:, :, 1:, 1:])
        if odd.shape[-2:] != even.shape[-2:]:
            odd = nn.functional.pad(odd, (0, even.shape[-1] - odd.shape[-1], 0, even.shape[-2] - odd.shape[-2]))

        return self.bn(torch.cat([even, odd], dim=1))


class PoolBN(nn.Module):
    """3x3 pooling followed by a non-affine batch norm, as the search supernet uses."""

    def __init__(self, pool: nn.Module, channels: int, affine: bool = False):
        super().__init__()
        self.pool = pool
        self.bn = nn.BatchNorm2d(channels, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.pool(x))


def _pool(kind: str, stride: int) -> nn.Module:
    if kind == "max":
        return nn.MaxPool2d(3, stride=stride, padding=1)
    return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)


def build_op(name: str, channels: int, stride: int, affine: bool, bn_after_pool: bool) -> nn.Module:
    """Build candidate ``name`` mapping ``channels`` to ``channels`` at ``stride`` (1 or 2).

    ``affine`` sets the batch-norm kind of the convolutions. ``bn_after_pool`` adds a non-affine
    batch norm after each pooling candidate (the search supernet), or leaves the pooling bare
    (the evaluation network).
    """
    if name not in OP_BUILDERS:
        raise ValueError(f"unknown DARTS candidate {name!r}; expected one of {', '.join(PRIMITIVES)}")
    if stride not in (1, 2):
        raise ValueError(f"DARTS candidates support stride 1 or 2, got stride={stride}")
    return OP_BUILDERS[name](channels, stride, affine, bn_after_pool)


def _build_pool(kind: str) -> Callable[[int, int, bool, bool], nn.Module]:
    def builder(channels: int, stride: int, affine: bool, bn_after_pool: bool) -> nn.Module:
        pool = _pool(kind, stride)
        return PoolBN(pool, channels) if bn_after_pool else pool
    return builder


def _build_skip(channels: int, stride: int, affine: bool, bn_after_pool: bool) -> nn.Module:
    if stride == 1:
        return nn.Identity()
    return FactorizedReduce(channels, channels, affine=affine)


OP_BUILDERS: Dict[str, Callable[[int, int, bool, bool], nn.Module]] = {
    "max_pool_3x3": _build_pool("max"),
    "avg_pool_3x3": _build_pool("avg"),
    "skip_connect": _build_skip,
    "sep_conv_3x3": lambda c, s, affine, _: SepConv(c, c, 3, s, 1, affine=affine),
    "sep_conv_5x5": lambda c, s, affine, _: SepConv(c, c, 5, s, 2, affine=affine),
    "dil_conv_3x3": lambda c, s, affine, _: DilConv(c, c, 3, s, 2, 2, affine=affine),
    "dil_conv_5x5": lambda c, s, affine, _: DilConv(c, c, 5, s, 4, 2, affine=affine),
}


def build_preprocess(c_prev_prev: int, c_prev: int, channels: int, reduction_prev: bool,
                     affine: bool) -> tuple:
    """Build the two input adapters of a cell: they bring both cell inputs to ``channels`` at one resolution."""
    if reduction_prev:
        preprocess0 = FactorizedReduce(c_prev_prev, channels, affine=affine)
    else:
        preprocess0 = ReLUConvBN(c_prev_prev, channels, 1, 1, 0, affine=affine)
    preprocess1 = ReLUConvBN(c_prev, channels, 1, 1, 0, affine=affine)
    return preprocess0, preprocess1
