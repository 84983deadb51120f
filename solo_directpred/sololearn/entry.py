"""Pretraining, linear and kNN evaluation through solo-learn, for installs without its scripts.

pip installs solo-learn's package but not its ``main_pretrain.py`` / ``main_linear.py`` /
``main_knn.py``. These drivers do the same jobs with solo-learn's public pieces
(``solo.args.*.parse_cfg``, ``solo.methods.METHODS``, ``solo.data.*``, ``solo.utils.*``) and a Lightning
``Trainer``, and behind ``solo-directpred pretrain | linear | knn``:

* configs are composed with Hydra from the same search path as upstream's scripts (the embedded
  ``directpred.yaml``, presets such as ``pretrain/cifar/directpred.yaml``) and take upstream's
  override syntax; the plugin is registered and the small-image evaluation transforms
  (``data.eval_crop_size``) are installed before anything is built;
* linear and kNN evaluation take a checkpoint file, a run directory, a zoo name or a URL, rebuild the
  backbone the checkpoint was trained with (ResNet stem read from the weights) and load it strictly;
  they evaluate on the data the run was pretrained on (dataset, paths, format, resolution, statistics
  from its ``args.json``; :func:`use_run_data`) unless ``data.*`` keys are set explicitly, and say so;
* kNN runs on CPU or GPU (``accelerator``) with the dataset's evaluation transforms.

Example::

    >>> cfg = compose_config("directpred.yaml", ["max_epochs=1"])  # doctest: +SKIP
    >>> result = run_pretrain(cfg)  # doctest: +SKIP
    >>> run_knn(compose_config("directpred_knn.yaml"), result.checkpoint)  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn

from solo_directpred.core.knn import KNN_DISTANCES, weighted_knn
from solo_directpred.sololearn.methods import ConfigError

#: Default settings of the ``knn`` section (upstream ``main_knn.py``'s arguments of the same names).
KNN_DEFAULTS: dict[str, Any] = {
    "k": [20],
    "temperature": [0.07],
    "distance_function": ["cosine"],
    "feature_type": ["backbone"],
    "batch_size": 256,
}
KNN_FEATURES = ("backbone", "projector")
_CHECKPOINT_SUFFIXES = (".ckpt", ".pth", ".pt", ".safetensors")
#: ``data`` keys an evaluation takes from the ``args.json`` of the run it evaluates (:func:`use_run_data`).
RUN_DATA_KEYS = ("dataset", "train_path", "val_path", "format", "num_classes")
#: Resolution and statistics of ``data.dataset: custom``; they belong to a dataset, so a run without them
#: is evaluated without them (solo-learn's transforms of its dataset).
RUN_TRANSFORM_KEYS = ("eval_crop_size", "eval_mean", "eval_std")


def prepare_solo() -> None:
    """Make torchvision importable under a CPU torch, then register the plugin into solo-learn."""
    from solo_directpred.compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    from solo_directpred.sololearn.plugin import register

    register()


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

    prepare_solo()
    directory = Path(config_path).expanduser().resolve() if config_path else configs_dir()
    with initialize_config_dir(config_dir=str(directory), version_base="1.2"):
        cfg = compose(config_name, overrides=list(overrides))
    OmegaConf.set_struct(cfg, False)
    return cfg


def _start(cfg: DictConfig) -> None:
    """What the Hydra callback does for upstream's scripts: registration, small-image transforms, and the
    spectral monitor for upstream byol/simsiam when ``spectral.enabled`` is true."""
    from solo_directpred.sololearn.plugin import configure_job

    prepare_solo()
    configure_job(cfg)


def trainer_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """The config's top-level keys that are ``lightning.pytorch.Trainer`` arguments (upstream's rule)."""
    from lightning.pytorch import Trainer

    valid = inspect.signature(Trainer.__init__).parameters
    kwargs = {}
    for name in valid:
        if name in cfg and name != "self":
            value = cfg[name]
            kwargs[name] = (
                OmegaConf.to_container(value) if isinstance(value, (DictConfig, ListConfig)) else value
            )
    if kwargs.get("strategy") == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        kwargs["strategy"] = DDPStrategy(find_unused_parameters=False)
    elif kwargs.get("strategy") is None:
        kwargs["strategy"] = "auto"
    return kwargs


def _dali(what: str) -> Any:
    try:
        import solo.data.dali_dataloader as dali
    except ImportError as err:
        raise ConfigError(
            f"data.format='dali' is invalid here: {what} needs NVIDIA DALI, which is not importable "
            f"({err}); install the 'dali' extra on a CUDA machine, or use data.format=image_folder"
        ) from err
    return dali


def _dali_module(cfg: DictConfig, module_class: Any, val_loader: Any, **kwargs: Any) -> Any:
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


def _fit_format(cfg: DictConfig) -> str:
    """The format of the torchvision-read data: DALI runs read their validation folder with torchvision."""
    return "image_folder" if cfg.data.format == "dali" else cfg.data.format


def _classification_loaders(cfg: DictConfig, **kwargs: Any) -> tuple[Any, Any]:
    """solo-learn's ``(train, val)`` classification loaders of ``cfg.data`` (``kwargs``: auto_augment)."""
    from solo.data.classification_dataloader import prepare_data

    return prepare_data(
        cfg.data.dataset,
        train_data_path=cfg.data.train_path,
        val_data_path=cfg.data.val_path,
        data_format=_fit_format(cfg),
        batch_size=cfg.optimizer.batch_size,
        num_workers=cfg.data.num_workers,
        **kwargs,
    )


