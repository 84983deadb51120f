"""The CPU protocol on real CIFAR-10: the paper's predictor comparison, probed on the 10,000 test images.

Cells (all through ``solo.methods.METHODS``, built as in :mod:`accuracy`):

* with EMA: DirectPred, DirectCopy, a gradient-trained linear predictor, upstream BYOL's 2-layer MLP
  predictor, no predictor (W_p = I), and DirectPred trained with IsoLoss (docs/losses.md);
* without EMA (target = sg(online)): DirectPred and the trained linear predictor at the protocol's settings,
  and DirectPred with IsoLoss and with the cosine loss at the IsoLoss code's no-EMA settings (ρ 0.5, lr 0.1);
* a random network (the same backbone, not trained): the floor every learned feature must clear;
* optional (``--cells``): DirectPred with ε = 0 or 0.5 (Table 6) and with freq = 5 (Table 8).

Every epoch also records kNN on small fixed subsets and the label-free metrics (RankMe, LiDAR), so the
report can compare the checkpoint and the run each metric would pick with kNN's choice.

Every trained cell pretrains the backbone on the CIFAR-10 training images (or a fixed subset of them), then
the frozen backbone is probed on all 10,000 test images: weighted cosine kNN (k = 20, T = 0.07) against the
training images' features, and a logistic-regression linear probe (see :func:`accuracy.probe`).

The data are CIFAR-10 as class folders (``train/<class>/*`` and ``test/<class>/*``, any image format PIL
reads), given by ``--data`` or the environment variable ``SOLO_DIRECTPRED_CIFAR10``; they are decoded once
into ``<out>/cifar10-uint8.npz``. Augmentations are :func:`accuracy.augment` (batched tensor ops).

Resumable: each finished (cell, seed) is written to ``<out>/cells/<cell>-seed<k>.json`` at once, and a
rerun of the same command skips the cells already there; ``--seeds`` adds seeds to a finished run. The
report (``<out>/cifar10_cpu.md`` and ``.json``) is rewritten from all cells on disk after each cell.

    python benchmarks/cifar_cpu.py --data PATH --out OUT            # full protocol: 8 epochs, 2 seeds
    python benchmarks/cifar_cpu.py --data PATH --out OUT --quick    # quick mode: 4 epochs, seed 0, 6 cells
    python benchmarks/cifar_cpu.py --data PATH --out OUT --render-only [--export ZOO]

Sizing (CPU time per cell: ``cpu_s`` in each record): an 8-epoch cell on all 50,000 images takes about 9
CPU-minutes with EMA and 7 without, one torch thread per worker; the full protocol's 20 trained cells need
about 90 minutes of 2 idle cores, the quick mode's 6 four-epoch cells about 15. A shared machine stretches
the wall time by its load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import accuracy
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

DATA_ENV = "SOLO_DIRECTPRED_CIFAR10"
CIFAR10 = accuracy.DataSpec("cifar10", 10, flip=0.5, saturation=0.4, grayscale=0.2, channel_shuffle=0.0)

#: The no-EMA settings of the IsoLoss code (Halvagal et al., NeurIPS 2023; docs/losses.md): F̂'s EMA
#: ρ = 0.5 and SGD lr 0.1 (× batch/256, momentum 0.9) instead of the protocol's ρ = 0.3 and lr 0.5.
ISOLOSS_NOEMA = ("method_kwargs.rho=0.5", "optimizer.lr=0.1")
#: Cells beyond :data:`accuracy.VARIANTS`: the IsoLoss rows and DirectPred at the IsoLoss no-EMA settings.
LOSS_VARIANTS: dict[str, accuracy.Variant] = {
    v.key: v
    for v in (
        accuracy.Variant(
            "isoloss", "DirectPred + IsoLoss", True, "directpred", ("method_kwargs.loss=isoloss",)
        ),
        accuracy.Variant(
            "isoloss_noema",
            "DirectPred + IsoLoss",
            False,
            "directpred_noema",
            ("method_kwargs.loss=isoloss", *ISOLOSS_NOEMA),
        ),
        accuracy.Variant(
            "directpred_noema_iso",
            "DirectPred, IsoLoss-code settings",
            False,
            "directpred_noema",
            ISOLOSS_NOEMA,
        ),
    )
}
VARIANTS: dict[str, accuracy.Variant] = {**accuracy.VARIANTS, **LOSS_VARIANTS}

#: The protocol's trained cells, in report order: keys of :data:`VARIANTS`.
CELLS: tuple[str, ...] = (
    "directpred",
    "directcopy",
    "linear",
    "mlp",
    "none",
    "isoloss",
    "directpred_noema",
    "linear_noema",
    "isoloss_noema",
    "directpred_noema_iso",
)
#: Optional cells (``--cells``), not in the default run: the paper's ε (Table 6) and freq (Table 8) for
#: DirectPred with EMA, against the default cell's ε = 0.1, freq = 1.
ABLATION_CELLS: tuple[str, ...] = ("directpred_eps0", "directpred_eps0.5", "directpred_freq5")
RANDOM = "random"
#: The order cells run in: DirectPred and the two baselines it is compared with first, then the EMA-free
#: question (issue: does IsoLoss prevent the no-EMA collapse?).
PRIORITY = (
    "directpred",
    "mlp",
    "linear",
    "none",
    "directpred_noema",
    "isoloss_noema",
    "directpred_noema_iso",
    "isoloss",
    "linear_noema",
    "directcopy",
    *ABLATION_CELLS,
)


@dataclass
class Protocol:
    """Scale of the protocol (the defaults are the full run)."""

    epochs: int = 8
    batch_size: int = 128
    lr: float = 0.5  # solo-learn's optimizer.lr, scaled by batch_size / 256
    train_subset: int | None = None  # the first N images of a fixed permutation of the training set
    size: int = 32
    min_scale: float = 0.2
    proj_output_dim: int = 128
    seeds: tuple[int, ...] = (0, 1)
    workers: int = 2
    track_every: int = 1  # kNN on 5,000 training / 2,000 test images every N epochs (0: off)


QUICK = Protocol(epochs=4, seeds=(0,))
#: The quick mode's cells (about 15 minutes of 2 idle cores): the paper's Table 3 comparison with EMA, and
#: the no-EMA collapse with the cosine loss against IsoLoss.
QUICK_CELLS = ("directpred", "mlp", "linear", "none", "directpred_noema", "isoloss_noema")


# ---------------------------------------------------------------------------------------------------- data
def data_root(path: str | Path | None) -> Path:
    """The CIFAR-10 folder from ``path`` or ``$SOLO_DIRECTPRED_CIFAR10``; a clear error when missing."""
    chosen = path or os.environ.get(DATA_ENV)
    if not chosen:
        raise SystemExit(f"no CIFAR-10 folder: pass --data PATH or set {DATA_ENV}")
    root = Path(chosen).expanduser()
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise SystemExit(f"--data {root}: expected class folders under {root / split}")
    return root


def read_class_folders(root: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """uint8 images (N, 32, 32, 3) or the folder's own size, int64 labels, and the sorted class names."""
    from PIL import Image

    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    images, labels = [], []
    for label, name in enumerate(classes):
        for file in sorted((root / name).iterdir()):
            with Image.open(file) as img:
                images.append(np.asarray(img.convert("RGB")))
            labels.append(label)
    return np.stack(images), np.array(labels, dtype=np.int64), classes


