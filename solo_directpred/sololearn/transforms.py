"""Evaluation transforms for small custom images, patched into solo-learn at job start.

Upstream's ``prepare_transforms("custom")`` always trains the online/linear classifier on 224-pixel
RandomResizedCrops and evaluates on Resize(256)+CenterCrop(224) with ImageNet statistics: small custom
images (the embedded digits, 16×16) are blown up fourteen-fold and normalised with the wrong statistics.
When a config sets ``data.eval_crop_size`` (and optionally ``data.eval_mean`` / ``data.eval_std``), the
``custom`` pipelines become, at that size S:

* train: RandomResizedCrop(S, scale=(0.5, 1)) → ToTensor → Normalize(mean, std)
* val:   Resize(S) → CenterCrop(S) → ToTensor → Normalize(mean, std)

Other datasets, and configs without the key, keep upstream's transforms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

_settings: dict[str, Any] = {}
_original = None


def custom_transforms(crop_size: int, mean: Sequence[float], std: Sequence[float]) -> tuple[Any, Any]:
    """(train, val) torchvision pipelines at ``crop_size`` for ``data.dataset: custom``."""
    from solo_directpred.compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    from torchvision import transforms as T

    normalize = T.Normalize(mean=list(mean), std=list(std))
    train = T.Compose([T.RandomResizedCrop(crop_size, scale=(0.5, 1.0)), T.ToTensor(), normalize])
    val = T.Compose([T.Resize(crop_size), T.CenterCrop(crop_size), T.ToTensor(), normalize])
    return train, val


def _patched_prepare_transforms(dataset: str):
    if dataset == "custom" and _settings:
        return custom_transforms(**_settings)
    return _original(dataset)


def configure_eval_transforms(config: DictConfig) -> bool:
    """Install the small-image ``custom`` transforms if ``config.data.eval_crop_size`` is set.

    Returns True when they are active. Raises ValueError naming the key for a bad value.
    """
    global _original
    size = OmegaConf.select(config, "data.eval_crop_size", default=None)
    if size is None:
        _settings.clear()
        return False
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"data.eval_crop_size={size!r} is invalid: must be a positive integer (pixels)")
    mean = OmegaConf.select(config, "data.eval_mean", default=(0.485, 0.456, 0.406))
    std = OmegaConf.select(config, "data.eval_std", default=(0.229, 0.224, 0.225))
    for key, value in (("data.eval_mean", mean), ("data.eval_std", std)):
        if len(value) != 3:
            raise ValueError(f"{key}={list(value)!r} is invalid: must be a list of 3 numbers (RGB)")
    import solo.data.classification_dataloader as classification

    if _original is None:
        _original = classification.prepare_transforms
        classification.prepare_transforms = _patched_prepare_transforms
    _settings.update(crop_size=size, mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std))
    return True
