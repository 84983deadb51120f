"""What ``solo-directpred pretrain | linear | knn`` share (upstream's ``main_*.py`` jobs, which pip omits).

A job composes its config as upstream's scripts do (:func:`compose_config`), then runs it with
:func:`.pretrain.run_pretrain` ``(cfg)``, :func:`.linear.run_linear` or :func:`.knn.run_knn` ``(cfg, src)``.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from solo_directpred.sololearn.methods import ConfigError

_CHECKPOINT_SUFFIXES = (".ckpt", ".pth", ".pt", ".safetensors")
#: ``data`` keys an evaluation takes from the ``args.json`` of the run it evaluates (:func:`use_run_data`).
RUN_DATA_KEYS = ("dataset", "train_path", "val_path", "format", "num_classes")
#: Resolution and statistics of ``data.dataset: custom``; they belong to a dataset, so a run without them
#: is evaluated without them (solo-learn's transforms of its dataset).
RUN_TRANSFORM_KEYS = ("eval_crop_size", "eval_mean", "eval_std")


def compose_config(
    config_name: str, overrides: Sequence[str] = (), config_path: str | os.PathLike | None = None
) -> DictConfig:
    """Compose ``config_name`` as upstream's Hydra apps would, with struct mode off.

    The search path is ``config_path`` (default: the package's configs) plus the plugin's search-path
    entries (its configs and the ``scripts/`` presets), so ``pretrain/cifar/directpred.yaml`` resolves.
    ``overrides`` use Hydra's syntax (``key=value``, ``+new_key=value``, ``~key``).
    """
    from hydra import compose, initialize_config_dir

    from solo_directpred.paths import configs_dir
    from solo_directpred.sololearn.plugin import register

    register()
    directory = Path(config_path).expanduser().resolve() if config_path else configs_dir()
    with initialize_config_dir(config_dir=str(directory), version_base="1.2"):
        cfg = compose(config_name, overrides=list(overrides))
    OmegaConf.set_struct(cfg, False)
    return cfg


def start_job(cfg: DictConfig) -> None:
    """What the Hydra callback does for upstream's scripts: registration, small-image transforms, and the
    spectral monitor for upstream byol/simsiam when ``spectral.enabled`` is true."""
    from solo_directpred.sololearn.plugin import configure_job, register

    register()
    configure_job(cfg)


def trainer_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """The config's top-level keys that are ``lightning.pytorch.Trainer`` arguments (upstream's rule)."""
    from lightning.pytorch import Trainer

    kwargs = {
        name: OmegaConf.to_container(cfg[name]) if OmegaConf.is_config(cfg[name]) else cfg[name]
        for name in inspect.signature(Trainer.__init__).parameters
        if name in cfg and name != "self"
    }
    if kwargs.get("strategy") == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        kwargs["strategy"] = DDPStrategy(find_unused_parameters=False)
    elif kwargs.get("strategy") is None:
        kwargs["strategy"] = "auto"
    return kwargs


def build_trainer(cfg: DictConfig, job: str, callbacks: list, logger: Any = None) -> tuple[Any, Any]:
    """``(Trainer, Checkpointer)``: a Lightning ``Trainer`` of ``cfg`` with ``callbacks`` and, unless
    ``checkpoint.enabled`` is false (then None), solo-learn's ``Checkpointer`` into ``checkpoint.dir/job``."""
    from lightning.pytorch import Trainer
    from solo.utils.checkpointer import Checkpointer

    checkpointer = None
    if cfg.checkpoint.enabled:
        logdir = os.path.join(cfg.checkpoint.dir, job)
        checkpointer = Checkpointer(
            cfg, logdir=logdir, frequency=cfg.checkpoint.frequency, keep_prev=cfg.checkpoint.keep_prev
        )
        callbacks = [*callbacks, checkpointer]
    kwargs = trainer_kwargs(cfg)
    kwargs.update(logger=logger, callbacks=callbacks, enable_checkpointing=False)
    return Trainer(**kwargs), checkpointer


