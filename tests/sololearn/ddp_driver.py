"""Driver for test_ddp.py: train a plugin method with Lightning DDP on 2 CPU processes (gloo).

Usage: python ddp_driver.py OUT_DIR METHOD [HYDRA_OVERRIDE ...]. Each rank saves its predictor state to
OUT_DIR/rank{R}.pt.
Lightning relaunches this script for rank 1, so it must run as a file, not through pytest.
"""

import sys
from pathlib import Path

# isort: off
import solo_directpred  # noqa: F401  - first: fixes the torchvision import Lightning triggers

# isort: on
import lightning.pytorch as pl
import torch
from lightning.pytorch.strategies import DDPStrategy

from solo_directpred.compat import ensure_torchvision_importable

ensure_torchvision_importable()

from solo.methods import METHODS  # noqa: E402

from tests.sololearn.helpers import compose_pretrain_cfg, random_loader  # noqa: E402


class SavePredictor(pl.Callback):
    def __init__(self, out: Path) -> None:
        self.out = out

    def on_train_end(self, trainer, pl_module) -> None:
        state = {k: v.detach().cpu().clone() for k, v in pl_module.predictor.state_dict().items()}
        state["batch_rows"] = torch.tensor(self.rows)
        torch.save(state, self.out / f"rank{trainer.global_rank}.pt")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.rows = getattr(self, "rows", []) + [int(batch[0][0])]


def main() -> None:
    out, method, overrides = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    torch.set_num_threads(1)
    cfg = compose_pretrain_cfg(
        [f"method={method}", "spectral.enabled=false", "devices='2'", "strategy=ddp", *overrides]
    )
    model = METHODS[method](cfg)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy=DDPStrategy(process_group_backend="gloo"),
        max_epochs=1,
        limit_train_batches=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[SavePredictor(out)],
        use_distributed_sampler=True,
    )
    trainer.fit(model, train_dataloaders=random_loader(n=48, batch_size=8))


if __name__ == "__main__":
    main()
