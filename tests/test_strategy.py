"""NoisyDARTS strategy: the supernet NNI builds from our DARTS space, which candidates get noise,
NNI's hub DARTS space and plain LayerChoice spaces, and the per-epoch noise decay."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from nni.nas.hub.pytorch import DARTS as HubDarts
from nni.nas.nn.pytorch import LayerChoice, ModelSpace
from nni.nas.oneshot.pytorch.strategy import DARTS
from nni.nas.oneshot.pytorch.supermodule.differentiable import DifferentiableMixedCell, DifferentiableMixedLayer
from torch import nn

from nni_noisydarts.darts.genotype import edge_count
from nni_noisydarts.darts.ops import PRIMITIVES, FactorizedReduce
from nni_noisydarts.darts.space import DartsSearchSpace, reduction_layers
from nni_noisydarts.noise import NoiseConfig, NoisySkip
from nni_noisydarts.search.module import SearchModule
from nni_noisydarts.strategy import NoisyDARTS, NoisyDartsLightningModule, noisy_skips, wrap_skip_candidates

STEPS = 4
EDGE_NAME = re.compile(r"cells\.(\d+)\.edges\.(\d+)_(\d+)$")
SHAPES = [(4, 3), (8, 5)]

pytestmark = pytest.mark.usefixtures("single_thread")


def mixed_layers(model: nn.Module):
    return [(name, module) for name, module in model.named_modules() if isinstance(module, DifferentiableMixedLayer)]


@pytest.fixture(scope="module", params=SHAPES, ids=[f"width{w}-cells{c}" for w, c in SHAPES])
def supernet(request):
    """A NoisyDARTS supernet of our DARTS space, with the strategy that built it."""
    width, cells = request.param
    torch.manual_seed(0)
    strategy = NoisyDARTS()
    model = strategy.mutate_model(DartsSearchSpace(width=width, cells=cells))
    return SimpleNamespace(model=model, strategy=strategy, width=width, cells=cells)


# --- our DARTS space ------------------------------------------------------------------------


def test_edge_count_per_cell(supernet):
    layers = mixed_layers(supernet.model)

    assert edge_count(STEPS) == 14
    assert len(layers) == supernet.cells * 14


def test_seven_alphas_per_edge(supernet):
    for name, layer in mixed_layers(supernet.model):
        assert layer._arch_alpha.shape == (len(PRIMITIVES),), name
        assert list(layer.names) == list(PRIMITIVES), name


def test_no_implicit_zero_op(supernet):
    cells = [module for module in supernet.model.modules() if isinstance(module, DifferentiableMixedCell)]
    module = NoisyDartsLightningModule(SearchModule(0.025, 0.001, 0.9, 3e-4, 1), noise=NoiseConfig())
    module.training_module.set_model(supernet.model)

    assert cells == []
    for label, weights in module.export_probs().items():
        assert sorted(weights) == sorted(PRIMITIVES), label
        assert sum(weights.values()) == pytest.approx(1.0, abs=1e-6), label


def test_alphas_shared_per_cell_type(supernet):
    layers = mixed_layers(supernet.model)
    alpha_by_label = {}
    for name, layer in layers:
        alpha_by_label.setdefault(layer.label, set()).add(id(layer._arch_alpha))

    assert len(alpha_by_label) == 28
    assert all(len(ids) == 1 for ids in alpha_by_label.values())
    assert len({id(layer._arch_alpha) for _, layer in layers}) == 28
    assert sum(label.startswith("normal_") for label in alpha_by_label) == 14
    assert sum(label.startswith("reduce_") for label in alpha_by_label) == 14


def test_alpha_label_matches_cell_type(supernet):
    reductions = reduction_layers(supernet.cells)
    for name, layer in mixed_layers(supernet.model):
        cell, node, source = map(int, EDGE_NAME.search(name).groups())
        cell_type = "reduce" if cell in reductions else "normal"

        assert layer.label == f"{cell_type}_{node}_{source}", name


def test_alpha_init_small(supernet):
    for _, layer in mixed_layers(supernet.model):
        assert layer._arch_alpha.abs().max() < 0.01


def test_arch_parameters_fixed_order(supernet):
    module = supernet.strategy.configure_oneshot_module(SearchModule(0.025, 0.001, 0.9, 3e-4, 1))
    module.training_module.set_model(supernet.model)
    parameters = module.arch_parameters()

    first_seen = []
    for _, layer in mixed_layers(supernet.model):
        if all(layer._arch_alpha is not seen for seen in first_seen):
            first_seen.append(layer._arch_alpha)
    assert len(parameters) == 28
    assert all(parameter is expected for parameter, expected in zip(parameters, first_seen))


def test_every_skip_wrapped(supernet):
    reductions = reduction_layers(supernet.cells)
    wrapped_ids = {id(module) for module in supernet.strategy.wrapped_skips}
    for name, layer in mixed_layers(supernet.model):
        cell, node, source = map(int, EDGE_NAME.search(name).groups())
        skip = layer["skip_connect"]
        assert isinstance(skip, NoisySkip), name
        assert id(skip) in wrapped_ids, name

        # Edges leaving the cell inputs of a reduction cell have stride 2: their skip is a factorized reduce.
        expected = FactorizedReduce if cell in reductions and source < 2 else nn.Identity
        assert type(skip.op) is expected, name


def test_skip_counts_by_kind(supernet):
    skips = supernet.strategy.wrapped_skips
    stride2_edges_per_cell = sum(min(node + 2, 2) for node in range(STEPS))
    reduced = len(reduction_layers(supernet.cells)) * stride2_edges_per_cell

    assert stride2_edges_per_cell == 8
    assert len(skips) == supernet.cells * 14
    assert sum(isinstance(skip.op, FactorizedReduce) for skip in skips) == reduced
    assert sum(isinstance(skip.op, nn.Identity) for skip in skips) == supernet.cells * 14 - reduced
    assert len(noisy_skips(supernet.model)) == len(skips)


def test_only_skip_candidates_wrapped(supernet):
    for name, module in supernet.model.named_modules():
        if isinstance(module, NoisySkip):
            parent = supernet.model.get_submodule(name.rsplit(".", 1)[0])
            assert isinstance(parent, DifferentiableMixedLayer), name
            assert name.endswith(".skip_connect"), name


def test_preprocess_reduce_not_wrapped(supernet):
    """The factorized reduce that adapts a cell input after a reduction cell is no candidate and gets no noise."""
    preprocess = [module for name, module in supernet.model.named_modules() if name.endswith("preprocess0")]
    factorized = [module for module in preprocess if isinstance(module, FactorizedReduce)]

    # Every cell that follows a reduction cell adapts its older input with a factorized reduce.
    followers = [index + 1 for index in reduction_layers(supernet.cells) if index + 1 < supernet.cells]
    assert len(factorized) == len(followers)
    for name, module in supernet.model.named_modules():
        if isinstance(module, FactorizedReduce) and not name.endswith("preprocess0"):
            assert name.endswith("skip_connect.op"), name


def test_wrapping_idempotent(supernet):
    assert wrap_skip_candidates(supernet.model, NoiseConfig()) == []


def test_train_mode_noisy(supernet):
    model = supernet.model
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    model.train()
    with torch.no_grad():
        first = model(x)
        second = model(x)

    assert not torch.equal(first, second)


def test_eval_mode_deterministic(supernet):
    model = supernet.model
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    model.eval()
    with torch.no_grad():
        first = model(x)
        second = model(x)
    model.train()

    assert torch.equal(first, second)


def test_noiseless_train_mode_deterministic():
    """With lam = 0 two training-mode forwards agree, so the difference above comes from the noise."""
    torch.manual_seed(0)
    model = NoisyDARTS(lam=0.0).mutate_model(DartsSearchSpace(width=4, cells=3))
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    model.train()
    with torch.no_grad():
        first = model(x)
        second = model(x)

    assert torch.equal(first, second)


def test_strategy_passes_noise_config():
    noise = NoiseConfig(lam=0.1, mu=0.5, noise_type="uniform", decay_epochs=3)
    strategy = NoisyDARTS(noise=noise)
    model = strategy.mutate_model(DartsSearchSpace(width=4, cells=3))

    assert strategy.noise == noise
    assert all(skip.config == noise for skip in noisy_skips(model))


@pytest.mark.parametrize("channels_last", [True, False])
def test_channels_last_option(channels_last):
    """The supernet's conv weights and the inputs of its first convolution follow ``channels_last``."""
    torch.manual_seed(0)
    model = NoisyDARTS(lam=0.2, channels_last=channels_last).mutate_model(DartsSearchSpace(width=4, cells=3))
    seen = []
    first_conv = next(module for module in model.modules() if isinstance(module, nn.Conv2d))
    first_conv.register_forward_pre_hook(lambda module, args: seen.append(args[0]))

    model(torch.randn(2, 3, 16, 16))

    if channels_last:
        assert first_conv.weight.is_contiguous(memory_format=torch.channels_last)
        assert seen[0].is_contiguous(memory_format=torch.channels_last)
        assert not seen[0].is_contiguous()
    else:
        assert first_conv.weight.is_contiguous()
        assert seen[0].is_contiguous()


