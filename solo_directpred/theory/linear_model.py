"""The two-layer linear BYOL / SimSiam model of the paper's Lemma 1 (Fig. 1, Eqns. 2-3).

Online network ``W`` (n2×n1), linear predictor ``W_p`` (n2×n2), target ``W_a`` (n2×n1). A sample
``x`` has two views ``x1, x2 = x + e1, x + e2`` with augmentation noise ``e ~ N(0, X')``; the data
second moment is ``X = E[x xᵀ]``. The loss is ``J = ½ E‖W_p W x1 − StopGrad(W_a x2)‖²``.

Two simulators share one :class:`LinearModel`:

* :meth:`LinearModel.simulate` integrates the expected-gradient flow (Lemma 1, with weight decay)::

      dW_p/dt = α_p (−W_p W (X+X') + W_a X) Wᵀ − η W_p
      dW/dt   = W_pᵀ (−W_p W (X+X') + W_a X) − η W
      dW_a/dt = β (W − W_a)

* :meth:`LinearModel.sgd` runs stochastic gradient descent on sampled data and views, with
  gradients from torch autograd of the loss above (the stop-gradient is a ``detach``), so that
  the two are independent routes to the same dynamics: SGD with learning rate ``lr`` is the Euler
  scheme of the flow with ``dt = lr`` plus sampling noise.

``target="simsiam"`` ties ``W_a = W`` (no EMA). ``stop_gradient=False`` (SimSiam only) lets the
gradient flow through the target branch too, the setting of Theorem 2. ``symmetric_predictor``
symmetrises the predictor flow (assumption A3) or, in SGD, the predictor weight after every step.

Example:
    >>> model = LinearModel.isotropic(n1=8, sigma2=0.5, eta=0.01, beta=0.4)
    >>> state = init_state(n1=8, n2=4, seed=0)
    >>> traj = model.simulate(state, t_end=10.0, dt=0.01, record_every=100)
    >>> traj.W.shape
    (11, 4, 8)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from solo_directpred.theory.integrate import integrate

if TYPE_CHECKING:
    import torch

#: Allowed values of ``LinearModel.target``.
TARGETS = ("byol", "simsiam")


@dataclass(frozen=True)
class LinearState:
    """Weights of the linear model: ``W`` (n2×n1), ``Wp`` (n2×n2), ``Wa`` (n2×n1), float64."""

    W: np.ndarray
    Wp: np.ndarray
    Wa: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        """``(n2, n1)``: output and input width of the online network."""
        return self.W.shape

    def pack(self) -> np.ndarray:
        """The three matrices concatenated into one flat vector (the ODE state)."""
        return np.concatenate([self.W.ravel(), self.Wp.ravel(), self.Wa.ravel()])

    @classmethod
    def unpack(cls, y: np.ndarray, n2: int, n1: int) -> LinearState:
        """Inverse of :meth:`pack` for a state of shape ``(n2, n1)``."""
        a, b = n2 * n1, n2 * n1 + n2 * n2
        return cls(y[:a].reshape(n2, n1), y[a:b].reshape(n2, n2), y[b:].reshape(n2, n1))


@dataclass(frozen=True)
class Trajectory:
    """Recorded weights over time: ``t`` (T,), ``W`` (T, n2, n1), ``Wp`` (T, n2, n2), ``Wa`` (T, n2, n1)."""

    t: np.ndarray
    W: np.ndarray
    Wp: np.ndarray
    Wa: np.ndarray

    def state(self, k: int = -1) -> LinearState:
        """The state recorded at index ``k`` (default: the last one)."""
        return LinearState(self.W[k].copy(), self.Wp[k].copy(), self.Wa[k].copy())


def init_state(
    n1: int,
    n2: int,
    seed: int = 0,
    scale: float = 0.1,
    predictor_scale: float | None = None,
    symmetric_predictor: bool = False,
    target_init: str = "zero",
) -> LinearState:
    """Random initial weights, Gaussian with entry std ``scale / sqrt(fan_in)``.

    Args:
        n1, n2: input and output width of the online network.
        seed: seed of the numpy generator (the result is deterministic given it).
        scale: std of ``W`` entries times ``sqrt(n1)``.
        predictor_scale: same for ``W_p`` (times ``sqrt(n2)``); defaults to ``scale``.
        symmetric_predictor: symmetrise ``W_p`` (assumption A3 starts from a symmetric predictor).
        target_init: ``"zero"`` (``W_a(0) = 0``, as in the paper's Fig. 7 and Eqn. 15) or
            ``"online"`` (``W_a(0) = W(0)``).
    """
    if target_init not in ("zero", "online"):
        raise ValueError(f"target_init={target_init!r} is not supported; use 'zero' or 'online'")
    rng = np.random.default_rng(seed)
    predictor_scale = scale if predictor_scale is None else predictor_scale
    W = rng.standard_normal((n2, n1)) * scale / np.sqrt(n1)
    Wp = rng.standard_normal((n2, n2)) * predictor_scale / np.sqrt(n2)
    if symmetric_predictor:
        Wp = 0.5 * (Wp + Wp.T)
    Wa = np.zeros_like(W) if target_init == "zero" else W.copy()
    return LinearState(W, Wp, Wa)


def _t(M: np.ndarray) -> np.ndarray:
    """Transpose of the last two axes."""
    return np.swapaxes(M, -1, -2)


@contextmanager
def _single_torch_thread() -> Iterator[None]:
    """Run torch on one thread: for these tiny matrices extra threads only add contention."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _sqrt_psd(M: np.ndarray) -> np.ndarray:
    """Symmetric square root of a PSD matrix (``L Lᵀ = M``)."""
    vals, vecs = np.linalg.eigh(0.5 * (M + M.T))
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


@dataclass(frozen=True)
class LinearModel:
    """Data statistics and hyper-parameters of the linear model of Lemma 1.

    Attributes:
        data_cov: ``X = E[x̄ x̄ᵀ]``, (n1, n1), symmetric PSD.
        aug_cov: ``X' = E_x V[x'|x]``, the augmentation covariance, (n1, n1), symmetric PSD.
        alpha_p: relative learning rate of the predictor, > 0.
        eta: weight decay ``η`` >= 0 (the optimizer's weight decay is ``lr·η``).
        beta: relative EMA rate ``β`` >= 0 (``lr·β = 1 − γ_a``); unused for SimSiam.
        target: ``"byol"`` (EMA target ``W_a``) or ``"simsiam"`` (``W_a = W``).
        stop_gradient: keep the stop-gradient on the target branch; ``False`` needs ``target="simsiam"``.
        symmetric_predictor: symmetrise the predictor's flow (assumption A3).
    """

    data_cov: np.ndarray
    aug_cov: np.ndarray
    alpha_p: float = 1.0
    eta: float = 0.0
    beta: float = 1.0
    target: str = "byol"
    stop_gradient: bool = True
    symmetric_predictor: bool = False
    _second_moment: np.ndarray = field(init=False, repr=False, compare=False)
    _data_sqrt: np.ndarray = field(init=False, repr=False, compare=False)
    _aug_sqrt: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        X = np.asarray(self.data_cov, dtype=np.float64)
        Xp = np.asarray(self.aug_cov, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] != X.shape[1] or Xp.shape != X.shape:
            raise ValueError(
                f"data_cov and aug_cov must be square matrices of one shape, got {X.shape} and {Xp.shape}"
            )
        if self.target not in TARGETS:
            raise ValueError(f"target={self.target!r} is not supported; use one of {TARGETS}")
        if not self.stop_gradient and self.target != "simsiam":
            raise ValueError(
                "stop_gradient=False needs target='simsiam' (W_a = W, Theorem 2): the BYOL target is an "
                "EMA with no gradient path, so removing its stop-gradient would change nothing"
            )
        if not self.alpha_p > 0:
            raise ValueError(f"alpha_p={self.alpha_p} must be > 0")
        if self.eta < 0 or self.beta < 0:
            raise ValueError(f"eta={self.eta} and beta={self.beta} must be >= 0")
        object.__setattr__(self, "data_cov", X)
        object.__setattr__(self, "aug_cov", Xp)
        object.__setattr__(self, "_second_moment", X + Xp)
        object.__setattr__(self, "_data_sqrt", _sqrt_psd(X))
        object.__setattr__(self, "_aug_sqrt", _sqrt_psd(Xp))

    @classmethod
    def isotropic(cls, n1: int, sigma2: float, **kwargs: object) -> LinearModel:
        """The model under assumption A2: ``X = I`` and ``X' = σ² I`` (n1×n1)."""
        if sigma2 < 0:
            raise ValueError(f"sigma2={sigma2} must be >= 0")
        return cls(np.eye(n1), sigma2 * np.eye(n1), **kwargs)  # type: ignore[arg-type]

    @property
    def n1(self) -> int:
        """Input width."""
        return self.data_cov.shape[0]

    def _check_state(self, state: LinearState) -> None:
        if state.W.shape[-1] != self.n1:
            raise ValueError(f"state.W has {state.W.shape[-1]} input columns, the data has n1={self.n1}")

    def velocity(self, state: LinearState) -> LinearState:
        """The expected-gradient flow ``(dW/dt, dW_p/dt, dW_a/dt)`` at ``state`` (Lemma 1).

        The matrices may carry leading batch axes (e.g. several random starts at once).

        Without the stop-gradient (SimSiam) the target branch adds ``W_p W X − W (X+X')`` to
        ``dW/dt``, which gives Theorem 2's ``d vec(W)/dt = −H vec(W)``.
        """
        self._check_state(state)
        X, S = self.data_cov, self._second_moment
        W, Wp = state.W, state.Wp
        Wa = W if self.target == "simsiam" else state.Wa
        residual = -Wp @ W @ S + Wa @ X
        dWp = self.alpha_p * residual @ _t(W) - self.eta * Wp
        if self.symmetric_predictor:
            dWp = 0.5 * (dWp + _t(dWp))
        dW = _t(Wp) @ residual - self.eta * W
        if not self.stop_gradient:
            dW = dW + Wp @ W @ X - W @ S
        dWa = dW if self.target == "simsiam" else self.beta * (W - state.Wa)
        return LinearState(dW, dWp, dWa)

    def _start(self, state: LinearState) -> LinearState:
        if self.target == "simsiam":
            return LinearState(state.W, state.Wp, state.W.copy())
        return state

    def simulate(
        self,
        state: LinearState,
        t_end: float,
        dt: float = 0.01,
        method: str = "rk4",
        record_every: int = 1,
        progress: bool = False,
    ) -> Trajectory:
        """Integrate the expected-gradient flow from ``state`` up to time ``t_end``.

        Args:
            state: initial weights; for SimSiam ``W_a`` is replaced by ``W``.
            t_end: final time (in units of learning-rate × steps).
            dt: step size; ``method="euler"`` with ``dt = lr`` is full-batch gradient descent.
            method: ``"rk4"`` or ``"euler"``.
            record_every: record every k-th step.
            progress: show a progress bar.
        """
        state = self._start(state)
        n2, n1 = state.shape

        def rhs(y: np.ndarray) -> np.ndarray:
            return self.velocity(LinearState.unpack(y, n2, n1)).pack()

        steps = int(round(t_end / dt))
        t, ys = integrate(rhs, state.pack(), dt, steps, method, record_every, progress, "linear model")
        a, b = n2 * n1, n2 * n1 + n2 * n2
        return Trajectory(
            t, ys[:, :a].reshape(-1, n2, n1), ys[:, a:b].reshape(-1, n2, n2), ys[:, b:].reshape(-1, n2, n1)
        )

    def sample_views(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``batch_size`` samples and two augmented views each: two (B, n1) float64 tensors.

        ``x = X^{1/2} ξ`` and ``x_v = x + X'^{1/2} ξ_v`` with standard normal ``ξ``, so that
        ``E[x1 x1ᵀ] = X + X'`` and ``E[x1 x2ᵀ] = X``.
        """
        import torch

        LX, LA = torch.from_numpy(self._data_sqrt), torch.from_numpy(self._aug_sqrt)
        shape = (batch_size, self.n1)
        x = torch.randn(shape, generator=generator, dtype=torch.float64) @ LX
        x1 = x + torch.randn(shape, generator=generator, dtype=torch.float64) @ LA
        x2 = x + torch.randn(shape, generator=generator, dtype=torch.float64) @ LA
        return x1, x2

    def batch_gradients(
        self, state: LinearState, x1: torch.Tensor, x2: torch.Tensor, symmetric_loss: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Autograd gradients ``(∂J/∂W, ∂J/∂W_p)`` of the loss on one batch of views (B, n1).

        ``J = ½ mean_b ‖W_p W x1 − StopGrad(W_a x2)‖²``; with ``symmetric_loss`` the average of the
        two directions, ``¼ mean_b (‖W_p W x1 − SG(W_a x2)‖² + ‖W_p W x2 − SG(W_a x1)‖²)``.
        Returns two numpy arrays of the shapes of ``W`` and ``W_p``.
        """
        import torch

        W = torch.tensor(state.W, requires_grad=True)
        Wp = torch.tensor(state.Wp, requires_grad=True)
        Wa = W if self.target == "simsiam" else torch.from_numpy(state.Wa)

        def term(xa: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
            target = xb @ Wa.T
            if self.stop_gradient:
                target = target.detach()
            return ((xa @ W.T @ Wp.T - target) ** 2).sum(dim=1).mean()

        loss = 0.25 * (term(x1, x2) + term(x2, x1)) if symmetric_loss else 0.5 * term(x1, x2)
        gW, gWp = torch.autograd.grad(loss, (W, Wp))
        return gW.numpy(), gWp.numpy()

    def sgd(
        self,
        state: LinearState,
        steps: int,
        lr: float = 0.01,
        batch_size: int = 128,
        seed: int = 0,
        record_every: int = 1,
        symmetric_loss: bool = False,
        progress: bool = False,
    ) -> Trajectory:
        """Stochastic gradient descent on sampled data and views.

        One step: ``W ← W − lr(∂J/∂W + ηW)``, ``W_p ← W_p − lr(α_p ∂J/∂W_p + ηW_p)`` (then
        ``W_p ← (W_p+W_pᵀ)/2`` if ``symmetric_predictor``), ``W_a ← W_a + lr·β(W − W_a)`` with the new
        ``W`` (EMA coefficient ``γ_a = 1 − lr·β``). Deterministic given ``seed``.

        Args:
            state: initial weights.
            steps: number of SGD steps; time ``t = steps · lr``.
            lr: learning rate ``α``; ``lr·β`` must be in [0, 1].
            batch_size: samples per step.
            seed: seed of the torch generator that draws data and views.
            record_every: record every k-th step.
            symmetric_loss: use both directions of the loss.
            progress: show a progress bar.
        """
        import torch

        self._check_state(state)
        if not 0 <= lr * self.beta <= 1:
            raise ValueError(f"lr*beta={lr * self.beta} is 1 − γ_a and must lie in [0, 1]")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        generator = torch.Generator().manual_seed(seed)
        state = self._start(state)
        W, Wp, Wa = state.W.copy(), state.Wp.copy(), state.Wa.copy()
        times, Ws, Wps, Was = [0.0], [W.copy()], [Wp.copy()], [Wa.copy()]
        iterator = range(1, steps + 1)
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(iterator, desc="linear model SGD", leave=False)
        with _single_torch_thread():
            for k in iterator:
                x1, x2 = self.sample_views(batch_size, generator)
                gW, gWp = self.batch_gradients(LinearState(W, Wp, Wa), x1, x2, symmetric_loss)
                W = W - lr * (gW + self.eta * W)
                Wp = Wp - lr * (self.alpha_p * gWp + self.eta * Wp)
                if self.symmetric_predictor:
                    Wp = 0.5 * (Wp + Wp.T)
                Wa = W.copy() if self.target == "simsiam" else Wa + lr * self.beta * (W - Wa)
                if k % record_every == 0 or k == steps:
                    times.append(k * lr)
                    Ws.append(W.copy())
                    Wps.append(Wp.copy())
                    Was.append(Wa.copy())
        return Trajectory(np.asarray(times), np.stack(Ws), np.stack(Wps), np.stack(Was))


def balance(W: np.ndarray, Wp: np.ndarray, alpha_p: float = 1.0) -> np.ndarray:
    """Theorem 1's quantity ``α_p⁻¹ W_pᵀ W_p − W Wᵀ`` (n2×n2; batched over leading axes).

    Under the stop-gradient flow it equals ``e^{−2ηt}`` times its initial value, whatever ``X``,
    ``X'`` and the target dynamics are.
    """
    return np.swapaxes(Wp, -1, -2) @ Wp / alpha_p - W @ np.swapaxes(W, -1, -2)


def correlation(W: np.ndarray, data_cov: np.ndarray) -> np.ndarray:
    """``F = W X Wᵀ``, the correlation of the online output (the predictor input), (…, n2, n2)."""
    return W @ data_cov @ np.swapaxes(W, -1, -2)


def target_alignment(W: np.ndarray, Wa: np.ndarray) -> np.ndarray:
    """Normalised correlation ``⟨W_a, W⟩_F / (‖W_a‖_F ‖W‖_F)`` (checks assumption A1, Fig. 7)."""
    num = (W * Wa).sum(axis=(-2, -1))
    den = np.sqrt((W**2).sum(axis=(-2, -1)) * (Wa**2).sum(axis=(-2, -1)))
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def theorem2_hessian(Wp: np.ndarray, data_cov: np.ndarray, aug_cov: np.ndarray, eta: float) -> np.ndarray:
    """Theorem 2's ``H = X'⊗(W_pᵀW_p + I) + X⊗(W̃_pᵀW̃_p) + ηI`` with ``W̃_p = W_p − I``.

    Without stop-gradient (SimSiam) ``d vec(W)/dt = −H vec(W)`` with column-major ``vec``;
    shape ``(n1·n2, n1·n2)``, symmetric PSD.
    """
    n2 = Wp.shape[0]
    I = np.eye(n2)
    Wt = Wp - I
    H = np.kron(aug_cov, Wp.T @ Wp + I) + np.kron(data_cov, Wt.T @ Wt)
    return H + eta * np.eye(H.shape[0])


def random_orthonormal(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """An (n, k) matrix with orthonormal columns, Haar-distributed (QR of a Gaussian matrix)."""
    Q, R = np.linalg.qr(rng.standard_normal((n, k)))
    return Q * np.sign(np.diag(R))


def aligned_state(
    p: np.ndarray, s: np.ndarray, tau: np.ndarray, n1: int, seed: int = 0
) -> tuple[LinearState, np.ndarray]:
    """Weights whose modes are ``(p_j, s_j, τ_j)`` in random orthonormal bases (A1 and A3 hold exactly).

    ``W = U diag(√s) Vᵀ``, ``W_p = U diag(p) Uᵀ``, ``W_a = U diag(τ√s) Vᵀ`` with ``U`` (n2, n2) and
    ``V`` (n1, n2) orthonormal, n2 = len(p) <= n1. Under isotropic data the full flow keeps this
    form and each mode follows Eqns. 11-13. Returns the state and ``U``.
    """
    p, s, tau = (np.asarray(a, dtype=np.float64) for a in (p, s, tau))
    n2 = p.shape[0]
    if n2 > n1:
        raise ValueError(f"need at most n1={n1} modes, got {n2}")
    rng = np.random.default_rng(seed)
    U = random_orthonormal(n2, n2, rng)
    V = random_orthonormal(n1, n2, rng)
    root = np.sqrt(s)
    return LinearState((U * root) @ V.T, (U * p) @ U.T, (U * (tau * root)) @ V.T), U


def project_modes(traj: Trajectory, U: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-mode ``p_j = u_jᵀ W_p u_j``, ``s_j = ‖W u_j‖²`` and ``τ_j = ⟨W_a, W⟩_j / s_j`` (each (T, n2)).

    ``U`` holds the mode directions as columns (from :func:`aligned_state`); the data is taken as
    isotropic (``F = W Wᵀ``).
    """
    Wu = np.einsum("ij,tik->tjk", U, traj.W)
    Wau = np.einsum("ij,tik->tjk", U, traj.Wa)
    p = np.einsum("ij,tik,kj->tj", U, traj.Wp, U)
    s = (Wu**2).sum(-1)
    tau = np.divide((Wu * Wau).sum(-1), s, out=np.zeros_like(s), where=s > 0)
    return p, s, tau
