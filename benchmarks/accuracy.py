"""Small-scale accuracy of the paper's predictor grid: kNN and linear probes on frozen backbone features.

Trains every predictor of the paper's Table 3 / Table 6 grid through the real solo-learn methods, with and
without EMA, on two datasets, for several seeds, and probes the frozen backbone:

* datasets: scikit-learn digits (the embedded default's data and split, 16×16) and procedural shapes
  (:mod:`solo_directpred.data.shapes`, 8 classes, random colour/texture/position/scale, 16×16);
* predictors: DirectPred, DirectCopy, gradient-trained linear (regular and symmetric), upstream BYOL's
  2-layer MLP, and none (W_p = I), each with EMA (τ = 0.99) and without;
* ablations of DirectPred with EMA: ε ∈ {0, 0.1, 0.5} (Table 6), freq ∈ {1, 5} (Table 8);
* probes: weighted cosine kNN (k = 20, temperature 0.07) and a logistic-regression linear probe
  (scikit-learn, standardised features) on the training split, accuracy on the validation split.

How each cell is built (all through ``solo.methods.METHODS`` from one composed config):

* EMA rows use the plugin's ``directpred`` / ``directcopy`` / ``linear_pred`` and upstream ``byol``.
* No-EMA rows use the plugin's ``*_noema`` methods (target sg(online projection)) and, for the MLP,
  upstream ``byol`` with ``momentum.base_tau = final_tau = 0``: solo-learn then copies the online weights
  into the target after every step, so the target of a step *is* sg(online) with train-mode BN — SimSiam's
  objective with BYOL's projector and predictor (upstream ``simsiam`` would also change the projector).
* "none" is ``linear_pred`` with ``method_kwargs.predictor=none``: W_p = I, fixed (no parameter); the
  largest |W_p − I| after training is still recorded in every such run. Every cell warms up from lr 0
  (``scheduler.warmup_start_lr=0``).

Backbone: a 4-layer ConvNet (``small_cnn``: 3×3 convolutions 16-32-64-128, BN, ReLU, stride 2 from the
second, global average pool; 128 features), registered in solo-learn's backbone table by this script only.
ResNet-18 on one CPU thread costs about 1 s per 128 images here, too slow for a grid of ~90 runs; the
comparison between predictors is what the benchmark is about, and every cell uses the same backbone.

Training runs a real Lightning ``Trainer`` (solo-learn's optimizer, warm-up cosine schedule, EMA update
and the symmetric predictor's re-symmetrisation all as in ``solo-directpred pretrain``). Augmentations
are batched tensor ops (random resized crop by ``grid_sample``, flips, brightness/contrast/saturation
jitter, grayscale), applied to both views. Runs go to a pool of worker processes, one torch thread each.

    python benchmarks/accuracy.py --out results/          # the full grid (see run_all.py for timings)
    python benchmarks/accuracy.py --quick --out /tmp/acc  # smoke run: 1 seed, 1 epoch, small subsets
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

BYOL_KEYS = ("~method_kwargs.rho", "~method_kwargs.eps", "~method_kwargs.freq")
NONE_PREDICTOR = ("method_kwargs.predictor=none",)
SMALL_CNN = "small_cnn"


@dataclass(frozen=True)
class Variant:
    """One cell of the grid: a solo-learn method name plus config overrides."""

    key: str
    predictor: str
    ema: bool
    method: str
    overrides: tuple[str, ...] = ()


def _pair(key: str, predictor: str, ema_method: str, noema_method: str, overrides=(), noema_overrides=()):
    return [
        Variant(key, predictor, True, ema_method, tuple(overrides)),
        Variant(f"{key}_noema", predictor, False, noema_method, tuple(overrides) + tuple(noema_overrides)),
    ]


#: The predictor grid (Table 3 rows × EMA columns), in report order.
GRID: tuple[Variant, ...] = tuple(
    _pair("directpred", "DirectPred", "directpred", "directpred_noema")
    + _pair("directcopy", "DirectCopy", "directcopy", "directcopy_noema")
    + _pair("linear", "linear (trained)", "linear_pred", "linear_pred_noema")
    + _pair(
        "linear_sym",
        "linear, symmetric",
        "linear_pred",
        "linear_pred_noema",
        ["method_kwargs.symmetric=true"],
    )
    + _pair(
        "mlp",
        "2-layer MLP (upstream byol)",
        "byol",
        "byol",
        [*BYOL_KEYS, "+method_kwargs.pred_hidden_dim=512"],
        ["momentum.base_tau=0.0", "momentum.final_tau=0.0"],
    )
    + _pair("none", "none (W_p = I)", "linear_pred", "linear_pred_noema", NONE_PREDICTOR)
)

#: DirectPred (EMA) ablations: ε (Table 6, ρ = 0.3) and freq (Table 8); the default cell is ε = 0.1, freq = 1.
ABLATIONS: tuple[Variant, ...] = (
    Variant("directpred_eps0", "DirectPred ε=0", True, "directpred", ("method_kwargs.eps=0.0",)),
    Variant("directpred_eps0.5", "DirectPred ε=0.5", True, "directpred", ("method_kwargs.eps=0.5",)),
    Variant("directpred_freq5", "DirectPred freq=5", True, "directpred", ("method_kwargs.freq=5",)),
)
VARIANTS = {v.key: v for v in GRID + ABLATIONS}


@dataclass(frozen=True)
class DataSpec:
    """How one dataset is loaded and augmented."""

    name: str
    num_classes: int
    flip: float
    saturation: float
    grayscale: float
    channel_shuffle: float


DATASETS = {
    "digits": DataSpec("digits", 10, flip=0.0, saturation=0.0, grayscale=0.0, channel_shuffle=0.0),
    "shapes": DataSpec("shapes", 8, flip=0.5, saturation=0.6, grayscale=0.2, channel_shuffle=0.8),
}


@dataclass
class Settings:
    """Scale of the benchmark (the defaults are the full run)."""

    epochs_digits: int = 3
    epochs_shapes: int = 12
    batch_size: int = 64
    seeds: tuple[int, ...] = (0, 1, 2)
    datasets: tuple[str, ...] = ("digits", "shapes")
    ablation_datasets: tuple[str, ...] = ("shapes",)
    shapes_train_per_class: int = 200
    shapes_val_per_class: int = 100
    subset: int | None = None  # use only the first N training/validation images (smoke runs)
    workers: int = 2
    knn_k: int = 20
    knn_temperature: float = 0.07


QUICK = Settings(
    epochs_digits=1,
    epochs_shapes=1,
    seeds=(0,),
    subset=256,
    shapes_train_per_class=40,
    shapes_val_per_class=16,
)


# --------------------------------------------------------------------------------------------------- model
class SmallConvNet(nn.Module):
    """3×3 conv-BN-ReLU ×4 (16, 32, 64, 128 channels; stride 2 from the second), global average pool."""

    num_features = 128

    def __init__(self, method: str | None = None, **kwargs: Any) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = (3, 16, 32, 64, 128)
        for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:])):
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=1 if i == 0 else 2, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) → (B, 128)."""
        return self.features(x).mean(dim=(2, 3))