# --------------------------------------------------------------------------------------------------
# pretraining


def build_pretrain_data(cfg: DictConfig) -> tuple[Any, Any]:
    """``(train, val)`` for a parsed pretraining cfg: DataLoaders, or a DALI data module and None.

    ``train`` yields solo-learn's batches ``(indices, [view_1, ..., view_n], labels)``; ``val`` is the
    classification loader of ``data.val_path`` (None without one, as upstream).
    """
    from solo.data.pretrain_dataloader import (
        FullTransformPipeline,
        NCropAugmentation,
        build_transform_pipeline,
        prepare_dataloader,
        prepare_datasets,
    )

    no_val = (cfg.data.dataset == "custom" and (cfg.data.no_labels or cfg.data.val_path is None)) or (
        cfg.data.dataset in ("imagenet100", "imagenet") and cfg.data.val_path is None
    )
    val_loader = None
    if not no_val:
        _, val_loader = _classification_loaders(cfg)
    if cfg.data.format == "dali":
        dali = _dali("pretraining")
        transform = FullTransformPipeline(
            [
                NCropAugmentation(
                    dali.build_transform_pipeline_dali(cfg.data.dataset, aug, dali_device=cfg.dali.device),
                    aug.num_crops,
                )
                for aug in cfg.augmentations
            ]
        )
        module = _dali_module(
            cfg,
            dali.PretrainDALIDataModule,
            val_loader,
            transforms=transform,
            num_large_crops=cfg.data.num_large_crops,
            num_small_crops=cfg.data.num_small_crops,
            no_labels=cfg.data.no_labels,
            encode_indexes_into_labels=cfg.dali.encode_indexes_into_labels,
        )
        return module, None
    transform = FullTransformPipeline(
        [
            NCropAugmentation(build_transform_pipeline(cfg.data.dataset, aug), aug.num_crops)
            for aug in cfg.augmentations
        ]
    )
    dataset = prepare_datasets(
        cfg.data.dataset,
        transform,
        train_data_path=cfg.data.train_path,
        data_format=cfg.data.format,
        no_labels=cfg.data.no_labels,
        data_fraction=cfg.data.fraction,
    )
    loader = prepare_dataloader(
        dataset, batch_size=cfg.optimizer.batch_size, num_workers=cfg.data.num_workers
    )
    return loader, val_loader


#: Upstream's methods that train on a number of large crops other than 2 (its ``main_pretrain.py`` check).
CROP_FREE_METHODS = ("wmse", "mae")


