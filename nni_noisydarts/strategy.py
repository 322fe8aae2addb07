"""``NoisyDARTS``: NNI's first-order DARTS strategy with noise on every skip candidate.

Usage::

    from nni.nas.experiment import NasExperiment
    exp = NasExperiment(space, evaluator, NoisyDARTS(lam=0.2))
    exp.run()

After NNI turns the model space into a supernet, every skip candidate of every mixed op
(the stride-1 identity and the stride-2 factorized reduce of reduction cells) is wrapped
in ``NoisySkip``. Both the architecture step (on search-val) and the weight step (on
search-train) run in training mode, so both see fresh noise.
"""

from __future__ import annotations

import logging
from typing import Iterable, List, Optional

# NNI 3.0 has an import cycle: importing nni.nas.oneshot.pytorch.strategy before nni.nas.strategy
# leaves nni.nas.strategy.DARTS as a placeholder that fails. Importing nni.nas.strategy first keeps
# NNI's own DARTS usable next to this module.
import nni.nas.strategy  # noqa: F401  (import order, see above)
from nni.nas.nn.pytorch import LayerChoice
from nni.nas.oneshot.pytorch.differentiable import DartsLightningModule
from nni.nas.oneshot.pytorch.strategy import DARTS
from nni.nas.oneshot.pytorch.supermodule.differentiable import DifferentiableMixedCell
import torch
from torch import nn

from .noise import NoiseConfig, NoisySkip
from .supernet import use_channels_last

logger = logging.getLogger(__name__)

#: Candidate names treated as skip connections, besides any bare ``nn.Identity`` candidate.
SKIP_NAMES = ("skip_connect", "skip", "identity")


def _is_skip(name: str, candidate: nn.Module, skip_names: Iterable[str]) -> bool:
    return name in skip_names or isinstance(candidate, nn.Identity)


def _candidate_containers(supernet: nn.Module) -> List[nn.Module]:
    """Return the modules whose children are searchable candidates.

    These are ``LayerChoice`` modules (NNI's mixed layers derive from it) and the per-edge
    ``ModuleDict`` of NNI's differentiable ``Cell``. Fixed layers elsewhere, an ``nn.Identity``
    in a plain ``ModuleDict`` included, are not candidates and get no noise.
    """
    containers = []
    for module in supernet.modules():
        if isinstance(module, LayerChoice):
            containers.append(module)
        elif isinstance(module, DifferentiableMixedCell):
            containers.extend(edge for edge in module.ops.modules() if isinstance(edge, nn.ModuleDict))
    return containers


def wrap_skip_candidates(supernet: nn.Module, config: NoiseConfig,
                         skip_names: Iterable[str] = SKIP_NAMES) -> List[NoisySkip]:
    """Wrap every skip candidate of ``supernet`` in ``NoisySkip`` in place and return the wrappers.

    A skip candidate has a name in ``skip_names`` or is an ``nn.Identity``. Candidates that are
    already wrapped are left as they are.
    """
    skip_names = tuple(skip_names)
    wrapped = []
    for container in _candidate_containers(supernet):
        for name, candidate in list(container.named_children()):
            if isinstance(candidate, NoisySkip) or not _is_skip(name, candidate, skip_names):
                continue
            noisy = NoisySkip(candidate, config)
            container._modules[name] = noisy
            wrapped.append(noisy)
    return wrapped


def noisy_skips(model: nn.Module) -> List[NoisySkip]:
    return [module for module in model.modules() if isinstance(module, NoisySkip)]


