"""The monitor when things go wrong: a diverged run, a collapse under the default alarm, a healthy run."""

from __future__ import annotations

import math
import re
import warnings

import pytest

pytest.importorskip("lightning")

from solo_directpred.spectral import CollapseWarning, SpectralMonitor  # noqa: E402
from solo_directpred.spectral.alarm import threshold  # noqa: E402

from .helpers import TinyIndexed, TinyWithPredictor, indexed_loader, loader, trainer  # noqa: E402


def test_a_diverged_run_trips_the_alarm_and_stops_with_stop_true(tmp_path):
    monitor = SpectralMonitor(every_n_steps=2, plot_every_n_epochs=0, stop_on_collapse=True)
    fit = trainer(tmp_path, [monitor], max_epochs=3)
    with pytest.warns(CollapseWarning) as caught:
        fit.fit(TinyIndexed(nonfinite=True), indexed_loader(64, 16))
    (message,) = [str(w.message) for w in caught if issubclass(w.category, CollapseWarning)]
    assert "at step 2 (epoch 0)" in message
    assert "spectral/nonfinite_rows = 64 of 64 buffered projections are NaN/inf: the run diverged" in message
    assert "Stopping the run" in message
    assert fit.global_step == 2 and fit.should_stop
    assert monitor.last_scalars["alarm"] == 1.0 and monitor.last_scalars["nonfinite_rows"] == 64.0


def test_the_alarm_is_on_by_default_and_names_metric_value_threshold_and_step(tmp_path):
    monitor = SpectralMonitor(every_n_steps=2, plot_every_n_epochs=0)
    assert (monitor.rankme_min, monitor.zstd_min, monitor.stop_on_collapse) == ("auto", "auto", False)
    fit = trainer(tmp_path, [monitor], max_epochs=2)
    with pytest.warns(CollapseWarning) as caught:
        fit.fit(TinyWithPredictor(collapse=True), loader())
    (message,) = [str(w.message) for w in caught if issubclass(w.category, CollapseWarning)]
    # d = 8: RankMe threshold max(1.5, 0.05·8) = 1.5, z-std threshold 0.15/√8 = 0.05303
    assert "at step 2 (epoch 0)" in message
    assert "spectral/rankme = 1 is below alarm.rankme_min = 1.5 (auto: max(1.5, 0.05·d), d = 8)" in message
    assert re.search(
        r"spectral/zstd = [-+.e0-9]+ is below alarm.zstd_min = 0.05303 \(auto: 0.15/√d, d = 8\)", message
    )
    assert "Training goes on" in message and fit.global_step == 8  # stopping stays opt-in


@pytest.mark.parametrize(
    ("dim", "rankme_min", "zstd_min"), [(8, 1.5, 0.15 / math.sqrt(8)), (128, 6.4, 0.013258)]
)
def test_auto_thresholds_scale_with_d(dim, rankme_min, zstd_min):
    assert threshold("rankme", "auto", dim) == pytest.approx(rankme_min)
    assert threshold("zstd", "auto", dim) == pytest.approx(zstd_min, rel=1e-4)
    # the collapsed CIFAR-10 run of docs/spectral.md (d = 128: RankMe 2.2, z-std 0.009) trips both
    if dim == 128:
        assert 2.2 < rankme_min and 0.009 < zstd_min
    assert threshold("zstd", None, dim) is None and threshold("rankme", 3.0, dim) == 3.0


def test_a_healthy_run_stays_silent_with_the_default_alarm(tmp_path):
    monitor = SpectralMonitor(every_n_steps=1, plot_every_n_epochs=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CollapseWarning)
        trainer(tmp_path, [monitor], max_epochs=2).fit(TinyIndexed(), indexed_loader(64, 16))
    assert monitor.num_alarms == 0 and monitor.last_scalars["alarm"] == 0.0
    assert monitor.last_scalars["rankme"] > 1.5 and monitor.last_scalars["zstd"] > 0.15 / math.sqrt(8)