def register_small_cnn() -> None:
    """Add ``small_cnn`` to solo-learn's backbone table (this process only)."""
    from solo.methods.base import BaseMethod

    BaseMethod._BACKBONES.setdefault(SMALL_CNN, SmallConvNet)


def compose_cfg(overrides: Sequence[str] = ()):
    """The embedded default config composed with ``overrides`` and parsed as ``main_pretrain.py`` does."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    from solo.args.pretrain import parse_cfg

    from solo_directpred.paths import configs_dir
    from solo_directpred.sololearn.plugin import register

    register()
    with initialize_config_dir(config_dir=str(configs_dir()), version_base="1.2"):
        cfg = compose("directpred.yaml", overrides=list(overrides))
    OmegaConf.set_struct(cfg, False)
    return parse_cfg(cfg)


def build_method(variant: Variant, overrides: Sequence[str] = ()) -> nn.Module:
    """Instantiate ``variant`` through ``solo.methods.METHODS`` with extra ``overrides``."""
    from solo.methods import METHODS

    cfg = compose_cfg([f"method={variant.method}", *variant.overrides, *overrides])
    return METHODS[variant.method](cfg)


# ---------------------------------------------------------------------------------------------------- data
@lru_cache(maxsize=4)
def load_dataset(name: str, shapes_train: int = 250, shapes_val: int = 100) -> dict[str, np.ndarray]:
    """uint8 images (N, 3, H, W) and int64 labels of both splits, plus the per-channel mean/std."""
    if name == "digits":
        from PIL import Image

        from solo_directpred.data.digits import prepare_digits

        arrays = {}
        for split in ("train", "val"):
            root = prepare_digits(split, size=16)
            files = sorted(root.glob("*/*.png"))
            arrays[f"{split}_x"] = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
            arrays[f"{split}_y"] = np.array([int(f.parent.name) for f in files], dtype=np.int64)
    elif name == "shapes":
        from solo_directpred.data.shapes import shapes_split

        arrays = {}
        for split, n in (("train", shapes_train), ("val", shapes_val)):
            arrays[f"{split}_x"], arrays[f"{split}_y"] = shapes_split(split, n, size=16, seed=0)
    else:
        raise ValueError(f"dataset must be one of {tuple(DATASETS)}, got {name!r}")
    for split in ("train", "val"):
        arrays[f"{split}_x"] = np.ascontiguousarray(arrays[f"{split}_x"].transpose(0, 3, 1, 2))
    pixels = arrays["train_x"].astype(np.float64) / 255.0
    arrays["mean"] = pixels.mean(axis=(0, 2, 3)).astype(np.float32)
    arrays["std"] = pixels.std(axis=(0, 2, 3)).astype(np.float32)
    return arrays


def augment(
    x: torch.Tensor,
    spec: DataSpec,
    mean: torch.Tensor,
    std: torch.Tensor,
    generator: torch.Generator,
    min_scale: float = 0.5,
    jitter: float = 0.4,
) -> torch.Tensor:
    """One random view of a batch: crop, flip, colour jitter, channel shuffle, grayscale, normalisation.

    Args:
        x: uint8 images (B, 3, H, W).
        min_scale: smallest crop area as a fraction of the image (aspect ratio in [3/4, 4/3]).
        jitter: brightness and contrast factors are drawn in [1 − jitter, 1 + jitter] (probability 0.8).

    Returns:
        float32 (B, 3, H, W), normalised by ``mean``/``std`` (3,).
    """
    b = x.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(b, generator=generator)

    img = x.float() / 255.0
    area, log_ratio = uniform(min_scale, 1.0), uniform(np.log(3 / 4), np.log(4 / 3))
    w = (area * log_ratio.exp()).sqrt().clamp(max=1.0)
    h = (area / log_ratio.exp()).sqrt().clamp(max=1.0)
    cx, cy = (
        (2 * torch.rand(b, generator=generator) - 1) * (1 - w),
        (2 * torch.rand(b, generator=generator) - 1) * (1 - h),
    )
    flip = torch.where(torch.rand(b, generator=generator) < spec.flip, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w * flip, cx, h, cy
    grid = F.affine_grid(theta, list(img.shape), align_corners=False)
    img = F.grid_sample(img, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    apply = (torch.rand(b, generator=generator) < 0.8).float().view(b, 1, 1, 1)
    bright = uniform(1 - jitter, 1 + jitter).view(b, 1, 1, 1)
    contrast = uniform(1 - jitter, 1 + jitter).view(b, 1, 1, 1)
    sat = uniform(1 - spec.saturation, 1 + spec.saturation).view(b, 1, 1, 1)
    jittered = img * bright
    level = jittered.mean(dim=(1, 2, 3), keepdim=True)
    jittered = (jittered - level) * contrast + level
    jgrey = jittered.mean(dim=1, keepdim=True)
    jittered = jgrey + (jittered - jgrey) * sat
    img = (apply * jittered + (1 - apply) * img).clamp(0.0, 1.0)
    # a random permutation of the RGB channels: the hue-like jitter that makes colour a nuisance
    perm = torch.rand(b, 3, generator=generator).argsort(dim=1)
    shuffle = (torch.rand(b, generator=generator) < spec.channel_shuffle).view(b, 1, 1, 1)
    img = torch.where(shuffle, img.gather(1, perm.view(b, 3, 1, 1).expand_as(img)), img)
    to_grey = (torch.rand(b, generator=generator) < spec.grayscale).float().view(b, 1, 1, 1)
    img = to_grey * img.mean(dim=1, keepdim=True).expand_as(img) + (1 - to_grey) * img
    return (img - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)


class TwoViews(torch.utils.data.Dataset):
    """Index dataset over uint8 images; the collate function makes solo-learn's (idx, [v1, v2], y)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = torch.from_numpy(images), torch.from_numpy(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> int:
        return i


