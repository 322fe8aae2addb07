"""Layer table of the MobileNetV2 search space and the per-layer choices of one architecture.

An architecture is 19 candidate names, one per searchable layer, for example NoisyDARTS-A::

    e6_k3 e3_k3 e6_k5 e6_k3 e6_k3 e6_k3 e6_k5 e6_k7 e6_k3 e6_k3 e6_k3 e6_k3 e6_k3 e6_k3 e6_k3 e6_k7 e6_k7 e6_k7 e6_k7

The JSON form maps the NNI labels ``layer1`` .. ``layer19`` to the names, which is the shape of
the sample that NNI's ``export()`` returns for this space.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple, Sequence, Tuple

import torch

#: Name of the identity candidate.
SKIP = "skip"

#: Inverted-bottleneck candidates as (name, expansion, kernel size), in the order of the NNI choice.
MBCONV_CANDIDATES: Tuple[Tuple[str, int, int], ...] = tuple(
    (f"e{expansion}_k{kernel}", expansion, kernel) for expansion in (3, 6) for kernel in (3, 5, 7)
)
MBCONV_NAMES = tuple(name for name, _, _ in MBCONV_CANDIDATES)

#: Stages as (output channels, number of layers, stride of the stage's first layer).
STAGES = ((32, 2, 2), (40, 4, 2), (80, 4, 2), (96, 4, 1), (192, 4, 2), (320, 1, 1))

#: Channels of the fixed stem, of the fixed first block (entering layer 1) and of the head's
#: 1x1 convolution, at width multiplier 1.
STEM_CHANNELS = 32
FIRST_BLOCK_CHANNELS = 16
HEAD_CHANNELS = 1280


class LayerSpec(NamedTuple):
    """Shape of one searchable layer at width multiplier 1."""

    label: str
    in_channels: int
    out_channels: int
    stride: int

    @property
    def allows_skip(self) -> bool:
        """Whether an identity fits: only a layer that keeps its shape can be skipped."""
        return self.stride == 1 and self.in_channels == self.out_channels

    @property
    def candidates(self) -> Tuple[str, ...]:
        """Candidate names of this layer, in the order of its NNI ``LayerChoice``."""
        return MBCONV_NAMES + (SKIP,) if self.allows_skip else MBCONV_NAMES


def _build_layer_specs() -> Tuple[LayerSpec, ...]:
    specs = []
    in_channels = FIRST_BLOCK_CHANNELS
    for out_channels, repeats, first_stride in STAGES:
        for repeat in range(repeats):
            stride = first_stride if repeat == 0 else 1
            specs.append(LayerSpec(f"layer{len(specs) + 1}", in_channels, out_channels, stride))
            in_channels = out_channels
    return tuple(specs)


#: The 19 searchable layers in network order.
LAYER_SPECS = _build_layer_specs()
NUM_LAYERS = len(LAYER_SPECS)


def parse_candidate(name: str) -> Tuple[int, int]:
    """Return ``(expansion, kernel_size)`` of an MBConv candidate name such as "e6_k3"."""
    for candidate, expansion, kernel in MBCONV_CANDIDATES:
        if candidate == name:
            return expansion, kernel
    raise ValueError(f"unknown MBConv candidate {name!r}: use one of {', '.join(MBCONV_NAMES)}")


class ChoicesError(ValueError):
    """A set of MobileNetV2 choices, or its text or JSON form, is malformed."""


@dataclass(frozen=True)
class MobileNetV2Choices:
    """The candidate chosen on each of the 19 searchable layers, validated on construction."""

    names: Tuple[str, ...]

    def __post_init__(self):
        if isinstance(self.names, str):
            raise ChoicesError(f"invalid names: got the string {self.names[:40]!r}, expected a sequence of "
                               "candidate names. Parse text with MobileNetV2Choices.parse")
        names = tuple(self.names)
        object.__setattr__(self, "names", names)
        if len(names) != NUM_LAYERS:
            raise ChoicesError(f"expected {NUM_LAYERS} layer choices, got {len(names)}: {' '.join(map(str, names))}")
        for spec, name in zip(LAYER_SPECS, names):
            if name in spec.candidates:
                continue
            if name == SKIP:
                raise ChoicesError(
                    f"{spec.label} cannot be {SKIP!r}: it changes the shape "
                    f"({spec.in_channels} -> {spec.out_channels} channels, stride {spec.stride}). "
                    f"Use one of {', '.join(MBCONV_NAMES)}")
            raise ChoicesError(f"unknown candidate {name!r} on {spec.label}: use one of {', '.join(spec.candidates)}")

    def __str__(self) -> str:
        return self.to_text()

    @property
    def num_skips(self) -> int:
        return sum(name == SKIP for name in self.names)

    def to_text(self) -> str:
        """Return the names separated by single spaces, in layer order."""
        return " ".join(self.names)

    def to_dict(self) -> dict:
        """Return ``{"layer1": name, ...}``, the sample format of NNI's ``freeze`` and ``export``."""
        return {spec.label: name for spec, name in zip(LAYER_SPECS, self.names)}

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_text(cls, text: str) -> "MobileNetV2Choices":
        """Parse names separated by whitespace and/or commas."""
        return cls(tuple(text.replace(",", " ").split()))

    @classmethod
    def from_dict(cls, sample: Mapping[str, Any]) -> "MobileNetV2Choices":
        """Read ``{"layer1": name, ...}`` and reject any key other than the 19 labels."""
        labels = [spec.label for spec in LAYER_SPECS]
        missing = [label for label in labels if label not in sample]
        extra = sorted(set(sample) - set(labels))
        if missing or extra:
            raise ChoicesError(f"invalid layer labels: missing {missing}, unexpected {extra}. "
                               f"Expected exactly layer1 .. layer{NUM_LAYERS}")
        names = []
        for label in labels:
            if not isinstance(sample[label], str):
                raise ChoicesError(f"invalid value {sample[label]!r} for {label}: expected a candidate name string")
            names.append(sample[label])
        return cls(tuple(names))

    @classmethod
    def from_json(cls, text: str) -> "MobileNetV2Choices":
        """Parse a JSON object ``{"layer1": name, ...}`` or a JSON list of 19 names."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ChoicesError(f"invalid JSON for MobileNetV2 choices: {error}") from error
        if isinstance(data, dict):
            return cls.from_dict(data)
        if isinstance(data, list) and all(isinstance(name, str) for name in data):
            return cls(tuple(data))
        raise ChoicesError(f"invalid JSON choices {text[:80]!r}: expected an object of layer labels "
                           f"or a list of {NUM_LAYERS} candidate names")

    @classmethod
    def parse(cls, text: str) -> "MobileNetV2Choices":
        """Parse either form: JSON when the text starts with ``{`` or ``[``, else the text form."""
        stripped = text.strip()
        if stripped.startswith(("{", "[")):
            return cls.from_json(stripped)
        return cls.from_text(stripped)


def derive_choices(weights_by_label: Mapping[str, Any]) -> MobileNetV2Choices:
    """Pick the candidate with the largest softmax weight on each layer.

    ``weights_by_label`` maps ``layer1`` .. ``layer19`` to either a ``{candidate: weight}`` dict
    (what NNI's ``export_probs()`` returns) or a sequence or tensor of weights in the order of
    ``LayerSpec.candidates``. Raw alphas work as well because softmax keeps the order. Ties go to
    the earlier candidate.
    """
    names = []
    for spec in LAYER_SPECS:
        if spec.label not in weights_by_label:
            raise ChoicesError(f"missing weights for {spec.label}: expected labels layer1 .. layer{NUM_LAYERS}")
        weights = weights_by_label[spec.label]
        if isinstance(weights, Mapping):
            unknown = sorted(set(weights) - set(spec.candidates))
            if unknown:
                raise ChoicesError(f"unknown candidates {unknown} in the weights of {spec.label}: "
                                   f"expected {', '.join(spec.candidates)}")
            names.append(max(spec.candidates, key=lambda name: weights.get(name, float("-inf"))))
            continue
        values = torch.as_tensor(weights, dtype=torch.float64).flatten()
        if values.numel() != len(spec.candidates):
            raise ChoicesError(f"expected {len(spec.candidates)} weights for {spec.label} "
                               f"({', '.join(spec.candidates)}), got {values.numel()}")
        names.append(spec.candidates[int(torch.argmax(torch.softmax(values, dim=0)))])
    return MobileNetV2Choices(tuple(names))


#: NoisyDARTS-A, searched on ImageNet (no skip chosen).
NOISYDARTS_A = MobileNetV2Choices.from_text(
    "e6_k3 e3_k3 e6_k5 e6_k3 e6_k3 e6_k3 e6_k5 e6_k7 e6_k3 e6_k3 "
    "e6_k3 e6_k3 e6_k3 e6_k3 e6_k3 e6_k7 e6_k7 e6_k7 e6_k7"
)


def as_choices(choices: "MobileNetV2Choices | str | Sequence[str] | Mapping[str, str]") -> MobileNetV2Choices:
    """Accept choices in any supported form: the object, text or JSON, a list of names or an NNI sample."""
    if isinstance(choices, MobileNetV2Choices):
        return choices
    if isinstance(choices, str):
        return MobileNetV2Choices.parse(choices)
    if isinstance(choices, Mapping):
        return MobileNetV2Choices.from_dict(choices)
    return MobileNetV2Choices(tuple(choices))
