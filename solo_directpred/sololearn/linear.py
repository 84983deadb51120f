"""``solo-directpred linear``: upstream's ``main_linear.py`` on a checkpoint's frozen backbone."""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig
from torch import nn

from solo_directpred.sololearn import shared
from solo_directpred.sololearn.methods import ConfigError


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


class _ValidationHistory(Callback):
    """Top-1/top-5 validation accuracy after every training epoch (sanity checks excluded)."""

    def __init__(self) -> None:
        self.history: list[tuple[int, float, float]] = []

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        metrics = trainer.callback_metrics
        if not trainer.sanity_checking and "val_acc1" in metrics:
            self.history.append(
                (trainer.current_epoch, float(metrics["val_acc1"]), float(metrics["val_acc5"]))
            )


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
    backbone is rebuilt as it was pretrained and loaded strictly. Accuracies are in percent. The data are
    the run's (:func:`.shared.use_run_data`; ``overridden``: the ``data`` keys the caller set).
    """
    from lightning.pytorch import seed_everything
    from solo.args.linear import parse_cfg
    from solo.methods.linear import LinearModel
    from solo.utils.misc import make_contiguous

    path = shared.resolve_source(cfg, source)
    origin = shared.use_run_data(cfg, path, overridden)
    shared.start_job(cfg)
    print(f"linear: {shared.describe_eval_data(cfg, origin)}")
    cfg = parse_cfg(cfg)
    backbone = shared.load_pretrained_backbone(path, cfg.backbone.name)
    cfg.backbone.kwargs = backbone.kwargs
    seed_everything(cfg.seed)
    loss, mixup = _linear_loss(cfg)
    model = LinearModel(backbone.module, loss_func=loss, mixup_func=mixup, cfg=cfg)
    make_contiguous(model)
    if not cfg.performance.disable_channel_last:
        model = model.to(memory_format=torch.channels_last)

    train_loader, val_loader = shared.classification_loaders(cfg, auto_augment=cfg.auto_augment)
    history = _ValidationHistory()
    trainer, _ = shared.build_trainer(cfg, "linear", [history])
    if cfg.data.format == "dali":
        if cfg.auto_augment:
            raise ConfigError(
                "auto_augment=True is invalid with data.format='dali': DALI has no auto augment"
            )
        dali = shared.import_dali("linear evaluation")
        module = shared.dali_module(
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