def build_method(cfg: DictConfig) -> nn.Module:
    """``METHODS[cfg.method](cfg)`` for a parsed cfg, with upstream's pretrain checks: a known method name
    (an unknown one lists the registered ones) and 2 large crops unless the method is in
    :data:`CROP_FREE_METHODS`."""
    from solo.methods import METHODS

    prepare_solo()
    if cfg.method not in METHODS:
        raise ConfigError(f"method={cfg.method!r} is invalid: must be one of {sorted(METHODS)}")
    crops = OmegaConf.select(cfg, "data.num_large_crops", default=2)
    if crops != 2 and cfg.method not in CROP_FREE_METHODS:  # upstream main_pretrain's rule
        raise ConfigError(
            f"data.num_large_crops={crops!r} is invalid: method {cfg.method!r} compares 2 large crops; "
            f"only {', '.join(CROP_FREE_METHODS)} take another count"
        )
    return METHODS[cfg.method](cfg)


@dataclass
class PretrainResult:
    """Outcome of :func:`run_pretrain`: last checkpoint (None with checkpointing off) and final metrics."""

    checkpoint: Path | None
    metrics: dict[str, float] = field(default_factory=dict)


def _resume_path(cfg: DictConfig, logdir: str) -> tuple[str | None, str | None]:
    if cfg.auto_resume.enabled and cfg.resume_from_checkpoint is None:
        from solo.utils.auto_resumer import AutoResumer

        resumer = AutoResumer(checkpoint_dir=logdir, max_hours=cfg.auto_resume.max_hours)
        path, wandb_id = resumer.find_checkpoint(cfg)
        if path is not None:
            print(f"Resuming from previous checkpoint that matches the config: {path}")
        return path, wandb_id
    return cfg.resume_from_checkpoint, None


def _logger_and_callbacks(cfg: DictConfig, model: nn.Module, wandb_id: str | None) -> tuple[Any, list]:
    if not cfg.wandb.enabled:
        return None, []
    from lightning.pytorch.callbacks import LearningRateMonitor
    from lightning.pytorch.loggers import WandbLogger

    logger = WandbLogger(
        name=cfg.name,
        project=cfg.wandb.project,
        entity=cfg.wandb.entity,
        offline=cfg.wandb.offline,
        resume="allow" if wandb_id else None,
        id=wandb_id,
    )
    logger.watch(model, log="gradients", log_freq=100)
    logger.log_hyperparams(OmegaConf.to_container(cfg))
    return logger, [LearningRateMonitor(logging_interval="step")]


def _metrics(trainer: Any) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in trainer.callback_metrics.items()
        if isinstance(v, torch.Tensor) and v.numel() == 1
    }


def run_pretrain(cfg: DictConfig) -> PretrainResult:
    """Pretrain ``cfg.method`` as upstream's ``main_pretrain.py`` does; returns checkpoint and metrics.

    Checkpoints go to ``checkpoint.dir/METHOD/RUN/NAME-RUN-ep=E.ckpt`` with the run's ``args.json``;
    ``auto_resume`` and ``resume_from_checkpoint`` behave as upstream.
    """
    from lightning.pytorch import Trainer, seed_everything
    from solo.args.pretrain import parse_cfg
    from solo.utils.checkpointer import Checkpointer
    from solo.utils.misc import make_contiguous

    _start(cfg)
    cfg = parse_cfg(cfg)
    seed_everything(cfg.seed)
    model = build_method(cfg)
    make_contiguous(model)
    if not cfg.performance.disable_channel_last:
        model = model.to(memory_format=torch.channels_last)
    train, val_loader = build_pretrain_data(cfg)

    logdir = os.path.join(cfg.checkpoint.dir, cfg.method)
    ckpt_path, wandb_id = _resume_path(cfg, logdir)
    logger, callbacks = _logger_and_callbacks(cfg, model, wandb_id)
    checkpointer = None
    if cfg.checkpoint.enabled:
        checkpointer = Checkpointer(
            cfg, logdir=logdir, frequency=cfg.checkpoint.frequency, keep_prev=cfg.checkpoint.keep_prev
        )
        callbacks.append(checkpointer)
    kwargs = trainer_kwargs(cfg)
    kwargs.update(logger=logger, callbacks=callbacks, enable_checkpointing=False)
    trainer = Trainer(**kwargs)
    if cfg.data.format == "dali":
        trainer.fit(model, datamodule=train, ckpt_path=ckpt_path)
    else:
        trainer.fit(model, train, val_loader, ckpt_path=ckpt_path)
    last = getattr(checkpointer, "last_ckpt", None)
    return PretrainResult(checkpoint=None if last is None else Path(last), metrics=_metrics(trainer))


