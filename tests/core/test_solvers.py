"""The matmul-only solvers against eigh whatever F̂'s history, and one W_p under a module-wide bf16 cast."""

import pytest
import torch

from solo_directpred.core import AnalyticPredictor, analytic_weight, directcopy
from solo_directpred.core.predictors import LANCZOS_TOLERANCE


def _rotation(d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0]


def _switching_batches(d: int, gap: float, steps: int = 6, seed: int = 0) -> list[torch.Tensor]:
    """Batches whose F_b has a top-two gap of ``gap``, the top direction alternating between two axes.

    With ρ = 0.3 the running F̂ follows the batch closely, so F̂'s top eigenvector switches every step.
    A batch of d rows z = √d·diag(√s) Qᵀ gives F_b = Q diag(s) Qᵀ exactly.
    """
    q = _rotation(d, seed)
    tail = torch.logspace(-1, -3, d - 2, dtype=torch.float64)
    batches = []
    for step in range(steps):
        top = [1.0, 1.0 - gap] if step % 2 == 0 else [1.0 - gap, 1.0]
        s = torch.cat([torch.tensor(top, dtype=torch.float64), tail]) * (1.0 + 0.1 * step)
        batches.append(((d * s).sqrt()[:, None] * q.T).float())
    return batches


def test_issue_example_power_and_eigh_give_the_same_top_eigenvalue():
    power = AnalyticPredictor(4, alpha=1.0, eps=0.1, rho=0.3, solver="power")
    exact = AnalyticPredictor(4, alpha=1.0, eps=0.1, rho=0.3, solver="eigh")
    for s in ([1.0, 0.1, 0.05, 0.01], [0.6, 1.5, 0.05, 0.01]):  # the top eigenvector switches axis
        z = torch.diag(torch.tensor(s).mul(4).sqrt())
        power.update(z)
        exact.update(z)
    top = [torch.linalg.eigvalsh(p.weight)[-1].item() for p in (power, exact)]
    assert top[0] == top[1] == pytest.approx(1.1)
    torch.testing.assert_close(power.weight, exact.weight, atol=1e-6, rtol=0)


@pytest.mark.parametrize("d", [16, 128, 256])
@pytest.mark.parametrize("gap", [0.5, 0.1, 0.05, 0.01])
def test_power_solver_error_is_bounded_with_a_switching_top_eigenvector(d, gap):
    power = AnalyticPredictor(d, alpha=1.0, eps=0.1, solver="power")
    exact = AnalyticPredictor(d, alpha=1.0, eps=0.1, solver="eigh", eigh_dtype="float64")
    errors = []
    for z in _switching_batches(d, gap):
        power.update(z)
        exact.update(z)
        errors.append((power.weight - exact.weight).abs().max().item())
    assert max(errors) <= 2e-6, errors
    assert int(power.num_fallbacks) == 0  # Lanczos converged on its own: no eigh was needed


@pytest.mark.parametrize("gap", [0.1, 0.01])
def test_newton_schulz_solver_has_no_history_either(gap):
    ns = AnalyticPredictor(64, solver="newton_schulz")
    for z in _switching_batches(64, gap):
        ns.update(z)
        ref = analytic_weight(ns.correlation, dtype=torch.float64)
        err = (torch.linalg.eigvalsh(ns.weight.double()) - torch.linalg.eigvalsh(ref)).abs().max()
        assert err < 5e-3  # the README's Newton–Schulz tolerance, at every step


def test_unconverged_lanczos_falls_back_to_eigh_and_counts_it():
    # Two Lanczos steps cannot resolve a 1 % gap: the residual test sends the step to eigh.
    short = AnalyticPredictor(64, alpha=1.0, eps=0.1, solver="power", power_iters=2)
    exact = AnalyticPredictor(64, alpha=1.0, eps=0.1, solver="eigh")
    for z in _switching_batches(64, 0.01, steps=2):
        short.update(z)
        exact.update(z)
    assert int(short.num_fallbacks) == 2 and LANCZOS_TOLERANCE < 1e-5
    torch.testing.assert_close(short.weight, exact.weight, atol=2e-6, rtol=0)


