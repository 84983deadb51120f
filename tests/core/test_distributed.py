"""Two CPU processes over gloo: every rank holds the same F̂ and W_p, equal to one process fed the union.

With gradient accumulation and for every solver, `auto` included: rank 0 solves, the others receive W_p.
"""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from solo_directpred.core import SOLVERS, AnalyticPredictor

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


SOLVER_CASES = {"eigh": 0.5, "newton_schulz": 0.5, "power": 1.0, "auto": 1.0}
MICRO = 4


def _micro_batches(rank: int, step: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1000 * step + rank)
    return [torch.randn(4 + 2 * rank, 16, generator=g) * torch.logspace(0, -1, 16) for _ in range(MICRO)]


def _never_solve(*args, **kwargs):
    raise AssertionError("only rank 0 may solve for W_p")


def _accumulating_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        AnalyticPredictor._auto_choice.clear()
        for solver, alpha in SOLVER_CASES.items():
            predictor = AnalyticPredictor(16, alpha=alpha, solver=solver, eigh_dtype="float64", freq=2)
            if rank == 1:
                predictor._solve = _never_solve  # W_p reaches rank 1 by the broadcast, never by its own solve
            for step in range(5):
                for micro in _micro_batches(rank, step):
                    predictor.accumulate(micro)
                predictor.finish_step()
            state = dict(predictor.state_dict())
            state["auto_choices"] = torch.tensor(len(AnalyticPredictor._auto_choice))
            state["chosen_solver"] = torch.tensor(SOLVERS.index(predictor.chosen_solver))
            torch.save(state, os.path.join(out_dir, f"{solver}-rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_accumulating_hold_one_weight_for_every_solver(tmp_path):
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available on this platform")
    mp.start_processes(
        _accumulating_worker,
        args=(2, _free_port(), str(tmp_path)),
        nprocs=2,
        join=True,
        start_method="spawn",
    )
    for solver, alpha in SOLVER_CASES.items():
        ranks = [torch.load(tmp_path / f"{solver}-rank{r}.pt", weights_only=True) for r in range(2)]
        assert int(ranks[1].pop("auto_choices")) == 0  # rank 1 never timed the solvers
        assert int(ranks[0].pop("auto_choices")) == (1 if solver == "auto" else 0)
        for key in ranks[0]:
            assert torch.equal(ranks[0][key], ranks[1][key]), (solver, key)
        assert int(ranks[0]["step"]) == 5 and int(ranks[0]["num_weight_updates"]) == 3
        # One process, one batch per step: both ranks' four micro-batches pooled.
        single = AnalyticPredictor(16, alpha=alpha, solver=solver, eigh_dtype="float64", freq=2)
        for step in range(5):
            single.update(torch.cat([m for r in range(2) for m in _micro_batches(r, step)]))
        assert (ranks[0]["stats.correlation"] - single.correlation).abs().max() <= 1e-6, solver
        assert (ranks[0]["weight"] - single.weight).abs().max() <= 1e-6, solver
