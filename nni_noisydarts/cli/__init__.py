"""The ``noisydarts`` command. It composes the library and contains no search or model logic itself.

Each sub-command lives in its own module with ``add_parser(subparsers)`` that registers it
and sets ``func`` to the function that runs it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings
from typing import List, Optional

# NNI 3.0 warns once per torch 2.14 class it does not know (Buffer, LinearCrossEntropyOptions)
# when it is imported. The warning is harmless here and would bury the command's own output.
warnings.filterwarnings("ignore", message=r".*is found to be not a nn\.Module.*", category=RuntimeWarning)

SUBCOMMAND_MODULES = ("search", "train", "profile", "trial")


class UsageError(Exception):
    """Invalid command-line input; the message names the value and the fix."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="noisydarts",
        description="NoisyDARTS architecture search, training and profiling on top of NNI 3.0.",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="logging level of the library and this command (default: INFO)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"{__name__}.{name}":
                continue
            raise
        module.add_parser(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # NNI attaches its own console handler; without this every NNI line would print twice.
    logging.getLogger("nni").propagate = False

    try:
        return int(args.func(args) or 0)
    except (UsageError, ValueError, FileNotFoundError) as error:
        # Library code raises ValueError / FileNotFoundError with messages that name the value
        # and the fix, so the command shows them without a traceback.
        print(f"noisydarts {args.command}: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        # An exception that carries ``exit_status`` (a search stopped by SIGTERM or Ctrl-C) is an
        # expected end of the command, so show its message and exit with that status.
        status = getattr(error, "exit_status", None)
        if status is None:
            raise
        print(f"noisydarts {args.command}: stopped: {error}", file=sys.stderr)
        return int(status)


if __name__ == "__main__":
    sys.exit(main())
