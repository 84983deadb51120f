import io

import numpy as np
import pytest
import torch

from solo_directpred.core import AnalyticPredictor, LinearPredictor, analytic_weight, directcopy
from solo_directpred.core.schema import AnalyticSettings, ConfigError


def _features(n: int = 64, d: int = 8, seed: int = 0, decay: float = 3.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    scales = torch.logspace(0, -decay, d)
    return torch.randn(n, d, generator=g) * scales


def _reference(f: np.ndarray, alpha: float, eps: float) -> np.ndarray:
    """Independent NumPy computation of U diag((s/s_max)^α + ε) Uᵀ."""
    s, u = np.linalg.eigh(f.astype(np.float64))
    s = np.clip(s, 0, None)
    p = np.maximum((s / s.max()) ** alpha + eps, 1e-4)
    return u @ np.diag(p) @ u.T


@pytest.mark.parametrize(("alpha", "eps"), [(0.5, 0.1), (0.5, 0.0), (1.0, 0.3), (0.25, 0.01)])
def test_weight_matches_independent_eigendecomposition(alpha, eps):
    z = _features()
    predictor = AnalyticPredictor(8, alpha=alpha, eps=eps)
    predictor.update(z)
    expected = _reference((z.T @ z / len(z)).numpy(), alpha, eps)
    np.testing.assert_allclose(predictor.weight.numpy(), expected, atol=2e-5)


def test_identity_before_statistics_and_prediction_uses_previous_weight():
    z = _features()
    predictor = AnalyticPredictor(8)
    torch.testing.assert_close(predictor.weight, torch.eye(8))
    torch.testing.assert_close(predictor(z), z)  # W_p = I before any statistics
    predictor.update(z)
    expected = torch.from_numpy(_reference((z.T @ z / 64).numpy(), 0.5, 0.1)).float()
    torch.testing.assert_close(predictor(z), z @ expected, atol=1e-5, rtol=1e-5)


def test_update_cadence_every_freq_steps():
    predictor = AnalyticPredictor(8, freq=3)
    recomputed = [predictor.update(_features(seed=i)) for i in range(8)]
    assert recomputed == [True, False, False, True, False, False, True, False]
    assert int(predictor.num_weight_updates) == 3 and int(predictor.step) == 8
    # The weight at step 6 was computed from the EMA of batches 0..6, not only batch 6.
    stats = [_features(seed=i) for i in range(7)]
    f = stats[0].T @ stats[0] / 64
    for z in stats[1:]:
        f = 0.3 * f + 0.7 * (z.T @ z / 64)
    np.testing.assert_allclose(predictor.weight.numpy(), _reference(f.numpy(), 0.5, 0.1), atol=2e-5)


def test_rotation_equivariance():
    z = _features(seed=1, decay=2.0)
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=torch.Generator().manual_seed(2)))
    base, rotated = AnalyticPredictor(8), AnalyticPredictor(8)
    base.update(z)
    rotated.update(z @ q.T)  # F → Q F Qᵀ
    torch.testing.assert_close(rotated.weight, q @ base.weight @ q.T, atol=1e-5, rtol=1e-5)


