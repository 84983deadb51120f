"""SpectralMonitor on a tiny LightningModule: cadence, logging, checkpoints, plots and the collapse alarm."""

from __future__ import annotations

import csv
import math
import re
import warnings

import pytest
import torch

pytest.importorskip("lightning")

from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402

from solo_directpred.core.schema import ConfigError  # noqa: E402
from solo_directpred.spectral import CollapseWarning, SpectralMonitor  # noqa: E402
from solo_directpred.spectral.records import PLOT_FILE, RECORDS_FILE, read_meta, read_records  # noqa: E402

from .helpers import TinySSL, TinyWithPredictor, loader, trainer  # noqa: E402


def csv_rows(tmp_path) -> list[dict]:
    (path,) = tmp_path.glob("run/version_*/metrics.csv")
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_measures_every_n_steps_and_logs_to_the_run_logger(tmp_path):
    monitor = SpectralMonitor(every_n_steps=3, buffer_size=1000, plot_every_n_epochs=0)
    fit = trainer(tmp_path, [monitor], max_epochs=2)  # 4 batches per epoch: global steps 1..8
    fit.fit(TinyWithPredictor(), loader())
    records = read_records(monitor.spectral_dir / RECORDS_FILE)
    assert [r["step"] for r in records] == [3, 6]
    assert monitor.spectral_dir == tmp_path / "run" / "version_0" / "spectral"
    # views pooled: 16 samples × 2 views per step, all kept (buffer 1000)
    assert [r["scalars"]["num_samples"] for r in records] == [96.0, 192.0]
    logged = [row for row in csv_rows(tmp_path) if row.get("spectral/rankme")]
    assert len(logged) == 2
    assert float(logged[-1]["spectral/rankme"]) == pytest.approx(records[-1]["scalars"]["rankme"], rel=1e-6)
    assert float(logged[-1]["spectral/commutator"]) == pytest.approx(
        records[-1]["scalars"]["commutator"], rel=1e-6
    )
    assert fit.callback_metrics["spectral/rankme"].item() == pytest.approx(records[-1]["scalars"]["rankme"])
    assert len(records[-1]["eig_F"]) == len(records[-1]["eig_Wp"]) == len(records[-1]["alignment"]) == 8
    assert records[-1]["eig_F"] == sorted(records[-1]["eig_F"], reverse=True)


def test_cadence_counts_optimizer_steps_under_gradient_accumulation(tmp_path):
    monitor = SpectralMonitor(every_n_steps=2, buffer_size=20, plot_every_n_epochs=0)
    trainer(tmp_path, [monitor], accumulate_grad_batches=2).fit(TinyWithPredictor(), loader(128))
    records = read_records(monitor.spectral_dir / RECORDS_FILE)
    # 8 batches → 4 optimizer steps → measured at steps 2 and 4, once each; the buffer keeps the last 20 rows
    assert [r["step"] for r in records] == [2, 4]
    assert all(r["scalars"]["num_samples"] == 20 for r in records)


def test_single_tensor_output_and_no_predictor(tmp_path):
    monitor = SpectralMonitor(every_n_steps=2, plot_every_n_epochs=0)
    trainer(tmp_path, [monitor]).fit(TinySSL(output="tensor"), loader())
    records = read_records(monitor.spectral_dir / RECORDS_FILE)
    assert [r["step"] for r in records] == [2, 4]
    assert "eig_Wp" not in records[0] and "commutator" not in records[0]["scalars"]
    assert records[-1]["scalars"]["num_samples"] == 128  # (2 views, 16, d) stacked → 32 rows a step


def test_predictor_returning_none_skips_predictor_metrics(tmp_path):
    monitor = SpectralMonitor(every_n_steps=4, plot_every_n_epochs=0)
    trainer(tmp_path, [monitor]).fit(TinyWithPredictor(with_predictor="none"), loader())
    (record,) = read_records(monitor.spectral_dir / RECORDS_FILE)
    assert "alignment" not in record and "asymmetry" not in record["scalars"]
    assert record["scalars"]["rankme"] > 1.0


def test_missing_z_warns_once_and_measures_nothing(tmp_path):
    monitor = SpectralMonitor(every_n_steps=1, plot_every_n_epochs=0)
    with pytest.warns(UserWarning, match="training_step output has no key 'z'") as caught:
        trainer(tmp_path, [monitor]).fit(TinySSL(output="loss"), loader())
    assert sum("no key 'z'" in str(w.message) for w in caught) == 1
    assert not (monitor.spectral_dir / RECORDS_FILE).exists()


