"""Checkpoints that carry their own architecture, so a model can be rebuilt without its training command.

A checkpoint is a ``torch.save`` dictionary::

    {"format": "nni-noisydarts-checkpoint", "version": 1,
     "arch": {"model": NAME, "kwargs": {...}} or {"genotype": TEXT, "kwargs": {...}},
     "state_dict": {...}, "extra": {...}}

``extra`` contains whatever the caller adds (epoch, optimizer state, metrics). Everything is
loaded with ``torch.load(weights_only=True)``, so ``extra`` may contain tensors, numbers,
strings, lists and dicts but no arbitrary objects.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from .zoo import build_from_arch, normalize_arch

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "nni-noisydarts-checkpoint"
CHECKPOINT_VERSION = 1

PathLike = Union[str, os.PathLike]


def save_checkpoint(path: PathLike, model: nn.Module, arch: Optional[dict] = None, extra: Optional[dict] = None) -> Path:
    """Write ``model``'s weights, its architecture spec and ``extra`` to ``path`` atomically.

    ``arch`` defaults to ``model.arch_spec``, which the zoo builders set. The file is written
    next to ``path`` under a temporary name and then renamed over it, so an interrupted save
    never leaves a truncated checkpoint behind.
    """
    path = Path(path)
    arch = arch if arch is not None else getattr(model, "arch_spec", None)
    if arch is None:
        raise ValueError(f"no architecture spec for the checkpoint {str(path)!r}: pass arch={{'model': NAME, "
                         "'kwargs': {...}} or {'genotype': TEXT, 'kwargs': {...}}, or build the model through the zoo")

    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "arch": normalize_arch(arch),
        "state_dict": model.state_dict(),
        "extra": extra or {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            torch.save(payload, handle)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    logger.debug("saved checkpoint %s", path)
    return path


def read_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> dict:
    """Load and validate a checkpoint dictionary written by ``save_checkpoint``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} not found; pass the path of a .pt file written by "
                                "'noisydarts train'")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several unrelated types for a corrupt or foreign file.
        raise ValueError(f"cannot read checkpoint {str(path)!r}: {error}") from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{str(path)!r} is not an nni-noisydarts checkpoint (no '{CHECKPOINT_FORMAT}' format tag)")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"checkpoint {str(path)!r} has format version {payload.get('version')!r}; "
                         f"this version of nni-noisydarts reads version {CHECKPOINT_VERSION}")
    return payload


def load_model(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> nn.Module:
    """Rebuild the model described by the checkpoint at ``path`` and load its weights."""
    payload = read_checkpoint(path, map_location)
    model = build_from_arch(payload["arch"])
    model.load_state_dict(payload["state_dict"])
    model.arch_spec = payload["arch"]
    return model


def load_weights(model: nn.Module, path: PathLike, arch: Optional[dict] = None,
                 map_location: Union[str, torch.device] = "cpu") -> dict:
    """Load the weights at ``path`` into ``model`` and return the checkpoint's ``extra``.

    ``arch`` defaults to ``model.arch_spec``. A checkpoint of a different architecture raises
    ValueError naming both, before any weight is copied.
    """
    payload = read_checkpoint(path, map_location)
    arch = arch if arch is not None else getattr(model, "arch_spec", None)
    if arch is None:
        raise ValueError("the model has no architecture spec to check the checkpoint against; "
                         "pass arch= or build the model through the zoo")

    expected = normalize_arch(arch)
    found = payload["arch"]
    if expected != found:
        raise ValueError(f"checkpoint {str(path)!r} contains architecture {found} but the model is {expected}; "
                         "load it with load_model() or build the model with the checkpoint's architecture")
    model.load_state_dict(payload["state_dict"])
    return payload["extra"]
