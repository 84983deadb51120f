"""Cost of one predictor update (statistics excluded): exact eigh against the matmul-only paths.

Prints one row per (device, dtype, d): milliseconds per W_p recomputation for

* DirectPred by ``torch.linalg.eigh`` and by Newton–Schulz (``solver="newton_schulz"``),
* DirectCopy by eigh and by power iteration (``solver="power"``, no eigendecomposition),

and the error of each matmul-only path against eigh (max |eigenvalue difference| of W_p). The input is
a running correlation of 4·d random features with a power-law spectrum, so the paths see a realistic,
ill-conditioned F̂. Run on a GPU machine to see the paths trade places.

    python benchmarks/predictor_update.py                # all sizes, CPU (and CUDA if present)
    python benchmarks/predictor_update.py --dims 128 256 --repeats 5
"""

from __future__ import annotations

import argparse
import time

import torch

from solo_directpred.core import AnalyticPredictor

DIMS = (128, 256, 512, 1024, 2048, 4096)


def _features(d: int, device: torch.device) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    scales = torch.arange(1, d + 1, dtype=torch.float32).pow(-1.0)
    return (torch.randn(4 * d, d, generator=g) * scales).to(device)


def _time_ms(predictor: AnalyticPredictor, repeats: int) -> float:
    sync = torch.cuda.synchronize if predictor.correlation.is_cuda else (lambda: None)
    predictor.recompute()  # warm-up (kernels, workspace)
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        predictor.recompute()
        sync()
        times.append(time.perf_counter() - start)
    times.sort()
    return 1e3 * times[len(times) // 2]


def _predictor(d: int, device: torch.device, dtype: str, **kwargs) -> AnalyticPredictor:
    predictor = AnalyticPredictor(d, eigh_dtype=dtype, **kwargs).to(device)
    predictor.update(_features(d, device))
    return predictor


def _max_eig_error(a: torch.Tensor, b: torch.Tensor) -> float:
    ea = torch.linalg.eigvalsh(a.double().cpu())
    eb = torch.linalg.eigvalsh(b.double().cpu())
    return (ea - eb).abs().max().item()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dims", type=int, nargs="+", default=list(DIMS))
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when available")
    args = parser.parse_args()
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])

    header = (
        f"{'device':<6} {'dtype':<8} {'d':>5} | {'DP eigh':>9} {'DP NS':>9} {'NS err':>8} | "
        f"{'DC eigh':>9} {'DC power':>9} {'pow err':>8}   (ms per update)"
    )
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(header)
    print("-" * len(header))
    for device_name in devices:
        device = torch.device(device_name)
        label = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        for dtype in args.dtypes:
            for d in args.dims:
                repeats = args.repeats if d <= 1024 else max(2, args.repeats // 3)
                dp_eigh = _predictor(d, device, dtype)
                dp_ns = _predictor(d, device, dtype, solver="newton_schulz")
                dc_eigh = _predictor(d, device, dtype, alpha=1.0)
                dc_pow = _predictor(d, device, dtype, alpha=1.0, solver="power", power_iters=20)
                row = [_time_ms(p, repeats) for p in (dp_eigh, dp_ns, dc_eigh, dc_pow)]
                ns_err = _max_eig_error(dp_ns.weight, dp_eigh.weight)
                pow_err = _max_eig_error(dc_pow.weight, dc_eigh.weight)
                print(
                    f"{device_name:<6} {dtype:<8} {d:>5} | {row[0]:>9.2f} {row[1]:>9.2f} {ns_err:>8.1e} | "
                    f"{row[2]:>9.2f} {row[3]:>9.2f} {pow_err:>8.1e}",
                    flush=True,
                )
        if device.type == "cuda":
            print(f"(cuda = {label})")


if __name__ == "__main__":
    main()
