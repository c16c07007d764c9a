"""Chapter 1: what a softened potential energy surface looks like, on a real 1-D cut.

One atom of a crystal is displaced along a fixed direction; along that coordinate we
compare the DFT energy and force with each model's. A softened model has a flatter energy
curve and smaller restoring forces: its curvature, and the slope of its forces against
DFT forces (the softening scale), are below 1.

The DFT reference scans are computed by this project with GPAW (``scripts/gpaw_primer.py``)
and committed under ``data/reference/primer/`` with their settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms
from ase.build import bulk

from .. import config, metrics, predict

REFERENCE_DIRS = ("primer",)  # its folder(s) under data/reference
REFERENCE_DIR = config.reference_dir() / REFERENCE_DIRS[0]

SYSTEMS = {
    # name: (builder, displaced atom, direction (cartesian, normalised later))
    "Si": (lambda: bulk("Si", "diamond", a=5.468), 1, (1.0, 1.0, 1.0)),
    "MgO": (lambda: bulk("MgO", "rocksalt", a=4.258), 1, (1.0, 0.0, 0.0)),
}


def scan_geometries(atoms: Atoms, index: int, direction: Sequence[float],
                    amplitudes: Sequence[float]) -> list[Atoms]:
    """Copies of ``atoms`` with atom ``index`` moved by each amplitude (Å) along ``direction``."""
    d = np.asarray(direction, dtype=float)
    d = d / np.linalg.norm(d)
    frames = []
    for i, amp in enumerate(amplitudes):
        a = atoms.copy()
        a.positions[index] += amp * d
        a.info.update(material_id="scan", frame_id=i, amplitude=float(amp), direction=d.tolist(),
                      displaced_atom=int(index))
        frames.append(a)
    return frames


def default_amplitudes(n: int = 17, max_amp: float = 0.6) -> np.ndarray:
    return np.linspace(-max_amp, max_amp, n)


def build_scan(system: str, n: int = 17, max_amp: float = 0.6) -> list[Atoms]:
    if system not in SYSTEMS:
        raise KeyError(f"unknown primer system {system!r}; known: {', '.join(SYSTEMS)}")
    builder, index, direction = SYSTEMS[system]
    return scan_geometries(builder(), index, direction, default_amplitudes(n, max_amp))


def reference_path(system: str) -> Path:
    return REFERENCE_DIR / f"{system}_scan.extxyz"


def load_reference(system: str) -> list[Atoms]:
    """The committed GPAW scan for ``system`` (labelled frames, settings in ``info``)."""
    from ase.io import read

    path = reference_path(system)
    if not path.is_file():
        raise FileNotFoundError(
            f"no DFT reference scan for {system!r} at {path}; compute it with "
            f"`python scripts/gpaw_primer.py {system}` (needs GPAW, see README)"
        )
    frames = read(path, index=":", format="extxyz")
    for i, a in enumerate(frames):
        a.info.setdefault("material_id", f"{system}-scan")
        a.info["frame_id"] = i
    return frames


def projected(frames: Sequence[Atoms], forces: Sequence[np.ndarray]) -> np.ndarray:
    """Force on the displaced atom projected on the displacement direction."""
    out = []
    for a, f in zip(frames, forces):
        d = np.asarray(a.info["direction"], dtype=float)
        out.append(float(np.dot(np.asarray(f)[int(a.info["displaced_atom"])], d)))
    return np.array(out)


def curvature(amplitudes: np.ndarray, energies: np.ndarray, window: float = 0.2) -> float:
    """Second derivative (eV/Å²) of a quadratic fit to E(x) for |x| <= window."""
    sel = np.abs(amplitudes) <= window + 1e-9
    if sel.sum() < 3:
        raise ValueError("need at least 3 scan points within the fit window")
    return float(2 * np.polyfit(amplitudes[sel], energies[sel], 2)[0])


def compare(reference: Sequence[Atoms], models: Sequence[str], progress: bool = False) -> dict:
    """Energies and projected forces along the scan, DFT and each model, plus summary numbers.

    Returns ``{"amplitude", "dft": {...}, "<model>": {"energy", "force", "s", "curvature_ratio"}}``;
    energies are relative to the undisplaced structure (amplitude 0) of the same method.
    """
    amps = np.array([a.info["amplitude"] for a in reference])
    i0 = int(np.argmin(np.abs(amps)))
    e_dft = np.array([a.get_potential_energy() for a in reference])
    f_dft = [a.get_forces() for a in reference]
    out: dict = {"amplitude": amps, "dft": {
        "energy": e_dft - e_dft[i0], "force": projected(reference, f_dft),
        "curvature": curvature(amps, e_dft - e_dft[i0])}}
    for model in models:
        pred = predict.predict([a.copy() for a in reference], model, progress=progress)
        e = np.asarray(pred["energy"]) - pred["energy"][i0]
        out[model] = {
            "energy": e, "force": projected(reference, pred["forces"]),
            "s": metrics.softening_scale(f_dft, pred["forces"]),
            "curvature": curvature(amps, e),
        }
        out[model]["curvature_ratio"] = out[model]["curvature"] / out["dft"]["curvature"]
    return out


def figure_pes(result: dict, system: str):
    """Fig. 1: energy and restoring force along the scan, DFT solid, each model dashed."""
    import matplotlib.pyplot as plt

    from .. import plots

    amps = result["amplitude"]
    fig, (ax_e, ax_f) = plt.subplots(1, 2, figsize=(10, 4))
    ax_e.plot(amps, result["dft"]["energy"], "o-", color="k", lw=2, ms=4, label="DFT (GPAW-PBE)")
    ax_f.plot(amps, result["dft"]["force"], "o-", color="k", lw=2, ms=4, label="DFT (GPAW-PBE)")
    for model, res in result.items():
        if model in ("amplitude", "dft"):
            continue
        lab = f"{plots.label(model)} (s = {res['s']:.2f})"
        ax_e.plot(amps, res["energy"], "--", color=plots.color(model), lw=1.6, label=lab)
        ax_f.plot(amps, res["force"], "--", color=plots.color(model), lw=1.6, label=lab)
    ax_e.set_xlabel("displacement of one atom (Å)")
    ax_e.set_ylabel("energy relative to the crystal (eV)")
    ax_f.set_xlabel("displacement of one atom (Å)")
    ax_f.set_ylabel("force along the displacement (eV/Å)")
    ax_f.axhline(0, color="0.6", lw=0.6)
    ax_e.set_title(f"{system}: energy along the cut", fontsize=11)
    ax_f.set_title("restoring force", fontsize=11)
    ax_e.legend(fontsize=8, loc="upper center")
    fig.tight_layout()
    return fig


def summary_table(result: dict):
    import pandas as pd

    from .. import plots

    rows = []
    for model, res in result.items():
        if model in ("amplitude", "dft"):
            continue
        rows.append({"model": plots.label(model), "softening scale s": round(res["s"], 3),
                     "curvature ratio (model / DFT)": round(res["curvature_ratio"], 3),
                     "energy at largest displacement (model / DFT)":
                         round(float(res["energy"][-1] / result["dft"]["energy"][-1]), 3)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------
# the task contract (softening_lib.task): cases / compute / reference
# --------------------------------------------------------------------------------------

TASK = "softening_primer"


def cases(preset: str = "default", *, system: str = "Si") -> list[dict]:
    """One case: the GPAW-PBE scan of ``system`` (smoke: every other point)."""
    if preset not in ("smoke", "default", "full"):
        raise ValueError(f"preset must be smoke, default or full, got {preset!r}")
    return [{"id": f"{system}_scan", "system": system, "every": 2 if preset == "smoke" else 1}]


def compute(model: str, cases: Sequence[dict], *, calc=None, progress=None) -> list[dict]:
    """Per scan: the softening scale and curvature ratio of ``model`` (17 single points: not
    cached, recomputed each time in seconds)."""
    from .. import task

    def one(case: dict) -> dict:
        ref = load_reference(case["system"])[:: case.get("every", 1)]
        if calc is None:
            res = compare(ref, [model])[model]
        else:
            amps = np.array([a.info["amplitude"] for a in ref])
            pred = predict.predict([a.copy() for a in ref], model, calc=calc)
            i0 = int(np.argmin(np.abs(amps)))
            e_dft = np.array([a.get_potential_energy() for a in ref])
            e = np.asarray(pred["energy"]) - pred["energy"][i0]
            res = {"s": metrics.softening_scale([a.get_forces() for a in ref], pred["forces"]),
                   "curvature_ratio": curvature(amps, e) / curvature(amps, e_dft - e_dft[i0])}
        return {"softening_scale": float(res["s"]), "curvature_ratio": float(res["curvature_ratio"])}

    out = []
    for case in task.progress_iter(list(cases), progress, desc=f"primer {model}"):
        elements = set(SYSTEMS[case["system"]][0]().get_chemical_symbols()) if case["system"] in SYSTEMS else None
        out.append(task.run_case(one, case["id"], model, case, elements=elements))
    return out


def reference(system: str = "Si", **_) -> list[Atoms]:
    """The GPAW-PBE scan (``data/reference/primer/<system>_scan.extxyz``)."""
    return load_reference(system)
