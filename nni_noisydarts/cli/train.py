"""``noisydarts train``: train a DARTS CIFAR network or a registered model with a preset recipe."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..darts.genotype import format_genotype
from ..darts.zoo import GENOTYPES, genotype_names
from ..training import get_preset, preset_names, run_training
from ..training.models import load_genotype_argument
from . import UsageError
from .options import require_folder

#: Command-line option to ``TrainConfig`` field, for the options that override one preset value.
OVERRIDES = {
    "epochs": "epochs", "batch_size": "batch_size", "lr": "lr", "lr_min": "lr_min",
    "weight_decay": "weight_decay", "momentum": "momentum", "warmup_epochs": "warmup_epochs",
    "grad_clip": "grad_clip", "aux_weight": "aux_weight", "drop_path": "drop_path_prob",
    "cutout": "cutout_length", "label_smoothing": "label_smoothing", "ema_decay": "ema_decay",
    "dropout": "dropout", "drop_connect": "drop_connect_rate", "autoaugment": "autoaugment",
    "resolution": "resolution", "width": "width", "cells": "cells", "width_mult": "width_mult",
    "dataset": "dataset", "data_root": "data_root", "download": "download", "subset": "subset",
    "test_subset": "test_subset",
    "seed": "seed", "device": "device", "num_workers": "num_workers", "eval_interval": "eval_interval",
}


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train a derived architecture",
        description="Train a DARTS CIFAR network from a genotype, or a registered model, with a preset "
                    "recipe; single options override the preset. Writes config.json, last.pt (every epoch), "
                    "model.pt and results.json to --output.",
    )
    arch = parser.add_mutually_exclusive_group()
    arch.add_argument("--genotype", metavar="NAME|FILE|STRING",
                      help=f"DARTS genotype: a zoo name ({', '.join(genotype_names())}), a .txt or .json file, "
                           "or the text form 'Genotype(normal=[...], ...)' (default: the preset's)")
    arch.add_argument("--choices", metavar="FILE|STRING",
                      help="19 MobileNetV2-space layer choices: a choices.txt/.json file written by "
                           "'noisydarts search --space mobilenetv2', or the names themselves ('e6_k3 e3_k3 ...')")
    arch.add_argument("--model", metavar="NAME",
                      help="registered model name; 'noisydarts profile --list' shows them (default: the preset's)")
    parser.add_argument("--preset", default="darts-paper", choices=preset_names(),
                        help="training recipe the options below start from (default: darts-paper)")
    parser.add_argument("--output", required=True, type=Path, help="folder for checkpoints and results.json")
    parser.add_argument("--data-root", help="data set folder: CIFAR-10 (cifar-10-batches-py/ or train/ and test/ "
                                            "class folders) or an ImageNet-layout folder; default for CIFAR-10: "
                                            "$NOISYDARTS_DATA/cifar10-jpeg")
    parser.add_argument("--dataset", choices=["cifar10", "image-folder"], help="data set kind")
    parser.add_argument("--download", action="store_const", const=True,
                        help="cifar10: let torchvision download CIFAR-10 into --data-root when it has no copy "
                             "(needs internet access)")
    parser.add_argument("--resume", nargs="?", const="auto", metavar="CHECKPOINT",
                        help="continue a run from CHECKPOINT (default: OUTPUT/last.pt)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the results of an earlier run in --output instead of stopping")

    group = parser.add_argument_group("optimisation")
    group.add_argument("--epochs", type=int, help="number of training epochs")
    group.add_argument("--batch-size", type=int, help="images per SGD step")
    group.add_argument("--lr", type=float, help="peak learning rate of the cosine schedule")
    group.add_argument("--lr-min", type=float, help="learning rate at the end of the cosine schedule")
    group.add_argument("--momentum", type=float, help="SGD momentum")
    group.add_argument("--weight-decay", type=float, help="L2 weight decay")
    group.add_argument("--warmup-epochs", type=int, help="epochs of linear learning-rate warm-up")
    group.add_argument("--grad-clip", type=float, help="maximum gradient norm (0 = no clipping)")

    group = parser.add_argument_group("regularisation")
    group.add_argument("--aux-weight", type=float, help="weight of the auxiliary-head loss (0 = no auxiliary head)")
    group.add_argument("--drop-path", type=float, help="final drop-path probability of the linear ramp (DARTS networks)")
    group.add_argument("--cutout", type=int, help="cutout square side in pixels (0 = off)")
    group.add_argument("--label-smoothing", type=float, help="label smoothing factor (0 = off)")
    group.add_argument("--ema-decay", type=float, help="decay of the weight EMA used for evaluation (0 = off)")
    group.add_argument("--dropout", type=float, help="dropout rate before the classifier")
    group.add_argument("--drop-connect", type=float, help="drop-connect rate of residual blocks (MobileNetV2 models)")
    group.add_argument("--autoaugment", action=argparse.BooleanOptionalAction, default=None,
                       help="apply torchvision AutoAugment to training images")

    group = parser.add_argument_group("model and data size")
    group.add_argument("--width", type=int, help="channels C of the first DARTS cells (even)")
    group.add_argument("--cells", type=int, help="number of DARTS cells (at least 3)")
    group.add_argument("--width-mult", type=float, help="channel multiplier of MobileNetV2 models")
    group.add_argument("--resolution", type=int, help="input size in pixels; CIFAR images are upsampled to it")
    group.add_argument("--subset", type=int, help="train on this many class-balanced training images")
    group.add_argument("--test-subset", type=int, help="evaluate on this many class-balanced test images")

    group = parser.add_argument_group("run")
    group.add_argument("--seed", type=int, help="random seed")
    group.add_argument("--device", help="'auto', 'cpu', 'cuda' or 'cuda:N'")
    group.add_argument("--num-workers", type=int, help="data loader worker processes")
    group.add_argument("--eval-interval", type=int, help="evaluate every N epochs (0 = after the last only)")
    parser.set_defaults(func=run)


def resolve_genotype(value: str) -> str:
    """Return a zoo name unchanged, or the canonical text of a genotype file or string."""
    if value.strip().lower() in GENOTYPES:
        return value.strip().lower()
    return format_genotype(load_genotype_argument(value))


def resolve_choices(value: str) -> str:
    """Return the text form of MobileNetV2 choices given as a file or as text; raise ChoicesError when malformed."""
    from ..mobilenetv2.choices import MobileNetV2Choices

    path = Path(value).expanduser()
    if value.lower().endswith((".txt", ".json")):
        if not path.is_file():
            raise UsageError(f"--choices file {value!r} not found; pass an existing choices.txt/.json or the names")
        value = path.read_text()
    return MobileNetV2Choices.parse(value).to_text()


def run(args: argparse.Namespace) -> int:
    overrides = {field: getattr(args, option) for option, field in OVERRIDES.items()}
    if args.genotype is not None:
        overrides["genotype"] = resolve_genotype(args.genotype)
    if args.model is not None:
        overrides["model"] = args.model
    if args.choices is not None:
        overrides["model"] = "mobilenetv2-choices"
        overrides["choices"] = resolve_choices(args.choices)
    if args.data_root is not None and not args.download:
        require_folder(args.data_root, "--data-root")

    config = get_preset(args.preset, **overrides)
    results = run_training(config, args.output, resume=args.resume, overwrite=args.overwrite)
    print(f"test accuracy {100 * results['test_accuracy']:.2f}% on {results['test_images']} images "
          f"({results['evaluated_weights']} weights, {results['parameters']:,} parameters); "
          f"results in {args.output / 'results.json'}")
    return 0
