"""Shared test helpers: the solo-learn availability check used by every integration test."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from solo_directpred.compat import ensure_torchvision_importable

# before any test module imports Lightning, torchmetrics or solo-learn (they import torchvision)
ensure_torchvision_importable()

# One intra-op thread per test process: the suite runs several processes at once (DDP tests, subprocesses),
# and OpenMP spin-waiting on oversubscribed cores makes small convolutions ten times slower.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")

SOLO_AVAILABLE = importlib.util.find_spec("solo") is not None
requires_solo = pytest.mark.skipif(
    not SOLO_AVAILABLE,
    reason="solo-learn is not importable (install the 'solo' extra from its Git repository to run this)",
)

#: With this variable set to 1 (CI does), a test skipped for want of solo-learn or of a solo-learn checkout
#: fails the run instead of passing silently.
REQUIRE_SOLO_ENV = "SOLO_DIRECTPRED_REQUIRE_SOLO"
_SOLO_SKIP_WORDS = ("solo-learn", "SOLO_LEARN_DIR")
_solo_skips: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and any(word in str(report.longrepr) for word in _SOLO_SKIP_WORDS):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _solo_skips.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get(REQUIRE_SOLO_ENV) == "1" and _solo_skips:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if os.environ.get(REQUIRE_SOLO_ENV) == "1" and _solo_skips:
        terminalreporter.write_line(
            f"{REQUIRE_SOLO_ENV}=1 and {len(_solo_skips)} test(s) skipped for want of solo-learn:", red=True
        )
        for line in _solo_skips[:20]:
            terminalreporter.write_line(f"  {line}", red=True)


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