def load_cifar(root: Path, cache: Path) -> dict[str, np.ndarray]:
    """Both splits as (N, 3, H, W) uint8 arrays plus labels and the training set's channel mean/std.

    Decoded once into ``cache`` (an ``.npz``); later calls read that file.
    """
    if not cache.is_file():
        arrays: dict[str, Any] = {}
        for split, folder in (("train", "train"), ("val", "test")):
            x, y, classes = read_class_folders(root / folder)
            arrays[f"{split}_x"] = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
            arrays[f"{split}_y"] = y
            arrays["classes"] = np.array(classes)
        pixels = arrays["train_x"].astype(np.float32) / 255.0
        arrays["mean"] = pixels.mean(axis=(0, 2, 3)).astype(np.float32)
        arrays["std"] = pixels.std(axis=(0, 2, 3)).astype(np.float32)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(cache)
    with np.load(cache) as f:
        return {key: f[key] for key in f.files}


def prepare(data: dict[str, np.ndarray], protocol: Protocol) -> dict[str, np.ndarray]:
    """The training subset (a fixed permutation, seed 0) and the resolution of ``protocol``."""
    out = dict(data)
    if protocol.train_subset is not None:
        keep = np.sort(np.random.default_rng(0).permutation(len(data["train_y"]))[: protocol.train_subset])
        out["train_x"], out["train_y"] = data["train_x"][keep], data["train_y"][keep]
    if protocol.size != data["train_x"].shape[-1]:
        for split in ("train", "val"):
            x = torch.from_numpy(out[f"{split}_x"]).float()
            x = F.interpolate(x, size=protocol.size, mode="bilinear", antialias=True, align_corners=False)
            out[f"{split}_x"] = x.round().clamp(0, 255).to(torch.uint8).numpy()
    return out


# -------------------------------------------------------------------------------------------------- probes
def probe(backbone: nn.Module, data: dict[str, np.ndarray], seed: int) -> dict[str, float]:
    """kNN and linear-probe accuracy (%) on the test images, effective rank of their features."""
    start = time.perf_counter()
    train_f = accuracy.extract_features(backbone, data["train_x"], data["mean"], data["std"])
    val_f = accuracy.extract_features(backbone, data["val_x"], data["mean"], data["std"])
    train_y, val_y = torch.from_numpy(data["train_y"]), torch.from_numpy(data["val_y"])
    knn = accuracy.knn_accuracy(train_f, train_y, val_f, val_y)
    lin = accuracy.linear_probe_accuracy(train_f.numpy(), data["train_y"], val_f.numpy(), data["val_y"], seed)
    return {
        "knn": 100 * knn,
        "linear": 100 * lin,
        "rank": accuracy.effective_rank(val_f),
        "probe_s": time.perf_counter() - start,
    }