@pytest.mark.slow
def test_plots_are_written_each_epoch_and_readable(tmp_path):
    from PIL import Image

    monitor = SpectralMonitor(
        every_n_steps=2, plot_every_n_epochs=1, plot_in_background=False, rankme_min=1.5, zstd_min=0.01
    )
    trainer(tmp_path, [monitor], max_epochs=2).fit(TinyWithPredictor(), loader())
    path = monitor.spectral_dir / PLOT_FILE
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (1500, 860)
        pixels = torch.tensor(list(image.convert("L").getdata()), dtype=torch.float32)
    assert pixels.std() > 20  # not a blank canvas
    assert read_meta(monitor.spectral_dir)["rankme_min"] == 1.5


@pytest.mark.parametrize(("interval", "expected_epochs"), [(0.0, [0, 1, 2]), (1e6, [0, "end"])])
def test_epoch_end_redraws_respect_the_minimum_interval(tmp_path, monkeypatch, interval, expected_epochs):
    from solo_directpred.spectral import plots

    drawn = []
    monkeypatch.setattr(plots, "plot_spectral_dir", lambda directory: drawn.append(fit.current_epoch))
    monitor = SpectralMonitor(
        every_n_steps=1, plot_every_n_epochs=1, plot_in_background=False, min_plot_interval_s=interval
    )
    fit = trainer(tmp_path, [monitor], max_epochs=3)
    fit.fit(TinySSL(), loader())
    # epoch ends 0, 1, 2; with a long interval only the first, then the final redraw (epoch counter at 3)
    assert drawn == [3 if e == "end" else e for e in expected_epochs]


@pytest.mark.slow
def test_background_plot_is_finished_when_fit_returns(tmp_path):
    from PIL import Image

    monitor = SpectralMonitor(every_n_steps=2, plot_every_n_epochs=1, plot_in_background=True)
    trainer(tmp_path, [monitor]).fit(TinySSL(), loader())
    with Image.open(monitor.spectral_dir / PLOT_FILE) as image:
        assert image.size == (1500, 860)


