"""The ``solo-directpred`` console command.

Each subcommand lives in its own module, which exposes ``add_parser(subparsers)``: it adds an
``argparse`` sub-parser and sets ``func`` (called with the parsed namespace, returning an exit code).
Modules are listed in :data:`COMMAND_MODULES`; they keep heavy imports (solo-learn, Lightning,
matplotlib) inside their functions so that ``solo-directpred --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: Modules contributing subcommands, in the order ``--help`` lists them.
COMMAND_MODULES: list[str] = [
    "solo_directpred.sololearn.commands",
    "solo_directpred.spectral.commands",
    "solo_directpred.theory.commands",
    "solo_directpred.zoo.commands",
    "solo_directpred.doctor",
]


def add_command_group(
    subparsers: argparse._SubParsersAction, name: str, help: str, description: str
) -> argparse._SubParsersAction:
    """Add command ``name`` with actions of its own; returns their sub-parsers (``name`` alone: help).
    The chosen action is stored as ``<name>_command``."""
    parser = subparsers.add_parser(name, help=help, description=description)

    def usage(_: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=usage)
    return parser.add_subparsers(dest=f"{name}_command", metavar="ACTION")


def build_parser() -> argparse.ArgumentParser:
    from solo_directpred import __version__

    parser = argparse.ArgumentParser(
        prog="solo-directpred",
        description="DirectPred and analytic predictors for solo-learn: training, evaluation, "
        "spectral monitoring, the paper's theory and the checkpoint zoo.",
    )
    parser.add_argument("--version", action="version", version=f"solo-directpred {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is not None and name.startswith(err.name):
                continue  # that part of the package is not there (yet)
            raise
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from solo_directpred.compat import ensure_torchvision_importable

    # before any subcommand imports torchvision (Lightning, torchmetrics, solo-learn)
    ensure_torchvision_importable()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0 if args.command is None else 2
    if extra and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = list(getattr(args, "overrides", None) or []) + list(extra)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
