"""The Lightning module that NNI's one-shot strategy wraps: loss, accuracy and the weight optimiser."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from nni.nas.evaluator.pytorch import LightningModule


class SearchModule(LightningModule):
    """Cross-entropy training of the supernet weights with SGD and a cosine learning rate.

    NNI's DARTS loop calls ``training_step`` twice per iteration: with an even
    ``batch_idx`` on a search-val batch (architecture step) and with an odd one on a
    search-train batch (weight step). Accuracy is accumulated separately for both, so
    ``search_val_acc`` is measured on the architecture-step batches, in training mode.

    Args:
        learning_rate: initial SGD learning rate of the weights.
        min_learning_rate: the cosine schedule ends here after ``epochs`` epochs.
        momentum, weight_decay: SGD settings.
        epochs: length of the cosine schedule.
    """

    def __init__(self, learning_rate: float, min_learning_rate: float, momentum: float,
                 weight_decay: float, epochs: int):
        super().__init__()
        self.learning_rate = learning_rate
        self.min_learning_rate = min_learning_rate
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.reset_epoch_metrics()

    def reset_epoch_metrics(self) -> None:
        self.epoch_metrics = {split: {"correct": 0, "seen": 0, "loss_sum": 0.0} for split in ("train", "val")}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch, batch_idx):
        images, labels = batch
        logits = self.model(images)
        loss = F.cross_entropy(logits, labels)

        split = "val" if batch_idx % 2 == 0 else "train"
        metrics = self.epoch_metrics[split]
        metrics["correct"] += int((logits.argmax(dim=1) == labels).sum())
        metrics["seen"] += int(labels.numel())
        metrics["loss_sum"] += float(loss.detach()) * labels.numel()
        self.log(f"search_{split}_loss", loss.detach(), prog_bar=False, on_step=True, on_epoch=False)
        return loss

    def epoch_summary(self) -> dict:
        """Return mean loss and accuracy of both splits over the epoch so far."""
        summary = {}
        for split, metrics in self.epoch_metrics.items():
            seen = max(metrics["seen"], 1)
            summary[f"search_{split}_acc"] = metrics["correct"] / seen
            summary[f"search_{split}_loss"] = metrics["loss_sum"] / seen
        return summary

    def on_train_epoch_start(self):
        self.reset_epoch_metrics()

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=self.learning_rate, momentum=self.momentum,
                                    weight_decay=self.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.epochs,
                                                               eta_min=self.min_learning_rate)
        return [optimizer], [scheduler]
