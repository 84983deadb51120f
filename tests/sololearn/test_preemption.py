"""Preemption: the user's command killed mid-epoch (SIGTERM, SIGKILL) and started again with auto-resume
ends bit-identical to the uninterrupted run on CPU (docs/scaling.md, "Preemption and resume").

The command is upstream's unmodified ``main_pretrain.py`` when ``$SOLO_LEARN_DIR`` holds a checkout, and
the plugin's ``solo-directpred pretrain`` (same job set-up, same auto-resume) otherwise. The spectral
monitor's per-step records tell the test how far a run got.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import requires_solo
from tests.sololearn.helpers import solo_learn_scripts

pytestmark = [requires_solo, pytest.mark.solo]

REPO = Path(__file__).resolve().parents[2]
BATCHES = 4  # per epoch; 2 epochs
# A constant learning rate keeps the schedule out of the comparison; shuffling and augmentations stay on.
TINY = [
    f"+limit_train_batches={BATCHES}",
    "+limit_val_batches=1",
    "max_epochs=2",
    "optimizer.batch_size=16",
    "scheduler.name=none",
    "spectral.every_n_steps=1",
    "auto_resume.enabled=true",
]


def _command(*overrides: str) -> list[str]:
    checkout = solo_learn_scripts()
    if checkout is not None:
        head = [sys.executable, str(checkout / "main_pretrain.py")]
    else:
        head = [sys.executable, "-m", "solo_directpred", "pretrain"]
    return [*head, "--config-name", "directpred.yaml", *TINY, *overrides]


def _env() -> dict[str, str]:
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "PYTHONPATH": path}


def _run(cwd: Path, *overrides: str) -> str:
    result = subprocess.run(
        _command(*overrides), cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def _last_step(cwd: Path) -> int:
    """The last step the spectral monitor recorded in the first run of ``cwd`` (0 before any)."""
    records = cwd / "lightning_logs" / "version_0" / "spectral" / "spectra.jsonl"
    if not records.is_file():
        return 0
    lines = [line for line in records.read_text().splitlines() if line.strip()]
    return json.loads(lines[-1])["step"] if lines else 0


def _kill_after(cwd: Path, step: int, signum: int, *overrides: str) -> int:
    """Start the command, send ``signum`` once it has recorded ``step``; returns its exit status."""
    process = subprocess.Popen(
        _command(*overrides),
        cwd=cwd,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 600
        while process.poll() is None and _last_step(cwd) < step and time.monotonic() < deadline:
            time.sleep(0.02)
        assert process.poll() is None, f"the run ended before step {step}: {process.stderr.read()[-4000:]}"
        process.send_signal(signum)
        process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode


def _preempted(cwd: Path) -> list[Path]:
    return sorted((cwd / "trained_models" / "directpred").glob("*/preempted/*.ckpt"))


def _final(cwd: Path) -> dict:
    last = max((cwd / "trained_models" / "directpred").glob("*/*-ep=1.ckpt"), key=lambda p: p.stat().st_mtime)
    return torch.load(last, map_location="cpu", weights_only=True)


def _step_of(ckpt: Path) -> int:
    return int(ckpt.stem.rsplit("-step=", 1)[1])


def _loop_counts(state: dict, path: str = "") -> dict[str, object]:
    """Every leaf of Lightning's loop state but the ``ready``/``started`` counts of its progress trackers."""
    if not isinstance(state, dict):
        return {path: state}
    counts: dict[str, object] = {}
    for key, value in state.items():
        if key not in ("ready", "started"):
            counts.update(_loop_counts(value, f"{path}/{key}"))
    return counts


