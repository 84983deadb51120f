"""``SpectralMonitor``: a Lightning callback that measures the paper's Fig. 2 quantities during training,
with a collapse alarm and label-free checkpoint selection (docs/spectral.md; the class docstring says what it
reads, when it runs and what it writes).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
import warnings
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from solo_directpred.core.schema import SELECTION_METRICS, AlarmSettings, SpectralSettings, fail
from solo_directpred.spectral import alarm
from solo_directpred.spectral.loggers import log_histograms, log_image, read_png
from solo_directpred.spectral.metrics import SpectralSnapshot, rankme, spectral_snapshot
from solo_directpred.spectral.records import PLOT_FILE, RECORDS_FILE, RecordWriter, make_record, write_meta

#: The defaults of every setting (:class:`~solo_directpred.core.schema.SpectralSettings` owns them and
#: their checks).
DEFAULTS = SpectralSettings()
#: Rows of representations for the epoch-end RankMe: the sample count of the RankMe paper (§4).
RANKME_SAMPLES = DEFAULTS.rankme_samples
#: Seconds :meth:`SpectralMonitor.on_train_end` waits for a background redraw before drawing the last one.
PLOT_WAIT_S = 120.0
#: The tag of the panels in image-capable loggers.
PANELS_TAG = "spectral/panels"


class CollapseWarning(UserWarning):
    """Emitted by :class:`SpectralMonitor` on a collapse (RankMe, z-std below threshold) or divergence."""


class _Rows:
    """The last ``capacity`` rows of a stream of (B, k) tensors with optional (B,) labels, by reference."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.chunks: deque[tuple[Tensor, Tensor | None]] = deque()
        self.count = 0

    def append(self, rows: Tensor, labels: Tensor | None = None) -> None:
        self.chunks.append((rows, labels))
        self.count += rows.shape[0]
        while self.chunks and self.count - self.chunks[0][0].shape[0] >= self.capacity:
            self.count -= self.chunks.popleft()[0].shape[0]

    def tensors(self, device: torch.device) -> tuple[Tensor | None, Tensor | None]:
        """The kept rows as one float32 tensor, and their labels (None if any lacks them)."""
        if not self.chunks:
            return None, None
        widths = {rows.shape[-1] for rows, _ in self.chunks}
        if len(widths) > 1:
            raise ValueError(f"SpectralMonitor: the outputs changed width during training: {sorted(widths)}")
        rows = torch.cat([r.to(device=device, dtype=torch.float32) for r, _ in self.chunks])[-self.capacity :]
        if any(labels is None for _, labels in self.chunks):
            return rows, None
        labels = torch.cat([lab.to(device=device, dtype=torch.int64) for _, lab in self.chunks])
        return rows, labels[-self.capacity :]


def selection_checkpoint(metric: str, dirpath: str | os.PathLike | None = None) -> ModelCheckpoint:
    """A ``ModelCheckpoint`` keeping the checkpoint of highest ``spectral/<metric>`` (label-free selection).

    Args:
        metric: one of :data:`SELECTION_METRICS` (``lidar``, ``rankme``, ``rankme_repr``, ``rankme_proj``).
        dirpath: where the checkpoint goes; None: Lightning's default (``<log_dir>/checkpoints``).
    """
    if metric not in SELECTION_METRICS:
        fail("select_by", metric, f"must be one of {', '.join(SELECTION_METRICS)}")
    return ModelCheckpoint(
        dirpath=dirpath,
        monitor=f"spectral/{metric}",
        mode="max",
        save_top_k=1,
        filename=f"best-{metric}-{{epoch}}-{{step}}",
        auto_insert_metric_name=False,
    )


