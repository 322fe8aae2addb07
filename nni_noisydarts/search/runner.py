"""Run one NoisyDARTS search end to end: data, NNI experiment, records, checkpoints, final outputs.

Output folder layout::

    search_config.json      settings of the run (resume reads them back)
    alphas.json             per epoch: softmax weights of every edge, metrics, derived architecture
    checkpoints/            epochNNN.ckpt after every epoch, last.ckpt
    genotype.txt / .json    (DARTS) or choices.txt / .json (MobileNetV2): the final architecture
    result.json             final architecture, skip counts and metrics
    plots/*.png
"""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import pytorch_lightning as pl

import torch
from nni.nas.evaluator.pytorch import DataLoader, Lightning, Trainer
from nni.nas.experiment import NasExperiment
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.utilities.exceptions import SIGTERMException

from .. import data as datasets
from ..io import format_duration, read_json, write_json_atomic, write_text_atomic
from ..noise import NoiseConfig
from ..strategy import NoisyDARTS
from .adapters import get_adapter
from .callbacks import BatchSeedCallback, EpochSampler, ProgressBarWithETA, SearchRecorder, SeededDataset
from .config import SearchConfig
from .module import SearchModule

logger = logging.getLogger(__name__)


class SearchInterrupted(RuntimeError):
    """The search stopped on SIGTERM or SIGINT. The records and checkpoints of the completed epochs are kept.

    ``exit_status`` is what the ``noisydarts`` command exits with: 128 plus the signal number,
    as if the signal had ended the process.
    """

    def __init__(self, message: str, exit_status: int):
        super().__init__(message)
        self.exit_status = exit_status


CONFIG_FILE = "search_config.json"
HISTORY_FILE = "alphas.json"
LAST_CHECKPOINT = "checkpoints/last.ckpt"


def load_search_config(output: Path) -> SearchConfig:
    """Read back the settings that a search stored in ``output``."""
    path = Path(output) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {CONFIG_FILE} in {str(output)!r}; --resume needs the --output folder of an earlier search")
    values = read_json(path)
    values["noise"] = NoiseConfig(**values["noise"])
    values["data_root"] = Path(values["data_root"]) if values["data_root"] else None
    values["output"] = Path(values["output"])
    return SearchConfig(**values)


def _check_output(config: SearchConfig) -> Optional[Path]:
    """Reject a fresh search over the results of another one.

    Returns the checkpoint that a resumed search continues from, or None when the search
    starts at its first epoch.
    """
    output = Path(config.output)
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output {str(output)!r} exists and is not a folder; choose another --output")

    if config.resume:
        checkpoint = output / LAST_CHECKPOINT
        if checkpoint.is_file():
            return checkpoint
        if not (output / CONFIG_FILE).is_file():
            raise FileNotFoundError(
                f"--resume: no checkpoint at {str(checkpoint)!r}; run without --resume to start a search")
        logger.warning("%s has no checkpoint because its search stopped before the first epoch ended; "
                       "starting again from the first epoch with the stored settings", output)
        return None

    if (output / CONFIG_FILE).exists() or (output / "checkpoints").exists():
        raise ValueError(
            f"output folder {str(output)!r} already contains a search; pass --resume to continue it "
            "or choose another --output")
    return None


def _check_subset(config: SearchConfig, train_set) -> None:
    """Reject a subset too small to give both halves of the split one image per class."""
    classes = len(getattr(train_set, "classes", ())) or None
    if config.subset is not None and classes is not None and config.subset < 2 * classes:
        raise ValueError(f"--subset {config.subset} is too small for {classes} classes; pass at least "
                         f"{2 * classes} so that search-train and search-val can each get one image per class")
    if config.subset is not None and config.subset > len(train_set):
        logger.warning("--subset %d exceeds the %d training images; the search uses all of them",
                       config.subset, len(train_set))


def _loader(dataset, config: SearchConfig, seed_offset: int) -> DataLoader:
    return DataLoader(
        SeededDataset(dataset, config.seed + seed_offset),
        batch_size=config.batch_size,
        sampler=EpochSampler(len(dataset), config.seed + seed_offset),
        num_workers=config.workers,
        drop_last=len(dataset) >= 2 * config.batch_size,
        persistent_workers=config.workers > 0,
    )


