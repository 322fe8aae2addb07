"""Skip-connection noise: statistics of every variant, train/eval behaviour, gradients, validation, decay,
and the unbiasedness of the architecture gradient (NoisyDARTS, Chu et al. 2021, Eq. 4).

Tolerances come from the sampling statistics. The mean of N draws with standard deviation s
has standard error s / sqrt(N). The sample standard deviation of Gaussian draws has a
relative standard error of about 1 / sqrt(2 (N - 1)). Checks allow 6 standard errors, so
each one fails by chance less than once in 10^8 runs.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nni_noisydarts.noise import NoiseConfig, NoisySkip, sample_noise

N = 1_000_000
Z = 6.0

pytestmark = pytest.mark.usefixtures("single_thread")


def mean_tolerance(std: float, count: int = N) -> float:
    return Z * std / math.sqrt(count)


def relative_std_tolerance(count: int = N, kurtosis: float = 3.0) -> float:
    # Var(s^2) / sigma^4 = (kurtosis - 1) / n, and s has half the relative error of s^2.
    return Z * 0.5 * math.sqrt((kurtosis - 1.0) / count)


@pytest.fixture
def signal() -> torch.Tensor:
    """A large tensor with mean 5 and standard deviation 3, like a feature map of one mini-batch."""
    generator = torch.Generator().manual_seed(1234)
    return torch.randn(100, 10, 1000, generator=generator) * 3.0 + 5.0


def train_skip(config: NoiseConfig, op: nn.Module = None) -> NoisySkip:
    skip = NoisySkip(op if op is not None else nn.Identity(), config)
    skip.train()
    return skip


# --- statistics -----------------------------------------------------------------------------


def test_additive_gaussian_mean_and_std(signal):
    torch.manual_seed(0)
    lam = 0.2
    noise = train_skip(NoiseConfig(lam=lam))(signal) - signal

    sigma = lam * float(signal.std())
    assert abs(float(noise.mean())) < mean_tolerance(sigma)
    assert float(noise.std()) == pytest.approx(sigma, rel=relative_std_tolerance())


def test_additive_gaussian_is_gaussian(signal):
    torch.manual_seed(1)
    noise = sample_noise(signal, NoiseConfig(lam=0.2)).double()
    centred = (noise - noise.mean()) / noise.std()

    # Kurtosis of a normal distribution is 3, and its estimate has variance 24 / N.
    kurtosis = float((centred ** 4).mean())
    assert kurtosis == pytest.approx(3.0, abs=Z * math.sqrt(24 / N))


def test_additive_biased_mean(signal):
    torch.manual_seed(2)
    lam, mu = 0.1, 0.5
    noise = train_skip(NoiseConfig(lam=lam, mu=mu))(signal) - signal

    sigma = lam * float(signal.std())
    assert float(noise.mean()) == pytest.approx(mu, abs=mean_tolerance(sigma))
    assert float(noise.std()) == pytest.approx(sigma, rel=relative_std_tolerance())


def test_std_scales_with_signal_not_mean(signal):
    """sigma = lam * std(x): shifting x leaves the noise alone, scaling x scales it."""
    config = NoiseConfig(lam=0.2)

    torch.manual_seed(3)
    base = sample_noise(signal, config)
    torch.manual_seed(3)
    shifted = sample_noise(signal + 100.0, config)
    torch.manual_seed(3)
    scaled = sample_noise(signal * 4.0, config)

    torch.testing.assert_close(shifted, base, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(scaled, base * 4.0, rtol=1e-4, atol=1e-5)


def test_uniform_mean_std_and_support(signal):
    torch.manual_seed(4)
    lam = 0.2
    noise = train_skip(NoiseConfig(lam=lam, noise_type="uniform"))(signal) - signal

    sigma = lam * float(signal.std())
    half_width = math.sqrt(3.0) * sigma
    # A uniform distribution has kurtosis 1.8, so its sample std varies less than a Gaussian one.
    assert abs(float(noise.mean())) < mean_tolerance(sigma)
    assert float(noise.std()) == pytest.approx(sigma, rel=relative_std_tolerance(kurtosis=1.8))
    assert float(noise.abs().max()) <= half_width * (1 + 1e-5)
    assert float(noise.abs().max()) > half_width * 0.999


def test_uniform_is_flat(signal):
    torch.manual_seed(5)
    noise = sample_noise(signal, NoiseConfig(lam=0.2, noise_type="uniform")).double()
    centred = (noise - noise.mean()) / noise.std()

    # Kurtosis of a uniform distribution is 9/5. By the delta method its estimate has variance 1.32 / N.
    kurtosis = float((centred ** 4).mean())
    assert kurtosis == pytest.approx(1.8, abs=Z * math.sqrt(1.32 / N))


def test_multiplicative_mean_and_std():
    """Multiplicative noise is N(1, lam^2): its spread is lam itself, whatever the scale of x."""
    torch.manual_seed(6)
    lam = 0.1
    # Values far from zero so that out / x recovers the factor precisely.
    x = torch.rand(N) * 30.0 + 20.0
    factor = train_skip(NoiseConfig(lam=lam, mixing="multiplicative"))(x) / x

    assert float(factor.mean()) == pytest.approx(1.0, abs=mean_tolerance(lam))
    assert float(factor.std()) == pytest.approx(lam, rel=relative_std_tolerance())


def test_multiplicative_default_mean_is_one():
    assert NoiseConfig(mixing="multiplicative").mu == 1.0
    assert NoiseConfig(mixing="additive").mu == 0.0


def test_noise_fresh_per_call(signal):
    skip = train_skip(NoiseConfig(lam=0.2))

    first = skip(signal) - signal
    second = skip(signal) - signal

    assert not torch.equal(first, second)
    # Independent draws are uncorrelated, and the correlation estimate has standard error 1 / sqrt(N).
    correlation = float(torch.corrcoef(torch.stack([first.flatten(), second.flatten()]))[0, 1])
    assert abs(correlation) < Z / math.sqrt(N)


def test_noise_independent_per_element():
    torch.manual_seed(7)
    x = torch.randn(1000, 1000)
    noise = sample_noise(x, NoiseConfig(lam=1.0))

    # Neighbouring elements (along rows and along columns) must be uncorrelated.
    count = noise[:, 1:].numel()
    along_rows = float((noise[:, 1:] * noise[:, :-1]).mean()) / float(noise.var())
    along_columns = float((noise[1:, :] * noise[:-1, :]).mean()) / float(noise.var())
    assert abs(along_rows) < Z / math.sqrt(count)
    assert abs(along_columns) < Z / math.sqrt(count)


@pytest.mark.parametrize("config", [
    NoiseConfig(lam=0.2),
    NoiseConfig(lam=0.1, mu=0.5),
    NoiseConfig(lam=0.2, noise_type="uniform"),
    NoiseConfig(lam=0.2, mixing="multiplicative"),
    NoiseConfig(lam=0.1, mu=0.5, mixing="multiplicative", noise_type="uniform"),
], ids=str)
def test_skip_equals_sampled_noise(signal, config):
    """The fused path of NoisySkip draws the same numbers as ``sample_noise`` from the same seed."""
    skip = train_skip(config)
    skip.scale = 0.7

    torch.manual_seed(11)
    fused = skip(signal)
    torch.manual_seed(11)
    noise = sample_noise(signal, config, scale=0.7)
    expected = signal + noise if config.mixing == "additive" else signal * noise

    torch.testing.assert_close(fused, expected)


@pytest.mark.parametrize("mixing", ["additive", "multiplicative"])
def test_channels_last_noise_statistics(mixing):
    """Noise on an NHWC feature map: same layout, right moments, neighbours uncorrelated along every axis."""
    generator = torch.Generator().manual_seed(5)
    x = (torch.randn(16, 64, 32, 32, generator=generator) * 3.0 + 5.0).contiguous(memory_format=torch.channels_last)
    config = NoiseConfig(lam=0.2, mixing=mixing)

    out = train_skip(config)(x)
    assert out.is_contiguous(memory_format=torch.channels_last)

    noise = (out - x).double() if mixing == "additive" else (out / x).double()
    expected_std = 0.2 * float(x.std()) if mixing == "additive" else 0.2
    expected_mean = 0.0 if mixing == "additive" else 1.0
    count = noise.numel()
    assert abs(float(noise.mean()) - expected_mean) < mean_tolerance(expected_std, count)
    assert abs(float(noise.std()) / expected_std - 1.0) < relative_std_tolerance(count)

    centred = noise - expected_mean
    variance = float(centred.var())
    for dim in range(1, 4):
        head = centred.narrow(dim, 1, centred.size(dim) - 1)
        tail = centred.narrow(dim, 0, centred.size(dim) - 1)
        correlation = float((head * tail).mean()) / variance
        assert abs(correlation) < Z / math.sqrt(head.numel()), f"noise correlated along dim {dim}"


def test_noise_reproducible_from_seed(signal):
    """torch.manual_seed fixes the noise, so a resumed search can redraw it."""
    config = NoiseConfig(lam=0.2)

    torch.manual_seed(3)
    first = sample_noise(signal, config)
    torch.manual_seed(3)
    second = sample_noise(signal, config)
    third = sample_noise(signal, config)

    assert torch.equal(first, second)
    assert not torch.equal(second, third)


@pytest.mark.parametrize("config", [
    NoiseConfig(lam=0.2),
    NoiseConfig(lam=0.2, mu=0.5, noise_type="uniform"),
    NoiseConfig(lam=0.2, mixing="multiplicative"),
], ids=str)
def test_device_noise_stays_on_device(config):
    """Off the CPU the noise never reads std(x) back to the host, which would wait for a GPU.

    A meta tensor has no values, so reading one raises. This runs the accelerator branch on a
    machine without a GPU.
    """
    x = torch.empty(4, 8, 5, 5, device="meta").contiguous(memory_format=torch.channels_last)

    out = train_skip(config)(x)

    assert out.device.type == "meta"
    assert out.shape == x.shape
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_strided_view_noise(signal):
    """A non-dense view (every other channel) still gets one independent draw per element."""
    view = signal[:, ::2]
    noise = sample_noise(view, NoiseConfig(lam=0.2)).double()

    assert noise.shape == view.shape
    expected_std = 0.2 * float(view.std())
    assert abs(float(noise.std()) / expected_std - 1.0) < relative_std_tolerance(noise.numel())


# --- train and eval mode --------------------------------------------------------------------


@pytest.mark.parametrize("mixing", ["additive", "multiplicative"])
def test_eval_mode_returns_input(signal, mixing):
    skip = NoisySkip(nn.Identity(), NoiseConfig(lam=0.5, mu=0.3, mixing=mixing))
    skip.eval()
    state = torch.get_rng_state()

    out = skip(signal)

    assert torch.equal(out, signal)
    assert torch.equal(torch.get_rng_state(), state)


def test_eval_mode_wraps_any_op():
    op = nn.Conv2d(3, 3, 1)
    skip = NoisySkip(op, NoiseConfig(lam=0.5))
    skip.eval()
    x = torch.randn(2, 3, 4, 4)

    assert torch.equal(skip(x), op(x))


def test_lam_zero_is_identity(signal):
    skip = train_skip(NoiseConfig(lam=0.0))
    state = torch.get_rng_state()

    out = skip(signal)

    assert torch.equal(out, signal)
    assert torch.equal(torch.get_rng_state(), state)


def test_lam_zero_multiplicative_is_identity(signal):
    skip = train_skip(NoiseConfig(lam=0.0, mixing="multiplicative"))
    state = torch.get_rng_state()

    assert torch.equal(skip(signal), signal)
    assert torch.equal(torch.get_rng_state(), state)


def test_lam_zero_biased_shifts_by_mu(signal):
    """lam = 0 with mu = 0.5 is not plain DARTS: every element moves by exactly mu."""
    config = NoiseConfig(lam=0.0, mu=0.5)
    assert not config.is_noiseless

    out = train_skip(config)(signal)

    torch.testing.assert_close(out - signal, torch.full_like(signal, 0.5), rtol=0, atol=1e-5)


def test_noise_kept_through_mode_switch(signal):
    skip = train_skip(NoiseConfig(lam=0.2))
    skip.eval()
    assert torch.equal(skip(signal), signal)

    skip.train()
    assert not torch.equal(skip(signal), signal)


# --- gradients ------------------------------------------------------------------------------


def test_additive_gradient_is_one():
    torch.manual_seed(8)
    x = (torch.randn(4, 3, 8, 8) * 2.0).requires_grad_()
    out = train_skip(NoiseConfig(lam=0.5))(x)

    # A random upstream gradient would reveal any path through std(x): d out / d x must be identity.
    upstream = torch.randn_like(out)
    out.backward(upstream)

    assert torch.equal(x.grad, upstream)


def test_additive_biased_gradient_is_one():
    x = torch.randn(64).requires_grad_()
    train_skip(NoiseConfig(lam=0.3, mu=1.0))(x).sum().backward()

    assert torch.equal(x.grad, torch.ones_like(x))


def test_multiplicative_gradient_is_noise():
    torch.manual_seed(9)
    x = (torch.rand(256) + 1.0).requires_grad_()
    out = train_skip(NoiseConfig(lam=0.3, mixing="multiplicative"))(x)
    out.sum().backward()

    factor = (out / x).detach()
    torch.testing.assert_close(x.grad, factor, rtol=1e-5, atol=1e-6)


def test_noise_has_no_grad():
    x = torch.randn(100).requires_grad_()
    noise = sample_noise(x, NoiseConfig(lam=0.2))

    assert not noise.requires_grad


def test_gradient_reaches_wrapped_op():
    conv = nn.Conv2d(2, 2, 1, bias=False)
    skip = train_skip(NoiseConfig(lam=0.2), conv)
    skip(torch.randn(3, 2, 4, 4)).sum().backward()

    assert conv.weight.grad is not None
    assert torch.isfinite(conv.weight.grad).all()


# --- degenerate inputs ----------------------------------------------------------------------


@pytest.mark.parametrize("noise_type", ["gaussian", "uniform"])
@pytest.mark.parametrize("mixing", ["additive", "multiplicative"])
def test_single_element_no_nan(noise_type, mixing):
    x = torch.tensor([2.5], requires_grad=True)
    out = train_skip(NoiseConfig(lam=0.2, noise_type=noise_type, mixing=mixing))(x)
    out.sum().backward()

    assert torch.isfinite(out).all()
    assert torch.isfinite(x.grad).all()


def test_single_element_additive_unchanged():
    """A single element has no spread, so unbiased additive noise has sigma 0 and leaves it as it is."""
    x = torch.tensor([[2.5]])

    assert torch.equal(train_skip(NoiseConfig(lam=0.2))(x), x)


def test_constant_input_no_nan():
    x = torch.full((4, 8), 3.0)
    out = train_skip(NoiseConfig(lam=0.2))(x)

    assert torch.isfinite(out).all()
    assert torch.equal(out, x)


def test_half_precision_keeps_dtype():
    x = torch.randn(32, 32).to(torch.bfloat16)
    out = train_skip(NoiseConfig(lam=0.2))(x)

    assert out.dtype == torch.bfloat16
    assert torch.isfinite(out.float()).all()


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, shown", [
    ({"lam": -0.1}, "-0.1"),
    ({"lam": float("nan")}, "nan"),
    ({"lam": float("inf")}, "inf"),
    ({"lam": "0.2"}, "'0.2'"),
    ({"mu": float("nan")}, "nan"),
    ({"mu": float("-inf")}, "-inf"),
    ({"noise_type": "laplace"}, "'laplace'"),
    ({"mixing": "sum"}, "'sum'"),
    ({"decay_epochs": 0}, "0"),
    ({"decay_epochs": -5}, "-5"),
    ({"decay_epochs": 2.5}, "2.5"),
    ({"decay_epochs": True}, "True"),
])
def test_invalid_config_rejected(kwargs, shown):
    with pytest.raises(ValueError) as error:
        NoiseConfig(**kwargs)

    message = str(error.value)
    assert shown in message
    assert "\n" not in message


def test_config_is_frozen():
    config = NoiseConfig()

    with pytest.raises(AttributeError):
        config.lam = 1.0


def test_config_dict_round_trip():
    config = NoiseConfig(lam=0.1, mu=0.5, noise_type="uniform", decay_epochs=50)

    assert NoiseConfig(**config.to_dict()) == config


# --- decay schedule -------------------------------------------------------------------------


def test_cosine_decay_values():
    config = NoiseConfig(lam=0.2, mu=1.0, decay_epochs=50)

    assert config.scale_at(0) == 1.0
    assert config.scale_at(25) == pytest.approx(0.5, abs=1e-12)
    assert config.scale_at(50) == pytest.approx(0.0, abs=1e-12)
    assert config.scale_at(80) == pytest.approx(0.0, abs=1e-12)
    assert config.scale_at(10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 10 / 50)), abs=1e-12)


def test_cosine_decay_monotonic():
    config = NoiseConfig(decay_epochs=7)
    scales = [config.scale_at(epoch) for epoch in range(10)]

    assert all(later <= earlier for earlier, later in zip(scales, scales[1:]))
    assert all(0.0 <= scale <= 1.0 for scale in scales)


def test_no_decay_constant_scale():
    config = NoiseConfig()

    assert [config.scale_at(epoch) for epoch in (0, 1, 49, 500)] == [1.0, 1.0, 1.0, 1.0]


def test_scale_shrinks_mean_and_std(signal):
    torch.manual_seed(10)
    lam, mu = 0.2, 1.0
    skip = train_skip(NoiseConfig(lam=lam, mu=mu, decay_epochs=10))
    skip.scale = 0.5
    noise = skip(signal) - signal

    sigma = 0.5 * lam * float(signal.std())
    assert float(noise.mean()) == pytest.approx(0.5 * mu, abs=mean_tolerance(sigma))
    assert float(noise.std()) == pytest.approx(sigma, rel=relative_std_tolerance())


def test_scale_multiplicative_moves_toward_one():
    torch.manual_seed(11)
    lam = 0.2
    skip = train_skip(NoiseConfig(lam=lam, mu=1.5, mixing="multiplicative"))
    skip.scale = 0.25
    x = torch.rand(N) + 10.0
    factor = skip(x) / x

    # The mean decays from mu towards the neutral 1, the spread towards 0.
    assert float(factor.mean()) == pytest.approx(1.0 + 0.25 * 0.5, abs=mean_tolerance(0.25 * lam))
    assert float(factor.std()) == pytest.approx(0.25 * lam, rel=relative_std_tolerance())


def test_scale_zero_is_identity(signal):
    skip = train_skip(NoiseConfig(lam=0.2, mu=1.0, decay_epochs=10))
    skip.scale = 0.0
    state = torch.get_rng_state()

    assert torch.equal(skip(signal), signal)
    assert torch.equal(torch.get_rng_state(), state)


# --- unbiased architecture gradient ---------------------------------------------------------


class TinyMixedOp(nn.Module):
    """softmax(alpha)-weighted sum of a noisy skip and a fixed convolution, as on one DARTS edge."""

    def __init__(self, config: NoiseConfig):
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor([0.3, -0.2]))
        self.skip = NoisySkip(nn.Identity(), config)
        self.conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.alpha, dim=0)
        return weights[0] * self.skip(x) + weights[1] * self.conv(x)


def alpha_gradients(config: NoiseConfig, samples: int):
    """Compute the noise-free alpha gradient and ``samples`` noisy ones; return both and the loss projection.

    The loss is linear in the edge output (a fixed random projection), so the noisy gradient is
    the noise-free one plus a term linear in the noise. Its expectation is therefore exact, not
    a first-order approximation.
    """
    generator = torch.Generator().manual_seed(42)
    mixed = TinyMixedOp(config)
    with torch.no_grad():
        mixed.conv.weight.copy_(torch.randn(mixed.conv.weight.shape, generator=generator) * 0.2)
    x = torch.randn(8, 4, 6, 6, generator=generator)
    projection = torch.rand(8, 4, 6, 6, generator=generator) + 0.5

    def gradient() -> torch.Tensor:
        mixed.alpha.grad = None
        (mixed(x) * projection).sum().backward()
        return mixed.alpha.grad.clone()

    mixed.eval()
    clean = gradient()
    mixed.train()
    torch.manual_seed(43)
    noisy = torch.stack([gradient() for _ in range(samples)])
    return clean, noisy, projection


@pytest.mark.parametrize("config", [
    NoiseConfig(lam=0.2),
    NoiseConfig(lam=0.2, noise_type="uniform"),
    NoiseConfig(lam=0.2, mixing="multiplicative"),
], ids=["gaussian", "uniform", "multiplicative"])
def test_unbiased_noise_keeps_gradient(config):
    clean, noisy, _ = alpha_gradients(config, samples=2000)

    mean = noisy.mean(dim=0)
    standard_error = noisy.std(dim=0) / math.sqrt(len(noisy))
    assert (standard_error > 0).all()
    assert ((mean - clean).abs() < Z * standard_error).all(), (mean, clean, standard_error)


def test_noisy_gradient_varies():
    clean, noisy, _ = alpha_gradients(NoiseConfig(lam=0.2), samples=50)

    # The noise reaches dL/d alpha, so single gradients scatter around the clean one.
    assert (noisy.std(dim=0) > 0).all()
    assert not torch.equal(noisy[0], clean)


def test_biased_noise_shifts_gradient():
    """mu = 1 shifts E[dL/d alpha] by mu * sum(projection) * d softmax_skip / d alpha."""
    mu = 1.0
    clean, noisy, projection = alpha_gradients(NoiseConfig(lam=0.2, mu=mu), samples=500)

    mean = noisy.mean(dim=0)
    standard_error = noisy.std(dim=0) / math.sqrt(len(noisy))
    assert ((mean - clean).abs() > 20 * standard_error).all(), (mean, clean, standard_error)

    weights = torch.softmax(torch.tensor([0.3, -0.2]), dim=0)
    softmax_skip_gradient = torch.stack([weights[0] * (1 - weights[0]), -weights[0] * weights[1]])
    expected_shift = softmax_skip_gradient * mu * projection.sum()
    # The float32 sums over 2 x 288 elements add a rounding error far below 1e-4 relative.
    tolerance = Z * standard_error + 1e-4 * expected_shift.abs()
    assert ((mean - clean - expected_shift).abs() < tolerance).all(), (mean - clean, expected_shift)
