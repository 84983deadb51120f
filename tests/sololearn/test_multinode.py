"""Two nodes through Lightning's own launcher: upstream's unmodified ``main_pretrain.py`` started twice on
this machine as ``NODE_RANK`` 0 and 1 of ``num_nodes=2`` (gloo over 127.0.0.1), as a cluster without a
scheduler integration would start it (docs/scaling.md, "Multi-node").

Every rank saves what it holds through the test's Hydra callback (``scale_hooks.RankDump``); training is
the registered method's, untouched.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import requires_solo
from tests.sololearn.helpers import SOLO_LEARN_DIR_ENV, solo_learn_scripts

pytestmark = [
    requires_solo,
    pytest.mark.solo,
    pytest.mark.slow,
    pytest.mark.skipif(
        solo_learn_scripts() is None,
        reason=f"upstream's main_pretrain.py not found: set {SOLO_LEARN_DIR_ENV} to a solo-learn checkout",
    ),
]

REPO = Path(__file__).resolve().parents[2]
BATCH_SIZE, BASE_LR, STEPS = 16, 0.5, 2
# A constant learning rate, so the optimizer's value is the scaled one at every step.
TINY = [
    f"+limit_train_batches={STEPS}",
    "+limit_val_batches=1",
    "spectral.enabled=false",
    "scheduler.name=none",
    f"optimizer.batch_size={BATCH_SIZE}",
    f"optimizer.lr={BASE_LR}",
]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _command(dump: Path, *overrides: str) -> list[str]:
    script = solo_learn_scripts() / "main_pretrain.py"
    hook = [
        "+hydra.callbacks.rank_dump._target_=scale_hooks.RankDump",
        f"+hydra.callbacks.rank_dump.out={dump}",
    ]
    return [sys.executable, str(script), "--config-name", "directpred.yaml", *TINY, *hook, *overrides]


def _env(**extra: str) -> dict[str, str]:
    # The checkout's own ``tests`` package shadows this repository's: the hook is imported by module name.
    path = os.pathsep.join([str(REPO), str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "PYTHONPATH": path, **extra}


def _checkpoints(cwd: Path) -> list[Path]:
    return sorted((cwd / "trained_models" / "directpred").glob("*/*.ckpt"), key=lambda p: p.stat().st_mtime)


def _predictor(state: dict) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.startswith("predictor.")}


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory) -> Path:
    """One epoch of ``STEPS`` steps on 2 nodes × 1 CPU process; returns the shared working directory."""
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available on this platform")
    cwd = tmp_path_factory.mktemp("two-nodes")
    port = str(_free_port())
    cmd = _command(cwd / "dump", "max_epochs=1", "strategy=ddp", "+num_nodes=2")
    nodes = [
        subprocess.Popen(
            cmd,
            cwd=cwd,
            env=_env(MASTER_ADDR="127.0.0.1", MASTER_PORT=port, NODE_RANK=str(rank)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    try:
        errors = [node.communicate(timeout=600)[1] for node in nodes]
    finally:
        for node in nodes:  # a node whose peer died waits for it at the rendezvous
            if node.poll() is None:
                node.kill()
    for node, err in zip(nodes, errors):
        assert node.returncode == 0, err[-4000:]
    return cwd


def _dump(cwd: Path, rank: int, when: str, folder: str = "dump") -> dict:
    return torch.load(cwd / folder / f"rank{rank}-{when}.pt", weights_only=True)


def test_both_nodes_hold_the_same_statistics_and_predictor(two_nodes):
    ranks = [_dump(two_nodes, r, "end") for r in (0, 1)]
    assert [(d["global_rank"], d["node_rank"], d["world_size"]) for d in ranks] == [(0, 0, 2), (1, 1, 2)]
    # Each node trained on its own shard: disjoint sample indices, STEPS batches each.
    seen = [set(d["indices"].tolist()) for d in ranks]
    assert len(seen[0]) == len(seen[1]) == STEPS * BATCH_SIZE and not seen[0] & seen[1]
    # ... yet F̂, W_p and every counter are bit-identical, and were updated at every step.
    predictors = [_predictor(d) for d in ranks]
    assert predictors[0].keys() == predictors[1].keys() and "predictor.stats.correlation" in predictors[0]
    for key, value in predictors[0].items():
        assert torch.equal(value, predictors[1][key]), key
    assert int(predictors[0]["predictor.stats.num_updates"]) == STEPS
    weight = predictors[0]["predictor.weight"]
    assert not torch.allclose(weight, torch.eye(weight.shape[0]))
    # The checkpoint node 0 wrote holds what node 1 ended with.
    (ckpt,) = _checkpoints(two_nodes)
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert saved["global_step"] == STEPS
    for key, value in predictors[1].items():
        assert torch.equal(saved["state_dict"][key], value), key


def test_learning_rate_is_scaled_by_the_number_of_nodes(two_nodes):
    # Upstream's parse_cfg: lr × batch_size × len(devices) × num_nodes / 256, with devices "1".
    scaled = BASE_LR * BATCH_SIZE * 1 * 2 / 256
    (ckpt,) = _checkpoints(two_nodes)
    args = json.loads((ckpt.parent / "args.json").read_text())
    assert args["num_nodes"] == 2 and args["optimizer"]["lr"] == pytest.approx(scaled)
    for rank in (0, 1):
        start = _dump(two_nodes, rank, "start")
        assert start["method_lr"] == pytest.approx(scaled) and start["optimizer_lr"] == pytest.approx(scaled)


def test_checkpoint_resumes_on_one_node(two_nodes, tmp_path):
    (ckpt,) = _checkpoints(two_nodes)
    cmd = _command(tmp_path / "dump", "max_epochs=2", f"resume_from_checkpoint='{ckpt}'")
    result = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    saved = _predictor(torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"])
    start, end = _dump(tmp_path, 0, "start"), _dump(tmp_path, 0, "end")
    assert start["world_size"] == 1 and start["global_step"] == STEPS
    # The single node starts from the two nodes' F̂, W_p and counters, bit for bit ...
    for key, value in saved.items():
        assert torch.equal(start[key], value), key
    # ... and continues them: STEPS more updates on top of the saved ones.
    assert int(end["predictor.step"]) == int(end["predictor.stats.num_updates"]) == 2 * STEPS
    assert not torch.equal(end["predictor.stats.correlation"], saved["predictor.stats.correlation"])
    # parse_cfg scales cfg.optimizer.lr for one node, but Lightning restores the optimizer of the
    # checkpoint: training goes on at the two-node learning rate (docs/scaling.md).
    one_node = BASE_LR * BATCH_SIZE * 1 * 1 / 256
    assert start["method_lr"] == pytest.approx(one_node)
    assert start["optimizer_lr"] == pytest.approx(2 * one_node)
