"""Registry of ready-made models that ``noisydarts train``, ``profile`` and ``export`` build by name.

The DARTS CIFAR networks are registered here. Other model families register themselves from
their own ``zoo`` modules, which this module imports on first use when they are installed.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

from torch import nn

from .darts.genotype import Genotype, format_genotype, parse_genotype
from .darts.network import DartsCifarNetwork
from .darts.zoo import get_genotype

logger = logging.getLogger(__name__)

#: Modules that register more models when imported; a missing one is skipped.
PLUGIN_MODULES = ("nni_noisydarts.mobilenetv2.zoo",)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    description: str


_REGISTRY: Dict[str, ModelEntry] = {}
_plugins_loaded = False


def register_model(name: str, builder: Callable[..., nn.Module], description: str, replace: bool = False) -> None:
    """Register ``builder`` under ``name``; ``builder(**kwargs)`` must return an ``nn.Module``.

    Registering a name twice raises ValueError unless ``replace`` is true or the builder is the same.
    """
    name = name.lower()
    existing = _REGISTRY.get(name)
    if existing is not None and not replace and existing.builder is not builder:
        raise ValueError(f"model name {name!r} is already registered ({existing.description}); "
                         "pick another name or pass replace=True")
    _REGISTRY[name] = ModelEntry(name, builder, description)


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for module_name in PLUGIN_MODULES:
        try:
            importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            # Only a missing plug-in (or its package) is expected; a broken import inside it is a bug.
            if error.name is None or not module_name.startswith(error.name):
                raise
            logger.debug("model plug-in %s is not installed; its models are not registered", module_name)


def list_models() -> List[ModelEntry]:
    """Return all registered models sorted by name."""
    _load_plugins()
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def get_entry(name: str) -> ModelEntry:
    """Return the entry of ``name``; raise ValueError listing the known names when it is not registered."""
    _load_plugins()
    entry = _REGISTRY.get(name.lower())
    if entry is None:
        known = ", ".join(sorted(_REGISTRY)) or "(none)"
        raise ValueError(f"unknown model name {name!r}; registered models: {known}")
    return entry


def build_model(name: str, **kwargs) -> nn.Module:
    """Build registered model ``name`` with ``kwargs`` and record ``arch_spec`` on it for checkpoints.

    A builder may set ``arch_spec`` itself, as the DARTS entries do to record their genotype.
    Otherwise the spec is the model name and ``kwargs``, which must then be JSON-like values.
    """
    entry = get_entry(name)
    model = entry.builder(**kwargs)
    if getattr(model, "arch_spec", None) is None:
        model.arch_spec = {"model": entry.name, "kwargs": dict(kwargs)}
    return model


# --- DARTS CIFAR networks ---------------------------------------------------------------------

def build_darts_cifar(genotype, width: int = 36, cells: int = 20, num_classes: int = 10,
                      auxiliary: bool = True, dropout: float = 0.0) -> DartsCifarNetwork:
    """Build the DARTS CIFAR evaluation network from a ``Genotype``, a zoo name or a genotype string."""
    if isinstance(genotype, str):
        genotype = resolve_genotype_text(genotype)
    model = DartsCifarNetwork(genotype, width=width, cells=cells, num_classes=num_classes,
                              auxiliary=auxiliary, dropout=dropout)
    model.arch_spec = {
        "genotype": format_genotype(genotype),
        "kwargs": {"width": width, "cells": cells, "num_classes": num_classes,
                   "auxiliary": auxiliary, "dropout": dropout},
    }
    return model


def resolve_genotype_text(text: str) -> Genotype:
    """Return the zoo genotype named ``text``, or parse ``text`` as a genotype string."""
    stripped = text.strip()
    if stripped.startswith(("Genotype", "(", "{")):
        return parse_genotype(stripped)
    return get_genotype(stripped)


#: Registry names of the DARTS CIFAR networks and the zoo genotype each one builds.
DARTS_CIFAR_MODELS = {f"{name}-cifar": name for name in ("noisydarts-a", "noisydarts-b", "darts-v2")}


def _darts_builder(genotype_name: str) -> Callable[..., nn.Module]:
    # The model records its genotype rather than its registry name, so a checkpoint loads even
    # where the registry lacks that name, and both spellings of one architecture compare equal.
    def builder(width: int = 36, cells: int = 20, num_classes: int = 10, auxiliary: bool = True,
                dropout: float = 0.0) -> nn.Module:
        return build_darts_cifar(get_genotype(genotype_name), width=width, cells=cells,
                                 num_classes=num_classes, auxiliary=auxiliary, dropout=dropout)
    builder.__name__ = f"build_{genotype_name.replace('-', '_')}_cifar"
    return builder


for _genotype_name, _description in (
    ("noisydarts-a", "NoisyDARTS-a CIFAR network, 3,257,110 parameters at width 36 and 20 cells"),
    ("noisydarts-b", "NoisyDARTS-b (released genotype) CIFAR network, 3,097,918 parameters at width 36 and 20 cells"),
    ("darts-v2", "DARTS V2 (Liu et al. 2019) CIFAR network, 3,349,342 parameters at width 36 and 20 cells"),
):
    register_model(f"{_genotype_name}-cifar", _darts_builder(DARTS_CIFAR_MODELS[f"{_genotype_name}-cifar"]),
                   _description)


def build_from_arch(arch: dict) -> nn.Module:
    """Rebuild a model from an architecture spec: ``{"model": name, "kwargs": {...}}`` or ``{"genotype": text, "kwargs": {...}}``."""
    if not isinstance(arch, dict):
        raise ValueError(f"architecture spec must be a dict, got {type(arch).__name__}")
    kwargs = dict(arch.get("kwargs") or {})
    if "model" in arch:
        return build_model(arch["model"], **kwargs)
    if "genotype" in arch:
        return build_darts_cifar(arch["genotype"], **kwargs)
    raise ValueError(f"architecture spec {arch!r} names neither 'model' nor 'genotype'")


def normalize_arch(arch: Optional[dict]) -> Optional[dict]:
    """Return ``arch`` in a canonical form so that equal architectures compare equal.

    The genotype becomes its canonical text form and the builder's defaults fill the kwargs
    that were not given.
    """
    if arch is None:
        return None
    arch = {**arch, "kwargs": dict(arch.get("kwargs") or {})}
    if arch.get("model", "").lower() in DARTS_CIFAR_MODELS:
        arch["genotype"] = get_genotype(DARTS_CIFAR_MODELS[arch.pop("model").lower()])
    if "genotype" in arch:
        genotype = arch["genotype"]
        genotype = resolve_genotype_text(genotype) if isinstance(genotype, str) else genotype
        arch["genotype"] = format_genotype(genotype)
        builder = build_darts_cifar
    elif "model" in arch:
        arch["model"] = arch["model"].lower()
        builder = get_entry(arch["model"]).builder
    else:
        return arch

    try:
        bound = inspect.signature(builder).bind_partial(**arch["kwargs"])
    except TypeError as error:
        raise ValueError(f"architecture spec {arch!r} has kwargs its builder does not accept: {error}") from None
    bound.apply_defaults()
    arch["kwargs"] = {key: value for key, value in bound.arguments.items()
                      if key != "genotype" and not key.startswith("_")}
    return arch
