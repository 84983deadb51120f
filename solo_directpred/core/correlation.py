"""Running estimate of the predictor-input correlation F̂ (paper Eqn. 19)."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn


def _distributed_world(process_group: dist.ProcessGroup | None) -> int:
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
    * Under ``torch.distributed`` the batch statistic is a sample-weighted all-reduce over ranks, done
      **before** the running update, so every rank holds the same F̂ (one collective per update).
    * A batch with a non-finite value on any rank is skipped on all ranks and counted in ``num_skipped``.

    State (all in ``state_dict``): ``correlation`` (d, d), ``num_updates``, ``num_skipped``.

    Example:
        >>> stats = RunningCorrelation(dim=4, rho=0.3)
        >>> stats.update(torch.randn(8, 4), torch.randn(8, 4))
        True
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

    @property
    def initialized(self) -> bool:
        """Whether at least one batch has been accumulated."""
        return bool(self.num_updates > 0)

    def batch_statistic(self, *views: Tensor) -> tuple[Tensor, Tensor]:
        """F_b over the pooled views, all-reduced across ranks, and whether the batch is usable.

        Runs without a host–device synchronisation: the skip decision stays on the device.

        Args:
            views: tensors of shape (B_v, d); batch sizes may differ between views and ranks.

        Returns:
            ``(F_b, accepted)``: a (d, d) tensor in the estimate's dtype (meaningless when not accepted) and
            a 0-dim bool tensor, False when a value was non-finite on any rank or no row was given.
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
            d = self.dim
            # One packed buffer, one collective: [Σ z zᵀ | Σ z | n | non-finite flag].
            packed = torch.cat(
                [
                    (z.T @ z).reshape(-1),
                    z.sum(0),
                    (finite.to(dtype) * z.shape[0]).reshape(1),
                    (~finite).to(dtype).reshape(1),
                ]
            )
            if self.sync_dist and _distributed_world(self.process_group) > 1:
                dist.all_reduce(packed, op=dist.ReduceOp.SUM, group=self.process_group)
            n = packed[-2]
            accepted = (packed[-1] == 0) & (n >= 1)
            second = packed[: d * d].reshape(d, d) / n.clamp_min(1)
            if self.center:
                mean = packed[d * d : d * d + d] / n.clamp_min(1)
                second = second - torch.outer(mean, mean)
            return 0.5 * (second + second.T), accepted

    def update(self, *views: Tensor) -> Tensor:
        """Accumulate one batch; returns a 0-dim bool tensor, False when the batch was skipped (and counted).

        No host–device synchronisation: call ``bool()`` on the result only where the answer is needed.
        """
        batch, accepted = self.batch_statistic(*views)
        with torch.no_grad():
            ema = self.rho * self.correlation + (1.0 - self.rho) * batch
            blended = torch.where(self.num_updates > 0, ema, batch)  # the first batch initialises
            self.correlation.copy_(torch.where(accepted, blended, self.correlation))
            self.num_updates += accepted.long()
            self.num_skipped += (~accepted).long()
        return accepted

    def extra_repr(self) -> str:
        return f"dim={self.dim}, rho={self.rho}, center={self.center}, sync_dist={self.sync_dist}"
