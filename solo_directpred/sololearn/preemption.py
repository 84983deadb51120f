"""Mid-epoch checkpoints for preempted jobs, found by solo-learn's auto-resume, and an exact continuation.

solo-learn writes a checkpoint at the end of an epoch only (``checkpoint.frequency``), and Lightning (2.1 to
2.6), on SIGTERM, finishes the current batch and stops without saving: a job preempted mid-epoch loses the
epoch.
:class:`PreemptionCheckpoint`, which the plugin's methods add, writes two kinds of checkpoint:

* on SIGTERM (the usual notice before a preemption), after the batch Lightning lets finish, in a
  single-process run (``preemption.on_sigterm``, default true);
* every ``preemption.every_n_steps`` optimizer steps (default 1000; 0 turns it off), for a SIGKILL or a
  crash without notice, on every rank at the same step.

Each goes to ``checkpoint.dir/METHOD/RUN/preempted/NAME-RUN-ep=E-step=S.ckpt`` beside a copy of the run's
``args.json``, written under a temporary name and renamed (a kill mid-write leaves no truncated
checkpoint), replacing the previous one. ``auto_resume.enabled=true`` then picks the newest checkpoint of a
matching run, end-of-epoch or preempted, as it does for upstream's. It needs upstream's checkpointer
(``checkpoint.enabled: true``), whose run folder it writes into::

    preemption:
      on_sigterm: true       # checkpoint when SIGTERM arrives (single-process runs)
      every_n_steps: 1000    # and every N optimizer steps; 0: never

Lightning restarts an interrupted epoch with a fresh data iterator (2.6 too, for a loader without a
``state_dict``, as solo-learn's are): a new shuffle, new augmentations, the first batches again. So that
the resumed run sees the batches the uninterrupted run would have seen, the callback also

* shuffles each epoch with its own generator seeded by ``seed + epoch`` (instead of a draw from the global
  generator), so the order of an epoch is known again after a restart;
* keeps the global random state (torch, numpy, random) as it was before the next batch was loaded, and
  the number of batches done in the epoch, in the checkpoint;
* on resume, restores that random state, feeds the rest of the interrupted epoch's order, and gives the
  restored weights the memory layout they were saved with (:func:`match_saved_layout`);
* writes a periodic checkpoint's loop state as it was after the finished batch (see
  :meth:`PreemptionCheckpoint.on_save_checkpoint`).

With ``data.num_workers: 0`` the continuation is then the uninterrupted run's, bit for bit on CPU; with
workers the rest of the interrupted epoch gets other augmentations (workers draw their own random state),
the same samples in the same order. docs/scaling.md ("Preemption and resume") has the measurements.

Example::

    >>> callbacks = preemption_callbacks(OmegaConf.create({"seed": 5, "preemption": {"every_n_steps": 50}}))
    >>> callbacks[0].every_n_steps, callbacks[0].on_sigterm
    (50, True)
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import BatchSampler, DistributedSampler, RandomSampler, Sampler, SequentialSampler

from solo_directpred.core.schema import PreemptionSettings, check_keys, fail

#: Defaults of the ``preemption`` config section.
PREEMPTION_DEFAULTS: dict[str, Any] = asdict(PreemptionSettings())
#: Sub-folder of upstream's run folder that holds the latest preemption checkpoint.
FOLDER = "preempted"


def random_state() -> dict[str, Any]:
    """The global random state of torch (CPU), numpy and ``random``, as tensors and plain numbers.

    Checkpoints stay loadable with ``torch.load(weights_only=True)``: no numpy array is stored.
    """
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "random": {"version": version, "internal": torch.tensor(internal), "gauss_next": gauss_next},
    }


def set_random_state(state: dict[str, Any]) -> None:
    """Restore what :func:`random_state` returned."""
    torch.set_rng_state(state["torch"])
    numpy = state["numpy"]
    keys = numpy["keys"].numpy().astype(np.uint32)
    np.random.set_state((numpy["kind"], keys, numpy["pos"], numpy["has_gauss"], numpy["gauss"]))
    python = state["random"]
    random.setstate((python["version"], tuple(python["internal"].tolist()), python["gauss_next"]))


def match_saved_layout(module: torch.nn.Module, strides: dict[str, tuple[int, ...]]) -> None:
    """Give each parameter and buffer of ``module`` the strides it was saved with (``{name: strides}``).

    ``load_state_dict`` copies values into the tensors as they are. The uninterrupted run may have changed
    a layout on the way: solo-learn's EMA update rebuilds the target's weights, and the rebuilt 1×1
    convolutions come out contiguous where the model was made channels-last. The CPU kernels round the
    two layouts differently (about one float32 ulp), and the resumed run would drift from the other.
    """
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        saved = strides.get(name)
        if saved is not None and tensor.dim() and tensor.stride() != saved:
            layout = torch.empty_strided(tensor.shape, saved, dtype=tensor.dtype, device=tensor.device)
            tensor.data = layout.copy_(tensor.data)


class _EpochOrder(Sampler):
    """The sample indices of one epoch from position ``start`` on; its length stays the full epoch's,
    which is what Lightning counts batches against."""

    def __init__(self, order: list[int], start: int, length: int) -> None:
        self.order, self.start, self.length = order, start, length

    def __iter__(self) -> Iterator[int]:
        return iter(self.order[self.start :])

    def __len__(self) -> int:
        return self.length


class PreemptionCheckpoint(Callback):
    """Checkpoint on SIGTERM and every ``every_n_steps`` optimizer steps for ``auto_resume``; resume exactly.

    Args:
        seed: the run's seed (``cfg.seed``); epoch ``e`` is shuffled with a generator seeded ``seed + e``.
        on_sigterm: write a checkpoint when Lightning stops on SIGTERM (single-process runs only: in a
            multi-process run the ranks stop at different batches and cannot meet to save).
        every_n_steps: write one after every ``every_n_steps``-th optimizer step (0: never). It is taken
            when the next batch starts, once Lightning has counted the finished one, so a resumed run
            neither repeats nor skips a batch; a step that ends an epoch is saved at the epoch's end.

    Runs on every rank; rank 0 writes the files.
    """

    def __init__(self, seed: int = 0, on_sigterm: bool = True, every_n_steps: int = 1000) -> None:
        self.seed = seed
        self.on_sigterm = on_sigterm
        self.every_n_steps = every_n_steps
        self._last_saved_step = -1
        self._epoch = -1
        self._batches_done = 0
        self._random_state: dict[str, Any] | None = None
        self._resume: dict[str, Any] | None = None
        self._sampler: tuple[BatchSampler, Sampler] | None = None
        self._saved_strides: dict[str, tuple[int, ...]] | None = None
        self._between_batches = False

    # ---- checkpoint files

    @staticmethod
    def _run_folder(trainer: pl.Trainer) -> tuple[Path, str] | None:
        """(run folder, checkpoint name prefix) of upstream's ``Checkpointer``, or None without one."""
        from solo.utils.checkpointer import Checkpointer

        for callback in trainer.callbacks:
            if isinstance(callback, Checkpointer) and hasattr(callback, "path"):
                return Path(callback.path), f"{callback.cfg.name}-{Path(callback.path).name}"
        return None

    def save(self, trainer: pl.Trainer) -> Path | None:
        """Write the checkpoint of the current state (all ranks call this); returns its path."""
        run = self._run_folder(trainer)
        if run is None:
            rank_zero_warn("preemption checkpoints need checkpoint.enabled=true; nothing was saved")
            return None
        run_folder, prefix = run
        folder = run_folder / FOLDER
        path = folder / f"{prefix}-ep={trainer.current_epoch}-step={trainer.global_step}.ckpt"
        partial = path.with_name(path.name + ".partial")  # auto-resume only looks at *.ckpt
        if trainer.is_global_zero:
            folder.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(partial)
        if trainer.is_global_zero:
            shutil.copyfile(run_folder / "args.json", folder / "args.json")
            os.replace(partial, path)
            for old in folder.glob("*.ckpt"):
                if old != path:
                    old.unlink()
        self._last_saved_step = trainer.global_step
        return path

    def _due(self, trainer: pl.Trainer) -> bool:
        step = trainer.global_step
        return bool(self.every_n_steps) and step % self.every_n_steps == 0 and step != self._last_saved_step

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self._epoch, "batches_done": self._batches_done, "random_state": self._random_state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume = state_dict

    # ---- the data order of an epoch

    def _epoch_order(self, trainer: pl.Trainer) -> tuple[BatchSampler, Sampler, list[int]] | None:
        batch_sampler = getattr(trainer.train_dataloader, "batch_sampler", None)
        if self._sampler is not None and self._sampler[0] is batch_sampler:
            sampler = self._sampler[1]  # the loader's own, under the order of the previous epoch
        elif isinstance(batch_sampler, BatchSampler):
            sampler = batch_sampler.sampler
        else:
            return None
        if isinstance(sampler, RandomSampler) and not sampler.replacement:
            sampler.generator = torch.Generator().manual_seed(self.seed + trainer.current_epoch)
        elif isinstance(sampler, DistributedSampler):
            sampler.set_epoch(trainer.current_epoch)  # Lightning sets it too, after on_train_start
        elif not isinstance(sampler, SequentialSampler):
            return None
        return batch_sampler, sampler, list(sampler)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last_saved_step = trainer.global_step  # a resumed run does not save its first state again
        resume, self._resume = self._resume, None
        batches_done = 0
        if resume is not None and resume.get("random_state") is not None:
            set_random_state(resume["random_state"])
            if resume["epoch"] == trainer.current_epoch:
                batches_done = resume["batches_done"]
        if self._saved_strides is not None:
            match_saved_layout(pl_module, self._saved_strides)
            self._saved_strides = None
        # The first epoch's order is set here, not in on_train_epoch_start: resumed mid-epoch, Lightning 2.1
        # calls that hook for the interrupted epoch again, Lightning 2.6 does not (it continues the epoch).
        self._start_epoch(trainer, batches_done)

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        state = checkpoint.get("state_dict", {})
        self._saved_strides = {k: v.stride() for k, v in state.items() if isinstance(v, torch.Tensor)}

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if not self._between_batches:
            return
        # Written when the next batch starts, the checkpoint holds the state after the previous one, but
        # Lightning has already counted the next one as ready. Its loop state is written as it was after
        # the previous batch: Lightning 2.6 takes a batch counted ready and not started for one saved
        # before its step was counted, and would count it again on resume.
        progress = checkpoint["loops"]["fit_loop"]["epoch_loop.batch_progress"]
        for counts in (progress["total"], progress["current"]):
            counts["ready"] = counts["started"]
        progress["is_last_batch"] = False  # a step that ends an epoch is saved at the epoch's end

    def _start_epoch(self, trainer: pl.Trainer, batches_done: int) -> None:
        """Feed the loader the current epoch's order from batch ``batches_done`` on."""
        self._epoch, self._batches_done = trainer.current_epoch, batches_done
        found = self._epoch_order(trainer)
        if found is None:
            if batches_done:
                rank_zero_warn(
                    "resuming mid-epoch with a sampler other than RandomSampler/DistributedSampler: the rest "
                    "of the epoch is a fresh iteration, not the interrupted one"
                )
            return
        batch_sampler, sampler, order = found
        self._sampler = (batch_sampler, sampler)
        batch_sampler.sampler = _EpochOrder(order, batches_done * batch_sampler.batch_size, len(sampler))

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch != self._epoch:  # the first epoch was set in on_train_start
            self._start_epoch(trainer, 0)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._batches_done and self._due(trainer):
            self._between_batches = True
            try:
                self.save(trainer)
            finally:
                self._between_batches = False

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._batches_done += 1
        # A map-style loader loads batch i + 1 after this hook: this is the state that batch starts from.
        self._random_state = random_state()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._due(trainer):
            self.save(trainer)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if not (self.on_sigterm and isinstance(exception, SIGTERMException)):
            return
        if trainer.world_size > 1:
            rank_zero_warn(
                "SIGTERM in a multi-process run: no checkpoint is written on the signal; auto-resume "
                "uses the last periodic one (preemption.every_n_steps)"
            )
            return
        path = self.save(trainer)
        if path is not None:
            rank_zero_info(f"SIGTERM: saved {path} at step {trainer.global_step}")

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._sampler is not None:  # give the loader its own sampler back
            batch_sampler, sampler = self._sampler
            batch_sampler.sampler = sampler
            self._sampler = None


def preemption_callbacks(cfg: DictConfig) -> list[PreemptionCheckpoint]:
    """``[PreemptionCheckpoint]`` from ``cfg.preemption`` (defaults :data:`PREEMPTION_DEFAULTS`) and
    ``cfg.seed``, or ``[]`` when both kinds of checkpoint are off. Raises ConfigError naming the key."""
    section = OmegaConf.select(cfg, "preemption", default=None)
    section = {} if section is None else OmegaConf.to_container(section, resolve=True)
    if not isinstance(section, dict):
        fail("preemption", section, "must be a section with keys on_sigterm and every_n_steps")
    check_keys(section, tuple(PREEMPTION_DEFAULTS), "preemption")
    settings = PreemptionSettings(**section).check("preemption.")
    if not settings.on_sigterm and settings.every_n_steps == 0:
        return []
    seed = OmegaConf.select(cfg, "seed", default=0) or 0
    return [PreemptionCheckpoint(seed=int(seed), **asdict(settings))]
