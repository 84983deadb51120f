"""The ``solo-directpred`` console command.

Each subcommand lives in its own module, listed in :data:`COMMANDS`. A module of commands exposes
``add_parser(subparsers)``, which adds its ``argparse`` sub-parsers; the module of a command group
(``solo-directpred zoo ACTION``) exposes ``add_actions(actions)``, which adds the group's actions, and
:data:`COMMANDS` gives the group's name, help and description (:func:`add_command_group`). Each parser
sets ``func`` (called with the parsed namespace, returning an exit code). The modules keep heavy imports
(solo-learn, Lightning, matplotlib) inside their functions so that ``solo-directpred --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: Modules contributing subcommands, in the order ``--help`` lists them, each with its command group
#: (name, help, description) or None (a module of single commands).
COMMANDS: list[tuple[str, tuple[str, str, str] | None]] = [
    ("solo_directpred.sololearn.commands", None),
    (
        "solo_directpred.spectral.commands",
        (
            "spectral",
            "spectral monitoring: redraw the Fig. 2-style panels of a run",
            "Spectral monitoring of a run (eigenvalues of F and W_p, alignment, RankMe).",
        ),
    ),
    (
        "solo_directpred.theory.commands",
        (
            "theory",
            "simulate the paper's linear-network theory: numerical checks and figures",
            "Executable version of the theory of Tian, Chen & Ganguli (ICML 2021): the linear "
            "model of Lemma 1, the decoupled per-mode dynamics and the scalar BYOL of App. D.",
        ),
    ),
    (
        "solo_directpred.zoo.commands",
        (
            "zoo",
            "pretrained checkpoints: list, info, download, verify, export",
            "The checkpoint zoo: a manifest of published checkpoints, verified downloads, export.",
        ),
    ),
    ("solo_directpred.doctor", None),
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
    for name, group in COMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is not None and name.startswith(err.name):
                continue  # that part of the package is not there (yet)
            raise
        if group is not None:
            module.add_actions(add_command_group(subparsers, *group))
        else:
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
