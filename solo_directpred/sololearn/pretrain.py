"""``solo-directpred pretrain``: upstream's ``main_pretrain.py``, with its checks, for pip installs."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from solo_directpred.sololearn import shared
from solo_directpred.sololearn.methods import ConfigError


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
    val_loader = None if no_val else shared.classification_loaders(cfg)[1]
    dali = shared.import_dali("pretraining") if cfg.data.format == "dali" else None
    transform = FullTransformPipeline(
        [
            NCropAugmentation(
                dali.build_transform_pipeline_dali(cfg.data.dataset, aug, dali_device=cfg.dali.device)
                if dali
                else build_transform_pipeline(cfg.data.dataset, aug),
                aug.num_crops,
            )
            for aug in cfg.augmentations
        ]
    )
    if dali:
        module = shared.dali_module(
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

    from solo_directpred.sololearn.plugin import register

    register()
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
    metrics = trainer.callback_metrics.items()
    return {k: float(v) for k, v in metrics if isinstance(v, torch.Tensor) and v.numel() == 1}


def run_pretrain(cfg: DictConfig) -> PretrainResult:
    """Pretrain ``cfg.method`` as upstream's ``main_pretrain.py`` does; returns checkpoint and metrics.

    Checkpoints go to ``checkpoint.dir/METHOD/RUN/NAME-RUN-ep=E.ckpt`` with the run's ``args.json``;
    ``auto_resume`` and ``resume_from_checkpoint`` behave as upstream.
    """
    from lightning.pytorch import seed_everything
    from solo.args.pretrain import parse_cfg
    from solo.utils.misc import make_contiguous

    shared.start_job(cfg)
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
    trainer, checkpointer = shared.build_trainer(cfg, cfg.method, callbacks, logger)
    if cfg.data.format == "dali":
        trainer.fit(model, datamodule=train, ckpt_path=ckpt_path)
    else:
        trainer.fit(model, train, val_loader, ckpt_path=ckpt_path)
    last = getattr(checkpointer, "last_ckpt", None)
    return PretrainResult(checkpoint=None if last is None else Path(last), metrics=_metrics(trainer))
