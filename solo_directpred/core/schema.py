"""The settings of each component, typed, with their defaults: the one place they are written down.

* :class:`PredictorSettings` — the plugin methods' ``method_kwargs`` (kind, loss, and the analytic and
  linear predictors' keys); the analytic defaults that depend on the kind (α, ε, ρ, solver) are in
  :data:`KIND_DEFAULTS` (paper §4–5: DirectPred ρ = 0.3, ε = 0.1; DirectCopy ρ = 0.5, ε = 0.3);
* :class:`SpectralSettings` and :class:`AlarmSettings` — the ``spectral`` section of the monitor
  (docs/spectral.md);
* :class:`PreemptionSettings` — the ``preemption`` section (docs/scaling.md).

Each settings class checks itself (``check(prefix)``, raising :class:`ConfigError` as
``prefix + key=value is invalid: what is allowed``), and the code that uses the settings runs that one
check: :class:`~solo_directpred.core.AnalyticPredictor` and :class:`~solo_directpred.core.LinearPredictor`
(the Python API), the solo-learn layer on ``method_kwargs`` and ``preemption``
(:func:`solo_directpred.sololearn.methods.validate_predictor_cfg`, with the prefix ``method_kwargs.``), and
the spectral monitor (:meth:`SpectralSettings.from_section`, used by
:meth:`solo_directpred.spectral.SpectralMonitor.from_config`). :func:`check_keys` refuses a misspelt key and
names the valid ones. :func:`hydra_defaults` gives the Hydra nodes the shipped configs start from, so that
every key below overrides on the command line without ``+`` (README, "Methods" and "Spectral monitoring").

Pure Python: no torch, no Hydra.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, NoReturn

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


class ConfigError(ValueError):
    """An invalid setting: the message names the key, the value and what is allowed."""


def fail(key: str, value: Any, allowed: str) -> NoReturn:
    """Raise :class:`ConfigError` as ``key=value is invalid: allowed``."""
    raise ConfigError(f"{key}={value!r} is invalid: {allowed}")


def is_int(value: Any) -> bool:
    """An integer, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """An int or a float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_keys(
    section: Mapping[str, Any], allowed: Sequence[str], where: str, refused_later: Sequence[str] = ()
) -> None:
    """Raise :class:`ConfigError` on the first key of ``section`` not in ``allowed`` (naming those);
    ``refused_later``: keys the caller refuses itself, with a message of their own."""
    unknown = sorted(str(key) for key in section if key not in allowed and key not in refused_later)
    if unknown:
        fail(
            f"{where}.{unknown[0]}",
            section[unknown[0]],
            f"not a key of {where}; the keys are {', '.join(allowed)}",
        )


def _check_bools(settings: Any, keys: tuple[str, ...], prefix: str) -> None:
    for key in keys:
        if not isinstance(getattr(settings, key), bool):
            fail(prefix + key, getattr(settings, key), "must be true or false")


@dataclass(frozen=True)
class AnalyticSettings:
    """An analytic predictor's keys (``alpha``, ``eps``, ``rho``, ``solver``: None = the kind's default,
    :meth:`for_kind`). Paper §4, Eqn. 18; ``offset`` is Table 7's variant."""

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

    def for_kind(self, kind: str = "directpred") -> AnalyticSettings:
        """These settings with the kind's defaults (:data:`KIND_DEFAULTS`) in place of None."""
        defaults = KIND_DEFAULTS[kind]
        return replace(self, **{key: value for key, value in defaults.items() if getattr(self, key) is None})

    def check(self, prefix: str = "") -> AnalyticSettings:
        """Raise :class:`ConfigError` on the first invalid key (named ``prefix + key``); returns self.
        Needs the kind-dependent keys set (:meth:`for_kind`)."""
        if not is_number(self.alpha) or self.alpha <= 0:
            fail(prefix + "alpha", self.alpha, "must be a number > 0 (0.5 DirectPred, 1 DirectCopy)")
        if not is_number(self.rho) or not 0 <= self.rho < 1:
            fail(prefix + "rho", self.rho, "the weight on the old correlation estimate must be in [0, 1)")
        if not is_number(self.eps) or self.eps < 0:
            fail(prefix + "eps", self.eps, "must be a number >= 0")
        if not is_int(self.freq) or self.freq < 1:
            fail(prefix + "freq", self.freq, "must be an integer >= 1 (recompute W_p every freq steps)")
        _check_bools(self, ("normalize", "center", "trainable"), prefix)
        if self.offset is not None and (not is_number(self.offset) or self.alpha != 0.5):
            fail(prefix + "offset", self.offset, "must be null or a number, and needs alpha=0.5 (Table 7)")
        if self.solver not in SOLVERS:
            fail(prefix + "solver", self.solver, f"must be one of {SOLVERS}")
        matmul_only = {"newton_schulz": 0.5, "power": 1.0}
        if self.solver in matmul_only and (
            self.alpha != matmul_only[self.solver] or self.offset is not None or not self.normalize
        ):
            fail(
                prefix + "solver",
                self.solver,
                f"'{self.solver}' needs alpha={matmul_only[self.solver]:g}, normalize=true and no offset",
            )
        if self.eigh_dtype not in ("float32", "float64"):
            fail(prefix + "eigh_dtype", self.eigh_dtype, "must be 'float32' or 'float64'")
        for key in ("ns_iters", "power_iters"):
            if not is_int(getattr(self, key)) or getattr(self, key) < 1:
                fail(prefix + key, getattr(self, key), "must be an integer >= 1")
        return self


