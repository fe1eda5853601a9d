"""`vmc report`: one self-contained report.html (figures embedded as base64 PNG, the same
PNGs written next to it) for one or several run directories.

Per run: training curves, the evaluation table, and for crystals the twist-averaged
energies, the Birch–Murnaghan equation of state (vmc/eos.py) and, given isolated-atom
energies, cohesive energies (vmc/cohesive.py). For several runs: their training curves
overlaid per shared system and the comparison table of vmc/compare.py.

Every number in a table cell also sits unrounded in the cell's `data-value` attribute, with
`data-run`, `data-system` and `data-key` saying what it is (energies in Ha, B0 in GPa,
lengths in bohr), so that scripts and tests can read the page back.

Runs that are still going are read without locking their energies.h5 (vmc/runs.py).
"""

from __future__ import annotations

import base64
import datetime
import html
import os
import re
from pathlib import Path

import numpy as np
from pyscf.data import nist
from scipy.stats import chi2 as chi2_dist

from vmc import __version__, cohesive, compare, eos, figures, finite_size, stats
from vmc.errors import InputError, OutputError, os_reason
from vmc.progress import format_energy
from vmc.runs import RunRecord, labels, read_run

EV_PER_HA = nist.HARTREE2EV

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1240px; margin: 24px auto;
       padding: 0 16px; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 4px; margin-top: 2em; }
