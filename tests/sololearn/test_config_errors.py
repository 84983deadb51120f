"""Every invalid method setting fails when the method is built — before any data loader exists —
with a message naming the key, the value and what is allowed."""

import pytest

from tests.conftest import requires_solo

pytestmark = [requires_solo, pytest.mark.solo]

CASES = [
    (
        "directpred",
        "method_kwargs.rho=1.5",
        "method_kwargs.rho=1.5 is invalid: the weight on the old correlation estimate must be in [0, 1)",
    ),
    ("directpred", "method_kwargs.rho=-0.1", "method_kwargs.rho=-0.1 is invalid"),
    ("directpred", "method_kwargs.eps=-0.01", "method_kwargs.eps=-0.01 is invalid: must be a number >= 0"),
    ("directpred", "method_kwargs.freq=0", "method_kwargs.freq=0 is invalid: must be an integer >= 1"),
    ("directpred", "method_kwargs.freq=2.5", "method_kwargs.freq=2.5 is invalid"),
    (
        "directpred",
        "method_kwargs.predictor=mlp",
        "method_kwargs.predictor='mlp' is invalid: must be one of ('directpred', 'directcopy', 'directset', 'linear', 'none')",
    ),
    (
        "directpred",
        "+method_kwargs.pred_hidden_dim=4096",
        "method_kwargs.pred_hidden_dim=4096 is invalid: the 'directpred' predictor is linear (proj_output_dim x proj_output_dim = 64x64)",
    ),
    (
        "directpred",
        "method_kwargs.proj_output_dim=0",
        "method_kwargs.proj_output_dim=0 is invalid: must be a positive integer",
    ),
    (
        "directpred",
        "method_kwargs.alpha=1.0",
        "method_kwargs.alpha=1.0 is invalid: the 'directpred' predictor has alpha=0.5",
    ),
    (
        "directpred",
        "method_kwargs.solver=svd",
        "method_kwargs.solver='svd' is invalid: must be one of ('eigh', 'newton_schulz', 'power', 'auto')",
    ),
    (
        "directpred",
        "method_kwargs.solver=power",
        "method_kwargs.solver='power' is invalid: 'power' needs alpha=1",
    ),
    (
        "directcopy",
        "method_kwargs.solver=newton_schulz",
        "method_kwargs.solver='newton_schulz' is invalid: 'newton_schulz' needs alpha=0.5",
    ),
    (
        "directpred",
        "method_kwargs.eigh_dtype=float16",
        "method_kwargs.eigh_dtype='float16' is invalid: must be 'float32' or 'float64'",
    ),
    (
        "directpred",
        "method_kwargs.offset=0.1,method_kwargs.predictor=directset,method_kwargs.alpha=1.0",
        "method_kwargs.offset=0.1 is invalid: must be null or a number, and needs alpha=0.5",
    ),
    (
        "linear_pred",
        "method_kwargs.lr_multiplier=0",
        "method_kwargs.lr_multiplier=0 is invalid: the predictor's relative learning rate alpha_p must be > 0",
    ),
    (
        "linear_pred_noema",
        "method_kwargs.symmetric=maybe",
        "method_kwargs.symmetric='maybe' is invalid: must be true or false",
    ),
    ("linear_pred", "method_kwargs.weight_decay=-1", "method_kwargs.weight_decay=-1 is invalid"),
    (
        "directcopy",
        "+method_kwargs.solverr=eigh",
        "method_kwargs.solverr='eigh' is invalid: not a key of method_kwargs; the keys are "
        "proj_hidden_dim, proj_output_dim, predictor, loss, alpha, eps, rho, solver, freq,",
    ),
    (
        "directpred",
        "spectral.enabled=sometimes",
        "spectral.enabled='sometimes' is invalid: must be true or false",
    ),
]


@pytest.mark.parametrize(("method", "override", "message"), CASES, ids=[c[1] for c in CASES])
def test_invalid_setting_is_reported_with_key_value_and_allowed(method, override, message):
    from solo.methods import METHODS

    from solo_directpred.sololearn.methods import ConfigError
    from tests.sololearn.helpers import compose_pretrain_cfg

    cfg = compose_pretrain_cfg([f"method={method}", *override.split(",")])
    with pytest.raises(ConfigError) as info:
        METHODS[method](cfg)
    assert message in str(info.value)


def test_eval_crop_size_is_validated():
    from omegaconf import OmegaConf

    from solo_directpred.sololearn.transforms import configure_eval_transforms

    with pytest.raises(ValueError, match=r"data.eval_crop_size=0 is invalid: must be a positive integer"):
        configure_eval_transforms(OmegaConf.create({"data": {"eval_crop_size": 0}}))
    with pytest.raises(ValueError, match=r"data.eval_mean=\[0.5\] is invalid: must be a list of 3 numbers"):
        configure_eval_transforms(OmegaConf.create({"data": {"eval_crop_size": 8, "eval_mean": [0.5]}}))
