"""Appendix: how far are the book's GPAW labels from VASP? (reads, never computes, DFT)

``scripts/gpaw_validate.py`` relabels the displaced supercells of PhononDB (VASP-PBEsol
finite-displacement force sets) with GPAW-PBEsol and the WBM campaign's settings and writes,
in ``data/reference/gpaw_validation/``:

* ``<mp-id>.json``: settings record and metrics (slope through the origin of GPAW against
  VASP force components, MAE, ...; ``raw`` = the same before subtracting GPAW's residual
  forces; ``residual_forces`` = ``"computed"`` or ``"zero by site symmetry"``);
* ``<mp-id>.npz``: ``vasp_forces``, ``gpaw_forces`` (already minus the residual) and
  ``gpaw_residual_forces`` (GPAW on the undisplaced supercell);
* ``summary.csv`` / ``summary.json`` (pooled metrics, materials still to do);
* ``residual_checks.json``: GPAW's forces on the *undisplaced* (VASP-relaxed) supercell for
  one functional and one choice of PAW setups, with the force along each atom's shortest
  bond (``> 0``: the atom is pushed away from its neighbour, GPAW's bond is longer).

This module turns those files into the appendix's tables, figure and sentences. Every function
takes an optional directory so that tests can point it at a temporary one; absent files give
empty tables and a sentence saying what has not been run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import config
from .. import models as _registry

TARGET = 0.03  # slope of GPAW against VASP within 1.00 +/- TARGET
FUNCTIONAL = "PBEsol"  # PhononDB's functional, hence the validation's
MAX_COLS = 3  # parity panels per row (legible at page width)
ZERO_BY_SYMMETRY = "zero by site symmetry"
CROSSCHECK_MODELS = _registry.tagged("crosscheck")  # the registry's tag (softening_lib/models.yml)
# its folders under data/reference: validation, convergence, campaign
REFERENCE_DIRS = ("gpaw_validation", "gpaw_convergence", "wbm_he_gpaw")
CAMPAIGN_FIELDS = ("formula", "n_atoms", "n_frames", "n_failed", "s_per_frame", "md_wall_s", "md_total_time_ps")


def validation_dir(dir: str | Path | None = None) -> Path:
    return Path(dir) if dir is not None else config.reference_dir() / REFERENCE_DIRS[0]


def convergence_dir(dir: str | Path | None = None) -> Path:
    return Path(dir) if dir is not None else config.reference_dir() / REFERENCE_DIRS[1]


def campaign_dir(dir: str | Path | None = None) -> Path:
    return Path(dir) if dir is not None else config.reference_dir() / REFERENCE_DIRS[2]


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


# --------------------------------------------------------------------------------------
# displaced supercells: summary, sentence, parity figure
# --------------------------------------------------------------------------------------

def load_summary(dir: str | Path | None = None):
    """``summary.csv`` of the validation (one row per material); an empty frame if absent."""
    import pandas as pd

    path = validation_dir(dir) / "summary.csv"
    return pd.read_csv(path) if path.is_file() else pd.DataFrame()


def pooled(dir: str | Path | None = None) -> dict | None:
    """``summary.json`` (pooled metrics over all materials, ``n_within_target``, ``remaining``),
    or None when the validation has not written it."""
    return _read_json(validation_dir(dir) / "summary.json")


def material_record(material_id: str, dir: str | Path | None = None) -> dict | None:
    """The ``<mp-id>.json`` record of one material (None if absent)."""
    return _read_json(validation_dir(dir) / f"{material_id}.json")


def residual_how(record: dict | None) -> str:
    """How GPAW's residual forces on the undisplaced supercell were obtained: ``"computed"``,
    ``"zero by site symmetry"`` or ``"not subtracted"`` (records older than the field say
    ``residual_subtracted`` only; those were all computed)."""
    if not record:
        return "unknown"
    if record.get("residual_forces"):
        return str(record["residual_forces"])
    return "computed" if record.get("residual_subtracted") else "not subtracted"


def glue_values(dir: str | Path | None = None) -> dict[str, Any]:
    """The numbers the prose glues (``val_n``, ``val_slope_pooled``, ``val_n_within``); empty
    when there is no summary."""
    p = pooled(dir)
    if not p:
        return {}
    return {"val_n": int(p["n_materials"]), "val_slope_pooled": float(p["pooled"]["slope"]),
            "val_n_within": int(p["n_within_target"])}


def summary_note(dir: str | Path | None = None) -> str:
    """One markdown sentence: how many materials are within the target, the pooled slope and
    MAE, which materials are still to do."""
    p = pooled(dir)
    if not p:
        return "**No validation results yet**: run `python scripts/gpaw_validate.py`."
    return (f"**{p['n_within_target']} of {p['n_materials']} materials** have a slope within "
            f"1.00 ± {TARGET:.2f}; pooled slope {p['pooled']['slope']:.3f}, "
            f"MAE {1000 * p['pooled']['mae']:.1f} meV/Å. "
            f"Not done yet: {', '.join(p.get('remaining') or []) or 'none'}.")


def parity_data(material_id: str, dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """VASP and GPAW (residual subtracted) force components of one material, flattened."""
    d = np.load(validation_dir(dir) / f"{material_id}.npz")
    return np.asarray(d["vasp_forces"], float).ravel(), np.asarray(d["gpaw_forces"], float).ravel()


def panel_title(row, record: dict | None, dir: str | Path | None = None) -> str:
    how = residual_how(record)
    npz = validation_dir(dir) / f"{row.material_id}.npz"
    if how == "computed" and npz.is_file():
        res = np.asarray(np.load(npz)["gpaw_residual_forces"], float)
        resid = f"residual computed (max |F| {np.linalg.norm(res, axis=1).max():.2f} eV/Å)"
    elif how == ZERO_BY_SYMMETRY:
        resid = "residual zero by symmetry"
    else:
        resid = f"residual {how}"
    return (f"{row.formula} ({row.material_id})\nslope {row.slope:.3f}, MAE {1000 * row.mae:.2f} meV/Å\n"
            f"{resid}")


def fig_parity(dir: str | Path | None = None, max_cols: int = MAX_COLS):
    """Per-material parity panels (VASP-PBEsol x, GPAW-PBEsol minus residual y), at most
    ``max_cols`` per row; each title says whether GPAW's residual forces were computed or
    vanish by site symmetry. None when there is no summary."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    summary = load_summary(dir)
    if summary.empty:
        return None
    n = len(summary)
    ncols = min(n, max_cols)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.9 * nrows), squeeze=False)
    flat = axes.ravel()
    for ax, r in zip(flat, summary.itertuples()):
        x, y = parity_data(r.material_id, dir)
        lim = 1.05 * float(max(np.abs(x).max(), np.abs(y).max()))
        ax.plot([-lim, lim], [-lim, lim], color="k", lw=0.8)
        ax.scatter(x, y, s=8, alpha=0.7)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.xaxis.set_major_locator(MaxNLocator(4, steps=[1, 2, 5, 10], symmetric=True))  # short labels that do not overlap
        ax.yaxis.set_major_locator(MaxNLocator(4, steps=[1, 2, 5, 10], symmetric=True))
        ax.set_title(panel_title(r, material_record(r.material_id, dir), dir), fontsize=9)
        ax.set_xlabel("VASP-PBEsol (eV/Å)")
        ax.set_ylabel("GPAW-PBEsol (eV/Å)")
    for ax in flat[n:]:
        fig.delaxes(ax)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------
