"""``method_kwargs.loss`` in the plugin's methods (docs/losses.md): each loss is the one optimised, is refused
where undefined, and leaves the spectral monitor, the collapse alarm, DDP statistics and resume unchanged."""

import warnings
from pathlib import Path

import pytest
import torch

from solo_directpred.core.losses import LOSSES, symmetric_prediction_loss
from tests.conftest import requires_solo
from tests.sololearn.helpers import run_ddp_driver

pytestmark = [requires_solo, pytest.mark.solo]

METHODS_WITH_ANALYTIC_PREDICTOR = ["directpred", "directcopy", "directpred_noema", "directcopy_noema"]


def _cfg(*overrides: str):
    from tests.sololearn.helpers import compose_pretrain_cfg

    return compose_pretrain_cfg(list(overrides))


def _model(method: str, loss: str, *overrides: str):
    from solo.methods import METHODS

    torch.manual_seed(0)
    cfg = _cfg(f"method={method}", f"method_kwargs.loss={loss}", *overrides)
    return METHODS[method](cfg)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("method", METHODS_WITH_ANALYTIC_PREDICTOR)
def test_the_configured_loss_is_the_one_optimised(method, loss):
    """The step's loss is the chosen one on (z, z W_p, targets); then the statistics are updated."""
    model = _model(method, loss, "spectral.enabled=false")
    assert model.loss_kind == loss
    d = model.predictor.dim
    g = torch.Generator().manual_seed(1)
    model.predictor.update(torch.randn(32, d, generator=g) * torch.linspace(2.0, 0.1, d))
    Wp = model.predictor.weight.clone()
    Z = [torch.randn(8, d, generator=g, requires_grad=True) for _ in range(2)]
    P = [model.predictor(z) for z in Z]
    targets = [torch.randn(8, d, generator=g) for _ in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log outside a Trainer
        got = model._predictor_step({"z": Z, "p": P}, targets)
    expected = symmetric_prediction_loss([z @ Wp for z in Z], targets, loss, Z)
    torch.testing.assert_close(got, expected)
    (grad,) = torch.autograd.grad(got, Z[0])
    (grad_expected,) = torch.autograd.grad(expected, Z[0])
    torch.testing.assert_close(grad, grad_expected)
    # This micro-batch's statistics came after the loss and wait for the optimizer step.
    assert int(model.predictor.step) == 1 and torch.equal(model.predictor.weight, Wp)
    model.predictor.finish_step()
    assert int(model.predictor.step) == 2 and not torch.equal(model.predictor.weight, Wp)


@pytest.mark.parametrize("loss", ["isoloss", "euclidean"])
def test_a_short_run_trains_and_logs_the_cosine_loss_beside_it(loss, tmp_path):
    from tests.sololearn.helpers import fit_tiny

    model = _model("directpred_noema", loss, "spectral.enabled=false")
    trainer = fit_tiny(model, steps=3, default_root_dir=tmp_path)
    assert trainer.global_step == 3 and int(model.predictor.num_weight_updates) == 3
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train_loss_epoch"]) and "train_neg_cos_sim_epoch" in metrics
    assert 0.0 <= float(metrics["train_neg_cos_sim_epoch"]) <= 8.0  # two pairs of 2 − 2 cos ∈ [0, 4]


def test_linear_predictor_trains_with_the_euclidean_loss():
    from tests.sololearn.helpers import fit_tiny

    model = _model("linear_pred", "euclidean", "spectral.enabled=false")
    assert fit_tiny(model, steps=2).global_step == 2


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (
            ["method_kwargs.loss=mse"],
            ["method_kwargs.loss='mse'", "('cosine', 'euclidean', 'isoloss', 'isoloss_euclidean')"],
        ),
        (
            ["method=linear_pred", "method_kwargs.loss=isoloss"],
            ["method_kwargs.loss='isoloss'", "got predictor=linear)", "use loss='cosine' or 'euclidean'"],
        ),
        (
            ["method_kwargs.loss=isoloss_euclidean", "method_kwargs.trainable=true"],
            ["method_kwargs.loss='isoloss_euclidean'", "predictor=directpred, trainable=true"],
        ),
    ],
)
def test_invalid_loss_settings_name_key_value_and_allowed(overrides, fragments):
    from solo.methods import METHODS

    from solo_directpred.sololearn.methods import ConfigError

    cfg = _cfg(*overrides)
    with pytest.raises(ConfigError) as err:
        METHODS[cfg.method].add_and_assert_specific_cfg(cfg)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_default_loss_is_cosine():
    from solo.methods import METHODS

    cfg = _cfg("method=directpred_noema")
    assert METHODS[cfg.method].add_and_assert_specific_cfg(cfg).method_kwargs.loss == "cosine"


