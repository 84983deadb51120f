"""Two-process DDP on CPU (gloo) through Lightning: every rank holds the same F̂ and W_p."""

import pytest
import torch

from tests.conftest import requires_solo
from tests.sololearn.helpers import run_ddp_driver

pytestmark = [requires_solo, pytest.mark.solo, pytest.mark.slow]


@pytest.mark.parametrize("method", ["directpred", "directcopy_noema"])
def test_ranks_hold_identical_statistics_and_predictor(tmp_path, method):
    ranks = run_ddp_driver("ddp_driver.py", tmp_path, method)
    # The ranks saw different samples (DistributedSampler) ...
    assert not torch.equal(ranks[0].pop("batch_rows"), ranks[1].pop("batch_rows"))
    # ... yet hold bit-identical statistics and predictor, updated at every step.
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), key
    assert int(ranks[0]["step"]) == 3 and int(ranks[0]["num_weight_updates"]) == 3
    assert not torch.equal(ranks[0]["weight"], torch.eye(ranks[0]["weight"].shape[0]))
