"""The spectral monitor inside solo-learn runs: on by default for the plugin's methods, switchable on for
upstream's byol and simsiam by a config key (their predictor is an MLP: embedding metrics only)."""

import pytest

from tests.conftest import requires_solo

pytestmark = [requires_solo, pytest.mark.solo]


@pytest.fixture
def restore_methods():
    from solo.methods import METHODS

    saved = dict(METHODS)
    yield
    METHODS.clear()
    METHODS.update(saved)


def _fit_and_read(model, tmp_path, steps=3):
    from solo_directpred.spectral.records import read_records
    from tests.sololearn.helpers import fit_tiny

    fit_tiny(model, steps=steps, default_root_dir=tmp_path)
    (jsonl,) = tmp_path.rglob("spectra.jsonl")
    return read_records(jsonl)


SPECTRAL = ["spectral.every_n_steps=1", "spectral.buffer_size=64", "spectral.plot_every_n_epochs=0"]


@pytest.mark.parametrize("method", ["byol", "simsiam"])
def test_upstream_method_is_monitored_when_switched_on(method, tmp_path, restore_methods):
    from solo.methods import METHODS

    from solo_directpred.sololearn.plugin import configure_job
    from tests.sololearn.helpers import compose_pretrain_cfg

    upstream = METHODS[method]
    cfg = compose_pretrain_cfg([f"method={method}", "+method_kwargs.pred_hidden_dim=128", *SPECTRAL])
    configure_job(cfg)
    assert METHODS[method] is not upstream and issubclass(METHODS[method], upstream)
    records = _fit_and_read(METHODS[method](cfg), tmp_path)
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(0 < r["scalars"]["rankme"] <= 64 and len(r["eig_F"]) == 64 for r in records)
    assert all("eig_Wp" not in r for r in records)  # MLP predictor: no predictor metrics


def test_upstream_method_untouched_without_the_key(restore_methods):
    from solo.methods import METHODS

    from solo_directpred.sololearn.plugin import configure_job
    from tests.sololearn.helpers import compose_pretrain_cfg

    upstream = METHODS["byol"]
    configure_job(
        compose_pretrain_cfg(["method=byol", "+method_kwargs.pred_hidden_dim=128", "spectral.enabled=false"])
    )
    assert METHODS["byol"] is upstream


def test_plugin_method_logs_predictor_spectra_by_default(tmp_path):
    from solo.methods import METHODS

    from tests.sololearn.helpers import compose_pretrain_cfg

    cfg = compose_pretrain_cfg(SPECTRAL)
    records = _fit_and_read(METHODS["directpred"](cfg), tmp_path)
    assert [r["step"] for r in records] == [1, 2, 3]
    # W_p = (F̂/s_max)^½ + εI: its largest eigenvalue is 1 + ε = 1.1, its smallest at least ε.
    for record in records:
        assert max(record["eig_Wp"]) == pytest.approx(1.1, abs=1e-4)
        assert min(record["eig_Wp"]) >= 0.1 - 1e-4