def import_dali(what: str) -> Any:
    """solo-learn's DALI loaders; a ConfigError on ``data.format`` when ``what`` (a job) cannot have them."""
    try:
        import solo.data.dali_dataloader as dali
    except ImportError as err:
        raise ConfigError(
            f"data.format='dali' is invalid here: {what} needs NVIDIA DALI, which is not importable "
            f"({err}); install the 'dali' extra on a CUDA machine, or use data.format=image_folder"
        ) from err
    return dali


def dali_module(cfg: DictConfig, module_class: Any, val_loader: Any, **kwargs: Any) -> Any:
    """The solo-learn DALI data module ``module_class(**kwargs)`` of ``cfg``, validating on ``val_loader``."""
    data = cfg.data
    created = module_class(
        dataset=data.dataset,
        train_data_path=data.train_path,
        num_workers=data.num_workers,
        batch_size=cfg.optimizer.batch_size,
        data_fraction=data.fraction,
        dali_device=cfg.dali.device,
        **kwargs,
    )
    created.val_dataloader = lambda: val_loader
    return created


def fit_format(cfg: DictConfig) -> str:
    """The format of the torchvision-read data: DALI runs read their validation folder with torchvision."""
    return "image_folder" if cfg.data.format == "dali" else cfg.data.format


def classification_loaders(cfg: DictConfig, **kwargs: Any) -> tuple[Any, Any]:
    """solo-learn's ``(train, val)`` classification loaders of ``cfg.data`` (``kwargs``: auto_augment)."""
    from solo.data.classification_dataloader import prepare_data

    return prepare_data(
        cfg.data.dataset,
        train_data_path=cfg.data.train_path,
        val_data_path=cfg.data.val_path,
        data_format=fit_format(cfg),
        batch_size=cfg.optimizer.batch_size,
        num_workers=cfg.data.num_workers,
        **kwargs,
    )


def find_checkpoint(source: str | os.PathLike) -> Path:
    """A local checkpoint file for ``source``: a file, a run directory, a zoo name or a URL.

    A directory (solo-learn's ``trained_models/METHOD/RUN/``) gives its checkpoint of the highest epoch
    (``...-ep=E.ckpt``; the newest file when names carry no epoch). Zoo names and URLs are downloaded and
    verified by :func:`solo_directpred.zoo.resolve_checkpoint`.
    """
    from solo_directpred import zoo

    path = Path(source).expanduser()
    if path.is_dir():
        candidates = [p for p in path.iterdir() if p.is_file() and p.suffix in _CHECKPOINT_SUFFIXES]
        if not candidates:
            raise ConfigError(
                f"pretrained_feature_extractor={str(source)!r} is invalid: the directory holds no "
                f"checkpoint ({', '.join(_CHECKPOINT_SUFFIXES)}); pass a run directory "
                "(trained_models/METHOD/RUN), a checkpoint file, a zoo name or a URL"
            )
        return max(candidates, key=lambda p: (_epoch_of(p), p.stat().st_mtime))
    try:
        return zoo.resolve_checkpoint(str(source))
    except zoo.ZooError as err:
        raise ConfigError(f"pretrained_feature_extractor={str(source)!r} is invalid: {err}") from err


def _epoch_of(path: Path) -> int:
    _, marker, digits = path.stem.rpartition("-ep=")
    return int(digits) if marker and digits.isdigit() else -1


@dataclass
class PretrainedBackbone:
    """A backbone rebuilt from a checkpoint: the module (weights loaded strictly) and how it was built."""

    module: nn.Module
    name: str
    kwargs: dict[str, Any]
    cifar_stem: bool
    method: str
    path: Path


def load_pretrained_backbone(path: str | os.PathLike, expected_name: str | None = None) -> PretrainedBackbone:
    """Rebuild the backbone stored in ``path`` (any format :mod:`solo_directpred.zoo` reads).

    Unlike upstream's ``main_linear.py`` (``strict=False``), every key must match: a renamed or missing
    layer is an error, never a silently random one. ``expected_name`` (the config's ``backbone.name``)
    must equal the checkpoint's backbone.
    """
    from solo_directpred import zoo

    weights = zoo.backbone_weights(Path(path))
    spec = weights.spec
    if expected_name is not None and expected_name != spec.name:
        raise ConfigError(
            f"backbone.name={expected_name!r} is invalid: {path} holds a {spec.name!r} backbone; "
            f"set backbone.name={spec.name} (or use the evaluation preset of the pretraining dataset)"
        )
    module = zoo.load_weights(zoo.build_backbone(spec, weights.method), weights.state, spec)
    return PretrainedBackbone(
        module, spec.name, dict(spec.kwargs), spec.cifar_stem, weights.method, Path(path)
    )


