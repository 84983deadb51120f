"""The user's command, ``python main_pretrain.py --config-name directpred.yaml``, run with upstream's
unmodified script from a solo-learn checkout (``$SOLO_LEARN_DIR``), then resumed two ways."""

from __future__ import annotations

import csv
import os
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
        reason=f"no solo-learn checkout with upstream's main_pretrain.py: set {SOLO_LEARN_DIR_ENV} or let "
        "the tests clone the pinned commit (needs git and the extra's Git URL)",
    ),
]

# No warmup: upstream's warmup-cosine divides by zero when a run resumed with a larger max_epochs ended
# exactly at the end of its warmup, which tiny runs do.
TINY = [
    "+limit_train_batches=2",
    "+limit_val_batches=1",
    "spectral.every_n_steps=1",
    "scheduler.warmup_epochs=0",
]


def _run(cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    script = solo_learn_scripts() / "main_pretrain.py"
    cmd = [sys.executable, str(script), "--config-name", "directpred.yaml", *TINY, *overrides]
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def _checkpoints(cwd: Path) -> list[Path]:
    return sorted((cwd / "trained_models" / "directpred").glob("*/*.ckpt"), key=lambda p: p.stat().st_mtime)


def _predictor_state(ckpt: Path) -> dict[str, torch.Tensor]:
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    return {k[len("predictor.") :]: v for k, v in state.items() if k.startswith("predictor.")}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("user-command")
    _run(cwd, "max_epochs=1")
    return cwd


def test_user_command_pretrains_logs_and_checkpoints(first_run):
    (ckpt,) = _checkpoints(first_run)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert any(k.startswith("backbone.") for k in state)  # main_linear.py loads backbone.* keys
    predictor = _predictor_state(ckpt)
    assert int(predictor["step"]) == 2 and int(predictor["stats.num_updates"]) == 2
    w = predictor["weight"]
    assert w.shape == (64, 64) and torch.allclose(w, w.T, atol=1e-6) and not torch.allclose(w, torch.eye(64))
    val_acc = _logged(first_run / "lightning_logs" / "version_0", "val_acc1")
    assert (
        val_acc and 0.0 <= val_acc[0] <= 100.0
    )  # online evaluation ran (at 16x16, see test_eval_transforms)
    from solo_directpred.spectral.records import read_records

    records = read_records(first_run / "lightning_logs" / "version_0" / "spectral" / "spectra.jsonl")
    assert [r["step"] for r in records] == [1, 2] and all(len(r["eig_Wp"]) == 64 for r in records)


def _logged(log_dir, key: str) -> list[float]:
    """Values of ``key`` written by Lightning's default logger: TensorBoard if installed, else CSV."""
    if (log_dir / "metrics.csv").is_file():
        return [float(r[key]) for r in csv.DictReader((log_dir / "metrics.csv").open()) if r.get(key)]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    return [e.value for e in events.Scalars(key)] if key in events.Tags()["scalars"] else []


def test_resume_from_checkpoint_restores_statistics_and_counters(first_run, tmp_path):
    (ckpt,) = _checkpoints(first_run)
    _run(tmp_path, "max_epochs=2", f"resume_from_checkpoint='{ckpt}'")  # quoted: the name holds "="
    resumed = _checkpoints(tmp_path)[-1]
    before, after = _predictor_state(ckpt), _predictor_state(resumed)
    # Counters continue from the checkpoint (2 steps there + 2 here), they do not restart at 0.
    assert int(after["step"]) == 4 and int(after["stats.num_updates"]) == 4
    assert int(after["num_weight_updates"]) == 4
    # F̂ continued from the saved estimate: rho·F̂_saved is part of the new one, so it differs from both
    # the saved estimate and a fresh start.
    assert not torch.equal(after["stats.correlation"], before["stats.correlation"])


def test_auto_resume_restores_statistics_and_counters(tmp_path):
    _run(tmp_path, "max_epochs=1", "auto_resume.enabled=true")
    _run(tmp_path, "max_epochs=2", "auto_resume.enabled=true")
    last = _checkpoints(tmp_path)[-1]
    assert "ep=1" in last.name
    after = _predictor_state(last)
    assert int(after["step"]) == 4 and int(after["stats.num_updates"]) == 4


def test_bad_value_fails_before_training_with_a_clear_message(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    script = solo_learn_scripts() / "main_pretrain.py"
    cmd = [sys.executable, str(script), "--config-name", "directpred.yaml", "method_kwargs.rho=1.5"]
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert (
        "method_kwargs.rho=1.5 is invalid: the weight on the old correlation estimate must be in [0, 1)"
        in (result.stderr)
    )
    assert not (tmp_path / "trained_models").exists() and not (tmp_path / "lightning_logs").exists()
