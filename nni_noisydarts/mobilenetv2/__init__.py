"""The MobileNetV2 (ProxylessNAS / FairNAS) search space, its choices and standalone networks.

``space`` (the NNI model space) is not imported here, so the networks and choices load without
NNI's model-space machinery.
"""

from .choices import LAYER_SPECS, NOISYDARTS_A, ChoicesError, MobileNetV2Choices, derive_choices
from .network import MobileNetV2Network

__all__ = ["LAYER_SPECS", "NOISYDARTS_A", "ChoicesError", "MobileNetV2Choices", "MobileNetV2Network",
           "derive_choices"]
