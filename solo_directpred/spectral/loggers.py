"""Send the monitor's panels and spectra to the run's loggers where they can show them.

TensorBoard and Weights & Biases get the panels as an image and the spectra as histograms; any other logger
(CSV) gets neither: the PNG and ``spectra.jsonl`` on disk hold them. Scalars go to every logger through
``log_metrics`` (in the callback).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from lightning.pytorch.loggers import Logger, TensorBoardLogger, WandbLogger
from torch import Tensor


def log_image(loggers: Iterable[Logger], tag: str, image: np.ndarray, step: int) -> list[str]:
    """Log an (H, W, 3) uint8 image under ``tag`` at ``step``; returns the names of the loggers that took it.

    Other loggers are skipped (a CSV logger has no images).
    """
    taken = []
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(tag, image, global_step=step, dataformats="HWC")
        elif isinstance(logger, WandbLogger):
            logger.log_image(key=tag, images=[image], step=step)
        else:
            continue
        taken.append(type(logger).__name__)
    return taken


def log_histograms(loggers: Iterable[Logger], spectra: Mapping[str, Tensor], step: int) -> None:
    """Log each 1-D spectrum in ``spectra`` (name → values) as a histogram named ``name`` at ``step``."""
    finite = {name: values.detach()[values.isfinite()] for name, values in spectra.items()}
    arrays = {name: values.cpu().double().numpy() for name, values in finite.items() if values.numel()}
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            for name, values in arrays.items():
                logger.experiment.add_histogram(name, values, global_step=step)
        elif isinstance(logger, WandbLogger):
            import wandb

            logger.log_metrics({name: wandb.Histogram(values) for name, values in arrays.items()}, step=step)


def read_png(path: str) -> np.ndarray:
    """An RGB PNG as an (H, W, 3) uint8 array."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))