@dataclass(frozen=True)
class LinearSettings:
    """The gradient-trained linear predictor's keys (paper §4.4, Tables 1–5)."""

    bias: bool = False
    symmetric: bool = False
    lr_multiplier: float = 1.0
    weight_decay: float | None = None
    init: str = "random"

    def check(self, prefix: str = "") -> LinearSettings:
        """Raise :class:`ConfigError` on the first invalid key (named ``prefix + key``); returns self."""
        _check_bools(self, ("bias", "symmetric"), prefix)
        if not is_number(self.lr_multiplier) or self.lr_multiplier <= 0:
            fail(
                prefix + "lr_multiplier",
                self.lr_multiplier,
                "the predictor's relative learning rate alpha_p must be > 0",
            )
        if self.weight_decay is not None and (not is_number(self.weight_decay) or self.weight_decay < 0):
            allowed = "must be null (use the optimizer's) or a number >= 0"
            fail(prefix + "weight_decay", self.weight_decay, allowed)
        if self.init not in ("random", "identity"):
            fail(prefix + "init", self.init, "must be 'random' or 'identity'")
        return self


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

    def check(self, prefix: str = "") -> AlarmSettings:
        """Raise :class:`ConfigError` on the first invalid key (named ``prefix + key``); returns self."""
        for key in ("rankme_min", "zstd_min"):
            value = getattr(self, key)
            if value is not None and value != "auto" and (not is_number(value) or not value >= 0):
                fail(prefix + key, value, "must be 'auto', a number >= 0, or null to disable")
        _check_bools(self, ("stop",), prefix)
        return self


#: Metrics a run can keep its best checkpoint by (``spectral.select_by``); higher is better for each.
SELECTION_METRICS = ("lidar", "rankme", "rankme_repr", "rankme_proj")


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

    @classmethod
    def from_section(cls, section: Mapping[str, Any] | None, where: str = "spectral") -> SpectralSettings:
        """Checked settings from a config section (a dict or an OmegaConf ``DictConfig``; None: defaults),
        its keys named ``where.key`` in errors."""
        section = {} if section is None else section
        if not isinstance(section, Mapping):
            fail(where, section, "must be a mapping of settings")
        check_keys(section, cls.keys(), where)
        alarm = section.get("alarm")
        alarm = {} if alarm is None else alarm
        if not isinstance(alarm, Mapping):
            fail(f"{where}.alarm", alarm, f"must be a mapping with keys {', '.join(_names(AlarmSettings))}")
        check_keys(alarm, _names(AlarmSettings), f"{where}.alarm")
        keys = {key: value for key, value in section.items() if key != "alarm"}
        return cls(**keys, alarm=AlarmSettings(**alarm)).check(f"{where}.")

    def check(self, prefix: str = "") -> SpectralSettings:
        """Raise :class:`ConfigError` on the first invalid key (named ``prefix + key``); returns self."""
        _check_bools(self, ("enabled", "plot_in_background", "lidar", "log_panels"), prefix)
        for key, minimum in (("every_n_steps", 1), ("buffer_size", 2), ("plot_every_n_epochs", 0)):
            if not is_int(getattr(self, key)) or getattr(self, key) < minimum:
                fail(prefix + key, getattr(self, key), f"must be an integer >= {minimum}")
        if not is_int(self.rankme_samples) or self.rankme_samples < 0:
            fail(prefix + "rankme_samples", self.rankme_samples, "must be an integer >= 0 (0: off)")
        if not is_number(self.min_plot_interval_s) or not self.min_plot_interval_s >= 0:
            fail(prefix + "min_plot_interval_s", self.min_plot_interval_s, "must be a number of seconds >= 0")
        if not isinstance(self.output_key, str) or not self.output_key:
            fail(prefix + "output_key", self.output_key, "must be a non-empty string")
        if self.dirpath is not None and not isinstance(self.dirpath, (str, os.PathLike)):
            fail(prefix + "dirpath", self.dirpath, "must be a path or null")
        if self.select_by is not None and self.select_by not in SELECTION_METRICS:
            fail(
                prefix + "select_by", self.select_by, f"must be one of {', '.join(SELECTION_METRICS)} or null"
            )
        if self.select_by == "lidar" and not self.lidar:
            fail(prefix + "select_by", self.select_by, "needs its metric: lidar = true")
        if self.select_by in ("rankme_repr", "rankme_proj") and not self.rankme_samples:
            fail(prefix + "select_by", self.select_by, "needs its metric: rankme_samples > 0")
        self.alarm.check(prefix + "alarm.")
        return self


@dataclass(frozen=True)
class PreemptionSettings:
    """The ``preemption`` section of the plugin's methods (docs/scaling.md)."""

    on_sigterm: bool = True
    every_n_steps: int = 1000  # 0: no periodic checkpoint

    def check(self, prefix: str = "") -> PreemptionSettings:
        """Raise :class:`ConfigError` on the first invalid key (named ``prefix + key``); returns self."""
        _check_bools(self, ("on_sigterm",), prefix)
        if not is_int(self.every_n_steps) or self.every_n_steps < 0:
            allowed = "must be an integer >= 0 (0: no periodic checkpoint)"
            fail(prefix + "every_n_steps", self.every_n_steps, allowed)
        return self


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
