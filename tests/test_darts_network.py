"""DARTS CIFAR evaluation network: exact sizes of the published genotypes, forward behaviour, zoo and checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from nni_noisydarts import zoo
from nni_noisydarts.checkpoint import load_model, load_weights, read_checkpoint, save_checkpoint
from nni_noisydarts.darts.genotype import Genotype, GenotypeError
from nni_noisydarts.darts.network import DartsCifarNetwork, drop_path
from nni_noisydarts.darts.zoo import GENOTYPES, get_genotype
from nni_noisydarts.profiling import count_madds, count_parameters

AUX = ["auxiliary_head"]

# Parameter counts at width 36 and 20 cells, auxiliary head excluded.
EXPECTED_PARAMETERS = {
    "noisydarts-a": 3_257_110,
    "noisydarts-b": 3_097_918,
    "darts-v2": 3_349_342,
}
AUX_HEAD_PARAMETERS = 476_426

# Reference MAdds (millions, 32x32): convolutions + linear, and with 2 per batch-norm output element.
# Chu et al. (Noisy Differentiable Architecture Search, 2021) report 534M for NoisyDARTS-a.
REFERENCE_MADDS = {
    "noisydarts-a": (523.9, 534.1),
    "noisydarts-b": (502.3, 511.7),
    "darts-v2": (528.4, 539.1),
}

# MAdds that forward hooks measure on this network (exact integers, 32x32 input).
MEASURED_MADDS = {
    "noisydarts-a": (513_871_488, 523_935_360),
    "noisydarts-b": (492_250_752, 501_540_480),
    "darts-v2": (528_359_040, 539_086_464),
}

ALL_SKIP = Genotype(
    normal=[("skip_connect", 0), ("skip_connect", 1)] * 4, normal_concat=range(2, 6),
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1)] * 4, reduce_concat=range(2, 6),
)


@pytest.fixture(scope="module")
def full_networks():
    return {name: DartsCifarNetwork(genotype) for name, genotype in GENOTYPES.items()}


def tiny_network(genotype=None, **kwargs):
    options = {"width": 4, "cells": 3, **kwargs}
    return DartsCifarNetwork(genotype or get_genotype("noisydarts-a"), **options)


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMETERS))
def test_parameters_exact(full_networks, name):
    assert count_parameters(full_networks[name], exclude=AUX) == EXPECTED_PARAMETERS[name]


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMETERS))
def test_auxiliary_head_parameters(full_networks, name):
    network = full_networks[name]

    assert count_parameters(network.auxiliary_head) == AUX_HEAD_PARAMETERS
    assert count_parameters(network) == EXPECTED_PARAMETERS[name] + AUX_HEAD_PARAMETERS


@pytest.mark.parametrize("name", sorted(MEASURED_MADDS))
def test_madds_measured(full_networks, name):
    conv_linear = count_madds(full_networks[name], (1, 3, 32, 32), exclude=AUX).total
    with_bn = count_madds(full_networks[name], (1, 3, 32, 32), count_bn=True, exclude=AUX).total

    assert (conv_linear, with_bn) == MEASURED_MADDS[name]


@pytest.mark.parametrize("name", sorted(MEASURED_MADDS))
def test_madds_match_torch_flop_counter(full_networks, name):
    """PyTorch's own FlopCounterMode, an independent counter, gives the same conv + linear MAdds."""
    network = full_networks[name]
    was_training = network.training
    network.eval()

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        network(torch.randn(1, 3, 32, 32))
    network.train(was_training)

    # FlopCounterMode counts a multiply-add as 2 FLOPs.
    assert counter.get_total_flops() == 2 * MEASURED_MADDS[name][0]


def test_madds_darts_v2_reference(full_networks):
    network = full_networks["darts-v2"]
    conv_linear = count_madds(network, (1, 3, 32, 32)).millions
    with_bn = count_madds(network, (1, 3, 32, 32), count_bn=True).millions

    assert conv_linear == pytest.approx(REFERENCE_MADDS["darts-v2"][0], rel=0.005)
    assert with_bn == pytest.approx(REFERENCE_MADDS["darts-v2"][1], rel=0.005)


