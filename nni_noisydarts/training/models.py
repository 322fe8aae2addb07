"""Building the network of a ``TrainConfig``: a DARTS CIFAR network from a genotype, or a registered model."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

from torch import nn

from ..darts.genotype import Genotype, parse_genotype
from ..zoo import build_darts_cifar, build_model, get_entry, resolve_genotype_text
from .config import TrainConfig

logger = logging.getLogger(__name__)

#: Extensions of files that ``load_genotype_argument`` reads as genotype files.
GENOTYPE_FILE_SUFFIXES = (".txt", ".json")


def load_genotype_argument(value: str) -> Genotype:
    """Return the genotype that ``value`` names: a zoo name, a .txt/.json file, or the text form itself."""
    value = value.strip()
    if value.lower().endswith(GENOTYPE_FILE_SUFFIXES):
        path = Path(value).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"genotype file {value!r} not found; pass an existing .txt or .json file, "
                                    "a zoo name or a genotype string")
        return parse_genotype(path.read_text())
    return resolve_genotype_text(value)


def build_network(config: TrainConfig, num_classes: int) -> nn.Module:
    """Build the network of ``config`` for ``num_classes`` classes.

    Registered models get the options their builder accepts. A non-default option that the
    builder does not accept (for example ``drop_connect_rate`` for a DARTS network) raises
    ValueError rather than being ignored.
    """
    if config.genotype is not None:
        genotype, kwargs = _darts_arguments(config, num_classes)
        return build_darts_cifar(genotype, **kwargs)
    return build_model(config.model, **_registry_arguments(config, num_classes))


def check_network_config(config: TrainConfig) -> None:
    """Raise the errors ``build_network`` would raise about the architecture, without building it or reading data."""
    if config.genotype is not None:
        _darts_arguments(config, num_classes=1)
    else:
        _registry_arguments(config, num_classes=1)


def _darts_arguments(config: TrainConfig, num_classes: int):
    if config.drop_connect_rate > 0:
        raise ValueError(f"drop_connect_rate={config.drop_connect_rate} has no effect on a DARTS network; "
                         "use drop_path_prob instead or set drop_connect_rate to 0")
    if config.width_mult is not None:
        raise ValueError(f"width_mult={config.width_mult} applies to registered models; "
                         "set the DARTS width with --width")
    kwargs = {"width": config.width, "cells": config.cells, "num_classes": num_classes,
              "auxiliary": config.aux_weight > 0, "dropout": config.dropout}
    return load_genotype_argument(config.genotype), kwargs


def _registry_arguments(config: TrainConfig, num_classes: int) -> dict:
    accepted = inspect.signature(get_entry(config.model).builder).parameters
    if "num_classes" not in accepted:
        raise ValueError(f"model {config.model!r} has no num_classes option, so it cannot be trained here")

    kwargs = {"num_classes": num_classes}
    optional = {
        "width": (config.width, 36), "cells": (config.cells, 20), "width_mult": (config.width_mult, None),
        "dropout": (config.dropout, 0.0), "drop_connect_rate": (config.drop_connect_rate, 0.0),
        "auxiliary": (config.aux_weight > 0, False), "choices": (config.choices, None),
    }
    for name, (value, default) in optional.items():
        if name in accepted:
            if value is not None:
                kwargs[name] = value
        elif value != default:
            raise ValueError(f"model {config.model!r} does not take {name}={value!r}; "
                             f"its options are {', '.join(accepted)}")
    return kwargs
