"""The settings of each component, typed, with their defaults: the one place they are written down.

* :class:`PredictorSettings` — the plugin methods' ``method_kwargs`` (kind, loss, and the analytic and
  linear predictors' keys); the analytic defaults that depend on the kind (α, ε, ρ, solver) are in
  :data:`KIND_DEFAULTS` (paper §4–5: DirectPred ρ = 0.3, ε = 0.1; DirectCopy ρ = 0.5, ε = 0.3);
* :class:`SpectralSettings` and :class:`AlarmSettings` — the ``spectral`` section of the monitor
  (docs/spectral.md);
* :class:`PreemptionSettings` — the ``preemption`` section (docs/scaling.md).

The solo-learn layer validates ``method_kwargs`` against :class:`PredictorSettings`
(:func:`solo_directpred.sololearn.methods.validate_predictor_cfg`), the monitor builds itself from
:class:`SpectralSettings` (:meth:`solo_directpred.spectral.SpectralMonitor.from_config`), and
:func:`hydra_defaults` gives the Hydra nodes the shipped configs start from, so that every key below
overrides on the command line without ``+`` (README, "Methods" and "Spectral monitoring").

Pure Python: no torch, no Hydra.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

PREDICTOR_KINDS = ("directpred", "directcopy", "directset", "linear", "none")
LOSSES = ("cosine", "euclidean", "isoloss", "isoloss_euclidean")
ISOLOSSES = ("isoloss", "isoloss_euclidean")
SOLVERS = ("eigh", "newton_schulz", "power", "auto")

#: The analytic defaults that depend on the predictor kind.
KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "directpred": {"alpha": 0.5, "eps": 0.1, "rho": 0.3, "solver": "eigh"},
    "directcopy": {"alpha": 1.0, "eps": 0.3, "rho": 0.5, "solver": "power"},
    "directset": {"alpha": 0.5, "eps": 0.1, "rho": 0.3, "solver": "eigh"},
}


@dataclass(frozen=True)
class AnalyticSettings:
    """An analytic predictor's keys (``alpha``, ``eps``, ``rho``, ``solver``: None = the kind's default)."""

    alpha: float | None = None
    eps: float | None = None
    rho: float | None = None
    solver: str | None = None
    freq: int = 1
    normalize: bool = True
    offset: float | None = None
    center: bool = False
    eigh_dtype: str = "float32"
    ns_iters: int = 24
    power_iters: int = 24
    trainable: bool = False


@dataclass(frozen=True)
class LinearSettings:
    """The gradient-trained linear predictor's keys."""

    bias: bool = False
    symmetric: bool = False
    lr_multiplier: float = 1.0
    weight_decay: float | None = None
    init: str = "random"


@dataclass(frozen=True)
class PredictorSettings:
    """``method_kwargs`` of the plugin's methods beyond the projector sizes (``predictor``: None = the
    method's own kind)."""

    predictor: str | None = None
    loss: str = "cosine"
    analytic: AnalyticSettings = field(default_factory=AnalyticSettings)
    linear: LinearSettings = field(default_factory=LinearSettings)

    @staticmethod
    def keys() -> tuple[str, ...]:
        """Every key, flat, as ``method_kwargs`` holds them."""
        return ("predictor", "loss", *_names(AnalyticSettings), *_names(LinearSettings))

    @staticmethod
    def flat_defaults() -> dict[str, Any]:
        """Key → default, flat (None where the kind decides)."""
        return {
            "predictor": None,
            "loss": "cosine",
            **asdict(AnalyticSettings()),
            **asdict(LinearSettings()),
        }


#: The projector sizes the plugin's methods require in ``method_kwargs`` besides :class:`PredictorSettings`.
PROJECTOR_KEYS = ("proj_hidden_dim", "proj_output_dim")


@dataclass(frozen=True)
class AlarmSettings:
    """``spectral.alarm``: thresholds ``"auto"`` (relative to d), a number, or None (off)."""

    rankme_min: float | str | None = "auto"
    zstd_min: float | str | None = "auto"
    stop: bool = False


@dataclass(frozen=True)
class SpectralSettings:
    """The ``spectral`` section (docs/spectral.md)."""

    enabled: bool = True
    every_n_steps: int = 100
    buffer_size: int = 2048
    plot_every_n_epochs: int = 1
    dirpath: str | None = None
    output_key: str = "z"
    plot_in_background: bool = True
    min_plot_interval_s: float = 300.0
    lidar: bool = True
    rankme_samples: int = 25_600  # the RankMe paper's sample count (§4)
    log_panels: bool = True
    select_by: str | None = None
    alarm: AlarmSettings = field(default_factory=AlarmSettings)

    @staticmethod
    def keys() -> tuple[str, ...]:
        return _names(SpectralSettings)


@dataclass(frozen=True)
class PreemptionSettings:
    """The ``preemption`` section of the plugin's methods (docs/scaling.md)."""

    on_sigterm: bool = True
    every_n_steps: int = 1000  # 0: no periodic checkpoint


def _names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def hydra_defaults(method_kwargs: bool = True, spectral_enabled: bool = True) -> dict[str, Any]:
    """The Hydra node the shipped configs list first in their defaults: every documented key
    (``method_kwargs``, ``preemption``, ``spectral``), so that it overrides without ``+``.
    ``method_kwargs=False`` gives the ``spectral`` section alone (upstream methods, whose monitor is off
    unless ``spectral.enabled=true``)."""
    node: dict[str, Any] = {"spectral": {**asdict(SpectralSettings()), "enabled": spectral_enabled}}
    if method_kwargs:
        node["method_kwargs"] = PredictorSettings.flat_defaults()
        node["preemption"] = asdict(PreemptionSettings())
    return node
