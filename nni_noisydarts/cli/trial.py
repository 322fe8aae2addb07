"""``noisydarts trial``: one trial of an NNI HPO experiment over the noise settings (see noisydarts.yml)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import UsageError
from .options import add_noise_options, data_root_or_default, noise_settings

#: Training presets for a DARTS genotype on CIFAR-10.
TRAIN_PRESETS = ("darts-quick", "darts-paper")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "trial", help="run one NNI trial: search with the tuner's noise settings, then train briefly",
        description="The trialCommand of an NNI HPO experiment (see noisydarts.yml). Reads the noise "
                    "settings that the tuner drew (lam, mu, noise_type, mixing, decay_epochs, seed), searches a "
                    "DARTS cell, reports the search-val accuracy every epoch, trains the derived genotype and "
                    "reports its test accuracy as the final result. The options below give the budget, and the "
                    "noise options are the defaults for settings that the tuner leaves out.",
    )
    parser.add_argument("--data-root", type=Path,
                        help="CIFAR-10 folder (cifar-10-batches-py/ or train/ and test/ class folders); "
                             "default: $NOISYDARTS_DATA/cifar10-jpeg")
    parser.add_argument("--output-root", type=Path,
                        help="folder for search/, train/ and trial.json (default: the trial's NNI output folder "
                             "$NNI_OUTPUT_DIR, or runs/trials/STANDALONE outside NNI)")
    parser.add_argument("--parameters", metavar="JSON",
                        help="use these parameters instead of requesting them from NNI's tuner, e.g. to rerun one trial: "
                             "'{\"lam\": 0.1, \"mixing\": \"additive\"}'")
    parser.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto",
                        help="device of the search and the training (default: auto)")

    search = parser.add_argument_group("search budget")
    search.add_argument("--preset", choices=["quick", "paper"], default="quick",
                        help="search preset the options below override (default: quick)")
    search.add_argument("--epochs", type=int, help="search epochs")
    search.add_argument("--subset", type=int, help="class-balanced training images, halved into search-train and search-val")
    search.add_argument("--batch-size", type=int, help="images per batch in each of the two splits")
    search.add_argument("--width", type=int, help="channels C of the first supernet cell (paper: 16)")
    search.add_argument("--cells", type=int, help="number of supernet cells (paper: 8)")

    train = parser.add_argument_group("training of the derived genotype")
    train.add_argument("--train-preset", choices=TRAIN_PRESETS, default="darts-quick",
                       help="training recipe the options below override (default: darts-quick)")
    train.add_argument("--train-epochs", type=int,
                       help="training epochs; 0 skips the training and reports the search-val accuracy")
    train.add_argument("--train-subset", type=int, help="class-balanced training images")
    train.add_argument("--test-subset", type=int, help="class-balanced test images the reported accuracy uses")

    noise = parser.add_argument_group("defaults for settings the tuner leaves out")
    add_noise_options(noise)
    noise.add_argument("--seed", type=int, default=0, help="random seed of search and training (default: 0)")
    parser.set_defaults(func=run)


def read_parameters(args: argparse.Namespace, reporter) -> dict:
    """Return the ``--parameters`` dict, else the parameters that NNI's tuner drew for this trial."""
    if args.parameters is None:
        return reporter.receive_parameters()
    try:
        parameters = json.loads(args.parameters)
    except json.JSONDecodeError as error:
        raise UsageError(f"--parameters is not valid JSON ({error}): {args.parameters!r}") from error
    if not isinstance(parameters, dict):
        raise UsageError(f"--parameters must be a JSON object, got {args.parameters!r}")
    return parameters


def run(args: argparse.Namespace) -> int:
    from ..hpo import TrialReporter, default_output_root, run_trial, settings_from_parameters
    from ..search.config import preset
    from ..training import get_preset

    reporter = TrialReporter()
    parameters = read_parameters(args, reporter)
    defaults = {**noise_settings(args), "seed": args.seed}
    settings = settings_from_parameters(parameters, defaults)

    data_root = data_root_or_default(args.data_root)

    search_config = preset("darts", args.preset, data_root=data_root, epochs=args.epochs, subset=args.subset,
                           batch_size=args.batch_size, width=args.width, cells=args.cells, device=args.device)
    train_config = None
    if args.train_epochs is None or args.train_epochs > 0:
        train_config = get_preset(
            args.train_preset, epochs=args.train_epochs, subset=args.train_subset, test_subset=args.test_subset,
            data_root=str(data_root) if data_root is not None else None,
            device={"auto": "auto", "cpu": "cpu", "gpu": "cuda"}[args.device],
        )
    elif args.train_epochs < 0:
        raise UsageError(f"--train-epochs must be >= 0 (0 skips the training), got {args.train_epochs}")

    output_root = args.output_root if args.output_root is not None else default_output_root()
    final = run_trial(search_config, train_config, settings, output_root, reporter, parameters=parameters)
    print(json.dumps(final))
    return 0
