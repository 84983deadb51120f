"""Draw the example panels of docs/spectral.md: BYOL with a gradient-trained linear predictor on digits.

scikit-learn's 8×8 digits (1,797 images), an MLP encoder and projector (d = 32), a bias-free linear predictor
trained with weight decay, an EMA target (τ = 0.99), noise-and-mask augmentations; SpectralMonitor every 10
steps (84 measurements over 840 steps). Runs on a CPU in a few minutes:

    python docs/images/spectral/example_run.py OUT_DIR
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from solo_directpred.spectral import SpectralMonitor
from solo_directpred.spectral.plots import plot_spectral_dir

DIM = 32


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers += [nn.BatchNorm1d(b), nn.ReLU()]
    return nn.Sequential(*layers)


class Byol(pl.LightningModule):
    def __init__(self, tau: float = 0.99) -> None:
        super().__init__()
        self.online = mlp([64, 256, 256, DIM])
        self.target = copy.deepcopy(self.online).requires_grad_(False)
        self.predictor = nn.Linear(DIM, DIM, bias=False)
        self.tau = tau

    @staticmethod
    def augment(x: torch.Tensor) -> torch.Tensor:
        keep = (torch.rand_like(x) > 0.3).float()
        return x * keep + 0.2 * torch.randn_like(x)

    def training_step(self, batch, batch_idx):  # noqa: ANN001 - Lightning signature
        (x,) = batch
        views = [self.augment(x), self.augment(x)]
        z = [self.online(v) for v in views]
        with torch.no_grad():
            targets = [self.target(v) for v in views]
        loss = sum(
            2 - 2 * nn.functional.cosine_similarity(self.predictor(z[i]), targets[1 - i]).mean()
            for i in (0, 1)
        )
        return {"loss": loss, "z": z}

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        with torch.no_grad():
            for online, target in zip(self.online.parameters(), self.target.parameters()):
                target.mul_(self.tau).add_(online, alpha=1 - self.tau)

    def linear_predictor_weight(self) -> torch.Tensor:
        return self.predictor.weight

    def configure_optimizers(self):
        return torch.optim.SGD(
            [
                {"params": self.online.parameters()},
                {"params": self.predictor.parameters(), "weight_decay": 4e-3},
            ],
            lr=0.05,
            momentum=0.9,
            weight_decay=4e-4,
        )


def draw(spectral_dir: Path, target: Path) -> Path:
    """The panels at 80 dpi, reduced to a 256-colour palette to keep the committed PNG small."""
    from PIL import Image

    path = plot_spectral_dir(spectral_dir, target, dpi=80)
    with Image.open(path) as image:
        image.convert("RGB").quantize(colors=256).save(path, optimize=True)
    return path


def main(out: Path) -> None:
    torch.manual_seed(0)
    x = torch.tensor(load_digits().data, dtype=torch.float32) / 16.0
    data = DataLoader(TensorDataset(x), batch_size=128, shuffle=True, drop_last=True)
    monitor = SpectralMonitor(
        every_n_steps=10, buffer_size=1024, plot_every_n_epochs=0, dirpath=out / "spectral"
    )
    trainer = pl.Trainer(
        max_epochs=60,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
        callbacks=[monitor],
        default_root_dir=str(out),
    )
    trainer.fit(Byol(), data)
    print(draw(out / "spectral", out / "spectral_example.png"))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
