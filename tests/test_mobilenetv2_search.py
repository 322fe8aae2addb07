"""MobileNetV2 space end to end: noise wrapping, a tiny search on real CIFAR-10 images with resume,
and a short training run of a derived network."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from interrupt import InterruptAtEpoch, Interrupted
from nni_noisydarts.checkpoint import load_model
from nni_noisydarts.mobilenetv2.choices import LAYER_SPECS, SKIP, MobileNetV2Choices
from nni_noisydarts.mobilenetv2.network import MobileNetV2Network
from nni_noisydarts.mobilenetv2.space import MobileNetV2Space
from nni_noisydarts.noise import NoiseConfig, NoisySkip
from nni_noisydarts.search.config import preset
from nni_noisydarts.search.runner import run_search
from nni_noisydarts.strategy import NoisyDARTS
from nni_noisydarts.training.loop import run_training
from nni_noisydarts.training.presets import get_preset

PLOTS = ["layer_weights.png", "dominant_candidates.png", "network.png"]
SKIP_LAYERS = [spec.label for spec in LAYER_SPECS if spec.allows_skip]


# --- noise wrapping ---------------------------------------------------------------------------

def test_every_skip_candidate_wrapped():
    strategy = NoisyDARTS(lam=0.2)
    supernet = strategy.mutate_model(MobileNetV2Space(num_classes=10, resolution=32, width_mult=0.25))

    wrapped_layers = [spec.label for spec, layer in zip(LAYER_SPECS, supernet.layers)
                      if spec.allows_skip and isinstance(layer[SKIP], NoisySkip)]
    assert len(strategy.wrapped_skips) == 13
    assert wrapped_layers == SKIP_LAYERS


def test_supernet_noise_only_in_training():
    torch.manual_seed(0)
    supernet = NoisyDARTS(lam=0.2).mutate_model(MobileNetV2Space(num_classes=10, resolution=32, width_mult=0.25))
    images = torch.randn(4, 3, 32, 32)

    supernet.train()
    first, second = supernet(images), supernet(images)
    assert not torch.equal(first, second)

    supernet.eval()
    assert torch.equal(supernet(images), supernet(images))


def test_derived_network_has_no_noise():
    names = ["e6_k3"] * len(LAYER_SPECS)
    names[4] = SKIP
    names[16] = SKIP
    network = MobileNetV2Network(MobileNetV2Choices(tuple(names)), num_classes=10, width_mult=0.25)

    assert not any(isinstance(module, NoisySkip) for module in network.modules())
    assert not any(isinstance(module, nn.Identity) for module in network.modules())


# --- search on real images --------------------------------------------------------------------

def tiny_config(cifar_root: Path, output: Path):
    return preset("mobilenetv2", "quick", data_root=cifar_root, output=output, epochs=2, batch_size=16,
                  subset=96, width=0.25, resolution=32, seed=0, device="cpu", noise=NoiseConfig(lam=0.2))


@pytest.fixture(scope="module")
def uninterrupted(cifar_root, tmp_path_factory, single_thread):
    config = tiny_config(cifar_root, tmp_path_factory.mktemp("mbv2") / "run")
    return config, run_search(config)


@pytest.fixture(scope="module")
def resumed(cifar_root, tmp_path_factory, single_thread):
    config = tiny_config(cifar_root, tmp_path_factory.mktemp("mbv2") / "run")
    with pytest.raises(Interrupted):
        run_search(config, extra_callbacks=[InterruptAtEpoch(1)])
    resumed_config = dataclasses.replace(config, resume=True)
    return resumed_config, run_search(resumed_config)


def test_search_choices_readable(uninterrupted):
    config, result = uninterrupted
    from_text = MobileNetV2Choices.parse((config.output / "choices.txt").read_text())
    from_json = MobileNetV2Choices.parse((config.output / "choices.json").read_text())

    assert len(from_text.names) == 19
    assert from_text == from_json
    assert from_text.to_text() == result["architecture"]


def test_search_records_weights(uninterrupted):
    config, _ = uninterrupted
    history = json.loads((config.output / "alphas.json").read_text())

    assert [record["epoch"] for record in history] == [0, 1]
    for spec in LAYER_SPECS:
        weights = history[-1]["weights"][spec.label]
        assert sorted(weights) == sorted(spec.candidates)
        assert sum(weights.values()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("name", PLOTS)
def test_search_plot_is_png(uninterrupted, name):
    config, _ = uninterrupted
    path = config.output / "plots" / name
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 5000


def test_search_checkpoints_written(uninterrupted):
    config, _ = uninterrupted
    names = sorted(path.name for path in (config.output / "checkpoints").iterdir())
    assert names == ["epoch000.ckpt", "epoch001.ckpt", "last.ckpt"]


def test_resume_equals_uninterrupted(uninterrupted, resumed):
    (config_a, result_a), (config_b, result_b) = uninterrupted, resumed
    history_a = json.loads((config_a.output / "alphas.json").read_text())
    history_b = json.loads((config_b.output / "alphas.json").read_text())

    assert result_b["architecture"] == result_a["architecture"]
    for record_a, record_b in zip(history_a, history_b, strict=True):
        assert record_b["weights"] == record_a["weights"]


# --- training a derived network ---------------------------------------------------------------

def test_training_lowers_loss_and_checkpoint_loads(cifar_root, tmp_path, single_thread):
    torch.manual_seed(0)
    config = get_preset("imagenet-quick", data_root=str(cifar_root), dataset="image-folder",
                        model="mobilenetv2-choices", choices=" ".join(["e3_k3"] * 19),
                        width_mult=0.25, resolution=32, epochs=3, warmup_epochs=0, batch_size=32,
                        lr=0.05, subset=128, test_subset=64, ema_decay=0.0, dropout=0.0, drop_connect_rate=0.0)
    results = run_training(config, tmp_path / "train")

    losses = [epoch["train_loss"] for epoch in results["history"]]
    assert losses[-1] < losses[0]

    model = load_model(tmp_path / "train" / "model.pt")
    assert isinstance(model, MobileNetV2Network)
    model.eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
