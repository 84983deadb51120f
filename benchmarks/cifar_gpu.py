"""The paper's CIFAR-10 setting on a GPU: DirectPred, the trained linear predictor and upstream BYOL.

The shipped presets ``pretrain/cifar/{directpred,linear_pred,byol}.yaml`` (ResNet-18 with the CIFAR
stem, projector 512 → 128, batch 128, SGD 0.03 at batch 128, wd 4e-4, EMA 0.996; DirectPred ρ = 0.3,
ε = 0.1, freq = 1) pretrain on CIFAR-10 given as class folders (``--data`` or ``$SOLO_DIRECTPRED_CIFAR10``:
``train/<class>/*`` and ``test/<class>/*``, read through ``data.format=image_folder``, see
docs/presets.md), each through ``solo-directpred pretrain``'s driver on one device; then the frozen
backbone is probed with ``solo-directpred knn`` (k = 20, cosine, T = 0.07) on the 10,000 test images and,
with ``--linear``, with the preset's linear probe (``linear/cifar/directpred.yaml``).

    # the paper's run, for users (100 epochs each, kNN and linear probe)
    python benchmarks/cifar_gpu.py --data PATH --out OUT --epochs 100 --linear
    # the prepared check that fits 10 minutes of one GPU: timings, epoch times, then as many epochs as fit
    python benchmarks/cifar_gpu.py --data PATH --out OUT --budget-s 540 --timings
    # a CPU smoke run of the whole pipeline (2 batches per epoch, batch 8)
    python benchmarks/cifar_gpu.py --data PATH --out OUT --tiny

With ``--budget-s`` the script first times one epoch of each method (setup included), then trains every
method for E epochs, E chosen so that the three runs and their kNN fit the time left; the epoch time it
reports is (wall(E epochs) − wall(1 epoch)) / (E − 1), so set-up and the first epoch's warm-up cancel.
``--timings`` adds ``step_time.py`` (its own setting: ResNet-18 with the ImageNet stem of the embedded
default, projector 512 → 64, here at batch 128 of 32×32 views; CPU, then CUDA step time and peak memory) and
``predictor_update.py`` (eigh vs matmul-only W_p updates, CUDA) before the training. Everything goes to
``OUT/cifar10_gpu.json`` and ``OUT/cifar10_gpu.md``, rewritten after every stage.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
METHODS = ("directpred", "linear_pred", "byol")
PRESET = "pretrain/cifar/{}.yaml"
LINEAR_PRESET = "linear/cifar/directpred.yaml"
DATA_ENV = "SOLO_DIRECTPRED_CIFAR10"


def data_overrides(root: Path, workers: int) -> list[str]:
    """CIFAR-10 class folders for the CIFAR presets (see :mod:`solo_directpred.sololearn.cifar_folders`)."""
    return [
        "data.dataset=cifar10",
        "data.format=image_folder",
        f"data.train_path={root / 'train'}",
        f"data.val_path={root / 'test'}",
        f"data.num_workers={workers}",
    ]


def device_overrides(gpu: bool, tiny: bool) -> list[str]:
    """One device: the presets' 16-bit mixed precision on a GPU, float32 on the CPU."""
    if gpu:
        return ["accelerator=gpu", "devices=[0]", "strategy=auto", "sync_batchnorm=false"]
    overrides = ['devices="1"', "accelerator=cpu", "strategy=auto", "precision=32", "sync_batchnorm=false"]
    if tiny:
        overrides += ["optimizer.batch_size=8", "+limit_train_batches=2", "+limit_val_batches=1"]
    return overrides


def pretrain(method: str, epochs: int, out: Path, common: Sequence[str]) -> dict[str, Any]:
    """Train ``method`` from scratch for ``epochs``; wall time, checkpoint and the online classifier."""
    from solo_directpred.sololearn.pretrain import run_pretrain
    from solo_directpred.sololearn.shared import compose_config

    overrides = [
        *common,
        f"max_epochs={epochs}",
        f"name={method}-cifar10-{epochs}ep",
        f"checkpoint.dir={out / 'checkpoints' / f'{epochs}ep'}",
        "checkpoint.frequency=1000000",  # the last epoch's checkpoint only
        "auto_resume.enabled=false",
        "wandb.enabled=false",
    ]
    cfg = compose_config(PRESET.format(method), overrides)
    start = time.perf_counter()
    result = run_pretrain(cfg)
    return {
        "method": method,
        "epochs": epochs,
        "wall_s": time.perf_counter() - start,
        "checkpoint": str(result.checkpoint) if result.checkpoint else None,
        "metrics": {k: float(v) for k, v in result.metrics.items()},
    }


