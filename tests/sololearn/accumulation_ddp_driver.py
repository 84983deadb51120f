"""Driver for test_accumulation_ddp.py: 2 CPU ranks (gloo), ``accumulate_grad_batches=4``, a real method.

Usage: python accumulation_ddp_driver.py OUT_DIR METHOD. Each rank saves its predictor state, the projections
each micro-batch fed the statistics and the W_p each micro-batch predicted with, to OUT_DIR/rank{R}.pt;
rank 0 also saves the validated ``method_kwargs`` to OUT_DIR/method_kwargs.yaml.
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
from omegaconf import OmegaConf

from solo_directpred.compat import ensure_torchvision_importable

ensure_torchvision_importable()

from solo.methods import METHODS  # noqa: E402

from tests.sololearn.helpers import compose_pretrain_cfg, random_loader  # noqa: E402

ACCUMULATE, STEPS, BATCH = 4, 2, 2


class Record(pl.Callback):
    def __init__(self, out: Path) -> None:
        self.out = out
        self.weights: list[torch.Tensor] = []
        self.z: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.weights.append(pl_module.predictor.weight.detach().clone())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.z.append(torch.stack([z.float() for z in outputs["z"]]))

    def on_train_end(self, trainer, pl_module) -> None:
        state = {k: v.detach().cpu().clone() for k, v in pl_module.predictor.state_dict().items()}
        state["seen_weights"] = torch.stack(self.weights)
        state["micro_z"] = torch.stack(self.z)  # (micro-batches, views, rows, d)
        torch.save(state, self.out / f"rank{trainer.global_rank}.pt")
        if trainer.global_rank == 0:  # the validated predictor settings, to build a reference from
            OmegaConf.save(pl_module.cfg.method_kwargs, self.out / "method_kwargs.yaml")


def overrides(method: str) -> list[str]:
    """The run's config overrides (d = 8 < the rows of a step: a full-rank, well-conditioned F̂)."""
    return [
        f"method={method}",
        "spectral.enabled=false",
        "devices='2'",
        "strategy=ddp",
        "method_kwargs.proj_output_dim=8",
        "method_kwargs.eigh_dtype=float64",
        f"+accumulate_grad_batches={ACCUMULATE}",
    ]


def main() -> None:
    out, method = Path(sys.argv[1]), sys.argv[2]
    torch.set_num_threads(1)
    cfg = compose_pretrain_cfg(overrides(method))  # registers the plugin's methods
    model = METHODS[method](cfg)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy=DDPStrategy(process_group_backend="gloo"),
        max_epochs=1,
        limit_train_batches=ACCUMULATE * STEPS,
        accumulate_grad_batches=ACCUMULATE,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Record(out)],
        use_distributed_sampler=True,
    )
    n = 2 * ACCUMULATE * STEPS * BATCH
    trainer.fit(model, train_dataloaders=random_loader(n=n, batch_size=BATCH))


if __name__ == "__main__":
    main()
