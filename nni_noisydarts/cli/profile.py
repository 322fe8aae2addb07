"""``noisydarts profile``: parameter count and MAdds of a DARTS genotype or a registered model."""

from __future__ import annotations

import argparse
import inspect
import json

from ..darts.network import DartsCifarNetwork
from ..darts.zoo import genotype_names
from ..profiling import count_madds, count_parameters
from ..training.loop import TRAINING_ONLY_MODULES
from ..training.models import load_genotype_argument
from ..zoo import build_darts_cifar, build_model, get_entry, list_models
from . import UsageError

CIFAR_RESOLUTION = 32
IMAGENET_RESOLUTION = 224


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "profile", help="count parameters and MAdds",
        description="Print the parameter count (training-only heads such as the DARTS auxiliary head left out) "
                    "and the multiply-adds of one image, counting convolutions and linear layers, then adding "
                    "2 per batch-norm output element, or adding one per input element of adaptive average pooling.",
    )
    arch = parser.add_mutually_exclusive_group()
    arch.add_argument("--genotype", metavar="NAME|FILE|STRING",
                      help=f"DARTS genotype: a zoo name ({', '.join(genotype_names())}), a .txt or .json file, "
                           "or the text form")
    arch.add_argument("--model", metavar="NAME", help="registered model name (see --list)")
    parser.add_argument("--list", action="store_true", help="list registered models and zoo genotypes, then exit")
    parser.add_argument("--width", type=int, default=36, help="DARTS channels C (default: 36)")
    parser.add_argument("--cells", type=int, default=20, help="DARTS cells (default: 20)")
    parser.add_argument("--num-classes", type=int, help="classifier outputs (default: the model's)")
    parser.add_argument("--resolution", type=int,
                        help=f"input size in pixels (default: {CIFAR_RESOLUTION} for DARTS networks, "
                             f"{IMAGENET_RESOLUTION} otherwise)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.set_defaults(func=run)


def _build(args: argparse.Namespace):
    kwargs = {} if args.num_classes is None else {"num_classes": args.num_classes}
    if args.genotype is not None:
        genotype = load_genotype_argument(args.genotype)
        return build_darts_cifar(genotype, width=args.width, cells=args.cells, **kwargs)

    accepted = inspect.signature(get_entry(args.model).builder).parameters
    for name in ("width", "cells"):
        if name in accepted:
            kwargs[name] = getattr(args, name)
    return build_model(args.model, **kwargs)


def run(args: argparse.Namespace) -> int:
    if args.list:
        print("registered models:")
        for entry in list_models():
            print(f"  {entry.name:28s} {entry.description}")
        print(f"DARTS genotypes for --genotype: {', '.join(genotype_names())}")
        return 0
    if args.genotype is None and args.model is None:
        raise UsageError("give --genotype NAME|FILE|STRING or --model NAME (or --list)")
    if args.resolution is not None and args.resolution < 8:
        raise UsageError(f"--resolution {args.resolution} is too small; pass an image size of at least 8 pixels")

    model = _build(args)
    default_resolution = CIFAR_RESOLUTION if isinstance(model, DartsCifarNetwork) else IMAGENET_RESOLUTION
    resolution = args.resolution or default_resolution
    input_size = (1, 3, resolution, resolution)

    parameters = count_parameters(model, exclude=TRAINING_ONLY_MODULES)
    conv_linear = count_madds(model, input_size, exclude=TRAINING_ONLY_MODULES)
    with_bn = count_madds(model, input_size, count_bn=True, exclude=TRAINING_ONLY_MODULES)
    with_pooling = count_madds(model, input_size, count_pooling=True, exclude=TRAINING_ONLY_MODULES)
    total_parameters = count_parameters(model)

    report = {
        "arch": model.arch_spec,
        "resolution": resolution,
        "parameters": parameters,
        "parameters_with_training_heads": total_parameters,
        "madds_conv_linear": conv_linear.total,
        "madds_with_bn": with_bn.total,
        "madds_with_pooling": with_pooling.total,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0

    name = args.model or args.genotype
    print(f"{name} at {resolution}x{resolution}")
    print(f"  parameters:                      {parameters:,}"
          + (f" ({total_parameters:,} with the auxiliary head)" if total_parameters != parameters else ""))
    print(f"  MAdds, conv + linear:            {conv_linear.total / 1e6:.1f}M")
    print(f"  MAdds, + 2 per BN output:        {with_bn.total / 1e6:.1f}M")
    print(f"  MAdds, + average-pooling inputs: {with_pooling.total / 1e6:.1f}M")
    return 0
