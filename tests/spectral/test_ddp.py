"""SpectralMonitor under DDP: two gloo processes on CPU gather, compute once, log on rank 0, stop together."""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

from solo_directpred.spectral.records import RECORDS_FILE, read_records

WORKER = Path(__file__).with_name("ddp_worker.py")
TIMEOUT_S = 240


def _skip_reason() -> str | None:
    if not dist.is_available() or not dist.is_gloo_available():
        return "torch.distributed with the gloo backend is not available on this platform"
    if "spawn" not in multiprocessing.get_all_start_methods():
        return "this platform cannot spawn processes"
    return None


@pytest.mark.slow
@pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")
def test_two_process_gather_single_record_and_consistent_stop(tmp_path):
    pytest.importorskip("lightning")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(__file__).parents[2]), env.get("PYTHONPATH")) if p
    )
    process = subprocess.Popen(
        [sys.executable, str(WORKER), str(tmp_path)],
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"the 2-process run did not finish in {TIMEOUT_S} s (a rank hung?):\n{output[-3000:]}")
    assert process.returncode == 0, output[-3000:]

    # rank 0 alone wrote the log: one record, at the first measurement, where the alarm stopped the run
    (record,) = read_records(tmp_path / "spectral" / RECORDS_FILE)
    assert record["step"] == 2
    # gathered with unequal counts: rank 0 has 2 views × 4 rows, rank 1 one view × 4 rows, for 2 steps
    assert record["scalars"]["num_samples"] == 24
    # singular values √16 and √8 (rows e_0 and e_1): RankMe = exp(H(p)), p = (√2, 1) / (1 + √2);
    # each rank alone would give 1
    p = [math.sqrt(2) / (1 + math.sqrt(2)), 1 / (1 + math.sqrt(2))]
    expected = math.exp(-sum(q * math.log(q) for q in p))
    assert record["scalars"]["rankme"] == pytest.approx(expected, rel=1e-5)
    assert record["scalars"]["dead_modes"] == 3  # the covariance of two distinct rows has rank 1
    assert record["eig_Wp"] == [1.0, 1.0, 1.0, 1.0]  # rank 0's predictor

    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for report in reports:  # the scalars were broadcast: both ranks logged and decided the same
        assert report["global_step"] == 2 and report["should_stop"] is True
        assert report["rankme"] == pytest.approx(expected, rel=1e-5)
