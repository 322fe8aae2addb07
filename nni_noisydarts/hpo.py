"""One NNI hyper-parameter trial over the noise settings: a NoisyDARTS search, then a short training.

An NNI HPO experiment (``noisydarts.yml`` at the repository root) runs ``noisydarts trial`` once
for every setting its tuner draws. A trial

1. reads its parameters from NNI: ``lam``, ``mu``, ``noise_type``, ``mixing``, ``decay_epochs``,
   ``seed`` and ``name``, flat or grouped in one dict as an NNI ``choice`` over dicts returns them,
2. searches a DARTS cell with that noise and reports ``search_val_acc`` after every epoch as an
   intermediate result,
3. trains the derived genotype for a short budget and reports the test accuracy as the final
   result (the search-val accuracy when training is switched off), together with the genotype
   and its skip-connection counts.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import nni
from nni.runtime.trial_command_channel import TrialCommandChannel, get_default_trial_command_channel

from .io import write_json_atomic
from .noise import NoiseConfig
from .search.config import SearchConfig
from .training import TrainConfig, run_training

logger = logging.getLogger(__name__)

#: Keys a trial accepts from the tuner. Any other key is rejected, so a typo in the search space
#: fails the first trial instead of silently running the defaults.
PARAMETER_KEYS = ("name", "lam", "mu", "noise_type", "mixing", "decay_epochs", "seed")

#: Written to the trial's output root: parameters, settings and the final metrics.
TRIAL_FILE = "trial.json"


@dataclass(frozen=True)
class TrialSettings:
    """Settings that the tuner draws for one trial: a label, the skip-connection noise and the seed."""

    noise: NoiseConfig = field(default_factory=NoiseConfig)
    seed: int = 0
    name: Optional[str] = None

    def to_dict(self) -> dict:
        return {"name": self.name, "seed": self.seed, "noise": self.noise.to_dict()}


def flatten_parameters(parameters: Mapping[str, Any]) -> Dict[str, Any]:
    """Merge the dicts inside ``parameters`` into one flat dict of settings.

    A ``choice`` over dicts in the search space arrives as ``{"setting": {"lam": 0.2, ...}}``;
    NNI's nested-choice form adds a ``_name`` key, read here as ``name``. A key given at two
    places raises ValueError, because it is unclear which value the search space meant.
    """
    flat: Dict[str, Any] = {}
    origin: Dict[str, str] = {}

    def merge(values: Mapping[str, Any], where: str) -> None:
        for key, value in values.items():
            if not isinstance(key, str):
                raise ValueError(f"invalid trial parameter name {key!r} in {where}; names must be strings")
            if isinstance(value, Mapping):
                merge(value, f"{where}.{key}" if where != "parameters" else key)
                continue
            name = "name" if key == "_name" else key
            if name in flat:
                raise ValueError(f"trial parameter {name!r} is given twice ({origin[name]} and {where}); "
                                 "give each setting once in the search space")
            flat[name] = value
            origin[name] = where

    if not isinstance(parameters, Mapping):
        raise ValueError(f"trial parameters must be a dict, got {type(parameters).__name__}: {parameters!r}")
    merge(parameters, "parameters")
    return flat


def settings_from_parameters(parameters: Mapping[str, Any],
                             defaults: Optional[Mapping[str, Any]] = None) -> TrialSettings:
    """Build the trial settings from the tuner's ``parameters`` on top of ``defaults``.

    Both map keys of ``PARAMETER_KEYS`` to values. ``mu`` left out (or None) means the
    unbiased mean of the chosen mixing: 0 for additive and 1 for multiplicative noise.
    Raises ValueError naming the parameter for unknown keys and invalid values.
    """
    flat = flatten_parameters(parameters)
    unknown = sorted(set(flat) - set(PARAMETER_KEYS))
    if unknown:
        raise ValueError(f"unknown trial parameters {unknown} in {dict(parameters)!r}; "
                         f"expected keys among {', '.join(PARAMETER_KEYS)}")
    values = {**(defaults or {}), **flat}
    unknown_defaults = sorted(set(values) - set(PARAMETER_KEYS))
    if unknown_defaults:
        raise ValueError(f"unknown default trial settings {unknown_defaults}; "
                         f"expected keys among {', '.join(PARAMETER_KEYS)}")

    lam = _number("lam", values.get("lam", 0.2))
    mu = None if values.get("mu") is None else _number("mu", values["mu"])
    decay_epochs = None if values.get("decay_epochs") is None else _integer("decay_epochs", values["decay_epochs"])
    seed = _integer("seed", values.get("seed", 0))
    name = values.get("name")
    if name is not None and not isinstance(name, str):
        raise ValueError(f"invalid trial parameter name={name!r}; expected a string label")
    for key in ("noise_type", "mixing"):
        if key in values and not isinstance(values[key], str):
            raise ValueError(f"invalid trial parameter {key}={values[key]!r}; expected a string")

    try:
        noise = NoiseConfig(lam=lam, mu=mu, noise_type=values.get("noise_type", "gaussian"),
                            mixing=values.get("mixing", "additive"), decay_epochs=decay_epochs)
    except ValueError as error:
        raise ValueError(f"invalid trial parameters {dict(parameters)!r}: {error}") from error
    return TrialSettings(noise=noise, seed=seed, name=name)


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"invalid trial parameter {key}={value!r}; expected a finite number")
    return float(value)


def _integer(key: str, value: Any) -> int:
    # Numeric tuner distributions such as quniform produce floats like 50.0.
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value).is_integer():
        raise ValueError(f"invalid trial parameter {key}={value!r}; expected an integer")
    return int(value)


class TrialReporter:
    """Exchange parameters and metrics with NNI through the trial command channel of this process.

    Outside an NNI experiment the channel is NNI's standalone one: it returns empty parameters
    and logs each metric on the ``nni`` logger.

    This class sends metrics through the channel captured at construction and does not call
    ``nni.report_intermediate_result`` / ``nni.report_final_result``. The reason is that in NNI 3.0
    the one-shot search runs in the sequential execution engine (nni/nas/execution/sequential.py),
    which replaces the process-wide default channel while the search runs and leaves the NAS
    model's parameter record (parameter id 0) in ``nni.trial`` afterwards. With ``nni.report_*``
    the per-epoch results would go to the NAS engine, and the final result would carry a wrong
    parameter id, so the tuner would pair it with another trial's parameters.
    """

    def __init__(self, channel: Optional[TrialCommandChannel] = None):
        self.channel = channel if channel is not None else get_default_trial_command_channel()
        self.trial_id = nni.get_trial_id()
        self.parameter_id: Optional[int] = None
        self.intermediate_count = 0

    def receive_parameters(self) -> Dict[str, Any]:
        """Return the parameters that the tuner drew for this trial (``{}`` outside NNI)."""
        record = self.channel.receive_parameter()
        if record is None:
            raise RuntimeError("NNI sent no parameters for this trial; the experiment may be stopping")
        self.parameter_id = record["parameter_id"]
        logger.info("trial %s: parameters %s (parameter id %s)", self.trial_id, record["parameters"],
                    self.parameter_id)
        return dict(record["parameters"])

    def report_intermediate(self, metric: Dict[str, Any]) -> None:
        self.channel.send_metric(type="PERIODICAL", parameter_id=self.parameter_id, trial_job_id=self.trial_id,
                                 sequence=self.intermediate_count, value=metric)
        self.intermediate_count += 1

    def report_final(self, metric: Dict[str, Any]) -> None:
        self.channel.send_metric(type="FINAL", parameter_id=self.parameter_id, trial_job_id=self.trial_id,
                                 sequence=0, value=metric)


def default_output_root() -> Path:
    """Return the trial's NNI output folder (``NNI_OUTPUT_DIR``), else ``runs/trials/<trial id>``."""
    output_dir = os.environ.get("NNI_OUTPUT_DIR")
    if output_dir:
        return Path(output_dir)
    return Path("runs") / "trials" / nni.get_trial_id()


