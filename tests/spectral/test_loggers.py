"""The panels and spectra in the loggers a user looks at: TensorBoard (read back from the event file), W&B."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

pytest.importorskip("lightning")
pytest.importorskip("tensorboard")

from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger  # noqa: E402
from PIL import Image  # noqa: E402

from solo_directpred.spectral import SpectralMonitor  # noqa: E402
from solo_directpred.spectral.callback import PANELS_TAG  # noqa: E402
from solo_directpred.spectral.loggers import log_image  # noqa: E402
from solo_directpred.spectral.records import RECORDS_FILE, read_records  # noqa: E402

from .helpers import TinyIndexed, indexed_loader, trainer  # noqa: E402


def read_events(directory):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(directory), size_guidance={"images": 0, "scalars": 0, "histograms": 0})
    events.Reload()
    return events


@pytest.mark.parametrize("background", [False, True])
def test_tensorboard_event_file_holds_panels_scalars_and_spectra(tmp_path, background):
    monitor = SpectralMonitor(every_n_steps=2, plot_every_n_epochs=1, plot_in_background=background)
    logger = TensorBoardLogger(str(tmp_path), name="tb")
    fit = trainer(tmp_path, [monitor], max_epochs=2, logger=logger)
    fit.fit(TinyIndexed(), indexed_loader(64, 16))
    records = read_records(monitor.spectral_dir / RECORDS_FILE)
    events = read_events(logger.log_dir)
    tags = events.Tags()
    assert PANELS_TAG in tags["images"]
    images = events.Images(PANELS_TAG)
    with Image.open(io.BytesIO(images[-1].encoded_image_string)) as panel:
        assert panel.size == (1500, 860)
    assert (images[-1].width, images[-1].height) == (1500, 860)
    # the scalars of every measurement, equal to the spectral log
    rankme = events.Scalars("spectral/rankme")
    assert len(rankme) == len(records) == 4
    assert rankme[-1].value == pytest.approx(records[-1]["scalars"]["rankme"], rel=1e-6)
    assert events.Scalars("spectral/lidar")[-1].value == pytest.approx(
        records[-1]["scalars"]["lidar"], rel=1e-6
    )
    assert {s.step for s in events.Scalars("spectral/rankme_repr")} == {4, 8}  # at the two epoch ends
    # the spectra as histograms: d = 8 eigenvalues of F per measurement, as log10
    for name in ("spectral/log10_eig_F", "spectral/eig_Wp", "spectral/alignment"):
        assert name in tags["histograms"]
    last = events.Histograms("spectral/log10_eig_F")[-1].histogram_value
    assert last.num == 8
    assert last.max == pytest.approx(math.log10(records[-1]["eig_F"][0]), rel=1e-5)


def test_csv_logger_keeps_the_files_and_gets_no_image(tmp_path):
    logger = CSVLogger(str(tmp_path), name="csv")
    assert log_image([logger], PANELS_TAG, np.zeros((3, 4, 3), dtype=np.uint8), step=1) == []


def test_lightning_default_logger_is_tensorboard_and_gets_the_panels(tmp_path):
    monitor = SpectralMonitor(every_n_steps=2, plot_every_n_epochs=1, plot_in_background=False)
    fit = trainer(tmp_path, [monitor], logger=True)
    fit.fit(TinyIndexed(), indexed_loader(64, 16))
    assert isinstance(fit.logger, TensorBoardLogger)
    assert PANELS_TAG in read_events(fit.logger.log_dir).Tags()["images"]


def test_wandb_offline_run_gets_panels_and_histograms(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from lightning.pytorch.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    logger = WandbLogger(save_dir=str(tmp_path), offline=True, project="spectral-test")
    monitor = SpectralMonitor(every_n_steps=2, plot_every_n_epochs=1, plot_in_background=False)
    fit = trainer(tmp_path, [monitor], logger=logger)
    fit.fit(TinyIndexed(), indexed_loader(64, 16))
    # the run's summary holds the last value logged under each key
    summary = logger.experiment.summary
    assert summary["spectral/rankme"] == pytest.approx(monitor.last_scalars["rankme"], rel=1e-6)
    assert summary["spectral/log10_eig_F"]["_type"] == "histogram"
    assert summary["spectral/panels"]["_type"] == "images/separated"
    logger.experiment.finish()
    (panel,) = tmp_path.rglob("files/media/images/spectral/panels_*.png")
    with Image.open(panel) as image:
        assert image.size == (1500, 860)
