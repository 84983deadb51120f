"""solo-learn methods with a linear predictor: analytic (DirectPred, DirectCopy, DirectSet(α)) or trained.

The paper's grid is covered by two classes and one config key:

==========================  ===========================  =====================================
method name                 target                       ``method_kwargs.predictor`` default
==========================  ===========================  =====================================
``directpred``              EMA network (BYOL-style)     ``directpred``  (α = ½)
``directcopy``              EMA network                  ``directcopy``  (α = 1, power path)
``linear_pred``             EMA network                  ``linear``      (gradient-trained)
``directpred_noema``        sg(online) (SimSiam-style)   ``directpred``
``directcopy_noema``        sg(online)                   ``directcopy``
``linear_pred_noema``       sg(online)                   ``linear``
==========================  ===========================  =====================================

``method_kwargs.predictor`` may be set explicitly to any of ``directpred``, ``directcopy``, ``directset``
(any α), ``linear`` or ``none`` (W_p = I, the no-predictor ablation) in any of them. The projector is the
paper's Linear–BN–ReLU–Linear MLP. The loss is symmetrised, Σ_{v≠v′} L(z_v, W_p z_v, sg(z′_{v′})), with L
chosen by ``method_kwargs.loss``: ``cosine`` (default, 2 − 2 cos), ``euclidean``, ``isoloss`` or
``isoloss_euclidean`` (docs/losses.md; the IsoLoss
forms need an analytic, non-trainable W_p). Analytic statistics are gathered in ``training_step`` only, after
the loss is built, and applied once per optimizer step in ``optimizer_step``: under
``accumulate_grad_batches=k`` the k micro-batches pool into one running update, every one of them predicts
with the same W_p (from the statistics up to the previous optimizer step), and ``freq`` counts optimizer
steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import omegaconf
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from solo.methods.base import BaseMethod, BaseMomentumMethod
from solo.utils.momentum import initialize_momentum_params
from torch import nn

from solo_directpred.core import AnalyticPredictor, IdentityPredictor, LinearPredictor
from solo_directpred.core.losses import symmetric_prediction_loss
from solo_directpred.core.schema import (
    ISOLOSSES,
    LOSSES,
    PREDICTOR_KINDS,
    PROJECTOR_KEYS,
    AnalyticSettings,
    LinearSettings,
    PredictorSettings,
    check_keys,
    fail,
    is_int,
)
from solo_directpred.core.schema import ConfigError as ConfigError  # re-exported: every config check's error

#: Every key the plugin's methods accept in ``method_kwargs``.
METHOD_KWARGS = (*PROJECTOR_KEYS, *PredictorSettings.keys())


def _select(cfg: omegaconf.DictConfig, key: str, default: Any) -> Any:
    value = OmegaConf.select(cfg, key, default=default)
    return default if value is None and default is not None else value


def _settings(cfg: omegaconf.DictConfig, cls: type[AnalyticSettings | LinearSettings]) -> Any:
    """``cls`` from ``method_kwargs`` (its defaults for missing or null keys)."""
    defaults = asdict(cls())
    return cls(**{key: _select(cfg, f"method_kwargs.{key}", value) for key, value in defaults.items()})


def validate_predictor_cfg(cfg: omegaconf.DictConfig, default_kind: str) -> omegaconf.DictConfig:
    """Fill the predictor defaults of ``cfg.method_kwargs`` and check every value (raises ConfigError)."""
    kw = cfg.method_kwargs
    check_keys(kw, METHOD_KWARGS, "method_kwargs", refused_later=("pred_hidden_dim",))
    for key in PROJECTOR_KEYS:
        if OmegaConf.is_missing(kw, key) or key not in kw:
            fail(f"method_kwargs.{key}", None, "required, a positive integer")
        if not is_int(kw[key]) or kw[key] < 1:
            fail(f"method_kwargs.{key}", kw[key], "must be a positive integer")
    kind = _select(cfg, "method_kwargs.predictor", default_kind)
    if kind not in PREDICTOR_KINDS:
        fail("method_kwargs.predictor", kind, f"must be one of {PREDICTOR_KINDS}")
    kw.predictor = kind
    if _select(cfg, "method_kwargs.pred_hidden_dim", None) is not None:
        fail(
            "method_kwargs.pred_hidden_dim",
            kw.pred_hidden_dim,
            f"the '{kind}' predictor is linear (proj_output_dim x proj_output_dim = "
            f"{kw.proj_output_dim}x{kw.proj_output_dim}); remove the key, "
            "or use upstream byol/simsiam for an MLP predictor",
        )
    if kind == "none":
        return cfg  # W_p = I: nothing to configure
    if kind == "linear":
        settings = _settings(cfg, LinearSettings).check("method_kwargs.")
    else:
        settings = _settings(cfg, AnalyticSettings).for_kind(kind)
        for fixed_kind, alpha in (("directpred", 0.5), ("directcopy", 1.0)):
            if kind == fixed_kind and settings.alpha != alpha:
                fail(
                    "method_kwargs.alpha",
                    settings.alpha,
                    f"the '{kind}' predictor has alpha={alpha:g}; use predictor=directset for another power",
                )
        settings.check("method_kwargs.")
    kw.update(asdict(settings))
    return cfg


def validate_loss_cfg(cfg: omegaconf.DictConfig) -> omegaconf.DictConfig:
    """Fill and check ``method_kwargs.loss`` (after :func:`validate_predictor_cfg`; raises ConfigError)."""
    kw = cfg.method_kwargs
    kw.loss = _select(cfg, "method_kwargs.loss", "cosine")
    if kw.loss not in LOSSES:
        fail("method_kwargs.loss", kw.loss, f"must be one of {LOSSES}")
    if kw.loss in ISOLOSSES and (kw.predictor in ("linear", "none") or kw.trainable):
        got = f"predictor={kw.predictor}" + ("" if kw.predictor in ("linear", "none") else ", trainable=true")
        fail(
            "method_kwargs.loss",
            kw.loss,
            "IsoLoss needs the fixed symmetric PSD W_p of an analytic predictor (predictor=directpred, "
            f"directcopy or directset with trainable=false; got {got}); with this predictor use "
            "loss='cosine' or 'euclidean'",
        )
    return cfg


def validate_spectral_cfg(cfg: omegaconf.DictConfig) -> omegaconf.DictConfig:
    """Fill ``cfg.spectral`` (the monitor's section) with its defaults; the monitor checks the rest."""
    cfg.spectral = _select(cfg, "spectral", {})
    cfg.spectral.enabled = _select(cfg, "spectral.enabled", True)
    if not isinstance(cfg.spectral.enabled, bool):
        fail("spectral.enabled", cfg.spectral.enabled, "must be true or false")
    return cfg


def spectral_callbacks(section: dict[str, Any]) -> list:
    """The monitor (and its ``select_by`` checkpoint) from a ``spectral`` section; ``[]`` when disabled."""
    from solo_directpred.spectral.callback import build_callbacks

    return build_callbacks(section)


def build_predictor(kw: omegaconf.DictConfig) -> nn.Module:
    """The predictor module described by validated ``method_kwargs``."""
    dim = int(kw.proj_output_dim)
    if kw.predictor == "none":
        return IdentityPredictor(dim)
    if kw.predictor == "linear":
        return LinearPredictor(dim, **{key: kw[key] for key in asdict(LinearSettings())})
    return AnalyticPredictor(dim, AnalyticSettings(**{key: kw[key] for key in asdict(AnalyticSettings())}))


def build_projector(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """The paper's projector: Linear → BatchNorm → ReLU → Linear."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(),
        nn.Linear(hidden_dim, out_dim),
    )


class _LinearPredictorMixin:
    """What the EMA and the no-EMA variants share: projector, predictor, loss, statistics, hooks."""

    DEFAULT_PREDICTOR = "directpred"
    predictor: nn.Module
    projector: nn.Sequential

    def _build_heads(self, cfg: omegaconf.DictConfig) -> None:
        kw = cfg.method_kwargs
        self.projector = build_projector(self.features_dim, kw.proj_hidden_dim, kw.proj_output_dim)
        self.predictor = build_predictor(kw)
        self.loss_kind = kw.loss
        self.spectral_cfg = OmegaConf.to_container(cfg.spectral, resolve=True)

    @classmethod
    def add_and_assert_specific_cfg(cls, cfg: omegaconf.DictConfig) -> omegaconf.DictConfig:
        """The parent's defaults and checks, then the predictor, loss and spectral sections'."""
        cfg = super().add_and_assert_specific_cfg(cfg)
        return validate_spectral_cfg(validate_loss_cfg(validate_predictor_cfg(cfg, default_kind(cfg))))

    @property
    def is_analytic(self) -> bool:
        return isinstance(self.predictor, AnalyticPredictor)

    @property
    def learnable_params(self) -> list[dict]:
        """The parent's groups (backbone, online classifier), then the projector's and predictor's."""
        groups = super().learnable_params + [{"name": "projector", "params": self.projector.parameters()}]
        if isinstance(self.predictor, LinearPredictor):
            groups += self.predictor.param_groups(lr=self.lr, weight_decay=self.weight_decay)
        elif self.is_analytic and self.predictor.trainable:
            groups.append({"name": "predictor", "params": self.predictor.parameters()})
        return groups

    def _project(self, out: dict[str, Any]) -> dict[str, Any]:
        z = self.projector(out["feats"])
        out.update({"z": z, "p": self.predictor(z)})
        return out

    def forward(self, X: torch.Tensor) -> dict[str, Any]:
        """Backbone → projector z → predictor p (the parent adds feats and the online logits)."""
        return self._project(super().forward(X))

    def multicrop_forward(self, X: torch.Tensor) -> dict[str, Any]:
        return self._project(super().multicrop_forward(X))

    def _predictor_step(self, out: dict[str, Any], targets: list[torch.Tensor]) -> torch.Tensor:
        """Loss of this micro-batch, then its analytic statistics (applied in ``optimizer_step``); logs."""
        Z, P = out["z"], out["p"]
        loss = symmetric_prediction_loss(P, targets, self.loss_kind, Z)
        if self.is_analytic:
            self.predictor.accumulate(*Z[: self.num_large_crops])
        with torch.no_grad():
            z_std = F.normalize(torch.stack(Z[: self.num_large_crops]), dim=-1).std(dim=1).mean()
            metrics = {"train_neg_cos_sim": loss, "train_z_std": z_std}
            if self.loss_kind != "cosine":  # the cosine loss stays logged, comparable across losses
                metrics.update(train_neg_cos_sim=symmetric_prediction_loss(P, targets), train_loss=loss)
        self.log_dict(metrics, on_epoch=True, sync_dist=True)
        if self.is_analytic:
            # Running counts, identical on every rank (the statistics are all-reduced): logged per step,
            # with no collective and no epoch mean.
            counters = {
                "predictor_skipped_batches": self.predictor.stats.num_skipped.float(),
                "predictor_eigh_fallbacks": self.predictor.num_fallbacks.float(),
                "predictor_collapsed_updates": self.predictor.num_collapsed.float(),
            }
            self.log_dict(counters, on_step=True, on_epoch=False, sync_dist=False)
        return loss

    def _step_output(self, loss: torch.Tensor, out: dict[str, Any]) -> dict[str, Any]:
        """The loss, plus the detached projections and representations of the large crops for callbacks."""
        large = slice(0, self.num_large_crops)
        return {
            "loss": loss,
            "z": [z.detach() for z in out["z"][large]],
            "feats": [f.detach() for f in out["feats"][large]],
        }

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """The optimizer step (its closure runs the last micro-batch), then the predictor's own step.

        Lightning calls this hook once per optimizer step, after the last of ``accumulate_grad_batches``
        micro-batches: the analytic predictor's running statistics and W_p change here, never between
        micro-batches, and a symmetric linear predictor is symmetrised here, W ← (W + Wᵀ)/2.
        """
        super().optimizer_step(*args, **kwargs)
        if self.is_analytic:
            self.predictor.finish_step()
        elif isinstance(self.predictor, LinearPredictor):
            self.predictor.symmetrize()

    def linear_predictor_weight(self) -> torch.Tensor | None:
        """W_p (d × d) as the next forward uses it, for the spectral monitor.

        Callbacks' ``on_train_batch_end`` runs before the module's, where a symmetric trained predictor is
        symmetrised: the monitor gets (W + Wᵀ)/2, the matrix the next step predicts with.
        """
        weight = self.predictor.weight.detach()
        if isinstance(self.predictor, LinearPredictor) and self.predictor.symmetric:
            return 0.5 * (weight + weight.T)
        return weight

    def configure_callbacks(self) -> list:
        from solo_directpred.sololearn.preemption import preemption_callbacks

        return spectral_callbacks(self.spectral_cfg) + preemption_callbacks(self.cfg)


class DirectPred(_LinearPredictorMixin, BaseMomentumMethod):
    """BYOL-style method (EMA target) with a linear predictor, analytic by default (DirectPred).

    Extra cfg settings:
        method_kwargs:
            proj_hidden_dim (int), proj_output_dim (int): projector sizes (d = proj_output_dim).
            predictor (str): directpred | directcopy | directset | linear.
            loss (str): cosine (default) | euclidean | isoloss | isoloss_euclidean (docs/losses.md).
            analytic: rho, eps, alpha, freq, normalize, offset, center, solver, eigh_dtype, ns_iters,
                power_iters, trainable (see ``AnalyticPredictor``).
            linear: bias, symmetric, lr_multiplier (α_p), weight_decay, init.
        spectral: the spectral monitor's section (``enabled`` true by default).
    """

    def __init__(self, cfg: omegaconf.DictConfig):
        super().__init__(cfg)
        self._build_heads(cfg)
        kw = cfg.method_kwargs
        self.momentum_projector = build_projector(self.features_dim, kw.proj_hidden_dim, kw.proj_output_dim)
        initialize_momentum_params(self.projector, self.momentum_projector)

    @property
    def momentum_pairs(self) -> list[tuple[Any, Any]]:
        return super().momentum_pairs + [(self.projector, self.momentum_projector)]

    @torch.no_grad()
    def momentum_forward(self, X: torch.Tensor) -> dict[str, Any]:
        out = super().momentum_forward(X)
        out.update({"z": self.momentum_projector(out["feats"])})
        return out

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> dict[str, Any]:
        out = super().training_step(batch, batch_idx)
        loss = self._predictor_step(out, out["momentum_z"][: self.num_large_crops])
        return self._step_output(loss + out["loss"], out)


class DirectPredNoEMA(_LinearPredictorMixin, BaseMethod):
    """SimSiam-style variant: the target is the detached online projection; no momentum network is built.

    Same cfg settings as :class:`DirectPred` (no ``momentum`` section is used).
    """

    def __init__(self, cfg: omegaconf.DictConfig):
        super().__init__(cfg)
        self._build_heads(cfg)

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> dict[str, Any]:
        out = super().training_step(batch, batch_idx)
        loss = self._predictor_step(out, [z.detach() for z in out["z"][: self.num_large_crops]])
        return self._step_output(loss + out["loss"], out)


#: Registered method names → (class, default predictor kind).
METHOD_TABLE: dict[str, tuple[type, str]] = {
    "directpred": (DirectPred, "directpred"),
    "directcopy": (DirectPred, "directcopy"),
    "linear_pred": (DirectPred, "linear"),
    "directpred_noema": (DirectPredNoEMA, "directpred"),
    "directcopy_noema": (DirectPredNoEMA, "directcopy"),
    "linear_pred_noema": (DirectPredNoEMA, "linear"),
}


def default_kind(cfg: omegaconf.DictConfig) -> str:
    """The predictor kind a method name implies (``directpred`` for names outside the table)."""
    return METHOD_TABLE.get(str(cfg.method), (None, "directpred"))[1]