def knn(checkpoint: str, common: Sequence[str]) -> dict[str, float]:
    """Backbone kNN top-1 (%) on the test images: k = 20, cosine, T = 0.07."""
    from solo_directpred.sololearn.knn import run_knn
    from solo_directpred.sololearn.shared import compose_config

    overrides = [
        *common,
        "+knn.k=[20]",
        "+knn.temperature=[0.07]",
        "+knn.feature_type=[backbone]",
        "+knn.distance_function=[cosine]",
    ]
    start = time.perf_counter()
    (result,) = run_knn(compose_config(LINEAR_PRESET, overrides), checkpoint)
    return {"knn": float(result.acc1), "knn_s": time.perf_counter() - start}


def linear(checkpoint: str, common: Sequence[str], epochs: int | None) -> dict[str, float]:
    """The preset's linear probe (Adam, 50 epochs unless ``epochs``): final and best top-1 (%)."""
    from solo_directpred.sololearn.linear import run_linear
    from solo_directpred.sololearn.shared import compose_config

    overrides = [*common, "auto_resume.enabled=false", "wandb.enabled=false"]
    if epochs is not None:
        overrides.append(f"max_epochs={epochs}")
    start = time.perf_counter()
    result = run_linear(compose_config(LINEAR_PRESET, overrides), checkpoint)
    return {
        "linear": float(result.acc1),
        "linear_best": float(result.best_acc1),
        "linear_s": time.perf_counter() - start,
    }


def timings(out: Path, tiny: bool) -> dict[str, Any]:
    """``step_time.py`` and ``predictor_update.py`` as subprocesses; their JSON / printed table."""
    steps = ["--rounds", "1", "--steps", "1"] if tiny else ["--rounds", "2", "--steps", "3"]
    step_json = out / "step_time.json"
    subprocess.run(
        [sys.executable, str(HERE / "step_time.py"), "--batch-size", "128", "--size", "32", "--no-memory"]
        + steps
        + ["--json", str(step_json)],
        check=True,
    )
    devices = ["cuda"] if torch.cuda.is_available() else ["cpu"]
    update = subprocess.run(
        [sys.executable, str(HERE / "predictor_update.py"), "--devices", *devices]
        + (["--dims", "64", "--repeats", "2"] if tiny else []),
        check=True,
        capture_output=True,
        text=True,
    )
    return {"step_time": json.loads(step_json.read_text()), "predictor_update": update.stdout}


def choose_epochs(budget_s: float, elapsed_s: float, one_epoch: dict[str, float], knn_s: float) -> int:
    """The most epochs E such that the three E-epoch runs (extrapolated from their 1-epoch runs, set-up
    included) plus their kNN fit the time left; at least 2 (two points give the epoch time)."""
    left = budget_s - elapsed_s - len(one_epoch) * knn_s
    per_epoch = sum(one_epoch.values())
    return max(2, math.floor(left / per_epoch))


