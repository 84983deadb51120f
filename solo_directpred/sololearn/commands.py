"""``solo-directpred pretrain | linear | knn``: solo-learn's jobs for pip-only installs.

Usage::

    solo-directpred pretrain                                          # the embedded default (digits, CPU)
    solo-directpred pretrain --config-name pretrain/cifar/directpred.yaml data.train_path=./data
    solo-directpred linear trained_models/directpred/RUN              # run dir, checkpoint, zoo name, URL
    solo-directpred knn trained_models/directpred/RUN knn.k=[10,20]

Every command takes upstream's Hydra overrides after its arguments and prints its final accuracies.
``linear`` and ``knn`` evaluate on the data the run was pretrained on (its ``args.json``) unless ``data.*``
keys are given, and print one line saying what they evaluate on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

#: Config each command composes when ``--config-name`` is not given (in ``solo_directpred/configs``).
DEFAULT_CONFIGS = {
    "pretrain": "directpred.yaml",
    "linear": "directpred_linear.yaml",
    "knn": "directpred_knn.yaml",
}
_EPILOG = (
    "Hydra overrides follow the arguments, as with upstream's scripts: key=value, +new_key=value, ~key. "
    "Config names are searched in the package's configs and the presets tree "
    "(pretrain/<dataset>/<method>.yaml, linear/<dataset>/directpred.yaml, pretrain/paper/tableN/<row>.yaml)."
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``pretrain``, ``linear`` and ``knn`` commands to the ``solo-directpred`` parser."""
    pretrain = subparsers.add_parser(
        "pretrain",
        help="pretrain a model with solo-learn (default: DirectPred on the embedded digits data)",
        description="Pretrain as upstream main_pretrain.py does; prints the checkpoint and final metrics.",
        epilog=_EPILOG,
    )
    _config_arguments(pretrain, "pretrain")
    pretrain.set_defaults(func=pretrain_command, accepts_overrides=True)

    for name, what in (
        ("linear", "train a linear classifier on frozen features"),
        ("knn", "weighted kNN classification with frozen features (CPU or GPU)"),
    ):
        parser = subparsers.add_parser(
            name,
            help=f"{what} of a pretrained checkpoint",
            description=f"{what[0].upper()}{what[1:]} of SOURCE; prints the accuracies (%).",
            epilog=_EPILOG,
        )
        parser.add_argument(
            "source",
            nargs="?",
            metavar="SOURCE",
            help="checkpoint file, run directory (trained_models/METHOD/RUN), zoo name or URL "
            "(default: the config's pretrained_feature_extractor)",
        )
        _config_arguments(parser, name)
        parser.set_defaults(func=linear_command if name == "linear" else knn_command, accepts_overrides=True)


def _config_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument(
        "--config-name",
        "-cn",
        default=DEFAULT_CONFIGS[command],
        help=f"config to compose (default: {DEFAULT_CONFIGS[command]})",
    )
    parser.add_argument(
        "--config-path",
        "-cp",
        type=Path,
        default=None,
        help="directory searched first for --config-name (default: the package's configs)",
    )


def _split_source(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """SOURCE, and the overrides (a first override lands in SOURCE when no source is given)."""
    overrides = list(args.overrides)
    source = args.source
    if source is not None and "=" in source and "://" not in source and not Path(source).exists():
        return None, [source, *overrides]
    return source, overrides


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors caused by the command line or the config: reported in one line, exit code 2."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from solo_directpred.sololearn.methods import ConfigError

    return ConfigError, HydraException, OmegaConfBaseException


def _fail(err: Exception) -> int:
    print(f"error: {err}", file=sys.stderr)
    return 2


def pretrain_command(args: argparse.Namespace) -> int:
    """Compose, pretrain, print the checkpoint and the online classifier's final accuracy."""
    from solo_directpred.sololearn.pretrain import run_pretrain
    from solo_directpred.sololearn.shared import compose_config

    try:
        result = run_pretrain(compose_config(args.config_name, args.overrides, args.config_path))
    except _user_errors() as err:
        return _fail(err)
    print(f"pretrain: checkpoint {result.checkpoint if result.checkpoint else '(checkpointing off)'}")
    metrics = result.metrics
    shown = [f"{k}={metrics[k]:.2f}" for k in ("val_acc1", "val_acc5") if k in metrics]
    if shown:
        print("pretrain: online linear classifier " + " ".join(shown))
    if "train_neg_cos_sim" in metrics:
        print(f"pretrain: train_neg_cos_sim={metrics['train_neg_cos_sim']:.4f} (last epoch)")
    return 0


def _evaluate(args: argparse.Namespace, run: Any) -> tuple[Any, int]:
    """Compose, then ``run(cfg, SOURCE, overridden data keys)``: (result, 0), or (None, 2) on a user error."""
    from solo_directpred.sololearn.shared import compose_config, overridden_data_keys

    source, overrides = _split_source(args)
    try:
        cfg = compose_config(args.config_name, overrides, args.config_path)
        return run(cfg, source, overridden_data_keys(overrides)), 0
    except _user_errors() as err:
        return None, _fail(err)


def linear_command(args: argparse.Namespace) -> int:
    """Compose, train the linear probe, print what it evaluates on and the final and best accuracies."""
    from solo_directpred.sololearn.linear import run_linear

    result, code = _evaluate(args, run_linear)
    if code:
        return code
    print(f"linear: checkpoint {result.checkpoint}")
    print(
        f"linear: val_acc1={result.acc1:.2f} val_acc5={result.acc5:.2f} after {result.epochs} epoch(s); "
        f"best val_acc1={result.best_acc1:.2f} (epoch {result.best_epoch})"
    )
    return 0


def knn_command(args: argparse.Namespace) -> int:
    """Compose, extract features, print what it evaluates on and one line of accuracies per setting."""
    from solo_directpred.sololearn.knn import run_knn

    results, code = _evaluate(args, run_knn)
    if code:
        return code
    for r in results:
        temperature = "-" if r.temperature is None else f"{r.temperature:g}"
        print(
            f"knn: features={r.feature_type} k={r.k} distance={r.distance} T={temperature} "
            f"acc@1={r.acc1:.2f} acc@5={r.acc5:.2f}"
        )
    return 0
