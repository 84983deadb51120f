"""Fixed-step ODE integration shared by the theory simulators.

The paper integrates its dynamics with forward Euler at step ``dt = α = 0.01`` (the SGD learning
rate, the paper's Fig. 5); ``rk4`` is the classical fourth-order Runge-Kutta scheme, used where a check
compares a trajectory with a closed form and the integration error must stay far below the tolerance.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: Integration schemes understood by :func:`integrate`.
METHODS = ("euler", "rk4")


def integrate(
    rhs: Callable[[np.ndarray], np.ndarray],
    y0: np.ndarray,
    dt: float,
    steps: int,
    method: str = "rk4",
    record_every: int = 1,
    progress: bool = False,
    desc: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Integrate the autonomous system ``dy/dt = rhs(y)`` with a fixed step.

    Args:
        rhs: the vector field, mapping an array of the shape of ``y0`` to one of the same shape.
        y0: initial state, any shape (float64).
        dt: step size, > 0.
        steps: number of steps, >= 0.
        method: ``"euler"`` or ``"rk4"``.
        record_every: keep every ``record_every``-th state (the initial and final state are always kept).
        progress: show a tqdm progress bar.
        desc: label of the progress bar.

    Returns:
        ``(t, ys)``: recorded times, shape ``(T,)``, and states, shape ``(T, *y0.shape)``.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not supported; use one of {METHODS}")
    if not dt > 0:
        raise ValueError(f"dt={dt} must be > 0")
    if steps < 0:
        raise ValueError(f"steps={steps} must be >= 0")
    if record_every < 1:
        raise ValueError(f"record_every={record_every} must be >= 1")
    y = np.array(y0, dtype=np.float64)
    times, states = [0.0], [y.copy()]
    iterator = range(1, steps + 1)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc=desc, leave=False)
    for k in iterator:
        if method == "euler":
            y = y + dt * rhs(y)
        else:
            k1 = rhs(y)
            k2 = rhs(y + 0.5 * dt * k1)
            k3 = rhs(y + 0.5 * dt * k2)
            k4 = rhs(y + dt * k3)
            y = y + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        if k % record_every == 0 or k == steps:
            times.append(k * dt)
            states.append(y.copy())
    return np.asarray(times), np.stack(states)