def render(report: dict[str, Any]) -> str:
    """The Markdown report."""
    lines = [
        "# CIFAR-10 on one device: DirectPred, trained linear predictor, upstream BYOL",
        "",
        f"Command: `{report['command']}`  ",
        f"Device: {report['device']}; torch {report['torch']}.",
        "",
        "Presets `pretrain/cifar/*.yaml` (ResNet-18 CIFAR stem, projector 512 → 128, batch "
        f"{report['batch_size']}, SGD lr 0.03 at batch 128, wd 4e-4, EMA 0.996; DirectPred ρ = 0.3, ε = 0.1, "
        "freq = 1), trained from scratch for E epochs. Epoch time = (wall(E) − wall(1)) / (E − 1). "
        "kNN: backbone features, k = 20, cosine, T = 0.07, all test images.",
        "",
        "| method | epochs E | epoch time (s) | wall, E epochs (s) | online classifier top-1 | kNN top-1 | "
        "linear probe top-1 (final / best) |",
        "|---|---|---|---|---|---|---|",
    ]
    for method in METHODS:
        run = report["runs"].get(method)
        if run is None:
            lines.append(f"| {method} | not run | | | | | |")
            continue
        one = report["one_epoch"].get(method)
        epoch_s = (
            f"{(run['wall_s'] - one['wall_s']) / (run['epochs'] - 1):.1f}"
            if one and run["epochs"] > 1
            else "–"
        )
        acc = run["metrics"].get("val_acc1")
        lin = f"{run['linear']:.1f} / {run['linear_best']:.1f}" if "linear" in run else "not run"
        lines.append(
            f"| {method} | {run['epochs']} | {epoch_s} | {run['wall_s']:.0f} | "
            f"{'–' if acc is None else f'{acc:.1f}'} | {run.get('knn', float('nan')):.1f} | {lin} |"
        )
    if "timings" in report:
        lines += ["", "## Step time (step_time.py: ImageNet-stem ResNet-18, batch 128 of 32×32 views)", ""]
        sys.path.insert(0, str(HERE))
        import step_time

        lines += [step_time.table(report["timings"]["step_time"]), "", "## Predictor update", ""]
        lines += ["```", report["timings"]["predictor_update"].strip(), "```"]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, default=None, help=f"CIFAR-10 class folders (default: ${DATA_ENV})"
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=100, help="epochs per method (without --budget-s)")
    parser.add_argument("--budget-s", type=float, default=None, help="fit everything into this many seconds")
    parser.add_argument(
        "--timings", action="store_true", help="run step_time.py and predictor_update.py first"
    )
    parser.add_argument("--linear", action="store_true", help="also train the preset's linear probe")
    parser.add_argument("--linear-epochs", type=int, default=None, help="default: the preset's 50")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument(
        "--workers", type=int, default=min(16, os.cpu_count() or 1), help="data loader workers"
    )
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run: 2 batches of 8 per epoch")
    args = parser.parse_args(argv)
    root = args.data or (Path(os.environ[DATA_ENV]) if os.environ.get(DATA_ENV) else None)
    if root is None or not (root / "train").is_dir() or not (root / "test").is_dir():
        parser.error(
            f"--data (or ${DATA_ENV}) must hold CIFAR-10 class folders train/<class>/ and test/<class>/"
        )
    start = time.perf_counter()
    gpu = torch.cuda.is_available() and not args.tiny
    common = [*data_overrides(root, args.workers), *device_overrides(gpu, args.tiny)]
    args.out.mkdir(parents=True, exist_ok=True)
    from cifar_cpu import recorded_command

    report: dict[str, Any] = {
        "command": recorded_command(sys.argv[1:] if argv is None else argv, "cifar_gpu.py"),
        "device": torch.cuda.get_device_name() if gpu else "CPU",
        "torch": torch.__version__,
        "batch_size": 8 if args.tiny else 128,
        "one_epoch": {},
        "runs": {},
    }

    def save() -> None:
        report["wall_s"] = time.perf_counter() - start
        (args.out / "cifar10_gpu.json").write_text(json.dumps(report, indent=2))
        (args.out / "cifar10_gpu.md").write_text(render(report))

    if args.timings:
        report["timings"] = timings(args.out, args.tiny)
        save()
    epochs = args.epochs
    if args.budget_s is not None:
        knn_s = 0.0
        for method in args.methods:
            one = pretrain(method, 1, args.out, common)
            report["one_epoch"][method] = one
            if not knn_s and one["checkpoint"]:
                knn_s = knn(one["checkpoint"], common)["knn_s"]
            save()
        epochs = choose_epochs(
            args.budget_s,
            time.perf_counter() - start,
            {m: r["wall_s"] for m, r in report["one_epoch"].items()},
            knn_s,
        )
    for method in args.methods:
        run = pretrain(method, epochs, args.out, common)
        if run["checkpoint"]:
            run.update(knn(run["checkpoint"], common))
            if args.linear:
                run.update(linear(run["checkpoint"], common, args.linear_epochs))
        report["runs"][method] = run
        save()
    print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