# --------------------------------------------------------------------------------------------------
# checkpoints and backbones for evaluation


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
    stem = path.stem
    marker = stem.rfind("-ep=")
    if marker < 0:
        return -1
    digits = stem[marker + 4 :]
    return int(digits) if digits.isdigit() else -1


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


def _source(cfg: DictConfig, source: str | os.PathLike | None) -> Path:
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


# --------------------------------------------------------------------------------------------------
# linear evaluation


@dataclass
class LinearResult:
    """Linear-probe accuracies (%, top-1/top-5) of the last epoch and the best top-1 over the epochs."""

    acc1: float
    acc5: float
    best_acc1: float
    best_epoch: int
    epochs: int
    checkpoint: Path
    history: list[tuple[int, float, float]] = field(default_factory=list)


def _history_callback() -> Any:
    from lightning.pytorch.callbacks import Callback

    class ValidationHistory(Callback):
        """Top-1/top-5 validation accuracy after every training epoch (sanity checks excluded)."""

        def __init__(self) -> None:
            self.history: list[tuple[int, float, float]] = []

        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            metrics = trainer.callback_metrics
            if trainer.sanity_checking or "val_acc1" not in metrics:
                return
            entry = (trainer.current_epoch, float(metrics["val_acc1"]), float(metrics["val_acc5"]))
            self.history.append(entry)

    return ValidationHistory()


def _linear_loss(cfg: DictConfig) -> tuple[nn.Module, Any]:
    if cfg.mixup > 0 or cfg.cutmix > 0:
        from timm.data.mixup import Mixup
        from timm.loss import SoftTargetCrossEntropy

        mixup = Mixup(
            mixup_alpha=cfg.mixup,
            cutmix_alpha=cfg.cutmix,
            label_smoothing=cfg.label_smoothing,
            num_classes=cfg.data.num_classes,
        )
        return SoftTargetCrossEntropy(), mixup
    if cfg.label_smoothing > 0:
        from timm.loss import LabelSmoothingCrossEntropy

        return LabelSmoothingCrossEntropy(smoothing=cfg.label_smoothing), None
    return nn.CrossEntropyLoss(), None


def run_linear(
    cfg: DictConfig, source: str | os.PathLike | None = None, overridden: Collection[str] = ()
) -> LinearResult:
    """Train a linear classifier on the frozen backbone of ``source`` (or ``pretrained_feature_extractor``).

    Same protocol as upstream's ``main_linear.py`` (solo-learn's ``LinearModel`` and data pipeline); the
    backbone is rebuilt as it was pretrained and loaded strictly. The data are the run's
    (:func:`use_run_data`; ``overridden``: the ``data`` keys the caller set). Accuracies are in percent.
    """
    from lightning.pytorch import Trainer, seed_everything
    from solo.args.linear import parse_cfg
    from solo.methods.linear import LinearModel
    from solo.utils.checkpointer import Checkpointer
    from solo.utils.misc import make_contiguous

    path = _source(cfg, source)
    origin = use_run_data(cfg, path, overridden)
    _start(cfg)
    print(f"linear: {describe_eval_data(cfg, origin)}")
    cfg = parse_cfg(cfg)
    backbone = load_pretrained_backbone(path, cfg.backbone.name)
    cfg.backbone.kwargs = backbone.kwargs
    seed_everything(cfg.seed)
    loss, mixup = _linear_loss(cfg)
    model = LinearModel(backbone.module, loss_func=loss, mixup_func=mixup, cfg=cfg)
    make_contiguous(model)
    if not cfg.performance.disable_channel_last:
        model = model.to(memory_format=torch.channels_last)

    train_loader, val_loader = _classification_loaders(cfg, auto_augment=cfg.auto_augment)
    history = _history_callback()
    callbacks: list = [history]
    if cfg.checkpoint.enabled:
        logdir = os.path.join(cfg.checkpoint.dir, "linear")
        callbacks.append(
            Checkpointer(
                cfg, logdir=logdir, frequency=cfg.checkpoint.frequency, keep_prev=cfg.checkpoint.keep_prev
            )
        )
    kwargs = trainer_kwargs(cfg)
    kwargs.update(logger=None, callbacks=callbacks, enable_checkpointing=False)
    trainer = Trainer(**kwargs)
    if cfg.data.format == "dali":
        if cfg.auto_augment:
            raise ConfigError(
                "auto_augment=True is invalid with data.format='dali': DALI has no auto augment"
            )
        dali = _dali("linear evaluation")
        module = _dali_module(
            cfg, dali.ClassificationDALIDataModule, val_loader, val_data_path=cfg.data.val_path
        )
        trainer.fit(model, datamodule=module, ckpt_path=cfg.resume_from_checkpoint)
    else:
        trainer.fit(model, train_loader, val_loader, ckpt_path=cfg.resume_from_checkpoint)
    if not history.history:
        raise RuntimeError("linear evaluation ran no validation epoch (check limit_val_batches / max_epochs)")
    last_epoch, acc1, acc5 = history.history[-1]
    best_epoch, best_acc1, _ = max(history.history, key=lambda h: h[1])
    return LinearResult(acc1, acc5, best_acc1, best_epoch, last_epoch + 1, path, list(history.history))


