"""Helpers for the tests that run against the real solo-learn."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

SOLO_LEARN_DIR_ENV = "SOLO_LEARN_DIR"


def compose_pretrain_cfg(overrides: Sequence[str] = (), config_name: str = "directpred.yaml"):
    """The embedded default (or another shipped config) composed and parsed as main_pretrain.py does."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    from solo.args.pretrain import parse_cfg

    from solo_directpred.paths import configs_dir
    from solo_directpred.sololearn.plugin import register

    register()
    with initialize_config_dir(config_dir=str(configs_dir()), version_base="1.2"):
        cfg = compose(config_name, overrides=list(overrides))
    OmegaConf.set_struct(cfg, False)
    return parse_cfg(cfg)


class RandomViews(Dataset):
    """solo-learn's pretraining batch format: (index, [view1, view2], label), random 16×16 images."""

    def __init__(self, n: int = 32, size: int = 16, num_classes: int = 10, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 2, 3, size, size, generator=g)
        self.y = torch.randint(0, num_classes, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return i, [self.x[i, 0], self.x[i, 1]], self.y[i]


def random_loader(n: int = 32, batch_size: int = 8) -> DataLoader:
    return DataLoader(RandomViews(n), batch_size=batch_size, shuffle=False, drop_last=True)


def fit_tiny(model, steps: int = 3, default_root_dir: str | os.PathLike | None = None):
    """Train ``model`` for ``steps`` steps on random views with a bare CPU Lightning Trainer."""
    import lightning.pytorch as pl

    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        limit_train_batches=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=default_root_dir,
    )
    trainer.fit(model, train_dataloaders=random_loader(n=8 * steps))
    return trainer


def pinned_solo_learn() -> tuple[str, str]:
    """(Git URL, commit) of solo-learn as the ``solo`` extra in pyproject.toml pins it."""
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    url, commit = re.search(r'"solo-learn @ git\+(\S+)@([0-9a-f]{40})"', pyproject).groups()
    return url, commit


@functools.cache
def solo_learn_scripts() -> Path | None:
    """A solo-learn checkout holding upstream's ``main_*.py``, or None when none can be had.

    ``$SOLO_LEARN_DIR`` when set; otherwise a checkout of the commit the ``solo`` extra pins, cloned once
    from the extra's Git URL into ``$XDG_CACHE_HOME/solo-directpred/`` (git's ``url.<base>.insteadOf``
    settings apply, so a machine without GitHub can point the URL at a local mirror or bundle).
    """
    value = os.environ.get(SOLO_LEARN_DIR_ENV, "").strip()
    if value:
        return Path(value) if (Path(value) / "main_pretrain.py").is_file() else None
    url, commit = pinned_solo_learn()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "solo-directpred"
    target = cache / f"solo-learn-{commit[:12]}"
    if (target / "main_pretrain.py").is_file():
        return target
    partial = target.with_name(target.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        clone = ["clone", "--quiet", url, str(partial)]
        for command in (clone, ["-C", str(partial), "checkout", "--quiet", commit]):
            subprocess.run(["git", *command], check=True, capture_output=True)
        partial.replace(target)
    except (OSError, subprocess.CalledProcessError):
        shutil.rmtree(partial, ignore_errors=True)
        return target if (target / "main_pretrain.py").is_file() else None  # another process won the race
    return target


def run_ddp_driver(driver: str, out_dir: Path, *args: str) -> list[dict]:
    """Run a two-rank driver script of this folder (gloo) and return what each rank saved (``rankR.pt``)."""
    import pytest

    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available on this platform")
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo), "PYTHONWARNINGS": "ignore"}
    script = Path(__file__).with_name(driver)
    result = subprocess.run(
        [sys.executable, str(script), str(out_dir), *args],
        cwd=out_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=True) for r in range(2)]
