"""What the analytic predictor adds to a distributed training step: all-reduce, solve, broadcast.

Starts ``--world`` processes (gloo on CPU, or NCCL with one GPU per process when ``--backend nccl``) and
prints, per predictor width d, the median milliseconds of

* ``accumulate``: one micro-batch of ``--batch`` rows into the pending sums (local z zᵀ, no collective);
* ``finish_step`` without a recomputation: the one packed all-reduce of [Σzzᵀ | Σz | n | flag] (d² + d + 2
  floats) and the running update — paid every optimizer step;
* ``broadcast``: the one packed broadcast of [W_p | kept | fallbacks | solver] (d² + 3 floats) — paid every
  ``freq`` optimizer steps;
* ``recompute``: rank 0's solve (``--solver``) plus that broadcast, as every rank sees it.

    python benchmarks/distributed_overhead.py                       # 2 gloo processes, d = 128 … 1024
    python benchmarks/distributed_overhead.py --backend nccl --world 8 --dims 256 2048
"""

from __future__ import annotations

import argparse
import os
import socket
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from solo_directpred.core import AnalyticPredictor


def _median_ms(fn, repeats: int, device: torch.device, setup=None) -> float:
    """Median wall time of ``fn()`` in ms, all ranks starting together; ``setup()`` runs untimed before."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    setup = setup or (lambda: None)
    setup()
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        setup()
        dist.barrier()
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    times.sort()
    return 1e3 * times[len(times) // 2]


def _row(d: int, rank: int, device: torch.device, args: argparse.Namespace) -> list[float]:
    """[accumulate, finish_step, broadcast, recompute] medians in ms at width d."""
    alpha = 1.0 if args.solver == "power" else 0.5
    predictor = AnalyticPredictor(d, alpha=alpha, solver=args.solver, freq=10**9).to(device)
    g = torch.Generator().manual_seed(rank)
    z = (torch.randn(args.batch, d, generator=g) * torch.logspace(0, -2, d)).to(device)
    predictor.update(z)  # statistics exist; freq = 10^9: later steps never recompute on their own
    packet = torch.zeros(d * d + 3, device=device)
    accumulate = _median_ms(lambda: predictor.accumulate(z), args.repeats, device)
    predictor.stats.reduce_pending()  # drop what the timing accumulated
    finish = _median_ms(predictor.finish_step, args.repeats, device, setup=lambda: predictor.accumulate(z))
    broadcast = _median_ms(lambda: dist.broadcast(packet, src=0), args.repeats, device)
    recompute = _median_ms(predictor.recompute, args.repeats, device)
    return [accumulate, finish, broadcast, recompute]


def _worker(rank: int, world: int, port: int, args: argparse.Namespace) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(args.threads)
    dist.init_process_group(args.backend, rank=rank, world_size=world)
    device = torch.device(f"cuda:{rank}" if args.backend == "nccl" else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        if rank == 0:
            print(f"torch {torch.__version__}, {args.backend}, world {world}, solver {args.solver}, ", end="")
            print(f"batch {args.batch} rows per micro-batch and rank; median ms over {args.repeats} repeats")
            print(f"{'d':>5} | {'accumulate':>10} {'finish_step':>11} {'broadcast':>9} {'recompute':>9}")
        for d in args.dims:
            row = _row(d, rank, device, args)
            if rank == 0:
                print(f"{d:>5} | {row[0]:>10.3f} {row[1]:>11.3f} {row[2]:>9.3f} {row[3]:>9.3f}", flush=True)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--backend", default="gloo", choices=["gloo", "nccl"])
    parser.add_argument("--dims", type=int, nargs="+", default=[128, 256, 512, 1024])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--solver", default="eigh", choices=["eigh", "newton_schulz", "power"])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    args = parser.parse_args()
    world = args.world
    mp.start_processes(_worker, args=(world, _free_port(), args), nprocs=world, start_method="spawn")


if __name__ == "__main__":
    main()
