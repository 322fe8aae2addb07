"""MobileNetV2 search space, layer choices, standalone networks and their published counts."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from nni_noisydarts.mobilenetv2.blocks import MBConv, make_divisible
from nni_noisydarts.mobilenetv2.choices import (LAYER_SPECS, MBCONV_NAMES, NOISYDARTS_A, SKIP, ChoicesError,
                                                MobileNetV2Choices, derive_choices)
from nni_noisydarts.mobilenetv2.network import MobileNetV2Network
from nni_noisydarts.mobilenetv2.space import MobileNetV2Space
from nni_noisydarts.profiling import count_madds, count_parameters

STAGE_FIRST_LABELS = ["layer1", "layer3", "layer7", "layer11", "layer15", "layer19"]
IMAGENET_INPUT = (1, 3, 224, 224)

pytestmark = pytest.mark.usefixtures("single_thread")


def relative_error(value: float, expected: float) -> float:
    return abs(value - expected) / expected


def with_skips(choices: MobileNetV2Choices, layers) -> MobileNetV2Choices:
    names = list(choices.names)
    for layer in layers:
        names[layer - 1] = SKIP
    return MobileNetV2Choices(tuple(names))


# --- published counts -------------------------------------------------------------------------

def test_noisydarts_a_plain_params_exact():
    model = MobileNetV2Network(NOISYDARTS_A)
    assert count_parameters(model) == 4_882_184


def test_noisydarts_a_se_params_exact():
    model = MobileNetV2Network(NOISYDARTS_A, se=True, activation="swish")
    assert count_parameters(model) == 5_547_124


def test_noisydarts_a_plain_madds():
    report = count_madds(MobileNetV2Network(NOISYDARTS_A), IMAGENET_INPUT)
    assert set(report.per_kind) == {"conv", "linear"}
    assert relative_error(report.total, 446.0e6) < 0.005
    assert report.total == 446_014_976


def test_noisydarts_a_se_madds():
    model = MobileNetV2Network(NOISYDARTS_A, se=True, activation="swish")
    without_pooling = count_madds(model, IMAGENET_INPUT)
    # The 2.33M pooling figure is the squeeze of the 19 SE gates, so the head's global pool is excluded.
    with_se_pooling = count_madds(model, IMAGENET_INPUT, count_pooling=True, exclude=("head.pool",))

    assert relative_error(without_pooling.total, 446.7e6) < 0.005
    assert relative_error(with_se_pooling.per_kind["pooling"], 2.33e6) < 0.005
    assert relative_error(with_se_pooling.total, 449.0e6) < 0.005


def test_se_adds_only_gate_madds():
    plain = count_madds(MobileNetV2Network(NOISYDARTS_A), IMAGENET_INPUT)
    se = count_madds(MobileNetV2Network(NOISYDARTS_A, se=True), IMAGENET_INPUT)
    gate_madds = sum(madds for name, madds in se.per_module.items() if ".reduce" in name or ".expand" in name)
    assert gate_madds > 0
    assert se.total - plain.total == gate_madds


# --- search space -----------------------------------------------------------------------------

def test_space_has_19_choices():
    space = MobileNetV2Space()
    choices = space.simplify()
    assert list(choices) == [f"layer{index}" for index in range(1, 20)]
    for label, choice in choices.items():
        expected = list(MBCONV_NAMES) if label in STAGE_FIRST_LABELS else list(MBCONV_NAMES) + [SKIP]
        assert list(choice.values) == expected, label


def test_space_candidate_counts():
    sizes = [len(choice.values) for choice in MobileNetV2Space().simplify().values()]
    assert sizes.count(7) == 13
    assert sizes.count(6) == 6


def test_space_skip_is_identity():
    space = MobileNetV2Space()
    for layer in space.layers:
        if layer.label in STAGE_FIRST_LABELS:
            assert SKIP not in layer.names
        else:
            assert type(layer[SKIP]) is nn.Identity


@pytest.mark.parametrize("resolution", [32, 64])
def test_space_forward_shape(resolution):
    space = MobileNetV2Space(num_classes=10, width_mult=0.25, se=True, activation="swish")
    output = space(torch.randn(2, 3, resolution, resolution))
    assert output.shape == (2, 10)


def test_space_freeze_matches_network():
    # With affine batch norm everywhere, freezing the space gives the standalone network's weights.
    choices = with_skips(NOISYDARTS_A, [5, 17])
    frozen = MobileNetV2Space(affine=True).freeze(choices.to_dict())
    assert count_parameters(frozen) == count_parameters(MobileNetV2Network(choices))


def test_space_rejects_invalid_activation():
    with pytest.raises(ValueError, match="gelu"):
        MobileNetV2Space(activation="gelu")


# --- NNI DARTS mutation -----------------------------------------------------------------------

def test_darts_mutation_alphas():
    from nni.nas.oneshot.pytorch.supermodule.differentiable import DifferentiableMixedLayer
    from nni.nas.oneshot.pytorch.strategy import DARTS

    supernet = DARTS().mutate_model(MobileNetV2Space(num_classes=10, width_mult=0.25))
    mixed = [module for module in supernet.modules() if isinstance(module, DifferentiableMixedLayer)]
    assert [module.label for module in mixed] == [spec.label for spec in LAYER_SPECS]
    for module, spec in zip(mixed, LAYER_SPECS):
        assert module._arch_alpha.shape == (len(spec.candidates),), spec.label
        assert module.names == list(spec.candidates), spec.label


def test_darts_supernet_backward_and_export():
    from nni.nas.oneshot.pytorch.supermodule.differentiable import DifferentiableMixedLayer
    from nni.nas.oneshot.pytorch.strategy import DARTS

    supernet = DARTS().mutate_model(MobileNetV2Space(num_classes=10, width_mult=0.25))
    supernet(torch.randn(2, 3, 32, 32)).sum().backward()
    mixed = [module for module in supernet.modules() if isinstance(module, DifferentiableMixedLayer)]
    assert all(module._arch_alpha.grad is not None for module in mixed)

    exported, probs = {}, {}
    for module in mixed:
        exported.update(module.export({}))
        probs.update(module.export_probs({}))
    assert derive_choices(probs) == MobileNetV2Choices.from_dict(exported)


def test_noisydarts_wraps_13_skips():
    from nni_noisydarts.noise import NoisySkip
    from nni_noisydarts.strategy import NoisyDARTS

    supernet = NoisyDARTS(lam=0.2).mutate_model(MobileNetV2Space(num_classes=10, width_mult=0.25))
    assert sum(isinstance(module, NoisySkip) for module in supernet.modules()) == 13


# --- choices ----------------------------------------------------------------------------------

def test_choices_text_round_trip():
    text = NOISYDARTS_A.to_text()
    assert len(text.split()) == 19
    assert MobileNetV2Choices.from_text(text) == NOISYDARTS_A
    assert MobileNetV2Choices.parse(text) == NOISYDARTS_A
    assert MobileNetV2Choices.from_text(text.replace(" ", ", ")) == NOISYDARTS_A


def test_choices_json_round_trip():
    choices = with_skips(NOISYDARTS_A, [2, 18])
    document = choices.to_json()
    assert json.loads(document)["layer2"] == SKIP
    assert MobileNetV2Choices.from_json(document) == choices
    assert MobileNetV2Choices.parse(choices.to_json(indent=2)) == choices
    assert MobileNetV2Choices.parse(json.dumps(list(choices.names))) == choices


@pytest.mark.parametrize("text, message", [
    ("e6_k3 " * 18, "expected 19 layer choices, got 18"),
    ("e6_k3 " * 20, "expected 19 layer choices, got 20"),
    ("e6_k9 " + "e6_k3 " * 18, "unknown candidate 'e6_k9' on layer1"),
    ("skip " + "e6_k3 " * 18, "layer1 cannot be 'skip'"),
    ("e6_k3 " * 10 + "skip " + "e6_k3 " * 8, "layer11 cannot be 'skip'"),
    ("{not json", "invalid JSON"),
    ('{"layer1": "e6_k3"}', "missing"),
    ('[1, 2, 3]', "expected an object of layer labels"),
])
def test_choices_reject_malformed(text, message):
    with pytest.raises(ChoicesError, match=message):
        MobileNetV2Choices.parse(text)


def test_choices_reject_plain_string():
    with pytest.raises(ChoicesError, match="MobileNetV2Choices.parse"):
        MobileNetV2Choices(NOISYDARTS_A.to_text())


def test_choices_reject_unexpected_label():
    sample = {**NOISYDARTS_A.to_dict(), "layer20": "e6_k3"}
    with pytest.raises(ChoicesError, match="layer20"):
        MobileNetV2Choices.from_dict(sample)


def test_choices_reject_non_string_value():
    sample = {**NOISYDARTS_A.to_dict(), "layer4": 3}
    with pytest.raises(ChoicesError, match="layer4"):
        MobileNetV2Choices.from_dict(sample)


def test_derive_choices_from_alphas():
    weights = {}
    for spec, name in zip(LAYER_SPECS, NOISYDARTS_A.names):
        alphas = torch.zeros(len(spec.candidates))
        alphas[spec.candidates.index(name)] = 1.0
        weights[spec.label] = alphas
    assert derive_choices(weights) == NOISYDARTS_A


def test_derive_choices_picks_skip():
    weights = {spec.label: [0.1] * len(spec.candidates) for spec in LAYER_SPECS}
    weights["layer2"] = [0.1] * 6 + [0.4]
    derived = derive_choices(weights)
    assert derived.names[1] == SKIP
    assert derived.names[0] == MBCONV_NAMES[0]


def test_derive_choices_rejects_bad_weights():
    weights = {spec.label: [0.0] * len(spec.candidates) for spec in LAYER_SPECS}
    with pytest.raises(ChoicesError, match="expected 6 weights for layer1"):
        derive_choices({**weights, "layer1": [0.0] * 7})
    with pytest.raises(ChoicesError, match="missing weights for layer19"):
        derive_choices({label: value for label, value in weights.items() if label != "layer19"})
    with pytest.raises(ChoicesError, match="unknown candidates"):
        derive_choices({**weights, "layer1": {"skip": 1.0}})


# --- standalone network -----------------------------------------------------------------------

@pytest.mark.parametrize("resolution", [32, 64])
@pytest.mark.parametrize("se, activation", [(False, "relu"), (True, "swish")])
def test_network_forward_shape(resolution, se, activation):
    model = MobileNetV2Network(NOISYDARTS_A, num_classes=10, width_mult=0.25, se=se, activation=activation,
                               dropout=0.2, drop_connect_rate=0.2)
    output = model(torch.randn(2, 3, resolution, resolution))
    assert output.shape == (2, 10)
    output.sum().backward()


def test_network_swish_only_in_blocks():
    model = MobileNetV2Network(NOISYDARTS_A, activation="swish")
    for part in (model.stem, model.first_block, model.head):
        assert not any(isinstance(module, nn.SiLU) for module in part.modules())
    assert any(isinstance(module, nn.SiLU) for module in model.blocks.modules())


def test_handmade_skips_build_and_count():
    skipped_layers = [5, 17]
    choices = with_skips(NOISYDARTS_A, skipped_layers)
    assert choices.num_skips == 2
    full = MobileNetV2Network(NOISYDARTS_A)
    reduced = MobileNetV2Network(choices)
    assert len(reduced.blocks) == 17
    assert "layer5" not in reduced.block_labels
    assert reduced(torch.randn(2, 3, 64, 64)).shape == (2, 1000)

    # Layer 5 is an e6_k3 block on 40 channels at 28x28, layer 17 an e6_k7 block on 192 channels at 7x7.
    removed = [MBConv(40, 40, 3, 1, 6), MBConv(192, 192, 7, 1, 6)]
    removed_params = sum(count_parameters(block) for block in removed)
    assert count_parameters(full) - count_parameters(reduced) == removed_params

    removed_madds = (count_madds(removed[0], (1, 40, 28, 28)).total
                     + count_madds(removed[1], (1, 192, 7, 7)).total)
    full_madds = count_madds(full, IMAGENET_INPUT).total
    reduced_madds = count_madds(reduced, IMAGENET_INPUT).total
    assert full_madds - reduced_madds == removed_madds


def test_all_skips_network_runs():
    names = [SKIP if spec.allows_skip else "e3_k3" for spec in LAYER_SPECS]
    model = MobileNetV2Network(names, num_classes=10, width_mult=0.25)
    assert len(model.blocks) == 6
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_drop_connect_grows_with_depth():
    model = MobileNetV2Network(NOISYDARTS_A, drop_connect_rate=0.2)
    rates = [block.drop_connect_rate for block in model.blocks]
    assert rates[0] == 0.0
    assert rates[-1] == pytest.approx(0.2 * 18 / 19)
    assert rates == sorted(rates)


def test_drop_connect_only_in_training():
    block = MBConv(16, 16, 3, 1, 3, drop_connect_rate=0.5)
    x = torch.randn(64, 16, 4, 4)
    block.eval()
    assert torch.equal(block(x), block(x))
    block.train()
    branch = block(x) - x
    dropped = (branch.flatten(1).abs().sum(1) == 0).sum().item()
    assert 0 < dropped < 64


def test_width_multiplier_rounds_to_8():
    assert make_divisible(32 * 0.25) == 8
    assert make_divisible(40 * 0.35) == 16
    model = MobileNetV2Network(NOISYDARTS_A, width_mult=0.35)
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and module.groups == 1 and module.in_channels != 3:
            assert module.out_channels % 8 == 0


@pytest.mark.parametrize("kwargs, message", [
    ({"activation": "gelu"}, "invalid activation 'gelu'"),
    ({"width_mult": 0.0}, "invalid width multiplier 0.0"),
    ({"drop_connect_rate": 1.0}, "invalid drop_connect_rate 1.0"),
    ({"dropout": -0.1}, "invalid dropout -0.1"),
    ({"num_classes": 0}, "invalid num_classes 0"),
])
def test_network_rejects_invalid_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MobileNetV2Network(NOISYDARTS_A, **kwargs)


# --- zoo --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, params", [
    ("noisydarts-a-imagenet", 4_882_184),
    ("noisydarts-a-se-imagenet", 5_547_124),
])
def test_zoo_builds_noisydarts_a(name, params):
    from nni_noisydarts.zoo import build_model

    assert count_parameters(build_model(name)) == params


def test_zoo_builds_from_choices_text():
    from nni_noisydarts.zoo import build_model

    model = build_model("mobilenetv2-choices", choices=NOISYDARTS_A.to_text(), num_classes=10)
    assert model.choices == NOISYDARTS_A
    assert model.arch_spec["kwargs"]["choices"] == NOISYDARTS_A.to_text()
