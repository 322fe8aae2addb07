"""The training loop: epochs of SGD steps, evaluation, per-epoch checkpoints, resume and the results file.

An output folder of a run contains:

* ``config.json``: the settings of the run;
* ``last.pt``: a checkpoint after every epoch, with the optimizer and EMA state needed to resume;
* ``model.pt``: the evaluated weights at the end (the EMA weights when EMA is on);
* ``results.json``: the final test accuracy and loss, the parameter count and the per-epoch history.
"""

from __future__ import annotations

import logging
import random
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..checkpoint import load_weights, save_checkpoint
from ..io import format_duration, write_json_atomic
from ..profiling import count_parameters
from .config import TrainConfig
from .datasets import build_datasets, build_loaders
from .ema import ModelEma
from .models import build_network, check_network_config
from .schedule import learning_rate_at

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
LAST_CHECKPOINT = "last.pt"
FINAL_CHECKPOINT = "model.pt"
RESULTS_FILE = "results.json"

#: Module-name prefixes left out of reported parameter counts (training-only heads).
TRAINING_ONLY_MODULES = ("auxiliary_head",)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"invalid device {name!r}; expected 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; pass --device cpu")
    return device


def check_output_dir(output: Path, resume: Optional[Union[str, Path]], overwrite: bool) -> Optional[Path]:
    """Return the checkpoint to resume from, or None. Raise before anything is written over earlier results."""
    if resume is not None:
        path = output / LAST_CHECKPOINT if str(resume) == "auto" else Path(resume)
        if not path.is_file():
            raise FileNotFoundError(f"cannot resume: checkpoint {str(path)!r} not found; "
                                    "drop --resume or pass the path of a last.pt")
        return path

    if output.exists() and not output.is_dir():
        raise ValueError(f"output {str(output)!r} exists and is not a folder; pass another --output")
    if not overwrite:
        for name, state in ((RESULTS_FILE, "a finished run"), (LAST_CHECKPOINT, "an unfinished run")):
            if (output / name).exists():
                raise ValueError(f"output folder {str(output)!r} already contains {name} from {state}; pass --resume "
                                 "to continue it, --overwrite to replace it, or another --output")
    return None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def compute_loss(output, targets: torch.Tensor, criterion: nn.Module, aux_weight: float):
    """Return ``(loss, logits)``; a ``(logits, aux_logits)`` output adds ``aux_weight`` times the auxiliary loss."""
    if isinstance(output, (tuple, list)):
        logits, aux_logits = output
        return criterion(logits, targets) + aux_weight * criterion(aux_logits, targets), logits
    return criterion(output, targets), output


def train_one_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer, criterion: nn.Module,
                    config: TrainConfig, device: torch.device, ema: Optional[ModelEma], step: int,
                    total_steps: int, warmup_steps: int, epoch: int) -> Dict[str, float]:
    """Run one epoch of SGD steps starting at global step ``step``; return mean loss, accuracy and the new step."""
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    progress = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False, dynamic_ncols=True,
                    disable=not sys.stderr.isatty())
    for images, targets in progress:
        lr = learning_rate_at(step, total_steps, config.lr, config.lr_min, warmup_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr

        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        loss, logits = compute_loss(model(images), targets, criterion, config.aux_weight)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()} at epoch {epoch + 1}, step {step}; "
                                     "lower --lr or enable gradient clipping")

        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        if ema is not None:
            ema.update(model)
        step += 1

        batch = targets.shape[0]
        loss_sum += loss.item() * batch
        correct += int((logits.argmax(dim=1) == targets).sum())
        seen += batch
        progress.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{100 * correct / seen:.1f}%", lr=f"{lr:.4g}")

    return {"train_loss": loss_sum / max(seen, 1), "train_accuracy": correct / max(seen, 1), "step": step, "lr": lr}


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device) -> Dict[str, float]:
    """Return mean cross-entropy, top-1 and top-5 accuracy (fractions) of ``model`` in eval mode on ``loader``."""
    was_training = model.training
    model.eval()
    criterion = nn.CrossEntropyLoss(reduction="sum")
    loss_sum, top1, top5, seen = 0.0, 0, 0, 0
    for images, targets in loader:
        images, targets = images.to(device), targets.to(device)
        logits = model(images)
        loss_sum += criterion(logits, targets).item()
        ranked = logits.topk(min(5, logits.shape[1]), dim=1).indices
        top1 += int((ranked[:, 0] == targets).sum())
        top5 += int((ranked == targets[:, None]).any(dim=1).sum())
        seen += targets.shape[0]
    model.train(was_training)
    return {"test_loss": loss_sum / max(seen, 1), "test_accuracy": top1 / max(seen, 1),
            "test_top5_accuracy": top5 / max(seen, 1)}


def describe_arch(arch: dict) -> str:
    """Return a one-line description of an architecture spec: the model name or genotype, then its options."""
    options = ", ".join(f"{key}={value}" for key, value in arch.get("kwargs", {}).items())
    return f"{arch.get('model') or arch.get('genotype')} ({options})"