# residual checks: GPAW's forces at VASP's equilibrium
# --------------------------------------------------------------------------------------

def _main_bond(bonds: dict) -> tuple[str, float, float]:
    """(bond "A-B", length, force along it) of the bond with the largest |force along bond|."""
    if not bonds:
        return "", float("nan"), float("nan")
    key = max(bonds, key=lambda k: abs(float(bonds[k]["force_along_bond_eV_A"])))
    return key, float(bonds[key]["length_A"]), float(bonds[key]["force_along_bond_eV_A"])


def residual_table(dir: str | Path | None = None):
    """``residual_checks.json`` as a table, one row per material / functional / setups: the
    largest residual force, the largest per element (``"O 0.31, Cl 0.05"``) and the bond with
    the largest force along it (``bond`` "A-B": atom A, nearest neighbour B; ``> 0``: A pushed
    away from B). An empty frame when the check has not been run."""
    import pandas as pd

    entries = _read_json(validation_dir(dir) / "residual_checks.json") or []
    rows = []
    for e in entries:
        bond, length, along = _main_bond(e.get("shortest_bond") or {})
        per = e.get("max_residual_per_element") or {}
        rows.append({"material_id": e["material_id"], "formula": e.get("formula"), "xc": e["xc"],
                     "setups": e["setups"], "ecut_eV": e.get("ecut_eV"),
                     "kpts": "x".join(map(str, e.get("kpts") or [])),
                     "max_residual_eV_A": float(e["max_residual_eV_A"]),
                     "max_residual_per_element": ", ".join(
                         f"{el} {v:.2f}" for el, v in sorted(per.items(), key=lambda kv: -kv[1])),
                     "bond": bond, "bond_length_A": length, "force_along_bond_eV_A": along,
                     "cpu_time_s": e.get("cpu_time_s")})
    cols = ["material_id", "formula", "xc", "setups", "ecut_eV", "kpts", "max_residual_eV_A",
            "max_residual_per_element", "bond", "bond_length_A", "force_along_bond_eV_A", "cpu_time_s"]
    return pd.DataFrame(rows, columns=cols)