class NoisyDartsLightningModule(DartsLightningModule):
    """DARTS search loop that also sets the noise decay factor at the start of each epoch."""

    def __init__(self, training_module, *, noise: NoiseConfig, **kwargs):
        super().__init__(training_module, **kwargs)
        self.noise = noise

    def arch_parameters(self) -> List[nn.Parameter]:
        # NNI returns list(set(...)), whose order changes between processes; the optimizer
        # state in a checkpoint is matched by position, so resume needs a fixed order.
        ordered, seen = [], set()
        for module in self.supernet_modules():
            for parameter in getattr(module, "arch_parameters", lambda: [])():
                if id(parameter) not in seen:
                    seen.add(id(parameter))
                    ordered.append(parameter)
        return ordered

    def on_train_epoch_start(self):
        scale = self.noise.scale_at(self.trainer.current_epoch)
        for module in noisy_skips(self):
            module.scale = scale
        if self.noise.decay_epochs is not None:
            logger.info("epoch %d: noise scale %.4f", self.trainer.current_epoch, scale)
        return super().on_train_epoch_start()


class NoisyDARTS(DARTS):
    """First-order DARTS with unbiased noise injected into skip connections (Chu et al., 2020).

    Args:
        lam: noise strength (``sigma = lam * std(x)`` for additive noise). 0 gives plain DARTS.
        mu: noise mean; None means unbiased (0 additive, 1 multiplicative).
        noise_type: ``"gaussian"`` or ``"uniform"``.
        mixing: ``"additive"`` or ``"multiplicative"``.
        decay_epochs: cosine decay of the noise to 0 over this many epochs; None keeps it constant.
        noise: a ready ``NoiseConfig``; replaces the five arguments above when given.
        skip_names: candidate names to treat as skip connections.
        channels_last: store the supernet in channels-last (NHWC) memory format and convert its
            inputs (see ``nni_noisydarts.supernet.use_channels_last``). None, the default, turns it
            on when no CUDA device is visible: oneDNN's depthwise and dilated convolutions make a
            CPU search step 1.7 to 1.9 times faster in NHWC. On a GPU the gain is unmeasured.
        arc_learning_rate: Adam learning rate of the alphas (betas (0.5, 0.999), weight decay 1e-3).
        gradient_clip_val: gradient-norm clip of the weight step.
        **kwargs: passed to NNI's ``DARTS`` (``warmup_epochs``, ``log_prob_every_n_step``, ``mutation_hooks``, ...).
    """

    def __init__(self, *, lam: float = 0.2, mu: Optional[float] = None, noise_type: str = "gaussian",
                 mixing: str = "additive", decay_epochs: Optional[int] = None,
                 noise: Optional[NoiseConfig] = None, skip_names: Iterable[str] = SKIP_NAMES,
                 channels_last: Optional[bool] = None,
                 arc_learning_rate: float = 3e-4, gradient_clip_val: Optional[float] = 5.0, **kwargs):
        super().__init__(arc_learning_rate=arc_learning_rate, gradient_clip_val=gradient_clip_val, **kwargs)
        self.noise = noise if noise is not None else NoiseConfig(
            lam=lam, mu=mu, noise_type=noise_type, mixing=mixing, decay_epochs=decay_epochs)
        self.skip_names = tuple(skip_names)
        self.channels_last = (not torch.cuda.is_available()) if channels_last is None else bool(channels_last)
        self.wrapped_skips: List[NoisySkip] = []

    def mutate_model(self, model):
        model = super().mutate_model(model)
        self.wrapped_skips = wrap_skip_candidates(model, self.noise, self.skip_names)
        if not self.wrapped_skips:
            logger.warning("the model space has no skip candidate (names %s or nn.Identity); "
                           "NoisyDARTS runs as plain DARTS", ", ".join(self.skip_names))
        else:
            logger.info("wrapped %d skip candidates with %s noise", len(self.wrapped_skips), self.noise)

        if self.channels_last:
            use_channels_last(model)
            logger.info("the supernet runs in channels-last memory format")
        return model

    def configure_oneshot_module(self, training_module) -> NoisyDartsLightningModule:
        return NoisyDartsLightningModule(
            training_module,
            noise=self.noise,
            arc_learning_rate=self.arc_learning_rate,
            gradient_clip_val=self.gradient_clip_val,
            log_prob_every_n_step=self.log_prob_every_n_step,
            warmup_epochs=self.warmup_epochs,
            penalty=self.penalty,
        )