class KnnTracker:
    """Lightning callback: every ``every`` epochs, kNN accuracy on fixed small subsets (calibration) and the
    label-free metrics a run could select its checkpoint by (docs/spectral.md):

    * RankMe of the backbone representations of the 5,000 tracked training images (un-augmented);
    * LiDAR of the representations and of the projector outputs of 4 augmented views of 1,000 of them,
      grouped by image (the exact grouping of :func:`solo_directpred.spectral.metrics.lidar`).
    """

    LIDAR_IMAGES, LIDAR_VIEWS = 1000, 4

    def __init__(self, data: dict[str, np.ndarray], every: int) -> None:
        import lightning.pytorch as pl

        rng = np.random.default_rng(1)
        tr = rng.permutation(len(data["train_y"]))[:5000]
        te = rng.permutation(len(data["val_y"]))[:2000]
        self.small = {
            "train_x": data["train_x"][tr],
            "train_y": data["train_y"][tr],
            "val_x": data["val_x"][te],
            "val_y": data["val_y"][te],
            "mean": data["mean"],
            "std": data["std"],
        }
        generator = torch.Generator().manual_seed(2)
        x = torch.from_numpy(self.small["train_x"][: self.LIDAR_IMAGES])  # fewer in a smaller subset
        mean, std = torch.from_numpy(data["mean"]), torch.from_numpy(data["std"])
        self.views = torch.cat(
            [
                accuracy.augment(x, CIFAR10, mean, std, generator, min_scale=0.2)
                for _ in range(self.LIDAR_VIEWS)
            ]
        )
        self.groups = torch.arange(len(x)).repeat(self.LIDAR_VIEWS)
        self.every, self.history, self.label_free = every, [], []

        class _Hook(pl.Callback):
            def on_train_epoch_end(_, trainer, module) -> None:  # noqa: N805 - closure over the tracker
                if (trainer.current_epoch + 1) % self.every == 0:
                    epoch = trainer.current_epoch + 1
                    self.history.append([epoch, self.knn(module.backbone)])
                    self.label_free.append({"epoch": epoch, **self.metrics(module)})
                    module.backbone.train()
                    module.projector.train()
                    print(
                        f"epoch {epoch}: kNN {self.history[-1][1]:.1f}, "
                        + ", ".join(f"{k} {v:.1f}" for k, v in self.label_free[-1].items() if k != "epoch")
                        + f" ({time.process_time():.0f} CPU-s)",
                        file=sys.stderr,
                        flush=True,
                    )

        self.callback = _Hook()

    def knn(self, backbone: nn.Module) -> float:
        s = self.small
        train_f = accuracy.extract_features(backbone, s["train_x"], s["mean"], s["std"])
        val_f = accuracy.extract_features(backbone, s["val_x"], s["mean"], s["std"])
        return 100 * accuracy.knn_accuracy(
            train_f, torch.from_numpy(s["train_y"]), val_f, torch.from_numpy(s["val_y"])
        )

    @torch.no_grad()
    def metrics(self, module: nn.Module) -> dict[str, float]:
        """RankMe (representations) and LiDAR (representations, projector outputs) of ``module``."""
        from solo_directpred.spectral.metrics import lidar, rankme

        s = self.small
        features = accuracy.extract_features(module.backbone, s["train_x"], s["mean"], s["std"])
        module.projector.eval()
        view_f = torch.cat([module.backbone(self.views[i : i + 512]) for i in range(0, len(self.views), 512)])
        view_z = module.projector(view_f)
        return {
            "rankme": rankme(features),
            "lidar": lidar(view_f, self.groups),
            "lidar_proj": lidar(view_z, self.groups),
        }


# ---------------------------------------------------------------------------------------------------- runs
def cell_path(out: Path, cell: str, seed: int) -> Path:
    """Where a finished (cell, seed) record lives."""
    return out / "cells" / f"{cell}-seed{seed}.json"


def method_overrides(protocol: Protocol) -> list[str]:
    """Config overrides shared by every cell (backbone, schedule, projector, data statistics)."""
    return [
        f"backbone.name={accuracy.SMALL_CNN}",
        f"max_epochs={protocol.epochs}",
        f"optimizer.batch_size={protocol.batch_size}",
        f"optimizer.lr={protocol.lr}",
        f"method_kwargs.proj_output_dim={protocol.proj_output_dim}",
        f"augmentations.0.crop_size={protocol.size}",
        "spectral.enabled=false",
        "+scheduler.warmup_start_lr=0.0",
    ]


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def cell_overrides(variant: accuracy.Variant, protocol: Protocol) -> list[str]:
    """:func:`method_overrides` without the keys ``variant`` sets itself (its own lr, say), which win."""
    own = {_key(o) for o in variant.overrides}
    return [o for o in method_overrides(protocol) if _key(o) not in own]