def run_search(config: SearchConfig, on_epoch_end: Optional[Callable[[dict], None]] = None,
               extra_callbacks: Sequence[pl.Callback] = ()) -> dict:
    """Search an architecture with NoisyDARTS and write everything to ``config.output``.

    Returns the content of ``result.json``. With ``config.resume`` the search continues from
    ``checkpoints/last.ckpt`` and ends where an uninterrupted run with the same seed ends.
    ``on_epoch_end`` receives each epoch's record; ``extra_callbacks`` join the Lightning trainer.
    """
    config.validate()
    resume_checkpoint = _check_output(config)
    output = Path(config.output)
    adapter = get_adapter(config.space)

    history: List[dict] = _load_history(output) if resume_checkpoint is not None else []
    if history and history[-1]["epoch"] + 1 >= config.epochs:
        logger.info("the search in %s already completed all %d epochs; rewriting its final outputs from the records",
                    output, config.epochs)
        return _write_final_outputs(adapter, config, history, output)

    # Data: the training set halves into search-train (weights) and search-val (alphas).
    train_set = adapter.load_train_set(config)  # before build_space: it fixes the number of classes
    _check_subset(config, train_set)
    search_train, search_val = datasets.search_split(train_set, seed=config.seed, subset=config.subset)
    logger.info("search on %d images: %d search-train, %d search-val",
                len(search_train) + len(search_val), len(search_train), len(search_val))

    # The space and the alpha initialisation draw from torch's global generator.
    torch.manual_seed(config.seed)
    space = adapter.build_space(config)
    strategy = NoisyDARTS(noise=config.noise, arc_learning_rate=config.arc_learning_rate,
                          gradient_clip_val=config.gradient_clip,
                          channels_last={"auto": None, "cpu": True, "gpu": False}[config.device])

    # Only now, with the settings, data and space checked, does anything go to the output folder.
    output.mkdir(parents=True, exist_ok=True)
    if not config.resume:
        write_json_atomic(output / CONFIG_FILE, config.to_dict())

    recorder = SearchRecorder(adapter, output, history, on_epoch_end)
    checkpoint = ModelCheckpoint(
        dirpath=output / "checkpoints", filename="epoch{epoch:03d}", auto_insert_metric_name=False,
        save_last=True, save_top_k=-1, every_n_epochs=1, save_on_train_epoch_end=True,
    )
    # A resumed run logs to its own folder: Lightning's CSV logger would replace metrics.csv.
    log_version = f"resumed-epoch{len(history) + 1}" if config.resume else ""
    trainer = Trainer(
        max_epochs=config.epochs,
        accelerator={"auto": "auto", "cpu": "cpu", "gpu": "gpu"}[config.device],
        devices=1,
        callbacks=[BatchSeedCallback(config.seed), recorder, ProgressBarWithETA(), *extra_callbacks, checkpoint],
        logger=CSVLogger(str(output), name="logs", version=log_version),
        log_every_n_steps=10,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    module = SearchModule(learning_rate=config.learning_rate, min_learning_rate=config.min_learning_rate,
                          momentum=config.momentum, weight_decay=config.weight_decay, epochs=config.epochs)
    fit_kwargs = {"ckpt_path": str(resume_checkpoint)} if resume_checkpoint is not None else None
    evaluator = Lightning(module, trainer, train_dataloaders=_loader(search_train, config, 1),
                          val_dataloaders=_loader(search_val, config, 2), fit_kwargs=fit_kwargs)

    started = time.monotonic()
    experiment = NasExperiment(space, evaluator, strategy)
    experiment.config.experiment_working_directory = str(output / "nni")
    try:
        experiment.run()
    except SystemExit as error:
        interruption = _interruption(error, trainer, config)
        if interruption is None:
            raise
        raise interruption from error
    finally:
        experiment.stop()
    if not history:
        raise RuntimeError("the search finished without completing an epoch; see the log above")
    logger.info("search finished in %s", format_duration(time.monotonic() - started))

    return _write_final_outputs(adapter, config, history, output)


def _interruption(error: SystemExit, trainer, config: SearchConfig) -> Optional[SearchInterrupted]:
    """Turn Lightning's exit on SIGTERM or Ctrl-C into ``SearchInterrupted``; None for any other exit.

    Lightning (pytorch-lightning 2.6) stops at the next batch or epoch boundary after SIGTERM and
    raises SIGTERMException, a SystemExit with status 0 that would report success. On Ctrl-C it
    shuts down and calls ``sys.exit(1)``, which reads like a crash.
    """
    if isinstance(error, SIGTERMException):
        name, status = "SIGTERM", 128 + signal.SIGTERM
    elif trainer.interrupted:
        name, status = "SIGINT (Ctrl-C)", 128 + signal.SIGINT
    else:
        return None

    # Ctrl-C can land between the epoch's records and its checkpoint, so count the checkpoint.
    last_epoch = _checkpoint_epoch(Path(config.output))
    output = str(config.output)
    if last_epoch is None:
        message = (f"received {name} before the first checkpoint; run again with --resume --output {output!r} "
                   "to start over with the same settings")
    else:
        message = (f"received {name} after {last_epoch + 1} of {config.epochs} epochs. The completed epochs are "
                   f"saved in {output!r}; run again with --resume --output {output!r} to continue")
    return SearchInterrupted(message, exit_status=status)


def _checkpoint_epoch(output: Path) -> Optional[int]:
    """Return the 0-based epoch stored in ``checkpoints/last.ckpt``, or None without that file."""
    path = output / LAST_CHECKPOINT
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)["epoch"]


def _load_history(output: Path) -> List[dict]:
    """Load the per-epoch records up to the epoch stored in ``last.ckpt``."""
    path = output / HISTORY_FILE
    history = read_json(path) if path.is_file() else []
    completed = _checkpoint_epoch(output)
    return [record for record in history if record["epoch"] <= completed]


def _write_final_outputs(adapter, config: SearchConfig, history: List[dict], output: Path) -> dict:
    architecture = adapter.derive(history[-1]["weights"])
    stem = "genotype" if config.space == "darts" else "choices"
    write_text_atomic(output / f"{stem}.txt", adapter.to_text(architecture) + "\n")
    write_json_atomic(output / f"{stem}.json", adapter.to_dict(architecture))

    plots = adapter.plot(history, architecture, output / "plots")
    final = history[-1]
    result = {
        "space": config.space,
        "architecture": adapter.to_text(architecture),
        "architecture_json": adapter.to_dict(architecture),
        "skip_counts": adapter.skip_counts(architecture),
        "epochs": len(history),
        "search_train_acc": final["search_train_acc"],
        "search_val_acc": final["search_val_acc"],
        "noise": config.noise.to_dict(),
        "plots": [str(path.relative_to(output)) for path in plots],
    }
    write_json_atomic(output / "result.json", result)
    logger.info("derived architecture: %s", result["architecture"])
    return result
