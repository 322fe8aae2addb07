"""Parameter and multiply-add (MAdds) counts of a model, the figures reported next to accuracy.

MAdds are counted per single image with forward hooks in eval mode, under these rules:

* convolution: output elements x (in_channels / groups) x kernel height x kernel width
  (a bias adds nothing);
* linear: in_features x out_features per sample;
* batch norm, only with ``count_bn``: 2 per output element (a scale and a shift);
* adaptive or global average pooling, only with ``count_pooling``: one per input element.

Any other module adds nothing. Modules under ``exclude`` prefixes (for example the
``auxiliary_head`` that is only used in training) are left out of both counts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict, Iterable, Sequence, Tuple

import torch
from torch import nn

logger = logging.getLogger(__name__)


@dataclass
class MAddsReport:
    """MAdds of one forward pass on a single image.

    ``total`` is the sum of ``per_module`` (module name to MAdds) and ``per_kind``
    (``conv``, ``linear``, ``bn``, ``pooling`` to MAdds).
    """

    total: int
    input_size: Tuple[int, ...]
    per_module: Dict[str, int] = field(default_factory=dict)
    per_kind: Dict[str, int] = field(default_factory=dict)

    @property
    def millions(self) -> float:
        return self.total / 1e6


def _is_excluded(name: str, exclude: Sequence[str]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in exclude)


def count_parameters(model: nn.Module, exclude: Iterable[str] = ()) -> int:
    """Count the parameters of ``model``, leaving out those under the module-name prefixes in ``exclude``.

    A parameter shared by several modules is counted once.
    """
    exclude = tuple(exclude)
    seen = set()
    total = 0
    for name, parameter in model.named_parameters():
        if _is_excluded(name, exclude) or id(parameter) in seen:
            continue
        seen.add(id(parameter))
        total += parameter.numel()
    return total


def _conv_madds(module: nn.Conv2d, output: torch.Tensor) -> int:
    kernel_h, kernel_w = module.kernel_size
    per_output = (module.in_channels // module.groups) * kernel_h * kernel_w
    return output[0].numel() * per_output


def _madds_of(module: nn.Module, inputs, output, count_bn: bool, count_pooling: bool):
    """Return ``(kind, madds)`` of one call of ``module`` on a batch of one image, or None."""
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        if not isinstance(module, nn.Conv2d):
            raise ValueError(f"count_madds supports 2-D convolutions only, found {type(module).__name__}")
        return "conv", _conv_madds(module, output)
    if isinstance(module, nn.Linear):
        rows = output.numel() // output.shape[-1]
        return "linear", rows * module.in_features * module.out_features
    if count_bn and isinstance(module, nn.modules.batchnorm._BatchNorm):
        return "bn", 2 * output.numel()
    if count_pooling and isinstance(module, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)):
        return "pooling", inputs[0].numel()
    return None


def count_madds(model: nn.Module, input_size: Sequence[int] = (1, 3, 32, 32), count_bn: bool = False,
                count_pooling: bool = False, exclude: Iterable[str] = ()) -> MAddsReport:
    """Count the multiply-adds of one forward pass of ``model`` on a single image.

    ``input_size`` is ``(1, channels, height, width)``; its batch size must be 1 so the counts
    are per image. The model runs once in eval mode on zeros and is put back in its former mode.
    Global pooling written as ``x.mean(...)`` in ``forward`` is not a module and is not counted.
    """
    input_size = tuple(int(v) for v in input_size)
    if len(input_size) != 4 or input_size[0] != 1:
        raise ValueError(f"input_size must be (1, channels, height, width), got {input_size}; "
                         "MAdds are counted per single image")
    exclude = tuple(exclude)

    per_module: Dict[str, int] = {}
    per_kind: Dict[str, int] = {}
    handles = []

    def make_hook(name: str):
        def hook(module, inputs, output):
            counted = _madds_of(module, inputs, output, count_bn, count_pooling)
            if counted is None:
                return
            kind, madds = counted
            per_module[name] = per_module.get(name, 0) + madds
            per_kind[kind] = per_kind.get(kind, 0) + madds
        return hook

    for name, module in model.named_modules():
        if not _is_excluded(name, exclude) and len(list(module.children())) == 0:
            handles.append(module.register_forward_hook(make_hook(name)))

    was_training = model.training
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(input_size, device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)

    total = sum(per_module.values())
    logger.debug("counted %d MAdds over %d modules for input %s", total, len(per_module), input_size)
    return MAddsReport(total=total, input_size=input_size, per_module=per_module, per_kind=per_kind)