class TwoViewCollate:
    """Batch collation applying :func:`augment` twice (picklable, seeded)."""

    def __init__(
        self,
        data: TwoViews,
        spec: DataSpec,
        mean: np.ndarray,
        std: np.ndarray,
        seed: int,
        min_scale: float = 0.5,
    ) -> None:
        self.data, self.spec, self.min_scale = data, spec, min_scale
        self.mean, self.std = torch.from_numpy(mean), torch.from_numpy(std)
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, indices: list[int]):
        idx = torch.tensor(indices)
        x = self.data.images[idx]
        views = [
            augment(x, self.spec, self.mean, self.std, self.generator, min_scale=self.min_scale)
            for _ in range(2)
        ]
        return idx, views, self.data.labels[idx]


def fit_two_views(
    model: nn.Module,
    data: dict[str, np.ndarray],
    spec: DataSpec,
    batch_size: int,
    epochs: int,
    seed: int,
    min_scale: float = 0.5,
    callbacks: Sequence[Any] = (),
) -> Any:
    """Pretrain ``model`` on two augmented views of ``data["train_x"]`` (seeded shuffling and augmentation)
    with a quiet one-process CPU Trainer; returns the Trainer. Every benchmark trains through this."""

    dataset = TwoViews(data["train_x"], data["train_y"])
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(seed),
        collate_fn=TwoViewCollate(dataset, spec, data["mean"], data["std"], seed, min_scale=min_scale),
    )
    trainer = quiet_trainer("cpu", epochs, callbacks)
    trainer.fit(model, train_dataloaders=loader)
    return trainer


