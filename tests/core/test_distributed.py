"""Two CPU processes over gloo: every rank holds the same F̂ and W_p, equal to one process fed the union."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from solo_directpred.core import AnalyticPredictor

STEPS = 4


def _batches(rank: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 * step + rank)
    n = 6 + 4 * rank  # unequal batch sizes: the all-reduce must weight ranks by their sample count
    scales = torch.logspace(0, -2, 8)
    return torch.randn(n, 8, generator=g) * scales, torch.randn(n, 8, generator=g) * scales


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        predictor = AnalyticPredictor(8, rho=0.3, freq=2)
        for step in range(STEPS):
            z1, z2 = _batches(rank, step)
            if step == 2 and rank == 1:
                z1[0, 0] = float("nan")  # one rank's bad batch must be skipped on every rank
            predictor.update(z1, z2)
        torch.save(predictor.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_gloo_statistics_are_identical_and_equal_to_the_union(tmp_path):
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available on this platform")
    mp.start_processes(
        _worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True, start_method="spawn"
    )
    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key

    single = AnalyticPredictor(8, rho=0.3, freq=2)
    for step in range(STEPS):
        if step == 2:
            single.update(torch.tensor([[float("nan")] * 8]))  # the skipped step, as seen by one process
            continue
        views = [_batches(r, step) for r in range(2)]
        single.update(torch.cat([v[0] for v in views]), torch.cat([v[1] for v in views]))
    torch.testing.assert_close(states[0]["stats.correlation"], single.correlation, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(states[0]["weight"], single.weight, atol=1e-5, rtol=1e-5)
    assert int(states[0]["stats.num_skipped"]) == 1 and int(states[0]["num_weight_updates"]) == 1
