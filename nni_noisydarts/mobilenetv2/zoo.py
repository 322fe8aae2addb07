"""MobileNetV2-space networks registered in ``nni_noisydarts.zoo`` when that module first lists models.

* ``noisydarts-a-imagenet``: NoisyDARTS-A with ReLU and no squeeze-excite, 4,882,184 parameters
  and 446.0M MAdds at 224x224 with 1000 classes.
* ``noisydarts-a-se-imagenet``: the same layers with squeeze-excite and Swish in every MBConv
  block, 5,547,124 parameters and 449.0M MAdds (SE pooling included).
* ``mobilenetv2-choices``: any architecture of the space, given as ``choices="e6_k3 ..."``.

NoisyDARTS-A is from Chu et al., "Noisy Differentiable Architecture Search" (BMVC 2021), Figure 5.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from ..zoo import register_model
from .choices import NOISYDARTS_A, MobileNetV2Choices
from .network import MobileNetV2Network


def build_noisydarts_a(num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.0,
                       drop_connect_rate: float = 0.0) -> MobileNetV2Network:
    """Build NoisyDARTS-A with ReLU and without squeeze-excite."""
    return MobileNetV2Network(NOISYDARTS_A, num_classes=num_classes, width_mult=width_mult,
                              dropout=dropout, drop_connect_rate=drop_connect_rate)


def build_noisydarts_a_se(num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.0,
                          drop_connect_rate: float = 0.0) -> MobileNetV2Network:
    """Build NoisyDARTS-A with squeeze-excite and Swish in every MBConv block."""
    return MobileNetV2Network(NOISYDARTS_A, num_classes=num_classes, width_mult=width_mult, se=True,
                              activation="swish", dropout=dropout, drop_connect_rate=drop_connect_rate)


def build_from_choices(choices: str | Sequence[str] | Mapping[str, str] | MobileNetV2Choices,
                       num_classes: int = 1000, width_mult: float = 1.0, se: bool = False,
                       activation: str = "relu", dropout: float = 0.0,
                       drop_connect_rate: float = 0.0) -> MobileNetV2Network:
    """Build the network of any 19 choices.

    Pass ``choices`` as text or JSON when the model goes through ``nni_noisydarts.zoo.build_model``,
    because that function stores the keyword arguments in the checkpoint's architecture spec.
    """
    return MobileNetV2Network(choices, num_classes=num_classes, width_mult=width_mult, se=se,
                              activation=activation, dropout=dropout, drop_connect_rate=drop_connect_rate)


register_model("noisydarts-a-imagenet", build_noisydarts_a,
               "NoisyDARTS-A ImageNet network (ReLU, no SE), 4,882,184 parameters, 446.0M MAdds at 224x224")
register_model("noisydarts-a-se-imagenet", build_noisydarts_a_se,
               "NoisyDARTS-A ImageNet network with SE and Swish, 5,547,124 parameters, 449.0M MAdds at 224x224")
register_model("mobilenetv2-choices", build_from_choices,
               "network of any 19 MobileNetV2-space layer choices (choices='e6_k3 e3_k3 ...')")
