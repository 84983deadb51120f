"""Spectral monitoring for upstream solo-learn methods (``byol``, ``simsiam``) without editing them.

Upstream's ``training_step`` returns a bare loss, so a callback never sees the projector outputs. The
subclass built here records the online projections of the large crops while ``training_step`` runs and
returns ``{"loss": loss, "z": [z_1, z_2], "feats": [f_1, f_2]}``; ``configure_callbacks`` adds the
:class:`~solo_directpred.spectral.callback.SpectralMonitor` built from the ``spectral`` config section. The
predictor metrics are skipped (the upstream predictor is an MLP); the embedding metrics are logged.
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import OmegaConf

#: Upstream methods the monitor can be switched on for with ``spectral.enabled: true``.
MONITORABLE = ("byol", "simsiam")
_CACHE: dict[type, type] = {}


def monitored(method_cls: type) -> type:
    """A subclass of an upstream solo-learn method that exposes ``z`` to callbacks and adds the monitor."""
    if method_cls in _CACHE:
        return _CACHE[method_cls]

    class Monitored(method_cls):
        def __init__(self, cfg: Any) -> None:
            super().__init__(cfg)
            self.spectral_cfg = OmegaConf.to_container(cfg.spectral, resolve=True)
            self._captured: list[tuple[torch.Tensor, torch.Tensor]] | None = None

        def forward(self, X: torch.Tensor) -> dict[str, Any]:
            out = super().forward(X)
            if self._captured is not None:
                self._captured.append((out["z"].detach(), out["feats"].detach()))
            return out

        def training_step(self, batch: Any, batch_idx: int) -> dict[str, Any]:
            self._captured = []
            try:
                loss = super().training_step(batch, batch_idx)
                large = self._captured[: self.num_large_crops]
                return {"loss": loss, "z": [z for z, _ in large], "feats": [f for _, f in large]}
            finally:
                self._captured = None

        def configure_callbacks(self) -> list:
            from solo_directpred.sololearn.methods import spectral_callbacks

            return spectral_callbacks(self.spectral_cfg)

    Monitored.__name__ = Monitored.__qualname__ = f"Monitored{method_cls.__name__}"
    _CACHE[method_cls] = Monitored
    return Monitored


def enable_for_upstream(config: Any) -> bool:
    """Swap ``METHODS[config.method]`` for its monitored subclass when ``spectral.enabled`` is true.

    Returns True if a swap happened. Methods of this plugin monitor themselves; other upstream methods are
    left alone.
    """
    method = OmegaConf.select(config, "method", default=None)
    if method not in MONITORABLE or OmegaConf.select(config, "spectral.enabled", default=False) is not True:
        return False
    from solo.methods import METHODS

    upstream = METHODS[method]
    base = next((c for c, m in _CACHE.items() if m is upstream), upstream)
    METHODS[method] = monitored(base)
    return True
