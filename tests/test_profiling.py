"""Parameter and MAdds counting rules on small hand-made models."""

from __future__ import annotations

import pytest
from torch import nn

from nni_noisydarts.profiling import count_madds, count_parameters


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=True),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(8, 5)
        self.auxiliary_head = nn.Linear(8, 5)
        self.auxiliary = nn.Linear(8, 2)

    def forward(self, x):
        features = self.body(x).flatten(1)
        return self.classifier(features) + self.auxiliary_head(features)[:, :5] + self.auxiliary(features).sum()


def test_parameters_exclude_prefix():
    model = TwoHeads()
    total = sum(p.numel() for p in model.parameters())

    assert count_parameters(model) == total
    assert count_parameters(model, exclude=["auxiliary_head"]) == total - (8 * 5 + 5)
    # A prefix matches whole module names only, so "auxiliary" keeps "auxiliary_head".
    assert count_parameters(model, exclude=["auxiliary"]) == total - (8 * 2 + 2)


def test_shared_parameter_counted_once():
    layer = nn.Linear(4, 4)
    model = nn.Sequential(layer, nn.ReLU(), layer)

    assert count_parameters(model) == 4 * 4 + 4


def test_madds_conv_and_linear_rules():
    model = TwoHeads()
    report = count_madds(model, input_size=(1, 3, 16, 16))

    dense = 8 * 16 * 16 * 3 * 3 * 3
    depthwise = 8 * 8 * 8 * 1 * 3 * 3
    linear = 8 * 5 + 8 * 5 + 8 * 2
    assert report.per_kind["conv"] == dense + depthwise
    assert report.per_kind["linear"] == linear
    assert report.total == dense + depthwise + linear
    assert report.per_module["body.0"] == dense
    assert "bn" not in report.per_kind
    assert "pooling" not in report.per_kind


def test_madds_bn_and_pooling_options():
    model = TwoHeads()
    plain = count_madds(model, input_size=(1, 3, 16, 16)).total
    with_bn = count_madds(model, input_size=(1, 3, 16, 16), count_bn=True)
    with_pooling = count_madds(model, input_size=(1, 3, 16, 16), count_pooling=True)

    assert with_bn.per_kind["bn"] == 2 * 8 * 16 * 16
    assert with_bn.total == plain + 2 * 8 * 16 * 16
    assert with_pooling.per_kind["pooling"] == 8 * 8 * 8
    assert with_pooling.total == plain + 8 * 8 * 8


def test_madds_exclude_prefix():
    model = TwoHeads()
    report = count_madds(model, input_size=(1, 3, 16, 16), exclude=["auxiliary_head"])

    assert "auxiliary_head" not in report.per_module
    assert report.per_kind["linear"] == 8 * 5 + 8 * 2


def test_madds_restores_training_mode():
    model = TwoHeads().train()
    count_madds(model, input_size=(1, 3, 16, 16))

    assert model.training
    assert not model.eval().training
    count_madds(model, input_size=(1, 3, 16, 16))
    assert not model.training


def test_madds_removes_hooks():
    model = TwoHeads()
    count_madds(model, input_size=(1, 3, 16, 16))

    assert all(not module._forward_hooks for module in model.modules())


@pytest.mark.parametrize("input_size", [(2, 3, 16, 16), (3, 16, 16)])
def test_madds_rejects_batched_input(input_size):
    with pytest.raises(ValueError, match="per single image"):
        count_madds(TwoHeads(), input_size=input_size)


def test_madds_millions_property():
    model = nn.Sequential(nn.Flatten(), nn.Linear(1000, 1000))
    report = count_madds(model, input_size=(1, 1, 10, 100))

    assert report.total == 1_000_000
    assert report.millions == pytest.approx(1.0)