def run_training(config: TrainConfig, output_dir: Union[str, Path], resume: Optional[Union[str, Path]] = None,
                 overwrite: bool = False) -> dict:
    """Train the network of ``config``, writing checkpoints and results to ``output_dir``; return the results.

    ``resume`` is ``"auto"`` (``output_dir/last.pt``) or a checkpoint path. Every input check runs
    before the first file is written, so a rejected run leaves ``output_dir`` as it was.
    """
    config.validate()
    output = Path(output_dir).expanduser()
    resume_path = check_output_dir(output, resume, overwrite)
    check_network_config(config)
    device = resolve_device(config.device)
    seed_everything(config.seed)

    train_set, test_set, num_classes = build_datasets(config)
    model = build_network(config, num_classes).to(device)
    arch = model.arch_spec
    parameters = count_parameters(model, exclude=TRAINING_ONLY_MODULES)
    logger.info("model: %s, %d parameters without training-only heads, device %s",
                describe_arch(arch), parameters, device)

    train_loader, test_loader = build_loaders(config, train_set, test_set, pin_memory=device.type == "cuda")
    if len(train_loader) == 0:
        raise ValueError(f"the training set of {len(train_set)} images yields no batch; lower --batch-size")
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay, nesterov=config.nesterov and config.momentum > 0)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    ema = ModelEma(model, config.ema_decay) if config.ema_decay > 0 else None

    steps_per_epoch = len(train_loader)
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = steps_per_epoch * config.warmup_epochs
    start_epoch, step, history = 0, 0, []
    if resume_path is not None:
        start_epoch, step, history = _restore(resume_path, model, optimizer, ema, arch, device)

    output.mkdir(parents=True, exist_ok=True)
    write_json_atomic(output / CONFIG_FILE, config.to_dict())

    metrics: Dict[str, float] = {}
    started = time.monotonic()
    for epoch in range(start_epoch, config.epochs):
        epoch_started = time.monotonic()
        if hasattr(model, "drop_path_prob"):
            # Linear ramp from 0 at the first epoch towards drop_path_prob at the last.
            model.drop_path_prob = config.drop_path_prob * epoch / config.epochs

        stats = train_one_epoch(model, train_loader, optimizer, criterion, config, device, ema, step,
                                total_steps, warmup_steps, epoch)
        step = stats.pop("step")
        record = {"epoch": epoch + 1, **stats}

        last_epoch = epoch + 1 == config.epochs
        if last_epoch or (config.eval_interval > 0 and (epoch + 1) % config.eval_interval == 0):
            metrics = evaluate(ema.module if ema is not None else model, test_loader, device)
            record.update(metrics)
        history.append(record)

        save_checkpoint(output / LAST_CHECKPOINT, model, arch=arch, extra={
            "epoch": epoch + 1, "step": step, "optimizer": optimizer.state_dict(),
            "ema": ema.state_dict() if ema is not None else None, "history": history, "config": config.to_dict(),
        })

        elapsed = time.monotonic() - started
        remaining = elapsed / (epoch + 1 - start_epoch) * (config.epochs - epoch - 1)
        test_text = f", test loss {metrics['test_loss']:.4f}, test acc {100 * metrics['test_accuracy']:.2f}%" \
            if "test_accuracy" in record else ""
        logger.info("epoch %d/%d: train loss %.4f, train acc %.2f%%%s, lr %.5f, %s, ETA %s",
                    epoch + 1, config.epochs, record["train_loss"], 100 * record["train_accuracy"], test_text,
                    record["lr"], format_duration(time.monotonic() - epoch_started), format_duration(remaining))

    if not metrics:
        # Resumed from a checkpoint of the last epoch: nothing was trained, so evaluate it now.
        metrics = evaluate(ema.module if ema is not None else model, test_loader, device)

    final_model = ema.module if ema is not None else model
    save_checkpoint(output / FINAL_CHECKPOINT, final_model, arch=arch, extra={"metrics": metrics, "epochs": config.epochs})
    results = {
        **metrics,
        "evaluated_weights": "ema" if ema is not None else "raw",
        "epochs": config.epochs,
        "train_images": len(train_set),
        "test_images": len(test_set),
        "parameters": parameters,
        "arch": arch,
        "checkpoint": FINAL_CHECKPOINT,
        "history": history,
        "config": config.to_dict(),
    }
    write_json_atomic(output / RESULTS_FILE, results)
    logger.info("finished: test accuracy %.2f%% on %d images; results in %s",
                100 * metrics["test_accuracy"], len(test_set), output / RESULTS_FILE)
    return results


def _restore(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, ema: Optional[ModelEma],
             arch: dict, device: torch.device):
    """Load the weights, optimizer and EMA state of a ``last.pt``; return ``(epoch, step, history)``."""
    extra = load_weights(model, path, arch=arch, map_location=device)
    if "optimizer" not in extra or "epoch" not in extra:
        raise ValueError(f"checkpoint {str(path)!r} has no optimizer state; resume from a last.pt of 'noisydarts train'")
    optimizer.load_state_dict(extra["optimizer"])
    if ema is not None:
        if extra.get("ema") is None:
            logger.warning("checkpoint %s has no EMA state; the EMA restarts from the loaded weights", path)
            ema.module.load_state_dict(model.state_dict())
        else:
            ema.load_state_dict(extra["ema"])
    logger.info("resumed from %s after epoch %d", path, extra["epoch"])
    # NOTE: random-number states are not saved, so a resumed run does not repeat the data order
    # of an uninterrupted one.
    return int(extra["epoch"]), int(extra["step"]), list(extra.get("history", []))


__all__: List[str] = [
    "run_training", "train_one_epoch", "evaluate", "compute_loss", "check_output_dir", "resolve_device",
]