def _variant(xc: str, setups: str) -> str:
    """``default`` setups are what :func:`softening_lib.dft.label` uses: GPAW's own for PBE,
    generated ones for any other functional; ``pbe``: GPAW's PBE setups run with ``xc``."""
    if setups == "pbe" or (setups == "default" and xc == "PBE"):
        return f"GPAW-{xc} with GPAW's PBE setups"
    if setups == "default":
        return f"GPAW-{xc} with generated {xc} setups"
    return f"GPAW-{xc} with {setups} setups"


def residual_note(dir: str | Path | None = None) -> str:
    """Markdown: what the residual checks found, per material, with the displaced-cell slope
    beside it and the slopes of the cells whose forces vanish by site symmetry. Every number
    comes from the files; absent files give a sentence saying the check has not been run."""
    table = residual_table(dir)
    summary = load_summary(dir)
    slopes = ({r.material_id: float(r.slope) for r in summary.itertuples()} if not summary.empty else {})
    lines = []
    if table.empty:
        lines.append("**The residual check has not been run yet** (`python scripts/gpaw_validate.py "
                     "--residual-check PBEsol default --materials ...` writes `residual_checks.json`).")
    else:
        for mid, g in table.groupby("material_id", sort=False):
            # the validation's own variant (PBEsol, default setups) first, then other setups, then other xc
            g = g.assign(_rank=[(r.xc != FUNCTIONAL, r.setups != "default") for r in g.itertuples()])
            g = g.sort_values("_rank", kind="stable")
            ref = g.iloc[0]
            parts = ", ".join(f"{r.max_residual_eV_A:.2f} eV/Å ({_variant(r.xc, r.setups)})" for r in g.itertuples())
            text = f"- **{ref.formula}** ({mid}): largest GPAW force at VASP's equilibrium {parts}."
            if ref.bond:
                a, b = ref.bond.split("-", 1)
                f = ref.force_along_bond_eV_A
                if f > 0:
                    how = (f"pushes {a} away from {b} with {f:.2f} eV/Å along the {ref.bond} bond "
                           f"({ref.bond_length_A:.3f} Å in VASP's structure): GPAW's bond is longer than VASP's, "
                           f"so at VASP's length it is compressed")
                else:
                    how = (f"pulls {a} towards {b} with {abs(f):.2f} eV/Å along the {ref.bond} bond "
                           f"({ref.bond_length_A:.3f} Å in VASP's structure): GPAW's bond is shorter than VASP's, "
                           f"so at VASP's length it is stretched")
                text += f" {_variant(ref.xc, ref.setups)} {how}."
            if mid in slopes:
                s = slopes[mid]
                inside = "inside" if abs(s - 1) <= TARGET else "outside"
                text += f" Displaced-cell slope {s:.3f} ({inside} 1.00 ± {TARGET:.2f})."
            lines.append(text)
    clean = []
    for mid, s in slopes.items():
        if residual_how(material_record(mid, dir)) == ZERO_BY_SYMMETRY:
            f = summary.loc[summary.material_id == mid, "formula"].iloc[0]
            clean.append(f"{f} ({mid}) {s:.3f}")
    if clean:
        lines.append(f"\nCells whose forces vanish by site symmetry (the clean comparison), slopes: {'; '.join(clean)}.")
    elif slopes:
        lines.append("\nNo cell whose forces vanish by site symmetry has finished yet.")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# convergence, MatPES cross-check, campaign progress
