"""Noise injected into skip-connection candidates: the core of NoisyDARTS.

During the search a skip candidate's output ``x`` becomes

* additive: ``x + n`` with ``n ~ N(mu, sigma^2)`` per element, ``sigma = lam * std(x)``,
  where ``std(x)`` is one scalar over the whole mini-batch tensor;
* multiplicative: ``x * n`` with ``n ~ N(mu, lam^2)`` per element (``mu`` defaults to 1);
* uniform instead of Gaussian: ``U(mu - a, mu + a)`` with ``a = sqrt(3) * sigma``, which
  has the same mean and standard deviation as the Gaussian.

The noise and ``std(x)`` are drawn without gradient, so ``d out / d x`` is 1 for additive
noise and ``n`` for multiplicative noise. The mixed op multiplies the noisy output by the
softmax weight of the skip candidate, so ``dL / d alpha_skip`` sees the noise as in
NoisyDARTS (Chu et al., "Noisy Differentiable Architecture Search", Eq. 3 and 6).

This module is plain PyTorch and knows nothing of NNI.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch
from torch import nn

NOISE_TYPES = ("gaussian", "uniform")
MIXINGS = ("additive", "multiplicative")

_SQRT3 = math.sqrt(3.0)


@dataclass(frozen=True)
class NoiseConfig:
    """Validated settings of the skip-connection noise.

    Attributes:
        lam: noise strength. Additive noise has ``sigma = lam * std(x)``; multiplicative
            noise has ``sigma = lam``. ``lam = 0`` with the neutral mean is plain DARTS.
        mu: mean of the noise. Defaults to 0 (additive) or 1 (multiplicative), the unbiased
            choices. The paper's biased ablations use 0.5 and 1.0 with additive noise.
        noise_type: ``"gaussian"`` or ``"uniform"``.
        mixing: ``"additive"`` or ``"multiplicative"``.
        decay_epochs: when set, the noise shrinks to nothing along a cosine over this many
            epochs (mean and standard deviation together); off by default.
    """

    lam: float = 0.2
    mu: Optional[float] = None
    noise_type: str = "gaussian"
    mixing: str = "additive"
    decay_epochs: Optional[int] = None
    neutral_mean: float = field(init=False, repr=False, default=0.0)

    def __post_init__(self) -> None:
        if self.noise_type not in NOISE_TYPES:
            raise ValueError(f"unknown noise type {self.noise_type!r}; expected one of {', '.join(NOISE_TYPES)}")
        if self.mixing not in MIXINGS:
            raise ValueError(f"unknown noise mixing {self.mixing!r}; expected one of {', '.join(MIXINGS)}")
        if not isinstance(self.lam, (int, float)) or not math.isfinite(self.lam) or self.lam < 0:
            raise ValueError(f"noise lam must be a finite number >= 0 (the paper uses 0.1 or 0.2), got {self.lam!r}")

        neutral = 1.0 if self.mixing == "multiplicative" else 0.0
        object.__setattr__(self, "neutral_mean", neutral)
        if self.mu is None:
            object.__setattr__(self, "mu", neutral)
        if not isinstance(self.mu, (int, float)) or not math.isfinite(self.mu):
            raise ValueError(f"noise mu must be a finite number (0 is unbiased for additive noise, "
                             f"1 for multiplicative), got {self.mu!r}")

        if self.decay_epochs is not None:
            if isinstance(self.decay_epochs, bool) or not isinstance(self.decay_epochs, int) or self.decay_epochs < 1:
                raise ValueError(f"noise decay_epochs must be a positive integer or None (no decay), "
                                 f"got {self.decay_epochs!r}")

    @property
    def is_noiseless(self) -> bool:
        """True when the settings reduce to plain DARTS (no noise at all)."""
        return self.lam == 0 and self.mu == self.neutral_mean

    def scale_at(self, epoch: int) -> float:
        """Return the factor (1 down to 0) applied to the noise in 0-based ``epoch``."""
        if self.decay_epochs is None:
            return 1.0
        progress = min(max(epoch, 0), self.decay_epochs) / self.decay_epochs
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    def to_dict(self) -> dict:
        values = asdict(self)
        values.pop("neutral_mean")
        return values


def _fill(flat: torch.Tensor, noise_type: str, mean: float, std: float) -> None:
    """Fill a 1-D tensor in place with independent noise of the given mean and standard deviation."""
    if noise_type == "gaussian":
        flat.normal_(mean, std)
    else:
        # U(mean - a, mean + a) with a = sqrt(3) * std has standard deviation std.
        flat.uniform_(mean - _SQRT3 * std, mean + _SQRT3 * std)


def _draw_noise(x: torch.Tensor, config: NoiseConfig, scale: float) -> torch.Tensor:
    """Return fresh noise shaped and laid out like ``x`` for ``config`` shrunk by ``scale`` (call without grad).

    Additive noise has ``sigma = lam * std(x)``. A tensor with a single element has no defined
    standard deviation, so its noise is just the mean. The numbers go into one dense buffer in
    memory order, because ``torch.randn_like`` on a channels-last CPU tensor takes an
    element-by-element path about 8 times slower than on a contiguous one (torch 2.14.1).
    """
    mean = config.neutral_mean + (config.mu - config.neutral_mean) * scale
    if config.mixing == "additive":
        spread = x.std() if x.numel() > 1 else x.new_zeros(())
        sigma = spread * (config.lam * scale)
    else:
        sigma = config.lam * scale

    noise = torch.empty_like(x)  # dense, with x's strides when x is dense
    flat = noise if noise.is_contiguous() else noise.as_strided((noise.numel(),), (1,))
    if torch.is_tensor(sigma) and x.device.type != "cpu":
        # Reading sigma on the host would wait for the device, so scale unit noise on the device instead.
        _fill(flat, config.noise_type, 0.0, 1.0)
        return noise.mul_(sigma).add_(mean)
    _fill(flat, config.noise_type, mean, float(sigma))
    return noise


def sample_noise(x: torch.Tensor, config: NoiseConfig, scale: float = 1.0) -> torch.Tensor:
    """Draw a noise tensor shaped like ``x`` (no gradient) for ``config`` shrunk by ``scale``."""
    with torch.no_grad():
        return _draw_noise(x, config, scale)


def add_noise(x: torch.Tensor, config: NoiseConfig, scale: float = 1.0) -> torch.Tensor:
    """Mix fresh noise into ``x``. The gradient flows to ``x`` but not into the noise.

    Equals mixing in ``sample_noise(x, config, scale)`` drawn from the same generator state.
    Additive noise is added in place into the noise buffer, so it costs one buffer the size of ``x``.
    """
    with torch.no_grad():
        noise = _draw_noise(x, config, scale)
    if config.mixing == "additive":
        return noise.add_(x)
    return x * noise


class NoisySkip(nn.Module):
    """Wrap a skip candidate (identity or factorized reduce) and add noise to its output in training mode.

    In eval mode, and for noiseless settings, the wrapper returns the candidate's output
    unchanged. ``scale`` is the decay factor of the current epoch; the search loop sets it.
    """

    def __init__(self, op: nn.Module, config: NoiseConfig):
        super().__init__()
        self.op = op
        self.config = config
        self.scale = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.op(x)
        if not self.training or self.config.is_noiseless or self.scale == 0.0:
            return out

        return add_noise(out, self.config, self.scale)

    def extra_repr(self) -> str:
        c = self.config
        return f"{c.noise_type}, {c.mixing}, mu={c.mu}, lam={c.lam}, scale={self.scale:.3f}"