h3 { margin-top: 1.4em; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; } th { background: #f3f3f3; text-align: center; }
td.num { text-align: right; font-family: ui-monospace, "DejaVu Sans Mono", monospace; white-space: nowrap; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
.note { color: #555; font-size: 0.9em; } .warn { background: #fff3cd; padding: 6px 10px; border-radius: 4px; }
.meta td { border: none; padding: 1px 12px 1px 0; }
"""


# ----------------------------------------------------------------------------- HTML pieces


class Page:
    """The HTML body and the figures it embeds ({file name: PNG bytes})."""

    def __init__(self):
        self.parts: list[str] = []
        self.figures: dict[str, bytes] = {}
        self.extrapolations: list[finite_size.Extrapolation] = []  # for summary.h5

    def add(self, text: str) -> None:
        self.parts.append(text)

    def note(self, text: str, warn: bool = False) -> None:
        self.add(f'<p class="{"note warn" if warn else "note"}">{html.escape(text)}</p>')

    def figure(self, name: str, data: bytes, alt: str) -> None:
        self.figures[name] = data
        b64 = base64.b64encode(data).decode()
        self.add(f'<p><a href="{html.escape(name)}"><img src="data:image/png;base64,{b64}" alt="{html.escape(alt)}"></a></p>')

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        head = "".join(f"<th>{h}</th>" for h in header)
        body = "".join("<tr>" + "".join(rows_i) + "</tr>" for rows_i in rows)
        self.add(f"<table><tr>{head}</tr>{body}</table>")


def _esc(x) -> str:
    return html.escape(str(x))


def text_cell(text: str) -> str:
    return f"<td>{_esc(text)}</td>"


def num_cell(run: str, system: str, key: str, value: float, shown: str) -> str:
    """A numeric cell: `shown` as displayed, the unrounded value in data-value."""
    v = "nan" if value is None or not np.isfinite(value) else repr(float(value))
    return (f'<td class="num" data-run="{_esc(run)}" data-system="{_esc(system)}" data-key="{_esc(key)}" '
            f'data-value="{v}">{_esc(shown)}</td>')


def energy_cells(run: str, system: str, key: str, value: float, error: float, scale: float = 1.0) -> str:
    """value ± error as one cell (12.345(6)) carrying key and key_error; scale: 1e3 for mHa."""
    if value is None or not np.isfinite(value):
        return num_cell(run, system, key, np.nan, "—")
    shown = format_energy(value * scale, error * scale if error is not None and np.isfinite(error) else np.nan)
    v_err = "nan" if error is None or not np.isfinite(error) else repr(float(error))
    return num_cell(run, system, key, value, shown).replace("<td ", f'<td data-error="{v_err}" ', 1)


_pm = figures.format_pm


def _file_name(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(parts)) + ".png"


# ----------------------------------------------------------------------------- sections


def _header(page: Page, run: RunRecord) -> None:
    page.add(f"<h2>{_esc(run.label)}</h2>")
    meta = [("directory", str(run.path.resolve())), ("status", run.status()), ("ansatz", run.model or "?"),
            ("walkers", run.walkers), ("started", run.created)]
    page.add('<table class="meta">' + "".join(f"<tr><td><b>{k}</b></td><td>{_esc(v)}</td></tr>" for k, v in meta) + "</table>")
    if not run.finished:
        page.note("This run has not been evaluated yet: the tables show what exists so far.", warn=True)


def _training(page: Page, run: RunRecord) -> None:
    page.add("<h3>Training</h3>")
    if not any(len(s.train["step"]) or len(s.eval_energies) for s in run.systems):
        page.note("No optimization or evaluation steps written yet (pretraining or burn-in may be running).")
        return
    page.figure(_file_name("training", run.label), figures.training_figure(run), f"training curves of {run.label}")
    page.note("Grey: the energy of each optimization step (mean local energy of all walkers). Coloured: its trailing "
              "running mean, with a band of ± one standard error (autocorrelation-corrected). Dashed: Hartree–Fock. "
              "Green point: the evaluated energy. Crystals: energy per primitive cell; systems of one crystal share the y-axis.")


def _evaluation_table(page: Page, run: RunRecord) -> None:
    page.add("<h3>Evaluation</h3>")
    header = ["system", "electrons", "E (Ha)", "E per cell (Ha)", "E<sub>HF</sub> (Ha)", "E − E<sub>HF</sub> (mHa)",
              "τ<sub>int</sub> (steps)", "walkers", "training steps", "evaluation steps", "last training mean per cell (Ha)"]
    rows = []
    for s in run.systems:
        ev = s.evaluation or {}
        e, err = ev.get("energy", np.nan), ev.get("energy_error", np.nan)
        n_tr = len(s.train["energy"])
        last = compare._mean(compare.per_cell_train(s)[-compare.WINDOW:])
        rows.append([
            text_cell(s.id), num_cell(run.label, s.id, "n_electrons", s.n_electrons, str(s.n_electrons)),
            energy_cells(run.label, s.id, "energy", e, err),
            energy_cells(run.label, s.id, "energy_per_cell", ev.get("energy_per_cell", np.nan), ev.get("energy_per_cell_error", np.nan)),
            num_cell(run.label, s.id, "hf_energy", s.hf_energy, f"{s.hf_energy:.6f}"),
            energy_cells(run.label, s.id, "correlation", e - s.hf_energy, err, scale=1e3),
            num_cell(run.label, s.id, "autocorrelation_time", ev.get("autocorrelation_time", np.nan),
                     f"{ev['autocorrelation_time']:.1f}" if "autocorrelation_time" in ev else "—"),
            num_cell(run.label, s.id, "walkers", run.walkers or np.nan, str(run.walkers or "?")),
            num_cell(run.label, s.id, "train_steps", n_tr, str(n_tr)),
            num_cell(run.label, s.id, "eval_steps", len(s.eval_energies), str(len(s.eval_energies))),
            energy_cells(run.label, s.id, "train_last_per_cell", *last),
        ])
    page.table(header, rows)
    for warning in filter(None, map(_hf_warning, run.systems)):  # above E_HF by > 3 error bars
        page.note(warning, warn=True)
    # a positive E − E_HF, significant or not, is no correlation energy: the page never calls it one
    above = [s.id for s in run.systems if s.evaluation and s.evaluation.get("energy", np.nan) > s.hf_energy]
    difference = (f"E − E_HF (whole cell) is positive for {', '.join(above)}: that energy lies above Hartree–Fock, "
                  "and the difference is no correlation energy. "
                  if above else "E − E_HF (whole cell) is the correlation energy the wavefunction recovers. ")
    page.note(f"Errors in brackets: one standard error in the last digits, corrected for autocorrelation. {difference}"
              f"The last column is the mean of the last {compare.WINDOW} training energies (biased by the optimization; "
              "for runs not evaluated yet).")


def _hf_warning(s) -> str | None:
    """stats.hartree_fock_warning for one evaluated system: per cell for crystals."""
    ev = s.evaluation or {}
    if s.periodic:
        return stats.hartree_fock_warning(s.id, ev.get("energy_per_cell", np.nan), ev.get("energy_per_cell_error", np.nan),
                                          s.hf_energy_per_cell, unit="Ha per cell")
    return stats.hartree_fock_warning(s.id, ev.get("energy", np.nan), ev.get("energy_error", np.nan), s.hf_energy)


def _crystal(page: Page, run: RunRecord, name: str, atom_energies: dict[str, float]) -> None:
    points = run.crystals[name]
    page.add(f"<h3>Equation of state: {_esc(name)}</h3>")
    fit = eos.fit_points(points)
    coh_ok = bool(atom_energies) and not cohesive.missing(points.primitive_symbols, atom_energies)
    formula, z = cohesive.formula(points.primitive_symbols) if points.primitive_symbols else ("?", 1)
    header = ["geometry", "a (bohr)", "V per cell (bohr³)", "E per cell (Ha)"]
    if coh_ok:
        header += [f"E<sub>coh</sub> per {_esc(formula)} (Ha)", f"E<sub>coh</sub> per {_esc(formula)} (eV)"]
    rows = []
    for i, gid in enumerate(points.geometries):
        a, v, e, err = points.lattice_constants[i], points.volumes[i], points.energies[i], points.errors[i]
        row = [text_cell(gid), num_cell(run.label, gid, "lattice_constant", a, f"{a:.4f}"),
               num_cell(run.label, gid, "volume", v, f"{v:.3f}"), energy_cells(run.label, gid, "energy_per_cell", e, err)]
        if coh_ok:
            c, c_err = cohesive.cohesive_energy(e, err, points.primitive_symbols, atom_energies)
            row += [energy_cells(run.label, gid, "cohesive_energy", c, c_err),
                    energy_cells(run.label, gid, "cohesive_energy_ev", c * EV_PER_HA, c_err * EV_PER_HA)]
        rows.append(row)
    if isinstance(fit, eos.EosFit):
        row = [text_cell("fit minimum (a₀, E₀)"), num_cell(run.label, name, "eos_a0", fit.a0, _pm(fit.a0, fit.a0_error)),
               num_cell(run.label, name, "eos_v0", fit.v0, _pm(fit.v0, fit.v0_error)),
               energy_cells(run.label, name, "eos_e0", fit.e0, fit.e0_error)]
        if coh_ok:
            c, c_err = cohesive.cohesive_energy(fit.e0, fit.e0_error, points.primitive_symbols, atom_energies)
            row += [energy_cells(run.label, name, "cohesive_energy_a0", c, c_err),
                    energy_cells(run.label, name, "cohesive_energy_a0_ev", c * EV_PER_HA, c_err * EV_PER_HA)]
        rows.append(row)
    page.table(header, rows)
    if points.evaluated.any():
        page.figure(_file_name("eos", run.label, name), figures.eos_figure(points, fit, f"{run.label}: {name}"),
                    f"equation of state of {name}")
    if isinstance(fit, eos.EosFit):
        k = run.label
        page.table(["a₀ (bohr)", "E₀ per cell (Ha)", "B₀ (GPa)", "B₀′", "V₀ (bohr³)", "χ² / dof", "resamples"], [[
            num_cell(k, name, "a0", fit.a0, _pm(fit.a0, fit.a0_error)), energy_cells(k, name, "e0", fit.e0, fit.e0_error),
            num_cell(k, name, "b0", fit.b0, _pm(fit.b0, fit.b0_error)),
            num_cell(k, name, "b0_prime", fit.b0_prime, _pm(fit.b0_prime, fit.b0_prime_error)),
            num_cell(k, name, "v0", fit.v0, _pm(fit.v0, fit.v0_error)),
            num_cell(k, name, "chi2", fit.chi2, f"{fit.chi2:.2f} / {fit.dof}" if np.isfinite(fit.chi2) else "—"),
            num_cell(k, name, "n_bootstrap", fit.n_bootstrap, f"{fit.n_bootstrap} ({fit.n_failed} without a minimum)"),
        ]])
        page.note("Third-order Birch–Murnaghan fit of the twist-averaged energy per primitive cell against the cell volume "
                  "(weighted by 1/error²). Errors: standard deviations over refits of energies redrawn within their error "
                  f"bars (parametric bootstrap, {eos.N_BOOTSTRAP} resamples). B₀ in GPa (1 Ha/bohr³ = "
                  f"{eos.GPA_PER_HA_PER_BOHR3:.3f} GPa).")
        a = points.lattice_constants[points.evaluated]
        if not a.min() <= fit.a0 <= a.max():
            page.note(f"a₀ = {fit.a0:.3f} bohr lies outside the sampled lattice constants ({a.min():g}–{a.max():g} bohr): "
                      "it is an extrapolation; add lattice constants around it.", warn=True)
        if fit.n_failed > 0.05 * (fit.n_bootstrap + fit.n_failed):
            page.note(f"{fit.n_failed} of {fit.n_bootstrap + fit.n_failed} resampled energy sets have no minimum and are left "
                      "out: the energies barely determine the curvature, and the errors are lower bounds.", warn=True)
        if fit.dof == 0:
            page.note("Four points for four parameters: the curve passes through every point (no χ² test).")
        if abs(fit.exponent - 3) > 0.05:
            page.note(f"The cell volume scales as a^{fit.exponent:.2f} (fixed vacuum in the cell): B₀ refers to that volume.")
    else:
        page.note(fit, warn=True)
    if not points.lattice_constant_stored:
        page.note("This energies.h5 does not store lattice constants (written by an older vmc): the x-axis is V^(1/3) "
                  "of the primitive cell.", warn=True)
    if not atom_energies:
        page.note("Cohesive energies: pass the isolated-atom energies, e.g. --atom-energy Li=-7.478060 --atom-energy H=-0.5.")
    elif not coh_ok:
        page.note(f"Cohesive energies: no --atom-energy for {', '.join(cohesive.missing(points.primitive_symbols, atom_energies))}.", warn=True)
    else:
        page.note(f"E_coh = (E per cell − Σ atom energies of the primitive cell) / {z} formula unit{'s' if z > 1 else ''} "
                  f"({formula}); negative: bound. Atom energies used: "
                  + ", ".join(f"{s} = {atom_energies[s]:g} Ha" for s in sorted(set(points.primitive_symbols))) + ".")


def _supercell_text(m: np.ndarray) -> str:
    """2 × 2 × 2 for a diagonal supercell matrix, its rows otherwise."""
    diagonal = not np.any(m - np.diag(np.diag(m)))
    return " × ".join(str(int(v)) for v in np.diag(m)) if diagonal else str(m.tolist())


def _thermodynamic_limit(page: Page, runs: list[RunRecord], reference: float | None) -> None:
    """Crystals the runs hold at several supercell sizes, extrapolated to N -> infinity
    (vmc/finite_size.py)."""
    series = finite_size.size_series(runs)
    if not series:
        return
    page.add("<h2>Thermodynamic limit</h2>")
    for s in series:
        x = finite_size.extrapolate(s)
        page.extrapolations.append(x)
        a = f" at a = {s.lattice_constant:g} bohr" if s.lattice_constant is not None else ""
        page.add(f"<h3>{_esc(s.name)}{_esc(a)}</h3>")
        rows = [[num_cell(p.run, p.geometry, "n_atoms", p.n_atoms, str(p.n_atoms)),
                 text_cell(_supercell_text(p.supercell)),
                 text_cell(p.run), text_cell(p.geometry), energy_cells(p.run, p.geometry, "energy_per_atom", p.energy, p.error)]
                for p in s.points]
        page.table(["N (atoms)", "supercell", "run", "geometry", "E per atom (Ha)"], rows)
        if s.replaced:
            page.note("Sizes held by several runs: the lowest energy per atom is used; not used: " + "; ".join(
                f"N = {p.n_atoms} of {p.run} ({format_energy(p.energy, p.error)} Ha)" for p in s.replaced) + ".")
        if x.fit is None:
            page.note(x.reason, warn=True)
            continue
        page.figure(_file_name("tdl", s.name), figures.tdl_figure(x, reference), f"finite-size extrapolation of {s.name}")
        fits = [("leading: " + x.fit.form, x.fit)] + [(f"check: E_N = E_inf + {label}", c) for label, c in x.checks.items()]
        header = ["form", "E<sub>∞</sub> per atom (Ha)", "b", "χ² / dof"]
        if reference is not None:
            header.append("E<sub>∞</sub> − reference (mHa per atom)")
        rows = []
        for i, (label, f) in enumerate(fits):
            key = "tdl" if i == 0 else f"tdl_check{i}"
            row = [text_cell(label), energy_cells("tdl", s.name, f"{key}_e_inf", f.e_inf, f.e_inf_error),
                   num_cell("tdl", s.name, f"{key}_slope", f.slope, _pm(f.slope, f.slope_error)),
                   num_cell("tdl", s.name, f"{key}_chi2", f.chi2, f"{f.chi2:.2f} / {f.dof}" if np.isfinite(f.chi2) else f"— / {f.dof}")]
            if reference is not None:
                d = 1e3 * (f.e_inf - reference)
                row.append(num_cell("tdl", s.name, f"{key}_minus_reference", d, _pm(d, 1e3 * f.e_inf_error)))
            rows.append(row)
        page.table(header, rows)
        spread = max(abs(c.e_inf - x.fit.e_inf) for c in x.checks.values())
        page.note(f"N: atoms in the simulation cell; E: twist-averaged energy per atom. The supercells grow along "
                  f"{s.dimension} lattice direction{'s' if s.dimension != 1 else ''}, so the leading form is "
                  f"{x.fit.form} (docs/physics.md, Finite-size extrapolation); fitted by weighted least squares, errors "
                  f"by a parametric bootstrap over the error bars ({x.fit.n_bootstrap} resamples). The checks move E_inf "
                  f"by up to {1e3 * spread:.2f} mHa per atom: a measure of the extrapolation's own uncertainty, not in "
                  "the error bar.")
        if x.fit.dof > 0 and np.isfinite(x.fit.chi2) and chi2_dist.sf(x.fit.chi2, x.fit.dof) < 0.01:
            page.note(f"χ² = {x.fit.chi2:.1f} for {x.fit.dof} degrees of freedom (p < 0.01): the form does not describe "
                      "the energies within their error bars; the smallest sizes may lie outside its range.", warn=True)


def _comparison(page: Page, runs: list[RunRecord], tolerance: float) -> None:
    page.add("<h2>Runs compared</h2>")
    shared = compare.shared_systems(runs)
    if not shared:
        page.note("The runs have no system id in common: nothing to compare.", warn=True)
        return
    rows_by_system = {sid: compare.compare(runs, sid, tolerance) for sid in shared}
    page.figure("compare.png", figures.comparison_figure(runs, shared, rows_by_system), "training curves of the runs compared")
    header = ["system", "run", "zero-shot E per cell (Ha)", "final E per cell (Ha)", "E<sub>HF</sub> per cell (Ha)",
              "correlation energy recovered, zero-shot", "correlation energy recovered, final",
              f"steps to within {tolerance:g} mHa/atom of the other's final", "steps done"]
    rows = []
    for sid, comps in rows_by_system.items():
        for c in comps:
            final_shown = format_energy(c.final, c.final_error) + (" (training)" if c.final_from_training else "")
            reached = str(c.steps_to_target) if c.steps_to_target is not None else ("not reached" if np.isfinite(c.target) else "—")
            rows.append([
                text_cell(sid), text_cell(c.run),
                energy_cells(c.run, sid, "zero_shot", c.zero_shot, c.zero_shot_error),
                num_cell(c.run, sid, "final", c.final, final_shown if np.isfinite(c.final) else "—"),
                num_cell(c.run, sid, "hf", c.hf, f"{c.hf:.6f}"),
                num_cell(c.run, sid, "share_zero_shot", c.share_zero_shot, f"{100 * c.share_zero_shot:.1f} %" if np.isfinite(c.share_zero_shot) else "—"),
                num_cell(c.run, sid, "share_final", c.share_final, f"{100 * c.share_final:.1f} %" if np.isfinite(c.share_final) else "—"),
                num_cell(c.run, sid, "steps_to_target", np.nan if c.steps_to_target is None else c.steps_to_target, reached),
                num_cell(c.run, sid, "steps_done", c.steps_done, str(c.steps_done)),
            ])
    page.table(header, rows)
    page.note(f"Zero-shot: mean of a run's first {compare.WINDOW} training energies (for a fine-tune: the transferred "
              f"network before it learned the target). Final: the evaluated energy, or the last {compare.WINDOW} training "
              "energies where marked. Correlation energy recovered: (E − E_HF) / (E_ref − E_HF), E_ref the lowest final "
              f"energy of the runs. Steps: the first step whose trailing {compare.WINDOW}-step mean is within the tolerance "
              "(× atoms) of the best final energy of the other runs.")


# ----------------------------------------------------------------------------- entry points


def build(runs: list[RunRecord], atom_energies: dict[str, float] | None = None, tolerance: float = 1.0,
          reference: float | None = None) -> Page:
    """The report page of the runs; tolerance in mHa per atom; reference: a literature energy
    per atom in the thermodynamic limit (Ha), drawn beside the extrapolation."""
    page = Page()
    atom_energies = atom_energies or {}
    stamp = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    page.add(f"<h1>vmc report</h1><p class='note'>{_esc(', '.join(r.label for r in runs))} · written {stamp} by vmc "
             f"{_esc(__version__)}. Energies in hartree (Ha), lengths in bohr.</p>")
    for run in runs:
        _header(page, run)
        _training(page, run)
        _evaluation_table(page, run)
        for name in run.crystals:
            _crystal(page, run, name, atom_energies)
    _thermodynamic_limit(page, runs, reference)
    if len(runs) > 1:
        _comparison(page, runs, tolerance)
    return page


def _html(page: Page, title: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{_esc(title)}</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(page.parts) + "\n</body></html>\n")


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def write_report(run_dirs: list[str | Path], out_dir: str | Path | None = None,
                 atom_energies: dict[str, float] | None = None, tolerance: float = 1.0,
                 reference: float | None = None) -> Path:
    """Writes report.html and its PNG figures into out_dir (default: the run directory, for
    one run) and returns the path of report.html; with a finite-size extrapolation also
    summary.h5 (vmc/finite_size.py). atom_energies: {element: Ha}; tolerance: mHa per atom;
    reference: Ha per atom. InputError for a missing run directory or a bad --out."""
    if not run_dirs:
        raise InputError("no run directory given")
    paths = [Path(d) for d in run_dirs]
    for p in paths:
        if not p.is_dir():
            raise InputError(f"{p}: no such run directory")
    if out_dir is None:
        if len(paths) > 1:
            raise InputError("several runs: give --out DIR for the report")
        out_dir = paths[0]
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir}: is a file; give a directory")
    if not np.isfinite(tolerance) or tolerance <= 0:
        raise InputError(f"--tolerance {tolerance}: must be a positive number (mHa per atom)")
    if reference is not None and not np.isfinite(reference):
        raise InputError(f"--reference {reference}: must be a finite energy (Ha per atom)")
    runs = [read_run(p, label) for p, label in zip(paths, labels(paths))]
    page = build(runs, atom_energies, tolerance, reference)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, data in page.figures.items():
            _atomic_write(out_dir / name, data)
        if any(x.fit is not None for x in page.extrapolations):
            finite_size.write_summary(out_dir / "summary.h5", page.extrapolations, reference)
        report = out_dir / "report.html"
        _atomic_write(report, _html(page, "vmc report: " + ", ".join(r.label for r in runs)).encode())
    except OSError as e:
        raise OutputError(f"--out {out_dir}: the report could not be written ({os_reason(e)})") from None
    return report


def finish_run(run_dir: str | Path, log) -> None:
    """End of `vmc run`: stores the equation of state in energies.h5 (vmc/eos.py) and writes
    report.html into the run directory. Never raises: a failure is one warning line via log."""
    run_dir = Path(run_dir)
    try:
        eos.write_eos(run_dir / "energies.h5")
    except Exception as e:  # noqa: BLE001 - a report must never fail a run
        log(f"warning: the equation of state was not stored in energies.h5 ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
    try:
        path = write_report([run_dir], run_dir)
        log(f"report: {path}")
    except Exception as e:  # noqa: BLE001
        log(f"warning: report.html was not written ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
