"""Redraw the paper's synthetic Figures 3, 4, 5, 7, 8, 9 and 10 from the simulators (PNG, Agg backend).

Parameters follow the paper where it gives them; where it does not, the choice is stated in
:data:`UNSPECIFIED` (also printed by ``solo-directpred theory figures``) and in docs/theory.md.
matplotlib is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from solo_directpred.theory.experiments import FIG5_BETAS, FIG5_ETAS, SIGMA2, commutator_start, figure5_runs
from solo_directpred.theory.linear_model import LinearModel, LinearState, init_state, target_alignment
from solo_directpred.theory.modes import ModeDynamics, fixed_points, reduced_predictor_rate
from solo_directpred.theory.reduced import ReducedDynamics, commutator, frobenius, skew_part, symmetric_part
from solo_directpred.theory.scalar import ScalarBYOL

#: What each figure uses that the paper leaves open.
UNSPECIFIED: dict[str, str] = {
    "3": "sigma^2 = 0.5 (not given in the paper; the value of its numerical sanity check)",
    "4": "tau = 1, sigma^2 = 0.5; panel (b) eta = 0.05, panel (c) eta = 0.25 (> tau^2/(4(1+sigma^2)) = 1/6)",
    "5": "sigma^2 = 0.5, alpha_p = 1, start (p, s, tau) = (0.02, 0.02, 0); eta in {0.01, 0.02, 0.04, 0.08}, "
    "beta in {0.04, 0.1, 0.4, SimSiam}",
    "7": "n1 = 20, n2 = 10, expected-gradient flow (Euler, dt = lr = 0.01, so beta = (1 - gamma_a)/0.01), "
    "entry std 0.1/sqrt(fan_in) for W and W_p, alpha_p = 1, 10 seeds, t <= 100",
    "8": "n = 10, sigma^2 = 0.5, alpha_p = 1, tau in {0.2, 0.5, 1}, W_p(0) entries N(0, 0.25/n), 5 seeds",
    "9": "n = 8, sigma^2 = 0.5, alpha_p = 1, F(0) = 1e-4 B B^T / n, symmetric W_p(0) of scale 0.3, "
    "tau in {0.1, 0.5, 1}, eta in {0, 0.01, 0.1}",
    "10": "none (lambda_s = 1, lambda_d = 1/2, alpha_p = beta = 1 as in the paper)",
}

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

STABLE, UNSTABLE, SADDLE = "tab:red", "tab:green", "tab:orange"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _mark(
    ax: Axes, x: float, y: float, color: str, label: str | None = None, ms: float = 9, zorder: int = 5
) -> None:
    """A fixed point: a dot of ``color`` at ``(x, y)``, drawn above the flow lines."""
    ax.plot([x], [y], "o", color=color, ms=ms, zorder=zorder, label=label)


def figure3() -> Figure:
    """Fig. 3: phase portraits of Eqns. 11-12 in the (p, s) plane, τ = 1, α_p = 1, η ∈ {0, 0.01, 1}."""
    plt = _pyplot()
    modes_kw = dict(sigma2=SIGMA2, alpha_p=1.0, target="fixed")
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    fig.suptitle(rf"Fig. 3: flow of Eqns. 11-12, $\tau=1$, $\alpha_p=1$, $\sigma^2={SIGMA2}$")
    axes[0].set_ylabel(r"$s_j$ (eigenvalue of $F$)")
    p = np.linspace(-0.3, 1.0, 60)
    s = np.linspace(0.0, 1.0, 60)
    P, S = np.meshgrid(p, s)
    p_star = 1.0 / (1.0 + SIGMA2)
    for ax, eta in zip(axes, (0.0, 0.01, 1.0)):
        modes = ModeDynamics(eta=eta, **modes_kw)
        dP, dS, _ = modes.velocity(P, S, 1.0)
        ax.streamplot(p, s, dP, dS, color="tab:blue", density=0.8, linewidth=0.7, arrowsize=0.8)
        ax.plot(p, p**2, "k--", lw=1.2, label=r"$s=p^2/\alpha_p$")
        if eta == 0.0:
            ax.axvline(p_star, color=STABLE, lw=2.5, label=r"stable $p=\tau/(1+\sigma^2)$")
            ax.plot([p[0], 0], [0, 0], color=STABLE, lw=4, solid_capstyle="butt")
            ax.plot(
                [0, p_star], [0, 0], color=UNSTABLE, lw=4, solid_capstyle="butt", label="unstable ($s=0$)"
            )
            ax.plot([p_star, p[-1]], [0, 0], color=STABLE, lw=4, solid_capstyle="butt")
        else:
            _mark(ax, 0, 0, STABLE, "stable")
            roots = fixed_points(1.0, SIGMA2, eta)
            if roots is not None:
                p_minus, p_plus = roots
                _mark(ax, p_plus, p_plus**2, STABLE)
                _mark(ax, p_minus, p_minus**2, UNSTABLE, rf"unstable $p^*_-={p_minus:.4f}$", ms=7, zorder=6)
                inset = ax.inset_axes([0.08, 0.52, 0.36, 0.36])
                pi, si = np.linspace(-0.01, 0.04, 30), np.linspace(0.0, 1.2e-3, 30)
                Pi, Si = np.meshgrid(pi, si)
                dPi, dSi, _ = modes.velocity(Pi, Si, 1.0)
                inset.streamplot(
                    pi, si, dPi, dSi, color="tab:blue", density=0.6, linewidth=0.5, arrowsize=0.6
                )
                inset.plot(pi, pi**2, "k--", lw=1)
                inset.plot([0], [0], "o", color=STABLE, ms=6)
                inset.plot([p_minus], [p_minus**2], "o", color=UNSTABLE, ms=6)
                inset.set_xlim(pi[0], pi[-1])
                inset.set_ylim(si[0], si[-1])
                inset.tick_params(labelsize=6)
                inset.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
                inset.yaxis.get_offset_text().set_fontsize(6)
                inset.set_title("zoom near the origin", fontsize=7, pad=2)
        ax.set_xlim(p[0], p[-1])
        ax.set_ylim(s[0], s[-1])
        ax.set_xlabel(r"$p_j$ (predictor eigenvalue)")
        ax.set_title(rf"$\eta={eta:g}$")
        ax.legend(loc="lower right", fontsize=7, framealpha=0.9)
    fig.tight_layout()
    return fig


def figure4() -> Figure:
    """Fig. 4: the 1-D dynamics of Eqn. 16, ``dp/dt`` against ``p`` for three weight decays."""
    plt = _pyplot()
    tau = 1.0
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    fig.suptitle(rf"Fig. 4: fixed points of Eqn. 16 ($\tau=1$, $\sigma^2={SIGMA2}$)")
    axes[0].set_ylabel(r"$\dot p_j = p_j^2(\tau-(1+\sigma^2)p_j)-\eta p_j$")
    p = np.linspace(-0.1, 0.8, 400)
    threshold = tau**2 / (4 * (1 + SIGMA2))
    panels = (
        (0.0, r"(a) $\eta=0$"),
        (0.05, rf"(b) $0<\eta=0.05\leq\tau^2/4(1+\sigma^2)={threshold:.3f}$"),
        (0.25, rf"(c) $\eta=0.25>{threshold:.3f}$"),
    )
    for ax, (eta, title) in zip(axes, panels):
        rate = reduced_predictor_rate(p, tau, SIGMA2, eta)
        ax.plot(p, rate, color="tab:blue", lw=1.8)
        ax.axhline(0, color="k", lw=0.8)
        span = rate.max() - rate.min()
        for x in np.linspace(p[0], p[-1], 16)[1:-1]:
            v = float(reduced_predictor_rate(x, tau, SIGMA2, eta))
            if abs(v) > 1e-3 * span:
                ax.annotate(
                    "",
                    xy=(x + 0.02 * np.sign(v), 0),
                    xytext=(x - 0.02 * np.sign(v), 0),
                    arrowprops=dict(arrowstyle="->", color="gray", lw=1.2),
                )
        roots = fixed_points(tau, SIGMA2, eta)
        if eta == 0.0:
            _mark(ax, 0, 0, SADDLE, "saddle $p=0$")
            p_star = tau / (1 + SIGMA2)
            _mark(ax, p_star, 0, STABLE, rf"stable $\tau/(1+\sigma^2)={p_star:.3f}$")
        else:
            _mark(ax, 0, 0, STABLE, "stable $p=0$")
            if roots is not None:
                _mark(ax, roots[0], 0, UNSTABLE, rf"unstable $p^*_-={roots[0]:.3f}$")
                _mark(ax, roots[1], 0, STABLE, rf"stable $p^*_+={roots[1]:.3f}$")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(r"$p_j$")
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def figure5() -> Figure:
    """Fig. 5: decoupled dynamics (Eqns. 11-13) with EMA: top row varies η, bottom row the EMA rate β."""
    plt = _pyplot()
    runs = figure5_runs()
    fig, axes = plt.subplots(2, 4, figsize=(15, 6.5))
    fig.suptitle(
        rf"Fig. 5: Eqns. 11-13, Euler $dt=0.01$, $\sigma^2={SIGMA2}$, start $(p,s,\tau)=(0.02,0.02,0)$"
    )
    cmap = plt.get_cmap("viridis")
    for row, (kind, values) in enumerate((("eta", FIG5_ETAS), ("beta", FIG5_BETAS))):
        for i, value in enumerate(values):
            modes, traj = runs[(kind, value)]
            color = cmap(i / (len(values) - 1) * 0.85)
            if kind == "eta":
                label = rf"$\eta={value}$"
            else:
                label = "no EMA (SimSiam)" if value is None else rf"$\beta={value}$"
            k = modes.k_eigenvalue(traj.p, traj.s, traj.tau)[:, 0]
            for ax, y in zip(axes[row], (traj.p[:, 0], traj.s[:, 0], traj.tau[:, 0], k)):
                ax.plot(traj.t, y, color=color, lw=1.6, label=label)
        axes[row, 3].axhline(0, color="k", lw=0.8, ls=":")
        axes[row, 0].legend(fontsize=7)
        axes[row, 0].set_ylabel(
            "varying $\\eta$ ($\\beta=0.4$)" if kind == "eta" else "varying $\\beta$ ($\\eta=0.04$)"
        )
    for ax, title in zip(axes[0], (r"$p_j$", r"$s_j$", r"$\tau_j$", r"$\lambda_{\min}(K)$ (Eqn. 17 margin)")):
        ax.set_title(title)
    for ax in axes[1]:
        ax.set_xlabel("t")
    for ax in axes[:, 3]:
        ax.set_ylim(-0.06, 0.1)
        ax.set_xlim(0, 100)
    fig.tight_layout()
    return fig


def figure7() -> Figure:
    """Fig. 7: correlation of ``W_a`` and ``W`` over time (assumption A1), ``σ = 0.03``, ``W_a(0) = 0``."""
    plt = _pyplot()
    lr, n1, n2, seeds, t_end = 0.01, 20, 10, 10, 100.0
    gammas = (0.9, 0.99, 0.996)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
    fig.suptitle(
        r"Fig. 7: $W_a$ stays proportional to $W$ (A1); $X=I$, $\sigma=0.03$, $W_a(0)=0$, "
        r"mean $\pm$ std of 10 runs (note the y range)"
    )
    axes[0].set_ylabel(r"$\langle W_a, W\rangle / \|W_a\|\|W\|$")
    cmap = plt.get_cmap("plasma")
    for ax, eta in zip(axes, (0.0, 0.01, 0.1)):
        for i, gamma in enumerate(gammas):
            model = LinearModel.isotropic(n1, 0.03**2, alpha_p=1.0, eta=eta, beta=(1 - gamma) / lr)
            starts = [init_state(n1, n2, seed=seed, scale=0.1) for seed in range(seeds)]
            state = LinearState(*(np.stack([getattr(s, k) for s in starts]) for k in ("W", "Wp", "Wa")))
            times, curves = [], []
            for step in range(1, int(round(t_end / lr)) + 1):
                v = model.velocity(state)
                state = LinearState(state.W + lr * v.W, state.Wp + lr * v.Wp, state.Wa + lr * v.Wa)
                if step % 5 == 0:
                    times.append(step * lr)
                    curves.append(target_alignment(state.W, state.Wa))
            mean, std = np.mean(curves, axis=1), np.std(curves, axis=1)
            color = cmap(i / len(gammas))
            label = rf"$\gamma_a={gamma}$ ($\beta={(1 - gamma) / lr:g}$)"
            ax.plot(times, mean, color=color, lw=1.6, label=label)
            ax.fill_between(times, mean - std, mean + std, color=color, alpha=0.25)
        ax.set_title(rf"$\eta={eta:g}$")
        ax.set_xlabel("t (= lr x steps)")
        ax.set_ylim(0.97, 1.002)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def figure8() -> Figure:
    """Fig. 8: symmetric and skew parts of ``W_p`` under the non-symmetrised App. Eqn. 62 (fixed τ)."""
    plt = _pyplot()
    n, seeds, t_end = 10, 5, 200.0
    taus, etas = (0.2, 0.5, 1.0), (0.001, 0.01, 0.05)
    fig, axes = plt.subplots(3, 3, figsize=(12, 8), sharex=True, sharey=True)
    fig.suptitle(
        rf"Fig. 8: $W_p=A+B$ under App. Eqn. 62 ($F=W_p^\top W_p$, $\sigma^2={SIGMA2}$, 5 random starts)"
    )
    for r, eta in enumerate(etas):
        for c, tau in enumerate(taus):
            ax = axes[r, c]
            reduced = ReducedDynamics(tau=tau, sigma2=SIGMA2, eta=eta)
            starts = np.stack([np.random.default_rng(seed).standard_normal((n, n)) for seed in range(seeds)])
            t, Wp = reduced.simulate_predictor(starts * 0.5 / np.sqrt(n), t_end, 0.05, 10)
            ax.semilogy(t, frobenius(symmetric_part(Wp)), color="tab:blue", lw=1)
            ax.semilogy(t, frobenius(skew_part(Wp)), color="tab:orange", lw=1)
            ax.plot([], [], color="tab:blue", label=r"$\|A\|_F$ (symmetric)")
            ax.plot([], [], color="tab:orange", label=r"$\|B\|_F$ (skew)")
            ax.set_ylim(1e-8, 5)
            ax.grid(alpha=0.3)
            if r == 0:
                ax.set_title(rf"$\tau={tau}$")
            if c == 0:
                ax.set_ylabel(rf"$\eta={eta}$")
            if r == 2:
                ax.set_xlabel("t")
    axes[0, 0].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def figure9() -> Figure:
    """Fig. 9: ``‖[F, W_p]‖_F`` over time in the symmetric coupled dynamics for several fixed τ and η."""
    plt = _pyplot()
    F0, Wp0 = commutator_start()
    taus, etas = (0.1, 0.5, 1.0), (0.0, 0.01, 0.1)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9), sharey=True)
    fig.suptitle(rf"Fig. 9: eigenspace alignment (Thm. 3), symmetrised dynamics, $\sigma^2={SIGMA2}$")
    axes[0].set_ylabel(r"$\|[F,W_p]\|_F$ / initial value")
    cmap = plt.get_cmap("viridis")
    for ax, tau in zip(axes, taus):
        for i, eta in enumerate(etas):
            reduced = ReducedDynamics(tau=tau, sigma2=SIGMA2, eta=eta)
            t, F, Wp = reduced.simulate_coupled(F0, Wp0, 60.0, 0.05, 4)
            c = frobenius(commutator(F, Wp))
            k_min = np.array([np.linalg.eigvalsh(reduced.K(f, w))[0] for f, w in zip(F, Wp)])
            color = cmap(i / len(etas))
            ax.semilogy(
                t,
                c / c[0],
                color=color,
                lw=1.6,
                label=rf"$\eta={eta:g}$, min $\lambda_{{\min}}K={k_min.min():.3f}$",
            )
        ax.axhline(1, color="k", lw=0.8, ls=":")
        ax.set_title(rf"$\tau={tau}$")
        ax.set_xlabel("t")
        ax.set_ylim(1e-12, 1e3)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def figure10() -> Figure:
    """Fig. 10: scalar BYOL flows: fast subsystem, invariant manifold ``w = w_p``, no predictor."""
    plt = _pyplot()
    byol = ScalarBYOL(lambda_s=1.0, lambda_d=0.5, alpha_p=1.0, beta=1.0)
    ratio = byol.balanced_predictor
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    fig.suptitle(r"Fig. 10: scalar BYOL (App. D), $\lambda_s=1$, $\lambda_d=1/2$, $\alpha_p=\beta=1$")
    grid = np.linspace(-1.5, 1.5, 60)
    G1, G2 = np.meshgrid(grid, grid)

    ax = axes[0]
    dw, dwp, _ = ScalarBYOL(lambda_s=1.0, lambda_d=0.5, fixed_target=True).velocity(G1, G2, 1.0)
    ax.streamplot(grid, grid, dw, dwp, color="tab:blue", density=0.9, linewidth=0.7, arrowsize=0.8)
    branch = np.linspace(0.2, 1.5, 100)
    ax.plot(branch, ratio / branch, color=STABLE, lw=2.5, label=r"stable $w_pw=w_a\lambda_d/\lambda_s$")
    ax.plot(-branch, -ratio / branch, color=STABLE, lw=2.5)
    ax.plot([0], [0], "o", color=UNSTABLE, ms=9, label="unstable origin")
    ax.set_xlabel("$w$")
    ax.set_ylabel("$w_p$")
    ax.set_title(r"fixed target $w_a=1$: $(w, w_p)$ plane")

    ax = axes[1]
    dw, _, dwa = byol.velocity(G1, G1, G2)
    ax.streamplot(grid, grid, dw, dwa, color="tab:blue", density=0.9, linewidth=0.7, arrowsize=0.8)
    ax.plot(grid, grid, color="tab:green", lw=1.8, label=r"$\dot w_a=0$: $w_a=w$")
    ax.plot(
        grid, grid**2 / ratio, color="tab:cyan", lw=1.8, label=r"$\dot w=0$: $w^2=w_a\lambda_d/\lambda_s$"
    )
    ax.axvline(0, color="tab:cyan", lw=1.8)
    ax.plot([0], [0], "o", color=UNSTABLE, ms=9, label="unstable origin")
    ax.plot([ratio], [ratio], "o", color=STABLE, ms=9, label=rf"stable $w=w_a={ratio:g}$")
    ax.set_xlabel("$w$ ($=w_p$)")
    ax.set_ylabel("$w_a$")
    ax.set_title(r"invariant manifold $w=w_p$ ($\alpha_p=1$)")

    ax = axes[2]
    dw, _, dwa = ScalarBYOL(lambda_s=1.0, lambda_d=0.5, beta=1.0, predictor=False).velocity(G1, 1.0, G2)
    ax.streamplot(grid, grid, dw, dwa, color="tab:blue", density=0.9, linewidth=0.7, arrowsize=0.8)
    ax.plot(grid, grid, color="tab:green", lw=1.8, label=r"$\dot w_a=0$: $w=w_a$")
    ax.plot(grid * ratio, grid, color="tab:cyan", lw=1.8, label=r"$\dot w=0$: $w=w_a\lambda_d/\lambda_s$")
    ax.plot([0], [0], "o", color=STABLE, ms=9, label="stable origin (collapse)")
    ax.set_xlabel("$w$")
    ax.set_ylabel("$w_a$")
    ax.set_title(r"no predictor ($w_p\equiv1$)")
    for ax in axes:
        ax.set_xlim(grid[0], grid[-1])
        ax.set_ylim(grid[0], grid[-1])
        ax.legend(fontsize=7, loc="lower right", framealpha=0.9)
    fig.tight_layout()
    return fig


#: Figure number -> (file stem, builder).
FIGURES: dict[str, tuple[str, Callable[[], Figure]]] = {
    "3": ("fig3_phase_portrait", figure3),
    "4": ("fig4_fixed_points", figure4),
    "5": ("fig5_decoupled_dynamics", figure5),
    "7": ("fig7_ema_correlation", figure7),
    "8": ("fig8_symmetric_skew", figure8),
    "9": ("fig9_commutator", figure9),
    "10": ("fig10_scalar_byol", figure10),
}


def _shrink_png(path: Path) -> None:
    """Re-save a plot PNG with a 256-colour palette: line plots lose nothing visible, files shrink ~3x."""
    from PIL import Image

    with Image.open(path) as image:
        palette = image.convert("RGB").quantize(colors=256)  # median cut, the default for RGB
    palette.save(path, optimize=True)


def save_figures(
    out_dir: str | Path, which: Iterable[str] | None = None, dpi: int = 90, progress: bool = True
) -> list[Path]:
    """Draw the selected figures (default: all of :data:`FIGURES`) into ``out_dir`` as PNG.

    Args:
        out_dir: output folder (created).
        which: figure numbers, e.g. ``["3", "10"]``.
        dpi: resolution of the PNG files.
        progress: show a progress bar.

    Returns:
        The written paths, one per figure.
    """
    which = list(FIGURES) if which is None else [str(w) for w in which]
    unknown = [w for w in which if w not in FIGURES]
    if unknown:
        raise ValueError(f"unknown figure(s) {unknown}; available: {list(FIGURES)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plt = _pyplot()
    iterator: Iterable[str] = which
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(which, desc="theory figures", unit="fig")
    paths = []
    for key in iterator:
        stem, build = FIGURES[key]
        fig = build()
        path = out / f"{stem}.png"
        fig.savefig(path, dpi=dpi)
        plt.close(fig)
        _shrink_png(path)
        paths.append(path)
    return paths
