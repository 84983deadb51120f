"""Calibration of the collapse alarm's default thresholds on runs that stay healthy and runs that collapse.

Trains the predictor grid of ``benchmarks/accuracy.py`` (the real solo-learn methods, its small ConvNet, its
digits and shapes data and augmentations) with the spectral monitor measuring every 5 steps on its default
buffer (2,048 rows, views pooled), alarm off, and prints for every run the lowest RankMe / d and z-std · √d
over training (d = the projector width, 64 here) together with the final values and the probes of
``accuracy.py`` (kNN accuracy and the effective rank of the frozen backbone's validation features). The
default thresholds of ``SpectralMonitor`` (``docs/spectral.md``, "The collapse alarm") are chosen between the
lowest value any healthy run reached and the highest value a collapsed run ended at.

    python benchmarks/spectral_alarm_calibration.py --out /tmp/calibration      # both datasets, seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import accuracy as acc  # noqa: E402  - the grid, data and probes of the accuracy benchmark


def run(variant_key: str, dataset: str, seed: int, settings: acc.Settings, root: Path) -> dict:
    """Train one cell with the monitor on; the trajectory of RankMe and z-std, and the final probes."""
    import lightning.pytorch as pl
    from solo.methods import METHODS

    from solo_directpred.sololearn.monitored import MONITORABLE, monitored
    from solo_directpred.spectral.callback import SpectralMonitor
    from solo_directpred.spectral.records import RECORDS_FILE, read_records

    acc._quiet()
    acc.register_small_cnn()
    spec = acc.DATASETS[dataset]
    data = acc.load_dataset(dataset, settings.shapes_train_per_class, settings.shapes_val_per_class)
    epochs = settings.epochs_digits if dataset == "digits" else settings.epochs_shapes
    variant = acc.VARIANTS[variant_key]
    pl.seed_everything(seed, workers=False)
    cfg = acc.compose_cfg(
        [
            f"method={variant.method}",
            *variant.overrides,
            f"backbone.name={acc.SMALL_CNN}",
            f"max_epochs={epochs}",
            f"optimizer.batch_size={settings.batch_size}",
            "spectral.enabled=false",
            "+scheduler.warmup_start_lr=0.0",
        ]
    )
    # upstream byol returns a bare loss: its monitored subclass exposes the projections
    model = (
        monitored(METHODS[variant.method]) if variant.method in MONITORABLE else METHODS[variant.method]
    )(cfg)
    directory = root / f"{dataset}-{variant_key}-{seed}"
    monitor = SpectralMonitor(
        every_n_steps=5, plot_every_n_epochs=0, rankme_min=None, zstd_min=None, dirpath=directory
    )
    trainer = acc.fit_two_views(model, data, spec, settings.batch_size, epochs, seed, callbacks=[monitor])
    records = read_records(directory / RECORDS_FILE)
    d = records[-1]["scalars"]["dim"]
    rankme = [r["scalars"]["rankme"] / d for r in records]
    zstd = [r["scalars"]["zstd"] * math.sqrt(d) for r in records]
    return {
        "dataset": dataset,
        "variant": variant_key,
        "seed": seed,
        "dim": d,
        "steps": int(trainer.global_step),
        "rankme_over_d_min": min(rankme),
        "rankme_over_d_final": rankme[-1],
        "zstd_sqrt_d_min": min(zstd),
        "zstd_sqrt_d_final": zstd[-1],
        **acc.probe(model, data, settings, seed),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for calibration.json")
    parser.add_argument("--datasets", nargs="+", default=["shapes", "digits"], choices=tuple(acc.DATASETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument(
        "--variants", nargs="+", default=[v.key for v in acc.GRID], choices=tuple(acc.VARIANTS)
    )
    args = parser.parse_args()
    settings = acc.Settings()
    rows = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as root:
        for dataset in args.datasets:
            for seed in args.seeds:
                for key in args.variants:
                    row = run(key, dataset, seed, settings, Path(root))
                    rows.append(row)
                    print(
                        f"{dataset:7s} {key:18s} seed {seed}  RankMe/d min {row['rankme_over_d_min']:.3f} "
                        f"final {row['rankme_over_d_final']:.3f}  z-std·√d min {row['zstd_sqrt_d_min']:.3f} "
                        f"final {row['zstd_sqrt_d_final']:.3f}  kNN {row['knn']:.1f}  "
                        f"backbone rank {row['rank']:.1f}",
                        flush=True,
                    )
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"wall_s": time.perf_counter() - start, "rows": rows}
    (args.out / "calibration.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
