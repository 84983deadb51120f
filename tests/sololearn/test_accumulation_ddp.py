"""Two DDP ranks with ``accumulate_grad_batches=4`` through Lightning and the real solo-learn: one W_p.

Every rank holds the F̂ and W_p of one batch made of both ranks' four micro-batches per optimizer step
(README "Scaling out").
"""

import pytest
import torch

from tests.conftest import requires_solo
from tests.sololearn.helpers import run_ddp_driver

pytestmark = [requires_solo, pytest.mark.solo, pytest.mark.slow]


def test_two_accumulating_ranks_hold_the_statistics_of_the_pooled_batch(tmp_path):
    from omegaconf import OmegaConf

    from solo_directpred.sololearn.methods import build_predictor
    from tests.sololearn.accumulation_ddp_driver import ACCUMULATE, STEPS

    method = "directcopy"  # the EMA method with the Lanczos solver; test_distributed.py covers every solver

    ranks = run_ddp_driver("accumulation_ddp_driver.py", tmp_path, method)
    micro_z = [rank.pop("micro_z") for rank in ranks]
    assert not torch.equal(micro_z[0], micro_z[1])  # the ranks saw different samples
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), key
    seen = ranks[0]["seen_weights"]
    for start in range(0, ACCUMULATE * STEPS, ACCUMULATE):
        assert all(torch.equal(w, seen[start]) for w in seen[start : start + ACCUMULATE])
    assert int(ranks[0]["step"]) == STEPS and int(ranks[0]["num_weight_updates"]) == STEPS
    # One process fed, per optimizer step, both ranks' four micro-batches as one batch.
    reference = build_predictor(OmegaConf.load(tmp_path / "method_kwargs.yaml"))
    for start in range(0, ACCUMULATE * STEPS, ACCUMULATE):
        rows = torch.cat([z[start : start + ACCUMULATE] for z in micro_z], dim=0)  # (8, views, B, d)
        reference.update(*[rows[:, v].reshape(-1, 8) for v in range(rows.shape[1])])
    assert (ranks[0]["stats.correlation"] - reference.correlation).abs().max() <= 1e-6
    assert (ranks[0]["weight"] - reference.weight).abs().max() <= 1e-6
