"""The spectral log of a run: one JSON line per measurement, appended as training goes.

Layout of a run's spectral directory::

    spectral/
        meta.json        the monitor's settings (cadence, alarm thresholds), written at the start of fit
        spectra.jsonl    one record per measurement (below), appended and flushed one line at a time
        spectral.png     the panels, redrawn every ``plot_every_n_epochs`` epochs

A record is a JSON object ``{"step", "epoch", "scalars": {name: value}, "eig_F": [s_1 ≥ … ≥ s_d],
"eig_Wp": [...], "alignment": [a_1, …, a_d]}`` (the last two only when the method has a linear predictor);
non-finite numbers are written as ``null``. Each record is one ``write`` of one line followed by a flush
and fsync, so a crash loses at most the record being written; :func:`read_records` skips a torn last line.
After a resume, steps logged again replace the earlier records of the same step.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: File names inside a run's spectral directory.
RECORDS_FILE = "spectra.jsonl"
META_FILE = "meta.json"
PLOT_FILE = "spectral.png"

_SIGNIFICANT_DIGITS = 7


def _number(value: float) -> float | None:
    value = float(value)
    if not math.isfinite(value):
        return None
    return float(f"{value:.{_SIGNIFICANT_DIGITS}g}")


def make_record(
    step: int,
    epoch: int,
    scalars: Mapping[str, float],
    correlation_eigenvalues: Sequence[float],
    predictor_eigenvalues: Sequence[float] | None = None,
    alignment: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Build one JSON-ready record (floats rounded to 7 significant digits, non-finite → None)."""
    record: dict[str, Any] = {
        "step": int(step),
        "epoch": int(epoch),
        "scalars": {name: _number(value) for name, value in scalars.items()},
    }
    spectra = {"eig_F": correlation_eigenvalues, "eig_Wp": predictor_eigenvalues, "alignment": alignment}
    for key, values in spectra.items():
        if values is not None:
            record[key] = [_number(v) for v in values]
    return record


class RecordWriter:
    """Appends records to the ``.jsonl`` file ``path`` (created with its parent directories); one line, one
    flush and one fsync per record."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._needs_newline = self._ends_torn()

    def _ends_torn(self) -> bool:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return False
        with self.path.open("rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) != b"\n"

    def append(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n"
        if self._needs_newline:
            # A crash left a torn line: end it so the reader can skip it without losing this record.
            line = "\n" + line
            self._needs_newline = False
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())


def _float(value: float | None) -> float:
    return math.nan if value is None else float(value)


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records (see the module docstring) of a ``spectra.jsonl`` file, sorted by step; later duplicates
    of a step win. Lines that do not parse (a torn last line after a crash) are skipped. ``null`` numbers come
    back as nan."""
    by_step: dict[int, dict[str, Any]] = {}
    with Path(path).open(encoding="utf-8") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(record, dict) or "step" not in record or "eig_F" not in record:
                continue
            record["scalars"] = {k: _float(v) for k, v in record["scalars"].items()}
            for key in ("eig_F", "eig_Wp", "alignment"):
                if key in record:
                    record[key] = [_float(v) for v in record[key]]
            by_step[int(record["step"])] = record
    return [by_step[step] for step in sorted(by_step)]


def write_meta(directory: str | os.PathLike, meta: Mapping[str, Any]) -> Path:
    """Write ``meta.json`` (the monitor's settings) into a spectral directory."""
    path = Path(directory) / META_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(dict(meta), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_meta(directory: str | os.PathLike) -> dict[str, Any]:
    """Read ``meta.json`` of a spectral directory; an empty dict if there is none or it does not parse."""
    path = Path(directory) / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def find_spectral_dirs(run_dir: str | os.PathLike) -> list[Path]:
    """Spectral directories under ``run_dir``: itself if it holds ``spectra.jsonl``, else any below it."""
    root = Path(run_dir)
    if (root / RECORDS_FILE).is_file():
        return [root]
    return sorted({p.parent for p in root.rglob(RECORDS_FILE) if p.is_file()})