@pytest.mark.parametrize("name", ["noisydarts-a", "noisydarts-b"])
@pytest.mark.parametrize("count_bn", [False, True])
def test_madds_reference_overcount_explained(full_networks, name, count_bn):
    """The reference NoisyDARTS-a/b MAdds exceed the measured ones by about 10M (2%).

    Both figures are reproduced to their 0.1M rounding when each reduction-cell op that reads an
    intermediate node is counted at the cell's input resolution, four times the elements it
    produces. Those ops run at the reduced resolution in a working network (their outputs are
    summed with stride-2 ops), so this project reports the measured counts. DARTS V2 has no such
    op and matches its reference figure exactly.
    """
    network = full_networks[name]
    genotype = GENOTYPES[name]
    report = count_madds(network, (1, 3, 32, 32), count_bn=count_bn)

    intermediate_ops = 0
    for cell_index in network.reduction_indices:
        for edge, (_, source) in enumerate(genotype.reduce):
            if source >= 2:
                prefix = f"cells.{cell_index}.ops.{edge}."
                intermediate_ops += sum(v for k, v in report.per_module.items() if k.startswith(prefix))

    reference = REFERENCE_MADDS[name][1 if count_bn else 0]
    assert intermediate_ops > 0
    assert report.millions == pytest.approx(reference, rel=0.025)
    assert (report.total + 3 * intermediate_ops) / 1e6 == pytest.approx(reference, abs=0.05)


def test_reduction_and_aux_positions():
    network = DartsCifarNetwork(get_genotype("darts-v2"), width=4, cells=20)

    assert network.reduction_indices == (6, 13)
    assert network.aux_index == 13
    assert [i for i, cell in enumerate(network.cells) if cell.reduction] == [6, 13]


def test_forward_shapes_train_and_eval():
    network = tiny_network(num_classes=7)
    images = torch.randn(2, 3, 32, 32)

    logits, aux_logits = network.train()(images)
    assert logits.shape == (2, 7)
    assert aux_logits.shape == (2, 7)

    eval_logits = network.eval()(images)
    assert isinstance(eval_logits, torch.Tensor)
    assert eval_logits.shape == (2, 7)