def test_channels_last_default_follows_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert NoisyDARTS().channels_last is True

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert NoisyDARTS().channels_last is False


def test_channels_last_same_output_as_nchw():
    """The memory format changes only the float rounding, so eval-mode outputs agree closely."""
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    outputs = []
    for channels_last in (False, True):
        torch.manual_seed(0)
        model = NoisyDARTS(lam=0.2, channels_last=channels_last).mutate_model(DartsSearchSpace(width=4, cells=3))
        model.eval()
        with torch.no_grad():
            outputs.append(model(x))

    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-4, atol=1e-5)


def test_strategy_rejects_bad_lam():
    with pytest.raises(ValueError, match="-1"):
        NoisyDARTS(lam=-1.0)


def test_oneshot_module_settings():
    strategy = NoisyDARTS(decay_epochs=5, arc_learning_rate=1e-3, gradient_clip_val=2.0, warmup_epochs=1)
    module = strategy.configure_oneshot_module(SearchModule(0.025, 0.001, 0.9, 3e-4, 1))

    assert isinstance(module, NoisyDartsLightningModule)
    assert module.noise.decay_epochs == 5
    assert module.arc_learning_rate == 1e-3
    assert module.gradient_clip_val == 2.0
    assert module.warmup_epochs == 1


# --- NNI's hub DARTS space ------------------------------------------------------------------