# --------------------------------------------------------------------------------------

def convergence_table(dir: str | Path | None = None):
    """``gpaw_convergence/summary.csv``: campaign settings against denser ones; empty if absent."""
    import pandas as pd

    path = convergence_dir(dir) / "summary.csv"
    return pd.read_csv(path) if path.is_file() else pd.DataFrame()


#: the denser k-grid of the campaign-frame check (``scripts/gpaw_convergence.py``'s variant)
KPT_CHECK_VARIANT = "kpt_density_3.5"


def kpoint_check(dir: str | Path | None = None) -> dict[str, Any] | None:
    """How much the campaign's k-point density (2.0 per Å⁻¹) moves its force labels: over the
    compounds relabelled with :data:`KPT_CHECK_VARIANT`, the slope through the origin of dense
    against campaign forces (median, range, compounds) and the force MAE (median, largest).
    A model's softening scale against the dense labels is its campaign ``s`` divided by that
    slope. None when no compound has been checked."""
    table = convergence_table(dir)
    if table.empty:
        return None
    sub = table[table.variant == KPT_CHECK_VARIANT]
    if sub.empty:
        return None
    slope, mae = sub.slope_vs_campaign, sub.mae_vs_campaign_eV_A
    lo, hi = sub.loc[slope.idxmin()], sub.loc[slope.idxmax()]
    return {"n_compounds": int(len(sub)), "slope_median": float(slope.median()),
            "slope_min": float(slope.min()), "slope_max": float(slope.max()),
            "slope_min_formula": str(lo.formula), "slope_max_formula": str(hi.formula),
            "mae_median": float(mae.median()), "mae_max": float(mae.max())}


def kpoint_check_note(dir: str | Path | None = None) -> str:
    """The sentence of :func:`kpoint_check` for the book."""
    k = kpoint_check(dir)
    if k is None:
        return ("The campaign's labels have not been checked against a denser k-point grid "
                "(`python scripts/gpaw_convergence.py <wbm-id> --variants kpt_density_3.5`).")
    return (f"Relabelling two frames of {k['n_compounds']} campaign compounds with a denser k-point grid (3.5 instead "
            f"of 2.0 per Å⁻¹) moves the forces by a median MAE of {1000 * k['mae_median']:.0f} meV/Å "
            f"(largest {1000 * k['mae_max']:.0f}); the slope of dense against campaign forces is "
            f"{k['slope_median']:.3f} in the median and spans {k['slope_min']:.3f} ({k['slope_min_formula']}) to "
            f"{k['slope_max']:.3f} ({k['slope_max_formula']}). A softening scale measured against the campaign's "
            f"labels is therefore uncertain by about that factor (s against the denser labels = s / slope).")


def scan_table(dir: str | Path | None = None):
    """``gpaw_convergence/scan_summary.csv`` (``scripts/gpaw_convergence.py --scan``): the
    cutoff and k-point scans behind ``softening_lib.dft.DEFAULTS``; empty if absent."""
    import pandas as pd

    path = convergence_dir(dir) / "scan_summary.csv"
    return pd.read_csv(path) if path.is_file() else pd.DataFrame()


#: the settings the book uses, marked on the scan figure: (value, what)
SCAN_MARKS = {"ecut": ((520.0, "520 eV (default)"), (800.0, "800 eV (with O, F)")),
              "kpt_density": ((2.0, "2.0: WBM campaign"), (3.0, "3.0: dft.DEFAULTS"))}


SCAN_FLOOR = 1e-5  # eV/A: smaller force MAEs are drawn at this floor (log axis)


