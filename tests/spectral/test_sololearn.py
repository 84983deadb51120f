"""The monitor inside the real solo-learn methods: W_p as used, representations, the default logger."""

from __future__ import annotations

import pytest
import torch

from solo_directpred.spectral.callback import SpectralMonitor
from tests.conftest import requires_solo

pytestmark = [requires_solo, pytest.mark.solo]

SPECTRAL = ["spectral.every_n_steps=1", "spectral.buffer_size=64", "spectral.plot_every_n_epochs=0"]


def _records(tmp_path):
    from solo_directpred.spectral.records import read_records

    (jsonl,) = tmp_path.rglob("spectra.jsonl")
    return read_records(jsonl)


def test_symmetric_trained_predictor_is_measured_as_it_is_used(tmp_path):
    # callbacks run before the module's on_train_batch_end, where W ← (W + Wᵀ)/2: the monitor must not
    # read the unsymmetrised weight of the optimizer step
    from solo.methods import METHODS

    from tests.sololearn.helpers import compose_pretrain_cfg, fit_tiny

    cfg = compose_pretrain_cfg(["method=linear_pred", "method_kwargs.symmetric=true", *SPECTRAL])
    model = METHODS["linear_pred"](cfg)
    fit_tiny(model, steps=3, default_root_dir=tmp_path)
    records = _records(tmp_path)
    assert [r["step"] for r in records] == [1, 2, 3]
    assert [r["scalars"]["asymmetry"] for r in records] == [0.0, 0.0, 0.0]  # the raw step: ~5e-6
    used = torch.linalg.eigvalsh(model.predictor.weight.detach().double()).flip(0)
    assert torch.allclose(torch.tensor(records[-1]["eig_Wp"], dtype=torch.float64), used, atol=1e-6)


def test_directpred_logs_lidar_and_representation_rankme(tmp_path):
    from solo.methods import METHODS

    from tests.sololearn.helpers import compose_pretrain_cfg, fit_tiny

    cfg = compose_pretrain_cfg(SPECTRAL)
    trainer = fit_tiny(METHODS["directpred"](cfg), steps=3, default_root_dir=tmp_path)
    (monitor,) = [c for c in trainer.callbacks if isinstance(c, SpectralMonitor)]
    # batches of 8 images × 2 views grouped by solo-learn's index: n images give LiDAR ≤ n − 1
    records = _records(tmp_path)
    assert [r["scalars"]["num_samples"] for r in records] == [16, 32, 48]
    assert all(1 < r["scalars"]["lidar"] <= r["scalars"]["num_samples"] / 2 - 1 for r in records)
    assert monitor.last_scalars["rankme_repr_samples"] == 24  # 3 steps × 8 images, first view
    assert 1 < monitor.last_scalars["rankme_repr"] <= 24
    assert 1 < monitor.last_scalars["rankme_proj"] <= 24


def test_upstream_byol_gets_representation_rankme(tmp_path):
    from solo.methods import METHODS

    from solo_directpred.sololearn.monitored import monitored
    from tests.sololearn.helpers import compose_pretrain_cfg, fit_tiny

    cfg = compose_pretrain_cfg(["method=byol", "+method_kwargs.pred_hidden_dim=128", *SPECTRAL])
    trainer = fit_tiny(monitored(METHODS["byol"])(cfg), steps=3, default_root_dir=tmp_path)
    (monitor,) = [c for c in trainer.callbacks if isinstance(c, SpectralMonitor)]
    assert monitor.last_scalars["rankme_repr_samples"] == 24
    assert monitor.last_scalars["rankme_repr"] > 1


def test_directpred_run_with_lightning_default_logger_shows_panels_in_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import TensorBoardLogger
    from solo.methods import METHODS
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from solo_directpred.spectral.callback import PANELS_TAG
    from tests.sololearn.helpers import compose_pretrain_cfg, random_loader

    cfg = compose_pretrain_cfg(["spectral.every_n_steps=2"])
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=2,
        logger=None,  # as upstream main_pretrain.py without W&B: Lightning's default
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(METHODS["directpred"](cfg), train_dataloaders=random_loader(n=32))
    assert isinstance(trainer.logger, TensorBoardLogger)
    events = EventAccumulator(trainer.logger.log_dir, size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert PANELS_TAG in tags["images"]
    assert {"spectral/rankme", "spectral/lidar", "spectral/rankme_repr", "spectral/asymmetry"} <= set(
        tags["scalars"]
    )
    assert "spectral/eig_Wp" in tags["histograms"]