@pytest.fixture(scope="module")
def hub_supernet():
    """NNI's hub DARTS space (3 cells, width 4) turned into a supernet by NNI's plain DARTS strategy."""
    torch.manual_seed(0)
    return DARTS().mutate_model(HubDarts(width=4, num_cells=3))


def hub_skip_candidates(model):
    """Every (cell, edge dict) skip candidate of the differentiable cells, found through NNI's own structure."""
    candidates = []
    for cell in model.modules():
        if isinstance(cell, DifferentiableMixedCell):
            for node_ops in cell.ops:
                for edge in node_ops:
                    candidates.append(edge["skip_connect"])
    return candidates


def test_hub_skips_wrapped(hub_supernet):
    cells = [module for module in hub_supernet.modules() if isinstance(module, DifferentiableMixedCell)]
    before = hub_skip_candidates(hub_supernet)

    wrapped = wrap_skip_candidates(hub_supernet, NoiseConfig(lam=0.2))
    after = hub_skip_candidates(hub_supernet)

    assert len(before) == len(cells) * 14
    assert len(wrapped) == len(before)
    assert all(isinstance(skip, NoisySkip) for skip in after)
    assert [skip.op for skip in after] == before
    assert any(isinstance(skip.op, nn.Identity) for skip in after)
    assert any(not isinstance(skip.op, nn.Identity) for skip in after)


def test_hub_train_noisy_eval_deterministic(hub_supernet):
    wrap_skip_candidates(hub_supernet, NoiseConfig(lam=0.2))
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))

    hub_supernet.train()
    with torch.no_grad():
        train_outputs = [hub_supernet(x), hub_supernet(x)]
    hub_supernet.eval()
    with torch.no_grad():
        eval_outputs = [hub_supernet(x), hub_supernet(x)]
    hub_supernet.train()

    assert not torch.equal(*train_outputs)
    assert torch.equal(*eval_outputs)


def test_hub_space_through_strategy():
    torch.manual_seed(0)
    strategy = NoisyDARTS()
    model = strategy.mutate_model(HubDarts(width=4, num_cells=3))

    candidates = hub_skip_candidates(model)
    assert len(strategy.wrapped_skips) == len(candidates)
    assert all(isinstance(skip, NoisySkip) for skip in candidates)


# --- plain LayerChoice spaces ---------------------------------------------------------------


class ChoiceSpace(ModelSpace):
    """One LayerChoice between a convolution and an unnamed nn.Identity, then a fixed convolution."""

    def __init__(self):
        super().__init__()
        self.choice = LayerChoice([nn.Conv2d(3, 3, 3, padding=1), nn.Identity()], label="block")
        self.head = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return self.head(self.choice(x))


class Shortcut(nn.Module):
    """A skip candidate that is no nn.Identity, found by its candidate name."""

    def forward(self, x):
        return x * 1.0


class NamedChoiceSpace(ModelSpace):
    def __init__(self):
        super().__init__()
        self.choice = LayerChoice({"conv": nn.Conv2d(3, 3, 1), "skip": Shortcut()}, label="named")

    def forward(self, x):
        return self.choice(x)


class FixedIdentitySpace(ModelSpace):
    """A fixed (not searched) nn.Identity inside an nn.ModuleDict, next to a searched choice."""

    def __init__(self):
        super().__init__()
        self.fixed = nn.ModuleDict({"stem": nn.Identity(), "head": nn.Conv2d(3, 3, 1)})
        self.choice = LayerChoice([nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 3, padding=1)], label="conv")

    def forward(self, x):
        return self.fixed["head"](self.choice(self.fixed["stem"](x)))