def intermediate_metric(record: Mapping[str, Any]) -> Dict[str, Any]:
    """Return the per-epoch NNI metric of one search record; ``default`` is the search-val accuracy."""
    return {
        "default": float(record["search_val_acc"]),
        "search_train_acc": float(record["search_train_acc"]),
        "skips_normal": int(record["skip_counts"]["normal"]),
        "skips_reduce": int(record["skip_counts"]["reduce"]),
        "epoch": int(record["epoch"]) + 1,
    }


def run_trial(search_config: SearchConfig, train_config: Optional[TrainConfig], settings: TrialSettings,
              output_root: Path, reporter: TrialReporter, parameters: Optional[Mapping[str, Any]] = None) -> dict:
    """Search with the trial's noise, train the derived genotype, report and return the final metrics.

    ``search_config`` and ``train_config`` give everything except the noise, the seed and the
    output folders, which come from ``settings`` and ``output_root`` (``search/`` and ``train/``
    below it). ``train_config=None`` skips the training, and the final ``default`` metric is then
    the search-val accuracy. ``parameters`` (the tuner's raw dict) only goes to ``trial.json``.
    Errors propagate, so that the trial process exits non-zero and NNI marks the trial FAILED.
    """
    output_root = Path(output_root)
    if search_config.space != "darts":
        raise ValueError(f"trials search the DARTS space only, got space {search_config.space!r}")
    search_config = dataclasses.replace(search_config, noise=settings.noise, seed=settings.seed,
                                        output=output_root / "search", resume=False)
    search_config.validate()
    if train_config is not None:
        # Validate with the preset's genotype as a placeholder, so that invalid training settings
        # fail before the search starts. The searched genotype replaces it below.
        train_config = dataclasses.replace(train_config, seed=settings.seed)
        train_config.validate()
    for folder in ("search", "train"):
        if (output_root / folder).exists() and any((output_root / folder).iterdir()):
            raise ValueError(f"trial output folder {str(output_root / folder)!r} already contains results; "
                             "pass another --output-root or remove the folder")

    summary = {"trial_id": reporter.trial_id, "parameter_id": reporter.parameter_id,
               "parameters": dict(parameters) if parameters is not None else None, "settings": settings.to_dict()}
    write_json_atomic(output_root / TRIAL_FILE, summary)
    logger.info("trial %s: setting %s, noise %s, seed %d, outputs in %s", reporter.trial_id,
                settings.name or "(unnamed)", settings.noise.to_dict(), settings.seed, output_root)

    def report_epoch(record: dict) -> None:
        reporter.report_intermediate(intermediate_metric(record))

    from .search.runner import run_search  # imports NNI's NAS stack and Lightning

    result = run_search(search_config, on_epoch_end=report_epoch)
    final: Dict[str, Any] = {
        "default": float(result["search_val_acc"]),
        "search_val_acc": float(result["search_val_acc"]),
        "search_train_acc": float(result["search_train_acc"]),
        "genotype": result["architecture"],
        "skips_normal": int(result["skip_counts"]["normal"]),
        "skips_reduce": int(result["skip_counts"]["reduce"]),
    }

    if train_config is not None:
        train_config = dataclasses.replace(train_config, genotype=result["architecture"], model=None)
        results = run_training(train_config, output_root / "train")
        final["test_accuracy"] = float(results["test_accuracy"])
        final["default"] = final["test_accuracy"]

    summary["final_metric"] = final
    write_json_atomic(output_root / TRIAL_FILE, summary)
    reporter.report_final(final)
    logger.info("trial %s: final metric %.4f (%s)", reporter.trial_id, final["default"],
                "test accuracy" if train_config is not None else "search-val accuracy")
    return final