def run_cell(job: dict) -> dict:
    """Train one (cell, seed) — or probe the random network — and return its record."""
    import lightning.pytorch as pl

    accuracy._quiet()
    accuracy.register_small_cnn()
    protocol = Protocol(**{**job["protocol"], "seeds": tuple(job["protocol"]["seeds"])})
    data = prepare(load_cifar(Path(job["root"]), Path(job["cache"])), protocol)
    cell, seed = job["cell"], job["seed"]
    variant = VARIANTS["directpred" if cell == RANDOM else cell]
    pl.seed_everything(seed, workers=False)
    start, cpu_start = time.perf_counter(), time.process_time()
    model = accuracy.build_method(variant, cell_overrides(variant, protocol))
    record: dict[str, Any] = {"cell": cell, "seed": seed, "protocol": asdict(protocol), "load_start": _load()}
    record["train_images"] = len(data["train_y"])
    record["overrides"] = [f"method={variant.method}", *variant.overrides, *cell_overrides(variant, protocol)]
    if cell != RANDOM:
        tracker = KnnTracker(data, protocol.track_every) if protocol.track_every else None
        trainer = accuracy.fit_two_views(
            model,
            data,
            CIFAR10,
            protocol.batch_size,
            protocol.epochs,
            seed,
            min_scale=protocol.min_scale,
            callbacks=[tracker.callback] if tracker else [],
        )
        record["steps"] = int(trainer.global_step)
        loss = trainer.callback_metrics.get(
            "train_neg_cos_sim_epoch", trainer.callback_metrics.get("train_loss")
        )
        record["final_loss"] = None if loss is None else float(loss)
        if tracker:
            record["knn_by_epoch"] = tracker.history
            record["label_free_by_epoch"] = tracker.label_free
        if cell.startswith("none"):
            w = model.predictor.weight.detach()
            record["max_abs_w_minus_i"] = float((w - torch.eye(w.shape[0])).abs().max())
        if job.get("save_checkpoint"):
            ckpt = Path(job["out"]) / "checkpoints" / f"{cell}-seed{seed}" / f"{cell}-seed{seed}.ckpt"
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            trainer.save_checkpoint(ckpt)
            record["checkpoint"] = str(ckpt.relative_to(job["out"]))
    elif protocol.track_every:
        tracker = KnnTracker(data, protocol.track_every)
        record["knn_by_epoch"] = [[0, tracker.knn(model.backbone)]]
        record["label_free_by_epoch"] = [{"epoch": 0, **tracker.metrics(model)}]
    record["train_s"] = time.perf_counter() - start
    record["train_cpu_s"] = time.process_time() - cpu_start
    record.update(probe(model.backbone, data, seed))
    record["cpu_s"] = time.process_time() - cpu_start
    record["load_end"] = _load()
    path = cell_path(Path(job["out"]), cell, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(path)
    return record


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def make_jobs(protocol: Protocol, root: Path, out: Path, cells: Sequence[str] = CELLS) -> list[dict]:
    """Every (cell, seed) of the protocol not yet on disk, seed by seed; within a seed the random network
    first (the floor), then the cells in :data:`PRIORITY` order, so that a budget cut short keeps the
    comparisons that matter most."""
    plain = {**asdict(protocol), "seeds": list(protocol.seeds)}
    jobs = []
    for seed in protocol.seeds:
        for cell in (RANDOM, *sorted(cells, key=PRIORITY.index)):
            if cell_path(out, cell, seed).is_file():
                continue
            jobs.append(
                {
                    "cell": cell,
                    "seed": seed,
                    "protocol": plain,
                    "root": str(root),
                    "cache": str(out / "cifar10-uint8.npz"),
                    "out": str(out),
                    "save_checkpoint": cell in ("directpred", "directpred_noema"),
                }
            )
    return jobs


def finished(out: Path, protocol: Protocol) -> list[dict]:
    """The records on disk that were run with ``protocol``'s scale (seeds and workers aside)."""
    scale = {k: v for k, v in asdict(protocol).items() if k not in ("seeds", "workers", "track_every")}
    records = []
    for path in sorted((out / "cells").glob("*.json")):
        record = json.loads(path.read_text())
        if all(record["protocol"].get(k) == v for k, v in scale.items()):
            records.append(record)
    return records


# ------------------------------------------------------------------------------------------------- report
def summarize(records: Sequence[dict]) -> dict[str, dict[str, list[float]]]:
    """cell → {metric: [mean, std (ddof = 1; 0 for one seed), n]}, as :func:`accuracy.summarize`."""
    as_grid = [{**r, "variant": r["cell"], "dataset": "cifar10"} for r in records]
    return accuracy.summarize(as_grid).get("cifar10", {})


def table(summary: dict[str, dict[str, Any]]) -> str:
    """Markdown: a row per predictor, kNN / linear probe with and without EMA; missing cells: "not run"."""

    def fmt(key: str, metric: str) -> str:
        cell = summary.get(key)
        if cell is None:
            return "not run"
        mean, std, n = cell[metric]
        return f"{mean:.1f} ± {std:.1f} (n={n})" if n > 1 else f"{mean:.1f} (n=1)"

    rows = [
        ("DirectPred", "directpred", "directpred_noema"),
        ("DirectCopy", "directcopy", None),
        ("linear, trained", "linear", "linear_noema"),
        ("2-layer MLP (upstream BYOL)", "mlp", None),
        ("none (W_p = I)", "none", None),
        ("DirectPred + IsoLoss (no EMA: ρ 0.5, lr 0.1)", "isoloss", "isoloss_noema"),
        ("DirectPred, cosine loss, ρ 0.5, lr 0.1", None, "directpred_noema_iso"),
        ("DirectPred ε = 0 (Table 6)", "directpred_eps0", None),
        ("DirectPred ε = 0.5 (Table 6)", "directpred_eps0.5", None),
        ("DirectPred freq = 5 (Table 8)", "directpred_freq5", None),
    ]
    lines = [
        "| predictor | EMA kNN | EMA linear | no-EMA kNN | no-EMA linear |",
        "|---|---|---|---|---|",
    ]
    for label, ema, noema in rows:
        if ema in ABLATION_CELLS and ema not in summary:
            continue  # optional cells: a row only when run
        left = f"{fmt(ema, 'knn')} | {fmt(ema, 'linear')}" if ema else "– | –"
        right = f"{fmt(noema, 'knn')} | {fmt(noema, 'linear')}" if noema else "– | –"
        lines.append(f"| {label} | {left} | {right} |")
    lines.append(f"| random network (not trained) | {fmt(RANDOM, 'knn')} | {fmt(RANDOM, 'linear')} | | |")
    return "\n".join(lines)


CLAIMS = (
    ("Tables 3/8: DirectPred ≥ trained linear predictor (EMA)", "directpred", "linear", 1),
    ("DirectPred ≥ upstream BYOL's 2-layer predictor (EMA)", "directpred", "mlp", 1),
    ("Table 3: a predictor is needed (none < DirectPred, EMA)", "none", "directpred", -1),
    ("DirectPred works without EMA (≥ trained linear, no EMA)", "directpred_noema", "linear_noema", 1),
    ("DirectCopy vs DirectPred (EMA; sign not claimed)", "directcopy", "directpred", 0),
    ("EMA vs no EMA for DirectPred (sign not claimed)", "directpred", "directpred_noema", 0),
    ("Learned features above a random network (DirectPred, EMA)", "directpred", RANDOM, 1),
    (
        "IsoLoss prevents the no-EMA collapse (IsoLoss > cosine, no EMA)",
        "isoloss_noema",
        "directpred_noema",
        1,
    ),
    ("IsoLoss without EMA above a random network", "isoloss_noema", RANDOM, 1),
    (
        "Cosine DirectPred without EMA at ρ 0.5, lr 0.1 above a random network",
        "directpred_noema_iso",
        RANDOM,
        1,
    ),
    (
        "IsoLoss vs cosine loss, no EMA, both at ρ 0.5, lr 0.1 (sign not claimed)",
        "isoloss_noema",
        "directpred_noema_iso",
        0,
    ),
    ("IsoLoss vs cosine loss, EMA (sign not claimed)", "isoloss", "directpred", 0),
    ("Table 6: ε = 0.1 ≥ ε = 0", "directpred", "directpred_eps0", 1),
    ("Table 6: ε = 0.1 ≥ ε = 0.5", "directpred", "directpred_eps0.5", 1),
    ("Table 8, 100 epochs: freq = 1 ≥ freq = 5", "directpred", "directpred_freq5", 1),
)


def claims(summary: dict[str, dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Δ = mean(a) − mean(b) against the seeds' combined std √(s_a² + s_b²); a verdict only with ≥ 2 seeds.

    'holds' / 'contradicted' when |Δ| exceeds that spread with the claimed / the other sign, 'within
    spread' otherwise; 'a ahead' / 'b ahead' for comparisons without a claimed sign; 'one seed: no verdict'
    when either side has a single seed (there is no spread to compare against).
    """
    out = []
    for text, a, b, sign in CLAIMS:
        if a not in summary or b not in summary:
            continue
        (ma, sa, na), (mb, sb, nb) = summary[a][metric], summary[b][metric]
        diff, noise = ma - mb, float(np.hypot(sa, sb))
        if min(na, nb) < 2:
            verdict = "one seed: no verdict"
        elif abs(diff) <= noise:
            verdict = "within spread"
        elif sign == 0:
            verdict = "a ahead" if diff > 0 else "b ahead"
        else:
            verdict = "holds" if sign * diff > 0 else "contradicted"
        out.append(
            {
                "claim": text,
                "a": a,
                "b": b,
                "diff": diff,
                "noise": noise,
                "n": min(na, nb),
                "verdict": verdict,
            }
        )
    return out


def claims_table(checked: Sequence[dict], metric: str) -> str:
    """Markdown table of :func:`claims`."""
    lines = [f"| claim | a − b ({metric}, points) | spread | seeds | verdict |", "|---|---|---|---|---|"]
    for c in checked:
        lines.append(
            f"| {c['claim']} | {c['a']} − {c['b']} = {c['diff']:+.1f} | ±{c['noise']:.1f} | {c['n']} | "
            f"{c['verdict']} |"
        )
    return "\n".join(lines)


#: The label-free metrics a run can select its checkpoint by (``spectral.select_by``; docs/spectral.md).
SELECTORS = ("rankme", "lidar", "lidar_proj")


def _spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); nan below 3 points."""
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic) if len(a) >= 3 else float("nan")


def selection(records: Sequence[dict]) -> dict[str, Any]:
    """How a label-free metric's choice compares with kNN accuracy's (issue: label-free selection).

    * **checkpoint** (within a run): the epoch with the highest metric against the epoch with the highest
      tracked kNN (5,000 training / 2,000 test images); ``lost`` = kNN(best epoch) − kNN(picked epoch).
    * **run** (across the trained cells of one seed, hyper-parameter selection as in the RankMe paper):
      Spearman's ρ between the metric at the last epoch and the test kNN; the cell the metric picks and
      the test-kNN points it loses against the best cell.
    """
    trained = [r for r in records if r["cell"] != RANDOM and r.get("label_free_by_epoch")]
    out: dict[str, Any] = {"checkpoint": {}, "run": {}}
    for metric in SELECTORS:
        rows = []
        for r in trained:
            knn = dict((int(e), v) for e, v in r["knn_by_epoch"])
            scores = {int(m["epoch"]): m[metric] for m in r["label_free_by_epoch"] if np.isfinite(m[metric])}
            if not scores:
                continue
            picked = max(scores, key=scores.get)
            best = max(knn, key=knn.get)
            rows.append(
                {
                    "cell": r["cell"],
                    "seed": r["seed"],
                    "picked": picked,
                    "best": best,
                    "lost": knn[best] - knn[picked],
                }
            )
        if rows:
            lost = [row["lost"] for row in rows]
            out["checkpoint"][metric] = {
                "runs": len(rows),
                "same_epoch": sum(row["picked"] == row["best"] for row in rows),
                "mean_lost": float(np.mean(lost)),
                "max_lost": float(np.max(lost)),
                "rows": rows,
            }
        per_seed = []
        for seed in sorted({r["seed"] for r in trained}):
            cells = [r for r in trained if r["seed"] == seed]
            final = [r["label_free_by_epoch"][-1][metric] for r in cells]
            if len(cells) < 3 or not all(np.isfinite(final)):
                continue
            knn = [r["knn"] for r in cells]
            picked = cells[int(np.argmax(final))]
            per_seed.append(
                {
                    "seed": seed,
                    "cells": len(cells),
                    "spearman": _spearman(final, knn),
                    "picked": picked["cell"],
                    "best": cells[int(np.argmax(knn))]["cell"],
                    "lost": max(knn) - picked["knn"],
                }
            )
        if per_seed:
            out["run"][metric] = per_seed
    return out


def selection_tables(chosen: dict[str, Any]) -> str:
    """Markdown of :func:`selection`."""
    names = {
        "rankme": "RankMe (representations)",
        "lidar": "LiDAR (representations)",
        "lidar_proj": "LiDAR (projector outputs)",
    }
    lines = [
        "| metric | runs | picks kNN's epoch | kNN points lost, mean | worst |",
        "|---|---|---|---|---|",
    ]
    for metric, c in chosen["checkpoint"].items():
        lines.append(
            f"| {names[metric]} | {c['runs']} | {c['same_epoch']} | {c['mean_lost']:.1f} | "
            f"{c['max_lost']:.1f} |"
        )
    lines += [
        "",
        "| metric | seed | cells | Spearman ρ (final metric, test kNN) | picks | kNN's best "
        "| test kNN lost |",
        "|---|---|---|---|---|---|---|",
    ]
    for metric, rows in chosen["run"].items():
        for row in rows:
            lines.append(
                f"| {names[metric]} | {row['seed']} | {row['cells']} | {row['spearman']:+.2f} | "
                f"{row['picked']} | {row['best']} | {row['lost']:.1f} |"
            )
    return "\n".join(lines)


def render(report: dict[str, Any]) -> str:
    """The Markdown report."""
    p, m = report["protocol"], report["machine"]
    records = report["records"]
    loads = [r["load_start"] for r in records] + [r["load_end"] for r in records]
    load_range = (
        f"{min(lo[0] for lo in loads):.1f}–{max(lo[0] for lo in loads):.1f}" if loads else "not measured"
    )
    sizes = {r.get("train_images") for r in records} - {None}
    subset = f"{sizes.pop():,}" if len(sizes) == 1 else "all 50,000"
    if p["train_subset"] is not None:
        subset = f"{p['train_subset']:,} (a fixed subset of the)"
    cells_done = ", ".join(f"{r['cell']} seed {r['seed']}" for r in records)
    lines = [
        "# CIFAR-10 on CPU: DirectPred and the paper's predictor baselines",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {m.get('cpu') or 'unknown CPU'}, {m['cpu_count']} cores, {m['cuda'] or 'no GPU'}; "
        f"torch {m['torch']}.  ",
        f"Cells finished: {len(records)} ({cells_done}); "
        f"wall time of each cell (training + probes) summed: "
        f"{sum(r['train_s'] + r['probe_s'] for r in records) / 60:.0f} min, their CPU time summed: "
        f"{sum(r.get('cpu_s', float('nan')) for r in records) / 60:.0f} CPU-min "
        f"({p['workers']} worker processes, one torch thread each). 1-minute load average during the cells: "
        f"{load_range} on {m['cpu_count']} cores (the machine was shared, so wall times are inflated).",
        "",
        f"Backbone: the benchmarks' 4-layer ConvNet (`small_cnn`, 3×3 convolutions 16-32-64-128, "
        f"128 features), **not the paper's ResNet-18**; projector 512 → {p['proj_output_dim']}. "
        f"Pretraining on {subset} CIFAR-10 training images at {p['size']}×{p['size']}, "
        f"epochs: {p['epochs']}, batch {p['batch_size']}, SGD lr {p['lr']} × batch/256, "
        "momentum 0.9, wd 4e-4, warm-up cosine schedule, EMA τ = 0.99; DirectPred ρ = 0.3, ε = 0.1, "
        "DirectCopy its defaults ρ = 0.5, ε = 0.3, both freq = 1; the IsoLoss no-EMA cells and "
        "`directpred_noema_iso` use the IsoLoss code's no-EMA settings ρ = 0.5, SGD lr 0.1 × batch/256 "
        "(docs/losses.md). Augmentation: random resized crop "
        f"(area ≥ {p['min_scale']}), flip, colour jitter, grayscale. Probes on the frozen "
        "backbone, all 10,000 test images: weighted cosine kNN (k = 20, T = 0.07) against the "
        "training images, and a logistic-regression linear probe. Top-1 %, mean ± std over seeds "
        "(ddof = 1), n = number of seeds.",
        "",
        table(report["summary"]),
        "",
        "Δ = a − b; a verdict only with ≥ 2 seeds, and a difference only where |Δ| exceeds the seeds' "
        "combined std √(s_a² + s_b²).",
        "",
        claims_table(report["claims_knn"], "kNN"),
        "",
        claims_table(report["claims_linear"], "linear probe"),
        "",
    ]
    chosen = report.get("selection") or {"checkpoint": {}, "run": {}}
    if chosen["checkpoint"] or chosen["run"]:
        lines += [
            "Label-free selection. Within a run, the epoch a metric picks (its maximum; "
            "`spectral.select_by`) against the epoch kNN picks, kNN on the tracked 5,000 training / "
            "2,000 test images. Across the trained cells of a seed, the metric at the last epoch against "
            "the test kNN (hyper-parameter selection, as in the RankMe paper). RankMe on 5,000 un-augmented "
            "training images, LiDAR on 4 augmented views of 1,000 of them grouped by image.",
            "",
            selection_tables(chosen),
            "",
        ]
    tracked = [r for r in records if r.get("knn_by_epoch")]
    if tracked:
        lines += [
            "Calibration trace: kNN on fixed 5,000 training / 2,000 test images at the end of each epoch "
            "(epoch: %; epoch 0 = the random network; RankMe of the representations in brackets):",
            "",
        ]
        for r in tracked:
            rankme = {m["epoch"]: m["rankme"] for m in r.get("label_free_by_epoch", [])}
            trace = ", ".join(
                f"{e}: {v:.1f}" + (f" (RankMe {rankme[e]:.0f})" if e in rankme else "")
                for e, v in r["knn_by_epoch"]
            )
            lines.append(f"- {r['cell']} seed {r['seed']}: {trace}")
        lines.append("")
    return "\n".join(lines)


def write_report(out: Path, protocol: Protocol, command: str) -> dict[str, Any]:
    """Rebuild the report from every finished cell of ``protocol``'s scale in ``out``."""
    from run_all import machine

    records = finished(out, protocol)
    summary = summarize(records)
    report = {
        "command": command,
        "machine": machine(),
        "protocol": {**asdict(protocol), "seeds": list(protocol.seeds)},
        "records": records,
        "summary": summary,
        "claims_knn": claims(summary, "knn"),
        "claims_linear": claims(summary, "linear"),
        "selection": selection(records),
    }
    (out / "cifar10_cpu.json").write_text(json.dumps(report, indent=2))
    (out / "cifar10_cpu.md").write_text(render(report))
    return report


# -------------------------------------------------------------------------------------------------- export
def predictor_spectra(checkpoint: Path) -> dict[str, list[float]]:
    """Eigenvalues (descending) of the running correlation F̂ and of W_p stored in a DirectPred checkpoint."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    (f_key,) = [k for k in state if k.startswith("predictor.") and k.endswith(".correlation")]
    spectra = {}
    for label, key in (("F_hat", f_key), ("W_p", "predictor.weight")):
        matrix = state[key].double()
        spectra[label] = torch.linalg.eigvalsh((matrix + matrix.T) / 2).flip(0).tolist()
    return spectra


def model_card(record: dict, random: dict | None, name: str, command: str, spectra: dict) -> str:
    """A README for one exported DirectPred backbone: what it is, how it was trained, what it scores."""
    p = record["protocol"]
    f_hat, w_p = np.array(spectra["F_hat"]), np.array(spectra["W_p"])
    p_rel = w_p / w_p.max()
    floor = f"{(p_rel < 0.2).sum()} of {len(p_rel)}"
    ema = "without EMA (target = sg(online))" if record["cell"].endswith("_noema") else "with EMA τ = 0.99"
    vs_random = (
        f" A random network with the same backbone and probes scores kNN {random['knn']:.1f} %, "
        f"linear {random['linear']:.1f} %."
        if random
        else ""
    )
    if random and record["knn"] < random["knn"]:
        vs_random += (
            " **This run is below the random network (a collapse): evidence, not a backbone to use.**"
        )
    subset = f"{record['train_images']:,}" if "train_images" in record else "all 50,000"
    return "\n".join(
        [
            f"# {name}",
            "",
            f"DirectPred {ema}: the online backbone after self-supervised pretraining on CIFAR-10, a small",
            "CPU benchmark run of solo-directpred (Tian, Chen & Ganguli, ICML 2021: the linear predictor",
            "W_p is set from the eigendecomposition of the running correlation F̂ of its inputs, not",
            "trained).",
            "",
            "**Backbone: not the paper's ResNet-18.** The 4-layer ConvNet `small_cnn` of the repository's",
            "`benchmarks/accuracy.py` (3×3 convolutions 16-32-64-128, BN, ReLU, stride 2 from the second,",
            "global average pool; 128 features; input 32×32 normalised with the training set's channel",
            "mean/std). Build it with `SmallConvNet()` from that file and load the `.safetensors` weights",
            "(keys without `backbone.`); inside solo-learn, `register_small_cnn()` adds it to the",
            "backbone table.",
            "",
            "## Training",
            "",
            f"- data: {subset} CIFAR-10 training images, {p['size']}×{p['size']} (class folders of",
            "  JPEG-re-encoded images; labels unused)",
            f"- epochs: {p['epochs']}, batch {p['batch_size']}, SGD lr {p['lr']} × batch/256, momentum 0.9, "
            "wd 4e-4, warm-up cosine",
            f"- projector 512 → {p['proj_output_dim']}; DirectPred ρ = 0.3, ε = 0.1, freq = 1",
            f"- augmentation: random resized crop (area ≥ {p['min_scale']}), flip, colour jitter, grayscale",
            f"- seed {record['seed']}; {record['steps']} optimizer steps; "
            f"{record['train_s'] / 60:.0f} min on a shared 2-core CPU",
            f"- exported by: `{command}`",
            "",
            "## Results (frozen backbone, all 10,000 CIFAR-10 test images)",
            "",
            "- weighted cosine kNN (k = 20, T = 0.07) against the training images: "
            f"**{record['knn']:.1f} %**",
            f"- logistic-regression linear probe: **{record['linear']:.1f} %**",
            f"- effective rank of the test features: {record['rank']:.0f} of 128",
            "",
            "One seed, a few epochs: a small-scale result, far below the paper's ResNet-18 numbers."
            + vs_random,
            "",
            "## Predictor spectra at the end of training (`spectra.json`)",
            "",
            f"- F̂: largest eigenvalue {f_hat[0]:.3g}, smallest {f_hat[-1]:.3g}; "
            f"top five {', '.join(f'{v:.3g}' for v in f_hat[:5])}",
            "- W_p = U diag(p) Uᵀ with p_j = sqrt(s_j / s_max) + ε: p / p_max from 1 down to "
            f"{p_rel.min():.3f}; {floor} directions below 0.2 (near the ε floor)",
            "",
            "## Files",
            "",
            f"`{name}.safetensors` (backbone weights), `{name}.ckpt` (the full Lightning checkpoint:",
            "online and target networks, projector, predictor buffers), "
            f"`{name}.json` (metadata, sha256), `spectra.json`.",
            "Licence: MIT.",
            "",
        ]
    )


def write_run_args(checkpoint: Path, record: dict) -> None:
    """The run's config as solo-learn's ``args.json`` beside ``checkpoint`` (what ``zoo export`` reads):
    the composed method config of the cell, with the data section naming CIFAR-10's class folders."""
    from omegaconf import OmegaConf

    protocol = Protocol(**{**record["protocol"], "seeds": tuple(record["protocol"]["seeds"])})
    variant = VARIANTS[record["cell"]]
    cfg = accuracy.compose_cfg(
        [f"method={variant.method}", *variant.overrides, *cell_overrides(variant, protocol)]
    )
    args = OmegaConf.to_container(cfg, resolve=True)
    args["data"] = {
        "dataset": "cifar10",
        "format": "image_folder",
        "train_path": f"${DATA_ENV}/train",
        "val_path": f"${DATA_ENV}/test",
    }
    args["seed"] = record["seed"]
    (checkpoint.parent / "args.json").write_text(json.dumps(args, indent=2))


def export_checkpoints(out: Path, export_dir: Path, protocol: Protocol, command: str) -> list[Path]:
    """``solo-directpred zoo export`` for every finished DirectPred cell with a checkpoint, plus a model
    card (``README.md``) and ``spectra.json`` in each bundle; returns the bundle folders."""
    records = finished(out, protocol)
    random = {r["seed"]: r for r in records if r["cell"] == RANDOM}
    bundles = []
    for record in records:
        if not record.get("checkpoint") or not record["cell"].startswith("directpred"):
            continue
        p = record["protocol"]
        name = f"{record['cell'].replace('_', '-')}-smallcnn-cifar10-{p['epochs']}ep-seed{record['seed']}"
        checkpoint = out / record["checkpoint"]
        write_run_args(checkpoint, record)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "solo_directpred",
                "zoo",
                "export",
                str(checkpoint),
                "--name",
                name,
                "--out",
                str(export_dir),
                "--method",
                record["cell"],
                "--dataset",
                "cifar10",
                "--backbone",
                accuracy.SMALL_CNN,
                "--epochs",
                str(p["epochs"]),
                "--result",
                f"knn:top1={record['knn']:.2f}",
                "--result",
                f"linear:top1={record['linear']:.2f}",
                "--description",
                f"DirectPred, 4-layer ConvNet (not ResNet-18), CIFAR-10 {p['epochs']} epochs on CPU",
            ],
            check=True,
        )
        bundle = export_dir / name
        spectra = predictor_spectra(checkpoint)
        (bundle / "spectra.json").write_text(json.dumps(spectra, indent=2))
        (bundle / "README.md").write_text(
            model_card(record, random.get(record["seed"]), name, command, spectra)
        )
        bundles.append(bundle)
    return bundles


