"""Two-process gloo run of SpectralMonitor on CPU (driven by test_ddp.py; not a test module itself).

Rank 0 emits two views of rows e_0, rank 1 one view of rows e_1: each rank alone sees a rank-1 embedding,
the gathered buffer has singular values in the ratio √2 : 1 and unequal row counts per rank.
Usage: python ddp_worker.py OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# isort: off
import solo_directpred  # noqa: F401  - first: fixes the torchvision import Lightning triggers

# isort: on
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from solo_directpred.spectral import SpectralMonitor

DIM, BATCH = 4, 4


class RankwiseEmbeddings(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))

    def training_step(self, batch, batch_idx):  # noqa: ANN001 - Lightning signature
        (x,) = batch
        rank = self.global_rank
        rows = torch.zeros(x.shape[0], DIM)
        rows[:, rank] = 1.0
        views = [rows, rows.clone()] if rank == 0 else [rows]
        return {"loss": (self.weight * x.sum() * 0.0).sum(), "z": views}

    def linear_predictor_weight(self) -> torch.Tensor:
        return (self.global_rank + 1.0) * torch.eye(DIM)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Report(Callback):
    def __init__(self, out: Path) -> None:
        self.out = out

    def on_train_end(self, trainer, pl_module):  # noqa: ANN001 - Lightning signature
        report = {
            "global_step": trainer.global_step,
            "rankme": float(trainer.callback_metrics["spectral/rankme"]),
            "should_stop": trainer.should_stop,
        }
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(report))


def main(out: Path) -> None:
    monitor = SpectralMonitor(
        every_n_steps=2,
        buffer_size=10_000,
        plot_every_n_epochs=0,
        rankme_min=3.0,
        stop_on_collapse=True,
        dirpath=out / "spectral",
    )
    trainer = Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_epochs=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[monitor, Report(out)],
        default_root_dir=str(out),
    )
    data = DataLoader(TensorDataset(torch.randn(64, 3)), batch_size=BATCH)
    trainer.fit(RankwiseEmbeddings(), data)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