def test_directcopy_power_path_equals_eigendecomposition_form():
    z = _features(n=200, d=16, decay=1.0)
    fast = AnalyticPredictor(16, alpha=1.0, eps=0.3, solver="power", power_iters=200)
    exact = AnalyticPredictor(16, alpha=1.0, eps=0.3, solver="eigh")
    fast.update(z)
    exact.update(z)
    torch.testing.assert_close(fast.weight, exact.weight, atol=1e-5, rtol=1e-5)
    f = z.T @ z / 200
    torch.testing.assert_close(directcopy(f, eps=0.3), exact.weight, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_newton_schulz_path_within_stated_tolerance(dtype):
    # README promise: max |eigenvalue error| of W_p ≤ 5e-3 against eigh (float32 statistics, 24 iterations).
    for seed, n in ((0, 512), (1, 24)):  # full rank and rank-deficient F̂
        z = _features(n=n, d=64, seed=seed, decay=4.0)
        ns = AnalyticPredictor(64, solver="newton_schulz", eigh_dtype=dtype)
        ns.update(z)
        ref = analytic_weight(z.T @ z / n, dtype=torch.float64)
        err = (torch.linalg.eigvalsh(ns.weight.double()) - torch.linalg.eigvalsh(ref)).abs().max()
        assert err < 5e-3
        assert (ns.weight.double() - ref).norm() / ref.norm() < 5e-3


def test_auto_solver_picks_a_measured_path_and_gives_the_same_weight():
    AnalyticPredictor._auto_choice.clear()
    z = _features(n=256, d=32, decay=1.0)
    auto, exact = AnalyticPredictor(32, solver="auto"), AnalyticPredictor(32)
    auto.update(z)
    exact.update(z)
    assert set(AnalyticPredictor._auto_choice.values()) <= {"eigh", "newton_schulz"}
    assert len(AnalyticPredictor._auto_choice) == 1
    torch.testing.assert_close(auto.weight, exact.weight, atol=5e-3, rtol=5e-3)


def test_bf16_autocast_input():
    z = _features()
    predictor = AnalyticPredictor(8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        predictor.update(z.to(torch.bfloat16))
        out = predictor(z.to(torch.bfloat16))
    assert predictor.weight.dtype == torch.float32 and torch.isfinite(predictor.weight).all()
    assert out.dtype == torch.bfloat16
    zb = z.to(torch.bfloat16).float()
    np.testing.assert_allclose(
        predictor.weight.numpy(), _reference((zb.T @ zb / 64).numpy(), 0.5, 0.1), atol=1e-4
    )


def test_injected_nan_never_reaches_the_weight():
    predictor = AnalyticPredictor(8)
    predictor.update(_features(seed=0))
    before = predictor.weight.clone()
    bad = _features(seed=1)
    bad[3, 2] = float("nan")
    inf = _features(seed=2)
    inf[0, 0] = float("inf")
    assert not predictor.update(bad) and not predictor.update(inf)
    assert int(predictor.stats.num_skipped) == 2
    torch.testing.assert_close(predictor.weight, before)


def test_total_collapse_keeps_previous_weight():
    predictor = AnalyticPredictor(8)
    predictor.update(_features())
    before = predictor.weight.clone()
    predictor2 = AnalyticPredictor(8, rho=0.0)
    predictor2.load_state_dict(predictor.state_dict())
    assert not predictor2.update(torch.zeros(16, 8))
    assert int(predictor2.num_collapsed) == 1
    torch.testing.assert_close(predictor2.weight, before)


def test_negative_eigenvalues_are_clamped():
    f = torch.diag(torch.tensor([4.0, 1.0, -0.5, 0.0]))
    w = analytic_weight(f, alpha=0.5, eps=0.0)
    torch.testing.assert_close(torch.diagonal(w), torch.tensor([1.0, 0.5, 1e-4, 1e-4]))


def test_offset_variant_and_unnormalised_power():
    f = torch.diag(torch.tensor([4.0, 1.0, 0.2, 0.0]))
    off = analytic_weight(f, offset=0.1)
    torch.testing.assert_close(torch.diagonal(off), torch.tensor([0.9**0.5, 0.15**0.5, 1e-4, 1e-4]))
    raw = analytic_weight(f, alpha=0.5, eps=0.1, normalize=False)
    torch.testing.assert_close(torch.diagonal(raw), torch.tensor([2.1, 1.1, 0.2**0.5 + 0.1, 0.1]))


def test_state_dict_round_trip_with_weights_only_load():
    predictor = AnalyticPredictor(8, freq=2)
    for i in range(3):
        predictor.update(_features(seed=i))
    buffer = io.BytesIO()
    torch.save(predictor.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert set(state) == {
        "weight",
        "step",
        "num_weight_updates",
        "num_fallbacks",
        "num_collapsed",
        "stats.correlation",
        "stats.num_updates",
        "stats.num_skipped",
    }
    restored = AnalyticPredictor(8, freq=2)
    restored.load_state_dict(state)
    for module in (predictor, restored):
        module.update(_features(seed=7))
        module.update(_features(seed=8))
    torch.testing.assert_close(restored.weight, predictor.weight)
    torch.testing.assert_close(restored.correlation, predictor.correlation)
    assert int(restored.step) == 5


def test_update_after_forward_keeps_autograd_graph_valid():
    z = _features().requires_grad_()
    predictor = AnalyticPredictor(8)
    predictor.update(_features(seed=5))
    w_used = predictor.weight
    out = predictor(z)
    predictor.update(z)  # replaces the buffer; the graph keeps the weight it used
    out.sum().backward()
    torch.testing.assert_close(z.grad, w_used.sum(0).expand(64, 8))
    assert predictor.weight is not w_used
    assert not isinstance(predictor.weight, torch.nn.Parameter) and not list(predictor.parameters())


def test_trainable_mode_is_a_parameter_overwritten_before_next_forward():
    predictor = AnalyticPredictor(8, trainable=True, freq=2)
    assert [n for n, _ in predictor.named_parameters()] == ["weight"]
    z = _features()
    out = predictor(z)
    predictor.update(z)
    out.sum().backward()  # no in-place error: the overwrite is deferred
    assert predictor.weight.grad is not None
    predictor(z)
    expected = _reference((z.T @ z / 64).numpy(), 0.5, 0.1)
    np.testing.assert_allclose(predictor.weight.detach().numpy(), expected, atol=2e-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 0.0}, "alpha=0.0 is invalid: must be a number > 0 (0.5 DirectPred, 1 DirectCopy)"),
        ({"eps": -0.1}, "eps=-0.1 is invalid: must be a number >= 0"),
        ({"rho": 1.0}, "rho=1.0 is invalid: the weight on the old correlation estimate must be in [0, 1)"),
        ({"freq": 0}, "freq=0 is invalid: must be an integer >= 1 (recompute W_p every freq steps)"),
        (
            {"solver": "svd"},
            "solver='svd' is invalid: must be one of ('eigh', 'newton_schulz', 'power', 'auto')",
        ),
        ({"eigh_dtype": "float16"}, "eigh_dtype='float16' is invalid: must be 'float32' or 'float64'"),
        (
            {"alpha": 1.0, "solver": "newton_schulz"},
            "solver='newton_schulz' is invalid: "
            "'newton_schulz' needs alpha=0.5, normalize=true and no offset",
        ),
        (
            {"solver": "power"},
            "solver='power' is invalid: 'power' needs alpha=1, normalize=true and no offset",
        ),
        (
            {"offset": 0.1, "alpha": 1.0},
            "offset=0.1 is invalid: must be null or a number, and needs alpha=0.5 (Table 7)",
        ),
        ({"ns_iters": 0}, "ns_iters=0 is invalid: must be an integer >= 1"),
        ({"normalize": "yes"}, "normalize='yes' is invalid: must be true or false"),
        (
            {"epsilon": 0.1},
            "epsilon=0.1 is invalid: not a setting of the analytic predictor, which are alpha, eps",
        ),
    ],
)
def test_invalid_settings_name_key_value_and_what_is_allowed(kwargs, message):
    """The predictor and ``method_kwargs`` share one set of checks (core/schema.py): same messages."""
    with pytest.raises(ConfigError) as info:
        AnalyticPredictor(8, **kwargs)
    assert str(info.value).startswith(message)


