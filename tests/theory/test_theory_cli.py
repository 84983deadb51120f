"""``solo-directpred theory check`` / ``theory figures`` through the console entry point."""

from __future__ import annotations

import json

import pytest

from solo_directpred.cli import main
from solo_directpred.theory import checks
from solo_directpred.theory.checks import CheckResult


def test_check_prints_numbers_and_writes_json(tmp_path, capsys):
    out = tmp_path / "checks.json"
    code = main(
        ["theory", "check", "--only", "trivial_basin", "ema_solution", "--json", str(out), "--no-progress"]
    )
    text = capsys.readouterr().out
    assert code == 0
    assert "PASS  trivial_basin" in text and "p*-=0.05445" in text
    assert "2/2 checks passed" in text
    payload = json.loads(out.read_text())
    assert [p["name"] for p in payload] == ["trivial_basin", "ema_solution"]
    assert payload[0]["values"]["high_end"] == pytest.approx(0.61222, abs=5e-6)


def test_check_exit_code_is_one_when_a_check_fails(monkeypatch, capsys):
    failing = lambda: CheckResult("broken", "a claim", False, "numbers")  # noqa: E731
    monkeypatch.setitem(checks.CHECKS, "broken", failing)
    assert main(["theory", "check", "--only", "broken", "--no-progress"]) == 1
    text = capsys.readouterr().out
    assert "FAIL  broken" in text and "failed: broken" in text


def test_unknown_names_and_missing_action(capsys):
    assert main(["theory", "check", "--only", "nope", "--no-progress"]) == 2
    assert "unknown check(s) ['nope']" in capsys.readouterr().out
    assert main(["theory"]) == 2
    assert "check" in capsys.readouterr().out
    assert main(["theory", "figures", "--out", "x", "--only", "6"]) == 2
    assert "unknown figure(s) ['6']" in capsys.readouterr().out


def test_figures_writes_small_pngs(tmp_path, capsys):
    assert (
        main(
            ["theory", "figures", "--out", str(tmp_path), "--only", "4", "10", "--dpi", "60", "--no-progress"]
        )
        == 0
    )
    text = capsys.readouterr().out
    for name in ("fig4_fixed_points.png", "fig10_scalar_byol.png"):
        path = tmp_path / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size < 300_000
    assert "Fig. 4:" in text and "eta = 0.05" in text
