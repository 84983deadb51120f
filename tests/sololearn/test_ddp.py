"""Two-process DDP on CPU (gloo) through Lightning: every rank holds the same F̂ and W_p."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import requires_solo

pytestmark = [requires_solo, pytest.mark.solo, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("method", ["directpred", "directcopy_noema"])
def test_ranks_hold_identical_statistics_and_predictor(tmp_path, method):
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available on this platform")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    script = Path(__file__).with_name("ddp_driver.py")
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path), method],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    # The ranks saw different samples (DistributedSampler) ...
    assert not torch.equal(ranks[0].pop("batch_rows"), ranks[1].pop("batch_rows"))
    # ... yet hold bit-identical statistics and predictor, updated at every step.
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), key
    assert int(ranks[0]["step"]) == 3 and int(ranks[0]["num_weight_updates"]) == 3
    assert not torch.equal(ranks[0]["weight"], torch.eye(ranks[0]["weight"].shape[0]))
