"""``solo-directpred knn``: upstream's ``main_knn.py`` on a checkpoint's frozen features, CPU or GPU."""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn

from solo_directpred.core.knn import KNN_DISTANCES, weighted_knn
from solo_directpred.sololearn import shared
from solo_directpred.sololearn.methods import ConfigError
from solo_directpred.sololearn.pretrain import build_method

#: Default settings of the ``knn`` section (upstream ``main_knn.py``'s arguments of the same names).
KNN_DEFAULTS: dict[str, Any] = {
    "k": [20],
    "temperature": [0.07],
    "distance_function": ["cosine"],
    "feature_type": ["backbone"],
    "batch_size": 256,
}
KNN_FEATURES = ("backbone", "projector")


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
    if accelerator not in ("cpu", "gpu", "cuda", "auto"):
        raise ConfigError(f"accelerator={accelerator!r} is invalid: must be cpu, gpu or auto")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"accelerator={accelerator!r} is invalid: CUDA is not available; use cpu or auto")
    return torch.device("cuda" if accelerator != "cpu" and torch.cuda.is_available() else "cpu")


def _feature_model(cfg: DictConfig, path: Path) -> tuple[nn.Module, bool]:
    """The network that gives the requested features and whether it is a full method (feats and z)."""
    if "projector" not in cfg.knn.feature_type:
        backbone = shared.load_pretrained_backbone(path, OmegaConf.select(cfg, "backbone.name", default=None))
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
    are the run's (:func:`.shared.use_run_data`; ``overridden``: the ``data`` keys the caller set).
    """
    from solo.data import classification_dataloader as classification

    cfg = knn_settings(cfg)
    path = shared.resolve_source(cfg, source)
    origin = shared.use_run_data(cfg, path, overridden)
    shared.start_job(cfg)  # before prepare_transforms: it may install the small-image transforms
    print(f"knn: {shared.describe_eval_data(cfg, origin)}")
    device = eval_device(cfg)
    model, full_method = _feature_model(cfg, path)
    _, transform = classification.prepare_transforms(cfg.data.dataset)
    train_set, val_set = classification.prepare_datasets(
        cfg.data.dataset,
        T_train=transform,
        T_val=transform,
        train_data_path=cfg.data.train_path,
        val_data_path=cfg.data.val_path,
        data_format=shared.fit_format(cfg),
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
    for feature_type, k, distance in product(cfg.knn.feature_type, cfg.knn.k, cfg.knn.distance_function):
        train, val = (train_feats[feature_type], train_labels), (val_feats[feature_type], val_labels)
        for temperature in cfg.knn.temperature if distance == "cosine" else [None]:
            acc1, acc5 = weighted_knn(*train, *val, k=k, temperature=temperature, distance=distance)
            results.append(KnnResult(feature_type, k, distance, temperature, float(acc1), float(acc5)))
    return results