# --------------------------------------------------------------------------------------------------
# kNN evaluation


@dataclass(frozen=True)
class KnnResult:
    """Weighted kNN accuracy (%, top-1/top-5) of one setting."""

    feature_type: str
    k: int
    distance: str
    temperature: float | None
    acc1: float
    acc5: float


def knn_settings(cfg: DictConfig) -> DictConfig:
    """Fill and check the ``knn`` section (keys as upstream ``main_knn.py``'s arguments)."""
    knn = OmegaConf.select(cfg, "knn", default=None) or {}
    cfg.knn = {**KNN_DEFAULTS, **OmegaConf.to_container(OmegaConf.create(knn), resolve=True)}
    for key in ("k", "temperature", "distance_function", "feature_type"):
        if not isinstance(cfg.knn[key], ListConfig):
            cfg.knn[key] = [cfg.knn[key]]
    for k in cfg.knn.k:
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ConfigError(f"knn.k={list(cfg.knn.k)!r} is invalid: must be positive integers")
    for t in cfg.knn.temperature:
        if isinstance(t, bool) or not isinstance(t, (int, float)) or t <= 0:
            raise ConfigError(
                f"knn.temperature={list(cfg.knn.temperature)!r} is invalid: must be numbers > 0"
            )
    for key, allowed in (("distance_function", KNN_DISTANCES), ("feature_type", KNN_FEATURES)):
        bad = [v for v in cfg.knn[key] if v not in allowed]
        if bad or not cfg.knn[key]:
            raise ConfigError(f"knn.{key}={list(cfg.knn[key])!r} is invalid: each must be one of {allowed}")
    if not isinstance(cfg.knn.batch_size, int) or cfg.knn.batch_size < 1:
        raise ConfigError(f"knn.batch_size={cfg.knn.batch_size!r} is invalid: must be a positive integer")
    return cfg


def eval_device(cfg: DictConfig) -> torch.device:
    """``accelerator``: ``cpu``, ``gpu``/``cuda``, or ``auto`` (default: CUDA when available)."""
    accelerator = str(OmegaConf.select(cfg, "accelerator", default="auto")).lower()
    if accelerator == "cpu":
        return torch.device("cpu")
    if accelerator in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"accelerator={accelerator!r} is invalid: CUDA is not available; use cpu or auto"
            )
        return torch.device("cuda")
    if accelerator == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    raise ConfigError(f"accelerator={accelerator!r} is invalid: must be cpu, gpu or auto")