def test_plain_choice_identity_wrapped():
    strategy = NoisyDARTS()
    model = strategy.mutate_model(ChoiceSpace())
    (layer,) = [module for _, module in mixed_layers(model)]

    assert len(strategy.wrapped_skips) == 1
    # Candidates given as a list are named by their integer position.
    assert isinstance(layer[1], NoisySkip)
    assert isinstance(layer[1].op, nn.Identity)
    assert isinstance(layer[0], nn.Conv2d)


def test_plain_choice_alpha_gradient_noisy():
    """The noise enters before the softmax weight, so d L / d alpha changes from draw to draw in training mode."""
    torch.manual_seed(0)
    model = NoisyDARTS().mutate_model(ChoiceSpace())
    (layer,) = [module for _, module in mixed_layers(model)]
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(3))

    def alpha_gradient():
        layer._arch_alpha.grad = None
        model(x).sum().backward()
        return layer._arch_alpha.grad.clone()

    model.train()
    train_gradients = [alpha_gradient(), alpha_gradient()]
    model.eval()
    eval_gradients = [alpha_gradient(), alpha_gradient()]

    assert not torch.equal(*train_gradients)
    assert torch.equal(*eval_gradients)


def test_named_skip_wrapped():
    strategy = NoisyDARTS()
    model = strategy.mutate_model(NamedChoiceSpace())
    (layer,) = [module for _, module in mixed_layers(model)]

    assert isinstance(layer["skip"], NoisySkip)
    assert isinstance(layer["skip"].op, Shortcut)
    assert not isinstance(layer["conv"], NoisySkip)


def test_custom_skip_names():
    strategy = NoisyDARTS(skip_names=("conv",))
    model = strategy.mutate_model(NamedChoiceSpace())
    (layer,) = [module for _, module in mixed_layers(model)]

    assert isinstance(layer["conv"], NoisySkip)
    assert not isinstance(layer["skip"], NoisySkip)


def test_fixed_identity_not_wrapped():
    strategy = NoisyDARTS()
    model = strategy.mutate_model(FixedIdentitySpace())

    assert strategy.wrapped_skips == []
    assert isinstance(model.fixed["stem"], nn.Identity)


def test_space_without_skip_warns(caplog):
    class ConvOnly(ModelSpace):
        def __init__(self):
            super().__init__()
            self.choice = LayerChoice([nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 3, padding=1)], label="conv")

        def forward(self, x):
            return self.choice(x)

    strategy = NoisyDARTS()
    with caplog.at_level(logging.WARNING, logger="nni_noisydarts.strategy"):
        strategy.mutate_model(ConvOnly())

    assert strategy.wrapped_skips == []
    assert any("no skip candidate" in record.getMessage() for record in caplog.records)


# --- noise decay per epoch ------------------------------------------------------------------


def decaying_module(decay_epochs: int):
    torch.manual_seed(0)
    strategy = NoisyDARTS(lam=0.2, mu=1.0, decay_epochs=decay_epochs)
    model = strategy.mutate_model(ChoiceSpace())
    training_module = SearchModule(0.025, 0.001, 0.9, 3e-4, decay_epochs)
    training_module.set_model(model)
    return strategy.configure_oneshot_module(training_module), strategy.wrapped_skips


@pytest.mark.parametrize("epoch, expected", [(0, 1.0), (2, 0.5), (4, 0.0), (9, 0.0)])
def test_epoch_start_sets_scale(epoch, expected):
    module, skips = decaying_module(decay_epochs=4)
    module.trainer = SimpleNamespace(current_epoch=epoch)

    module.on_train_epoch_start()

    assert len(skips) == 1
    assert skips[0].scale == pytest.approx(expected, abs=1e-12)


def test_epoch_start_resets_metrics():
    module, _ = decaying_module(decay_epochs=4)
    module.training_module.epoch_metrics["train"]["seen"] = 5
    module.trainer = SimpleNamespace(current_epoch=1)

    module.on_train_epoch_start()

    assert module.training_module.epoch_metrics["train"]["seen"] == 0


def test_decayed_to_zero_is_noiseless():
    module, skips = decaying_module(decay_epochs=2)
    module.trainer = SimpleNamespace(current_epoch=2)
    module.on_train_epoch_start()
    model = module.training_module.model
    x = torch.randn(2, 3, 8, 8)
    model.train()

    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_nni_darts_importable_after_ours():
    """Importing this package first must leave NNI's own DARTS strategy usable (NNI 3.0 has an import cycle)."""
    script = ("import nni_noisydarts.strategy\n"
              "from nni.nas.strategy import DARTS\n"
              "from nni.nas.oneshot.pytorch.strategy import DARTS as OneShotDARTS\n"
              "assert DARTS is OneShotDARTS, DARTS\n")
    completed = subprocess.run([sys.executable, "-W", "ignore", "-c", script], capture_output=True, text=True,
                               timeout=300)

    assert completed.returncode == 0, completed.stderr[-2000:]
