"""A small nonlinear BYOL trained by SGD: the setting in which Table 3's collapse appears.

The linear model of Lemma 1 keeps its modes whether or not ``W_p`` is symmetric (docs/theory.md).
The paper's STL-10 runs differ from it in three ways: the loss is ℓ2-normalised (``2 − 2 cos``, both
directions), the online network is a projector with BatchNorm and ReLU, and training is SGD with
momentum and weight decay. :class:`SmallBYOL` keeps exactly those, at toy size:

* data ``x = X^{1/2} ξ`` in ``n_in`` dimensions with eigenvalues of ``X`` log-spaced from 1 to
  ``10^-spectrum`` in a random basis, views ``x + N(0, σ² I)``;
* online network ``f(x) = W2 ReLU(BN(W1 x + b1)) + b2`` (BatchNorm without affine, batch statistics
  per view, as in the paper's projector), or ``f(x) = W1 x`` with ``hidden=0``;
* linear predictor ``W_p`` without bias; ``symmetric`` runs start symmetric and are symmetrised after
  every optimizer step, ``W_p ← (W_p + W_pᵀ)/2`` (the paper's symmetric ``W_p`` of Tables 3 and 5);
* target: an EMA copy of the online network (``γ_a``), or, without EMA, the online network itself
  behind a stop-gradient;
* loss ``Σ_v 2 − 2 cos(W_p f(x_v), sg(f_a(x_v̄)))`` (or ``½‖·‖²`` with ``loss="l2"``);
* SGD with momentum and coupled weight decay on every parameter (torch's ``SGD(weight_decay=...)``).

Many runs (cells × seeds) train at once as one batched model, so a Table 3 grid of 12 runs takes
seconds on a CPU. The collapse statistic is the effective rank (RankMe: ``exp`` of the entropy of the
normalised singular values) of the centred online outputs on fresh samples.

Example:
    >>> runs = SmallBYOL(hidden=8, n_in=4, n_out=4).train([(True, False, 0), (False, False, 0)], steps=5)
    >>> runs.rank.shape, runs.final_rank(True, False).shape
    ((1, 2), (1,))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from solo_directpred.theory.experiments import SIGMA2
from solo_directpred.theory.linear_model import _single_torch_thread

if TYPE_CHECKING:
    import torch

#: Allowed values of ``SmallBYOL.loss``.
LOSSES = ("cosine", "l2")

#: ``lr · weight decay · steps`` of the paper's STL-10 runs: 0.03 · 4e-4 · 100 epochs of 105,000/128 steps.
PAPER_DECAY_HORIZON = 0.03 * 4e-4 * 100 * 105_000 / 128

#: One run: ``(symmetric predictor, EMA target, seed)``.
RunSpec = tuple[bool, bool, int]


def effective_rank(z: np.ndarray | torch.Tensor) -> np.ndarray:
    """RankMe (:func:`solo_directpred.spectral.metrics.rankme`, the monitor's definition) of each (N, d)
    matrix of the (…, N, d) features.

    The features are used as given (centre them first for a rank of the covariance); the result lies in
    ``[1, min(N, d)]`` up to RankMe's ε: ``k`` for ``k`` equal, orthogonal directions, 1 when all rows are
    parallel. A feature matrix with a non-finite entry (a diverged run) gets ``nan``.
    """
    import torch

    from solo_directpred.spectral.metrics import rankme

    z = torch.as_tensor(z, dtype=torch.float64)
    flat = z.reshape(-1, *z.shape[-2:])
    ranks = [rankme(m) if bool(torch.isfinite(m).all()) else math.nan for m in flat]
    return np.array(ranks, dtype=np.float64).reshape(z.shape[:-2])


def byol_loss(p: torch.Tensor, target: torch.Tensor, loss: str = "cosine") -> torch.Tensor:
    """Symmetric BYOL loss of two views, per run: ``Σ_v mean_b ℓ(p_v, target_v̄)``.

    ``p`` and ``target`` are (…, 2, B, d) with the view on axis −3; ``target`` must already be
    detached (the stop-gradient). ``ℓ = 2 − 2 cos`` for ``"cosine"`` (range [0, 8] for two views) and
    ``½‖p − t‖²`` for ``"l2"``. Returns shape (…).
    """
    import torch.nn.functional as F

    swapped = target.flip(-3)
    if loss == "cosine":
        per = 2.0 - 2.0 * F.cosine_similarity(p, swapped, dim=-1)
    elif loss == "l2":
        per = 0.5 * ((p - swapped) ** 2).sum(-1)
    else:
        raise ValueError(f"loss={loss!r} is not supported; use one of {LOSSES}")
    return per.mean(-1).sum(-1)


@dataclass(frozen=True)
class CollapseRuns:
    """Outcome of :meth:`SmallBYOL.train`, one entry per run (R runs, T records).

    Attributes:
        specs: the ``(symmetric, ema, seed)`` of each run.
        steps: the recorded step counts, (T,).
        rank: effective rank of the centred online outputs at each record, (T, R), in [1, n_out].
        loss: mean training loss over the last 10% of the steps, (R,), in [0, 8] for the cosine loss.
        Wp: final predictor weights, (R, n_out, n_out).
        weight_decay: the weight decay used.
    """

    specs: list[RunSpec]
    steps: np.ndarray
    rank: np.ndarray
    loss: np.ndarray
    Wp: np.ndarray
    weight_decay: float

    def cell(self, symmetric: bool, ema: bool) -> list[int]:
        """Indices of the runs of one Table 3 cell, in the order of ``specs``."""
        idx = [i for i, (s, e, _) in enumerate(self.specs) if s == symmetric and e == ema]
        if not idx:
            raise ValueError(f"no run with symmetric={symmetric}, ema={ema}")
        return idx

    def final_rank(self, symmetric: bool, ema: bool) -> np.ndarray:
        """Final effective rank of the runs of one Table 3 cell, (runs in the cell,)."""
        return self.rank[-1, self.cell(symmetric, ema)]


@dataclass(frozen=True)
class SmallBYOL:
    """Hyper-parameters of the small nonlinear BYOL (module docstring); defaults are the paper's optimizer.

    Attributes:
        n_in: input dimension. hidden: projector width (0: linear online network ``W1``). n_out: output
            dimension (the predictor is n_out×n_out).
        batch_norm: BatchNorm (no affine) on the hidden layer.
        sigma2: augmentation variance ``σ²`` >= 0.
        spectrum: data eigenvalues from 1 down to ``10^-spectrum``.
        lr, momentum: SGD (the paper: 0.03, 0.9).
        weight_decay: coupled weight decay; ``None`` picks ``PAPER_DECAY_HORIZON / (lr · steps)``, so
            that the run decays the weights as much as the paper's 100 epochs at 4e-4 do.
        ema: target EMA coefficient ``γ_a`` of EMA runs (the paper: 0.996).
        batch_size: samples per step. loss: ``"cosine"`` (the paper's) or ``"l2"``.
    """

    n_in: int = 16
    hidden: int = 32
    n_out: int = 16
    batch_norm: bool = True
    sigma2: float = SIGMA2
    spectrum: float = 1.5
    lr: float = 0.03
    momentum: float = 0.9
    weight_decay: float | None = None
    ema: float = 0.996
    batch_size: int = 64
    loss: str = "cosine"

    def __post_init__(self) -> None:
        if min(self.n_in, self.n_out, self.batch_size) < 1 or self.hidden < 0:
            raise ValueError(
                f"n_in={self.n_in}, n_out={self.n_out}, batch_size={self.batch_size} must be >= 1 "
                f"and hidden={self.hidden} >= 0"
            )
        if self.loss not in LOSSES:
            raise ValueError(f"loss={self.loss!r} is not supported; use one of {LOSSES}")
        if not 0.0 <= self.ema <= 1.0:
            raise ValueError(f"ema={self.ema} is the target EMA coefficient gamma_a and must lie in [0, 1]")
        if self.sigma2 < 0 or self.lr <= 0 or not 0 <= self.momentum < 1:
            raise ValueError(
                f"need sigma2 >= 0, lr > 0 and 0 <= momentum < 1; got sigma2={self.sigma2}, lr={self.lr}, "
                f"momentum={self.momentum}"
            )
        if self.weight_decay is not None and self.weight_decay < 0:
            raise ValueError(
                f"weight_decay={self.weight_decay} must be >= 0 (or None for the paper's horizon)"
            )

    def decay_for(self, steps: int) -> float:
        """The weight decay of a run of ``steps`` steps (``weight_decay`` or the paper's horizon)."""
        if self.weight_decay is not None:
            return self.weight_decay
        return PAPER_DECAY_HORIZON / (self.lr * steps)

    def _init(self, seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Data square root (n_in, n_in) and torch-default ``nn.Linear`` initial weights of one seed."""
        import torch

        g = torch.Generator().manual_seed(seed)
        Q, _ = torch.linalg.qr(torch.randn(self.n_in, self.n_in, generator=g))
        root = Q * torch.logspace(0.0, -self.spectrum, self.n_in).sqrt()

        def uniform(*shape: int, fan_in: int) -> torch.Tensor:
            return (2.0 * torch.rand(*shape, generator=g) - 1.0) / math.sqrt(fan_in)

        if self.hidden == 0:
            params = {"W1": uniform(self.n_out, self.n_in, fan_in=self.n_in)}
        else:
            params = {
                "W1": uniform(self.hidden, self.n_in, fan_in=self.n_in),
                "b1": uniform(self.hidden, fan_in=self.n_in),
                "W2": uniform(self.n_out, self.hidden, fan_in=self.hidden),
                "b2": uniform(self.n_out, fan_in=self.hidden),
            }
        params["Wp"] = uniform(self.n_out, self.n_out, fan_in=self.n_out)
        return root, params

    def online(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Online (or target) network on a batch of views: (R, V, B, n_in) → (R, V, B, n_out).

        BatchNorm uses the statistics of each (run, view) batch, as BYOL does in training mode.
        """
        import torch

        h = x @ params["W1"][:, None].transpose(-1, -2)
        if self.hidden == 0:
            return h
        h = h + params["b1"][:, None, None]
        if self.batch_norm:
            h = (h - h.mean(-2, keepdim=True)) / torch.sqrt(h.var(-2, unbiased=False, keepdim=True) + 1e-5)
        h = torch.relu(h)
        return h @ params["W2"][:, None].transpose(-1, -2) + params["b2"][:, None, None]

    def train(
        self,
        specs: Sequence[RunSpec],
        steps: int = 2000,
        record_every: int | None = None,
        eval_size: int = 1024,
        progress: bool = False,
    ) -> CollapseRuns:
        """Train the runs ``specs`` (each ``(symmetric, ema, seed)``) for ``steps`` SGD steps, all at once.

        The seed fixes the data basis and the initial weights, so runs of one seed in different cells
        start from the same network (a symmetric run symmetrises the same ``W_p``); the target starts
        as a copy of the online network. Views are drawn from one shared generator (seeded by the
        first spec's seed). Deterministic given ``specs``.

        Args:
            specs: runs to train, at least one.
            steps: SGD steps, >= 1.
            record_every: record the effective rank every k steps (default: only at the end).
            eval_size: fresh samples for the effective rank.
            progress: show a progress bar.
        """
        import torch

        if not specs:
            raise ValueError("specs is empty: give at least one (symmetric, ema, seed) run")
        if steps < 1:
            raise ValueError(f"steps={steps} must be >= 1")
        specs = [(bool(s), bool(e), int(k)) for s, e, k in specs]
        record_every = steps if record_every is None else record_every
        decay = self.decay_for(steps)
        with _single_torch_thread():
            roots, inits = zip(*(self._init(seed) for _, _, seed in specs))
            root = torch.stack(roots)
            params = {k: torch.stack([p[k] for p in inits]) for k in inits[0]}
            sym = torch.tensor([s for s, _, _ in specs])[:, None, None]
            ema = torch.tensor([e for _, e, _ in specs])
            params["Wp"] = torch.where(sym, 0.5 * (params["Wp"] + params["Wp"].transpose(1, 2)), params["Wp"])
            target = {k: v.clone() for k, v in params.items() if k != "Wp"}
            momentum = {k: torch.zeros_like(v) for k, v in params.items()}
            for v in params.values():
                v.requires_grad_(True)
            generator = torch.Generator().manual_seed(specs[0][2])
            R, tail = len(specs), max(1, steps // 10)

            def sample(n: int, views: int) -> torch.Tensor:
                x = torch.randn(R, 1, n, self.n_in, generator=generator) @ root[:, None].transpose(-1, -2)
                noise = torch.randn(R, views, n, self.n_in, generator=generator)
                return x + math.sqrt(self.sigma2) * noise

            recorded, ranks, loss_sum = [], [], torch.zeros(R)
            iterator = range(1, steps + 1)
            if progress:
                from tqdm.auto import tqdm

                iterator = tqdm(iterator, desc="small BYOL SGD", leave=False)
            for k in iterator:
                x = sample(self.batch_size, 2)
                z = self.online(params, x)
                p = z @ params["Wp"][:, None].transpose(-1, -2)
                with torch.no_grad():
                    t = torch.where(ema[:, None, None, None], self.online(target, x), z.detach())
                losses = byol_loss(p, t, self.loss)
                grads = torch.autograd.grad(losses.sum(), list(params.values()))
                with torch.no_grad():
                    if k > steps - tail:
                        loss_sum += losses
                    for (name, w), g in zip(params.items(), grads):
                        momentum[name].mul_(self.momentum).add_(g + decay * w)
                        w.sub_(self.lr * momentum[name])
                    Wp = params["Wp"]
                    Wp.copy_(torch.where(sym, 0.5 * (Wp + Wp.transpose(1, 2)), Wp))
                    for name, t_w in target.items():
                        gamma = torch.where(ema, self.ema, 0.0).view(-1, *([1] * (t_w.dim() - 1)))
                        t_w.mul_(gamma).add_((1.0 - gamma) * params[name])
                    if k % record_every == 0 or k == steps:
                        z_eval = self.online(params, sample(eval_size, 1))[:, 0]
                        recorded.append(k)
                        ranks.append(effective_rank(z_eval - z_eval.mean(1, keepdim=True)))
        loss = (loss_sum / tail).numpy().astype(np.float64)
        Wp_end = params["Wp"].detach().numpy().astype(np.float64)
        return CollapseRuns(specs, np.asarray(recorded), np.stack(ranks), loss, Wp_end, decay)


#: The Table 3 grid of ``theory check``: its seeds and run length.
TABLE3_SEEDS, TABLE3_STEPS = (0, 1, 2), 2000


def table3_runs(
    seeds: Sequence[int] = TABLE3_SEEDS,
    steps: int = TABLE3_STEPS,
    model: SmallBYOL | None = None,
    progress: bool = False,
) -> CollapseRuns:
    """The four cells of Table 3 (symmetric/regular ``W_p`` × EMA/no EMA), every seed, in one batch.

    Default model: :class:`SmallBYOL` (n_in = n_out = 16, 32 hidden units with BN and ReLU, σ² = 0.5,
    lr 0.03, momentum 0.9, γ_a = 0.996, batch 64) with the weight decay of the paper's horizon,
    ``0.984 / (0.03 · steps)`` (0.0164 for 2,000 steps).
    """
    specs = [(s, e, k) for s in (True, False) for e in (True, False) for k in seeds]
    return (model or SmallBYOL()).train(specs, steps=steps, progress=progress)
