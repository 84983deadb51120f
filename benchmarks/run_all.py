"""Run the whole benchmark suite and write ``report.md`` and ``report.json``.

1. Step time and peak memory against upstream BYOL/SimSiam (:mod:`step_time`), alone on the machine.
2. The small-scale accuracy grid (:mod:`accuracy`) on worker processes.

    python benchmarks/run_all.py --out benchmarks/results/   # full run (23 min on 2 shared CPU cores)
    python benchmarks/run_all.py --out /tmp/bench --quick    # smoke run (a few minutes)

The report states the machine, the load average before and after, and the measured wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import accuracy
import step_time


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    try:
        import lightning
        import solo  # noqa: F401 - only its presence is recorded

        info["lightning"] = lightning.__version__
    except ImportError:
        pass
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        info["cpu"] = names[0] if names else None
    return info


def load() -> list[float]:
    """1, 5 and 15-minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def render(report: dict[str, Any]) -> str:
    """The Markdown report."""
    m, settings = report["machine"], report["accuracy"]["settings"]
    summary = report["accuracy"]["summary"]
    lines = [
        "# Benchmarks: DirectPred and friends vs upstream BYOL/SimSiam",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {m.get('cpu') or 'unknown CPU'}, {m['cpu_count']} cores, "
        f"{m['cuda'] or 'no GPU'}; torch {m['torch']}, Python {m['python']}.  ",
        f"Wall time: {report['wall_s'] / 60:.1f} min (step time {report['step_time_s'] / 60:.1f} min, "
        f"accuracy grid {report['accuracy']['wall_s'] / 60:.1f} min on {settings['workers']} worker "
        "processes, one torch thread each).  ",
        f"Load average (1/5/15 min) before: {report['load_before']}, after step time: {report['load_mid']}, "
        f"at the end: {report['load_after']} — the machine was shared, so absolute times are noisy; "
        "ratios within one table are measured side by side.",
        "",
        "## Step time and memory",
        "",
        step_time.table(report["step_time"]),
        "",
        "## Accuracy at small scale",
        "",
        f"Backbone `small_cnn` (4 conv layers, 128 features), projector 512 → 64, "
        f"batch {settings['batch_size']}, SGD lr 0.125, wd 4e-4, EMA τ = 0.99; "
        f"{settings['epochs_digits']} epochs on digits, {settings['epochs_shapes']} on shapes "
        f"({settings['shapes_train_per_class']}/{settings['shapes_val_per_class']} "
        "train/val images per class); "
        f"seeds {settings['seeds']}. Top-1 accuracy (%) on the validation split, mean ± std over seeds "
        "(ddof = 1): weighted cosine kNN (k = 20, T = 0.07) and a logistic-regression probe on frozen "
        "backbone features; rank = effective rank of the validation features (128 max).",
        "",
    ]
    for dataset in summary:
        lines += [f"### {dataset}", "", accuracy.grid_table(summary, dataset), ""]
        if any(key.startswith("directpred_") and key != "directpred_noema" for key in summary[dataset]):
            lines += [accuracy.ablation_table(summary, dataset), ""]
        none = summary[dataset].get("none")
        if none and "max_abs_w_minus_i" in none:
            lines += [
                f"Largest |W_p − I| of the 'none' cells after training: {none['max_abs_w_minus_i']:.1e}.",
                "",
            ]
    lines += [
        "## The paper's claims at this scale",
        "",
        "Δ = a − b of the linear-probe accuracy; 'holds' / 'contradicted' when |Δ| exceeds the "
        "seeds' combined std, 'within noise' otherwise. Small data and short training: a pattern, "
        "not the paper's numbers.",
        "",
        accuracy.claims_table(report["accuracy"]["claims"]),
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    accuracy.add_arguments(parser)
    parser.add_argument("--step-rounds", type=int, default=None, help="step-time rounds (default 4, quick 1)")
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite report.md from an existing report.json in --out"
    )
    args = parser.parse_args(argv)
    if args.render_only:
        report = json.loads((args.out / "report.json").read_text())
        (args.out / "report.md").write_text(render(report))
        return 0
    accuracy._quiet()
    start = time.perf_counter()
    report: dict[str, Any] = {
        "command": "python benchmarks/run_all.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine(),
        "load_before": load(),
    }
    step_args = argparse.Namespace(
        backbone="resnet18",
        batch_size=64,
        size=16,
        rounds=args.step_rounds or (1 if args.quick else 4),
        steps=1 if args.quick else 3,
        no_memory=False,
        cpu_only=False,
    )
    t0 = time.perf_counter()
    report["step_time"] = step_time.run(step_args)
    report["step_time_s"] = time.perf_counter() - t0
    report["load_mid"] = load()
    settings = accuracy.settings_from_args(args)
    t0 = time.perf_counter()
    records = accuracy.run_grid(settings, args.variants)
    summary = accuracy.summarize(records)
    report["accuracy"] = {
        "settings": asdict(settings),
        "wall_s": time.perf_counter() - t0,
        "records": records,
        "summary": summary,
        "claims": accuracy.claims(summary),
    }
    report["load_after"] = load()
    report["wall_s"] = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    (args.out / "report.md").write_text(render(report))
    print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
