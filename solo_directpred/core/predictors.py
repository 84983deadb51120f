"""Analytic linear predictors (DirectPred, DirectCopy, DirectSet(α)) and the gradient-trained baseline.

The analytic predictor is *set*, not trained (paper §4, Eqn. 18):

    F̂ = U diag(s) Uᵀ,   p_j = (max(s_j, 0) / s_max)^α + ε   (clamped ≥ 1e-4),   W_p = U diag(p) Uᵀ

α = ½ is DirectPred, α = 1 is DirectCopy (Wang et al. 2021), any α > 0 is DirectSet(α). With
``normalize=False`` the max-normalisation is dropped (p_j = s_j^α + ε). The offset variant of the
paper's Table 7 is p_j = √max(s_j/s_max − c, 0).
"""

from __future__ import annotations

import time
from dataclasses import fields, replace
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import Tensor, nn

from solo_directpred.core.correlation import RunningCorrelation, distributed_world
from solo_directpred.core.linalg import safe_eigh, sqrt_newton_schulz, top_eigenvalue
from solo_directpred.core.schema import SOLVERS, AnalyticSettings, LinearSettings, fail

P_MIN = 1e-4  # floor of the predictor eigenvalues (paper code's clamp)
_EIGH_DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: Largest relative residual of the Lanczos estimate of λ_max accepted by the matmul-only solvers; above it
#: they fall back to an exact eigendecomposition (counted in ``num_fallbacks``).
LANCZOS_TOLERANCE = 1e-6


def eigenvalue_transform(
    values: Tensor, alpha: float = 0.5, eps: float = 0.1, normalize: bool = True, offset: float | None = None
) -> Tensor | None:
    """Map eigenvalues s of F̂ to eigenvalues p of W_p; None when no eigenvalue is positive (collapse).

    ``p = (max(s,0)/s_max)^α + ε`` (``normalize=False``: ``max(s,0)^α + ε``), or, with ``offset=c``,
    ``p = √max(s/s_max − c, 0)`` (Table 7; α and ε unused). Result clamped at ≥ 1e-4.
    """
    s = values.clamp_min(0)
    s_max = s.max()
    if not torch.isfinite(s_max) or s_max <= 0:
        return None
    if offset is not None:
        p = (s / s_max - offset).clamp_min(0).sqrt()
    else:
        base = s / s_max if normalize else s
        p = base.pow(alpha) + eps
    return p.clamp_min(P_MIN)


def _lambda_max(matrix: Tensor, num_iters: int) -> tuple[Tensor, int]:
    """λ_max of a symmetric matrix in float64 and the number of eigh fallbacks: Lanczos
    (:func:`~solo_directpred.core.linalg.top_eigenvalue`, O(d²) per step), or an exact eigh when its relative
    residual exceeds :data:`LANCZOS_TOLERANCE`."""
    value, residual = top_eigenvalue(matrix, num_iters=num_iters, dtype=torch.float64)
    if residual <= LANCZOS_TOLERANCE:
        return value, 0
    values, _, fallbacks = safe_eigh(matrix, dtype=torch.float64)
    return values[-1], 1 + fallbacks


def _plus_eps(matrix: Tensor, top: Tensor, eps: float) -> Tensor | None:
    """matrix / top + εI, or None when ``top`` is not a positive number (a collapsed F̂)."""
    if not torch.isfinite(top) or top <= 0:
        return None
    eye = torch.eye(matrix.shape[-1], dtype=matrix.dtype, device=matrix.device)
    return matrix / top.to(matrix.dtype) + eps * eye


def eigh_weight(
    correlation: Tensor, alpha: float, eps: float, normalize: bool, offset: float | None, dtype: torch.dtype
) -> tuple[Tensor | None, int]:
    """The ``eigh`` solver: W_p = U diag(p) Uᵀ from an eigendecomposition of F̂ (p from
    :func:`eigenvalue_transform`), and the number of eigh fallbacks."""
    values, vectors, fallbacks = safe_eigh(correlation, dtype=dtype)
    p = eigenvalue_transform(values, alpha, eps, normalize, offset)
    return (None if p is None else (vectors * p) @ vectors.T), fallbacks


