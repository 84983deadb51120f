"""Shared test helpers: the solo-learn availability check used by every integration test."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

import solo_directpred  # noqa: F401  - applies the torchvision import fix before Lightning is imported

# One intra-op thread per test process: the suite runs several processes at once (DDP tests, subprocesses),
# and OpenMP spin-waiting on oversubscribed cores makes small convolutions ten times slower.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")

SOLO_AVAILABLE = importlib.util.find_spec("solo") is not None
requires_solo = pytest.mark.skipif(
    not SOLO_AVAILABLE,
    reason="solo-learn is not importable (install the 'solo' extra from its Git repository to run this)",
)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Keep prepared datasets and downloads of the whole test session out of the user's cache."""
    root = tmp_path_factory.mktemp("solo-directpred-cache")
    previous = os.environ.get("SOLO_DIRECTPRED_CACHE")
    os.environ["SOLO_DIRECTPRED_CACHE"] = str(root)
    yield root
    if previous is None:
        os.environ.pop("SOLO_DIRECTPRED_CACHE", None)
    else:
        os.environ["SOLO_DIRECTPRED_CACHE"] = previous
