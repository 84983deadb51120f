"""Fig. 2-style panels of a run's spectral log, drawn with matplotlib's Agg canvas (no pyplot state).

Six panels over training steps: log-eigenvalues of F, eigenvalues of sym(W_p), the alignment heatmap a_j,
asymmetry and normalised commutator of W_p, RankMe and participation ratio, and z-std. The predictor panels
say so when the method has no linear predictor.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from solo_directpred.spectral.alarm import describe, threshold
from solo_directpred.spectral.records import PLOT_FILE, RECORDS_FILE, read_meta, read_records

#: At most this many measurements (evenly spaced, last one included) and eigen-modes are drawn.
MAX_POINTS = 400
MAX_MODES = 64


def _subsample(n: int, limit: int) -> list[int]:
    if n <= limit:
        return list(range(n))
    return sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})


def _series(records: Sequence[Mapping[str, Any]], name: str) -> list[float]:
    return [r["scalars"].get(name, math.nan) for r in records]


def _mode_lines(ax, fig, steps, spectra, modes, log: bool, label: str) -> None:  # noqa: ANN001 - matplotlib
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.collections import LineCollection
    from matplotlib.colors import Normalize

    values = np.asarray(spectra, dtype=float)[:, modes]
    if log:
        values = np.where(values > 0, values, np.nan)
    cmap = colormaps["viridis"]
    norm = Normalize(vmin=1, vmax=max(modes) + 1)
    segments = [np.column_stack([steps, values[:, i]]) for i in range(len(modes))]
    lines = LineCollection(segments, colors=[cmap(norm(j + 1)) for j in modes], linewidths=1.0)
    ax.add_collection(lines)
    finite = values[np.isfinite(values)]
    if finite.size:
        low, high = float(finite.min()), float(finite.max())
        if log:
            ax.set_yscale("log")
            ax.set_ylim(low / 1.5, high * 1.5)
        else:
            pad = 0.05 * (high - low) + 1e-12
            ax.set_ylim(low - pad, high + pad)
    colorbar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.02, fraction=0.06)
    colorbar.set_label(label)


def _no_predictor(ax) -> None:  # noqa: ANN001 - matplotlib
    ax.text(
        0.5,
        0.5,
        "no linear predictor:\nW_p metrics not logged",
        ha="center",
        va="center",
        transform=ax.transAxes,
        color="0.4",
        fontsize=11,
    )
    ax.set(xticks=[], yticks=[])


def _threshold(ax, metric: str, setting: float | str | None, dim: int) -> None:  # noqa: ANN001 - matplotlib
    value = threshold(metric, setting, dim)
    if value is not None:
        label = f"alarm: {metric}_min = {describe(metric, setting, dim).split(' (')[0]}"
        ax.axhline(value, color="tab:red", linestyle="--", linewidth=1.2, label=label)


def plot_records(
    records: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    title: str | None = None,
    meta: Mapping[str, Any] | None = None,
    dpi: int = 100,
) -> Path:
    """Draw the six spectral panels of ``records`` (from :func:`read_records`) into a PNG; returns its path.

    Args:
        records: measurements sorted by step; at least one.
        path: output PNG path (written atomically: a temporary file, then renamed).
        title: figure title; defaults to the step range.
        meta: the monitor's settings (``meta.json``): its ``rankme_min``/``zstd_min`` (numbers or ``"auto"``,
            resolved for the logged d) are drawn as lines.
        dpi: resolution; the figure is 15 × 8.6 inches.
    """
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter, MaxNLocator

    if not records:
        raise ValueError("no spectral records to plot")
    meta = dict(meta or {})
    picked = [records[i] for i in _subsample(len(records), MAX_POINTS)]
    steps = np.array([r["step"] for r in picked], dtype=float)
    dim = len(picked[-1]["eig_F"])
    modes = _subsample(dim, MAX_MODES)
    has_predictor = all("eig_Wp" in r and "alignment" in r for r in picked)

    fig = Figure(figsize=(15, 8.6), dpi=dpi)
    FigureCanvasAgg(fig)
    # A fixed layout: constrained layout would cost seconds per redraw during training.
    layout = {"left": 0.05, "right": 0.95, "bottom": 0.07, "top": 0.9, "wspace": 0.32, "hspace": 0.32}
    axes = fig.subplots(2, 3, gridspec_kw=layout)
    last = picked[-1]
    fig.suptitle(
        title
        or f"Spectral monitor: step {int(steps[0])}–{int(steps[-1])} "
        f"(epoch {last['epoch']}), d = {dim}, {len(records)} measurements",
        fontsize=13,
    )

    ax = axes[0, 0]
    _mode_lines(ax, fig, steps, [r["eig_F"] for r in picked], modes, log=True, label="mode j (1 = largest)")
    ax.set_title("Eigenvalues s_j of F = ZᵀZ/N (log scale)")
    ax.set_ylabel("s_j")

    predictor_panels = {
        (0, 1): "Eigenvalues of sym(W_p)",
        (0, 2): "Alignment a_j = cos(u_j, W_p u_j)",
        (1, 0): "Symmetry and alignment of W_p",
    }
    for position, panel_title in predictor_panels.items():
        axes[position].set_title(panel_title)
    if has_predictor:
        ax = axes[0, 1]
        _mode_lines(
            ax, fig, steps, [r["eig_Wp"] for r in picked], modes, log=False, label="rank (1 = largest)"
        )
        ax.axhline(0.0, color="0.3", linewidth=0.8)
        ax.set_ylabel("p_j")

        ax = axes[0, 2]
        heat = np.asarray([r["alignment"] for r in picked], dtype=float)
        # Resample onto an even step grid (the last measurement at or before each column) so that the image
        # axis is true to the steps even when the cadence changed, e.g. after a resume.
        grid = np.linspace(steps[0], steps[-1], len(steps))
        columns = np.clip(np.searchsorted(steps, grid, side="right") - 1, 0, len(steps) - 1)
        half = 0.5 * (steps[-1] - steps[0]) / max(len(steps) - 1, 1) or 0.5
        mesh = ax.imshow(
            heat[columns].T,
            cmap="RdBu",
            vmin=-1,
            vmax=1,
            aspect="auto",
            interpolation="nearest",
            extent=(steps[0] - half, steps[-1] + half, heat.shape[1] + 0.5, 0.5),
        )
        ax.set_ylabel("eigenvector u_j of F (1 = largest s_j)")
        fig.colorbar(mesh, ax=ax, pad=0.02, fraction=0.06).set_label("a_j")

        ax = axes[1, 0]
        ax.plot(steps, _series(picked, "asymmetry"), color="tab:purple", label="asymmetry ‖W_p−W_pᵀ‖/‖W_p‖")
        ax.plot(
            steps, _series(picked, "commutator"), color="tab:orange", label="commutator ‖[F,W_p]‖/(‖F‖‖W_p‖)"
        )
        ax.set_ylim(bottom=0)
        ax.legend(loc="best", fontsize=9)
    else:
        for position in predictor_panels:
            _no_predictor(axes[position])

    ax = axes[1, 1]
    ax.plot(steps, _series(picked, "rankme"), color="tab:blue", label="RankMe")
    ax.plot(steps, _series(picked, "participation_ratio"), color="tab:green", label="participation ratio")
    ax.axhline(dim, color="0.5", linestyle=":", linewidth=1.0, label=f"d = {dim}")
    _threshold(ax, "rankme", meta.get("rankme_min"), dim)
    ax.set_ylim(bottom=0)
    ax.set_title("Effective rank of the embeddings")
    ax.legend(loc="best", fontsize=9)

    ax = axes[1, 2]
    ax.plot(steps, _series(picked, "zstd"), color="tab:blue", label="z-std")
    ax.axhline(1 / math.sqrt(dim), color="0.5", linestyle=":", linewidth=1.0, label="1/√d (spread out)")
    _threshold(ax, "zstd", meta.get("zstd_min"), dim)
    ax.set_ylim(bottom=0)
    ax.set_title("z-std of ℓ2-normalised embeddings (0 = collapse)")
    ax.legend(loc="best", fontsize=9)

    for ax in axes.flat:
        if ax.get_xticks().size:
            if steps[-1] > steps[0] and not ax.images:
                ax.set_xlim(steps[0], steps[-1])
            ax.set_xlabel("training step")
            ax.xaxis.set_major_locator(MaxNLocator(6))
            ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.grid(alpha=0.25)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)
    return path


def plot_spectral_dir(
    directory: str | os.PathLike, out: str | os.PathLike | None = None, dpi: int = 100
) -> Path:
    """Redraw the panels of a spectral directory from its ``spectra.jsonl`` and ``meta.json`` into ``out``
    (default ``<directory>/spectral.png``) with :func:`plot_records`; returns the written path."""
    directory = Path(directory)
    records = read_records(directory / RECORDS_FILE)
    if not records:
        raise ValueError(f"{directory / RECORDS_FILE} holds no complete record")
    return plot_records(records, out or directory / PLOT_FILE, meta=read_meta(directory), dpi=dpi)


if __name__ == "__main__":
    # Entry point of the monitor's background redraw: ``python -m solo_directpred.spectral.plots DIR``.
    import sys

    plot_spectral_dir(sys.argv[1])