def _init_worker() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    accuracy._quiet()


def run(protocol: Protocol, root: Path, out: Path, command: str, cells: Sequence[str] = CELLS) -> dict:
    """Run the cells not yet on disk, rewriting the report after each; return the final report."""
    out.mkdir(parents=True, exist_ok=True)
    load_cifar(root, out / "cifar10-uint8.npz")  # decode once, before the workers start
    jobs = make_jobs(protocol, root, out, cells)
    print(f"{len(jobs)} cells to run in {out}", file=sys.stderr)
    if protocol.workers <= 1:
        for job in jobs:
            _report_one(run_cell(job))
            write_report(out, protocol, command)
    else:
        import multiprocessing as mp

        with ProcessPoolExecutor(
            protocol.workers, mp_context=mp.get_context("spawn"), initializer=_init_worker
        ) as pool:
            for future in as_completed([pool.submit(run_cell, job) for job in jobs]):
                _report_one(future.result())
                write_report(out, protocol, command)
    return write_report(out, protocol, command)


def _report_one(record: dict) -> None:
    print(
        f"{record['cell']} seed {record['seed']}: kNN {record['knn']:.1f}, linear {record['linear']:.1f}, "
        f"{(record['train_s'] + record['probe_s']) / 60:.1f} min",
        file=sys.stderr,
        flush=True,
    )


