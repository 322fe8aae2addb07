"""Command-line options and checks that several ``noisydarts`` sub-commands share."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from ..data import default_cifar_root
from ..noise import MIXINGS, NOISE_TYPES
from . import UsageError


def add_noise_options(group) -> None:
    """Add ``--lam --mu --noise --mixing --noise-decay-epochs`` to an argument group."""
    group.add_argument("--lam", type=float, default=0.2, help="noise strength lambda; 0 gives plain DARTS (default: 0.2)")
    group.add_argument("--mu", type=float, default=None,
                       help="noise mean (default: 0 for additive, 1 for multiplicative: both unbiased)")
    group.add_argument("--noise", choices=NOISE_TYPES, default="gaussian", help="noise distribution (default: gaussian)")
    group.add_argument("--mixing", choices=MIXINGS, default="additive", help="how noise combines with the skip output")
    group.add_argument("--noise-decay-epochs", type=int, default=None,
                       help="shrink the noise to 0 along a cosine over this many epochs (default: no decay)")


def noise_settings(args: argparse.Namespace) -> dict:
    """Return the noise options as ``NoiseConfig`` keyword arguments."""
    return {"lam": args.lam, "mu": args.mu, "noise_type": args.noise, "mixing": args.mixing,
            "decay_epochs": args.noise_decay_epochs}


def data_root_or_default(data_root: Optional[Path], must_exist: bool = True) -> Optional[Path]:
    """Return ``--data-root``, else ``$NOISYDARTS_DATA/cifar10-jpeg``, else None.

    Raises UsageError, before any output is written, when ``must_exist`` is set and the folder
    does not exist. A download creates the folder, so it passes ``must_exist=False``.
    """
    root = data_root if data_root is not None else default_cifar_root()
    if must_exist and root is not None:
        require_folder(root, "--data-root" if data_root is not None else "$NOISYDARTS_DATA/cifar10-jpeg")
    return Path(root).expanduser() if root is not None else None


def require_folder(path, source: str) -> None:
    """Raise UsageError naming ``source`` (the option or variable that gave ``path``) unless it is a folder."""
    if not Path(path).expanduser().is_dir():
        raise UsageError(f"{source} {str(path)!r} not found or not a folder; pass --data-root with an existing "
                         "data set folder")
