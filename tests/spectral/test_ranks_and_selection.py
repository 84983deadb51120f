"""LiDAR with views grouped by image index, RankMe of representations, and label-free checkpoint selection."""

from __future__ import annotations

import csv

import pytest
import torch

pytest.importorskip("lightning")

from solo_directpred.core.schema import ConfigError  # noqa: E402
from solo_directpred.spectral import metrics as M  # noqa: E402
from solo_directpred.spectral.callback import SpectralMonitor, build_callbacks  # noqa: E402
from solo_directpred.spectral.records import RECORDS_FILE, read_records  # noqa: E402

from .helpers import TinyIndexed, indexed_loader, trainer  # noqa: E402


def test_lidar_groups_the_views_of_each_image_by_its_index(tmp_path):
    monitor = SpectralMonitor(every_n_steps=4, buffer_size=1000, plot_every_n_epochs=0, rankme_samples=0)
    model = TinyIndexed()
    trainer(tmp_path, [monitor]).fit(model, indexed_loader(64, 16, shuffle=True))
    (record,) = read_records(monitor.spectral_dir / RECORDS_FILE)
    rows = torch.cat([torch.cat(z) for z, _, _ in model.seen])
    groups = torch.cat([indexes.repeat(2) for _, _, indexes in model.seen])
    assert groups.unique().numel() == 64  # one epoch, shuffled: 64 images, 2 views each
    expected = M.lidar(rows.double(), groups)
    assert record["scalars"]["lidar"] == pytest.approx(expected, rel=1e-5)
    assert 1.0 < expected <= 8.0


def test_rankme_of_representations_and_projections_at_epoch_end(tmp_path):
    monitor = SpectralMonitor(every_n_steps=100, plot_every_n_epochs=0, rankme_samples=40)
    model = TinyIndexed(dim=8, feats_dim=12)
    fit = trainer(tmp_path, [monitor], max_epochs=2)
    fit.fit(model, indexed_loader(64, 16))
    # the last 40 rows of the first view, from the last steps of the second epoch
    feats = torch.cat([f[0] for _, f, _ in model.seen])[-40:]
    z = torch.cat([zs[0] for zs, _, _ in model.seen])[-40:]
    assert monitor.last_scalars["rankme_repr"] == pytest.approx(M.rankme(feats), rel=1e-6)
    assert monitor.last_scalars["rankme_proj"] == pytest.approx(M.rankme(z), rel=1e-6)
    assert monitor.last_scalars["rankme_repr_samples"] == 40.0
    assert fit.callback_metrics["spectral/rankme_repr"].item() == pytest.approx(M.rankme(feats), rel=1e-6)
    (path,) = tmp_path.glob("run/version_*/metrics.csv")
    with path.open() as handle:
        logged = [
            float(r["spectral/rankme_repr"]) for r in csv.DictReader(handle) if r.get("spectral/rankme_repr")
        ]
    assert len(logged) == 2 and logged[-1] == pytest.approx(M.rankme(feats), rel=1e-6)


def test_select_by_keeps_the_checkpoint_with_the_highest_metric(tmp_path):
    callbacks = build_callbacks(
        {"every_n_steps": 100, "plot_every_n_epochs": 0, "rankme_samples": 32, "select_by": "rankme_proj"}
    )
    monitor, checkpoint = callbacks
    assert checkpoint.monitor == "spectral/rankme_proj" and checkpoint.mode == "max"
    fit = trainer(tmp_path, callbacks, max_epochs=4, enable_checkpointing=True)
    fit.fit(TinyIndexed(), indexed_loader(64, 16))
    (path,) = tmp_path.glob("run/version_*/metrics.csv")
    with path.open() as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("spectral/rankme_proj")]
    values = [float(r["spectral/rankme_proj"]) for r in rows]
    assert len(values) == 4
    best = max(range(4), key=values.__getitem__)
    assert checkpoint.best_model_score.item() == pytest.approx(values[best], rel=1e-6)
    assert f"best-rankme_proj-{best}-{4 * (best + 1)}.ckpt" in checkpoint.best_model_path
    assert checkpoint.best_model_path.endswith(".ckpt") and len(list(tmp_path.rglob("best-*.ckpt"))) == 1


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            {"select_by": "knn"},
            "spectral.select_by='knn' is invalid: "
            "must be one of lidar, rankme, rankme_repr, rankme_proj or null",
        ),
        (
            {"select_by": "lidar", "lidar": False},
            "spectral.select_by='lidar' is invalid: needs its metric: lidar = true",
        ),
        ({"rankme_samples": -1}, "spectral.rankme_samples=-1 is invalid: must be an integer >= 0 (0: off)"),
        ({"lidar": "yes"}, "spectral.lidar='yes' is invalid: must be true or false"),
        (
            {"alarm": {"zstd_min": "off"}},
            "spectral.alarm.zstd_min='off' is invalid: must be 'auto', a number >= 0, or null",
        ),
    ],
)
def test_new_keys_are_checked(section, message):
    with pytest.raises(ConfigError) as info:
        build_callbacks(section)
    assert str(info.value).startswith(message)
