"""Send the monitor's panels and spectra to the run's loggers where they can show them.

TensorBoard gets the panels as an image and the spectra as histograms; Weights & Biases gets the panels as
an image and the spectra as histograms; any other logger (CSV) gets neither: the PNG and ``spectra.jsonl``
on disk hold them. Scalars go to every logger through ``log_metrics`` (in the callback).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from lightning.pytorch.loggers import Logger, TensorBoardLogger, WandbLogger
from torch import Tensor


def _is_wandb(logger: Logger) -> bool:
    return isinstance(logger, WandbLogger)


def log_image(loggers: Iterable[Logger], tag: str, image: np.ndarray, step: int) -> list[str]:
    """Log an (H, W, 3) uint8 image under ``tag`` at ``step``; returns the names of the loggers that took it.

    Other loggers are skipped (a CSV logger has no images).
    """
    taken = []
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(tag, image, global_step=step, dataformats="HWC")
        elif _is_wandb(logger):
            logger.log_image(key=tag, images=[image], step=step)
        else:
            continue
        taken.append(type(logger).__name__)
    return taken


def log_histograms(loggers: Iterable[Logger], spectra: Mapping[str, Tensor], step: int) -> None:
    """Log each 1-D spectrum in ``spectra`` (name → values) as a histogram named ``name`` at ``step``."""
    arrays = {name: values.detach().cpu().double().numpy() for name, values in spectra.items()}
    arrays = {name: values[np.isfinite(values)] for name, values in arrays.items()}
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            for name, values in arrays.items():
                if values.size:
                    logger.experiment.add_histogram(name, values, global_step=step)
        elif _is_wandb(logger):
            import wandb

            logger.log_metrics(
                {name: wandb.Histogram(values) for name, values in arrays.items() if values.size}, step=step
            )


def read_png(path: str) -> np.ndarray:
    """An RGB PNG as an (H, W, 3) uint8 array."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))
