"""Share of training time spent in SpectralMonitor, with its default settings.

Trains a small BYOL-style model (ResNet-18 backbone on 32×32 inputs, two views, projector to d, linear
predictor) with Lightning, once without and once with the monitor, and prints

* the time spent inside the monitor's hooks (buffering every step, a measurement every ``every_n_steps``
  steps, starting the background redraw at each epoch end) as a share of the run's training time;
* the one-off cost of the final, synchronous redraw at the end of ``fit``;
* the end-to-end wall-clock difference between the two runs (noisy: the background redraw runs in a
  separate process and competes for the CPU, which the in-hook share does not see);
* the cost of one measurement (:func:`spectral_snapshot`) on N = buffer_size rows for several widths d,
  to choose ``every_n_steps`` for wide projectors.

    python benchmarks/spectral_overhead.py                          # defaults: 300 steps, d = 256
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
from solo_directpred.spectral.callback import SpectralMonitor
from solo_directpred.spectral.metrics import spectral_snapshot

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
        (x,) = batch
        views = (x + 0.1 * torch.randn_like(x), x.flip(-1))
        z = [self.projector(self.backbone(v)) for v in views]
        p = [self.predictor(zi) for zi in z]
        loss = -(
            nn.functional.cosine_similarity(p[0], z[1].detach()).mean()
            + nn.functional.cosine_similarity(p[1], z[0].detach()).mean()
        )
        return {"loss": loss, "z": z}

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


def _run(args: argparse.Namespace, monitor: SpectralMonitor | None, root: str) -> float:
    torch.manual_seed(0)
    data = DataLoader(
        TensorDataset(torch.randn(args.steps_per_epoch * args.batch_size, 3, 32, 32)),
        batch_size=args.batch_size,
        drop_last=True,
    )
    clock = TrainClock()
    callbacks = [clock] + ([monitor] if monitor is not None else [])
    trainer = pl.Trainer(
        accelerator=args.accelerator,
        devices=1,
        max_steps=args.steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        default_root_dir=root,
    )
    trainer.fit(ByolLike(args.dim, args.backbone), data)
    return clock.seconds


def _snapshot_ms(dim: int, rows: int, device: torch.device, predictor: bool, repeats: int = 3) -> float:
    """Median milliseconds of one ``spectral_snapshot`` on (rows, dim) embeddings, with or without W_p."""
    z = torch.randn(rows, dim, device=device) * torch.linspace(0.01, 1.0, dim, device=device)
    w = torch.randn(dim, dim, device=device) if predictor else None
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    spectral_snapshot(z, w)
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        spectral_snapshot(z, w)
        sync()
        times.append(time.perf_counter() - start)
    return 1e3 * sorted(times)[len(times) // 2]


def main() -> None:
    import tempfile
    import warnings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps per run (default 300)")
    parser.add_argument(
        "--steps-per-epoch", type=int, default=100, help="epoch length in steps (default 100)"
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
        baseline = _run(args, None, root)
        bar.update()
        monitor = _timed(
            SpectralMonitor(every_n_steps=args.every_n_steps, buffer_size=args.buffer_size), totals
        )
        monitored = _run(args, monitor, root)
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
        f"time in monitor hooks (buffering, {measurements} measurements, epoch-end redraw starts): "
        f"{in_hooks:.3f} s = {100 * in_hooks / monitored:.2f}% of training time"
    )
    for name in HOOKS:
        print(f"    {name:<20s} {totals.get(name, 0.0):8.3f} s")
    print(f"one-off final redraw at the end of fit: {final_plot:.2f} s")
    print(f"end-to-end difference (noisy): {100 * (monitored - baseline) / baseline:+.2f}%")

    device = torch.device(
        "cuda" if args.accelerator in ("gpu", "cuda") and torch.cuda.is_available() else "cpu"
    )
    print(f"\none measurement (spectral_snapshot) on {args.buffer_size} rows, {device}, milliseconds:")
    print(f"    {'d':>5s}  {'with W_p':>10s}  {'without W_p':>11s}")
    for dim in tqdm(args.dims, desc="snapshot cost", unit="d", leave=False):
        with_w = _snapshot_ms(dim, args.buffer_size, device, predictor=True)
        without = _snapshot_ms(dim, args.buffer_size, device, predictor=False)
        tqdm.write(f"    {dim:5d}  {with_w:10.1f}  {without:11.1f}")


if __name__ == "__main__":
    main()
