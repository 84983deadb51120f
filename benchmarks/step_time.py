"""Training-step time and peak memory of the plugin's methods against upstream BYOL and SimSiam.

Every method is built through ``solo.methods.METHODS`` from the embedded default config (ResNet-18,
projector 512 → 512 → 64, batch 64 of two 16×16 views, SGD) with one set of overrides, so backbone,
projector sizes, batch and input size are the same everywhere. Upstream ``byol`` uses a 2-layer MLP
predictor with ``pred_hidden_dim`` = 512; upstream ``simsiam`` keeps its own 3-layer projector (same
widths) and MLP predictor.

Timing: a real Lightning ``Trainer`` fits each method for ``--steps`` + 1 batches per round, round-robin
over the methods for ``--rounds`` rounds, so machine drift hits all methods alike. A step is the time
between two consecutive ``on_train_batch_start`` hooks: forward, loss, backward, optimizer step, EMA
update, predictor statistics and every callback — the whole loop iteration (the data are in-memory
tensors). The first step of each fit is dropped; the reported time is the median over all rounds.
The predictor's own work (``accumulate`` + ``finish_step``: statistics + W_p recomputation) is timed on
its own inside the same steps. The spectral monitor's share is DirectPred with ``spectral.enabled`` true
(every 20 steps, buffer 512, no PNG redraws) minus false.

Memory: on CUDA ``torch.cuda.max_memory_allocated`` during the fit, reset before each method. On CPU
(Linux) each method runs once more in its own fresh process and reports the growth of the peak resident
set (``VmHWM``, reset through ``/proc/self/clear_refs`` just before ``fit``) over the RSS at that moment:
activations, gradients, optimizer state and Lightning's own allocations, not the model itself.

    python benchmarks/step_time.py                          # CPU (and CUDA when available)
    python benchmarks/step_time.py --rounds 2 --steps 2     # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accuracy import BYOL_KEYS, SMALL_CNN, _quiet, compose_cfg, quiet_trainer, register_small_cnn


@dataclass(frozen=True)
class Contender:
    """A method in the comparison: solo-learn name and config overrides."""

    key: str
    method: str
    overrides: tuple[str, ...] = ()


CONTENDERS: tuple[Contender, ...] = (
    Contender("byol (upstream)", "byol", (*BYOL_KEYS, "+method_kwargs.pred_hidden_dim=512")),
    Contender("simsiam (upstream)", "simsiam", (*BYOL_KEYS, "+method_kwargs.pred_hidden_dim=512")),
    Contender("directpred", "directpred"),
    Contender("directcopy", "directcopy"),
    Contender("linear_pred", "linear_pred"),
    Contender("directpred_noema", "directpred_noema"),
    Contender(
        "directpred + spectral", "directpred", ("spectral.enabled=true", "spectral.plot_every_n_epochs=0")
    ),
)
BASELINE = "byol (upstream)"


def build(contender: Contender, backbone: str, batch_size: int, size: int, spectral_dir: str):
    """Instantiate ``contender`` with the shared overrides."""
    from solo.methods import METHODS

    overrides = [
        f"method={contender.method}",
        f"backbone.name={backbone}",
        f"optimizer.batch_size={batch_size}",
        f"augmentations.0.crop_size={size}",
        "max_epochs=1",
        "spectral.enabled=false",
        f"spectral.dirpath={spectral_dir}",
        *contender.overrides,
    ]
    cfg = compose_cfg(overrides)
    return METHODS[contender.method](cfg)


class StepClock:
    """Lightning callback: times between consecutive ``on_train_batch_start`` calls (whole loop steps)."""

    def __init__(self, sync) -> None:  # noqa: ANN001 - a no-argument callable
        from lightning.pytorch.callbacks import Callback

        clock = self
        self.sync, self.starts = sync, []

        class _Hook(Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):  # noqa: ANN001
                clock.sync()
                clock.starts.append(time.perf_counter())

            def on_train_end(self, trainer, pl_module):  # noqa: ANN001
                clock.sync()
                clock.starts.append(time.perf_counter())

        self.callback = _Hook()

    def steps(self) -> list[float]:
        """Durations of every step but the first (warm-up), in seconds."""
        return list(np.diff(self.starts)[1:])


def _loader(n_batches: int, batch_size: int, size: int, num_classes: int = 10):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_batches * batch_size, 2, 3, size, size, generator=g)
    y = torch.randint(0, num_classes, (len(x),), generator=g)

    class Views(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(x)

        def __getitem__(self, i: int):
            return i, [x[i, 0], x[i, 1]], y[i]

    return torch.utils.data.DataLoader(Views(), batch_size=batch_size, drop_last=True)


def _timed_update(model, sync, store: list[float]) -> None:  # noqa: ANN001
    """Time the predictor's work of each optimizer step into ``store``: its micro-batch statistics
    (``accumulate``, once per step here) plus ``finish_step`` (all-reduce, running update, W_p)."""
    pending: list[float] = []

    def timed(original, finishes: bool):  # noqa: ANN001, ANN202
        def call(*args: torch.Tensor):  # noqa: ANN202
            sync()
            start = time.perf_counter()
            result = original(*args)
            sync()
            pending.append(time.perf_counter() - start)
            if finishes:
                store.append(sum(pending))
                pending.clear()
            return result

        return call

    model.predictor.accumulate = timed(model.predictor.accumulate, finishes=False)
    model.predictor.finish_step = timed(model.predictor.finish_step, finishes=True)


def fit(
    model, device: str, n_batches: int, batch_size: int, size: int, callbacks: Sequence = (), loader=None
):  # noqa: ANN001
    """One Lightning fit of ``n_batches`` steps (the EMA step counter is reset so EMA runs every step)."""
    if hasattr(model, "last_step"):
        model.last_step = 0
    trainer = quiet_trainer("gpu" if device == "cuda" else "cpu", 1, callbacks)
    trainer.fit(model, train_dataloaders=loader or _loader(n_batches, batch_size, size))


def time_methods(args: argparse.Namespace, device: str) -> dict[str, dict[str, Any]]:
    """Round-robin timing of every contender on ``device``; returns per-method medians (ms) and memory."""
    from tqdm.auto import tqdm

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    spectral_dir = tempfile.mkdtemp(prefix="step-time-spectral-")
    models = {c.key: build(c, args.backbone, args.batch_size, args.size, spectral_dir) for c in CONTENDERS}
    steps = {key: [] for key in models}
    updates = {key: [] for key in models}
    peaks: dict[str, float] = {}
    for key, model in models.items():
        if hasattr(model, "is_analytic") and model.is_analytic:
            _timed_update(model, sync, updates[key])
    with tqdm(
        total=args.rounds * len(models), desc=f"step time ({device})", unit="fit", file=sys.stderr
    ) as bar:
        for _ in range(args.rounds):
            for key, model in models.items():
                clock = StepClock(sync)
                if device == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                fit(model, device, args.steps + 1, args.batch_size, args.size, [clock.callback])
                if device == "cuda":
                    peaks[key] = max(peaks.get(key, 0.0), torch.cuda.max_memory_allocated() / 2**20)
                steps[key] += clock.steps()
                bar.update()
    out = {}
    for key in models:
        row: dict[str, Any] = {"step_ms": 1e3 * float(np.median(steps[key])), "n_steps": len(steps[key])}
        if updates[key]:
            # the first update of each fit follows the warm-up step too; keep all but count per step
            row["update_ms"] = 1e3 * float(np.median(updates[key]))
        if key in peaks:
            row["peak_mib"] = peaks[key]
        out[key] = row
    return out


def _proc_status_mib(field: str) -> float:
    """A ``VmRSS``/``VmHWM`` line of ``/proc/self/status`` in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    raise KeyError(field)


