"""The opt-in channels-last conversion must leave a supernet's outputs and gradients unchanged."""

from __future__ import annotations

import copy

import torch

from nni_noisydarts.darts.space import DartsSearchSpace
from nni_noisydarts.strategy import NoisyDARTS
from nni_noisydarts.supernet import use_channels_last


def test_channels_last_matches_nchw():
    torch.manual_seed(0)
    reference = NoisyDARTS(lam=0.0).mutate_model(DartsSearchSpace(width=4, cells=3))
    converted = copy.deepcopy(reference)
    handle = use_channels_last(converted)
    images = torch.randn(2, 3, 32, 32)

    out_reference, out_converted = reference(images), converted(images)
    torch.testing.assert_close(out_converted, out_reference, rtol=1e-4, atol=1e-5)

    out_reference.square().sum().backward()
    out_converted.square().sum().backward()
    gradients = dict(reference.named_parameters())
    for name, parameter in converted.named_parameters():
        torch.testing.assert_close(parameter.grad, gradients[name].grad, rtol=1e-3, atol=1e-5, msg=name)

    handle.remove()