def protocol_from_args(args: argparse.Namespace) -> Protocol:
    """Command-line options → :class:`Protocol` (``--quick`` starts from the quick scale)."""
    base = QUICK if args.quick else Protocol()
    changes: dict[str, Any] = {"workers": args.workers}
    for key in ("epochs", "batch_size", "lr", "train_subset", "size", "min_scale", "track_every"):
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    if args.seeds is not None:
        changes["seeds"] = tuple(args.seeds)
    return replace(base, **changes)


def recorded_command(argv: Sequence[str], script: str = "cifar_cpu.py") -> str:
    """The command line as the report shows it: the data and output folders as placeholders."""
    shown, hide = [], {"--data": f"${DATA_ENV}", "--out": "OUT", "--export": "EXPORT"}
    for i, arg in enumerate(argv):
        key = arg.split("=", 1)[0]
        if key in hide and "=" in arg:
            shown.append(f"{key}={hide[key]}")
        elif i > 0 and argv[i - 1] in hide:
            shown.append(hide[argv[i - 1]])
        else:
            shown.append(arg)
    return " ".join([f"python benchmarks/{script}", *shown])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, default=None, help=f"CIFAR-10 class folders (default: ${DATA_ENV})"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for cells, checkpoints and the report"
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"quick mode: 4 epochs, seed 0, cells {' '.join(QUICK_CELLS)}"
    )
    parser.add_argument(
        "--cells",
        nargs="+",
        choices=CELLS + ABLATION_CELLS,
        default=None,
        help=f"default: all but the optional {', '.join(ABLATION_CELLS)} (--quick: its own)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--train-subset", type=int, default=None)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--min-scale", type=float, default=None)
    parser.add_argument("--track-every", type=int, default=None, help="kNN on small subsets every N epochs")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (one torch thread each)")
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite the report from the cells on disk"
    )
    parser.add_argument(
        "--export", type=Path, default=None, help="zoo-export the DirectPred checkpoints into this folder"
    )
    args = parser.parse_args(argv)
    protocol = protocol_from_args(args)
    command = recorded_command(sys.argv[1:] if argv is None else argv)
    if args.render_only:
        report = write_report(args.out, protocol, command)
    else:
        cells = args.cells or (QUICK_CELLS if args.quick else CELLS)
        report = run(protocol, data_root(args.data), args.out, command, cells)
    if args.export is not None:
        for bundle in export_checkpoints(args.out, args.export, protocol, command):
            print(f"exported {bundle}", file=sys.stderr)
    print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