def test_checkpoint_round_trip_and_resume(tmp_path):
    monitor = SpectralMonitor(every_n_steps=2, plot_every_n_epochs=0, rankme_min=100.0)
    checkpoint = ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), save_last=True)
    with pytest.warns(CollapseWarning):
        trainer(tmp_path, [monitor, checkpoint], enable_checkpointing=True).fit(TinyWithPredictor(), loader())
    state = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["callbacks"][monitor.state_key]
    assert state["last_step"] == 4 and state["alarm_active"] is True and state["num_alarms"] == 1
    assert state["last_scalars"]["rankme"] == pytest.approx(monitor.last_scalars["rankme"])
    assert monitor.state_key == "SpectralMonitor{'every_n_steps': 2, 'output_key': 'z'}"

    resumed = SpectralMonitor(
        every_n_steps=2, plot_every_n_epochs=0, rankme_min=100.0, dirpath=monitor.spectral_dir
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", CollapseWarning)  # the alarm already fired before the checkpoint
        trainer(tmp_path, [resumed], max_epochs=2).fit(
            TinyWithPredictor(), loader(), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt")
        )
    assert resumed.num_alarms == 1 and resumed.last_step == 8
    assert [r["step"] for r in read_records(monitor.spectral_dir / RECORDS_FILE)] == [2, 4, 6, 8]

    copy = SpectralMonitor(every_n_steps=2)
    copy.load_state_dict(resumed.state_dict())
    assert copy.state_dict() == resumed.state_dict()


def test_alarm_warns_with_metric_value_and_step_and_can_stop(tmp_path):
    monitor = SpectralMonitor(
        every_n_steps=2, plot_every_n_epochs=0, rankme_min=1.5, zstd_min=0.01, stop_on_collapse=True
    )
    fit = trainer(tmp_path, [monitor], max_epochs=5)
    with pytest.warns(CollapseWarning) as caught:
        fit.fit(TinyWithPredictor(collapse=True), loader())
    (alarm,) = [w for w in caught if issubclass(w.category, CollapseWarning)]
    message = str(alarm.message)
    assert "at step 2 (epoch 0)" in message
    assert "spectral/rankme = 1 is below alarm.rankme_min = 1.5" in message
    assert re.search(r"spectral/zstd = [-+.e0-9]+ is below alarm.zstd_min = 0.01", message)
    assert monitor.last_scalars["zstd"] < 1e-6
    assert "Stopping the run" in message
    assert fit.global_step == 2 and fit.should_stop
    assert monitor.last_scalars["alarm"] == 1.0


def test_alarm_without_stop_warns_once_per_collapse_and_training_goes_on(tmp_path):
    monitor = SpectralMonitor(every_n_steps=1, plot_every_n_epochs=0, rankme_min=1.5)
    fit = trainer(tmp_path, [monitor])
    with pytest.warns(CollapseWarning, match="Training goes on") as caught:
        fit.fit(TinyWithPredictor(collapse=True), loader())
    assert sum(issubclass(w.category, CollapseWarning) for w in caught) == 1
    assert fit.global_step == 4 and monitor.num_alarms == 1
    logged = [float(r["spectral/alarm"]) for r in csv_rows(tmp_path) if r.get("spectral/alarm")]
    assert logged == [1.0, 1.0, 1.0, 1.0]


def test_healthy_run_raises_no_alarm(tmp_path):
    monitor = SpectralMonitor(every_n_steps=2, plot_every_n_epochs=0, rankme_min=2.0, zstd_min=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CollapseWarning)
        trainer(tmp_path, [monitor]).fit(TinyWithPredictor(), loader())
    assert monitor.last_scalars["alarm"] == 0.0 and monitor.last_scalars["rankme"] > 2.0


def test_nonfinite_rows_are_dropped_and_counted(tmp_path):
    class HalfNaN(TinyWithPredictor):
        def training_step(self, batch, batch_idx):
            out = super().training_step(batch, batch_idx)
            z1 = out["z"][0].detach().clone()
            z1[:4] = math.nan
            return {"loss": out["loss"], "z": [z1, out["z"][1]]}

    monitor = SpectralMonitor(every_n_steps=4, buffer_size=1000, plot_every_n_epochs=0)
    trainer(tmp_path, [monitor]).fit(HalfNaN(), loader())
    (record,) = read_records(monitor.spectral_dir / RECORDS_FILE)
    assert record["scalars"]["nonfinite_rows"] == 16 and record["scalars"]["num_samples"] == 112
    assert math.isfinite(record["scalars"]["rankme"])


# ---------------------------------------------------------------- construction from a config


def test_from_config_reads_a_solo_learn_style_section():
    omegaconf = pytest.importorskip("omegaconf")
    cfg = omegaconf.OmegaConf.create(
        {
            "spectral": {
                "enabled": True,
                "every_n_steps": 50,
                "buffer_size": 4096,
                "plot_every_n_epochs": 5,
                "alarm": {"rankme_min": 8, "zstd_min": 0.01, "stop": True},
            }
        }
    )
    monitor = SpectralMonitor.from_config(cfg.spectral)
    assert (monitor.every_n_steps, monitor.buffer_size, monitor.plot_every_n_epochs) == (50, 4096, 5)
    assert (monitor.rankme_min, monitor.zstd_min, monitor.stop_on_collapse) == (8.0, 0.01, True)
    defaults = SpectralMonitor.from_config({})
    assert (defaults.every_n_steps, defaults.buffer_size) == (100, 2048)
    assert (defaults.rankme_min, defaults.zstd_min, defaults.stop_on_collapse) == ("auto", "auto", False)
    assert (defaults.lidar, defaults.rankme_samples, defaults.select_by) == (True, 25_600, None)
    assert SpectralMonitor.from_config({"enabled": False}) is None


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"every_n_steps": 0}, "spectral.every_n_steps=0 is invalid: must be an integer >= 1"),
        (
            {"min_plot_interval_s": -5},
            "spectral.min_plot_interval_s=-5 is invalid: must be a number of seconds >= 0",
        ),
        ({"every_n_steps": 2.5}, "spectral.every_n_steps=2.5 is invalid: must be an integer >= 1"),
        ({"buffer_size": 1}, "spectral.buffer_size=1 is invalid: must be an integer >= 2"),
        ({"plot_every_n_epochs": -1}, "spectral.plot_every_n_epochs=-1 is invalid: must be an integer >= 0"),
        ({"enabled": "yes"}, "spectral.enabled='yes' is invalid: must be true or false"),
        (
            {"alarm": {"rankme_min": -1}},
            "spectral.alarm.rankme_min=-1 is invalid: must be 'auto', a number >= 0, or null to disable",
        ),
        ({"alarm": {"stop": 1}}, "spectral.alarm.stop=1 is invalid: must be true or false"),
        ({"alarm": 3}, "spectral.alarm=3 is invalid: must be a mapping with keys rankme_min, zstd_min, stop"),
        (
            {"alarm": {"rank_min": 2}},
            "spectral.alarm.rank_min=2 is invalid: not a key of spectral.alarm; "
            "the keys are rankme_min, zstd_min",
        ),
        (
            {"evry_n_steps": 5},
            "spectral.evry_n_steps=5 is invalid: not a key of spectral; the keys are enabled, every_n_steps",
        ),
    ],
)
def test_from_config_errors_name_key_value_and_allowed(section, message):
    with pytest.raises(ConfigError) as info:
        SpectralMonitor.from_config(section)
    assert str(info.value).startswith(message)


def test_constructor_validates_arguments():
    with pytest.raises(ConfigError, match=r"^every_n_steps=0 is invalid: must be an integer >= 1$"):
        SpectralMonitor(every_n_steps=0)
    with pytest.raises(ConfigError, match=r"^alarm.zstd_min=nan is invalid: must be 'auto', a number >= 0"):
        SpectralMonitor(zstd_min=float("nan"))