def _assert_identical(resumed: dict, reference: dict) -> None:
    """Bit-identical weights, F̂, W_p, counters and optimizer state (the tolerance is zero on CPU)."""
    assert resumed["global_step"] == reference["global_step"] == 2 * BATCHES
    assert resumed["epoch"] == reference["epoch"] == 1
    # Lightning 2.1's counts of epochs *started* also count the restarted epoch; all it completed is equal.
    assert _loop_counts(resumed["loops"]) == _loop_counts(reference["loops"])
    state, expected = resumed["state_dict"], reference["state_dict"]
    assert state.keys() == expected.keys() and "predictor.stats.correlation" in state
    for key, value in expected.items():
        assert torch.equal(state[key], value), key
    assert int(state["predictor.stats.num_updates"]) == int(state["predictor.step"]) == 2 * BATCHES
    optimizer, expected_optimizer = resumed["optimizer_states"][0], reference["optimizer_states"][0]
    assert optimizer["param_groups"] == expected_optimizer["param_groups"]
    assert optimizer["state"].keys() == expected_optimizer["state"].keys()
    for index, buffers in expected_optimizer["state"].items():
        for name, value in buffers.items():
            assert torch.equal(optimizer["state"][index][name], value), (index, name)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    cwd = tmp_path_factory.mktemp("uninterrupted")
    _run(cwd)
    return _final(cwd)


@pytest.mark.slow
def test_sigterm_mid_epoch_then_auto_resume_matches_the_uninterrupted_run(uninterrupted, tmp_path):
    _kill_after(tmp_path, 1, signal.SIGTERM, "preemption.every_n_steps=0")
    # Lightning finished the batch it was in; the checkpoint written on the signal holds exactly that
    # state: its step is the last one the run recorded, inside the first epoch, with no epoch checkpoint.
    (ckpt,) = _preempted(tmp_path)
    assert _step_of(ckpt) == _last_step(tmp_path) and 1 <= _step_of(ckpt) < BATCHES
    assert not list((tmp_path / "trained_models" / "directpred").glob("*/*-ep=*.ckpt"))
    out = _run(tmp_path, "preemption.every_n_steps=0")
    assert ckpt.name in out  # auto-resume picked the preemption checkpoint
    _assert_identical(_final(tmp_path), uninterrupted)


@pytest.mark.slow
def test_sigkill_then_auto_resume_from_the_periodic_checkpoint_matches(uninterrupted, tmp_path):
    returncode = _kill_after(tmp_path, 3, signal.SIGKILL, "preemption.every_n_steps=2")
    assert returncode == -signal.SIGKILL
    # Only the periodic checkpoint survives; the steps after it were lost and are trained again.
    (ckpt,) = _preempted(tmp_path)
    assert _step_of(ckpt) % 2 == 0 and 2 <= _step_of(ckpt) <= _last_step(tmp_path)
    out = _run(tmp_path, "preemption.every_n_steps=2")
    assert ckpt.name in out
    _assert_identical(_final(tmp_path), uninterrupted)


def test_random_state_survives_a_weights_only_checkpoint(tmp_path):
    import random

    import numpy as np

    from solo_directpred.sololearn.preemption import random_state, set_random_state

    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    torch.save({"state": random_state()}, tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    set_random_state(torch.load(tmp_path / "rng.pt", weights_only=True)["state"])
    drawn = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    assert torch.equal(drawn[0], expected[0]) and np.array_equal(drawn[1], expected[1])
    assert drawn[2] == expected[2]


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"every_n_steps": -1}, "preemption.every_n_steps=-1 is invalid: must be an integer >= 0"),
        ({"every_n_steps": 2.5}, "preemption.every_n_steps=2.5 is invalid: must be an integer >= 0"),
        ({"on_sigterm": "yes"}, "preemption.on_sigterm='yes' is invalid: must be true or false"),
        (
            {"every_n_step": 5},
            "preemption.every_n_step=5 is invalid: not a key of preemption; "
            "the keys are on_sigterm, every_n_steps",
        ),
    ],
)
def test_bad_preemption_settings_name_the_key(section, message):
    from solo_directpred.sololearn.methods import ConfigError
    from solo_directpred.sololearn.preemption import preemption_callbacks

    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("[", r"\[")):
        preemption_callbacks(OmegaConf.create({"preemption": section}))


def test_defaults_and_switching_off():
    from solo_directpred.sololearn.preemption import preemption_callbacks

    (callback,) = preemption_callbacks(OmegaConf.create({"seed": 7}))
    assert (callback.on_sigterm, callback.every_n_steps, callback.seed) == (True, 1000, 7)
    off = OmegaConf.create({"preemption": {"on_sigterm": False, "every_n_steps": 0}})
    assert preemption_callbacks(off) == []
