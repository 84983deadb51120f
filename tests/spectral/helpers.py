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


class IndexedViews(torch.utils.data.Dataset):
    """solo-learn's batch layout, ``(index, [view1, view2], label)``: two noisy copies of a fixed input."""

    def __init__(self, n: int = 64, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 16, generator=generator)
        self.noise = 0.3 * torch.randn(n, 2, 16, generator=generator)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return i, [self.x[i] + self.noise[i, 0], self.x[i] + self.noise[i, 1]], 0


class TinyIndexed(TinyWithPredictor):
    """A TinyWithPredictor on solo-learn style batches; returns ``feats`` and records what it returned.

    ``seen`` holds, per step, the detached (z views, feats views, indexes) the monitor was given.
    """

    def __init__(self, dim: int = 8, feats_dim: int = 12, nonfinite: bool = False) -> None:
        super().__init__(dim=dim)
        self.backbone = nn.Linear(16, feats_dim)
        self.projector = nn.Linear(feats_dim, dim)
        self.nonfinite = nonfinite
        self.seen: list[tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]] = []

    def training_step(self, batch, batch_idx):  # noqa: ANN001 - Lightning signature
        indexes, views, _ = batch
        feats = [self.backbone(v) for v in views]
        z = [self.projector(f) for f in feats]
        if self.nonfinite:
            z = [zi * torch.nan for zi in z]
        loss = -nn.functional.cosine_similarity(self.predictor(z[0]), z[1].detach()).mean()
        self.seen.append(([zi.detach() for zi in z], [f.detach() for f in feats], indexes))
        return {"loss": loss, "z": [zi.detach() for zi in z], "feats": [f.detach() for f in feats]}


def indexed_loader(num_samples: int = 64, batch_size: int = 16, shuffle: bool = True) -> DataLoader:
    return DataLoader(
        IndexedViews(num_samples),
        batch_size=batch_size,
        shuffle=shuffle,
        generator=torch.Generator().manual_seed(0),
    )