def fig_convergence_scan(dir: str | Path | None = None):
    """Force MAE against the scan's reference (log scale) over the cutoff (left, at the
    campaign's k-point density) and the k-point density (right, at each material's default
    cutoff), one line per material, the book's settings marked. None when not run."""
    import matplotlib.pyplot as plt

    from .. import plots

    table = scan_table(dir)
    if table.empty:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    palette = [c for name, c in plots.MODEL_COLORS.items() if name != "dft"]
    colors = dict(zip(sorted(table.material.unique()), palette))
    for ax, (series, xlabel) in zip(axes, (("ecut", "plane-wave cutoff (eV)"),
                                           ("kpt_density", "k-point density (per Å⁻¹)"))):
        sub = table[(table.series == series) & ~table.is_reference.astype(bool)]
        for material, g in sub.groupby("material"):
            g = g.sort_values(series)
            ref = table[(table.series == series) & (table.material == material) & table.is_reference.astype(bool)]
            ax.plot(g[series], 1000 * g.force_mae.clip(lower=SCAN_FLOOR), "o-", color=colors[material],
                    label=f"{material} (ref. {ref[series].iloc[0]:g})" if len(ref) else material)
        for i, (value, what) in enumerate(SCAN_MARKS[series]):
            ax.axvline(value, color="0.4", ls=("--", ":")[i], lw=1, label=what)
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.legend(fontsize=8, loc="upper right")
    top = 1000 * float(table.force_mae.max())
    axes[0].set_ylim(500 * SCAN_FLOOR, 30 * max(top, 1000 * SCAN_FLOOR))  # room for the legends
    axes[0].set_ylabel(f"force MAE vs reference (meV/Å)\n(floor {1000 * SCAN_FLOOR:g})")
    fig.tight_layout()
    return fig


def scan_note(dir: str | Path | None = None) -> str:
    """One sentence per setting the book uses: the force MAE it leaves against the scan's
    reference, per material (largest first)."""
    table = scan_table(dir)
    if table.empty:
        return "The cutoff / k-point scan has not been run (`python scripts/gpaw_convergence.py --scan`)."
    # each material's default cutoff: the one its k-point series ran at (520 eV; 800 eV with O, F)
    default_ecut = table[table.series == "kpt_density"].groupby("material").ecut.first()
    parts = []
    for series, value, what in (("kpt_density", 2.0, "the campaign's k-point density 2.0 per Å⁻¹"),
                                ("kpt_density", 3.0, "the library default 3.0 per Å⁻¹"),
                                ("ecut", 520.0, "520 eV (the default)"), ("ecut", 800.0, "800 eV (with O or F)")):
        sub = table[(table.series == series) & (table[series] == value)].sort_values("force_mae", ascending=False)
        if series == "ecut":  # scored only where it is the material's default
            sub = sub[sub.material.map(default_ecut) == value]
        if len(sub):
            vals = ", ".join(f"{r.material} {1000 * r.force_mae:.1f} (max {1000 * r.force_max_dev:.0f})"
                             for r in sub.itertuples())
            parts.append(f"* **{what}**: force MAE (largest deviation) against the reference, meV/Å: {vals}.")
    # stress at each material's own default cutoff, against the largest cutoff
    ecut = table[table.series == "ecut"]
    at_default = ecut[ecut.ecut == ecut.material.map(default_ecut)].sort_values("stress_max_dev_GPa", ascending=False)
    if len(at_default):
        vals = ", ".join(f"{r.material} {r.stress_max_dev_GPa:.2f}" for r in at_default.itertuples())
        parts.append(f"* **stress** at the default cutoff, largest deviation from the highest cutoff, GPa: {vals}.")
    return "\n".join(parts)


