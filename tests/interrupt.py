"""A Lightning callback that stops a search part-way, as a crash or a kill would."""

from __future__ import annotations

import pytorch_lightning as pl


class Interrupted(Exception):
    """Raised by ``InterruptAtEpoch``."""


class InterruptAtEpoch(pl.Callback):
    """Raise ``Interrupted`` at the start of 0-based ``epoch``."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise Interrupted(f"interrupted at the start of epoch {self.epoch}")