def quiet_trainer(accelerator: str, max_epochs: int, callbacks: Sequence[Any] = ()) -> Any:
    """A one-device Lightning Trainer that writes nothing: no logger, checkpoint, progress bar, model
    summary or sanity check (the benchmarks time and measure training only)."""
    import lightning.pytorch as pl

    return pl.Trainer(
        accelerator=accelerator,
        devices=1,
        max_epochs=max_epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=list(callbacks),
    )


# -------------------------------------------------------------------------------------------------- probes
def knn_accuracy(
    train_f: torch.Tensor,
    train_y: torch.Tensor,
    test_f: torch.Tensor,
    test_y: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
) -> float:
    """The package's weighted cosine kNN (:func:`solo_directpred.core.knn.weighted_knn`, the ``knn``
    command's classifier) as a top-1 accuracy in [0, 1]; test features are processed in chunks."""
    from solo_directpred.core.knn import weighted_knn

    return weighted_knn(train_f, train_y, test_f, test_y, k=k, temperature=temperature)[0] / 100.0


def linear_probe_accuracy(
    train_f: np.ndarray, train_y: np.ndarray, test_f: np.ndarray, test_y: np.ndarray, seed: int = 0
) -> float:
    """Multinomial logistic regression on standardised features (L2, C = 1); accuracy in [0, 1]."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_f)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs convergence warnings on near-separable features
        clf = LogisticRegression(max_iter=500, random_state=seed).fit(scaler.transform(train_f), train_y)
    return float(clf.score(scaler.transform(test_f), test_y))


def effective_rank(features: torch.Tensor) -> float:
    """RankMe (:func:`solo_directpred.spectral.metrics.rankme`, the monitor's) of the centred features:
    the effective rank of their covariance; 1 = collapse."""
    from solo_directpred.spectral.metrics import rankme

    return rankme(features - features.mean(dim=0))


@torch.no_grad()
def extract_features(
    backbone: nn.Module, images: np.ndarray, mean: np.ndarray, std: np.ndarray
) -> torch.Tensor:
    """Backbone features (N, D) of un-augmented, normalised images, in eval mode."""
    backbone.eval()
    x = torch.from_numpy(images)
    m, s = torch.from_numpy(mean).view(1, 3, 1, 1), torch.from_numpy(std).view(1, 3, 1, 1)
    return torch.cat([backbone((x[i : i + 512].float() / 255.0 - m) / s) for i in range(0, len(x), 512)])


def probe(model: nn.Module, data: dict[str, np.ndarray], settings: Settings, seed: int) -> dict[str, float]:
    """kNN and linear-probe accuracy (%) and the effective rank of the validation features."""
    train_f = extract_features(model.backbone, data["train_x"], data["mean"], data["std"])
    val_f = extract_features(model.backbone, data["val_x"], data["mean"], data["std"])
    train_y, val_y = torch.from_numpy(data["train_y"]), torch.from_numpy(data["val_y"])
    knn = knn_accuracy(train_f, train_y, val_f, val_y, settings.knn_k, settings.knn_temperature)
    lin = linear_probe_accuracy(train_f.numpy(), data["train_y"], val_f.numpy(), data["val_y"], seed)
    return {"knn": 100 * knn, "linear": 100 * lin, "rank": effective_rank(val_f)}


# ---------------------------------------------------------------------------------------------------- runs
def _quiet() -> None:
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _subset(data: dict[str, np.ndarray], n: int | None) -> dict[str, np.ndarray]:
    """A fixed random subset of ``n`` images per split (the digits files are sorted by class)."""
    if n is None:
        return data
    out = dict(data)
    for split in ("train", "val"):
        keep = np.sort(np.random.default_rng(0).permutation(len(data[f"{split}_y"]))[:n])
        out[f"{split}_x"], out[f"{split}_y"] = data[f"{split}_x"][keep], data[f"{split}_y"][keep]
    return out


def run_job(job: dict) -> dict:
    """Train one (variant, dataset, seed) cell (or probe a random backbone) and return its record."""
    import lightning.pytorch as pl

    _quiet()
    register_small_cnn()
    settings = Settings(**{**job["settings"], "seeds": tuple(job["settings"]["seeds"])})
    spec = DATASETS[job["dataset"]]
    data = _subset(
        load_dataset(job["dataset"], settings.shapes_train_per_class, settings.shapes_val_per_class),
        settings.subset,
    )
    seed = job["seed"]
    epochs = settings.epochs_digits if job["dataset"] == "digits" else settings.epochs_shapes
    variant = VARIANTS[job["variant"]] if job["variant"] != "random" else VARIANTS["directpred"]
    overrides = [
        f"backbone.name={SMALL_CNN}",
        f"max_epochs={epochs}",
        f"optimizer.batch_size={settings.batch_size}",
        "spectral.enabled=false",
        # warm-up from lr 0 for every group (see the module docstring: the "none" cells)
        "+scheduler.warmup_start_lr=0.0",
    ]
    pl.seed_everything(seed, workers=False)
    start = time.perf_counter()
    model = build_method(variant, overrides)
    record: dict[str, Any] = {"variant": job["variant"], "dataset": job["dataset"], "seed": seed}
    if job["variant"] != "random":
        trainer = fit_two_views(model, data, spec, settings.batch_size, epochs, seed)
        record["steps"] = int(trainer.global_step)
        loss = trainer.callback_metrics.get(
            "train_neg_cos_sim_epoch", trainer.callback_metrics.get("train_loss")
        )
        record["final_loss"] = None if loss is None else float(loss)
        if job["variant"].startswith("none"):
            w = model.predictor.weight.detach()
            record["max_abs_w_minus_i"] = float((w - torch.eye(w.shape[0])).abs().max())
    record["train_s"] = time.perf_counter() - start
    record.update(probe(model, data, settings, seed))
    return record


def make_jobs(settings: Settings, variants: Sequence[str] | None = None) -> list[dict]:
    """All (variant, dataset, seed) cells of a run, plus one random-backbone probe per dataset and seed."""
    chosen = set(variants) if variants else None
    jobs = []
    for dataset in settings.datasets:
        cells = list(GRID) + (list(ABLATIONS) if dataset in settings.ablation_datasets else [])
        for seed in settings.seeds:
            jobs.append({"variant": "random", "dataset": dataset, "seed": seed})
            jobs += [
                {"variant": v.key, "dataset": dataset, "seed": seed}
                for v in cells
                if chosen is None or v.key in chosen
            ]
    plain = {**asdict(settings), "seeds": list(settings.seeds)}
    return [{**job, "settings": plain} for job in jobs]


def _init_worker() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    _quiet()


def run_grid(settings: Settings, variants: Sequence[str] | None = None) -> list[dict]:
    """Run every job on ``settings.workers`` spawned processes (one torch thread each), with progress."""
    from tqdm.auto import tqdm

    jobs = make_jobs(settings, variants)
    # random-backbone probes are cheap: run them last so the long jobs start first
    jobs.sort(key=lambda j: j["variant"] == "random")
    records = []
    if settings.workers <= 1:
        for job in tqdm(jobs, desc="accuracy runs", unit="run", file=sys.stderr):
            records.append(run_job(job))
        return records
    import multiprocessing as mp

    with ProcessPoolExecutor(
        settings.workers, mp_context=mp.get_context("spawn"), initializer=_init_worker
    ) as pool:
        futures = [pool.submit(run_job, job) for job in jobs]
        for future in tqdm(
            as_completed(futures), total=len(futures), desc="accuracy runs", unit="run", file=sys.stderr
        ):
            records.append(future.result())
    return records


# ------------------------------------------------------------------------------------------------- summary
def summarize(records: Sequence[dict]) -> dict[str, dict[str, dict[str, Any]]]:
    """dataset → variant → {metric: [mean, std, n]} (std over seeds, ddof = 1; 0 for one seed)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for dataset in sorted({r["dataset"] for r in records}):
        out[dataset] = {}
        for variant in dict.fromkeys(r["variant"] for r in records if r["dataset"] == dataset):
            rows = [r for r in records if r["dataset"] == dataset and r["variant"] == variant]
            cell = {}
            for metric in ("knn", "linear", "rank", "train_s"):
                values = np.array([r[metric] for r in rows], dtype=float)
                std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
                cell[metric] = [float(values.mean()), std, len(values)]
            if any("max_abs_w_minus_i" in r for r in rows):
                cell["max_abs_w_minus_i"] = max(r["max_abs_w_minus_i"] for r in rows)
            out[dataset][variant] = cell
    return out


def _fmt(cell: dict | None, metric: str) -> str:
    if cell is None:
        return "–"
    mean, std, n = cell[metric]
    return f"{mean:.1f} ± {std:.1f}" if n > 1 else f"{mean:.1f}"


def grid_table(summary: dict, dataset: str) -> str:
    """Markdown table: one row per predictor, kNN / linear probe with and without EMA, effective rank."""
    cells = summary[dataset]
    lines = [
        "| predictor | EMA kNN | EMA linear | no-EMA kNN | no-EMA linear | rank EMA / no-EMA |",
        "|---|---|---|---|---|---|",
    ]
    for variant in GRID[::2]:
        ema, noema = cells.get(variant.key), cells.get(f"{variant.key}_noema")
        rank = " / ".join(f"{c['rank'][0]:.0f}" if c else "–" for c in (ema, noema))
        lines.append(
            f"| {variant.predictor} | {_fmt(ema, 'knn')} | {_fmt(ema, 'linear')} | "
            f"{_fmt(noema, 'knn')} | {_fmt(noema, 'linear')} | {rank} |"
        )
    if "random" in cells:
        c = cells["random"]
        rank = f"{c['rank'][0]:.0f}"
        lines.append(
            f"| random backbone (no training) | {_fmt(c, 'knn')} | {_fmt(c, 'linear')} | | | {rank} |"
        )
    return "\n".join(lines)


def ablation_table(summary: dict, dataset: str) -> str:
    """Markdown table of the DirectPred (EMA) ablations next to the default cell (ε = 0.1, freq = 1)."""
    cells = summary[dataset]
    lines = ["| DirectPred, EMA, ρ = 0.3 | kNN | linear |", "|---|---|---|"]
    rows = [("ε = 0, freq = 1", "directpred_eps0"), ("ε = 0.1, freq = 1 (default)", "directpred")]
    rows += [("ε = 0.5, freq = 1", "directpred_eps0.5"), ("ε = 0.1, freq = 5", "directpred_freq5")]
    for label, key in rows:
        cell = cells.get(key)
        lines.append(f"| {label} | {_fmt(cell, 'knn')} | {_fmt(cell, 'linear')} |")
    return "\n".join(lines)


def _compare(summary: dict, dataset: str, a: str, b: str, metric: str = "linear") -> dict[str, Any] | None:
    cells = summary.get(dataset, {})
    if a not in cells or b not in cells:
        return None
    (ma, sa, na), (mb, sb, nb) = cells[a][metric], cells[b][metric]
    diff = ma - mb
    noise = float(np.hypot(sa, sb))
    return {"a": a, "b": b, "diff": diff, "noise": noise, "n": min(na, nb)}


def claims(summary: dict) -> list[dict[str, Any]]:
    """The paper's claims checked on every dataset: Δ = mean(a) − mean(b) of the linear probe (points).

    Verdict: "holds" when Δ has the claimed sign and |Δ| exceeds the seeds' combined std (√(s_a² + s_b²)),
    "contradicted" when Δ has the other sign beyond that noise, "within noise" otherwise.
    """
    specs = [
        ("Tables 3/8: DirectPred ≥ trained linear predictor (EMA)", "directpred", "linear", 1),
        (
            "Table 3: symmetric linear W_p without EMA collapses (< regular linear, no EMA)",
            "linear_sym_noema",
            "linear_noema",
            -1,
        ),
        (
            "Table 3: symmetric linear W_p works with EMA (≥ its no-EMA counterpart)",
            "linear_sym",
            "linear_sym_noema",
            1,
        ),
        ("Table 3: 2-layer MLP predictor loses without EMA", "mlp_noema", "mlp", -1),
        (
            "DirectPred also works without EMA (≥ trained linear, no EMA)",
            "directpred_noema",
            "linear_noema",
            1,
        ),
        ("A predictor is needed: none (W_p = I) < DirectPred (EMA)", "none", "directpred", -1),
        (
            "DirectCopy ≈ DirectPred (EMA) (DirectCopy paper; sign not claimed: compare)",
            "directcopy",
            "directpred",
            0,
        ),
        ("Table 6: ε = 0.1 ≥ ε = 0", "directpred", "directpred_eps0", 1),
        ("Table 6: ε = 0.5 hurts (< ε = 0.1)", "directpred_eps0.5", "directpred", -1),
        (
            "Table 8: freq = 5 vs freq = 1 (paper: freq = 1 ahead at 100 epochs, freq = 5 at 300–500)",
            "directpred_freq5",
            "directpred",
            0,
        ),
    ]
    out = []
    for text, a, b, sign in specs:
        for dataset in summary:
            cmp = _compare(summary, dataset, a, b)
            if cmp is None:
                continue
            if sign == 0:
                verdict = (
                    "within noise"
                    if abs(cmp["diff"]) <= cmp["noise"]
                    else ("a ahead" if cmp["diff"] > 0 else "b ahead")
                )
            elif sign * cmp["diff"] > cmp["noise"]:
                verdict = "holds"
            elif sign * cmp["diff"] < -cmp["noise"]:
                verdict = "contradicted"
            else:
                verdict = "within noise"
            out.append({"claim": text, "dataset": dataset, **cmp, "verdict": verdict})
    return out


def claims_table(checked: Sequence[dict]) -> str:
    """Markdown table of :func:`claims`."""
    lines = [
        "| claim | data | a − b (linear probe, points) | seed noise | verdict |",
        "|---|---|---|---|---|",
    ]
    for c in checked:
        lines.append(
            f"| {c['claim']} | {c['dataset']} | {c['a']} − {c['b']} = {c['diff']:+.1f} | "
            f"±{c['noise']:.1f} | {c['verdict']} |"
        )
    return "\n".join(lines)


def parse_settings(argv: Sequence[str] | None = None) -> tuple[Settings, argparse.Namespace]:
    """Command-line options → :class:`Settings` (``--quick`` starts from the smoke-run scale)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    return settings_from_args(args), args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared with ``run_all.py``."""
    parser.add_argument("--out", type=Path, required=True, help="folder for accuracy.json")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 1 epoch, 256-image subsets")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--datasets", nargs="+", choices=tuple(DATASETS), default=None)
    parser.add_argument("--variants", nargs="+", choices=tuple(VARIANTS), default=None, help="default: all")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (one torch thread each)")


def settings_from_args(args: argparse.Namespace) -> Settings:
    base = QUICK if args.quick else Settings()
    changes = {"workers": args.workers}
    if args.epochs is not None:
        changes["epochs_digits"] = changes["epochs_shapes"] = args.epochs
    if args.seeds is not None:
        changes["seeds"] = tuple(args.seeds)
    if args.datasets is not None:
        changes["datasets"] = tuple(args.datasets)
    return Settings(**{**asdict(base), **changes})


def main(argv: Sequence[str] | None = None) -> int:
    settings, args = parse_settings(argv)
    start = time.perf_counter()
    records = run_grid(settings, args.variants)
    summary = summarize(records)
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "settings": asdict(settings),
        "wall_s": time.perf_counter() - start,
        "records": records,
        "summary": summary,
        "claims": claims(summary),
    }
    (args.out / "accuracy.json").write_text(json.dumps(result, indent=2))
    for dataset in summary:
        print(f"\n{dataset}\n{grid_table(summary, dataset)}")
    print("\n" + claims_table(result["claims"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