def matpes_crosscheck(models_: Sequence[str] = CROSSCHECK_MODELS, n: int | None = None, frames=None):
    """Softening scale of each runnable model on the campaign's GPAW-PBE frames
    (``wbm-he-gpaw``), one row per material (the first ``n``); models that cannot run here are
    left out, a material with elements a model does not cover gets NaN. ``frames``: labelled
    frames to use instead of the campaign's (tests)."""
    import pandas as pd

    from .. import datasets, metrics, predict
    from .. import models as registry

    check_models, _skipped = registry.runnable(list(models_))
    if frames is None:
        try:
            frames = datasets.load("wbm-he-gpaw")
        except datasets.DatasetError:
            frames = []
    by_id: dict[str, list] = {}
    for a in frames:
        by_id.setdefault(a.info["material_id"], []).append(a)
    rows = []
    for mid, frs in sorted(by_id.items())[:n]:
        dft = [a.get_forces() for a in frs]
        row = {"material_id": mid, "formula": frs[0].info.get("formula"), "frames": len(frs)}
        for m in check_models:
            try:
                row[f"s {m}"] = metrics.softening_scale(dft, predict.predict(frs, m)["forces"])
            except registry.UnsupportedElementError:
                row[f"s {m}"] = float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def _progress(dir: str | Path | None = None) -> dict | None:
    return _read_json(campaign_dir(dir) / "progress.json")


def campaign_table(dir: str | Path | None = None):
    """One row per compound the WBM campaign labelled (``progress.json``); empty if absent."""
    import pandas as pd

    prog = _progress(dir)
    if not prog:
        return pd.DataFrame()
    rows = [{"material_id": k, **{f: v.get(f) for f in CAMPAIGN_FIELDS}} for k, v in prog["compounds"].items()]
    return pd.DataFrame(rows)


def campaign_note(dir: str | Path | None = None) -> str:
    prog = _progress(dir)
    if not prog:
        return "The campaign has not written `progress.json` yet."
    return (f"{len(prog['compounds'])} compounds labelled; failures recorded: {len(prog.get('failures', []))}. "
            "Settings and selection rule: `data/reference/wbm_he_gpaw/PROVENANCE.md`.")


# --------------------------------------------------------------------------------------
# the task contract (softening_lib.task): cases / compute / reference
# --------------------------------------------------------------------------------------

TASK = "gpaw_validation"
CROSSCHECK_SIZES = {"smoke": 2, "default": 20, "full": None}


def cases(preset: str = "default", *, n: int | None = None) -> list[dict]:
    """The model side of the appendix: the MatPES cross-check, one case per campaign material
    (``wbm-he-gpaw``, the first ``n``: smoke 2, default 20, full all). The GPAW reference
    itself is built by the DFT queues (scripts/gpaw_*.py), not here."""
    from .. import datasets

    if preset not in CROSSCHECK_SIZES:
        raise ValueError(f"preset must be smoke, default or full, got {preset!r}")
    n = CROSSCHECK_SIZES[preset] if n is None else n
    try:
        frames = datasets.load("wbm-he-gpaw")
    except datasets.DatasetError as exc:
        return [{"id": "wbm-he-gpaw/*", "material_id": None, "unavailable": str(exc)}]
    ids = sorted({str(a.info["material_id"]) for a in frames})[:n]
    return [{"id": f"wbm-he-gpaw/{mid}", "material_id": mid} for mid in ids]


def compute(model: str, cases: Sequence[dict], *, calc=None, progress=None) -> list[dict]:
    """Per campaign material: the model's softening scale on its GPAW-PBE frames (single points,
    not cached, as :func:`matpes_crosscheck`)."""
    from .. import datasets, metrics, predict, task

    out, by_id = [], None
    for case in task.progress_iter(list(cases), progress, desc=f"gpaw validation {model}"):
        if case.get("material_id") is None:
            out.append(task.record(case["id"], model, "skipped", f"dataset not here: {case.get('unavailable', '')}"))
            continue
        if by_id is None:
            by_id = {}
            for a in datasets.load("wbm-he-gpaw"):
                by_id.setdefault(str(a.info["material_id"]), []).append(a)
        frs = by_id.get(case["material_id"], [])

        def one(frs=frs):
            pred = predict.predict(frs, model, calc=calc) if calc is not None else predict.predict(frs, model)
            return {"softening_scale": metrics.softening_scale([a.get_forces() for a in frs], pred["forces"]),
                    "frames": len(frs)}

        elements = {s for a in frs for s in a.get_chemical_symbols()}
        out.append(task.run_case(one, case["id"], model, elements=elements, finite=("softening_scale",)))
    return out


def reference(**_: Any):
    """GPAW against VASP (PhononDB PBEsol forces): the per-material validation summary."""
    return load_summary()
