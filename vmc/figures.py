"""The figures of `vmc report`, drawn with matplotlib's Agg canvas (no display, no pyplot
state) and returned as PNG bytes. Energies are plotted per primitive cell for crystals and
per molecule otherwise, in Ha; steps are optimization steps.
"""

from __future__ import annotations

import io
import math

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter, ScalarFormatter

from vmc import stats
from vmc.compare import WINDOW, RunComparison, final_energy, per_cell_train
from vmc.eos import EosFit, EosPoints
from vmc.finite_size import Extrapolation
from vmc.runs import RunRecord, SystemRecord

DPI = 100
WIDTH = 12.0  # inches: 1200 px, the width of the report's page
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"]
MAX_PANELS = 30


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def window_for(n: int) -> int:
    """Running-mean window (steps) for a series of n steps: about n/10, 5 to 100."""
    return int(min(100, max(5, n // 10)))


def running_mean(x: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Trailing mean of x (n,) over `window` steps (shorter at the start) and its standard
    error, sqrt(var * tau / window) with the series' integrated autocorrelation time tau
    estimated once over its second half (the first half is still relaxing)."""
    x = np.asarray(x, dtype=float)
    n = len(x)
    c1 = np.concatenate([[0.0], np.cumsum(x)])
    c2 = np.concatenate([[0.0], np.cumsum(x * x)])
    hi = np.arange(1, n + 1)
    lo = np.maximum(0, hi - window)
    count = hi - lo
    mean = (c1[hi] - c1[lo]) / count
    var = np.maximum((c2[hi] - c2[lo]) / count - mean**2, 0.0) * count / np.maximum(count - 1, 1)
    tau = stats.integrated_autocorrelation_time(x[n // 2:]) if n > 8 else 1.0
    return mean, np.sqrt(var * tau / count)


def _robust_limits(values: list[np.ndarray], extra: list[float]) -> tuple[float, float] | None:
    """y-limits around the bulk of the values (1st to 99th percentile of each series after
    its first tenth) and the finite `extra` levels, with a margin."""
    parts = [v[len(v) // 10:] for v in values if len(v)]
    parts = [p[np.isfinite(p)] for p in parts]
    pts = [np.percentile(p, [1, 99]) for p in parts if len(p)]
    pts += [np.array([e, e]) for e in extra if np.isfinite(e)]
    if not pts:
        return None
    lo, hi = min(p[0] for p in pts), max(p[1] for p in pts)
    margin = 0.08 * (hi - lo) if hi > lo else max(1e-3, 1e-4 * abs(hi))
    return lo - margin, hi + margin


def _plain_y(ax) -> None:
    ax.yaxis.set_major_formatter(ScalarFormatter(useOffset=False))
    ax.yaxis.set_major_locator(MaxNLocator(5))
    ax.xaxis.set_major_locator(MaxNLocator(5, integer=True))
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3, lw=0.5)


def _variance_scale(ax) -> None:
    """Log scale with plain tick labels where the variance spans a decade or more."""
    lo, hi = ax.get_ylim()
    if lo > 0 and hi / lo >= 10:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    else:
        ax.yaxis.set_major_formatter(ScalarFormatter(useOffset=False))


def _title(s: SystemRecord) -> str:
    if s.periodic and s.lattice_constant is not None:
        return f"{s.id}  (a = {s.lattice_constant:g} bohr)"
    return s.id


def _energy_panel(ax, s: SystemRecord, color: str, w: int) -> list[np.ndarray]:
    """Training (or, without training, evaluation) energies of one system; returns the
    series that set its y-range."""
    e = per_cell_train(s)
    hf = s.hf_energy_per_cell
    if len(e):
        x = s.train["step"]
        mean, err = running_mean(e, w)
        ax.plot(x, e, color="0.6", lw=0.5, alpha=0.6, label="step energy")
        ax.plot(x, mean, color=color, lw=1.4, label=f"{w}-step mean")
        ax.fill_between(x, mean - err, mean + err, color=color, alpha=0.25, lw=0)
        series = [mean]
    elif len(s.eval_energies):
        x = np.arange(len(s.eval_energies))
        ax.plot(x, s.eval_energies / s.n_cells, color=color, lw=0.7, label="evaluation step energy")
        ax.set_xlabel("evaluation step", fontsize=8)
        series = [s.eval_energies / s.n_cells]
    else:
        ax.text(0.5, 0.5, "no steps written yet", transform=ax.transAxes, ha="center", va="center", color="0.4")
        series = []
    if np.isfinite(hf):
        ax.axhline(hf, color="k", ls="--", lw=1.0, label="HF")
    if s.evaluation is not None:
        ev, ev_err, _ = final_energy(s)
        x_end = s.train["step"][-1] if len(s.train["step"]) else (len(s.eval_energies) - 1)
        ax.errorbar([x_end], [ev], yerr=[ev_err], fmt="o", ms=4, color="#2ca02c", capsize=3, label="evaluation", zorder=5)
        series.append(np.array([ev - ev_err, ev + ev_err]))
    ax.set_title(_title(s), fontsize=9)
    _plain_y(ax)
    return series


def _legend_handles(systems: list[SystemRecord], w: int) -> list:
    """Legend entries of the energy panels, in neutral colours (each panel has its own)."""
    trained = any(len(s.train["step"]) for s in systems)
    handles = [Line2D([], [], color="0.6", lw=0.8, label="step energy"),
               Line2D([], [], color="0.2", lw=1.4, label=f"{w}-step running mean ± error" if trained else "evaluation step energy"),
               Line2D([], [], color="k", ls="--", lw=1.0, label="Hartree–Fock")]
    if any(s.evaluation is not None for s in systems):
        handles.append(Line2D([], [], color="#2ca02c", marker="o", ls="none", ms=4, label="evaluated energy ± error"))
    return handles


def training_figure(run: RunRecord) -> bytes:
    """Energy per system (small multiples; systems of one crystal share the y-axis), then
    the local-energy variance and the MCMC acceptance of all systems, against step."""
    systems = run.systems[:MAX_PANELS]
    n = len(systems)
    ncols = min(3, max(n, 1))
    nrows = math.ceil(n / ncols)
    trained = any(len(s.train["step"]) for s in systems)
    fig = Figure(figsize=(WIDTH, 2.7 * nrows + (2.9 if trained else 0) + 0.4), layout="constrained")
    gs = fig.add_gridspec(nrows + (1 if trained else 0), 1, height_ratios=[1] * nrows + ([1.1] if trained else []))
    top = gs[:nrows, 0].subgridspec(nrows, ncols)
    axes, ranges = [], {}
    w = window_for(max((len(s.train["step"]) for s in systems), default=0))  # one window for all panels
    for i, s in enumerate(systems):
        ax = fig.add_subplot(top[i // ncols, i % ncols])
        series = _energy_panel(ax, s, COLORS[i % len(COLORS)], w)
        ranges.setdefault(s.name, []).append((ax, series, s.hf_energy_per_cell))
        if i % ncols == 0:
            ax.set_ylabel("E per cell (Ha)" if s.periodic else "E (Ha)", fontsize=9)
        if i // ncols == nrows - 1 or i + ncols >= n:
            if len(s.train["step"]):
                ax.set_xlabel("optimization step", fontsize=8)
        axes.append(ax)
    for group in ranges.values():  # one crystal (or one molecule name): one y-range
        limits = _robust_limits([v for _, series, _ in group for v in series], [hf for _, _, hf in group])
        if limits:
            for ax, _, _ in group:
                ax.set_ylim(*limits)
    if axes:  # one legend for all energy panels, above them
        fig.legend(handles=_legend_handles(systems, w), loc="outside upper center", ncols=4, fontsize=8, frameon=False)
    if trained:
        bottom = gs[nrows, 0].subgridspec(1, 2)
        ax_var, ax_pm = fig.add_subplot(bottom[0, 0]), fig.add_subplot(bottom[0, 1])
        for i, s in enumerate(systems):
            if not len(s.train["step"]):
                continue
            c = COLORS[i % len(COLORS)]
            ax_var.plot(s.train["step"], running_mean(s.train["variance"] / s.n_cells, w)[0], color=c, lw=1.0, label=s.id)
            ax_pm.plot(s.train["step"], running_mean(s.train["pmove"], w)[0], color=c, lw=1.0, label=s.id)
        _variance_scale(ax_var)
        ax_var.set_ylabel("variance per cell (Ha²)" if any(s.periodic for s in systems) else "variance (Ha²)", fontsize=9)
        ax_pm.set_ylabel("acceptance (pmove)", fontsize=9)
        ax_pm.set_ylim(0, 1)
        for ax in (ax_var, ax_pm):
            ax.set_xlabel("optimization step (running means)", fontsize=8)
            ax.tick_params(labelsize=8)
            ax.grid(alpha=0.3, lw=0.5)
            ax.xaxis.set_major_locator(MaxNLocator(5, integer=True))
        if len(systems) <= 8:
            ax_pm.legend(fontsize=7, loc="lower right", ncols=2 if len(systems) > 4 else 1)
    if len(run.systems) > MAX_PANELS:  # the report's heading names the run; the legend sits on top
        fig.supxlabel(f"(the first {MAX_PANELS} of {len(run.systems)} systems)", fontsize=9)
    return png(fig)


def eos_figure(points: EosPoints, fit: EosFit | str, title: str) -> bytes:
    """Twist-averaged energy per primitive cell against lattice constant with error bars, the
    Birch–Murnaghan curve and a0 ± its error (or the reason for no fit)."""
    fig = Figure(figsize=(7.5, 4.6), layout="constrained")
    ax = fig.add_subplot()
    ok = points.evaluated
    a, e, err = points.lattice_constants[ok], points.energies[ok], points.errors[ok]
    ax.errorbar(a, e, yerr=np.where(np.isfinite(err), err, 0), fmt="o", color="#1f77b4", capsize=3, ms=5,
                label="VMC, twist-averaged", zorder=5)
    xlabel = "lattice constant a (bohr)" if points.lattice_constant_stored else "V^(1/3) of the primitive cell (bohr)"
    if isinstance(fit, EosFit):
        lo, hi = min(a.min(), fit.a0), max(a.max(), fit.a0)
        grid = np.linspace(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo), 200)
        ax.plot(grid, fit.energy(fit.volume(grid)), color="#d62728", lw=1.3, label="Birch–Murnaghan fit")
        ax.axvline(fit.a0, color="0.3", ls=":", lw=1.0)
        ax.plot([fit.a0], [fit.e0], marker="*", ms=11, color="#d62728", ls="none", label="minimum (a₀, E₀)", zorder=6)
        if np.isfinite(fit.a0_error):
            ax.axvspan(fit.a0 - fit.a0_error, fit.a0 + fit.a0_error, color="0.5", alpha=0.15, lw=0, label="a₀ ± error")
        title += (f"\na₀ = {format_pm(fit.a0, fit.a0_error)} bohr,  B₀ = {format_pm(fit.b0, fit.b0_error)} GPa,  "
                  f"E₀ = {format_pm(fit.e0, fit.e0_error)} Ha")
    else:
        ax.text(0.5, 0.97, fit, transform=ax.transAxes, ha="center", va="top", fontsize=9, wrap=True,
                bbox=dict(boxstyle="round", fc="#fff3cd", ec="0.7"))
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel("E per primitive cell (Ha)", fontsize=9)
    _plain_y(ax)
    ax.xaxis.set_major_locator(MaxNLocator(6))
    ax.legend(fontsize=8, loc="best")
    ax.set_title(title, fontsize=10)
    if len(e):
        span = max(e.max() - e.min(), 1e-3)
        top = 0.12 if isinstance(fit, EosFit) else 0.45  # room for the no-fit message
        pad = np.nanmax(np.nan_to_num(err))
        ax.set_ylim(e.min() - 0.12 * span - pad, e.max() + top * span + pad)
    return png(fig)


def tdl_figure(x: Extrapolation, reference: float | None) -> bytes:
    """Energy per atom against N^-p (N atoms in the simulation cell) with error bars, the
    leading fit extended to N -> infinity (E_inf ± its error at 0), the checks of the form as
    dashed curves (each at its own power, drawn against the leading one's axis) and the
    reference."""
    fig = Figure(figsize=(7.5, 4.6), layout="constrained")
    ax = fig.add_subplot()
    r, p = x.fit, x.fit.power
    n, e, err = r.sizes, r.energies, r.errors
    ax.errorbar(n**-p, e, yerr=np.where(np.isfinite(err), err, 0), fmt="o", color="#1f77b4", capsize=3, ms=5,
                label="VMC, twist-averaged", zorder=5)
    for xi, yi, ni in zip(n**-p, e, n):
        ax.annotate(f"N={int(ni)}", (xi, yi), textcoords="offset points", xytext=(6, 6), fontsize=8)
    n_grid = np.geomspace(n.min(), 1e6 * n.max(), 400)
    ax.plot(n_grid**-p, r.energy(n_grid), color="#d62728", lw=1.3, label=r.form.replace("E_inf", "E∞"))
    for (label, c), color in zip(x.checks.items(), COLORS[2:]):
        ax.plot(n_grid**-p, c.energy(n_grid), color=color, lw=1.0, ls="--", label=f"check: {label}")
    ax.errorbar([0.0], [r.e_inf], yerr=[r.e_inf_error if np.isfinite(r.e_inf_error) else 0], fmt="*", ms=11,
                color="#d62728", capsize=3, label=f"E∞ = {format_pm(r.e_inf, r.e_inf_error)} Ha", zorder=6)
    if reference is not None:
        ax.axhline(reference, color="0.3", ls=":", lw=1.2, label=f"reference {reference:g} Ha")
    ax.set_xlabel(f"N^-{p:g} (N: atoms in the simulation cell)", fontsize=9)
    ax.set_ylabel("E per atom (Ha)", fontsize=9)
    ax.set_xlim(-0.04 * n.min() ** -p, 1.1 * n.min() ** -p)
    _plain_y(ax)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(f"{x.series.name}: finite-size extrapolation", fontsize=10)
    return png(fig)


def format_pm(x: float, err: float) -> str:
    """x ± err with the error's first two significant digits setting the decimals."""
    if not np.isfinite(err) or err <= 0:
        return f"{x:.4g}"
    digits = max(0, -int(np.floor(np.log10(err))) + 1)
    return f"{x:.{digits}f} ± {err:.{digits}f}"


def comparison_figure(runs: list[RunRecord], system_ids: list[str], rows: dict[str, list[RunComparison]]) -> bytes:
    """One axis per shared system: each run's training energy (running mean) against step,
    the HF level and the band [best final, best final + tolerance]."""
    system_ids = system_ids[:MAX_PANELS]
    ncols = min(2, len(system_ids))
    nrows = math.ceil(len(system_ids) / ncols)
    fig = Figure(figsize=(WIDTH, 3.6 * nrows + 0.5), layout="constrained")
    for k, sid in enumerate(system_ids):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        series, hf, periodic = [], np.nan, False
        for i, r in enumerate(runs):
            s = next((s for s in r.systems if s.id == sid), None)
            if s is None:
                continue
            c = COLORS[i % len(COLORS)]
            hf, periodic = s.hf_energy_per_cell, s.periodic
            e = per_cell_train(s)
            if len(e):
                mean = running_mean(e, WINDOW)[0]
                ax.plot(s.train["step"], e, color=c, lw=0.4, alpha=0.25)
                ax.plot(s.train["step"], mean, color=c, lw=1.5, label=f"{r.label} ({WINDOW}-step mean)")
                series.append(mean)
            fe, fe_err, _ = final_energy(s)
            if np.isfinite(fe):
                ax.axhline(fe, color=c, ls=":", lw=1.0)
                series.append(np.array([fe]))
        if np.isfinite(hf):
            ax.axhline(hf, color="k", ls="--", lw=1.0, label="HF")
        finals = [row for row in rows.get(sid, []) if np.isfinite(row.final)]
        if finals:
            best = min(row.final for row in finals)
            ax.axhspan(best, best + finals[0].tolerance, color="#2ca02c", alpha=0.15, lw=0, label="best final + tolerance")
            series.append(np.array([best, best + finals[0].tolerance]))
        limits = _robust_limits(series, [hf])
        if limits:
            ax.set_ylim(*limits)
        ax.set_title(sid, fontsize=9)
        ax.set_xlabel("optimization step", fontsize=8)
        ax.set_ylabel("E per cell (Ha)" if periodic else "E (Ha)", fontsize=9)
        _plain_y(ax)
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle("runs compared (dotted: each run's final energy)", fontsize=11)
    return png(fig)
