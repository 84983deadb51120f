"""Share of training time spent in SpectralMonitor, with everything on at its default settings.

Trains a small BYOL-style model (ResNet-18 backbone on 32×32 inputs, two views, projector to d, linear
predictor) with Lightning and a TensorBoard logger (CSV without ``tensorboard``), once without and once with
the monitor at its defaults: LiDAR on the views grouped by image index, the epoch-end RankMe of the
representations and projections (up to 25,600 rows), the spectra as histograms and the panels as an image
in the logger, the default alarm. It prints

* the time spent inside the monitor's hooks (buffering every step, a measurement every ``every_n_steps``
  steps, the epoch-end RankMe, starting the background redraw and sending the finished one to the logger)
  as a share of the run's training time;
* the one-off cost of the final, synchronous redraw at the end of ``fit``;
* the end-to-end wall-clock difference between the two runs (noisy: the background redraw runs in a
  separate process and competes for the CPU, which the in-hook share does not see);
* the cost of one measurement (:func:`spectral_snapshot`) on N = buffer_size rows for several widths d,
  to choose ``every_n_steps`` for wide projectors.

    python benchmarks/spectral_overhead.py --threads 1              # defaults: 200 steps, one epoch, d = 256
    python benchmarks/spectral_overhead.py --steps 600 --dim 2048 --accelerator gpu
"""

from __future__ import annotations

import argparse
import functools
import time

# isort: off
import solo_directpred  # noqa: F401  - first: fixes the torchvision import Lightning triggers

# isort: on
import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from tqdm import tqdm

from solo_directpred.compat import ensure_torchvision_importable
from solo_directpred.spectral.callback import RANKME_SAMPLES, SpectralMonitor
from solo_directpred.spectral.metrics import rankme, spectral_snapshot

HOOKS = ("on_train_batch_end", "on_train_epoch_end", "on_train_end", "setup")


def _backbone(name: str) -> tuple[nn.Module, int]:
    if name == "resnet18":
        ensure_torchvision_importable()
        from torchvision.models import resnet18

        net = resnet18(num_classes=10)
        net.fc = nn.Identity()
        return net, 512
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 1024), nn.ReLU(), nn.Linear(1024, 512)), 512


class ByolLike(pl.LightningModule):
    """Two views, backbone → projector (to d) → linear predictor, symmetric cosine loss with stop-gradient."""

    def __init__(self, dim: int, backbone: str) -> None:
        super().__init__()
        self.backbone, width = _backbone(backbone)
        self.projector = nn.Sequential(
            nn.Linear(width, 1024), nn.BatchNorm1d(1024), nn.ReLU(), nn.Linear(1024, dim)
        )
        self.predictor = nn.Linear(dim, dim, bias=False)

    def training_step(self, batch, batch_idx):  # noqa: ANN001 - Lightning signature
        indexes, x = batch
        views = (x + 0.1 * torch.randn_like(x), x.flip(-1))
        feats = [self.backbone(v) for v in views]
        z = [self.projector(f) for f in feats]
        p = [self.predictor(zi) for zi in z]
        loss = -(
            nn.functional.cosine_similarity(p[0], z[1].detach()).mean()
            + nn.functional.cosine_similarity(p[1], z[0].detach()).mean()
        )
        return {"loss": loss, "z": z, "feats": feats, "indexes": indexes}

    def linear_predictor_weight(self) -> torch.Tensor:
        return self.predictor.weight

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.03, momentum=0.9)


class TrainClock(pl.Callback):
    """Wall-clock time of the training loop, from train start to train end."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seconds = time.perf_counter() - self.start


def _timed(monitor: SpectralMonitor, totals: dict[str, float]) -> SpectralMonitor:
    """Wrap the monitor's hooks with wall-clock timers accumulated in ``totals``."""
    for name in HOOKS:
        hook = getattr(monitor, name)

        @functools.wraps(hook)
        def wrapper(*args, _hook=hook, _name=name, **kwargs):  # noqa: ANN002, ANN003
            start = time.perf_counter()
            try:
                return _hook(*args, **kwargs)
            finally:
                totals[_name] = totals.get(_name, 0.0) + time.perf_counter() - start

        setattr(monitor, name, wrapper)
    return monitor


