"""A Hydra callback for the scaling tests: each rank of the user's command saves what it holds.

Added on the command line of upstream's unmodified ``main_pretrain.py``, with this folder on ``PYTHONPATH``
(a solo-learn checkout has its own ``tests`` package, which shadows this repository's)::

    +hydra.callbacks.rank_dump._target_=scale_hooks.RankDump
    +hydra.callbacks.rank_dump.out=DIR

At job start it swaps ``METHODS[cfg.method]`` for a subclass that, on every rank, saves to
``DIR/rank{R}-{start,end}.pt`` the predictor's state, the learning rate the method and its optimizer use,
the world layout Lightning set up, and the sample indices this rank trained on. Training itself is the
registered method's, untouched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def _dumping(method_cls: type, out: Path) -> type:
    class Dumping(method_cls):
        def _dump(self, when: str) -> None:
            trainer = self.trainer
            state = {
                f"predictor.{k}": v.detach().cpu().clone() for k, v in self.predictor.state_dict().items()
            }
            state.update(
                global_rank=trainer.global_rank,
                node_rank=trainer.node_rank,
                world_size=trainer.world_size,
                global_step=trainer.global_step,
                method_lr=float(self.lr),
                optimizer_lr=float(trainer.optimizers[0].param_groups[0]["lr"]),
                indices=torch.tensor(getattr(self, "_seen", []), dtype=torch.long),
            )
            out.mkdir(parents=True, exist_ok=True)
            torch.save(state, out / f"rank{trainer.global_rank}-{when}.pt")

        def on_train_start(self) -> None:
            super().on_train_start()
            self._dump("start")

        def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
            super().on_train_batch_start(batch, batch_idx)
            self._seen = getattr(self, "_seen", []) + [int(i) for i in batch[0]]

        def on_train_end(self) -> None:
            super().on_train_end()
            self._dump("end")

    Dumping.__name__ = Dumping.__qualname__ = f"Dumping{method_cls.__name__}"
    return Dumping


class RankDump(Callback):
    """Hydra callback: wrap the configured method so every rank saves its predictor state (see module doc)."""

    def __init__(self, out: str) -> None:
        self.out = Path(out)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        from solo.methods import METHODS

        METHODS[config.method] = _dumping(METHODS[config.method], self.out)