def power_weight(
    correlation: Tensor, eps: float = 0.1, num_iters: int = 24, dtype: torch.dtype = torch.float32
) -> tuple[Tensor | None, int]:
    """The ``power`` solver (α = 1, DirectCopy): F̂/λ_max + εI without eigendecomposition, λ_max by
    Lanczos; and the number of eigh fallbacks."""
    top, fallbacks = _lambda_max(correlation, num_iters)
    return _plus_eps(correlation.to(dtype), top, eps), fallbacks


def newton_schulz_weight(
    correlation: Tensor,
    eps: float = 0.1,
    ns_iters: int = 24,
    num_iters: int = 24,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor | None, int]:
    """The ``newton_schulz`` solver (α = ½, DirectPred): (F̂/s_max)^{1/2} + εI by matmuls only; and the
    number of eigh fallbacks. (F̂/c)^{1/2} comes from Newton–Schulz, and λ_max((F̂/c)^{1/2}) = √(s_max/c)."""
    root, _ = sqrt_newton_schulz(correlation, ns_iters, dtype=dtype)
    top, fallbacks = _lambda_max(root, num_iters)
    return _plus_eps(root, top, eps), fallbacks


def analytic_weight(
    correlation: Tensor,
    alpha: float = 0.5,
    eps: float = 0.1,
    normalize: bool = True,
    offset: float | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor | None:
    """W_p = U diag(p) Uᵀ from a correlation matrix by eigendecomposition (:func:`eigh_weight`).

    Args:
        correlation: (d, d) symmetric PSD estimate F̂.
        alpha, eps, normalize, offset: see :func:`eigenvalue_transform`.
        dtype: precision of the eigendecomposition (float32 or float64).

    Returns:
        (d, d) symmetric matrix in ``dtype``, or None if F̂ has no positive eigenvalue.
    """
    return eigh_weight(correlation, alpha, eps, normalize, offset, dtype)[0]


def directpred(correlation: Tensor, eps: float = 0.1) -> Tensor | None:
    """DirectPred's predictor (α = ½): (F̂/s_max)^{1/2} + εI. See :func:`analytic_weight`."""
    return analytic_weight(correlation, alpha=0.5, eps=eps)


def directcopy(correlation: Tensor, eps: float = 0.1) -> Tensor | None:
    """DirectCopy's predictor (α = 1) without eigendecomposition: F̂/λ_max(F̂) + εI (:func:`power_weight`).

    Eigenvalues of the result below 1e-4 are not clamped here; they only occur when ε < 1e-4. The result is
    in float32.
    """
    return power_weight(correlation, eps)[0]


class AnalyticPredictor(nn.Module):
    """A linear predictor W_p set from the running correlation of its inputs (DirectPred family).

    Use it in a BYOL/SimSiam-style training step as::

        p1, p2 = predictor(z1), predictor(z2)      # prediction with the current W_p
        loss = byol_loss(p1, z2_target) + byol_loss(p2, z1_target)
        predictor.update(z1, z2)                   # then statistics, and W_p every ``freq`` steps

    Order: predictions use W_p from the statistics up to the previous step (as the authors' code);
    ``update`` then accumulates this step's batch and, when ``step % freq == 0`` (counting from 0),
    recomputes W_p. Before the first statistics W_p = I. The new W_p is a *new* tensor assigned to the
    buffer, so the autograd graph of the current step keeps the weight it was built with.

    Gradient accumulation: call :meth:`accumulate` on each micro-batch and :meth:`finish_step` once per
    optimizer step (``update`` is the two in one call). The k micro-batches of a step pool their statistics
    into one running update, ``freq`` and ``step`` count optimizer steps, and every micro-batch of a step
    predicts with the same W_p.

    Distributed (``torch.distributed`` initialised, ``sync_dist=True``): the statistics of a step are one
    packed all-reduce, and W_p is solved on rank 0 of the group only and broadcast (one d×d broadcast per
    recomputation), so every rank holds the same W_p bit for bit, whatever the solver (``"auto"``: the
    choice is made on rank 0 and broadcast with it). Every rank must call :meth:`finish_step` together.

    W_p is a buffer (no gradient, no optimizer, no weight decay); gradients of the encoder flow through
    it as a constant. With ``trainable=True`` it is a parameter instead, trained by the optimizer between
    the ``freq``-step overwrites (the paper's code for freq > 1); the overwrite is then applied before the
    next forward pass.

    Solvers: ``"eigh"`` (exact, any α); ``"newton_schulz"`` (matmul-only square root, α = ½, no offset);
    ``"power"`` (α = 1 with max-normalisation: F̂/λ_max + εI, no eigh; λ_max by ``power_iters`` Lanczos
    steps from a fixed start, so the result depends on F̂ only, never on its history);
    ``"auto"`` times the exact and the matmul-only path once per (device, d, dtype) on the first update
    and keeps the faster one. The matmul-only paths check the Lanczos residual and fall back to an exact
    eigendecomposition above ``LANCZOS_TOLERANCE``.

    Precision: F̂ and W_p are float32 (solved in ``eigh_dtype``) under any module-wide cast
    (``.bfloat16()``, Lightning's ``precision="bf16-true"``); predictions are cast to the input's dtype.

    Numerical safety: non-finite batches are skipped (``correlation.num_skipped``); a failed eigh retries
    in float64 then with jitter, and an unconverged Lanczos estimate falls back to eigh (``num_fallbacks``);
    a spectrum with no positive eigenvalue keeps the previous W_p (``num_collapsed``); W_p never becomes
    non-finite.

    Args:
        dim: width d of the predictor input (the projector output).
        settings: the predictor's settings (:class:`~solo_directpred.core.schema.AnalyticSettings`, which
            owns their defaults and checks); None: DirectPred's. ``AnalyticSettings().for_kind("directcopy")``
            gives DirectCopy's (α = 1, ε = 0.3, ρ = 0.5, the ``power`` solver).
        sync_dist: all-reduce batch statistics and broadcast W_p over ``torch.distributed`` when initialised.
        process_group: the group of ``sync_dist`` (default: the world).
        keys: settings to override by name, e.g. ``AnalyticPredictor(128, alpha=1.0, eps=0.3, rho=0.5)``:

            * ``alpha``: eigenvalue power α > 0 (½ DirectPred, 1 DirectCopy); ``eps``: ε ≥ 0 added to the
              normalised eigenvalues (paper best: 0.1); ``rho``: weight on the old correlation estimate, in
              [0, 1) (paper: 0.3 or 0.5);
            * ``freq``: recompute W_p every ``freq`` ≥ 1 optimizer steps (calls of :meth:`finish_step`);
            * ``normalize``: divide eigenvalues by the largest one; ``offset``: p = √max(s/s_max − offset, 0)
              (Table 7, α = ½); ``center``: the covariance instead of the uncentred correlation;
            * ``solver`` (see above), ``eigh_dtype`` ("float32"/"float64"), ``ns_iters`` (Newton–Schulz
              iterations), ``power_iters`` (Lanczos steps for λ_max);
            * ``trainable``: keep W_p a trainable parameter between overwrites (freq > 1, paper's code).

    Raises:
        ConfigError: a key that is not a setting, or a value the settings do not allow.
    """

    weight: Tensor
    step: Tensor
    num_weight_updates: Tensor
    num_fallbacks: Tensor
    num_collapsed: Tensor

    _auto_choice: dict[tuple[str, int, torch.dtype], str] = {}

    def __init__(
        self,
        dim: int,
        settings: AnalyticSettings | None = None,
        *,
        sync_dist: bool = True,
        process_group: dist.ProcessGroup | None = None,
        **keys: Any,
    ) -> None:
        super().__init__()
        names = [f.name for f in fields(AnalyticSettings)]
        for key in sorted(set(keys) - set(names)):
            fail(key, keys[key], f"not a setting of the analytic predictor, which are {', '.join(names)}")
        settings = replace(settings or AnalyticSettings(), **keys).for_kind("directpred").check()
        self.dim = dim
        self.alpha = float(settings.alpha)
        self.eps = float(settings.eps)
        self.freq = settings.freq
        self.normalize = settings.normalize
        self.offset = None if settings.offset is None else float(settings.offset)
        self.solver = settings.solver
        self.eigh_dtype = _EIGH_DTYPES[settings.eigh_dtype]
        self.ns_iters = settings.ns_iters
        self.power_iters = settings.power_iters
        self.trainable = settings.trainable
        self.stats = RunningCorrelation(
            dim, rho=settings.rho, center=settings.center, sync_dist=sync_dist, process_group=process_group
        )
        eye = torch.eye(dim, dtype=torch.float32)
        if self.trainable:
            self.weight = nn.Parameter(eye)
        else:
            self.register_buffer("weight", eye)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.register_buffer("num_weight_updates", torch.zeros((), dtype=torch.long))
        self.register_buffer("num_fallbacks", torch.zeros((), dtype=torch.long))
        self.register_buffer("num_collapsed", torch.zeros((), dtype=torch.long))
        self._pending: Tensor | None = None
        self._host_step = 0
        #: The solver that computed the last W_p ("auto" resolved), identical on every rank.
        self.chosen_solver: str | None = None

    @property
    def rho(self) -> float:
        return self.stats.rho

    @property
    def correlation(self) -> Tensor:
        """The running estimate F̂, (d, d)."""
        return self.stats.correlation

    def forward(self, z: Tensor) -> Tensor:
        """Predict: z W_pᵀ (= z W_p, W_p being symmetric), in the dtype of ``z``. (…, d) → (…, d)."""
        if self._pending is not None:
            self._apply_pending()
        return nn.functional.linear(z, self.weight.to(z.dtype))

    @torch.no_grad()
    def accumulate(self, *views: Tensor) -> None:
        """Add one micro-batch's statistics to the current optimizer step (no collective, W_p unchanged).

        Args:
            views: projector outputs (B, d) of the views (detached internally).
        """
        self.stats.accumulate(*views)

    @torch.no_grad()
    def finish_step(self) -> bool:
        """End an optimizer step: one running update from its micro-batches, and W_p every ``freq`` steps.

        Returns:
            True if W_p was recomputed during this call.
        """
        step = self._host_step  # a host mirror of the ``step`` buffer: no device synchronisation here
        self._host_step += 1
        self.step += 1
        accepted = self.stats.finish_step()
        if step % self.freq != 0 or not bool(accepted):
            return False  # a skipped (non-finite) batch brings nothing new: W_p stays as it is
        return self.recompute()

    @torch.no_grad()
    def update(self, *views: Tensor) -> bool:
        """One optimizer step without accumulation: :meth:`accumulate` then :meth:`finish_step`.

        Args:
            views: projector outputs (B, d) of the views (detached internally).

        Returns:
            True if W_p was recomputed during this call.
        """
        self.accumulate(*views)
        return self.finish_step()

    @torch.no_grad()
    def recompute(self) -> bool:
        """Recompute W_p from the current F̂; returns False if the previous W_p was kept.

        Under ``torch.distributed`` (with ``sync_dist``) every rank of the group must call it together:
        rank 0 solves and broadcasts [W_p | kept | fallbacks | solver] in one collective.
        """
        device = self.correlation.device
        world = distributed_world(self.stats.process_group) if self.stats.sync_dist else 1
        group = self.stats.process_group
        solves = world == 1 or dist.get_rank(group) == 0
        fallbacks_before = int(self.num_fallbacks) if world > 1 else 0  # sent with W_p to the other ranks
        new = None
        if solves:
            with torch.autocast(device_type=device.type, enabled=False):
                new = self._solve(self.correlation)
            if new is not None and not bool(torch.isfinite(new).all()):
                new = None
        if world > 1:
            new = self._broadcast(new, int(self.num_fallbacks) - fallbacks_before, solves, group)
        if new is None:
            self.num_collapsed += 1
            return False
        new = new.to(device=self.weight.device, dtype=self.weight.dtype)
        if self.trainable:
            self._pending = new
        else:
            self.weight = new
        self.num_weight_updates += 1
        return True

    def _broadcast(
        self, new: Tensor | None, fallbacks: int, source: bool, group: dist.ProcessGroup | None
    ) -> Tensor | None:
        """Rank 0's W_p (or None), fallback count and solver on every rank: one packed broadcast."""
        d = self.dim
        packet = torch.zeros(d * d + 3, dtype=torch.float32, device=self.correlation.device)
        if source:
            if new is not None:
                packet[: d * d] = new.to(torch.float32).reshape(-1)
            packet[-3] = float(new is not None)
            packet[-2] = fallbacks
            packet[-1] = SOLVERS.index(self.chosen_solver) if self.chosen_solver else -1
        src = 0 if group is None else dist.get_global_rank(group, 0)
        dist.broadcast(packet, src=src, group=group)
        if source:
            return new
        kept, fallbacks, solver = packet[-3:].tolist()
        self.num_fallbacks += int(fallbacks)
        self.chosen_solver = SOLVERS[int(solver)] if solver >= 0 else None
        return packet[: d * d].reshape(d, d).clone() if kept else None

    def _solve(self, correlation: Tensor, solver: str | None = None) -> Tensor | None:
        solver = solver or self.solver
        if solver == "auto":
            solver = self._choose_solver(correlation)
        self.chosen_solver = solver
        if solver == "newton_schulz":
            weight, fallbacks = newton_schulz_weight(
                correlation, self.eps, self.ns_iters, self.power_iters, self.eigh_dtype
            )
        elif solver == "power":
            weight, fallbacks = power_weight(correlation, self.eps, self.power_iters, self.eigh_dtype)
        else:
            weight, fallbacks = eigh_weight(
                correlation, self.alpha, self.eps, self.normalize, self.offset, self.eigh_dtype
            )
        self.num_fallbacks += fallbacks
        return weight

    def _choose_solver(self, correlation: Tensor) -> str:
        fast = "power" if self.alpha == 1.0 else "newton_schulz"
        matmul_ok = self.offset is None and self.normalize and self.alpha in (0.5, 1.0)
        if not matmul_ok:
            return "eigh"
        key = (correlation.device.type, self.dim, self.eigh_dtype)
        if key not in self._auto_choice:
            timings = {name: _time(lambda n=name: self._solve(correlation, n)) for name in ("eigh", fast)}
            self._auto_choice[key] = min(timings, key=timings.get)
        return self._auto_choice[key]

    def _apply_pending(self) -> None:
        with torch.no_grad():
            self.weight.copy_(self._pending)
        self._pending = None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001 - torch signature
        # Checkpoints of versions whose power solver warm-started from the last top eigenvector.
        state_dict.pop(prefix + "top_vector", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._host_step = int(self.step)

    def _apply(self, fn, recurse: bool = True):  # noqa: ANN001, ANN202 - torch signature
        # A module-wide cast (``.bfloat16()``, Lightning's "bf16-true") moves W_p but keeps it in float32.
        kept = self.weight.data
        super()._apply(fn, recurse)
        moved = self.weight
        if moved.dtype != kept.dtype:
            if isinstance(moved, nn.Parameter):
                moved.data = kept.to(device=moved.device)
            else:
                self._buffers["weight"] = kept.to(device=moved.device)
        if self._pending is not None:
            self._pending = self._pending.to(device=self.weight.device)
        return self

    def _save_to_state_dict(self, destination, prefix, keep_vars):  # noqa: ANN001 - torch signature
        if self._pending is not None:
            self._apply_pending()
        super()._save_to_state_dict(destination, prefix, keep_vars)

    def extra_repr(self) -> str:
        parts = [
            f"dim={self.dim}",
            f"alpha={self.alpha}",
            f"eps={self.eps}",
            f"rho={self.rho}",
            f"freq={self.freq}",
        ]
        if not self.normalize:
            parts.append("normalize=False")
        if self.offset is not None:
            parts.append(f"offset={self.offset}")
        parts.append(f"solver={self.solver!r}")
        return ", ".join(parts)


def _time(fn, repeats: int = 3) -> float:
    """Best-of-``repeats`` wall time of ``fn()`` in seconds, synchronising CUDA around each call."""
    best = float("inf")
    fn()  # warm-up
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


class IdentityPredictor(nn.Module):
    """No predictor: W_p = I, fixed (the "no predictor" ablation; why it collapses: the paper's remark after
    Theorem 2 and App. D).

    ``forward`` returns its input; ``weight`` (d × d identity, not saved in ``state_dict``) is there for the
    spectral monitor, which reads W_p from every linear predictor.
    """

    weight: Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self.dim = dim
        self.register_buffer("weight", torch.eye(dim), persistent=False)

    def forward(self, z: Tensor) -> Tensor:
        """z itself. (…, d) → (…, d)."""
        return z

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LinearPredictor(nn.Module):
    """Gradient-trained linear predictor, the baseline of the paper's Tables 1–5.

    Optionally symmetric (call :meth:`symmetrize` after each optimizer step: W ← (W + Wᵀ)/2, paper §4.4),
    with or without bias, and with its own learning-rate multiplier α_p and weight decay, exposed through
    :meth:`param_groups` for the optimizer.

    Args:
        dim: input and output width d.
        bias: add a bias term.
        symmetric: symmetrise at initialisation and after every optimizer step.
        lr_multiplier: α_p, predictor learning rate = α_p × base learning rate (> 0).
        weight_decay: the predictor's weight decay, or None to use the optimizer's.
        init: "random" (PyTorch's default Linear init) or "identity".
    """

    def __init__(
        self,
        dim: int,
        bias: bool = False,
        symmetric: bool = False,
        lr_multiplier: float = 1.0,
        weight_decay: float | None = None,
        init: Literal["random", "identity"] = "random",
    ) -> None:
        super().__init__()
        LinearSettings(bias, symmetric, lr_multiplier, weight_decay, init).check()
        self.dim = dim
        self.symmetric = bool(symmetric)
        self.lr_multiplier = float(lr_multiplier)
        self.weight_decay = weight_decay
        self.linear = nn.Linear(dim, dim, bias=bias)
        if init == "identity":
            with torch.no_grad():
                self.linear.weight.copy_(torch.eye(dim))
                if bias:
                    self.linear.bias.zero_()
        if self.symmetric:
            self.symmetrize()

    @property
    def weight(self) -> Tensor:
        return self.linear.weight

    def forward(self, z: Tensor) -> Tensor:
        """z Wᵀ + b. (…, d) → (…, d)."""
        return self.linear(z)

    @torch.no_grad()
    def symmetrize(self) -> None:
        """W ← (W + Wᵀ)/2 in place (a no-op for ``symmetric=False``)."""
        if self.symmetric:
            self.linear.weight.copy_(0.5 * (self.linear.weight + self.linear.weight.T))

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """Optimizer parameter groups: lr × α_p, and the predictor's own weight decay if set."""
        wd = weight_decay if self.weight_decay is None else self.weight_decay
        return [
            {
                "name": "predictor",
                "params": list(self.parameters()),
                "lr": lr * self.lr_multiplier,
                "weight_decay": wd,
            }
        ]
