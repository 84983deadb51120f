"""Shared test helpers: the solo-learn availability check used by every integration test."""

from __future__ import annotations

import importlib.util

import pytest

SOLO_AVAILABLE = importlib.util.find_spec("solo") is not None
requires_solo = pytest.mark.skipif(
    not SOLO_AVAILABLE,
    reason="solo-learn is not importable (install the 'solo' extra from its Git repository to run this)",
)