def memory_probe(key: str, backbone: str, batch_size: int, size: int, steps: int) -> float:
    """Peak-RSS growth (MiB) of ``steps`` training steps of one contender, in this (fresh) process.

    Linux: after a one-step warm-up fit (one-off allocations: thread pools, Lightning), the high-water
    mark ``VmHWM`` is reset to the current RSS (``/proc/self/clear_refs`` ← 5) just before the measured
    ``fit``, so earlier peaks (imports, model construction) do not hide the training peak.
    """
    contender = next(c for c in CONTENDERS if c.key == key)
    model = build(contender, backbone, batch_size, size, tempfile.mkdtemp(prefix="step-mem-"))
    fit(model, "cpu", 1, batch_size, size)
    loader = _loader(steps, batch_size, size)
    Path("/proc/self/clear_refs").write_text("5")
    before = _proc_status_mib("VmRSS")
    fit(model, "cpu", steps, batch_size, size, loader=loader)
    return _proc_status_mib("VmHWM") - before


def cpu_memory(args: argparse.Namespace, parallel: int = 2) -> dict[str, float]:
    """Run :func:`memory_probe` for every contender in its own subprocess (one torch thread, 2 at a time)."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def probe(contender: Contender) -> float:
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--memory-probe",
            contender.key,
            "--backbone",
            args.backbone,
            "--batch-size",
            str(args.batch_size),
            "--size",
            str(args.size),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        return float(result.stdout.strip().splitlines()[-1])

    with ThreadPoolExecutor(parallel) as pool:
        values = list(
            tqdm(
                pool.map(probe, CONTENDERS),
                total=len(CONTENDERS),
                desc="peak RSS (one process each)",
                unit="method",
                file=sys.stderr,
            )
        )
    return {c.key: v for c, v in zip(CONTENDERS, values)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """All measurements: per device, per method step time (ms), ratios vs upstream BYOL, shares, memory."""
    register_small_cnn()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and not args.cpu_only else [])
    result: dict[str, Any] = {
        "backbone": args.backbone,
        "batch_size": args.batch_size,
        "size": args.size,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "torch_threads": torch.get_num_threads(),
        "devices": {},
    }
    for device in devices:
        rows = time_methods(args, device)
        if device == "cpu" and not args.no_memory:
            for key, mib in cpu_memory(args).items():
                rows[key]["peak_rss_growth_mib"] = mib
        base = rows[BASELINE]["step_ms"]
        for row in rows.values():
            row["ratio_vs_byol"] = row["step_ms"] / base
            if "update_ms" in row:
                row["update_share"] = row["update_ms"] / row["step_ms"]
        spectral = rows["directpred + spectral"]["step_ms"] - rows["directpred"]["step_ms"]
        label = torch.cuda.get_device_name() if device == "cuda" else "cpu"
        result["devices"][device] = {
            "name": label,
            "methods": rows,
            "spectral_share": spectral / rows["directpred"]["step_ms"],
        }
    return result


def table(result: dict[str, Any]) -> str:
    """Markdown table per device."""
    parts = []
    for device, block in result["devices"].items():
        mem_key = "peak_mib" if device == "cuda" else "peak_rss_growth_mib"
        mem_label = "peak CUDA MiB" if device == "cuda" else "peak RSS growth MiB"
        lines = [
            f"**{block['name']}** — {result['backbone']}, "
            f"batch {result['batch_size']} × 2 views, "
            f"{result['size']}×{result['size']}, "
            f"median of {result['rounds']} rounds × {result['steps_per_round']} steps",
            "",
            f"| method | step ms | vs upstream BYOL | predictor update ms (share) | {mem_label} |",
            "|---|---|---|---|---|",
        ]
        for key, row in block["methods"].items():
            update = (
                f"{row['update_ms']:.2f} ({100 * row['update_share']:.1f} %)" if "update_ms" in row else "–"
            )
            mem = f"{row[mem_key]:.0f}" if mem_key in row else "–"
            lines.append(f"| {key} | {row['step_ms']:.1f} | {row['ratio_vs_byol']:.2f}× | {update} | {mem} |")
        lines.append("")
        lines.append(f"Spectral monitor share of a DirectPred step: {100 * block['spectral_share']:+.1f} %.")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared with ``run_all.py``."""
    parser.add_argument("--backbone", default="resnet18", choices=["resnet18", SMALL_CNN])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--size", type=int, default=16, help="image side in pixels")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per fit (one more is the warm-up)")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-process CPU memory probe")
    parser.add_argument("--cpu-only", action="store_true")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    parser.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    _quiet()
    if args.memory_probe:
        register_small_cnn()
        print(memory_probe(args.memory_probe, args.backbone, args.batch_size, args.size, steps=3))
        return 0
    result = run(args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
