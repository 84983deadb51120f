"""The ``solo-directpred theory`` subcommand: ``check`` (numerical checks) and ``figures`` (paper plots).

Examples::

    solo-directpred theory check
    solo-directpred theory check --only fixed_points stop_gradient --json checks.json
    solo-directpred theory figures --out docs/images/theory
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path


def add_actions(actions: argparse._SubParsersAction) -> None:
    """Add the ``check`` and ``figures`` actions of the ``theory`` command."""
    check = actions.add_parser(
        "check",
        help="run the numerical checks of the theory (exit code 1 if any fails)",
        description="Run each check (closed-form fixed points, Theorems 1-3, per-mode vs full model, ...) "
        "and print its numbers. Exit code 0 when all pass, 1 otherwise.",
    )
    check.add_argument("--only", nargs="+", metavar="NAME", help="run only these checks (default: all)")
    check.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON to PATH")
    check.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    check.set_defaults(func=run_check)

    figures = actions.add_parser(
        "figures",
        help="redraw the paper's synthetic Figs. 3, 4, 5, 7, 8, 9 and 10 as PNG",
        description="Redraw the synthetic figures of the paper from the simulators, with the paper's "
        "parameters; values the paper leaves open are printed.",
    )
    figures.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder for the PNGs")
    figures.add_argument("--only", nargs="+", metavar="FIG", help="figure numbers to draw (default: all)")
    figures.add_argument("--dpi", type=int, default=90, help="PNG resolution (default: 90)")
    figures.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    figures.set_defaults(func=run_figures)


def _selected(only: list[str] | None, available: Iterable[str], what: str) -> list[str] | None:
    """The names ``--only`` selects (default: all ``available``); None if some are unknown (printed)."""
    known = list(available)
    names = only or known
    unknown = [name for name in names if name not in known]
    if unknown:
        print(f"error: --only got unknown {what}(s) {unknown}; available: {', '.join(known)}")
        return None
    return names


def run_check(args: argparse.Namespace) -> int:
    """Run the checks, print one block per check and a summary; 0 if all pass, 1 otherwise."""
    import json
    import time

    from solo_directpred.theory.checks import CHECKS, run_checks

    names = _selected(args.only, CHECKS, "check")
    if names is None:
        return 2
    start = time.perf_counter()
    results = run_checks(names, progress=not args.no_progress)
    elapsed = time.perf_counter() - start
    for result in results:
        print(f"{'PASS' if result.passed else 'FAIL'}  {result.name}: {result.claim}")
        print(f"      {result.detail}")
    failed = [r.name for r in results if not r.passed]
    print(f"{len(results) - len(failed)}/{len(results)} checks passed in {elapsed:.1f} s")
    if failed:
        print(f"failed: {', '.join(failed)}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = [
            {"name": r.name, "claim": r.claim, "passed": r.passed, "detail": r.detail, "values": r.values}
            for r in results
        ]
        args.json.write_text(json.dumps(payload, indent=2))
    return 1 if failed else 0


def run_figures(args: argparse.Namespace) -> int:
    """Draw the figures into ``--out`` and print where they went and the parameters the paper leaves open."""
    from solo_directpred.theory.figures import FIGURES, UNSPECIFIED, save_figures

    which = _selected(args.only, FIGURES, "figure")
    if which is None:
        return 2
    if args.dpi < 20:
        print(f"error: --dpi={args.dpi} is too small; use at least 20")
        return 2
    paths = save_figures(args.out, which, dpi=args.dpi, progress=not args.no_progress)
    for key, path in zip(which, paths):
        print(f"Fig. {key}: {path}  (not in the paper, chosen here: {UNSPECIFIED[key]})")
    return 0
