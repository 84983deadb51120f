"""The spectral log (crash-safe JSON lines), the panels, and ``solo-directpred spectral plot``."""

from __future__ import annotations

import math

import pytest
import torch

from solo_directpred.spectral.metrics import spectral_snapshot
from solo_directpred.spectral.plots import plot_records
from solo_directpred.spectral.records import (
    PLOT_FILE,
    RECORDS_FILE,
    RecordWriter,
    find_spectral_dirs,
    make_record,
    read_meta,
    read_records,
    write_meta,
)


def write_run(directory, steps=(10, 20, 30), dim=6, predictor=True):  # noqa: ANN001
    writer = RecordWriter(directory / RECORDS_FILE)
    generator = torch.Generator().manual_seed(0)
    for step in steps:
        z = torch.randn(64, dim, generator=generator) * torch.linspace(0.1, 1.0, dim)
        w = torch.randn(dim, dim, generator=generator) if predictor else None
        snap = spectral_snapshot(z, w)
        writer.append(
            make_record(
                step,
                step // 10,
                snap.scalars,
                snap.correlation_eigenvalues.tolist(),
                None if w is None else snap.predictor_eigenvalues.tolist(),
                None if w is None else snap.alignment.tolist(),
            )
        )
    write_meta(directory, {"rankme_min": 2.0, "zstd_min": None})
    return directory


def test_record_rounds_to_seven_digits_and_writes_nonfinite_as_null(tmp_path):
    record = make_record(5, 1, {"rankme": 1 / 3, "alpha_req": math.nan}, [math.pi, math.inf])
    assert record["scalars"] == {"rankme": 0.3333333, "alpha_req": None}
    assert record["eig_F"] == [3.141593, None]
    writer = RecordWriter(tmp_path / RECORDS_FILE)
    writer.append(record)
    (back,) = read_records(tmp_path / RECORDS_FILE)
    assert math.isnan(back["scalars"]["alpha_req"]) and math.isnan(back["eig_F"][1])
    assert back["step"] == 5 and back["epoch"] == 1 and "eig_Wp" not in back


def test_a_torn_last_line_costs_only_that_record(tmp_path):
    path = tmp_path / RECORDS_FILE
    writer = RecordWriter(path)
    for step in (1, 2):
        writer.append(make_record(step, 0, {"rankme": float(step)}, [1.0, 0.5]))
    with path.open("a") as handle:  # a crash in the middle of the third record
        handle.write('{"step": 3, "epoch": 0, "scalars": {"rank')
    assert [r["step"] for r in read_records(path)] == [1, 2]
    RecordWriter(path).append(make_record(4, 0, {"rankme": 4.0}, [1.0, 0.5]))  # after the restart
    assert [r["step"] for r in read_records(path)] == [1, 2, 4]


def test_repeated_steps_after_a_resume_keep_the_latest(tmp_path):
    path = tmp_path / RECORDS_FILE
    writer = RecordWriter(path)
    for step, value in ((2, 1.0), (4, 2.0), (6, 3.0), (4, 20.0), (6, 30.0)):
        writer.append(make_record(step, 0, {"rankme": value}, [1.0]))
    assert [(r["step"], r["scalars"]["rankme"]) for r in read_records(path)] == [
        (2, 1.0),
        (4, 20.0),
        (6, 30.0),
    ]


def test_meta_round_trip_and_discovery(tmp_path):
    run = tmp_path / "logs" / "version_3" / "spectral"
    write_run(run)
    assert read_meta(run) == {"rankme_min": 2.0, "zstd_min": None}
    assert read_meta(tmp_path) == {}
    assert find_spectral_dirs(tmp_path) == [run]
    assert find_spectral_dirs(run) == [run]


@pytest.mark.parametrize("predictor", [True, False])
def test_panels_are_a_readable_png(tmp_path, predictor):
    from PIL import Image

    records = read_records(write_run(tmp_path, predictor=predictor) / RECORDS_FILE)
    path = plot_records(records, tmp_path / "panels.png", meta=read_meta(tmp_path), dpi=50)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (750, 430)
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(ValueError, match="no spectral records"):
        plot_records([], tmp_path / "empty.png")


@pytest.mark.slow
def test_cli_redraws_every_spectral_dir_of_a_run(tmp_path, capsys):
    from PIL import Image

    from solo_directpred.cli import main

    first, second = tmp_path / "a" / "spectral", tmp_path / "b" / "spectral"
    write_run(first)
    write_run(second, predictor=False)
    assert main(["spectral", "plot", str(tmp_path)]) == 0
    assert f"wrote {first / PLOT_FILE}" in capsys.readouterr().out
    for directory in (first, second):
        with Image.open(directory / PLOT_FILE) as image:
            assert image.size == (1500, 860)
    out = tmp_path / "single.png"
    assert main(["spectral", "plot", str(first), "--out", str(out)]) == 0 and out.is_file()


def test_cli_errors(tmp_path, capsys):
    from solo_directpred.cli import main

    assert main(["spectral", "plot", str(tmp_path)]) == 1
    assert f"no {RECORDS_FILE} under {tmp_path}" in capsys.readouterr().err
    assert main(["spectral", "plot", str(tmp_path / "missing")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    write_run(tmp_path / "a")
    write_run(tmp_path / "b")
    assert main(["spectral", "plot", str(tmp_path), "--out", str(tmp_path / "x.png")]) == 2
    assert "--out needs a single spectral directory, found 2" in capsys.readouterr().err
    assert main(["spectral"]) == 2
    assert "plot" in capsys.readouterr().out
