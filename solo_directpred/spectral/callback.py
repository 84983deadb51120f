"""``SpectralMonitor``: a Lightning callback that measures the paper's Fig. 2 quantities during training.

Every ``every_n_steps`` optimizer steps it gathers the most recent projector outputs of all ranks, computes
the metrics of :mod:`solo_directpred.spectral.metrics` once (on rank 0), logs the scalars to every logger
of the run under ``spectral/…``, appends the full spectra to ``<log_dir>/spectral/spectra.jsonl`` and,
every ``plot_every_n_epochs`` epochs, redraws ``spectral.png``. An optional collapse alarm warns, and can
stop the run, when RankMe or z-std fall below a threshold.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from solo_directpred.spectral.metrics import spectral_snapshot
from solo_directpred.spectral.records import RECORDS_FILE, RecordWriter, make_record, write_meta

#: Keys accepted by :meth:`SpectralMonitor.from_config`, and under its ``alarm`` section.
CONFIG_KEYS = (
    "enabled",
    "every_n_steps",
    "buffer_size",
    "plot_every_n_epochs",
    "dirpath",
    "output_key",
    "plot_in_background",
    "min_plot_interval_s",
    "alarm",
)
ALARM_KEYS = ("rankme_min", "zstd_min", "stop")
#: Seconds :meth:`SpectralMonitor.on_train_end` waits for a background redraw before drawing the last one.
PLOT_WAIT_S = 120.0


class CollapseWarning(UserWarning):
    """Emitted by :class:`SpectralMonitor` when RankMe or z-std fall below their alarm threshold."""


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} = {value!r} is not allowed: expected an integer >= {minimum}")
    return int(value)


def _check_threshold(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} = {value!r} is not allowed: expected a number >= 0, or null to disable")
    return float(value)


def _check_seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} = {value!r} is not allowed: expected a number of seconds >= 0")
    return float(value)


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} = {value!r} is not allowed: expected true or false")
    return value


def _check_keys(section: Mapping, allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(str(k) for k in section if k not in allowed)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed keys: {', '.join(allowed)}")


class SpectralMonitor(Callback):
    """Log the spectra of the embeddings and of the linear predictor every ``every_n_steps`` steps.

    What it reads (the contract with the LightningModule):

    * the projector outputs, from the ``training_step`` output dict in ``on_train_batch_end``: key
      ``output_key`` (``"z"``, as solo-learn's methods return), a list of (B, d) tensors, one per view, or a
      single (…, d) tensor; all views are pooled;
    * the linear predictor W_p (d × d, acting as ``W_p z``), from ``pl_module.linear_predictor_weight()`` when
      the module has that method and it returns a tensor; otherwise only the embedding metrics are logged.

    When it runs: it keeps the last ``buffer_size`` rows of projector outputs of each rank (references to the
    detached tensors, no copy, no device transfer). At every ``trainer.global_step`` that is a multiple of
    ``every_n_steps`` all ranks gather their buffers (padded ``all_gather``), rank 0 computes the metrics
    in float64 (:func:`~solo_directpred.spectral.metrics.spectral_snapshot`: one N·d² Gram product and two
    or three d × d ``eigh``) and broadcasts the scalars, so that every rank logs the same values and takes
    the same stop decision. Rank 0 writes the loggers (``log_metrics`` at Lightning's logging step, so CSV,
    TensorBoard and W&B all get them) and the spectral log; the scalars also go to
    ``trainer.callback_metrics`` (``pl_module.log(…, logger=False)``) so ``EarlyStopping`` or
    ``ModelCheckpoint`` can monitor them. Alignment and the log-log slope use F of the gathered buffer.

    Files, in ``dirpath`` (default ``<trainer.log_dir or default_root_dir>/spectral``): ``spectra.jsonl``
    (full spectra, one flushed line per measurement), ``meta.json`` and ``spectral.png`` (redrawn every
    ``plot_every_n_epochs`` epochs but not more often than every ``min_plot_interval_s`` seconds, in a
    background process by default, and once more at the end of fit).
    ``solo-directpred spectral plot RUN_DIR`` redraws it from the log.

    Cost: a measurement is one N·d² Gram product and a few float64 d × d eigendecompositions, about 0.1 s
    on one CPU core for d = 256 and N = 2,048; with the default cadence (every 100 steps) that is under 1%
    of training time once a step takes 0.1 s or more. The cost grows as d³ (≈ 17 s on one CPU core for
    d = 2048): raise ``every_n_steps`` for wide projectors. ``benchmarks/spectral_overhead.py`` prints the
    measured share and the per-measurement cost for several d.

    Args:
        every_n_steps: measure at every multiple of this many optimizer steps (≥ 1).
        buffer_size: rows of recent projector outputs per rank (views pooled) used for a measurement (≥ 2).
        plot_every_n_epochs: redraw the PNG every this many epochs; 0 never draws during training.
        rankme_min: collapse alarm when RankMe < this (None: off).
        zstd_min: collapse alarm when z-std < this (None: off; healthy ≈ 1/√d).
        stop_on_collapse: on an alarm, also set ``trainer.should_stop``.
        dirpath: where the spectral files go; None for the default above.
        output_key: the key of the projector outputs in the ``training_step`` output dict.
        plot_in_background: draw the per-epoch PNG in a separate process so training does not wait for it.
        min_plot_interval_s: skip an epoch-end redraw if the previous one started less than this many
            seconds ago (short epochs would otherwise spend CPU on drawing); the end of fit always redraws.

    Example::

        from lightning.pytorch import Trainer
        from solo_directpred.spectral import SpectralMonitor

        monitor = SpectralMonitor(every_n_steps=100, rankme_min=8.0, stop_on_collapse=True)
        trainer = Trainer(callbacks=[monitor])
    """

    def __init__(
        self,
        every_n_steps: int = 100,
        buffer_size: int = 2048,
        plot_every_n_epochs: int = 1,
        rankme_min: float | None = None,
        zstd_min: float | None = None,
        stop_on_collapse: bool = False,
        dirpath: str | os.PathLike | None = None,
        output_key: str = "z",
        plot_in_background: bool = True,
        min_plot_interval_s: float = 300.0,
    ) -> None:
        super().__init__()
        self.every_n_steps = _check_int("every_n_steps", every_n_steps, 1)
        self.buffer_size = _check_int("buffer_size", buffer_size, 2)
        self.plot_every_n_epochs = _check_int("plot_every_n_epochs", plot_every_n_epochs, 0)
        self.rankme_min = _check_threshold("rankme_min", rankme_min)
        self.zstd_min = _check_threshold("zstd_min", zstd_min)
        self.stop_on_collapse = _check_bool("stop_on_collapse", stop_on_collapse)
        self.plot_in_background = _check_bool("plot_in_background", plot_in_background)
        self.min_plot_interval_s = _check_seconds("min_plot_interval_s", min_plot_interval_s)
        if not isinstance(output_key, str) or not output_key:
            raise ValueError(f"output_key = {output_key!r} is not allowed: expected a non-empty string")
        self.output_key = output_key
        self.dirpath = None if dirpath is None else Path(dirpath)
        self.log_prefix = "spectral/"

        self.last_step = -1
        self.alarm_active = False
        self.num_alarms = 0
        self.last_scalars: dict[str, float] = {}

        self._buffer: deque[Tensor] = deque()
        self._buffer_rows = 0
        self._spectral_dir: Path | None = None
        self._writer: RecordWriter | None = None
        self._plot_process: subprocess.Popen | None = None
        self._records_since_plot = 0
        self._last_plot_start: float | None = None
        self._warned: set[str] = set()

    @classmethod
    def from_config(
        cls, cfg_section: Mapping[str, Any] | None, prefix: str = "spectral"
    ) -> SpectralMonitor | None:
        """Build the monitor from a solo-learn style config section; None when ``enabled`` is false.

        Keys (all optional; defaults as in the constructor)::

            enabled: true            # false: no monitor (returns None)
            every_n_steps: 100
            buffer_size: 2048
            plot_every_n_epochs: 1   # 0: no PNG during training
            plot_in_background: true
            min_plot_interval_s: 300  # skip epoch-end redraws closer together than this
            dirpath: null            # null: <log_dir>/spectral
            output_key: z
            alarm:
              rankme_min: null       # e.g. 8.0
              zstd_min: null         # e.g. 0.01
              stop: false            # true: stop the run on an alarm

        Args:
            cfg_section: a mapping (dict or OmegaConf ``DictConfig``), or None for all defaults.
            prefix: the section's name, used in error messages (``spectral.every_n_steps = 0 is not …``).

        Raises:
            ValueError: naming the key, the bad value and what is allowed.
        """
        section = {} if cfg_section is None else cfg_section
        if not isinstance(section, Mapping):
            raise ValueError(f"{prefix} = {section!r} is not allowed: expected a mapping of settings")
        _check_keys(section, CONFIG_KEYS, prefix)
        if not _check_bool(f"{prefix}.enabled", section.get("enabled", True)):
            return None
        alarm = section.get("alarm")
        alarm = {} if alarm is None else alarm
        if not isinstance(alarm, Mapping):
            raise ValueError(
                f"{prefix}.alarm = {alarm!r} is not allowed: expected a mapping with keys "
                f"{', '.join(ALARM_KEYS)}"
            )
        _check_keys(alarm, ALARM_KEYS, f"{prefix}.alarm")
        output_key = section.get("output_key", "z")
        if not isinstance(output_key, str) or not output_key:
            raise ValueError(
                f"{prefix}.output_key = {output_key!r} is not allowed: expected a non-empty string"
            )
        dirpath = section.get("dirpath")
        if dirpath is not None and not isinstance(dirpath, (str, os.PathLike)):
            raise ValueError(f"{prefix}.dirpath = {dirpath!r} is not allowed: expected a path or null")
        return cls(
            every_n_steps=_check_int(f"{prefix}.every_n_steps", section.get("every_n_steps", 100), 1),
            buffer_size=_check_int(f"{prefix}.buffer_size", section.get("buffer_size", 2048), 2),
            plot_every_n_epochs=_check_int(
                f"{prefix}.plot_every_n_epochs", section.get("plot_every_n_epochs", 1), 0
            ),
            rankme_min=_check_threshold(f"{prefix}.alarm.rankme_min", alarm.get("rankme_min")),
            zstd_min=_check_threshold(f"{prefix}.alarm.zstd_min", alarm.get("zstd_min")),
            stop_on_collapse=_check_bool(f"{prefix}.alarm.stop", alarm.get("stop", False)),
            dirpath=dirpath,
            output_key=output_key,
            plot_in_background=_check_bool(
                f"{prefix}.plot_in_background", section.get("plot_in_background", True)
            ),
            min_plot_interval_s=_check_seconds(
                f"{prefix}.min_plot_interval_s", section.get("min_plot_interval_s", 300.0)
            ),
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
        }

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if self.dirpath is not None:
            directory = self.dirpath
        else:
            base = trainer.log_dir  # a collective call: every rank must make it
            directory = Path(base or trainer.default_root_dir) / "spectral"
        self._spectral_dir = Path(directory)
        if trainer.is_global_zero:
            self._writer = RecordWriter(self._spectral_dir / RECORDS_FILE)
            write_meta(self._spectral_dir, self._meta())

    def _collect(self, outputs: Any) -> None:
        if not isinstance(outputs, Mapping) or self.output_key not in outputs:
            self._warn_once(
                "missing",
                f"SpectralMonitor: the training_step output has no key {self.output_key!r}, so there is "
                f"nothing to measure; return a dict with the projector outputs under {self.output_key!r} "
                "(a list of (B, d) tensors, one per view).",
            )
            return
        value = outputs[self.output_key]
        tensors = list(value) if isinstance(value, (list, tuple)) else [value]
        for tensor in tensors:
            if not isinstance(tensor, Tensor) or tensor.ndim < 2:
                self._warn_once(
                    "type",
                    f"SpectralMonitor: outputs[{self.output_key!r}] must be a (B, d) tensor or a list of "
                    f"them, got {type(tensor).__name__} {tuple(getattr(tensor, 'shape', ()))}; not measured.",
                )
                return
        for tensor in tensors:
            rows = tensor.detach().reshape(-1, tensor.shape[-1])
            self._buffer.append(rows)
            self._buffer_rows += rows.shape[0]
        while self._buffer and self._buffer_rows - self._buffer[0].shape[0] >= self.buffer_size:
            self._buffer_rows -= self._buffer.popleft().shape[0]

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._collect(outputs)
        step = trainer.global_step
        if step > 0 and step % self.every_n_steps == 0 and step != self.last_step:
            self.last_step = step
            self.measure(trainer, pl_module)

    def _local_embeddings(self, device: torch.device) -> Tensor | None:
        if not self._buffer:
            return None
        widths = {t.shape[-1] for t in self._buffer}
        if len(widths) > 1:
            raise ValueError(
                f"SpectralMonitor: projector outputs changed width during training: {sorted(widths)}"
            )
        rows = torch.cat([t.to(device=device, dtype=torch.float32) for t in self._buffer])
        return rows[-self.buffer_size :]

    def _gather(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Tensor | None:
        """Every rank's buffer, concatenated (on every rank); None if all are empty."""
        device = pl_module.device
        local = self._local_embeddings(device)
        count, width = (0, 0) if local is None else local.shape
        if trainer.world_size == 1:
            return local
        sizes = pl_module.all_gather(torch.tensor([count, width], device=device)).reshape(-1, 2).tolist()
        widths = {w for c, w in sizes if c > 0}
        if not widths:
            return None
        if len(widths) > 1:
            raise ValueError(f"SpectralMonitor: ranks disagree on the projector width: {sorted(widths)}")
        width, longest = widths.pop(), max(c for c, _ in sizes)
        padded = torch.zeros(longest, width, device=device)
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

    def _snapshot_on_rank_zero(
        self, trainer: pl.Trainer, embeddings: Tensor, predictor: Tensor | None
    ) -> dict:
        finite = torch.isfinite(embeddings).all(dim=1)
        nonfinite = int((~finite).sum())
        embeddings = embeddings[finite]
        if embeddings.shape[0] < 2:
            rank_zero_warn(
                f"SpectralMonitor: step {trainer.global_step}: fewer than 2 finite embeddings in the buffer "
                f"({nonfinite} rows are NaN/inf); nothing measured."
            )
            return {}
        if predictor is not None and predictor.shape[0] != embeddings.shape[1]:
            self._warn_once(
                "predictor_dim",
                f"SpectralMonitor: linear_predictor_weight() is {tuple(predictor.shape)} but the projector "
                f"outputs have d = {embeddings.shape[1]}; predictor metrics skipped.",
            )
            predictor = None
        snapshot = spectral_snapshot(embeddings, predictor)
        scalars = dict(snapshot.scalars, nonfinite_rows=float(nonfinite))
        if self._writer is not None:
            self._writer.append(
                make_record(
                    trainer.global_step,
                    trainer.current_epoch,
                    scalars,
                    snapshot.correlation_eigenvalues.tolist(),
                    None
                    if snapshot.predictor_eigenvalues is None
                    else snapshot.predictor_eigenvalues.tolist(),
                    None if snapshot.alignment is None else snapshot.alignment.tolist(),
                )
            )
            self._records_since_plot += 1
        return scalars

    def measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        """Gather, compute, log and check the alarm now; every rank must call it. Returns the scalars."""
        embeddings = self._gather(trainer, pl_module)
        predictor = self._predictor_weight(pl_module)
        scalars: dict[str, float] = {}
        if trainer.is_global_zero and embeddings is not None:
            scalars = self._snapshot_on_rank_zero(trainer, embeddings, predictor)
        if trainer.world_size > 1:
            scalars = trainer.strategy.broadcast(scalars, src=0)
        if not scalars:
            return {}
        failures = self._alarm_failures(scalars)
        scalars["alarm"] = float(bool(failures))
        self.last_scalars = scalars
        metrics = {f"{self.log_prefix}{name}": value for name, value in scalars.items()}
        for name, value in metrics.items():
            pl_module.log(name, value, on_step=True, on_epoch=False, logger=False, batch_size=1)
        if trainer.is_global_zero:
            step = getattr(trainer.fit_loop.epoch_loop, "_batches_that_stepped", trainer.global_step)
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step)
        self._handle_alarm(trainer, failures)
        return scalars

    def _alarm_failures(self, scalars: Mapping[str, float]) -> list[str]:
        failures = []
        for name, threshold in (("rankme", self.rankme_min), ("zstd", self.zstd_min)):
            value = scalars[name]
            if threshold is not None and not value >= threshold:
                failures.append(
                    f"{self.log_prefix}{name} = {value:.4g} is below alarm.{name}_min = {threshold:g}"
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

    def _plot_running(self) -> bool:
        return self._plot_process is not None and self._plot_process.poll() is None

    def _plot(self, background: bool) -> None:
        if self._spectral_dir is None or not (self._spectral_dir / RECORDS_FILE).is_file():
            return
        self._records_since_plot = 0
        self._last_plot_start = time.monotonic()
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

        try:
            plot_spectral_dir(self._spectral_dir)
        except (OSError, ValueError, RuntimeError) as err:
            rank_zero_warn(f"SpectralMonitor: could not draw the panels in {self._spectral_dir}: {err}")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        every = self.plot_every_n_epochs
        if not trainer.is_global_zero or every == 0 or (trainer.current_epoch + 1) % every != 0:
            return
        recent = (
            self._last_plot_start is not None
            and time.monotonic() - self._last_plot_start < self.min_plot_interval_s
        )
        if self._records_since_plot and not recent and not self._plot_running():
            self._plot(background=self.plot_in_background)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or self.plot_every_n_epochs == 0:
            return
        if self._plot_running():
            try:
                self._plot_process.wait(timeout=PLOT_WAIT_S)
            except subprocess.TimeoutExpired:
                self._plot_process.kill()
                self._plot_process.wait()
        if self._records_since_plot or self._plot_process is not None and self._plot_process.returncode != 0:
            self._plot(background=False)
        self._plot_process = None
