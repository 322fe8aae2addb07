"""Published DARTS-space genotypes, looked up by name.

* ``noisydarts-a``: NoisyDARTS-a, Table 7 of Chu et al., "Noisy Differentiable Architecture
  Search" (BMVC 2021).
* ``noisydarts-b``: NoisyDARTS-b as the authors released it, because the paper's Table 7 row for
  it is garbled. The paper reports 3.01M parameters and 494M MAdds for it. This genotype gives
  3,097,918 parameters at width 36 and 20 cells.
* ``darts-v2``: the second-order DARTS cell of Liu et al., "DARTS: Differentiable Architecture
  Search" (ICLR 2019).
"""

from __future__ import annotations

from typing import Dict, List

from .genotype import Genotype, parse_genotype

_GENOTYPE_TEXT: Dict[str, str] = {
    "noisydarts-a": (
        "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('dil_conv_3x3', 2), "
        "('dil_conv_3x3', 3), ('sep_conv_3x3', 1), ('dil_conv_5x5', 4), ('dil_conv_3x3', 3)], "
        "normal_concat=range(2, 6), "
        "reduce=[('max_pool_3x3', 0), ('dil_conv_5x5', 1), ('skip_connect', 2), ('max_pool_3x3', 0), "
        "('skip_connect', 2), ('skip_connect', 3), ('skip_connect', 2), ('dil_conv_5x5', 4)], "
        "reduce_concat=range(2, 6))"
    ),
    "noisydarts-b": (
        "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('dil_conv_5x5', 2), "
        "('skip_connect', 0), ('sep_conv_3x3', 1), ('dil_conv_3x3', 4), ('dil_conv_5x5', 3)], "
        "normal_concat=range(2, 6), "
        "reduce=[('avg_pool_3x3', 0), ('dil_conv_3x3', 1), ('skip_connect', 2), ('avg_pool_3x3', 0), "
        "('avg_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('dil_conv_5x5', 3)], "
        "reduce_concat=range(2, 6))"
    ),
    "darts-v2": (
        "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
        "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
        "normal_concat=range(2, 6), "
        "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), "
        "('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], "
        "reduce_concat=range(2, 6))"
    ),
}

GENOTYPES: Dict[str, Genotype] = {name: parse_genotype(text) for name, text in _GENOTYPE_TEXT.items()}


def genotype_names() -> List[str]:
    return sorted(GENOTYPES)


def get_genotype(name: str) -> Genotype:
    """Return the genotype published under ``name``; raise ValueError listing the known names otherwise."""
    try:
        return GENOTYPES[name.lower()]
    except KeyError:
        raise ValueError(f"unknown genotype name {name!r}; known names: {', '.join(genotype_names())}") from None