def test_power_weight_depends_on_the_current_estimate_only():
    # Same F̂, different histories (one starts with the other top direction): the same W_p, bit for bit.
    batches = _switching_batches(32, 0.05, steps=3)
    a = AnalyticPredictor(32, alpha=1.0, rho=0.0, solver="power")
    b = AnalyticPredictor(32, alpha=1.0, rho=0.0, solver="power")
    for z in batches:
        a.update(z)
    b.update(batches[-1])
    assert torch.equal(a.correlation, b.correlation) and torch.equal(a.weight, b.weight)


def test_directcopy_function_on_gaussian_data_with_a_five_percent_gap():
    d = 64
    s = torch.cat([torch.tensor([1.0, 0.95]), torch.linspace(0.5, 0.01, d - 2)])
    g = torch.Generator().manual_seed(3)
    z = torch.randn(20 * d, d, generator=g) * s.sqrt()
    f = z.T @ z / len(z)
    expected = analytic_weight(f, alpha=1.0, eps=0.1)
    torch.testing.assert_close(directcopy(f, eps=0.1), expected, atol=2e-6, rtol=0)


@pytest.mark.parametrize("solver", ["eigh", "newton_schulz", "power"])
def test_module_bf16_cast_keeps_statistics_and_weight_in_float32(solver):
    alpha = 1.0 if solver == "power" else 0.5
    cast = AnalyticPredictor(16, alpha=alpha, solver=solver).bfloat16()
    reference = AnalyticPredictor(16, alpha=alpha, solver=solver)
    assert cast.weight.dtype == torch.float32 and cast.correlation.dtype == torch.float32
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        z = (torch.randn(64, 16, generator=g) * torch.logspace(0, -2, 16)).to(torch.bfloat16)
        cast.update(z)
        reference.update(z.float())  # the same bf16 inputs, in a float32 module
    assert cast.weight.dtype == torch.float32 and cast.correlation.dtype == torch.float32
    assert (cast.weight - reference.weight).abs().max() <= 1e-6
    assert (cast.correlation - reference.correlation).abs().max() <= 1e-7
    out = cast(z)
    assert out.dtype == torch.bfloat16


def test_trainable_weight_stays_a_float32_parameter_under_a_cast():
    predictor = AnalyticPredictor(8, trainable=True).bfloat16()
    assert isinstance(predictor.weight, torch.nn.Parameter) and predictor.weight.dtype == torch.float32
    assert [n for n, _ in predictor.named_parameters()] == ["weight"]


@pytest.mark.parametrize(
    ("solver", "alpha"), [("eigh", 0.5), ("eigh", 0.25), ("newton_schulz", 0.5), ("power", 1.0)]
)
def test_the_module_uses_the_functional_form_of_its_solver(solver, alpha):
    """One numerical path per solver: AnalyticPredictor's W_p is bit-for-bit its functional form's."""
    from solo_directpred.core.predictors import eigh_weight, newton_schulz_weight, power_weight

    predictor = AnalyticPredictor(
        16, alpha=alpha, eps=0.05, rho=0.3, solver=solver, ns_iters=12, power_iters=20
    )
    for batch in _switching_batches(16, 0.1, steps=3):
        predictor.update(batch)
    f_hat = predictor.correlation
    expected = {
        "eigh": lambda: eigh_weight(f_hat, alpha, 0.05, True, None, torch.float32)[0],
        "newton_schulz": lambda: newton_schulz_weight(f_hat, 0.05, ns_iters=12, num_iters=20)[0],
        "power": lambda: power_weight(f_hat, 0.05, num_iters=20)[0],
    }[solver]()
    assert torch.equal(predictor.weight, expected)
    if solver == "eigh" and alpha == 0.5:
        assert torch.equal(predictor.weight, analytic_weight(f_hat, 0.5, 0.05))
    if solver == "power":
        assert torch.equal(predictor.weight, power_weight(f_hat, 0.05, 20)[0])
        # the public DirectCopy form is the same path (with its 24 Lanczos steps): within Lanczos' tolerance
        torch.testing.assert_close(directcopy(f_hat, 0.05), expected, rtol=0, atol=10 * LANCZOS_TOLERANCE)
