"""Cost and accuracy of one W_p recomputation (statistics excluded): exact eigh against the matmul-only paths.

Prints one row per (device, dtype, d): milliseconds per W_p recomputation for

* DirectPred by ``torch.linalg.eigh`` and by Newton–Schulz (``solver="newton_schulz"``),
* DirectCopy by eigh and by the ``power`` solver (F̂/λ_max + εI, λ_max by Lanczos, no eigendecomposition),

and the error of each matmul-only path against eigh: for Newton–Schulz the max |eigenvalue difference| of
W_p, for ``power`` the max |ΔW_p| entry (a) on a running correlation of 4·d random features with a power-law
spectrum (a realistic, ill-conditioned F̂) and (b) the worst step of a history whose top eigenvector switches
every step with a 1 % gap between the top two eigenvalues (the case a warm-started power iteration gets
wrong), with the number of eigh fallbacks the ``power`` solver took (its Lanczos residual test). The
references are float64 eigh. Run on a GPU machine to see the paths trade places.

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


def _switching_batches(d: int, gap: float, device: torch.device, steps: int = 6) -> list[torch.Tensor]:
    """d-row batches with F_b = Q diag(s) Qᵀ, the top two eigenvalues 1 and 1 − gap swapping every step."""
    g = torch.Generator().manual_seed(1)
    q = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0]
    tail = torch.logspace(-1, -3, d - 2, dtype=torch.float64)
    batches = []
    for step in range(steps):
        top = [1.0, 1.0 - gap] if step % 2 == 0 else [1.0 - gap, 1.0]
        s = torch.cat([torch.tensor(top, dtype=torch.float64), tail]) * (1.0 + 0.1 * step)
        batches.append(((d * s).sqrt()[:, None] * q.T).float().to(device))
    return batches


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


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double().cpu() - b.double().cpu()).abs().max().item()


def _switching_error(d: int, device: torch.device, dtype: str, gap: float = 0.01) -> tuple[float, int]:
    """Worst max |ΔW_p| of ``power`` against float64 eigh over a switching history, and its eigh fallbacks."""
    power = AnalyticPredictor(d, alpha=1.0, solver="power", eigh_dtype=dtype).to(device)
    exact = AnalyticPredictor(d, alpha=1.0, solver="eigh", eigh_dtype="float64").to(device)
    worst = 0.0
    for z in _switching_batches(d, gap, device):
        power.update(z)
        exact.update(z)
        worst = max(worst, _max_abs(power.weight, exact.weight))
    return worst, int(power.num_fallbacks)


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
        f"{'DC eigh':>9} {'DC power':>9} {'pow err':>8} {'1% err':>8} {'fallbk':>6}"
    )
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; times in ms per W_p update")
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
                dc_pow = _predictor(d, device, dtype, alpha=1.0, solver="power")
                dc_ref = _predictor(d, device, "float64", alpha=1.0)
                row = [_time_ms(p, repeats) for p in (dp_eigh, dp_ns, dc_eigh, dc_pow)]
                ns_err = _max_eig_error(dp_ns.weight, dp_eigh.weight)
                pow_err = _max_abs(dc_pow.weight, dc_ref.weight)
                switch_err, fallbacks = _switching_error(d, device, dtype)
                print(
                    f"{device_name:<6} {dtype:<8} {d:>5} | {row[0]:>9.2f} {row[1]:>9.2f} {ns_err:>8.1e} | "
                    f"{row[2]:>9.2f} {row[3]:>9.2f} {pow_err:>8.1e} {switch_err:>8.1e} {fallbacks:>6d}",
                    flush=True,
                )
        if device.type == "cuda":
            print(f"(cuda = {label})")


if __name__ == "__main__":
    main()