def test_settings_object_and_keys_give_the_same_predictor():
    """``AnalyticPredictor(d, settings, **keys)``: keys override the settings; None keys take DirectPred's."""
    base = AnalyticSettings(alpha=1.0, eps=0.3, rho=0.5, solver="power", freq=3)
    predictor = AnalyticPredictor(8, base, eps=0.2)
    assert (predictor.alpha, predictor.eps, predictor.rho, predictor.solver, predictor.freq) == (
        1.0,
        0.2,
        0.5,
        "power",
        3,
    )
    default = AnalyticPredictor(8)
    assert (default.alpha, default.eps, default.rho, default.solver) == (0.5, 0.1, 0.3, "eigh")
    copy = AnalyticPredictor(8, AnalyticSettings().for_kind("directcopy"))
    assert (copy.alpha, copy.eps, copy.rho, copy.solver) == (1.0, 0.3, 0.5, "power")


def test_linear_predictor_symmetrize_groups_and_init():
    predictor = LinearPredictor(6, bias=True, symmetric=True, lr_multiplier=10.0, weight_decay=0.0)
    torch.testing.assert_close(predictor.weight, predictor.weight.T)
    with torch.no_grad():
        predictor.weight.add_(torch.triu(torch.ones(6, 6)))
    predictor.symmetrize()
    torch.testing.assert_close(predictor.weight, predictor.weight.T)
    (group,) = predictor.param_groups(lr=0.03, weight_decay=4e-4)
    assert group["lr"] == pytest.approx(0.3) and group["weight_decay"] == 0.0 and len(group["params"]) == 2
    regular = LinearPredictor(6, init="identity")
    torch.testing.assert_close(regular(torch.ones(2, 6)), torch.ones(2, 6))
    assert regular.param_groups(lr=0.1, weight_decay=1e-4)[0]["weight_decay"] == 1e-4
    asym = LinearPredictor(6)
    before = asym.weight.clone()
    asym.symmetrize()
    torch.testing.assert_close(asym.weight, before)
    with pytest.raises(ConfigError, match=r"lr_multiplier=0 is invalid: .* alpha_p must be > 0"):
        LinearPredictor(6, lr_multiplier=0)
    with pytest.raises(ConfigError, match=r"init='eye' is invalid: must be 'random' or 'identity'"):
        LinearPredictor(6, init="eye")
