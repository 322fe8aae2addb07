"""Memory-format speed-up for DARTS supernets that keeps the search's math unchanged.

``use_channels_last`` stores a supernet's 4-D weights in channels-last (NHWC) order and
converts its 4-D inputs to the same order. On CPU, PyTorch runs convolutions through
oneDNN, whose depthwise and dilated convolutions (the separable, dilated and MBConv
candidates) are several times faster in NHWC than in NCHW. Measured with torch 2.14.1 on a
2-core AMD EPYC (forward plus backward, batch 16, 32x32 pixels, 16 channels), a 3x3
depthwise convolution took 1.50 ms in NCHW and 0.59 ms in NHWC. A 5x5 depthwise
convolution with dilation 2 took 11.98 ms and 1.97 ms. A whole DARTS search step became 1.7
to 1.9 times faster (``benchmarks/search_step.py``, configurations ``b`` and ``b-cl``).

Batch norm, pooling, ``torch.cat`` over channels and element-wise ops keep the
channels-last order. In this package's DARTS supernet, 18 of the 1395 convolution calls of a
forward pass get an input that is not NHWC (the shifted branch of the factorized reduce),
and none do in the MobileNetV2 supernet.

``NoisyDARTS`` applies it by default when no CUDA device is visible. The noise module draws
its numbers in the tensor's memory order, because ``torch.randn_like`` on a channels-last CPU
tensor takes a path about 8 times slower than on a contiguous one (torch 2.14.1).
"""

from __future__ import annotations

from typing import Any, Tuple

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

__all__ = ["use_channels_last"]


def _inputs_to_channels_last(module: nn.Module, args: Tuple[Any, ...]) -> Tuple[Any, ...]:
    return tuple(arg.contiguous(memory_format=torch.channels_last)
                 if torch.is_tensor(arg) and arg.dim() == 4 else arg
                 for arg in args)


def use_channels_last(model: nn.Module) -> RemovableHandle:
    """Convert ``model`` to channels-last memory format in place and make it convert its inputs.

    The 4-D parameters and buffers are stored in NHWC order. A forward pre-hook converts
    every 4-D tensor passed positionally to ``model.forward``, and the returned handle
    removes it. Results equal those in NCHW up to float rounding. On a freshly initialized
    DARTS supernet in float32, the gradients differ by about 1e-3 relative, as much as they
    move when the input is scaled by 1 + 1e-6. ``model.to(device)`` and
    ``load_state_dict`` keep the layout, because both write into or preserve the existing
    tensors' strides.
    """
    model.to(memory_format=torch.channels_last)
    return model.register_forward_pre_hook(_inputs_to_channels_last)
