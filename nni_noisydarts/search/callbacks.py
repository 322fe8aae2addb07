"""Lightning callbacks of the search: per-epoch seeding, alpha records and a progress bar with ETA."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, List, Optional

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import TQDMProgressBar

from ..io import format_duration, write_json_atomic
from ..strategy import noisy_skips
from .adapters import SpaceAdapter

logger = logging.getLogger(__name__)


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed of one epoch: it depends only on the run seed and the epoch, so a resumed run draws the same numbers."""
    return seed * 100_003 + epoch


class EpochSampler(torch.utils.data.Sampler):
    """Random order that is a function of ``(seed, epoch)``; Lightning calls ``set_epoch`` before each epoch.

    Each yielded key is ``epoch * size + index`` so that ``SeededDataset`` can seed the
    augmentation of every sample from its epoch and index.
    """

    def __init__(self, size: int, seed: int):
        self.size = size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        offset = self.epoch * self.size
        return iter((torch.randperm(self.size, generator=generator) + offset).tolist())

    def __len__(self) -> int:
        return self.size


class SeededDataset(torch.utils.data.Dataset):
    """Apply a data set's random augmentation under a seed drawn from ``(seed, epoch, index)``.

    Lightning prefetches batches, and loader workers have generators of their own, so
    augmentation that draws from the global generator would differ between a resumed and
    an uninterrupted run. Seeding per sample makes the data a function of the epoch only.
    Keys come from ``EpochSampler``.
    """

    def __init__(self, dataset, seed: int):
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int):
        epoch, index = divmod(int(key), len(self.dataset))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(epoch_seed(self.seed, epoch) * 1_000_003 + index)
            return self.dataset[index]


class BatchSeedCallback(pl.Callback):
    """Reseed torch's global generator before every batch, from ``(seed, epoch, batch index)``.

    The noise draws from the global generator. Lightning and the data loaders also draw
    from it at moments that differ between a resumed and an uninterrupted run, so a seed
    per batch is what makes the noise of a resumed run equal.
    """

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        torch.manual_seed(epoch_seed(self.seed, trainer.current_epoch) * 1_000_003 + batch_idx + 1)


class SearchRecorder(pl.Callback):
    """Record the softmax weights, the derived architecture and the metrics after every epoch.

    The records go to ``alphas.json`` in the output folder after each epoch (atomically),
    and to ``on_epoch_end(record)`` when given (the NNI trial reports through it).
    """

    def __init__(self, adapter: SpaceAdapter, output: Path, history: List[dict],
                 on_epoch_end: Optional[Callable[[dict], None]] = None):
        self.adapter = adapter
        self.output = Path(output)
        self.history = history
        self.on_epoch_end = on_epoch_end
        self.started = None

    def on_train_start(self, trainer, pl_module):
        self.started = time.monotonic()
        self.first_epoch = trainer.current_epoch

    def on_train_epoch_start(self, trainer, pl_module):
        # The scheduler steps at the end of the epoch, so read the rate the epoch trains with now.
        self.epoch_learning_rate = trainer.optimizers[0].param_groups[0]["lr"]

    def on_train_epoch_end(self, trainer, pl_module):
        probs = pl_module.export_probs()
        architecture = self.adapter.derive(probs)
        skips = noisy_skips(pl_module)

        record = {
            "epoch": trainer.current_epoch,
            "learning_rate": self.epoch_learning_rate,
            "noise_scale": skips[0].scale if skips else None,
            **pl_module.training_module.epoch_summary(),
            "architecture": self.adapter.to_text(architecture),
            "skip_counts": self.adapter.skip_counts(architecture),
            "weights": probs,
        }
        self.history.append(record)
        write_json_atomic(self.output / "alphas.json", self.history)

        done = trainer.current_epoch + 1 - self.first_epoch
        elapsed = time.monotonic() - self.started
        remaining = elapsed / done * (trainer.max_epochs - trainer.current_epoch - 1)
        logger.info(
            "epoch %d/%d: search-train acc %.4f, search-val acc %.4f, skips %s, elapsed %s, ETA %s",
            trainer.current_epoch + 1, trainer.max_epochs, record["search_train_acc"],
            record["search_val_acc"], record["skip_counts"], format_duration(elapsed), format_duration(remaining),
        )
        if self.on_epoch_end is not None:
            self.on_epoch_end(record)


class ProgressBarWithETA(TQDMProgressBar):
    """Lightning's progress bar, titled ``epoch i/N``, with the ETA of the whole search in its postfix."""

    def on_train_start(self, trainer, pl_module):
        super().on_train_start(trainer, pl_module)
        self._started = time.monotonic()
        self._first_epoch = trainer.current_epoch

    def on_train_epoch_start(self, trainer, pl_module):
        super().on_train_epoch_start(trainer, pl_module)
        self.train_progress_bar.set_description(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}")

    def get_metrics(self, trainer, pl_module):
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        total = self.total_train_batches
        if not total or total == float("inf"):
            return items

        epochs_left = trainer.max_epochs - self._first_epoch
        done = (trainer.current_epoch - self._first_epoch) + self.train_progress_bar.n / total
        if done > 0:
            elapsed = time.monotonic() - self._started
            items["search ETA"] = format_duration(elapsed / done * (epochs_left - done))
        return items