def _logger(root: str) -> pl.loggers.Logger:
    """TensorBoard when it is installed (Lightning's default then), else CSV; the same for both runs."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return pl.loggers.CSVLogger(root, name="bench")
    return pl.loggers.TensorBoardLogger(root, name="bench")


def _run(args: argparse.Namespace, monitor: SpectralMonitor | None, root: str) -> tuple[float, str]:
    torch.manual_seed(0)
    n = args.steps_per_epoch * args.batch_size
    data = DataLoader(
        TensorDataset(torch.arange(n), torch.randn(n, 3, 32, 32)),
        batch_size=args.batch_size,
        drop_last=True,
    )
    clock = TrainClock()
    callbacks = [clock] + ([monitor] if monitor is not None else [])
    trainer = pl.Trainer(
        accelerator=args.accelerator,
        devices=1,
        max_steps=args.steps,
        logger=_logger(root),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        default_root_dir=root,
    )
    trainer.fit(ByolLike(args.dim, args.backbone), data)
    return clock.seconds, type(trainer.logger).__name__


def _median_ms(fn, device: torch.device, repeats: int = 3) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return 1e3 * sorted(times)[len(times) // 2]


def _snapshot_ms(dim: int, rows: int, device: torch.device, predictor: bool) -> float:
    """Median milliseconds of one measurement on (rows, dim) embeddings: with W_p and LiDAR, or bare."""
    z = torch.randn(rows, dim, device=device) * torch.linspace(0.01, 1.0, dim, device=device)
    w = torch.randn(dim, dim, device=device) if predictor else None
    groups = torch.arange(rows // 2, device=device).repeat(2) if predictor else None
    return _median_ms(lambda: spectral_snapshot(z, w, groups=groups), device)


def _rankme_ms(width: int, rows: int, device: torch.device) -> float:
    """Median milliseconds of the epoch-end RankMe on (rows, width) representations."""
    feats = torch.randn(rows, width, device=device)
    return _median_ms(lambda: rankme(feats), device)


def main() -> None:
    import tempfile
    import warnings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps per run (default 200)")
    parser.add_argument(
        "--steps-per-epoch", type=int, default=200, help="epoch length in steps (default 200)"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--dim", type=int, default=256, help="projector output width d (default 256)")
    parser.add_argument("--backbone", choices=("resnet18", "mlp"), default="resnet18")
    parser.add_argument("--accelerator", default="cpu", help="Lightning accelerator (cpu, gpu, auto)")
    parser.add_argument(
        "--every-n-steps", type=int, default=100, help="monitor cadence (default: its default)"
    )
    parser.add_argument("--buffer-size", type=int, default=2048, help="monitor buffer (default: its default)")
    parser.add_argument(
        "--dims",
        type=int,
        nargs="*",
        default=[128, 256, 512, 1024, 2048],
        help="widths for the per-measurement cost table",
    )
    parser.add_argument(
        "--rankme-widths",
        type=int,
        nargs="*",
        default=[128, 512, 2048],
        help="representation widths for the epoch-end RankMe cost",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's; 1 is steadier when shared)",
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    totals: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as root:
        bar = tqdm(total=2, desc="training runs", unit="run")
        baseline, _ = _run(args, None, root)
        bar.update()
        monitor = _timed(
            SpectralMonitor(every_n_steps=args.every_n_steps, buffer_size=args.buffer_size), totals
        )
        monitored, logger_name = _run(args, monitor, root)
        bar.update()
        bar.close()

    final_plot = totals.get("on_train_end", 0.0)
    in_hooks = sum(totals.values()) - final_plot
    measurements = args.steps // args.every_n_steps
    print(
        f"\nworkload: {args.backbone}, batch {args.batch_size} × 2 views, d = {args.dim}, "
        f"{args.steps} steps, "
        f"{args.accelerator}; monitor: every {args.every_n_steps} steps, buffer {args.buffer_size}"
    )
    print(f"training time without monitor: {baseline:8.2f} s ({1e3 * baseline / args.steps:.1f} ms/step)")
    print(f"training time with monitor:    {monitored:8.2f} s")
    print(
        f"time in monitor hooks (buffering, {measurements} measurements, epoch-end RankMe and redraws): "
        f"{in_hooks:.3f} s = {100 * in_hooks / monitored:.2f}% of training time"
    )
    print(
        f"logger: {logger_name}; last scalars: "
        + ", ".join(
            f"{k} {monitor.last_scalars[k]:.3g}"
            for k in ("rankme", "lidar", "rankme_repr", "rankme_proj")
            if k in monitor.last_scalars
        )
    )
    for name in HOOKS:
        print(f"    {name:<20s} {totals.get(name, 0.0):8.3f} s")
    print(f"one-off final redraw at the end of fit: {final_plot:.2f} s")
    print(f"end-to-end difference (noisy): {100 * (monitored - baseline) / baseline:+.2f}%")

    device = torch.device(
        "cuda" if args.accelerator in ("gpu", "cuda") and torch.cuda.is_available() else "cpu"
    )
    snapshots = [
        (
            dim,
            _snapshot_ms(dim, args.buffer_size, device, True),
            _snapshot_ms(dim, args.buffer_size, device, False),
        )
        for dim in tqdm(args.dims, desc="snapshot cost", unit="d", leave=False)
    ]
    ranks = [
        (width, _rankme_ms(width, RANKME_SAMPLES, device))
        for width in tqdm(args.rankme_widths, desc="RankMe cost", unit="width", leave=False)
    ]
    print(f"\none measurement (spectral_snapshot) on {args.buffer_size} rows, {device}, milliseconds:")
    print(f"    {'d':>5s}  {'W_p + LiDAR':>11s}  {'bare':>8s}")
    for dim, with_w, without in snapshots:
        print(f"    {dim:5d}  {with_w:11.1f}  {without:8.1f}")
    print(f"\nepoch-end RankMe on {RANKME_SAMPLES} rows, {device}, milliseconds:")
    for width, ms in ranks:
        print(f"    width {width:5d}: {ms:9.1f}")


if __name__ == "__main__":
    main()
