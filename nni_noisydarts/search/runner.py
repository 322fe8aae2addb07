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
    """The search stopped on SIGTERM. The records and checkpoints of the completed epochs are kept."""

    #: Exit status of the ``noisydarts`` command: 128 + SIGTERM, as if the signal had ended it.
    exit_status = 128 + signal.SIGTERM

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


def _check_output(config: SearchConfig) -> None:
    """Refuse to start a fresh search over the results of another one."""
    output = Path(config.output)
    if config.resume:
        if not (output / LAST_CHECKPOINT).is_file():
            raise FileNotFoundError(
                f"--resume: no checkpoint at {str(output / LAST_CHECKPOINT)!r}; run without --resume to start a search")
        return
    if (output / CONFIG_FILE).exists() or (output / "checkpoints").exists():
        raise ValueError(
            f"output folder {str(output)!r} already contains a search; pass --resume to continue it "
            "or choose another --output")


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
    _check_output(config)
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    adapter = get_adapter(config.space)

    # Data: the training set halves into search-train (weights) and search-val (alphas).
    train_set = adapter.load_train_set(config)  # before build_space: it fixes the number of classes
    search_train, search_val = datasets.search_split(train_set, seed=config.seed, subset=config.subset)
    logger.info("search on %d images: %d search-train, %d search-val",
                len(search_train) + len(search_val), len(search_train), len(search_val))

    # The space and the alpha initialisation draw from torch's global generator.
    torch.manual_seed(config.seed)
    space = adapter.build_space(config)
    strategy = NoisyDARTS(noise=config.noise, arc_learning_rate=config.arc_learning_rate,
                          gradient_clip_val=config.gradient_clip,
                          channels_last={"auto": None, "cpu": True, "gpu": False}[config.device])

    history: List[dict] = []
    if config.resume:
        history = _load_history(output)
    else:
        write_json_atomic(output / CONFIG_FILE, config.to_dict())

    recorder = SearchRecorder(adapter, output, history, on_epoch_end)
    checkpoint = ModelCheckpoint(
        dirpath=output / "checkpoints", filename="epoch{epoch:03d}", auto_insert_metric_name=False,
        save_last=True, save_top_k=-1, every_n_epochs=1, save_on_train_epoch_end=True,
    )
    trainer = Trainer(
        max_epochs=config.epochs,
        accelerator={"auto": "auto", "cpu": "cpu", "gpu": "gpu"}[config.device],
        devices=1,
        callbacks=[BatchSeedCallback(config.seed), recorder, ProgressBarWithETA(), *extra_callbacks, checkpoint],
        logger=CSVLogger(str(output), name="logs", version=""),
        log_every_n_steps=10,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    module = SearchModule(learning_rate=config.learning_rate, min_learning_rate=config.min_learning_rate,
                          momentum=config.momentum, weight_decay=config.weight_decay, epochs=config.epochs)
    fit_kwargs = {"ckpt_path": str(output / LAST_CHECKPOINT)} if config.resume else None
    evaluator = Lightning(module, trainer, train_dataloaders=_loader(search_train, config, 1),
                          val_dataloaders=_loader(search_val, config, 2), fit_kwargs=fit_kwargs)

    started = time.monotonic()
    experiment = NasExperiment(space, evaluator, strategy)
    experiment.config.experiment_working_directory = str(output / "nni")
    try:
        experiment.run()
    except SIGTERMException as error:
        # Lightning (pytorch-lightning 2.6) stops at the next batch or epoch boundary after SIGTERM
        # and raises SIGTERMException, a SystemExit with status 0 that would report success.
        raise SearchInterrupted(
            f"received SIGTERM after {len(history)} of {config.epochs} epochs. The completed epochs are saved in "
            f"{str(output)!r}; run again with --resume --output {str(output)!r} to continue") from error
    finally:
        experiment.stop()
    if not history:
        raise RuntimeError("the search finished without completing an epoch; see the log above")
    logger.info("search finished in %s", format_duration(time.monotonic() - started))

    return _write_final_outputs(adapter, config, history, output)


def _load_history(output: Path) -> List[dict]:
    """Load the per-epoch records up to the epoch stored in ``last.ckpt``."""
    path = output / HISTORY_FILE
    history = read_json(path) if path.is_file() else []
    completed = torch.load(output / LAST_CHECKPOINT, map_location="cpu", weights_only=False)["epoch"]
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
