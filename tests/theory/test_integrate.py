"""The fixed-step integrator: convergence orders of Euler and RK4 and argument errors."""

from __future__ import annotations

import numpy as np
import pytest

from solo_directpred.theory.integrate import integrate


def _error(method: str, dt: float) -> float:
    t, ys = integrate(lambda y: -y, np.array([1.0]), dt, int(round(1.0 / dt)), method)
    return abs(ys[-1, 0] - np.exp(-1.0))


def test_euler_is_first_order_and_rk4_fourth_order():
    # Halving dt divides the error at t = 1 of dy/dt = -y by 2 (Euler) and by 16 (RK4).
    assert _error("euler", 0.01) / _error("euler", 0.005) == pytest.approx(2.0, rel=0.01)
    assert _error("rk4", 0.1) / _error("rk4", 0.05) == pytest.approx(16.0, rel=0.05)
    assert _error("rk4", 0.01) < 1e-10


def test_records_every_kth_step_and_the_last():
    t, ys = integrate(lambda y: np.ones_like(y), np.zeros((2, 2)), 0.1, 7, "euler", record_every=3)
    np.testing.assert_allclose(t, [0.0, 0.3, 0.6, 0.7])
    assert ys.shape == (4, 2, 2)
    np.testing.assert_allclose(ys[-1], 0.7 * np.ones((2, 2)))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(method="heun"), "method='heun'"),
        (dict(dt=0.0), "dt=0.0"),
        (dict(steps=-1), "steps=-1"),
        (dict(record_every=0), "record_every=0"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    args = dict(dt=0.1, steps=1, method="rk4", record_every=1) | kwargs
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        integrate(lambda y: y, np.zeros(1), **args)
