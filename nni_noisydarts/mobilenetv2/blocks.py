"""Building blocks of the MobileNetV2 search space: the inverted bottleneck (MBConv) and its parts."""

from __future__ import annotations

import torch
from torch import nn

#: Activations an MBConv block accepts. "swish" is ``x * sigmoid(x)`` (``nn.SiLU``).
ACTIVATIONS = ("relu", "swish")

#: Squeeze-excite width as a fraction of the block's input channels (not of the expanded width).
SE_RATIO = 0.25


def make_activation(name: str) -> nn.Module:
    """Build the activation module for ``name`` ("relu" or "swish")."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "swish":
        return nn.SiLU(inplace=True)
    raise ValueError(f"invalid activation {name!r}: use one of {', '.join(ACTIVATIONS)}")


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to the nearest multiple of ``divisor``, never below 90% of ``value``.

    This is the rounding MobileNetV2 applies when a width multiplier scales the channels.
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def scale_channels(channels: int, width_mult: float) -> int:
    """Scale a channel count by the width multiplier and round it to a multiple of 8."""
    if width_mult <= 0:
        raise ValueError(f"invalid width multiplier {width_mult}: use a positive number such as 1.0 or 0.5")
    return make_divisible(channels * width_mult)


def conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1,
            affine: bool = True, activation: str | None = None) -> nn.Sequential:
    """Build a bias-free convolution with "same" padding, batch norm and an optional activation."""
    layers = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
                  groups=groups, bias=False),
        nn.BatchNorm2d(out_channels, affine=affine),
    ]
    if activation is not None:
        layers.append(make_activation(activation))
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation gate: global average pool, two biased 1x1 convolutions, sigmoid.

    The pool is an ``nn.AdaptiveAvgPool2d`` module, not a ``mean`` call, so forward hooks that
    count multiply-adds see it.
    """

    def __init__(self, channels: int, reduced_channels: int, activation: str = "relu"):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, reduced_channels, 1, bias=True)
        self.act = make_activation(activation)
        self.expand = nn.Conv2d(reduced_channels, channels, 1, bias=True)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.gate(self.expand(self.act(self.reduce(self.pool(x)))))
        return x * scale


def drop_connect(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Zero whole samples of a residual branch with probability ``rate`` and rescale the others.

    This is stochastic depth as EfficientNet applies it: in training, each sample's branch output
    is kept with probability ``1 - rate`` and divided by it, so the expected output is unchanged.
    """
    if not training or rate == 0.0:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep


class MBConv(nn.Module):
    """Inverted bottleneck: 1x1 expand, depthwise kxk, optional squeeze-excite, 1x1 linear project.

    The block adds its input back (residual) when ``stride == 1`` and ``in_channels == out_channels``,
    and ``drop_connect_rate`` then drops the branch per sample in training. With ``expansion == 1``
    there is no expansion convolution, as in MobileNetV2's first block.

    Parameters
    ----------
    in_channels, out_channels
        Channels entering and leaving the block.
    kernel_size
        Depthwise kernel size (odd).
    stride
        Depthwise stride, 1 or 2.
    expansion
        Hidden width as a multiple of ``in_channels``.
    se
        Insert squeeze-excite after the depthwise convolution, reducing to
        ``SE_RATIO * in_channels`` channels.
    activation
        "relu" or "swish", used after the expansion, the depthwise convolution and inside the SE.
    affine
        Learnable batch-norm scale and shift.
    drop_connect_rate
        Probability of dropping the residual branch of a sample in training (0 disables it).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 expansion: int, se: bool = False, activation: str = "relu", affine: bool = True,
                 drop_connect_rate: float = 0.0):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"invalid stride {stride}: MBConv supports stride 1 or 2")
        if kernel_size % 2 == 0:
            raise ValueError(f"invalid kernel_size {kernel_size}: use an odd size so 'same' padding is exact")
        if not 0.0 <= drop_connect_rate < 1.0:
            raise ValueError(f"invalid drop_connect_rate {drop_connect_rate}: use a value in [0, 1)")

        hidden = in_channels * expansion
        self.use_residual = stride == 1 and in_channels == out_channels
        self.drop_connect_rate = drop_connect_rate

        layers = []
        if expansion != 1:
            layers.append(conv_bn(in_channels, hidden, 1, affine=affine, activation=activation))
        layers.append(conv_bn(hidden, hidden, kernel_size, stride=stride, groups=hidden, affine=affine,
                              activation=activation))
        if se:
            reduced = max(1, int(in_channels * SE_RATIO))
            layers.append(SqueezeExcite(hidden, reduced, activation))
        layers.append(conv_bn(hidden, out_channels, 1, affine=affine))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(x)
        if self.use_residual:
            out = x + drop_connect(out, self.drop_connect_rate, self.training)
        return out


def stem(out_channels: int) -> nn.Sequential:
    """Build the fixed stem: 3x3 stride-2 convolution from RGB, batch norm, ReLU."""
    return conv_bn(3, out_channels, 3, stride=2, activation="relu")


def first_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Build the fixed first block: depthwise 3x3 + BN + ReLU, then a linear 1x1 projection + BN."""
    return nn.Sequential(
        conv_bn(in_channels, in_channels, 3, groups=in_channels, activation="relu"),
        conv_bn(in_channels, out_channels, 1),
    )


def init_weights(model: nn.Module) -> None:
    """Initialize as torchvision's MobileNetV2: He (fan-out) convolutions, unit BN, small-normal linear."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d) and module.affine:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.01)
            nn.init.zeros_(module.bias)


class ClassifierHead(nn.Module):
    """1x1 convolution + BN + ReLU, global average pool, dropout, linear classifier."""

    def __init__(self, in_channels: int, hidden_channels: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"invalid dropout {dropout}: use a probability in [0, 1)")
        self.conv = conv_bn(in_channels, hidden_channels, 1, activation="relu")
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.conv(x)).flatten(1)
        return self.classifier(self.dropout(x))
