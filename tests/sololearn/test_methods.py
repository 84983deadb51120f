"""Every cell of the paper's grid trains through solo-learn: analytic/linear predictors × EMA/no EMA."""

import pytest
import torch

from tests.conftest import requires_solo

pytestmark = [requires_solo, pytest.mark.solo]

GRID = [
    ("directpred", "directpred", []),
    ("directcopy", "directcopy", []),
    ("directpred", "directset", ["method_kwargs.predictor=directset", "method_kwargs.alpha=0.25"]),
    ("linear_pred", "linear", []),
    ("linear_pred", "linear", ["method_kwargs.symmetric=true"]),
    ("directpred_noema", "directpred", []),
    ("directcopy_noema", "directcopy", []),
    ("linear_pred_noema", "linear", []),
    ("linear_pred_noema", "linear", ["method_kwargs.symmetric=true", "method_kwargs.lr_multiplier=10.0"]),
]


@pytest.mark.parametrize(
    ("method", "kind", "extra"), GRID, ids=lambda v: v if isinstance(v, str) else "-".join(v)
)
def test_grid_cell_trains(method, kind, extra):
    from solo.methods import METHODS

    from solo_directpred.core import AnalyticPredictor, LinearPredictor
    from tests.sololearn.helpers import compose_pretrain_cfg, fit_tiny

    cfg = compose_pretrain_cfg([f"method={method}", "spectral.enabled=false", *extra])
    model = METHODS[method](cfg)
    assert model.backbone is not None and hasattr(model, "backbone")
    assert hasattr(model, "momentum_backbone") == (not method.endswith("_noema"))
    assert cfg.method_kwargs.predictor == kind
    groups = {g["name"]: g for g in model.learnable_params}
    trainer = fit_tiny(model, steps=3)
    assert trainer.global_step == 3
    predictor = model.predictor
    if kind == "linear":
        assert isinstance(predictor, LinearPredictor)
        assert groups["predictor"]["lr"] == pytest.approx(model.lr * cfg.method_kwargs.lr_multiplier)
        w = predictor.weight.detach()
        assert torch.allclose(w, w.T) == cfg.method_kwargs.symmetric
    else:
        assert isinstance(predictor, AnalyticPredictor)
        assert "predictor" not in groups  # W_p is set, never trained
        assert int(predictor.step) == 3 and int(predictor.num_weight_updates) == 3
        assert predictor.alpha == {"directpred": 0.5, "directcopy": 1.0, "directset": 0.25}[kind]
        w = predictor.weight
        assert torch.allclose(w, w.T, atol=1e-6) and not torch.allclose(w, torch.eye(w.shape[0]))
        assert int(predictor.stats.num_updates) == 3


def test_statistics_are_not_touched_by_validation_or_forward():
    from solo.methods import METHODS

    from tests.sololearn.helpers import compose_pretrain_cfg

    cfg = compose_pretrain_cfg(["spectral.enabled=false"])
    model = METHODS["directpred"](cfg)
    model.eval()
    with torch.no_grad():
        model(torch.randn(4, 3, 16, 16))
    assert int(model.predictor.step) == 0 and int(model.predictor.stats.num_updates) == 0
    torch.testing.assert_close(model.predictor.weight, torch.eye(cfg.method_kwargs.proj_output_dim))


@pytest.mark.parametrize("method", ["directpred", "linear_pred_noema"])
def test_none_predictor_is_the_identity_and_has_nothing_to_train(method):
    """``predictor=none``: W_p = I exactly after training, no predictor parameter, no predictor state."""
    from solo.methods import METHODS

    from solo_directpred.core import IdentityPredictor
    from tests.sololearn.helpers import compose_pretrain_cfg, fit_tiny

    cfg = compose_pretrain_cfg([f"method={method}", "method_kwargs.predictor=none"])
    model = METHODS[method](cfg)
    assert isinstance(model.predictor, IdentityPredictor) and cfg.method_kwargs.predictor == "none"
    assert "predictor" not in {g["name"] for g in model.learnable_params}
    z = torch.randn(4, model.predictor.dim)
    assert torch.equal(model.predictor(z), z)
    assert fit_tiny(model, steps=2).global_step == 2
    assert torch.equal(model.linear_predictor_weight(), torch.eye(model.predictor.dim))
    assert not any(key.startswith("predictor.") for key in model.state_dict())


def test_none_predictor_refuses_isoloss():
    from solo.methods import METHODS

    from solo_directpred.sololearn.methods import ConfigError
    from tests.sololearn.helpers import compose_pretrain_cfg

    cfg = compose_pretrain_cfg(["method_kwargs.predictor=none", "method_kwargs.loss=isoloss"])
    with pytest.raises(ConfigError, match=r"method_kwargs.loss='isoloss' is invalid: .*got predictor=none"):
        METHODS["directpred"](cfg)
