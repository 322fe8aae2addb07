"""``noisydarts search``: run a NoisyDARTS search and write the architecture, records and plots."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

from ..noise import NoiseConfig
from .options import add_noise_options, data_root_or_default, noise_settings

logger = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "search", help="search an architecture with NoisyDARTS",
        description="Search a DARTS cell (CIFAR-10) or 19 MobileNetV2 layers (ImageNet layout) with NoisyDARTS.")
    parser.add_argument("--space", choices=["darts", "mobilenetv2"], default="darts", help="search space (default: darts)")
    parser.add_argument("--data-root", type=Path,
                        help="data folder: CIFAR-10 (cifar-10-batches-py/ or train/ and test/ class folders) for darts, "
                             "an ImageNet-layout folder (train/<class>/*) for mobilenetv2; "
                             "default: $NOISYDARTS_DATA/cifar10-jpeg")
    parser.add_argument("--download", action="store_true",
                        help="darts: let torchvision download CIFAR-10 into --data-root when it has no copy "
                             "(needs internet access)")
    parser.add_argument("--output", type=Path, default=Path("runs/search"), help="output folder (default: runs/search)")
    parser.add_argument("--preset", choices=["quick", "paper"], default="quick",
                        help="quick: minutes on a 2-core CPU with a small supernet and 2,000 images "
                             "(600 for mobilenetv2); "
                             "paper: the published settings for a GPU (default: quick)")

    add_noise_options(parser.add_argument_group("noise"))

    overrides = parser.add_argument_group("overrides of the preset")
    overrides.add_argument("--epochs", type=int, help="search epochs")
    overrides.add_argument("--batch-size", type=int, help="images per batch in each of the two splits")
    overrides.add_argument("--learning-rate", type=float, help="initial SGD learning rate of the weights")
    overrides.add_argument("--arc-learning-rate", type=float, help="Adam learning rate of the alphas")
    overrides.add_argument("--width", type=float,
                           help="darts: channels of the first cell (paper: 16); mobilenetv2: width multiplier (paper: 1.0)")
    overrides.add_argument("--cells", type=int, help="darts: number of cells (paper: 8)")
    overrides.add_argument("--resolution", type=int, help="mobilenetv2: image size in pixels (paper: 224)")
    overrides.add_argument("--subset", type=int, help="use this many class-balanced training images in total")
    overrides.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    overrides.add_argument("--workers", type=int, default=0, help="data-loading worker processes (default: 0)")
    overrides.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto", help="default: auto")
    parser.add_argument("--resume", action="store_true",
                        help="continue the search in --output from its last checkpoint with its stored settings")
    parser.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    """Build the search settings from the command line: the preset, then every option given."""
    from ..search.config import preset

    data_root = data_root_or_default(args.data_root, must_exist=not args.download)
    noise = NoiseConfig(**noise_settings(args))
    return preset(
        args.space, args.preset,
        data_root=data_root, download=args.download, output=args.output, noise=noise, epochs=args.epochs,
        batch_size=args.batch_size, learning_rate=args.learning_rate, arc_learning_rate=args.arc_learning_rate, width=args.width,
        cells=args.cells, resolution=args.resolution, subset=args.subset, seed=args.seed, workers=args.workers,
        device=args.device,
    )


def run(args: argparse.Namespace) -> int:
    from ..search.runner import load_search_config, run_search

    if args.resume:
        # The stored settings win: a resumed run must continue the same schedule and seed.
        config = dataclasses.replace(load_search_config(args.output), output=args.output, resume=True)
        logger.info("resuming the search in %s with its stored settings", args.output)
    else:
        config = config_from_args(args)

    result = run_search(config)
    print(result["architecture"])
    print(json.dumps({"skip_counts": result["skip_counts"], "search_val_acc": result["search_val_acc"]}))
    print(f"outputs written to {config.output}")
    return 0
