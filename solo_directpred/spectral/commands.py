"""``solo-directpred spectral plot RUN_DIR``: redraw the spectral panels of a run from its logged spectra."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_actions(actions: argparse._SubParsersAction) -> None:
    """Add ``spectral plot``, which redraws a run's panels (:mod:`solo_directpred.spectral.plots`) from
    the ``spectra.jsonl`` that :class:`~solo_directpred.spectral.SpectralMonitor` logged."""
    plot = actions.add_parser(
        "plot",
        help="redraw spectral.png from the spectra.jsonl logged by SpectralMonitor",
        description="Redraw the spectral panels of every spectral directory under RUN_DIR.",
    )
    plot.add_argument(
        "run_dir",
        metavar="RUN_DIR",
        type=Path,
        help="a spectral directory or any directory above one (e.g. the run's log directory)",
    )
    plot.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output PNG (only with a single spectral directory; default: <spectral dir>/spectral.png)",
    )
    plot.set_defaults(func=plot_command)


def plot_command(args: argparse.Namespace) -> int:
    """Draw ``spectral.png`` for every spectral directory under ``args.run_dir``; returns the exit code."""
    from solo_directpred.spectral.plots import plot_spectral_dir
    from solo_directpred.spectral.records import RECORDS_FILE, find_spectral_dirs

    run_dir: Path = args.run_dir
    if not run_dir.is_dir():
        print(f"error: RUN_DIR {run_dir} is not a directory", file=sys.stderr)
        return 2
    directories = find_spectral_dirs(run_dir)
    if not directories:
        print(
            f"error: no {RECORDS_FILE} under {run_dir}; was the run trained with SpectralMonitor?",
            file=sys.stderr,
        )
        return 1
    if args.out is not None and len(directories) > 1:
        print(
            f"error: --out needs a single spectral directory, found {len(directories)} under {run_dir}: "
            + ", ".join(str(d) for d in directories),
            file=sys.stderr,
        )
        return 2
    status = 0
    for directory in directories:
        try:
            path = plot_spectral_dir(directory, args.out)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            status = 1
            continue
        print(f"wrote {path}")
    return status