def test_forward_without_auxiliary_head():
    network = tiny_network(auxiliary=False)

    assert network.auxiliary_head is None
    assert network.train()(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_auxiliary_head_rejects_other_resolutions():
    network = tiny_network().train()

    with pytest.raises(ValueError, match="8x8 feature map"):
        network(torch.randn(2, 3, 64, 64))
    assert network.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_drop_path_drops_whole_samples():
    torch.manual_seed(0)
    x = torch.ones(2000, 3, 4, 4)
    out = drop_path(x, 0.25)

    per_sample = out.flatten(1)
    kept = per_sample[:, 0] > 0
    assert torch.allclose(per_sample[kept], torch.full_like(per_sample[kept], 1 / 0.75))
    assert torch.all(per_sample[~kept] == 0)
    assert kept.float().mean().item() == pytest.approx(0.75, abs=0.04)
    assert drop_path(x, 0.0) is x


def test_drop_path_active_only_in_training():
    torch.manual_seed(0)
    network = tiny_network(auxiliary=False)
    images = torch.randn(4, 3, 32, 32)

    network.train()
    network.drop_path_prob = 0.0
    without_drop = network(images)
    network.drop_path_prob = 0.5
    torch.manual_seed(1)
    dropped = network(images)
    assert not torch.allclose(without_drop, dropped)

    network.eval()
    assert torch.allclose(network(images), network(images))
    network.drop_path_prob = 0.0
    assert torch.allclose(network(images), network(images))


def test_drop_path_spares_identity_edges():
    network = tiny_network(ALL_SKIP, auxiliary=False).train()
    cell = network.cells[0]
    s0, s1 = torch.randn(2, 12, 8, 8), torch.randn(2, 12, 8, 8)

    assert torch.equal(cell(s0, s1, drop_prob=0.9), cell(s0, s1, drop_prob=0.0))


@pytest.mark.parametrize("kwargs, message", [
    ({"width": 5}, "even"),
    ({"width": 0}, "even"),
    ({"cells": 2}, "at least 3"),
    ({"num_classes": 0}, "num_classes"),
    ({"dropout": 1.0}, "dropout"),
])
def test_network_rejects_invalid_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_network(**kwargs)


def test_genotype_zoo_unknown_name():
    with pytest.raises(ValueError, match="known names: darts-v2, noisydarts-a, noisydarts-b"):
        get_genotype("noisydarts-z")


def test_model_zoo_lists_darts_entries():
    names = [entry.name for entry in zoo.list_models()]

    for name in ("noisydarts-a-cifar", "noisydarts-b-cifar", "darts-v2-cifar"):
        assert name in names


def test_model_zoo_unknown_name():
    with pytest.raises(ValueError, match="registered models: .*noisydarts-a-cifar"):
        zoo.build_model("resnet-9000")


def test_model_zoo_builds_exact_sizes():
    network = zoo.build_model("noisydarts-b-cifar")

    assert count_parameters(network, exclude=AUX) == EXPECTED_PARAMETERS["noisydarts-b"]
    assert network.arch_spec["genotype"].startswith("Genotype(normal=[('sep_conv_3x3', 1)")


def test_model_zoo_rejects_duplicate_name():
    with pytest.raises(ValueError, match="already registered"):
        zoo.register_model("darts-v2-cifar", lambda: None, "another builder")


def test_genotype_string_resolution():
    text = "Genotype(normal=[('sep_conv_3x3', 1)], normal_concat=[2], reduce=[], reduce_concat=[2])"

    with pytest.raises(GenotypeError):
        zoo.resolve_genotype_text(text)
    assert zoo.resolve_genotype_text(" darts-v2 ") == get_genotype("darts-v2")


def test_checkpoint_round_trip(tmp_path: Path):
    torch.manual_seed(0)
    network = zoo.build_model("noisydarts-a-cifar", width=4, cells=3).eval()
    path = tmp_path / "nested" / "model.pt"
    save_checkpoint(path, network, extra={"epoch": 3})

    restored = load_model(path).eval()
    images = torch.randn(2, 3, 32, 32)
    assert isinstance(restored, DartsCifarNetwork)
    assert torch.equal(network(images), restored(images))
    assert read_checkpoint(path)["extra"] == {"epoch": 3}
    assert sorted(os.listdir(path.parent)) == ["model.pt"]


def test_checkpoint_name_and_genotype_specs_match(tmp_path: Path):
    path = tmp_path / "model.pt"
    save_checkpoint(path, zoo.build_model("darts-v2-cifar", width=4, cells=3))
    same = zoo.build_darts_cifar("darts-v2", width=4, cells=3)

    assert load_weights(same, path) == {}
    assert load_weights(same, path, arch={"model": "darts-v2-cifar", "kwargs": {"width": 4, "cells": 3}}) == {}


@pytest.mark.parametrize("other", [
    {"model": "noisydarts-b-cifar", "kwargs": {"width": 4, "cells": 3}},
    {"model": "noisydarts-a-cifar", "kwargs": {"width": 6, "cells": 3}},
])
def test_checkpoint_architecture_mismatch(tmp_path: Path, other):
    path = tmp_path / "model.pt"
    save_checkpoint(path, zoo.build_model("noisydarts-a-cifar", width=4, cells=3))
    model = zoo.build_from_arch(other)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    with pytest.raises(ValueError) as error:
        load_weights(model, path)
    message = str(error.value)
    assert "'width': 4" in message
    assert f"'width': {other['kwargs']['width']}" in message
    assert "load_model()" in message
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_checkpoint_needs_arch(tmp_path: Path):
    with pytest.raises(ValueError, match="no architecture spec"):
        save_checkpoint(tmp_path / "model.pt", torch.nn.Linear(2, 2))


def test_read_checkpoint_rejects_foreign_files(tmp_path: Path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")

    with pytest.raises(ValueError, match="not an nni-noisydarts checkpoint"):
        read_checkpoint(foreign)
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        read_checkpoint(garbage)
    with pytest.raises(FileNotFoundError, match="not found"):
        read_checkpoint(tmp_path / "missing.pt")