@pytest.mark.parametrize("loss", ["isoloss", "isoloss_euclidean", "euclidean"])
def test_spectral_monitor_and_collapse_alarm_work_unchanged(loss, tmp_path):
    """Records every step with W_p's spectrum (eps = 0: its top eigenvalue is exactly 1); an alarm fires."""
    from solo_directpred.spectral import CollapseWarning, SpectralMonitor
    from solo_directpred.spectral.records import read_records
    from tests.sololearn.helpers import fit_tiny

    model = _model(
        "directpred",
        loss,
        "method_kwargs.eps=0.0",
        "spectral.every_n_steps=1",
        "spectral.buffer_size=64",
        "spectral.plot_every_n_epochs=0",
        "spectral.alarm.zstd_min=0.9",  # healthy z-std ≈ 1/√64: this threshold must fire
    )
    with pytest.warns(CollapseWarning, match=r"spectral/zstd = [-+.e0-9]+ is below alarm.zstd_min = 0.9"):
        trainer = fit_tiny(model, steps=3, default_root_dir=tmp_path)
    (monitor,) = [c for c in trainer.callbacks if isinstance(c, SpectralMonitor)]
    assert monitor.num_alarms == 1 and monitor.last_scalars["alarm"] == 1.0
    (jsonl,) = tmp_path.rglob("spectra.jsonl")
    records = read_records(jsonl)
    assert [r["step"] for r in records] == [1, 2, 3]
    for record in records:
        assert max(record["eig_Wp"]) == pytest.approx(1.0, abs=1e-4)
        assert 0 < record["scalars"]["rankme"] <= 64


def _fit(model, root: Path, stop_after_epoch: int | None = None, ckpt_path: str | None = None):
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint

    from tests.sololearn.helpers import random_loader

    class StopAfter(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module) -> None:
            if stop_after_epoch is not None and trainer.current_epoch + 1 >= stop_after_epoch:
                trainer.should_stop = True

    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=2,
        limit_train_batches=2,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        callbacks=[ModelCheckpoint(dirpath=str(root / "ckpt"), save_last=True), StopAfter()],
    )
    trainer.fit(model, train_dataloaders=random_loader(n=16), ckpt_path=ckpt_path)
    return trainer


@pytest.mark.parametrize("loss", ["isoloss", "isoloss_euclidean"])
def test_resume_continues_exactly_as_an_uninterrupted_run(loss, tmp_path):
    overrides = ("spectral.every_n_steps=1", "spectral.buffer_size=32", "spectral.plot_every_n_epochs=0")
    straight = _model("directpred", loss, *overrides)
    _fit(straight, tmp_path / "straight")
    first = _model("directpred", loss, *overrides)
    assert _fit(first, tmp_path / "first", stop_after_epoch=1).global_step == 2
    ckpt = tmp_path / "first" / "ckpt" / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["state_dict"]["predictor.step"] == 2
    resumed = _model("directpred", loss, *overrides)
    trainer = _fit(resumed, tmp_path / "resumed", ckpt_path=str(ckpt))
    assert trainer.global_step == 4 and int(resumed.predictor.step) == 4
    for key, value in straight.predictor.state_dict().items():
        torch.testing.assert_close(resumed.predictor.state_dict()[key], value, msg=key)
    torch.testing.assert_close(resumed.projector[-1].weight, straight.projector[-1].weight)


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["isoloss", "euclidean"])
def test_ddp_ranks_hold_identical_statistics_under_the_loss(loss, tmp_path):
    ranks = run_ddp_driver("ddp_driver.py", tmp_path, "directpred_noema", f"method_kwargs.loss={loss}")
    assert not torch.equal(ranks[0].pop("batch_rows"), ranks[1].pop("batch_rows"))
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), key
    assert int(ranks[0]["step"]) == 3 and int(ranks[0]["num_weight_updates"]) == 3
