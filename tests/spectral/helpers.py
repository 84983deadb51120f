"""Tiny LightningModules that speak the SpectralMonitor contract, for the callback tests."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class TinySSL(LightningModule):
    """Two noisy views through a linear projector and a linear predictor; returns ``{"loss", "z"}``.

    Args:
        dim: projector width d.
        with_predictor: expose ``linear_predictor_weight()``; "none" makes it return None.
        collapse: the projector output is a fixed direction times a positive scale (RankMe ≈ 1, z-std 0).
        output: "list" (one tensor per view), "tensor" (views stacked) or "loss" (a bare loss tensor).
    """

    def __init__(
        self, dim: int = 8, with_predictor: bool | str = True, collapse: bool = False, output: str = "list"
    ) -> None:
        super().__init__()
        self.projector = nn.Linear(16, dim)
        self.predictor = nn.Linear(dim, dim, bias=False)
        self.with_predictor = with_predictor
        self.collapse = collapse
        self.output = output
        self.direction = torch.nn.functional.normalize(torch.ones(dim), dim=0)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        z = self.projector(x)
        if self.collapse:
            return z.sum(dim=1, keepdim=True).abs().add(1.0) * self.direction + 0.0 * z
        return z

    def training_step(self, batch, batch_idx):  # noqa: ANN001 - Lightning signature
        (x,) = batch
        z1, z2 = self.project(x), self.project(x + 0.1 * torch.randn_like(x))
        loss = -nn.functional.cosine_similarity(self.predictor(z1), z2.detach()).mean()
        if self.output == "loss":
            return loss
        return {"loss": loss, "z": [z1, z2] if self.output == "list" else torch.stack([z1, z2])}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


class TinyWithPredictor(TinySSL):
    def linear_predictor_weight(self):
        return None if self.with_predictor == "none" else self.predictor.weight


def loader(num_samples: int = 64, batch_size: int = 16, seed: int = 0) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(TensorDataset(torch.randn(num_samples, 16, generator=generator)), batch_size=batch_size)


def trainer(tmp_path, callbacks, max_epochs: int = 1, **kwargs) -> Trainer:  # noqa: ANN001
    from lightning.pytorch.loggers import CSVLogger

    options = dict(
        max_epochs=max_epochs,
        accelerator="cpu",
        devices=1,
        logger=CSVLogger(str(tmp_path), name="run"),
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=str(tmp_path),
        log_every_n_steps=1,
    )
    options.update(kwargs)
    return Trainer(**options)
