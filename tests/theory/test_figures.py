"""The figure builders draw what the paper shows (fixed points where the paper puts them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from solo_directpred.theory import figures
from solo_directpred.theory.figures import FIGURES, UNSPECIFIED

DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images" / "theory"


def _markers(fig) -> dict[str, list[tuple[float, float]]]:
    """Single-point markers of each axes, keyed by their colour name, from the drawn figure."""
    found: dict[str, list[tuple[float, float]]] = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            x, y = line.get_data()
            if len(x) == 1 and line.get_marker() == "o":
                found.setdefault(line.get_color(), []).append((float(x[0]), float(y[0])))
    return found


def test_every_figure_states_its_open_parameters():
    assert set(UNSPECIFIED) == set(FIGURES) == {"3", "4", "5", "7", "8", "9", "10"}


def test_fig4_marks_the_closed_form_fixed_points():
    fig = figures.figure4()
    marks = _markers(fig)
    stable_p = sorted(round(x, 4) for x, _ in marks[figures.STABLE])
    unstable_p = sorted(round(x, 4) for x, _ in marks[figures.UNSTABLE])
    # (a) tau/(1+sigma^2) = 0.6667; (b) 0 and p*+ = 0.6122 stable, p*- = 0.0544 unstable; (c) only 0.
    assert stable_p == [0.0, 0.0, 0.6122, 0.6667]
    assert unstable_p == [0.0544]
    assert [round(x, 4) for x, _ in marks[figures.SADDLE]] == [0.0]


def test_fig3_marks_p_plus_on_the_parabola():
    fig = figures.figure3()
    stable = _markers(fig)[figures.STABLE]
    assert any(abs(x - 0.65651) < 1e-4 and abs(y - 0.43101) < 1e-4 for x, y in stable)
    unstable = _markers(fig)[figures.UNSTABLE]
    assert any(abs(x - 0.010155) < 1e-5 for x, _ in unstable)


def test_fig10_fixed_points():
    marks = _markers(figures.figure10())
    assert (0.5, 0.5) in marks[figures.STABLE]  # w = w_a = lambda_d / lambda_s on the manifold w = w_p
    assert marks[figures.UNSTABLE] == [(0.0, 0.0), (0.0, 0.0)]


@pytest.mark.slow
def test_fig9_curves_decay_only_where_k_is_positive():
    fig = figures.figure9()
    ends = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            label = line.get_label()
            if label.startswith("$\\eta"):
                ends[(ax.get_title(), label.split(",")[0])] = line.get_ydata()
    strong = ends[("$\\tau=0.1$", "$\\eta=0.1$")]
    weak = ends[("$\\tau=1.0$", "$\\eta=0$")]
    assert strong[-1] < 1e-6
    assert np.max(weak) > 10


def test_committed_images_exist_and_are_small():
    for stem, _ in FIGURES.values():
        path = DOCS_IMAGES / f"{stem}.png"
        assert path.is_file(), path
        assert path.stat().st_size < 300_000


def test_unknown_figure_is_named(tmp_path):
    with pytest.raises(ValueError, match="'6'"):
        figures.save_figures(tmp_path, ["6"], progress=False)