class SpectralMonitor(Callback):
    """Log the spectra of the embeddings and of the linear predictor every ``every_n_steps`` steps.

    What it reads (the contract with the LightningModule), in ``on_train_batch_end``:

    * the projector outputs, from the ``training_step`` output dict: key ``output_key`` (``"z"``, as
      solo-learn's methods return), a list of (B, d) tensors, one per view, or a single (…, d) tensor; all
      views are pooled;
    * the backbone representations, key ``"feats"`` in the same layout (optional: the epoch-end RankMe of
      the representations needs them);
    * each row's image index, for LiDAR: ``outputs["indexes"]``, or else the first element of a solo-learn
      batch ``(indexes, [views...], labels)``; views of one image share it;
    * the linear predictor W_p (d × d, acting as ``W_p z``) as the next forward will use it, from
      ``pl_module.linear_predictor_weight()`` when the module has that method and it returns a tensor;
      otherwise only the embedding metrics are logged.

    When it runs: it keeps the last ``buffer_size`` rows of projector outputs of each rank (references to
    the detached tensors, no copy, no device transfer). At every ``trainer.global_step`` that is a multiple
    of ``every_n_steps`` all ranks gather their buffers (padded ``all_gather``), rank 0 computes the metrics
    in float64 (:func:`~solo_directpred.spectral.metrics.spectral_snapshot`) and broadcasts the scalars, so
    that every rank logs the same values and takes the same stop decision. Rank 0 writes the loggers
    (``log_metrics`` at Lightning's logging step, so CSV, TensorBoard and W&B all get them; TensorBoard and
    W&B also get the spectra as histograms) and the spectral log; the scalars also go to
    ``trainer.callback_metrics`` (``pl_module.log(…, logger=False)``) so ``EarlyStopping`` or
    ``ModelCheckpoint`` can monitor them. At every epoch end the same happens for ``rankme_repr`` and
    ``rankme_proj``: RankMe of the last ``rankme_samples`` rows (all ranks together) of the first view's
    backbone representations and projector outputs.

    Files, in ``dirpath`` (default ``<trainer.log_dir or default_root_dir>/spectral``): ``spectra.jsonl``
    (full spectra, one flushed line per measurement), ``meta.json`` and ``spectral.png`` (redrawn every
    ``plot_every_n_epochs`` epochs but not more often than every ``min_plot_interval_s`` seconds, in a
    background process by default, and once more at the end of fit; each finished drawing goes to the
    TensorBoard and W&B loggers as the image ``spectral/panels``). ``solo-directpred spectral plot RUN_DIR``
    redraws it from the log.

    The collapse alarm (``docs/spectral.md``): a measurement warns with a :class:`CollapseWarning` naming
    the metric, its value, the threshold and the step when RankMe < ``rankme_min`` or z-std < ``zstd_min``
    (``"auto"``: thresholds relative to d, see :mod:`~solo_directpred.spectral.alarm`), or when no
    buffered projection is finite (the run diverged). ``stop_on_collapse`` also stops the run.

    Cost: ``benchmarks/spectral_overhead.py`` prints the measured share of training time with everything on
    and the per-measurement cost for several d; see ``docs/spectral.md``.

    Args:
        every_n_steps: measure at every multiple of this many optimizer steps (≥ 1).
        buffer_size: rows of recent projector outputs per rank (views pooled) used for a measurement (≥ 2).
        plot_every_n_epochs: redraw the PNG every this many epochs; 0 never draws during training.
        rankme_min: alarm when RankMe < this; "auto" (default) for the d-relative default, None: off.
        zstd_min: alarm when z-std < this; "auto" (default) for the d-relative default, None: off.
        stop_on_collapse: on an alarm, also set ``trainer.should_stop``.
        dirpath: where the spectral files go; None for the default above.
        output_key: the key of the projector outputs in the ``training_step`` output dict.
        plot_in_background: draw the per-epoch PNG in a separate process so training does not wait for it.
        min_plot_interval_s: skip an epoch-end redraw if the previous one started less than this many
            seconds ago (short epochs would otherwise spend CPU on drawing); the end of fit always redraws.
        lidar: compute LiDAR at each measurement (needs the image indexes; skipped with a warning without).
        rankme_samples: rows (all ranks together) for the epoch-end RankMe of the representations and of
            the projector outputs (default 25,600, the RankMe paper's); 0 turns it off.
        log_panels: send the panels and the spectra to the TensorBoard and W&B loggers.
        select_by: with :func:`build_callbacks`, also keep the best checkpoint by this metric (one of
            :data:`SELECTION_METRICS`), or None.
        config_prefix: the prefix of the settings' names in error messages (``"spectral."`` gives
            ``spectral.every_n_steps``). Errors name the alarm's arguments by their settings:
            ``alarm.rankme_min``, ``alarm.zstd_min`` and ``alarm.stop`` (``stop_on_collapse``).

    Raises:
        ConfigError: a value the settings do not allow (``SpectralSettings.check`` in
            :mod:`solo_directpred.core.schema`); a ``ValueError``.

    Example::

        from lightning.pytorch import Trainer
        from solo_directpred.spectral import SpectralMonitor, selection_checkpoint

        monitor = SpectralMonitor(every_n_steps=100, stop_on_collapse=True)
        trainer = Trainer(callbacks=[monitor, selection_checkpoint("lidar")])
    """

    def __init__(
        self,
        every_n_steps: int = DEFAULTS.every_n_steps,
        buffer_size: int = DEFAULTS.buffer_size,
        plot_every_n_epochs: int = DEFAULTS.plot_every_n_epochs,
        rankme_min: float | str | None = DEFAULTS.alarm.rankme_min,
        zstd_min: float | str | None = DEFAULTS.alarm.zstd_min,
        stop_on_collapse: bool = DEFAULTS.alarm.stop,
        dirpath: str | os.PathLike | None = DEFAULTS.dirpath,
        output_key: str = DEFAULTS.output_key,
        plot_in_background: bool = DEFAULTS.plot_in_background,
        min_plot_interval_s: float = DEFAULTS.min_plot_interval_s,
        lidar: bool = DEFAULTS.lidar,
        rankme_samples: int = DEFAULTS.rankme_samples,
        log_panels: bool = DEFAULTS.log_panels,
        select_by: str | None = DEFAULTS.select_by,
        config_prefix: str = "",
    ) -> None:
        super().__init__()
        settings = SpectralSettings(
            every_n_steps=every_n_steps,
            buffer_size=buffer_size,
            plot_every_n_epochs=plot_every_n_epochs,
            dirpath=dirpath,
            output_key=output_key,
            plot_in_background=plot_in_background,
            min_plot_interval_s=min_plot_interval_s,
            lidar=lidar,
            rankme_samples=rankme_samples,
            log_panels=log_panels,
            select_by=select_by,
            alarm=AlarmSettings(rankme_min, zstd_min, stop_on_collapse),
        ).check(config_prefix)
        self.every_n_steps = settings.every_n_steps
        self.buffer_size = settings.buffer_size
        self.plot_every_n_epochs = settings.plot_every_n_epochs
        self.rankme_min, self.zstd_min = (
            value if value is None or value == alarm.AUTO else float(value)
            for value in (settings.alarm.rankme_min, settings.alarm.zstd_min)
        )
        self.stop_on_collapse = settings.alarm.stop
        self.plot_in_background = settings.plot_in_background
        self.min_plot_interval_s = float(settings.min_plot_interval_s)
        self.lidar = settings.lidar
        self.rankme_samples = settings.rankme_samples
        self.log_panels = settings.log_panels
        self.select_by = settings.select_by
        self.output_key = settings.output_key
        self.dirpath = None if settings.dirpath is None else Path(settings.dirpath)
        self.log_prefix = "spectral/"

        self.last_step = -1
        self.alarm_active = False
        self.num_alarms = 0
        self.last_scalars: dict[str, float] = {}

        self._buffer = _Rows(self.buffer_size)
        self._representations = _Rows(self.rankme_samples)
        self._projections = _Rows(self.rankme_samples)
        self._spectral_dir: Path | None = None
        self._writer: RecordWriter | None = None
        self._plot_process: subprocess.Popen | None = None
        self._records_since_plot = 0
        self._last_plot_start = -math.inf
        self._panels_step: int | None = None
        self._warned: set[str] = set()

    @classmethod
    def from_config(
        cls, cfg_section: Mapping[str, Any] | None, prefix: str = "spectral"
    ) -> SpectralMonitor | None:
        """Build the monitor from a solo-learn style config section; None when ``enabled`` is false.

        Keys (all optional): those of :class:`~solo_directpred.core.schema.SpectralSettings`, which holds
        their defaults, with the alarm's under ``alarm`` (``rankme_min``, ``zstd_min``, ``stop``).
        docs/spectral.md describes each.

        Args:
            cfg_section: a mapping (dict or OmegaConf ``DictConfig``), or None for all defaults.
            prefix: the section's name, used in error messages (``spectral.every_n_steps=0 is invalid: …``).

        Raises:
            ConfigError: naming the key, the bad value and what is allowed (a ``ValueError``).
        """
        settings = SpectralSettings.from_section(cfg_section, prefix)
        if not settings.enabled:
            return None
        options = {key: getattr(settings, key) for key in SpectralSettings.keys()}
        del options["enabled"], options["alarm"]
        thresholds = settings.alarm
        return cls(
            **options,
            rankme_min=thresholds.rankme_min,
            zstd_min=thresholds.zstd_min,
            stop_on_collapse=thresholds.stop,
            config_prefix=f"{prefix}.",
        )

    @property
    def state_key(self) -> str:
        return self._generate_state_key(every_n_steps=self.every_n_steps, output_key=self.output_key)

    @property
    def spectral_dir(self) -> Path | None:
        """The directory of the spectral files, known once ``fit`` has started."""
        return self._spectral_dir

    def state_dict(self) -> dict[str, Any]:
        return {
            "last_step": self.last_step,
            "alarm_active": self.alarm_active,
            "num_alarms": self.num_alarms,
            "last_scalars": dict(self.last_scalars),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_step = int(state_dict.get("last_step", -1))
        self.alarm_active = bool(state_dict.get("alarm_active", False))
        self.num_alarms = int(state_dict.get("num_alarms", 0))
        self.last_scalars = dict(state_dict.get("last_scalars", {}))

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            rank_zero_warn(message)

    def _meta(self) -> dict[str, Any]:
        return {
            "every_n_steps": self.every_n_steps,
            "buffer_size": self.buffer_size,
            "plot_every_n_epochs": self.plot_every_n_epochs,
            "rankme_min": self.rankme_min,
            "zstd_min": self.zstd_min,
            "stop_on_collapse": self.stop_on_collapse,
            "output_key": self.output_key,
            "lidar": self.lidar,
            "rankme_samples": self.rankme_samples,
        }

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        # trainer.log_dir is a collective call: every rank must make it
        self._spectral_dir = self.dirpath or Path(trainer.log_dir or trainer.default_root_dir) / "spectral"
        # each rank keeps its share of the epoch-end RankMe rows
        share = math.ceil(self.rankme_samples / max(trainer.world_size, 1))
        self._representations.capacity = self._projections.capacity = share
        if trainer.is_global_zero:
            self._writer = RecordWriter(self._spectral_dir / RECORDS_FILE)
            write_meta(self._spectral_dir, self._meta())

    # ------------------------------------------------------------------------------------------- reading

    def _views(self, outputs: Mapping, key: str) -> list[Tensor] | None:
        value = outputs.get(key)
        if value is None:
            return None
        tensors = list(value) if isinstance(value, (list, tuple)) else [value]
        for tensor in tensors:
            if not isinstance(tensor, Tensor) or tensor.ndim < 2:
                self._warn_once(
                    f"type-{key}",
                    f"SpectralMonitor: outputs[{key!r}] must be a (B, d) tensor or a list of them, got "
                    f"{type(tensor).__name__} {tuple(getattr(tensor, 'shape', ()))}; not measured.",
                )
                return None
        return tensors

    @staticmethod
    def _indexes(outputs: Mapping, batch: Any, rows: int) -> Tensor | None:
        """The (rows,) image index of each row of one view, or None when neither source has them."""
        candidate = outputs.get("indexes")
        if (
            candidate is None
            and isinstance(batch, Sequence)
            and not isinstance(batch, str)
            and len(batch) == 3
        ):
            candidate = batch[0]
        usable = (
            isinstance(candidate, Tensor) and candidate.shape == (rows,) and not candidate.is_floating_point()
        )
        return candidate.detach() if usable else None

    def _collect(self, outputs: Any, batch: Any) -> None:
        if not isinstance(outputs, Mapping) or self.output_key not in outputs:
            self._warn_once(
                "missing",
                f"SpectralMonitor: the training_step output has no key {self.output_key!r}, so there is "
                f"nothing to measure; return a dict with the projector outputs under {self.output_key!r} "
                "(a list of (B, d) tensors, one per view).",
            )
            return
        views = self._views(outputs, self.output_key)
        if views is None:
            return
        for view in views:
            # a (V, B, d) stack is V views of the same B images; a (B, d) tensor is one view
            per_view = view.shape[-2] if view.ndim >= 3 else view.shape[0]
            indexes = self._indexes(outputs, batch, per_view) if self.lidar else None
            rows = view.detach().reshape(-1, view.shape[-1])
            if indexes is not None:
                indexes = indexes.repeat(rows.shape[0] // per_view)
            self._buffer.append(rows, indexes)
        if self.lidar and self._buffer.chunks[-1][1] is None:
            self._warn_once(
                "indexes",
                "SpectralMonitor: LiDAR needs the image index of each view (outputs['indexes'] or a "
                "solo-learn batch (indexes, views, labels)); none found, so LiDAR is not logged.",
            )
        if self.rankme_samples:
            first = views[0].detach()
            self._projections.append(first if first.ndim == 2 else first[0])
            feats = self._views(outputs, "feats")
            if feats is not None:
                first_feats = feats[0].detach()
                self._representations.append(first_feats if first_feats.ndim == 2 else first_feats[0])

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._collect(outputs, batch)
        step = trainer.global_step
        if step > 0 and step % self.every_n_steps == 0 and step != self.last_step:
            self.last_step = step
            self.measure(trainer, pl_module)
        if self._panels_step is not None:
            self._publish_panels(trainer)

    def _gather(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, local: Tensor | None
    ) -> Tensor | None:
        """Every rank's (N_r, k) rows, concatenated (on every rank); None if all are empty. Collective."""
        if trainer.world_size == 1:
            return local
        device = pl_module.device
        count, width = (0, 0) if local is None else local.shape
        sizes = pl_module.all_gather(torch.tensor([count, width], device=device)).reshape(-1, 2).tolist()
        widths = {w for c, w in sizes if c > 0}
        if not widths:
            return None
        if len(widths) > 1:
            raise ValueError(f"SpectralMonitor: ranks disagree on the output width: {sorted(widths)}")
        width, longest = widths.pop(), max(c for c, _ in sizes)
        dtype = torch.float32 if local is None else local.dtype
        padded = torch.zeros(longest, width, device=device, dtype=dtype)
        if local is not None:
            padded[:count] = local
        gathered = pl_module.all_gather(padded).reshape(-1, longest, width)
        return torch.cat([gathered[rank, :c] for rank, (c, _) in enumerate(sizes)])

    def _predictor_weight(self, pl_module: pl.LightningModule) -> Tensor | None:
        method = getattr(pl_module, "linear_predictor_weight", None)
        if not callable(method):
            return None
        weight = method()
        if weight is None:
            return None
        if not isinstance(weight, Tensor) or weight.ndim != 2 or weight.shape[0] != weight.shape[1]:
            self._warn_once(
                "predictor",
                "SpectralMonitor: linear_predictor_weight() must return a square (d, d) tensor or None, got "
                f"{type(weight).__name__} {tuple(getattr(weight, 'shape', ()))}; predictor metrics skipped.",
            )
            return None
        return weight.detach()

    # ----------------------------------------------------------------------------------------- measuring

    def _snapshot_on_rank_zero(
        self, trainer: pl.Trainer, embeddings: Tensor, groups: Tensor | None, predictor: Tensor | None
    ) -> tuple[dict[str, float], SpectralSnapshot | None]:
        finite = torch.isfinite(embeddings).all(dim=1)
        nonfinite = int((~finite).sum())
        embeddings = embeddings[finite]
        if groups is not None:
            groups = groups.reshape(-1)[finite] if groups.numel() == finite.numel() else None
        if embeddings.shape[0] < 2:
            return {"nonfinite_rows": float(nonfinite), "num_samples": float(embeddings.shape[0])}, None
        if predictor is not None and predictor.shape[0] != embeddings.shape[1]:
            self._warn_once(
                "predictor_dim",
                f"SpectralMonitor: linear_predictor_weight() is {tuple(predictor.shape)} but the projector "
                f"outputs have d = {embeddings.shape[1]}; predictor metrics skipped.",
            )
            predictor = None
        snapshot = spectral_snapshot(embeddings, predictor, groups=groups)
        scalars = dict(snapshot.scalars, nonfinite_rows=float(nonfinite))
        if self._writer is not None:
            tensors = (snapshot.correlation_eigenvalues, snapshot.predictor_eigenvalues, snapshot.alignment)
            spectra = [None if values is None else values.tolist() for values in tensors]
            self._writer.append(make_record(trainer.global_step, trainer.current_epoch, scalars, *spectra))
            self._records_since_plot += 1
        return scalars, snapshot

    @staticmethod
    def _logging_step(trainer: pl.Trainer) -> int:
        return getattr(trainer.fit_loop.epoch_loop, "_batches_that_stepped", trainer.global_step)

    def _log(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, scalars: Mapping[str, float], on_step: bool
    ) -> None:
        metrics = {f"{self.log_prefix}{name}": value for name, value in scalars.items()}
        for name, value in metrics.items():
            pl_module.log(name, value, on_step=on_step, on_epoch=not on_step, logger=False, batch_size=1)
        if trainer.is_global_zero:
            step = self._logging_step(trainer)
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step)

    def measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        """Gather, compute, log and check the alarm now; every rank must call it. Returns the scalars."""
        local, local_groups = self._buffer.tensors(pl_module.device)
        embeddings = self._gather(trainer, pl_module, local)
        groups = None
        if self.lidar:
            groups = self._gather(trainer, pl_module, None if local_groups is None else local_groups[:, None])
        predictor = self._predictor_weight(pl_module)
        scalars: dict[str, float] = {}
        snapshot = None
        if trainer.is_global_zero and embeddings is not None:
            scalars, snapshot = self._snapshot_on_rank_zero(trainer, embeddings, groups, predictor)
        if trainer.world_size > 1:
            scalars = trainer.strategy.broadcast(scalars, src=0)
        if not scalars:
            return {}
        failures = self._alarm_failures(scalars)
        scalars["alarm"] = float(bool(failures))
        self.last_scalars.update(scalars)
        self._log(trainer, pl_module, scalars, on_step=True)
        if snapshot is not None and self.log_panels:
            spectra = {
                f"{self.log_prefix}log10_eig_F": snapshot.correlation_eigenvalues.clamp_min(1e-300).log10()
            }
            if snapshot.predictor_eigenvalues is not None:
                spectra[f"{self.log_prefix}eig_Wp"] = snapshot.predictor_eigenvalues
                spectra[f"{self.log_prefix}alignment"] = snapshot.alignment
            log_histograms(trainer.loggers, spectra, self._logging_step(trainer))
        self._handle_alarm(trainer, failures)
        return scalars

    def measure_ranks(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        """RankMe of the buffered representations and projections (the epoch-end measurement). Collective."""
        device = pl_module.device
        sources = {"rankme_repr": self._representations, "rankme_proj": self._projections}
        gathered = {
            name: self._gather(trainer, pl_module, rows.tensors(device)[0]) for name, rows in sources.items()
        }
        scalars: dict[str, float] = {}
        if trainer.is_global_zero:
            for name, rows in gathered.items():
                if rows is None:
                    continue
                rows = rows[torch.isfinite(rows).all(dim=1)]
                if rows.shape[0]:
                    scalars[name] = rankme(rows)
                    scalars[f"{name}_samples"] = float(rows.shape[0])
        if trainer.world_size > 1:
            scalars = trainer.strategy.broadcast(scalars, src=0)
        if scalars:
            self.last_scalars.update(scalars)
            self._log(trainer, pl_module, scalars, on_step=False)
        return scalars

    def _alarm_failures(self, scalars: Mapping[str, float]) -> list[str]:
        nonfinite, kept = int(scalars.get("nonfinite_rows", 0)), int(scalars.get("num_samples", 0))
        if kept < 2:
            return [
                f"{self.log_prefix}nonfinite_rows = {nonfinite} of {nonfinite + kept} "
                "buffered projections are NaN/inf: the run diverged"
            ]
        failures = []
        dim = int(scalars["dim"])
        for name, setting in (("rankme", self.rankme_min), ("zstd", self.zstd_min)):
            limit = alarm.threshold(name, setting, dim)
            value = scalars[name]
            if limit is not None and not value >= limit:
                failures.append(
                    f"{self.log_prefix}{name} = {value:.4g} is below alarm.{name}_min = "
                    f"{alarm.describe(name, setting, dim)}"
                )
        return failures

    def _handle_alarm(self, trainer: pl.Trainer, failures: list[str]) -> None:
        if not failures:
            self.alarm_active = False
            return
        first = not self.alarm_active
        self.alarm_active = True
        if not (first or self.stop_on_collapse):
            return  # already reported; warn again only after a recovery
        self.num_alarms += 1
        action = (
            "Stopping the run (alarm.stop = true)."
            if self.stop_on_collapse
            else "Training goes on; set alarm.stop = true (stop_on_collapse=True) to stop such runs."
        )
        if trainer.is_global_zero:
            warnings.warn(
                f"SpectralMonitor collapse alarm at step {trainer.global_step} "
                f"(epoch {trainer.current_epoch}): "
                f"{'; '.join(failures)}. {action}",
                CollapseWarning,
                stacklevel=2,
            )
        if self.stop_on_collapse:
            trainer.should_stop = True

    # ------------------------------------------------------------------------------------------ pictures

    def _plot_running(self) -> bool:
        return self._plot_process is not None and self._plot_process.poll() is None

    def _plot(self, trainer: pl.Trainer, background: bool) -> None:
        if self._spectral_dir is None or not (self._spectral_dir / RECORDS_FILE).is_file():
            return
        self._records_since_plot = 0
        self._last_plot_start = time.monotonic()
        self._panels_step = self._logging_step(trainer) if self.log_panels else None
        if background:
            package_root = str(Path(__file__).resolve().parents[2])
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
            self._plot_process = subprocess.Popen(
                [sys.executable, "-m", "solo_directpred.spectral.plots", str(self._spectral_dir)],
                env=env,
                stdout=subprocess.DEVNULL,
            )
            return
        from solo_directpred.spectral.plots import plot_spectral_dir

        self._plot_process = None
        try:
            plot_spectral_dir(self._spectral_dir)
        except (OSError, ValueError, RuntimeError) as err:
            self._panels_step = None
            rank_zero_warn(f"SpectralMonitor: could not draw the panels in {self._spectral_dir}: {err}")
            return
        self._publish_panels(trainer)

    def _publish_panels(self, trainer: pl.Trainer) -> None:
        """Send the last finished drawing to the image-capable loggers (once per drawing)."""
        if self._panels_step is None or self._plot_running():
            return
        step, self._panels_step = self._panels_step, None
        failed = self._plot_process is not None and self._plot_process.returncode != 0
        path = self._spectral_dir / PLOT_FILE
        if failed or not path.is_file():
            return
        log_image(trainer.loggers, PANELS_TAG, read_png(str(path)), step)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.rankme_samples:
            self.measure_ranks(trainer, pl_module)
        if not trainer.is_global_zero:
            return
        self._publish_panels(trainer)
        every = self.plot_every_n_epochs
        if every == 0 or (trainer.current_epoch + 1) % every != 0:
            return
        recent = time.monotonic() - self._last_plot_start < self.min_plot_interval_s
        if self._records_since_plot and not recent and not self._plot_running():
            self._plot(trainer, background=self.plot_in_background)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or self.plot_every_n_epochs == 0:
            return
        if self._plot_running():
            try:
                self._plot_process.wait(timeout=PLOT_WAIT_S)
            except subprocess.TimeoutExpired:
                self._plot_process.kill()
                self._plot_process.wait()
        self._publish_panels(trainer)  # a background drawing that finished
        if self._records_since_plot or self._plot_process is not None and self._plot_process.returncode != 0:
            self._plot(trainer, background=False)
        self._plot_process = None


def build_callbacks(section: Mapping[str, Any] | None, prefix: str = "spectral") -> list[Callback]:
    """The callbacks a ``spectral`` section asks for: the monitor and, with ``select_by``, the checkpoint.

    Returns ``[]`` when ``enabled`` is false. The checkpoint (:func:`selection_checkpoint`) keeps the best
    checkpoint by ``spectral/<select_by>`` in Lightning's default checkpoint directory.
    """
    monitor = SpectralMonitor.from_config(section, prefix)
    if monitor is None:
        return []
    return [monitor] if monitor.select_by is None else [monitor, selection_checkpoint(monitor.select_by)]