def resolve_source(cfg: DictConfig, source: str | os.PathLike | None) -> Path:
    """The checkpoint of ``source`` (default ``pretrained_feature_extractor``), stored back into ``cfg``."""
    if source is None:
        source = OmegaConf.select(cfg, "pretrained_feature_extractor", default=None)
        if source is None or source in ("None", "???"):
            raise ConfigError(
                "pretrained_feature_extractor is missing: pass a checkpoint, a run directory, a zoo "
                "name or a URL (solo-directpred linear|knn SOURCE, or pretrained_feature_extractor=...)"
            )
    path = find_checkpoint(source)
    cfg.pretrained_feature_extractor = str(path)
    return path


def overridden_data_keys(overrides: Sequence[str]) -> set[str]:
    """The ``data`` keys a Hydra override list sets: ``data.KEY=...``, ``+data.KEY=...``, ``~data.KEY``."""
    keys = (item.split("=", 1)[0].lstrip("+~") for item in overrides)
    return {key.split(".")[1] for key in keys if key.startswith("data.") and len(key) > 5}


def use_run_data(cfg: DictConfig, path: Path, overridden: Collection[str] = ()) -> str:
    """Make ``cfg.data`` the data the run of checkpoint ``path`` was pretrained on; returns their origin.

    The run's ``args.json`` (beside the checkpoint) gives :data:`RUN_DATA_KEYS` and, for ``custom``
    data, :data:`RUN_TRANSFORM_KEYS` (a key the run lacks is dropped from ``cfg``). Keys in
    ``overridden`` keep the config's value; an overridden ``dataset`` keeps the config's data whole,
    as does a checkpoint without ``args.json`` (exported zoo weights).
    """
    from solo_directpred.zoo.checkpoint import read_run_args

    run_data = (read_run_args(path) or {}).get("data")
    if not isinstance(run_data, dict) or "dataset" not in run_data:
        return f"the config ({path.name} has no args.json beside it)"
    if "dataset" in overridden:
        return "the config (data.dataset set explicitly)"
    for key in RUN_DATA_KEYS + RUN_TRANSFORM_KEYS:
        if key in overridden:
            continue
        if key in run_data:
            cfg.data[key] = run_data[key]
        elif key in RUN_TRANSFORM_KEYS:
            cfg.data.pop(key, None)
    kept = sorted(set(overridden) & set(RUN_DATA_KEYS + RUN_TRANSFORM_KEYS))
    suffix = f" (data.{', data.'.join(kept)} from the command line)" if kept else ""
    return f"{path.parent / 'args.json'}{suffix}"


def describe_eval_data(cfg: DictConfig, origin: str) -> str:
    """One line: dataset, paths, format, the resolution and statistics of its evaluation transform."""
    from solo.data.classification_dataloader import prepare_transforms

    steps = getattr(prepare_transforms(cfg.data.dataset)[1], "transforms", [])
    sizes = [step.size for step in steps if type(step).__name__ in ("CenterCrop", "Resize")]
    if not sizes:
        resolution = "native size"
    elif isinstance(sizes[-1], int):
        resolution = f"shorter side {sizes[-1]} px"
    else:
        resolution = "x".join(map(str, sizes[-1]))
    stats = [step for step in steps if type(step).__name__ == "Normalize"]
    normalise = "no normalisation"
    if stats:
        mean, std = (", ".join(f"{x:.4g}" for x in values) for values in (stats[-1].mean, stats[-1].std))
        normalise = f"mean ({mean}) std ({std})"
    return (
        f"evaluating on {cfg.data.dataset} (train {cfg.data.train_path}, val {cfg.data.val_path}, "
        f"format {cfg.data.format}, {resolution}, {normalise}); data settings from {origin}"
    )