def _feature_model(cfg: DictConfig, path: Path) -> tuple[nn.Module, bool]:
    """The network that gives the requested features and whether it is a full method (feats and z)."""
    if "projector" not in cfg.knn.feature_type:
        backbone = load_pretrained_backbone(path, OmegaConf.select(cfg, "backbone.name", default=None))
        return backbone.module, False
    from solo_directpred.zoo import load_torch_file
    from solo_directpred.zoo.checkpoint import read_run_args

    run_args = read_run_args(path)
    if run_args is None or path.suffix == ".safetensors":
        raise ConfigError(
            f"knn.feature_type={list(cfg.knn.feature_type)!r} is invalid for {path}: projector features "
            "need a run's Lightning checkpoint with its args.json; use knn.feature_type=[backbone]"
        )
    model = build_method(OmegaConf.create(run_args))
    state = load_torch_file(path)["state_dict"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ConfigError(
            f"pretrained_feature_extractor={str(path)!r} does not fit method {run_args['method']!r}: "
            f"missing keys {missing[:3]}, unexpected keys {unexpected[:3]}"
        )
    return model, True


@torch.no_grad()
def extract_features(
    loader: Any, model: nn.Module, full_method: bool, device: torch.device, desc: str
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Backbone (and projector) features of every image of ``loader``: ``{type: (N, D)}``, labels ``(N,)``."""
    from tqdm.auto import tqdm

    model.eval().to(device)
    feats: dict[str, list[torch.Tensor]] = {"backbone": [], "projector": []}
    labels = []
    for images, targets in tqdm(loader, desc=desc, unit="batch", leave=False):
        images = images.to(device, non_blocking=True)
        if full_method:
            out = model(images)
            feats["backbone"].append(out["feats"].float().cpu())
            feats["projector"].append(out["z"].float().cpu())
        else:
            feats["backbone"].append(model(images).float().cpu())
        labels.append(targets)
    return {k: torch.cat(v) for k, v in feats.items() if v}, torch.cat(labels)


def run_knn(
    cfg: DictConfig, source: str | os.PathLike | None = None, overridden: Collection[str] = ()
) -> list[KnnResult]:
    """Weighted kNN accuracy of the frozen features of ``source`` (or ``pretrained_feature_extractor``).

    For every combination of ``knn.feature_type``, ``knn.k``, ``knn.distance_function`` and (cosine only)
    ``knn.temperature``, :func:`weighted_knn` votes with the training split's features;
    both splits go through the dataset's evaluation transform, as upstream's ``main_knn.py``. The data
    are the run's (:func:`use_run_data`; ``overridden``: the ``data`` keys the caller set).
    """
    from solo.data import classification_dataloader as classification

    cfg = knn_settings(cfg)
    path = _source(cfg, source)
    origin = use_run_data(cfg, path, overridden)
    _start(cfg)  # before prepare_transforms: it may install the small-image transforms
    print(f"knn: {describe_eval_data(cfg, origin)}")
    device = eval_device(cfg)
    model, full_method = _feature_model(cfg, path)
    _, transform = classification.prepare_transforms(cfg.data.dataset)
    train_set, val_set = classification.prepare_datasets(
        cfg.data.dataset,
        T_train=transform,
        T_val=transform,
        train_data_path=cfg.data.train_path,
        val_data_path=cfg.data.val_path,
        data_format=_fit_format(cfg),
        download=False,
    )
    loaders = [
        torch.utils.data.DataLoader(
            dataset, batch_size=cfg.knn.batch_size, shuffle=False, num_workers=cfg.data.num_workers
        )
        for dataset in (train_set, val_set)
    ]
    train_feats, train_labels = extract_features(loaders[0], model, full_method, device, "kNN train")
    val_feats, val_labels = extract_features(loaders[1], model, full_method, device, "kNN val")
    results = []
    for feature_type in cfg.knn.feature_type:
        for k in cfg.knn.k:
            for distance in cfg.knn.distance_function:
                for temperature in cfg.knn.temperature if distance == "cosine" else [None]:
                    acc1, acc5 = weighted_knn(
                        train_feats[feature_type],
                        train_labels,
                        val_feats[feature_type],
                        val_labels,
                        k=k,
                        temperature=temperature,
                        distance=distance,
                    )
                    results.append(
                        KnnResult(feature_type, k, distance, temperature, float(acc1), float(acc5))
                    )
    return results
