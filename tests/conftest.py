"""Shared fixtures. Tests that read real images find them through ``NOISYDARTS_DATA`` and skip without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

DATA_ENV = "NOISYDARTS_DATA"


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The folder named by ``NOISYDARTS_DATA`` (it contains ``cifar10-jpeg`` and ``tiny-coco``)."""
    value = os.environ.get(DATA_ENV)
    if not value:
        pytest.skip(f"{DATA_ENV} is not set; point it at the folder that contains cifar10-jpeg to run data tests")
    root = Path(value)
    if not root.is_dir():
        pytest.skip(f"{DATA_ENV}={value!r} is not a folder")
    return root


@pytest.fixture(scope="session")
def cifar_root(data_root: Path) -> Path:
    """CIFAR-10 as ImageFolder JPEGs: ``train/<class>/*.jpg`` and ``test/<class>/*.jpg``."""
    root = data_root / "cifar10-jpeg"
    if not (root / "train").is_dir() or not (root / "test").is_dir():
        pytest.skip(f"no CIFAR-10 JPEG folders under {root}; expected train/ and test/")
    return root


@pytest.fixture(scope="module")
def single_thread():
    """Run a module on one torch intra-op thread, restoring the previous count afterwards.

    On a 2-core machine shared with other jobs, two torch threads made the small tensor
    operations of these tests several times slower than one thread. One forward and backward
    pass of the tiny search supernet took about 0.8 s on one thread and 2.6 to 4.5 s on two
    (torch 2.14 on CPU).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
