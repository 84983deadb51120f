"""Running estimate of the predictor-input correlation F̂ (paper Eqn. 19)."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn


def distributed_world(process_group: dist.ProcessGroup | None) -> int:
    """Size of ``process_group`` (the default group when None), or 1 outside ``torch.distributed``."""
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(process_group)


class RunningCorrelation(nn.Module):
    """F̂ ← ρ·F̂ + (1 − ρ)·F_b, with F_b = mean over the batch of z zᵀ (paper Eqn. 19).

    * The views are **pooled**: ``update(z1, z2)`` averages over the 2B rows of both views.
    * ``z`` is detached and accumulated in float32 (or ``dtype``), outside autocast.
    * **Uncentred** by default (the paper found centring worse); ``center=True`` uses the batch
      covariance E[(z − μ)(z − μ)ᵀ] instead.
    * ``rho`` is the weight on the **old** value (paper: 0.3 or 0.5). It is unrelated to the momentum
      ``tau`` of the target network. The first accepted batch initialises F̂ = F_b.
    * Gradient accumulation: :meth:`accumulate` adds a micro-batch to pending sums (no collective) and
      :meth:`finish_step`, once per optimizer step, turns all of them into one F_b and one running update, so
      k micro-batches of B rows are one batch of k·B rows. :meth:`update` is the two in one call.
    * Under ``torch.distributed`` the batch statistic is a sample-weighted all-reduce over ranks, done
      **before** the running update, so every rank holds the same F̂ (one packed collective per step).
    * A step with a non-finite value in any micro-batch on any rank is skipped on all ranks and counted in
      ``num_skipped``.
    * F̂ stays in ``dtype`` under a module-wide cast (``.bfloat16()``, Lightning's ``precision="bf16-true"``).

    State (all in ``state_dict``): ``correlation`` (d, d), ``num_updates``, ``num_skipped``.

    Example:
        >>> stats = RunningCorrelation(dim=4, rho=0.3)
        >>> stats.update(torch.randn(8, 4), torch.randn(8, 4))
        tensor(True)
        >>> for micro_batch in torch.randn(4, 2, 4):  # four micro-batches of one optimizer step
        ...     stats.accumulate(micro_batch)
        >>> stats.finish_step()
        tensor(True)
        >>> stats.correlation.shape
        torch.Size([4, 4])
    """

    correlation: Tensor
    num_updates: Tensor
    num_skipped: Tensor

    def __init__(
        self,
        dim: int,
        rho: float = 0.3,
        center: bool = False,
        sync_dist: bool = True,
        process_group: dist.ProcessGroup | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        if not 0.0 <= rho < 1.0:
            raise ValueError(f"rho (weight on the old estimate) must be in [0, 1), got {rho!r}")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.dim = dim
        self.rho = float(rho)
        self.center = bool(center)
        self.sync_dist = bool(sync_dist)
        self.process_group = process_group
        self.register_buffer("correlation", torch.zeros(dim, dim, dtype=dtype))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        self.register_buffer("num_skipped", torch.zeros((), dtype=torch.long))
        self._pending: Tensor | None = None

    @property
    def initialized(self) -> bool:
        """Whether at least one batch has been accumulated."""
        return bool(self.num_updates > 0)

    def accumulate(self, *views: Tensor) -> None:
        """Add one micro-batch to the pending sums of the current optimizer step; no collective.

        The pending sums [Σ z zᵀ | Σ z | n | non-finite count] are pooled over every call until
        :meth:`finish_step`, so k micro-batches of B rows give exactly the statistic of one batch of k·B rows.
        They are per-step scratch, not state: they are not in ``state_dict``.

        Args:
            views: tensors of shape (B_v, d); batch sizes may differ between views, calls and ranks.
        """
        if not views:
            raise ValueError("update needs at least one view of shape (batch, dim)")
        dtype = self.correlation.dtype
        device = self.correlation.device
        with torch.no_grad(), torch.autocast(device_type=device.type, enabled=False):
            z = torch.cat([v.detach().reshape(-1, v.shape[-1]) for v in views]).to(device=device, dtype=dtype)
            if z.shape[-1] != self.dim:
                raise ValueError(f"views have dimension {z.shape[-1]}, the estimate expects {self.dim}")
            finite = torch.isfinite(z).all()
            z = torch.where(finite, z, torch.zeros((), dtype=dtype, device=device))
            sums = torch.cat(
                [
                    (z.T @ z).reshape(-1),
                    z.sum(0),
                    (finite.to(dtype) * z.shape[0]).reshape(1),
                    (~finite).to(dtype).reshape(1),
                ]
            )
            self._pending = sums if self._pending is None else self._pending + sums

    @property
    def has_pending(self) -> bool:
        """Whether micro-batches were accumulated since the last :meth:`finish_step`."""
        return self._pending is not None

    def reduce_pending(self) -> tuple[Tensor, Tensor]:
        """F_b of the pending micro-batches, all-reduced across ranks, and whether it is usable.

        Clears the pending sums. Runs one packed all-reduce (under ``torch.distributed`` with
        ``sync_dist``), in which every rank of the group must take part, also a rank with nothing
        pending (it contributes zeros). No host–device synchronisation: the skip decision stays on the device.

        Returns:
            ``(F_b, accepted)``: a (d, d) tensor in the estimate's dtype (meaningless when not accepted) and
            a 0-dim bool tensor, False when a value was non-finite on any rank or no row was given.
        """
        d = self.dim
        packed = self._pending
        self._pending = None
        if packed is None:
            packed = torch.zeros(d * d + d + 2, dtype=self.correlation.dtype, device=self.correlation.device)
        with torch.no_grad(), torch.autocast(device_type=packed.device.type, enabled=False):
            if self.sync_dist and distributed_world(self.process_group) > 1:
                dist.all_reduce(packed, op=dist.ReduceOp.SUM, group=self.process_group)
            n = packed[-2]
            accepted = (packed[-1] == 0) & (n >= 1)
            second = packed[: d * d].reshape(d, d) / n.clamp_min(1)
            if self.center:
                mean = packed[d * d : d * d + d] / n.clamp_min(1)
                second = second - torch.outer(mean, mean)
            return 0.5 * (second + second.T), accepted

    def finish_step(self) -> Tensor:
        """Apply the pending micro-batches as one batch: F̂ ← ρ·F̂ + (1 − ρ)·F_b (one all-reduce).

        Call once per optimizer step. Returns a 0-dim bool tensor, False when the batch was skipped (and
        counted in ``num_skipped``). No host–device synchronisation: call ``bool()`` on the result only where
        the answer is needed.
        """
        batch, accepted = self.reduce_pending()
        with torch.no_grad():
            ema = self.rho * self.correlation + (1.0 - self.rho) * batch
            blended = torch.where(self.num_updates > 0, ema, batch)  # the first batch initialises
            self.correlation.copy_(torch.where(accepted, blended, self.correlation))
            self.num_updates += accepted.long()
            self.num_skipped += (~accepted).long()
        return accepted

    def update(self, *views: Tensor) -> Tensor:
        """One batch and one running update: :meth:`accumulate` then :meth:`finish_step`."""
        self.accumulate(*views)
        return self.finish_step()

    def _apply(self, fn, recurse: bool = True):  # noqa: ANN001, ANN202 - torch signature
        # A module-wide cast (``.bfloat16()``, Lightning's "bf16-true") moves F̂ but keeps its dtype.
        kept = self.correlation
        super()._apply(fn, recurse)
        moved = self._buffers["correlation"]
        if moved.dtype != kept.dtype:
            self._buffers["correlation"] = kept.to(device=moved.device)
        if self._pending is not None:
            self._pending = self._pending.to(device=self.correlation.device)
        return self

    def extra_repr(self) -> str:
        return f"dim={self.dim}, rho={self.rho}, center={self.center}, sync_dist={self.sync_dist}"
