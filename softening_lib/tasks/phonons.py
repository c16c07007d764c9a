"""Chapter 6 (paper Fig. 4): harmonic phonons of universal MLIPs against DFT force sets.

The DFT side and the model side go through the *same* phonopy pipeline:

* DFT: the reference's own displaced supercells and DFT forces (PhononDB-PBEsol FORCE_SETS,
  or the atomate2/VASP-PBE ``phonopy.yaml`` of the JaGeo 68 set) -> force constants.
* model: relax the DFT unit cell with the model (positions and cell: ASE
  ``FrechetCellFilter`` + FIRE, ``FixSymmetry`` so the space group and hence the DFT
  displacement set stay valid), apply the DFT reference's displacements (same supercell
  matrix, same atoms, same Cartesian displacement vectors, hence the same amplitude) to the
  relaxed supercell, evaluate all displaced supercells in **one batched call**
  (:func:`softening_lib.predict.predict`) -> force constants.

Both then get the same band path (seekpath on the DFT primitive cell, q-points converted
to phonopy's primitive basis), the same mesh and the same DOS settings. No NAC.
Imaginary modes are kept and reported (``min_freq_thz`` < 0), never dropped.

Beyond the paper, each material also gets the *softening scale measured on the DFT
displacement forces*: the model's forces at the DFT displaced geometries (no relaxation)
against the DFT forces, through the origin (:func:`softening_lib.metrics.softening_scale`).
The primary number (``softening_scale_dft_disp``) compares the *harmonic* forces -Phi u that
the two sets of force constants (DFT, and model at the DFT geometry) give for the DFT
displacements: phonopy's +/- displacement pairs cancel residual forces, which matter where
the DFT structure is not exactly at its minimum (free Wyckoff parameters, ~0.01 eV/Å in
PhononDB). The raw-force versions are kept too (``..._raw``, ``..._resid``). A harmonic PES
scaled by ``s`` has frequencies scaled by ``sqrt(s)``; the model's frequencies at the DFT
geometry (``max_freq_at_dft_geometry_thz``) separate this from the effect of relaxing to a
different volume.

Results are cached per (model, dataset, material) in ``ResultStore("phonons")``; band and
DOS arrays only for the showcase materials (CsF, mp-1784, by default).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, asdict
from typing import Any, Iterable, Sequence

import numpy as np
from ase import Atoms

from .. import cache, datasets, metrics, models, predict
from ..phonopy_io import atoms_to_phonopy, harmonic_forces, phonopy_to_atoms  # harmonic_forces: one implementation, in core

log = logging.getLogger(__name__)


TASK = "phonons"
PBESOL = "phonondb-pbesol"
PBE68 = "jageo-pbe-68"
PBE103 = "phonondb-pbe-103"
SHOWCASE = ("mp-1784",)  # CsF, the paper's Fig. 4a
IMAGINARY_THZ = -0.1  # a mode below this counts as imaginary (acoustic noise sits above)
RECORD_VERSION = 2  # model records older than this are recomputed (fields added)
JAGEO_MIN_MATERIALS = 20  # a model's JaGeo VASP-PBE ratios are drawn and quoted from this many materials on


@dataclass(frozen=True)
class PhononSettings:
    """Everything that changes a phonon result (part of every cache record)."""

    fmax: float = 0.005  # eV/Å, relaxation criterion on atoms and (filtered) cell
    max_steps: int = 400
    optimizer: str = "FIRE"
    cell_filter: str = "FrechetCellFilter"
    fix_symmetry: bool = True
    mesh: float = 40.0  # phonopy length-based mesh (Å); same for DFT and models
    band_npoints: int = 51  # q-points per band segment
    symmetrize_fc: bool = True  # phonopy translational/permutation symmetrisation, both sides
    batch_size: int = 16

    def key(self) -> str:
        return cache.key_of(asdict(self))


DEFAULT = PhononSettings()


# --------------------------------------------------------------------------------------
# material lists
# --------------------------------------------------------------------------------------

def pbesol_index():
    """The PhononDB index restricted to the mirrored subset, with the supercell size."""
    import pandas as pd

    table = pd.read_csv(datasets.locate(PBESOL, "index_all_10034.csv.gz"))
    table = table[table["included_here"] == 1].copy()
    det = [round(abs(np.linalg.det(np.array(s.split(), float).reshape(3, 3)))) for s in table["supercell_dim"]]
    table["n_atoms_supercell"] = table["n_atoms_unitcell"].to_numpy() * np.array(det)
    table["_num"] = table["mp_id"].str.extract(r"(\d+)")[0].astype(int)
    return table.sort_values(["n_atoms_supercell", "_num"]).drop(columns="_num").reset_index(drop=True)


def pbe103_ids_in_pbesol() -> list[str]:
    q = datasets.load(PBE103)
    idx = set(pbesol_index()["mp_id"])
    return sorted({m for m in q["material_id"].unique() if m in idx}, key=lambda m: (len(m), m))


def pbe_overlap_ids() -> list[str]:
    """PhononDB-PBEsol materials that also have a PBE reference (PBE-103 or JaGeo 68)."""
    idx = set(pbesol_index()["mp_id"])
    return pbe103_ids_in_pbesol() + [m for m in jageo_ids() if m in idx and m not in pbe103_ids_in_pbesol()]


def pbesol_selection(n: int = 240) -> list[str]:
    """The deterministic PBEsol material list of Fig. 4b.

    CsF (mp-1784) first, then every PhononDB material of the PBE-103 set (so the PBE
    comparison has model numbers), then the materials with the smallest supercells
    (ties broken by the numeric MP id) until ``n`` materials. The mirror subset already
    excludes the MP +U elements and the f-block; PhononDB PBEsol is non-spin-polarised.
    """
    out: list[str] = []
    for mp_id in list(SHOWCASE) + pbe103_ids_in_pbesol() + list(pbesol_index()["mp_id"]):
        if mp_id not in out:
            out.append(mp_id)
        if len(out) >= n:
            break
    return out


def jageo_ids(cheap_first: bool = False) -> list[str]:
    """The 68 JaGeo ids (index order), or ordered by the cost of a model run: supercell atoms x
    (2 x displacements + 1) structures, from the cached DFT records (unknown ones last)."""
    import pandas as pd

    ids = list(pd.read_csv(datasets.locate(PBE68, "index.csv"))["mp_id"])
    if not cheap_first:
        return ids

    def cost(mp_id: str) -> float:
        rec = cached("dft", PBE68, mp_id)
        if rec is None or rec.get("status") != "ok":
            return float("inf")
        return rec["n_atoms_supercell"] * (2 * rec["n_displacements"] + 1)

    return sorted(ids, key=lambda m: (cost(m), m))


def jageo_properties():
    """JaGeo's own table (MACE-MP-0b3 vs PBE): ``benchmark_*`` columns are the DFT-PBE values."""
    import pandas as pd

    return pd.read_csv(datasets.locate(PBE68, "phonon_properties_mace-mp-0b3_vs_pbe.csv")).rename(
        columns={"material": "material_id"})


def jageo_check(settings: PhononSettings | None = None):
    """Our DFT max frequency (from the cached JaGeo force-set records) vs the set's own
    ``benchmark_max_frequency`` column: one row per material, relative differences of the
    band-path max, the mesh max and their maximum."""
    import pandas as pd

    settings = settings or DEFAULT
    t = cached_table(PBE68, None, [], settings)
    props = jageo_properties().set_index("material_id")
    t = t[t["model"] == "dft"].set_index("material_id") if not t.empty else t
    rows = []
    for mp_id in jageo_ids():
        bench = float(props.loc[mp_id, "benchmark_max_frequency"])
        if mp_id not in t.index or t.loc[mp_id, "status"] != "ok":
            rows.append({"material_id": mp_id, "status": t.loc[mp_id, "status"] if mp_id in t.index else "missing",
                         "benchmark_max": bench})
            continue
        r = t.loc[mp_id]
        rows.append({"material_id": mp_id, "formula": r["formula"], "status": "ok", "benchmark_max": bench,
                     "band_max": r["max_freq_band_thz"], "mesh_max": r["max_freq_mesh_thz"],
                     "rel_diff_band": r["max_freq_band_thz"] / bench - 1,
                     "rel_diff_mesh": r["max_freq_mesh_thz"] / bench - 1,
                     "rel_diff_max": r["max_freq_thz"] / bench - 1,
                     "benchmark_min": float(props.loc[mp_id, "benchmark_min_frequency"]),
                     "min": r["min_freq_thz"]})
    return pd.DataFrame(rows)


def jageo_check_summary(table) -> list[str]:
    lines = []
    if "rel_diff_band" not in table:
        return ["no JaGeo DFT records cached yet"]
    ok = table[table["status"] == "ok"]
    for col in ("rel_diff_band", "rel_diff_mesh", "rel_diff_max"):
        bad = ok[ok[col].abs() > 0.01]
        lines.append(f"{col}: {len(ok) - len(bad)}/{len(ok)} within 1 %; outside: "
                     + (", ".join(f"{m} ({d:+.2%})" for m, d in zip(bad["material_id"], bad[col])) or "none"))
    nc = table[table["status"] != "ok"]
    lines.append("not comparable: " + (", ".join(f"{m} ({s})" for m, s in zip(nc["material_id"], nc["status"])) or "none"))
    return lines


def pbe103_max_frequency():
    """DFT-PBE maximum frequency (THz) of the 103 PhononDB-PBE compounds (quantile level 1)."""
    q = datasets.load(PBE103)
    top = q[np.isclose(q["quantile_level"], 1.0)]
    return top[["material_id", "formula", "freq_dft_THz"]].rename(columns={"freq_dft_THz": "dft_max_freq_thz"})


# --------------------------------------------------------------------------------------
# phonopy helpers
# --------------------------------------------------------------------------------------

def band_path(primitive, npoints: int = DEFAULT.band_npoints) -> dict:
    """A seekpath band path for phonopy's ``primitive`` cell, in *its* reciprocal basis.

    seekpath returns coordinates in its standardised primitive cell, which may be a
    different (rotated / re-chosen) basis than phonopy's primitive; the q-points are
    converted through Cartesian space: q_p = q_std · inv(L_std)^T · R · L_p^T.
    """
    import seekpath

    lat = np.asarray(primitive.cell, dtype=float)
    res = seekpath.get_path((lat, primitive.scaled_positions, primitive.numbers), with_time_reversal=True)
    l_std = np.asarray(res["primitive_lattice"], dtype=float)
    rot = np.asarray(res["rotation_matrix"], dtype=float)
    to_prim = np.linalg.inv(l_std).T @ rot @ lat.T
    coords = {k: np.asarray(v, float) @ to_prim for k, v in res["point_coords"].items()}
    segments, labels, connections = [], [], []
    for i, (a, b) in enumerate(res["path"]):
        qa, qb = coords[a], coords[b]
        segments.append(np.array([qa + (qb - qa) * t for t in np.linspace(0, 1, npoints)]))
        nxt = res["path"][i + 1][0] if i + 1 < len(res["path"]) else None
        connections.append(nxt == b)
    # phonopy label convention: one label per segment start, plus an end label when not connected
    for i, (a, b) in enumerate(res["path"]):
        if i == 0 or not connections[i - 1]:
            labels.append(a)
        labels.append(b)
    labels = [_pretty(x) for x in labels]
    ticks = [_pretty(res["path"][0][0])]
    for k in range(1, len(res["path"]) + 1):
        end = _pretty(res["path"][k - 1][1])
        ticks.append(end if k == len(res["path"]) or connections[k - 1] else f"{end}|{_pretty(res['path'][k][0])}")
    return {"segments": segments, "labels": labels, "connections": connections, "tick_labels": ticks,
            "spacegroup": res["spacegroup_international"], "points": {k: v.tolist() for k, v in coords.items()},
            "path": [list(p) for p in res["path"]]}


def _pretty(name: str) -> str:
    if name == "GAMMA":
        return "Γ"
    return name.replace("_", "")


def analyse(ph, path: dict | None, settings: PhononSettings = DEFAULT, with_arrays: bool = False) -> dict:
    """Frequencies of a phonopy object with force constants: mesh, band path, DOS."""
    ph.run_mesh(settings.mesh, with_eigenvectors=False, is_gamma_center=True)
    mesh = ph.get_mesh_dict()
    freqs = np.asarray(mesh["frequencies"])
    out: dict[str, Any] = {
        "max_freq_mesh_thz": float(freqs.max()), "min_freq_mesh_thz": float(freqs.min()),
        "mesh_numbers": [int(x) for x in ph.mesh_numbers],
        "mean_freq_mesh_thz": float(np.average(freqs.mean(axis=1), weights=mesh["weights"])),
    }
    arrays: dict[str, np.ndarray] = {}
    if path is not None:
        ph.run_band_structure(path["segments"], path_connections=path["connections"], labels=path["labels"],
                              with_eigenvectors=False)
        band = ph.get_band_structure_dict()
        bf = np.concatenate(band["frequencies"])
        out["max_freq_band_thz"] = float(bf.max())
        out["min_freq_band_thz"] = float(bf.min())
        if with_arrays:
            arrays["band_distances"] = np.stack(band["distances"])
            arrays["band_frequencies"] = np.stack(band["frequencies"])
    out["max_freq_thz"] = max(out["max_freq_mesh_thz"], out.get("max_freq_band_thz", -np.inf))
    out["min_freq_thz"] = min(out["min_freq_mesh_thz"], out.get("min_freq_band_thz", np.inf))
    out["has_imaginary"] = bool(out["min_freq_thz"] < IMAGINARY_THZ)
    if with_arrays:
        ph.run_total_dos()
        dos = ph.get_total_dos_dict()
        arrays["dos_frequencies"] = np.asarray(dos["frequency_points"])
        arrays["dos"] = np.asarray(dos["total_dos"])
    out["_arrays"] = arrays
    return out


def _finish_fc(ph, settings: PhononSettings) -> None:
    ph.produce_force_constants()
    if settings.symmetrize_fc:
        ph.symmetrize_force_constants()


def _displacement_amplitudes(dataset: dict) -> list[float]:
    return [float(np.linalg.norm(d["displacement"])) for d in dataset["first_atoms"]]


def _spacegroup(atoms: Atoms, symprec: float = 1e-5) -> str:
    import spglib

    cell = (atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers)
    return str(spglib.get_spacegroup(cell, symprec=symprec))


# --------------------------------------------------------------------------------------
# DFT side
# --------------------------------------------------------------------------------------

def dft_phonons(ref: datasets.PhononReference, settings: PhononSettings = DEFAULT,
                with_arrays: bool = False) -> tuple[dict, dict]:
    """(record, arrays) of the DFT force set run through phonopy (no NAC)."""
    t0, c0 = time.time(), time.process_time()
    ph = ref.phonopy(with_forces=True)
    _finish_fc(ph, settings)
    path = band_path(ph.primitive, settings.band_npoints)
    res = analyse(ph, path, settings, with_arrays=with_arrays)
    arrays = res.pop("_arrays")
    amps = _displacement_amplitudes(ref.displacement_dataset)
    rec = {
        "material_id": ref.material_id, "dataset": ref.dataset, "model": "dft", "formula": ref.formula,
        "functional": ref.functional, "status": "ok", **res,
        "n_displacements": len(amps), "displacement_amplitude": float(np.mean(amps)),
        "n_atoms_unitcell": len(ref.unitcell), "n_atoms_supercell": int(ref.displacement_dataset["natom"]),
        "supercell_matrix": np.asarray(ref.supercell_matrix).tolist(),
        "spacegroup": path["spacegroup"], "band_ticks": path["tick_labels"],
        "volume_per_atom": float(ref.unitcell.get_volume() / len(ref.unitcell)),
        "wall_s": round(time.time() - t0, 3), "cpu_s": round(time.process_time() - c0, 3),
        "settings_key": settings.key(),
    }
    return rec, arrays


# --------------------------------------------------------------------------------------
# model side
# --------------------------------------------------------------------------------------

def relax(atoms: Atoms, calc, settings: PhononSettings = DEFAULT) -> tuple[Atoms, dict]:
    """Relax positions and cell with ``calc``; returns (relaxed copy, info)."""
    from ase import optimize
    from ase.constraints import FixSymmetry
    from ase.filters import FrechetCellFilter

    work = atoms.copy()
    work.calc = calc
    if settings.fix_symmetry:
        work.set_constraint(FixSymmetry(work))
    filt = FrechetCellFilter(work)
    opt_cls = getattr(optimize, settings.optimizer)
    opt = opt_cls(filt, logfile=None)
    t0 = time.time()
    converged = bool(opt.run(fmax=settings.fmax, steps=settings.max_steps))
    gen_forces = filt.get_forces()
    info = {
        "optimizer": settings.optimizer, "filter": settings.cell_filter,
        "fix_symmetry": settings.fix_symmetry, "fmax_target": settings.fmax,
        "fmax_reached": float(np.sqrt((gen_forces ** 2).sum(axis=1)).max()),
        "max_atomic_force": float(np.linalg.norm(work.get_forces(), axis=1).max()),
        "max_stress_eV_A3": float(np.abs(work.get_stress()).max()),
        "steps": int(opt.nsteps), "converged": converged, "relax_wall_s": round(time.time() - t0, 3),
        "volume_change": float(work.get_volume() / atoms.get_volume() - 1.0),
    }
    out = work.copy()
    out.set_constraint()
    out.calc = None
    return out, info


CHGNET_ANGLE_BUDGET = 40_000  # bond-graph entries per CHGNet batch (~3 GB peak on CPU)


def _batch_size(frames: Sequence[Atoms], calc, settings: PhononSettings) -> int:
    """CHGNet's memory grows with its bond (angle) graph, not with the atom count: a 128-atom
    BeO supercell needs ~3 GB, a 128-atom ZnSe one a tenth of that. Cap the batch so that one
    batch holds about :data:`CHGNET_ANGLE_BUDGET` angles (at least one structure)."""
    if type(calc).__name__ != "CHGNetCalculator" or not frames:
        return settings.batch_size
    from pymatgen.io.ase import AseAtomsAdaptor

    graph = calc.model.graph_converter(AseAtomsAdaptor.get_structure(frames[0]))
    per = max(1, len(graph.bond_graph))
    return int(max(1, min(settings.batch_size, CHGNET_ANGLE_BUDGET // per)))


def _resolve_calc(model: str, calc=None):
    return calc if calc is not None else predict.calculator(model)


def model_phonons(ref: datasets.PhononReference, model: str, calc=None, settings: PhononSettings = DEFAULT,
                  with_arrays: bool = False, dft_path: dict | None = None) -> tuple[dict, dict]:
    """(record, arrays) of ``model``'s phonons for the reference's material.

    ``calc`` overrides the registry calculator (e.g. ``ScaledCalculator(EMT(), c)``).
    Raises :class:`~softening_lib.models.UnsupportedElementError` for uncovered elements.
    """
    from phonopy import Phonopy

    if calc is None:
        models.check_elements(model, set(ref.unitcell.get_chemical_symbols()))
    t0, c0 = time.time(), time.process_time()
    ase_calc = _resolve_calc(model, calc)
    relaxed, rinfo = relax(ref.unitcell, ase_calc, settings)
    # the DFT displacement set (same atoms, same Cartesian vectors -> same amplitude)
    dft_ph = ref.phonopy(with_forces=False)
    ph = Phonopy(atoms_to_phonopy(relaxed), supercell_matrix=ref.supercell_matrix,
                 primitive_matrix=ref.primitive_matrix)
    ph.dataset = {"natom": ref.displacement_dataset["natom"],
                  "first_atoms": [{"number": d["number"], "displacement": np.asarray(d["displacement"])}
                                  for d in ref.displacement_dataset["first_atoms"]]}
    displaced = [phonopy_to_atoms(c) for c in ph.supercells_with_displacements]
    # the DFT geometries too (softening scale on the DFT displacement forces), same batch
    dft_frames = ref.frames()
    dft_perfect = phonopy_to_atoms(dft_ph.supercell)
    batch = displaced + [a.copy() for a in dft_frames] + [dft_perfect]
    t1 = time.time()
    out = predict.predict(batch, model, batch_size=_batch_size(batch, ase_calc, settings), calc=calc,
                          with_stress=False)
    predict_wall = time.time() - t1
    n = len(displaced)
    forces = out["forces"][:n]
    model_on_dft = out["forces"][n:2 * n]
    residual = out["forces"][-1]
    ph.forces = np.array(forces)
    _finish_fc(ph, settings)
    path = dft_path if dft_path is not None else band_path(dft_ph.primitive, settings.band_npoints)
    res = analyse(ph, path, settings, with_arrays=with_arrays)
    arrays = res.pop("_arrays")
    dft_forces = [a.get_forces() for a in dft_frames]
    s_raw = metrics.softening_scale(dft_forces, model_on_dft)
    s_resid = metrics.softening_scale(dft_forces, [f - residual for f in model_on_dft])
    # the model's harmonic PES at the DFT geometry: force constants from the model forces on
    # the DFT displaced supercells (the +/- pairs phonopy uses cancel residual forces of both
    # DFT and model, which raw single-displacement forces do not: PhononDB structures with
    # free Wyckoff parameters carry DFT residual forces of ~0.01 eV/Å)
    fixed = ref.phonopy(with_forces=False)
    fixed.forces = np.array([f - residual for f in model_on_dft])
    _finish_fc(fixed, settings)
    dft_fc = ref.phonopy(with_forces=True)
    _finish_fc(dft_fc, settings)
    f_dft_h = harmonic_forces(dft_fc.force_constants, ref.displacement_dataset)
    f_mod_h = harmonic_forces(fixed.force_constants, ref.displacement_dataset)
    s_harm = metrics.softening_scale(f_dft_h, f_mod_h)
    at_dft = analyse(fixed, path, settings, with_arrays=False)
    at_dft.pop("_arrays")
    sg_dft = _spacegroup(ref.unitcell)
    sg_model = _spacegroup(relaxed)
    rec = {
        "material_id": ref.material_id, "dataset": ref.dataset, "model": model,
        "model_id": getattr(ase_calc, "softening_model", model) if calc is not None else models.model_id(model),
        "formula": ref.formula, "status": "ok", **res, "relax": rinfo,
        "n_displacements": n, "displacement_amplitude": float(np.mean(_displacement_amplitudes(ph.dataset))),
        "n_atoms_supercell": len(displaced[0]),
        "spacegroup_dft": sg_dft, "spacegroup_model": sg_model,
        "volume_per_atom": float(relaxed.get_volume() / len(relaxed)),
        "softening_scale_dft_disp": s_harm, "softening_scale_dft_disp_resid": s_resid,
        "softening_scale_dft_disp_raw": s_raw,
        "max_freq_at_dft_geometry_thz": at_dft["max_freq_thz"], "min_freq_at_dft_geometry_thz": at_dft["min_freq_thz"],
        "record_version": RECORD_VERSION,
        "residual_force_max_at_dft_geometry": float(np.linalg.norm(residual, axis=1).max()),
        "predict_wall_s": round(predict_wall, 3), "n_structures_predicted": len(batch),
        "wall_s": round(time.time() - t0, 3), "cpu_s": round(time.process_time() - c0, 3),
        "settings_key": settings.key(),
    }
    return rec, arrays


# --------------------------------------------------------------------------------------
# cached runs
# --------------------------------------------------------------------------------------

class NoDFTForcesError(RuntimeError):
    """The reference holds no displaced supercells with forces (nothing to compare with)."""


def _missing_forces(ref: datasets.PhononReference) -> str:
    ds = ref.displacement_dataset or {}
    first = ds.get("first_atoms") or []
    if not first:
        return (f"{ref.dataset} {ref.material_id}: the reference holds no displacements "
                "(upstream phonopy.yaml has no 'displacements' block)")
    if any("forces" not in d for d in first):
        return f"{ref.dataset} {ref.material_id}: displacements without DFT forces"
    return ""


def store() -> cache.ResultStore:
    return cache.ResultStore(TASK)


def _key(dataset: str, material_id: str) -> str:
    return f"{dataset}__{material_id}"


def _store_model(model: str) -> str:
    return "dft" if model == "dft" else models.model_id(model)


def cached(model: str, dataset: str, material_id: str, settings: PhononSettings = DEFAULT) -> dict | None:
    rec = store().get(_store_model(model), _key(dataset, material_id))
    if rec is None or rec.get("settings_key") != settings.key():
        return None
    if model != "dft" and rec.get("status") == "ok" and rec.get("record_version", 1) < RECORD_VERSION:
        return None
    return rec


def arrays_of(model: str, dataset: str, material_id: str) -> dict | None:
    path = store().path(_store_model(model), _key(dataset, material_id)).with_suffix(".npz")
    return cache.load_arrays(path)


def run(dataset: str, ids: Sequence[str], models_: Sequence[str], settings: PhononSettings = DEFAULT,
        showcase: Sequence[str] = SHOWCASE, progress: bool = True, compute: bool = True,
        on_error: str = "record", retry_failed: bool = True) -> "Any":
    """DFT + model phonons for ``ids`` of ``dataset``; cached, resumable. Returns a tidy table.

    ``models_`` may include ``"dft"`` implicitly: the DFT record is always computed (cheap).
    ``compute=False`` only reads the cache (what a "default" chapter build does for
    materials that are not there yet: they are reported missing, not computed); a list of
    model names computes only those (plus DFT) and reads the others from the cache.
    ``on_error="record"`` stores a failed material with its error and goes on; ``"raise"``
    re-raises. Failed records are computed again on the next run when ``retry_failed``
    (skipped materials -- element not covered, no DFT forces -- are not).
    """
    import pandas as pd

    st = store()
    rows = []
    todo = [(m, mp) for mp in ids for m in ["dft", *models_]]
    iterator: Iterable = todo
    bar = None
    if progress and compute is not False:
        from tqdm.auto import tqdm

        bar = tqdm(todo, desc=f"phonons {dataset}", unit="calc")
        iterator = bar
    refs: dict[str, datasets.PhononReference] = {}
    paths: dict[str, dict] = {}
    for model, mp_id in iterator:
        if bar is not None:
            bar.set_postfix_str(f"{model} {mp_id}")
        rec = cached(model, dataset, mp_id, settings)
        want_arrays = mp_id in showcase
        if rec is not None and want_arrays and rec.get("status") == "ok" and arrays_of(model, dataset, mp_id) is None:
            rec = None
        if rec is not None and retry_failed and compute is not False and rec.get("status") == "failed":
            rec = None
        if rec is None and (compute is True or (not isinstance(compute, bool) and model in ["dft", *compute])):
            try:
                if mp_id not in refs:
                    refs.clear()
                    paths.clear()
                    refs[mp_id] = datasets.load(dataset, subset=[mp_id])[0]
                ref = refs[mp_id]
                missing_forces = _missing_forces(ref)
                if missing_forces:
                    raise NoDFTForcesError(missing_forces)
                if model == "dft":
                    rec, arrays = dft_phonons(ref, settings, with_arrays=want_arrays)
                else:
                    if mp_id not in paths:
                        paths[mp_id] = band_path(ref.phonopy(with_forces=False).primitive, settings.band_npoints)
                    rec, arrays = model_phonons(ref, model, settings=settings, with_arrays=want_arrays,
                                                dft_path=paths[mp_id])
            except NoDFTForcesError as exc:
                rec, arrays = {"material_id": mp_id, "dataset": dataset, "model": model, "status": "no_dft_forces",
                               "reason": str(exc), "settings_key": settings.key()}, {}
            except models.UnsupportedElementError as exc:
                rec, arrays = {"material_id": mp_id, "dataset": dataset, "model": model, "status": "skipped",
                               "reason": str(exc), "settings_key": settings.key()}, {}
            except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
                if on_error == "raise":
                    raise
                log.warning("phonons %s %s failed: %s", model, mp_id, exc)
                rec, arrays = {"material_id": mp_id, "dataset": dataset, "model": model, "status": "failed",
                               "reason": f"{type(exc).__name__}: {exc}", "settings_key": settings.key()}, {}
            path = st.put(_store_model(model), _key(dataset, mp_id), rec)
            if arrays:
                cache.save_arrays(path.with_suffix(".npz"), **arrays)
        if rec is None:
            rec = {"material_id": mp_id, "dataset": dataset, "model": model, "status": "missing"}
        rows.append(rec)
    return tidy(rows)


def tidy(records: Sequence[dict]):
    import pandas as pd

    rows = []
    for r in records:
        row = {k: v for k, v in r.items() if not isinstance(v, (dict, list))}
        for k, v in (r.get("relax") or {}).items():
            row[f"relax_{k}"] = v
        rows.append(row)
    return pd.DataFrame(rows)


def cached_table(dataset: str, ids: Sequence[str] | None = None, models_: Sequence[str] | None = None,
                 settings: PhononSettings = DEFAULT):
    """Every cached record of ``dataset`` (optionally restricted), one row per (model, material)."""
    st = store()
    wanted = set(ids) if ids is not None else None
    # directory names as the store writes them (an import-path model 'pkg.mod:f' is filed as 'pkg.mod_f')
    model_dirs = None if models_ is None else {cache._safe(_store_model(m)) for m in ["dft", *models_]}
    recs = []
    for mdir in st.models():
        if model_dirs is not None and mdir not in model_dirs:
            continue
        for r in st.records(mdir):
            if r.get("dataset") != dataset or r.get("settings_key") != settings.key():
                continue
            if r.get("kind") == SCAN_KIND:
                continue  # an amplitude scan (own key and settings), not a phonon record
            if mdir != "dft" and r.get("status") == "ok" and r.get("record_version", 1) < RECORD_VERSION:
                continue  # superseded format, recomputed by the next run
            if wanted is not None and r.get("material_id") not in wanted:
                continue
            recs.append(r)
    return tidy(recs)


def ratio_table(dataset: str, ids: Sequence[str] | None = None, models_: Sequence[str] | None = None,
                settings: PhononSettings = DEFAULT):
    """One row per (model, material): model / DFT max frequency, min frequencies, softening scale."""
    import pandas as pd

    t = cached_table(dataset, ids, models_, settings)
    if t.empty:
        return pd.DataFrame(columns=["model", "material_id", "ratio"])
    ok = t[t["status"] == "ok"]
    dft = ok[ok["model"] == "dft"].set_index("material_id")
    mod = ok[ok["model"] != "dft"]
    if mod.empty or dft.empty:
        return pd.DataFrame(columns=["model", "material_id", "ratio", "sqrt_s"])
    out = mod.merge(dft[["max_freq_thz", "min_freq_thz", "volume_per_atom"]], left_on="material_id",
                    right_index=True, suffixes=("", "_dft"))
    out["ratio"] = out["max_freq_thz"] / out["max_freq_thz_dft"]
    for col in ("softening_scale_dft_disp", "max_freq_at_dft_geometry_thz"):
        if col not in out:
            out[col] = np.nan
    out["sqrt_s"] = np.sqrt(out["softening_scale_dft_disp"].astype(float).clip(lower=0))
    out["ratio_at_dft_geometry"] = out["max_freq_at_dft_geometry_thz"].astype(float) / out["max_freq_thz_dft"]
    out["volume_change"] = out["volume_per_atom"] / out["volume_per_atom_dft"] - 1
    return out.reset_index(drop=True)


def pbe103_ratio_table(models_: Sequence[str] | None = None, settings: PhononSettings = DEFAULT):
    """Model max frequency (on the PhononDB-PBEsol structure, relaxed by the model) over the
    PhononDB-PBE (103 set) DFT max frequency, for the ids in both; plus DFT-PBE / DFT-PBEsol."""
    t = cached_table(PBESOL, None, models_, settings)
    ref = pbe103_max_frequency().set_index("material_id")
    if t.empty:
        return t
    ok = t[(t["status"] == "ok") & t["material_id"].isin(ref.index)].copy()
    ok["max_freq_thz_dft"] = ok["material_id"].map(ref["dft_max_freq_thz"])
    ok["ratio"] = ok["max_freq_thz"] / ok["max_freq_thz_dft"]
    return ok.reset_index(drop=True)


def summarise(ratios) -> "Any":
    """Per model: n, fraction of ratios < 1, median, quartiles."""
    import pandas as pd

    rows = []
    for model, grp in ratios.groupby("model", sort=False):
        r = grp["ratio"].to_numpy(float)
        rows.append({"model": model, "n": len(r), "fraction_below_1": float(np.mean(r < 1)),
                     "median": float(np.median(r)), "q25": float(np.quantile(r, 0.25)),
                     "q75": float(np.quantile(r, 0.75))})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------

def fig4a(material_id: str, models_: Sequence[str], dataset: str = PBESOL, compute: Any = True,
          settings: PhononSettings = DEFAULT):
    """Dispersion + DOS of one material: DFT solid, each model dashed. Returns (fig, table)."""
    import matplotlib.pyplot as plt
    from matplotlib.gridspec import GridSpec

    from .. import plots

    table = run(dataset, [material_id], list(models_), settings, showcase=[material_id], progress=False,
                compute=compute)
    fig = plt.figure(figsize=(8.5, 4.2))
    gs = GridSpec(1, 2, width_ratios=[4, 1], wspace=0.05, figure=fig)
    ax, axd = fig.add_subplot(gs[0]), fig.add_subplot(gs[1])
    dft_rec = cached("dft", dataset, material_id, settings)
    dft_arr = arrays_of("dft", dataset, material_id)
    drawn = []
    for model in ["dft", *models_]:
        arr = arrays_of(model, dataset, material_id)
        rec = cached(model, dataset, material_id, settings)
        if arr is None or rec is None or rec.get("status") != "ok":
            continue
        col, ls = plots.color(model), ("-" if model == "dft" else "--")
        lab = "DFT (" + (dft_rec or {}).get("functional", "") + ")" if model == "dft" else plots.label(model)
        # same fractional q-points for all: draw on the DFT path length
        dist = (dft_arr if dft_arr is not None else arr)["band_distances"]
        freq = arr["band_frequencies"]
        for seg_d, seg_f in zip(dist, freq):
            ax.plot(seg_d, seg_f, color=col, ls=ls, lw=1.2 if model == "dft" else 1.0)
        ax.plot([], [], color=col, ls=ls, label=lab)
        axd.plot(arr["dos"], arr["dos_frequencies"], color=col, ls=ls, lw=1.2 if model == "dft" else 1.0)
        drawn.append(model)
    arr = arrays_of("dft", dataset, material_id)
    if dft_rec is not None and arr is not None and "band_ticks" in dft_rec:
        ends = [float(d[0]) for d in arr["band_distances"]] + [float(arr["band_distances"][-1][-1])]
        for x in ends:
            ax.axvline(x, color="0.8", lw=0.6, zorder=0)
        ax.set_xticks(ends, dft_rec["band_ticks"])
        ax.set_xlim(ends[0], ends[-1])
    ax.axhline(0, color="0.6", lw=0.6)
    ax.set_ylabel("frequency (THz)")
    from ase.formula import Formula

    formula = (dft_rec or {}).get("formula")
    ax.set_title(f"{Formula(formula).reduce()[0] if formula else ''} ({material_id})")
    # the legend under the plot: never over the branches
    fig.legend(*ax.get_legend_handles_labels(), loc="upper center", ncol=3, fontsize=9, bbox_to_anchor=(0.45, 0.02))
    axd.set_ylim(ax.get_ylim())
    axd.set_yticklabels([])
    axd.set_xticks([])
    axd.set_xlabel("DOS")
    return fig, table


def fig4a_interactive(material_id: str, models_: Sequence[str], dataset: str = PBESOL,
                      settings: PhononSettings = DEFAULT):
    """Fig. 4a interactive: the dispersions of DFT and every model (legend toggles a model;
    hover: branch, frequency, position on the path). Reads what :func:`fig4a` cached."""
    from .. import plots

    dft_arr = arrays_of("dft", dataset, material_id)
    curves = {}
    for model in ["dft", *models_]:
        arr = arrays_of(model, dataset, material_id)
        rec = cached(model, dataset, material_id, settings)
        if arr is None or rec is None or rec.get("status") != "ok":
            continue
        dist = (dft_arr if dft_arr is not None else arr)["band_distances"]
        curves[model] = [(d, f) for d, f in zip(dist, arr["band_frequencies"])]
    dft_rec = cached("dft", dataset, material_id, settings) or {}
    ticks, labels_ = (), ()
    if dft_arr is not None and "band_ticks" in dft_rec:
        ticks = [float(d[0]) for d in dft_arr["band_distances"]] + [float(dft_arr["band_distances"][-1][-1])]
        labels_ = [str(t).replace("$", "").replace("\\Gamma", "Γ") for t in dft_rec["band_ticks"]]
    return plots.dispersion_interactive(curves, ticks=ticks, tick_labels=labels_, reference="dft",
                                        title=f"{dft_rec.get('formula', '')} ({material_id})")


def _ratio_hist(ax, table, models_: Sequence[str], bins) -> list[str]:
    """Step histogram per model, each normalised to the fraction of *its* materials (models
    with very different coverage stay comparable); returns the per-model text lines."""
    from .. import plots

    lines = []
    if table.empty:
        return lines
    for m in models_:
        r = table.loc[table["model"] == m, "ratio"].to_numpy(float)
        if not r.size:
            continue
        ax.hist(np.clip(r, bins[0] + 1e-9, bins[-1] - 1e-9), bins=bins, histtype="step", lw=1.6,
                color=plots.color(m), label=plots.label(m), weights=np.full(r.size, 1.0 / r.size))
        n_imag = int(table.loc[table["model"] == m, "has_imaginary"].fillna(False).astype(bool).sum()) \
            if "has_imaginary" in table else 0
        lines.append(f"{plots.label(m)}: n={r.size}, {100 * np.mean(r < 1):.0f} % < 1, "
                     f"median {np.median(r):.3f}" + (f" ({n_imag} imag.)" if n_imag else ""))
    return lines


def fig4b(models_: Sequence[str], pbesol_ids: Sequence[str] | None = None, settings: PhononSettings = DEFAULT,
          jageo_min: int = JAGEO_MIN_MATERIALS):
    """Histograms of max-frequency ratio model / DFT: PBEsol panel and PBE panels.

    One colour per model; each model's histogram is normalised to its own number of
    materials. The per-model numbers (n, the fraction below 1, the median, ``n_imaginary``) are in
    the returned summary, shown under the figure: text in or beside the panels squeezed them at
    page width. Materials with imaginary modes are kept. The JaGeo panel draws only the models
    with at least ``jageo_min`` JaGeo materials (:func:`jageo_split`). Returns (fig, summary, ratios).
    """
    import matplotlib.pyplot as plt
    import pandas as pd

    r_sol = ratio_table(PBESOL, pbesol_ids, models_, settings)
    r_68 = ratio_table(PBE68, None, models_, settings)
    if not r_68.empty:  # only models with enough JaGeo materials (jageo_split)
        r_68 = r_68[r_68["model"].isin(list(jageo_split(models_, jageo_min, settings, ratios=r_68)[0]))]
    r_103 = pbe103_ratio_table(models_, settings)
    if pbesol_ids is not None and not r_103.empty:
        r_103 = r_103[r_103["material_id"].isin(set(pbesol_ids))]
    r_103 = r_103[r_103["model"] != "dft"] if not r_103.empty else r_103
    fig, axes = plt.subplots(3, 1, figsize=(7.2, 7.6), sharex=True)  # one reference per row: legible
    bins = np.linspace(0.4, 1.3, 37)
    summary = []
    for ax, (title, table, tag) in zip(axes, [
        ("DFT: PhononDB PBEsol force sets", r_sol, "pbesol"),
        ("DFT: JaGeo VASP-PBE force sets (68)", r_68, "pbe-jageo68"),
        ("DFT: PhononDB-PBE 103 max. frequency\n(model on the PBEsol structure)", r_103, "pbe-phonondb103"),
    ]):
        lines = _ratio_hist(ax, table, models_, bins)
        ax.axvline(1.0, color="0.3", lw=0.8, ls="--")
        ax.set_ylabel("fraction of\nmaterials")
        if not table.empty:
            sub = table[table["model"].isin(list(models_))]
            imag = (sub["has_imaginary"].fillna(False).astype(bool).groupby(sub["model"]).sum()
                    if "has_imaginary" in sub else {})
            for _, s in summarise(sub).iterrows():
                summary.append({"reference": tag, **s.to_dict(), "n_imaginary": int(imag.get(s["model"], 0))})
        if not lines:  # the per-model numbers are in the summary table under the figure, not in the panel
            empty = (f"no model with {jageo_min}+ materials yet" if tag == "pbe-jageo68" else "nothing cached yet")
            ax.text(0.5, 0.5, empty, transform=ax.transAxes, ha="center", va="center", fontsize=9, color="0.4")
        ax.set_title(title.replace("\n", " "), fontsize=10, loc="left")
    axes[-1].set_xlabel(r"$\omega_\max^{\rm model} / \omega_\max^{\rm DFT}$")
    handles, labels_ = [], []
    for ax in axes:  # a model may have results in one panel only
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels_:
                handles.append(h)
                labels_.append(lab)
    if handles:
        fig.legend(handles, labels_, loc="upper center", ncol=min(3, len(handles)), fontsize=9,
                   bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    ratios = pd.concat([r_sol.assign(reference="pbesol"), r_68.assign(reference="pbe-jageo68"),
                        r_103.assign(reference="pbe-phonondb103")], ignore_index=True)
    return fig, pd.DataFrame(summary), ratios


def common_summary(ratios, models_: Sequence[str] | None = None):
    """Per reference set: the summary of :func:`summarise` restricted to the materials that
    *every* model with results there has (coverage differs between models while the runs are
    going on; medians over different material sets are not comparable)."""
    import pandas as pd

    rows = []
    if ratios.empty:
        return pd.DataFrame()
    for ref, grp in ratios.groupby("reference", sort=False):
        if models_ is not None:
            grp = grp[grp["model"].isin(list(models_))]
        present = list(grp["model"].unique())
        if len(present) < 2:
            continue
        common = set.intersection(*(set(grp.loc[grp["model"] == m, "material_id"]) for m in present))
        if not common:
            continue
        for _, s in summarise(grp[grp["material_id"].isin(common)]).iterrows():
            rows.append({"reference": ref, "n_common": len(common), **s.drop("n").to_dict()})
    return pd.DataFrame(rows)


def _same_compound(a: str | None, b: str | None) -> bool:
    """Whether two formulas name the same compound (reduced composition; order-free: CSi = SiC)."""
    if not a or not b:
        return False
    from ase.formula import Formula

    return Formula(a).reduce()[0].count() == Formula(b).reduce()[0].count()


def functional_shift_table(settings: PhononSettings = DEFAULT):
    """DFT-PBE / DFT-PBEsol max frequency for materials in both (no model involved).

    A material counts as in both when the Materials Project id *and* the compound agree: an id
    can name different compounds in the two sets (mp-2201 is PbSe in PhononDB, GeSb in the
    JaGeo set), and such a pair is left out."""
    import pandas as pd

    t = cached_table(PBESOL, None, ["dft"], settings)
    if t.empty:
        return pd.DataFrame()
    ok = t[(t["model"] == "dft") & (t["status"] == "ok")].set_index("material_id")
    dft, dft_formula = ok["max_freq_thz"], ok["formula"]
    rows = []
    q = pbe103_max_frequency().set_index("material_id")
    t68 = cached_table(PBE68, None, ["dft"], settings)
    ok68 = (t68[(t68["model"] == "dft") & (t68["status"] == "ok")].set_index("material_id")
            if not t68.empty else pd.DataFrame(columns=["max_freq_thz", "formula"]))
    for name, pbe, formula in [("phonondb-pbe-103", q["dft_max_freq_thz"], q["formula"]),
                               ("jageo-pbe-68", ok68["max_freq_thz"], ok68["formula"])]:
        for mp_id in sorted(set(pbe.index) & set(dft.index)):
            if not _same_compound(formula[mp_id], dft_formula[mp_id]):
                continue
            rows.append({"pbe_set": name, "material_id": mp_id, "pbe_max_thz": float(pbe[mp_id]),
                         "pbesol_max_thz": float(dft[mp_id]), "pbe_over_pbesol": float(pbe[mp_id] / dft[mp_id])})
    return pd.DataFrame(rows)


def jageo_pbesol_shared_ids() -> tuple[list[str], list[str]]:
    """JaGeo ids that are also in the PhononDB-PBEsol mirror: ``(shared, clashes)``, ``clashes``
    the ids that name a different compound in the two sets (from the two indexes, no cache)."""
    import pandas as pd

    sol = pbesol_index().set_index("mp_id")["unitcell_formula"]
    jag = pd.read_csv(datasets.locate(PBE68, "index.csv")).set_index("mp_id")["primitive_formula"]
    both = [m for m in jag.index if m in sol.index]
    shared = [m for m in both if _same_compound(jag[m], sol[m])]
    return shared, [m for m in both if m not in shared]


def shared_set_comparison(models_: Sequence[str], pbesol_ids: Sequence[str] | None = None,
                          settings: PhononSettings = DEFAULT, shared: Sequence[str] | None = None,
                          clashes: Sequence[str] = ()):
    """The JaGeo VASP-PBE set and the PhononDB-PBEsol list hold different materials, so a model's
    median ratio over one set and over the other are not comparable. This puts them side by side
    on the materials in both (:func:`jageo_pbesol_shared_ids`) that the model has against both
    references. Returns ``(pairs, summary)``:

    * pairs: one row per (model, material): ``ratio_pbe`` (JaGeo), ``ratio_pbesol`` (PhononDB) and
      ``dft_pbe_over_pbesol`` (the two DFT maxima, no model), ``model_pbe_over_pbesol`` (the model's
      own maxima from the two sets' structures and supercells) and the two supercell sizes.
    * summary: per model, ``n_jageo`` (JaGeo materials), ``n_shared`` (also in PhononDB, same compound),
      ``n_clash`` (same id, other compound: left out), ``n_dft_both`` (shared, DFT phonons from both
      sets in the cache), ``n_in_list`` (shared and in ``pbesol_ids``), ``n_computed`` (with the model's ratio against
      both), the medians on those (``median_pbe``, ``median_pbesol``, ``median_dft_shift``) and the
      whole-set medians of Fig. 4b (``set_median_pbe`` over ``n_set_pbe`` JaGeo materials,
      ``set_median_pbesol`` over ``n_set_pbesol`` of the PBEsol list ``pbesol_ids``).
    """
    import pandas as pd

    if shared is None:
        shared, clashes = jageo_pbesol_shared_ids()
    shared = list(shared)
    r_68 = ratio_table(PBE68, None, models_, settings)
    r_sol = ratio_table(PBESOL, None, models_, settings)
    keep = ["model", "material_id", "formula", "ratio", "max_freq_thz_dft", "max_freq_thz", "n_atoms_supercell"]
    a = r_68[r_68["material_id"].isin(shared)].reindex(columns=keep)
    b = r_sol[r_sol["material_id"].isin(shared)].reindex(columns=keep)
    pairs = a.merge(b, on=["model", "material_id"], suffixes=("_pbe", "_pbesol"))
    pairs = pairs.rename(columns={"formula_pbe": "formula"})
    pairs["dft_pbe_over_pbesol"] = pairs["max_freq_thz_dft_pbe"] / pairs["max_freq_thz_dft_pbesol"]
    pairs["model_pbe_over_pbesol"] = pairs["max_freq_thz_pbe"] / pairs["max_freq_thz_pbesol"]  # same model, two cells
    pairs = pairs[["model", "material_id", "formula", "ratio_pbe", "ratio_pbesol", "dft_pbe_over_pbesol",
                   "model_pbe_over_pbesol", "n_atoms_supercell_pbe", "n_atoms_supercell_pbesol"]]
    sol_set = r_sol if pbesol_ids is None else r_sol[r_sol["material_id"].isin(set(pbesol_ids))]
    dft_ok = []
    for dataset in (PBE68, PBESOL):
        t = cached_table(dataset, shared, [], settings)
        dft_ok.append(set(t.loc[(t["model"] == "dft") & (t["status"] == "ok"), "material_id"]) if not t.empty else set())
    n_dft = len(set(shared) & dft_ok[0] & dft_ok[1])
    rows = []
    for m in models_:
        p = pairs[pairs["model"] == m]
        s68, ssol = r_68.loc[r_68["model"] == m, "ratio"], sol_set.loc[sol_set["model"] == m, "ratio"]
        nan = float("nan")
        rows.append({"model": m, "n_jageo": len(jageo_ids()), "n_shared": len(shared), "n_clash": len(clashes),
                     "n_dft_both": n_dft,
                     "n_in_list": len(set(shared) & set(pbesol_ids)) if pbesol_ids is not None else len(shared),
                     "n_computed": len(p),
                     "median_pbe": float(p["ratio_pbe"].median()) if len(p) else nan,
                     "median_pbesol": float(p["ratio_pbesol"].median()) if len(p) else nan,
                     "median_dft_shift": float(p["dft_pbe_over_pbesol"].median()) if len(p) else nan,
                     "set_median_pbe": float(s68.median()) if len(s68) else nan, "n_set_pbe": len(s68),
                     "set_median_pbesol": float(ssol.median()) if len(ssol) else nan, "n_set_pbesol": len(ssol)})
    return pairs.reset_index(drop=True), pd.DataFrame(rows)


def shared_set_sentence(row, few: int = 10, part: str = "all") -> str:
    """Plain text for the page (``{glue:text}``) from one row of :func:`shared_set_comparison`'s
    summary: what the medians on the shared materials say about the gap between the set medians.
    The gap is put down to the material sets when, on the shared materials, it changes sign or
    shrinks to under half; fewer than ``few`` materials are called an indication. ``part``: "all",
    or "counts" (how many materials are shared and computed) and "medians" (the rest), to glue apart."""
    if part not in ("all", "counts", "medians"):
        raise ValueError(f"part must be all, counts or medians, got {part!r}")
    from .. import plots

    lab, n = plots.label(row["model"]), int(row["n_computed"])
    out = (f"{int(row['n_shared'])} of the {int(row['n_jageo'])} JaGeo materials are also in the "
           f"PhononDB-PBEsol mirror as the same compound")
    if int(row.get("n_clash", 0)):
        k = int(row["n_clash"])
        out += f" ({k} more id{'s' if k != 1 else ''} name{'' if k != 1 else 's'} another compound there: left out)"
    n_dft = int(row.get("n_dft_both", row["n_shared"]))
    if n_dft < int(row["n_shared"]):
        out += f"; {n_dft} of them have DFT phonons from both sets (the others lack DFT forces in one)"
    n_list = int(row.get("n_in_list", row["n_shared"]))
    if n_list < int(row["n_shared"]):
        out += f"; {n_list} of them are in this chapter's PBEsol list"
    out += f"; {n} {'of them' if n_list == int(row['n_shared']) else 'of these'} have {lab} phonons against both references"
    if n == 0:
        out += ", so the two set medians cannot yet be compared on the same materials."
        return "" if part == "medians" else out
    counts, out = out + ".", ""
    a, b = float(row["median_pbe"]), float(row["median_pbesol"])
    big_a, big_b = float(row["set_median_pbe"]), float(row["set_median_pbesol"])
    out += (f"On {'this material' if n == 1 else f'these {n}'} the median ratio is {a:.3f} against PBE and "
            f"{b:.3f} against PBEsol (DFT PBE / PBEsol maximum frequency: median {float(row['median_dft_shift']):.3f}), "
            f"while the whole sets give {big_a:.3f} (JaGeo, {int(row['n_set_pbe'])} materials) and {big_b:.3f} "
            f"(PBEsol list, {int(row['n_set_pbesol'])})")
    gap, g = big_a - big_b, a - b
    if not np.isfinite(gap):
        out += "."
        return {"counts": counts, "medians": out}.get(part, counts + " " + out)
    out += f": on the same materials the PBE minus PBEsol difference is {g:+.3f}, against {gap:+.3f} between the sets"
    if np.sign(g) != np.sign(gap) or abs(g) < 0.5 * abs(gap):
        out += ", so the gap between the set medians comes from which materials are in each set, not from the functional"
    else:
        out += ", so the gap is not only a matter of which materials are in each set"
    if float(row["median_dft_shift"]) > 1:
        out += (". On these materials the DFT-PBE maximum is above the DFT-PBEsol one, the opposite of what the "
                "stiffer PBEsol bonds suggest; we have not explained this (the two DFT sets also differ in supercell "
                "size)")
    if n < few:
        out += f". With {n} material{'s' if n != 1 else ''} this is an indication, not a measurement"
    out += "."
    return {"counts": counts, "medians": out}.get(part, counts + " " + out)


def fig_scale(models_: Sequence[str], pbesol_ids: Sequence[str] | None = None, settings: PhononSettings = DEFAULT):
    """Beyond the paper: frequency ratio vs sqrt(softening scale on the DFT displacements).

    One row per model with cached results. Left: the model's own phonons (relaxed cell) --
    the paper's ratio. Right: the model's force constants at the DFT geometry -- what a
    uniformly scaled PES predicts exactly (ratio = sqrt(s), the dashed line). Circles:
    PhononDB-PBEsol references; triangles: JaGeo PBE. Returns (fig, table).
    """
    import matplotlib.pyplot as plt
    import pandas as pd

    from .. import plots

    tables = {"PBEsol (PhononDB)": (ratio_table(PBESOL, pbesol_ids, models_, settings), "o"),
              "PBE (JaGeo 68)": (ratio_table(PBE68, None, models_, settings), "^")}

    def sub_of(t, m):
        if t.empty:
            return t
        return t[t["model"] == m].dropna(subset=["sqrt_s", "ratio"])

    shown = [m for m in models_ if any(not sub_of(t, m).empty for t, _ in tables.values())]
    nrow = max(1, len(shown))
    fig, axes = plt.subplots(nrow, 2, figsize=(10.0, 4.6 * nrow), squeeze=False)
    rows = []
    lim = (0.3, 1.25)
    for i, m in enumerate(shown):
        for ax, (ycol, title) in zip(axes[i], [("ratio", "model relaxed (the paper's ratio)"),
                                                ("ratio_at_dft_geometry", "model at the DFT geometry")]):
            text = []
            for ref_name, (t, marker) in tables.items():
                sub = sub_of(t, m)
                if sub.empty:
                    continue
                x, y = sub["sqrt_s"].to_numpy(float), sub[ycol].to_numpy(float)
                imag = sub["has_imaginary"].fillna(False).astype(bool).to_numpy() if "has_imaginary" in sub \
                    else np.zeros(len(sub), bool)
                ax.scatter(np.clip(x[~imag], *lim), np.clip(y[~imag], *lim), s=16, alpha=0.65, color=plots.color(m),
                           marker=marker, lw=0, label=f"{ref_name}")
                if imag.any():
                    ax.scatter(np.clip(x[imag], *lim), np.clip(y[imag], *lim), s=22, facecolor="none",
                               edgecolor=plots.color(m), marker=marker, lw=0.9,
                               label=f"{ref_name}, model has imaginary modes")
                ok = np.isfinite(x) & np.isfinite(y)
                r = float(np.corrcoef(x[ok], y[ok])[0, 1]) if ok.sum() > 2 else np.nan
                text.append(f"{ref_name}: n={len(x)}, median " + r"$\sqrt{s}$" +
                            f" {np.median(x):.3f}, median ratio {np.nanmedian(y):.3f}"
                            + (f", r={r:.2f}" if np.isfinite(r) else ""))
                if ycol == "ratio":
                    yf = sub["ratio_at_dft_geometry"].to_numpy(float)
                    okf = np.isfinite(x) & np.isfinite(yf)
                    rows.append({"reference": ref_name, "model": m, "n": len(x), "median_sqrt_s": float(np.median(x)),
                                 "median_ratio_relaxed": float(np.median(y)),
                                 "median_ratio_at_dft_geometry": float(np.nanmedian(yf)),
                                 "median_volume_change": float(np.median(sub["volume_change"])),
                                 "pearson_r_relaxed": r,
                                 "pearson_r_at_dft_geometry": float(np.corrcoef(x[okf], yf[okf])[0, 1])
                                 if okf.sum() > 2 else np.nan,
                                 "n_model_imaginary": int(imag.sum())})
            ax.plot(lim, lim, color="0.4", ls="--", lw=0.8, label=r"ratio $=\sqrt{s}$ (scaled PES)")
            ax.set_xlim(lim)
            ax.set_ylim(lim)
            ax.set_aspect("equal")
            ax.set_xlabel(r"$\sqrt{s}$, s from the force constants on the DFT displacements")
            ax.set_ylabel(r"$\omega_\max^{\rm model} / \omega_\max^{\rm DFT}$")
            ax.set_title(f"{plots.label(m)}: {title}", fontsize=9.5)
            ax.text(0.02, 0.98, "\n".join(text), transform=ax.transAxes, va="top", fontsize=7,
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1})
            ax.legend(loc="lower right", fontsize=7)
    if not shown:
        for ax in axes[0]:
            ax.text(0.5, 0.5, "nothing cached yet", transform=ax.transAxes, ha="center")
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def coverage(models_: Sequence[str], dataset: str, ids: Sequence[str] | None = None,
             settings: PhononSettings = DEFAULT):
    """Per model: how many materials are ok / skipped / failed / missing in the cache."""
    import pandas as pd

    t = cached_table(dataset, ids, models_, settings)
    n_total = len(ids) if ids is not None else (t["material_id"].nunique() if not t.empty else 0)
    rows = []
    for m in ["dft", *models_]:
        sub = t[t["model"] == m] if not t.empty else t
        counts = sub["status"].value_counts().to_dict() if not sub.empty else {}
        rows.append({"dataset": dataset, "model": m, "ok": counts.get("ok", 0),
                     "skipped": counts.get("skipped", 0), "failed": counts.get("failed", 0),
                     "missing": n_total - len(sub),
                     "with_imaginary": int(sub.get("has_imaginary", pd.Series(dtype=bool)).fillna(False).sum())
                     if not sub.empty else 0})
    return pd.DataFrame(rows)


def coverage_table(models_: Sequence[str], pbesol_ids: Sequence[str], settings: PhononSettings = DEFAULT):
    """How many materials each model covers in the cache, for the PBEsol list and the JaGeo 68."""
    import pandas as pd

    return pd.concat([coverage(models_, PBESOL, pbesol_ids, settings),
                      coverage(models_, PBE68, jageo_ids(), settings)], ignore_index=True)


def jageo_split(models_: Sequence[str], min_materials: int = JAGEO_MIN_MATERIALS,
                settings: PhononSettings = DEFAULT, ratios=None) -> tuple[dict[str, int], dict[str, int]]:
    """The models with a JaGeo VASP-PBE comparison and those without: ``(shown, not_shown)``,
    each ``{model: number of JaGeo materials with a model / DFT ratio in the cache}``. A model is
    shown from ``min_materials`` materials on; with fewer its ratios are not drawn or summarised
    (a handful of materials would be a misleading histogram). ``ratios``: the JaGeo
    :func:`ratio_table` when the caller has read it already."""
    r = ratios if ratios is not None else ratio_table(PBE68, None, models_, settings)
    counts = r["model"].value_counts().to_dict() if not r.empty else {}
    shown = {m: int(counts.get(m, 0)) for m in models_ if counts.get(m, 0) >= min_materials}
    not_shown = {m: int(counts.get(m, 0)) for m in models_ if m not in shown}
    return shown, not_shown


def jageo_lists(models_: Sequence[str], min_materials: int = JAGEO_MIN_MATERIALS,
                settings: PhononSettings = DEFAULT) -> tuple[str, str]:
    """Plain-text lists for the prose (``{glue:text}``): the models with the JaGeo comparison
    ("CHGNet 0.3.0, 64 materials") and the others with their count so far and registry name."""
    from .. import plots

    shown, not_shown = jageo_split(models_, min_materials, settings)
    return ("; ".join(f"{plots.label(m)}, {n} materials" for m, n in shown.items()) or "no model yet",
            "; ".join(f"{plots.label(m)}, {n} so far (NAME = {m})" for m, n in not_shown.items()) or "none")


def jageo_note(models_: Sequence[str], min_materials: int = JAGEO_MIN_MATERIALS,
               settings: PhononSettings = DEFAULT, command: bool = True) -> str:
    """One sentence for the page: which models have the JaGeo comparison (and on how many
    materials), and the command that computes it for the others (``command=False``: their
    registry names only, for ``{glue:text}``, which shows backticks and dashes as typed; the
    prose then gives the command)."""
    from .. import plots

    shown, not_shown = jageo_split(models_, min_materials, settings)
    n_all = len(jageo_ids())
    out = (f"The JaGeo VASP-PBE comparison needs a model's phonons on at least {min_materials} of the "
           f"{n_all} JaGeo materials; ")
    out += ("it is shown for " + ", ".join(f"{plots.label(m)} ({n} materials)" for m, n in shown.items())
            if shown else "no model of this build has that many yet")
    if not_shown and not command:
        out += (". Not shown: " + ", ".join(f"{plots.label(m)} ({n} so far)" for m, n in not_shown.items())
                + " (registry names: " + ", ".join(not_shown) + ")")
    elif not_shown:
        out += (". Not shown: " + ", ".join(f"{plots.label(m)} ({n} so far)" for m, n in not_shown.items())
                + "; `python -m softening_lib compute --chapter 06 --model "
                + (next(iter(not_shown)) if len(not_shown) == 1 else "M") + "` computes them"
                + ("" if len(not_shown) == 1 else " for model M (" + ", ".join(f"`{m}`" for m in not_shown) + ")"))
    return out + "."


def smoke_ids() -> list[str]:
    """The first two materials of the PBEsol list: CsF and BeTe (64-atom supercells, 2
    displacements each, relaxed in ~20 FIRE steps: seconds per model)."""
    return pbesol_selection(2)


def selection_table(ids: Sequence[str]):
    """The material list with formula, space group and supercell size."""
    idx = pbesol_index().set_index("mp_id")
    t = idx.loc[list(ids), ["unitcell_formula", "mdr_space_group", "n_atoms_unitcell", "supercell_dim",
                            "n_atoms_supercell"]].reset_index()
    t.insert(0, "order", range(1, len(t) + 1))
    return t


def showcase_table(table):
    """Fig. 4a numbers: per model max/min frequency, ratio to DFT, volume change, softening scale."""
    import pandas as pd

    t = table[table["status"] == "ok"].copy()
    if t.empty:
        return pd.DataFrame()
    dft = t[t["model"] == "dft"]
    dmax = float(dft["max_freq_thz"].iloc[0]) if len(dft) else np.nan
    dvol = float(dft["volume_per_atom"].iloc[0]) if len(dft) else np.nan
    t["ratio"] = t["max_freq_thz"] / dmax
    t["ratio_at_dft_geometry"] = t.get("max_freq_at_dft_geometry_thz", np.nan) / dmax
    t["volume_change"] = t["volume_per_atom"] / dvol - 1
    is_dft = t["model"] == "dft"  # DFT against itself: 1 by definition (no nan in the table)
    t.loc[is_dft, "ratio_at_dft_geometry"] = 1.0
    if "softening_scale_dft_disp" in t:
        t.loc[is_dft, "softening_scale_dft_disp"] = 1.0
    cols = ["model", "max_freq_thz", "min_freq_thz", "ratio", "ratio_at_dft_geometry", "volume_per_atom", "volume_change",
            "softening_scale_dft_disp", "relax_fmax_reached", "relax_steps", "wall_s"]
    return t[[c for c in cols if c in t]].reset_index(drop=True)


PAPER_FRACTION_BELOW_1 = 0.90  # paper, Fig. 4b: "> 90 %" of 229 ratios below 1 for each model


def fig4b_table(summary):
    """Fig. 4b's per-model numbers for the page, under the figure (not in the panels): one row per
    reference and model, narrow columns (model labels, % below 1, median, quartiles, imaginary)."""
    import pandas as pd

    from .. import plots

    if summary.empty:
        return pd.DataFrame()
    out = pd.DataFrame({
        "reference": summary["reference"].map(lambda r: {"pbesol": "PhononDB-PBEsol", "pbe-jageo68": "JaGeo PBE",
                                                         "pbe-phonondb103": "PhononDB-PBE-103"}.get(r, r)),
        "model": summary["model"].map(plots.label),
        "n": summary["n"].astype(int),
        "% < 1": (100 * summary["fraction_below_1"]).round(0).astype(int),
        "median": summary["median"].round(3),
        "q25": summary["q25"].round(2),
        "q75": summary["q75"].round(2),
        "imaginary": summary.get("n_imaginary", pd.Series(0, index=summary.index)).astype(int),
    })
    return out.set_index(["reference", "model"])


def paper_table(summary):
    """Paper vs this book for Fig. 4b (the paper gives the fraction below 1 only)."""
    import pandas as pd

    from ..paper import published

    rows = []
    for _, s in summary.iterrows():
        if not int(s["n"]):  # a model without ratios for this reference: no row
            continue
        rows.append({"reference": s["reference"], "model": s["model"],
                     "paper: materials": published("fig4b_n_materials"), "book: materials": int(s["n"]),
                     "paper: fraction < 1": f"> {published('fig4b_pct_ratio_below_1') / 100:.2f} "
                                            "(M3GNet, CHGNet, MACE; PhononDB)",
                     "book: fraction < 1": round(float(s["fraction_below_1"]), 3),
                     "book: median ratio": round(float(s["median"]), 3)})
    return pd.DataFrame(rows)


REFERENCE_WORDS = {"pbesol": "PhononDB-PBEsol", "pbe-jageo68": "the JaGeo VASP-PBE force sets",
                   "pbe-phonondb103": "PhononDB-PBE 103"}


def model_sentences(summary) -> str:
    """One markdown sentence per reference: every model's fraction of ratios below 1, its
    number of materials and median (from :func:`fig4b`'s summary), so the text covers all models."""
    from ..plots import label

    if not len(summary) or "reference" not in summary:
        return "No model of this run has maximum-frequency ratios (the table of cases without numbers above says why)."
    out = []
    for ref, grp in summary.groupby("reference", sort=False):
        parts = [f"{label(r['model'])} {100 * r['fraction_below_1']:.0f} % of {int(r['n'])} "
                 f"(median {r['median']:.3f})" for _, r in grp.iterrows()]
        out.append(f"Against {REFERENCE_WORDS.get(ref, ref)}, ratios below 1: " + "; ".join(parts) + ".")
    return "\n\n".join(out)


def not_computed_table(models_: Sequence[str], pbesol_ids: Sequence[str], settings: PhononSettings = DEFAULT):
    """Every cached (model, material) that did not give phonons, with the reason: element not
    covered by the model (skipped), no DFT forces upstream, or a failure."""
    import pandas as pd

    parts = []
    for dataset, ids in ((PBESOL, pbesol_ids), (PBE68, jageo_ids())):
        t = cached_table(dataset, ids, models_, settings)
        if not t.empty:
            parts.append(t[t["status"] != "ok"])
    if not parts:
        return pd.DataFrame(columns=["dataset", "model", "material_id", "status", "reason"])
    t = pd.concat(parts, ignore_index=True)
    cols = [c for c in ("dataset", "model", "material_id", "status", "reason") if c in t]
    return t[cols].sort_values(cols[:3]).reset_index(drop=True)


# --------------------------------------------------------------------------------------
# what a chapter build computes, coverage, imaginary modes, the material list
# --------------------------------------------------------------------------------------

def compute_plan(preset: str, models_: Sequence[str]) -> Any:
    """The ``compute`` argument of :func:`run` for a chapter preset.

    ``smoke``: the first model (plus DFT) live, on the smoke materials; ``default``: ``False``,
    the cache only -- a book build never computes phonons, materials not cached yet are
    reported missing and the coverage is stated (``python -m softening_lib compute --chapter 06`` fills the cache);
    ``full``: everything that is missing.
    """
    plans = {"smoke": list(models_[:1]), "default": False, "full": True}
    if preset not in plans:
        raise ValueError(f"unknown preset {preset!r}; one of {sorted(plans)}")
    return plans[preset]


def coverage_note(models_: Sequence[str], pbesol_ids: Sequence[str], settings: PhononSettings = DEFAULT) -> str:
    """One caption sentence: per model, the materials with phonons in the cache out of each list."""
    from .. import plots

    cov = coverage_table(models_, pbesol_ids, settings)
    parts = []
    for dataset, name, n_list in ((PBESOL, "PBEsol list", len(pbesol_ids)), (PBE68, "JaGeo PBE", len(jageo_ids()))):
        sub = cov[cov["dataset"] == dataset].set_index("model")
        items = [f"{'DFT' if m == 'dft' else plots.label(m)} {int(sub.loc[m, 'ok'])}" for m in ["dft", *models_]]
        parts.append(f"{name} ({n_list} materials): " + ", ".join(items))
    return "Coverage, materials with phonons in the cache: " + "; ".join(parts) + "."


def showcase_note(table, models_: Sequence[str]) -> str:
    """Which models the Fig. 4a material is drawn for, and which have no cached result (why)."""
    from .. import plots

    by = {r["model"]: r for _, r in table.iterrows()} if not table.empty else {}
    drawn = [plots.label(m) for m in models_ if m in by and by[m]["status"] == "ok"]
    not_drawn = [f"{plots.label(m)} ({by[m]['status'] if m in by else 'missing'})"
                 for m in models_ if not (m in by and by[m]["status"] == "ok")]
    return (f"Drawn: {', '.join(drawn) or 'no model'}."
            + (f" Not drawn (no cached result): {', '.join(not_drawn)}." if not_drawn else ""))


def imaginary_table(models_: Sequence[str], pbesol_ids: Sequence[str] | None = None,
                    settings: PhononSettings = DEFAULT):
    """Every (reference, model, material) where the model's phonons after relaxation or the DFT
    ones have an imaginary mode (minimum frequency below :data:`IMAGINARY_THZ`; phonopy reports
    imaginary frequencies as negative numbers). Kept in all figures, listed here."""
    import pandas as pd

    parts = []
    for ref_name, t in (("PBEsol (PhononDB)", ratio_table(PBESOL, pbesol_ids, models_, settings)),
                        ("PBE (JaGeo 68)", ratio_table(PBE68, None, models_, settings))):
        if t.empty:
            continue
        t = t.copy()
        mod = t["min_freq_thz"].astype(float) < IMAGINARY_THZ
        dft = t["min_freq_thz_dft"].astype(float) < IMAGINARY_THZ
        t["imaginary_in"] = np.select([mod & dft, mod, dft], ["both", "model only", "DFT only"], "")
        t = t[mod | dft]
        t.insert(0, "reference", ref_name)
        parts.append(t)
    cols = ["reference", "model", "material_id", "formula", "imaginary_in", "min_freq_thz", "min_freq_thz_dft",
            "min_freq_at_dft_geometry_thz", "ratio", "volume_change"]
    if not parts:
        return pd.DataFrame(columns=cols)
    out = pd.concat(parts, ignore_index=True)
    return out[[c for c in cols if c in out]].sort_values(["reference", "model", "min_freq_thz"]).reset_index(drop=True)


def imaginary_summary(table):
    """Counts per (reference, model): imaginary modes in the model only, DFT only, both."""
    import pandas as pd

    if table.empty:
        return pd.DataFrame(columns=["reference", "model", "model only", "DFT only", "both"])
    c = table.groupby(["reference", "model"])["imaginary_in"].value_counts().unstack(fill_value=0)
    for col in ("model only", "DFT only", "both"):
        if col not in c:
            c[col] = 0
    return c[["model only", "DFT only", "both"]].reset_index()


def fig_imaginary(models_: Sequence[str], pbesol_ids: Sequence[str] | None = None,
                  settings: PhononSettings = DEFAULT):
    """Minimum frequency, model (relaxed) against DFT, every material with results; negative =
    imaginary. Left PBEsol, right JaGeo PBE. Returns (fig, counts table)."""
    import matplotlib.pyplot as plt
    import pandas as pd

    from .. import plots

    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.8))
    rows = []
    for ax, (ref_name, t) in zip(axes, (("PBEsol (PhononDB)", ratio_table(PBESOL, pbesol_ids, models_, settings)),
                                        ("PBE (JaGeo 68)", ratio_table(PBE68, None, models_, settings)))):
        lines = []
        lo = -1.0
        for m in models_:
            sub = t[t["model"] == m] if not t.empty else t
            if sub.empty:
                continue
            x, y = sub["min_freq_thz_dft"].to_numpy(float), sub["min_freq_thz"].to_numpy(float)
            lo = min(lo, np.nanmin(x), np.nanmin(y))
            ax.scatter(x, y, s=16, alpha=0.65, lw=0, color=plots.color(m), label=plots.label(m))
            mi, di = y < IMAGINARY_THZ, x < IMAGINARY_THZ
            counts = {"model only": int((mi & ~di).sum()), "DFT only": int((~mi & di).sum()),
                      "both": int((mi & di).sum()), "n": len(sub)}
            rows.append({"reference": ref_name, "model": m, **counts})
            lines.append(f"{plots.label(m)} (n={counts['n']}): model only {counts['model only']}, "
                         f"DFT only {counts['DFT only']}, both {counts['both']}")
        lo = 1.08 * lo
        ax.axhline(IMAGINARY_THZ, color="0.5", lw=0.7, ls=":")
        ax.axvline(IMAGINARY_THZ, color="0.5", lw=0.7, ls=":")
        ax.plot([lo, 0.5], [lo, 0.5], color="0.4", lw=0.8, ls="--")
        ax.set_xlim(lo, 0.5)
        ax.set_ylim(lo, 0.5)
        ax.set_xlabel("DFT minimum frequency (THz; < 0: imaginary)")
        ax.set_ylabel("model minimum frequency after relaxation (THz)")
        ax.set_title(f"DFT: {ref_name}", fontsize=9.5)
        # the counts under the panel, never over the dense cluster near 0 THz
        ax.text(0.0, -0.2, "imaginary (< %.1f THz) in\n" % IMAGINARY_THZ + "\n".join(lines) if lines
                else "nothing cached yet", transform=ax.transAxes, va="top", ha="left", fontsize=8)
        if lines:
            ax.legend(loc="upper left", fontsize=8, bbox_to_anchor=(0.0, 1.0))
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def material_table(ids: Sequence[str], models_: Sequence[str], settings: PhononSettings = DEFAULT):
    """The PBEsol material list with, per model, the max-frequency ratio to DFT (``imag`` where
    the model has imaginary modes) or why there is none (missing = not cached yet, skipped,
    failed, no_dft_forces)."""
    from .. import plots

    t = selection_table(ids)
    cached_ = cached_table(PBESOL, ids, models_, settings)
    ratios = ratio_table(PBESOL, ids, models_, settings)
    status = {(r["model"], r["material_id"]): r["status"] for _, r in cached_.iterrows()} if not cached_.empty else {}
    dft_max = {r["material_id"]: r for _, r in cached_[cached_["model"] == "dft"].iterrows()} \
        if not cached_.empty else {}

    def dft_cell(mp_id):
        r = dft_max.get(mp_id)
        if r is None or r["status"] != "ok":
            return status.get(("dft", mp_id), "missing")
        return f"{r['max_freq_thz']:.2f}" + (" imag" if r.get("has_imaginary") else "")

    t["DFT max (THz)"] = [dft_cell(m) for m in t["mp_id"]]
    for m in models_:
        rr = {r["material_id"]: r for _, r in ratios[ratios["model"] == m].iterrows()} if not ratios.empty else {}
        col = []
        for mp_id in t["mp_id"]:
            if mp_id in rr:
                col.append(f"{rr[mp_id]['ratio']:.3f}" + (" imag" if rr[mp_id].get("has_imaginary") else ""))
            else:
                col.append(status.get((m, mp_id), "missing"))
        t[plots.label(m)] = col
    return t


# --------------------------------------------------------------------------------------
# beyond the paper: imaginary modes that depend on the finite-displacement amplitude
# --------------------------------------------------------------------------------------

SCAN_AMPLITUDES = (0.003, 0.01, 0.03, 0.1)  # Å; PhononDB's own displacements are 0.01 Å
SCAN_IDS = ("mp-1315", "mp-1541", "mp-24084", "mp-23259", "mp-1342", "mp-1784")  # MgS BeSe KH LiBr BaO CsF
SCAN_MODELS = tuple(models.tagged("scan"))  # the registry's tag
SCAN_KIND = "amplitude_scan"
SCAN_VERSION = 1
SCAN_COLUMNS = ["material_id", "formula", "model", "amplitude_A", "min_freq_thz", "max_freq_thz", "imaginary",
                "dft_min_freq_thz", "dft_max_freq_thz", "dft_amplitude_A", "status"]


def _scan_key(dataset: str, material_id: str) -> str:
    return f"{SCAN_KIND}__{dataset}__{material_id}"


def scan_settings_key(amplitudes: Sequence[float], settings: PhononSettings = DEFAULT) -> str:
    """The ``settings_key`` of an amplitude-scan record: the amplitudes, the phonon settings and
    the scan version (a change in any of them recomputes)."""
    return cache.key_of({"kind": SCAN_KIND, "version": SCAN_VERSION,
                         "amplitudes": [round(float(a), 9) for a in amplitudes], "settings": settings.key()})


def cached_scan(model: str, dataset: str, material_id: str, amplitudes: Sequence[float] = SCAN_AMPLITUDES,
                settings: PhononSettings = DEFAULT) -> dict | None:
    rec = store().get(_store_model(model), _scan_key(dataset, material_id))
    if rec is None or rec.get("settings_key") != scan_settings_key(amplitudes, settings):
        return None
    return rec


def scan_phonons(ref: datasets.PhononReference, model: str, amplitudes: Sequence[float] = SCAN_AMPLITUDES,
                 calc=None, settings: PhononSettings = DEFAULT) -> dict:
    """The model's phonons at the DFT unit cell (no relaxation) for several finite-displacement
    amplitudes: phonopy's own displacements of each amplitude, always as +/- pairs (so a residual
    force and the cubic anharmonicity cancel), all displaced supercells in one batched call.

    For a harmonic (or smoothly anharmonic) PES the frequencies do not depend on the amplitude;
    a force response that is not linear in the displacement shows up as amplitude-dependent
    frequencies and, where the response is too weak or reversed at small ``d``, imaginary modes.
    """
    from phonopy import Phonopy

    if calc is None:
        models.check_elements(model, set(ref.unitcell.get_chemical_symbols()))
    t0, c0 = time.time(), time.process_time()
    ase_calc = _resolve_calc(model, calc)
    path = band_path(ref.phonopy(with_forces=False).primitive, settings.band_npoints)
    phs, frames, counts = [], [], []
    for d in amplitudes:
        ph = Phonopy(atoms_to_phonopy(ref.unitcell), supercell_matrix=ref.supercell_matrix,
                     primitive_matrix=ref.primitive_matrix)
        ph.generate_displacements(distance=float(d), is_plusminus=True)
        fr = [phonopy_to_atoms(c) for c in ph.supercells_with_displacements]
        phs.append(ph)
        frames += fr
        counts.append(len(fr))
    t1 = time.time()
    forces = predict.predict(frames, model, batch_size=_batch_size(frames, ase_calc, settings), calc=ase_calc,
                             with_stress=False)["forces"]
    predict_wall = time.time() - t1
    scan, k = [], 0
    for d, ph, n in zip(amplitudes, phs, counts):
        ph.forces = np.array(forces[k:k + n])
        k += n
        _finish_fc(ph, settings)
        res = analyse(ph, path, settings)
        res.pop("_arrays")
        scan.append({"amplitude_A": float(d), "n_displacements": n,
                     **{key: res[key] for key in ("min_freq_thz", "max_freq_thz", "min_freq_mesh_thz",
                                                  "max_freq_mesh_thz", "min_freq_band_thz", "max_freq_band_thz")}})
    return {
        "kind": SCAN_KIND, "material_id": ref.material_id, "dataset": ref.dataset, "model": model,
        "model_id": getattr(ase_calc, "softening_model", model) if calc is not None else models.model_id(model),
        "formula": ref.formula, "status": "ok", "geometry": "DFT unit cell (no relaxation)",
        "amplitudes": [float(a) for a in amplitudes], "scan": scan,
        "n_atoms_supercell": len(frames[0]) if frames else 0, "n_structures_predicted": len(frames),
        "predict_wall_s": round(predict_wall, 3), "wall_s": round(time.time() - t0, 3),
        "cpu_s": round(time.process_time() - c0, 3),
        "phonon_settings_key": settings.key(), "settings_key": scan_settings_key(amplitudes, settings),
    }


def _scan_dft(ref, dataset: str, material_id: str, settings: PhononSettings, compute: bool) -> dict | None:
    """The cached DFT record (computed and stored like :func:`run` does when ``compute``)."""
    rec = cached("dft", dataset, material_id, settings)
    if rec is not None or not compute:
        return rec
    if ref is None:
        run(dataset, [material_id], [], settings, progress=False, compute=True)
        return cached("dft", dataset, material_id, settings)
    if _missing_forces(ref):
        return None
    rec, _ = dft_phonons(ref, settings)
    store().put("dft", _key(dataset, material_id), rec)
    return rec


def _reduced(formula: str | None) -> str | None:
    if not formula:
        return formula
    from ase.formula import Formula

    return str(Formula(formula).reduce()[0])


def amplitude_scan(material_ids: Sequence[Any], models_: Sequence[str], amplitudes: Sequence[float] = SCAN_AMPLITUDES,
                   dataset: str = PBESOL, compute: bool = True, calc=None, settings: PhononSettings = DEFAULT):
    """Minimum and maximum phonon frequency of each model at the DFT geometry, for each
    finite-displacement amplitude (:func:`scan_phonons`), with the DFT reference's own values.

    ``material_ids``: mp ids of ``dataset`` (or :class:`~softening_lib.datasets.PhononReference`
    objects, filed under their own dataset). Cached per (model, material) in the phonon store
    under ``amplitude_scan__<dataset>__<mp_id>``; the record holds the amplitudes and the settings,
    so a change of either recomputes. ``compute=False`` only reads the cache: materials not cached
    get one row with status ``missing`` (no numbers). ``calc`` overrides the registry calculator
    (for every model in ``models_``). Returns a tidy table, one row per (material, model, amplitude).
    """
    import pandas as pd

    amplitudes = [float(a) for a in amplitudes]
    st = store()
    rows: list[dict] = []
    for item in material_ids:
        ref = item if isinstance(item, datasets.PhononReference) else None
        mp_id = ref.material_id if ref is not None else str(item)
        ds = ref.dataset if ref is not None else dataset
        dft = _scan_dft(ref, ds, mp_id, settings, compute) or {}
        for model in models_:
            rec = cached_scan(model, ds, mp_id, amplitudes, settings)
            if rec is not None and compute and rec.get("status") == "failed":
                rec = None
            if rec is None and compute:
                try:
                    if ref is None:
                        ref = datasets.load(ds, subset=[mp_id])[0]
                    rec = scan_phonons(ref, model, amplitudes, calc=calc, settings=settings)
                except models.UnsupportedElementError as exc:
                    rec = {"status": "skipped", "reason": str(exc)}
                except Exception as exc:  # noqa: BLE001 - recorded, the scan goes on
                    log.warning("amplitude scan %s %s failed: %s", model, mp_id, exc)
                    rec = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
                if rec["status"] != "ok":
                    rec.update({"kind": SCAN_KIND, "material_id": mp_id, "dataset": ds, "model": model,
                                "amplitudes": amplitudes, "phonon_settings_key": settings.key(),
                                "settings_key": scan_settings_key(amplitudes, settings)})
                st.put(_store_model(model), _scan_key(ds, mp_id), rec)
            base = {"material_id": mp_id, "formula": _reduced((rec or {}).get("formula") or dft.get("formula")),
                    "model": model, "dft_min_freq_thz": dft.get("min_freq_thz", np.nan),
                    "dft_max_freq_thz": dft.get("max_freq_thz", np.nan),
                    "dft_amplitude_A": dft.get("displacement_amplitude", np.nan)}
            if rec is None or rec.get("status") != "ok":
                rows.append({**base, "amplitude_A": np.nan, "min_freq_thz": np.nan, "max_freq_thz": np.nan,
                             "imaginary": np.nan, "status": (rec or {}).get("status", "missing")})
                continue
            for s in rec["scan"]:
                rows.append({**base, "amplitude_A": s["amplitude_A"], "min_freq_thz": s["min_freq_thz"],
                             "max_freq_thz": s["max_freq_thz"], "imaginary": bool(s["min_freq_thz"] < IMAGINARY_THZ),
                             "status": "ok"})
    return pd.DataFrame(rows, columns=SCAN_COLUMNS)


def fig_amplitude_scan(table):
    """Left: the lowest phonon frequency (THz; < 0 = imaginary) against the finite-displacement
    amplitude (log axis), one line per (material, model): colour = material, line style and
    marker = model. Right: the maximum frequency over the DFT one. Dotted vertical line: the DFT
    reference's own amplitude."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from .. import plots

    fig, (ax, axr) = plt.subplots(1, 2, figsize=(11.0, 4.6), gridspec_kw={"width_ratios": [1.35, 1]})
    ok = table[table["status"] == "ok"] if not table.empty else table
    if ok.empty:
        for a in (ax, axr):
            a.text(0.5, 0.5, "nothing cached yet", transform=a.transAxes, ha="center")
        return fig
    mats = list(dict.fromkeys(ok["material_id"]))
    mods = list(dict.fromkeys(ok["model"]))
    cmap = plt.get_cmap("tab10")
    styles = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D")]
    for i, mp in enumerate(mats):
        for j, m in enumerate(mods):
            sub = ok[(ok["material_id"] == mp) & (ok["model"] == m)].sort_values("amplitude_A")
            if sub.empty:
                continue
            ls, mk = styles[j % len(styles)]
            kw = {"color": cmap(i % 10), "ls": ls, "marker": mk, "ms": 5, "lw": 1.4,
                  "mfc": "white" if j else cmap(i % 10)}
            ax.plot(sub["amplitude_A"], sub["min_freq_thz"], **kw)
            axr.plot(sub["amplitude_A"], sub["max_freq_thz"] / sub["dft_max_freq_thz"], **kw)
    amps = sorted(ok["amplitude_A"].unique())
    for a in (ax, axr):
        a.set_xscale("log")
        a.set_xticks(amps, [f"{x:g}" for x in amps])
        a.minorticks_off()
        a.set_xlabel("finite-displacement amplitude d (Å)")
        for d in sorted(set(ok["dft_amplitude_A"].dropna().round(6))):
            a.axvline(d, color="0.55", lw=0.8, ls=":", zorder=0)
    ax.axhline(0, color="0.3", lw=0.8)
    ax.axhline(IMAGINARY_THZ, color="0.6", lw=0.6, ls="--")
    ax.set_ylabel("lowest phonon frequency (THz; < 0: imaginary)")
    ax.set_title("lowest frequency at the DFT geometry", fontsize=9.5)
    axr.axhline(1, color="0.3", lw=0.8)
    axr.set_ylabel(r"$\omega_\max^{\rm model}(d) / \omega_\max^{\rm DFT}$")
    axr.set_title("highest frequency, relative to DFT", fontsize=9.5)
    first = ok.drop_duplicates("material_id").set_index("material_id")
    mat_handles = [Line2D([], [], color=cmap(i % 10), lw=2, label=f"{first.loc[mp, 'formula']} ({mp})")
                   for i, mp in enumerate(mats)]
    mod_handles = [Line2D([], [], color="0.2", ls=styles[j % len(styles)][0], marker=styles[j % len(styles)][1],
                          mfc="white" if j else "0.2", label=plots.label(m)) for j, m in enumerate(mods)]
    ymin = min(float(ok["min_freq_thz"].min()), -1.0)
    ax.set_ylim(1.1 * ymin, max(0.5, 0.08 * abs(ymin)))
    fig.tight_layout(rect=(0, 0.13, 1, 1))
    fig.legend(handles=mat_handles, loc="lower left", bbox_to_anchor=(0.01, 0.0), ncol=min(3, len(mat_handles)),
               fontsize=7.5, title="material (colour)", title_fontsize=8, frameon=False)
    fig.legend(handles=mod_handles + [Line2D([], [], color="0.55", ls=":", label="the DFT force sets' d")],
               loc="lower right", bbox_to_anchor=(0.99, 0.0), ncol=1 if len(mod_handles) > 2 else 2, fontsize=7.5,
               title="model (line style)", title_fontsize=8, frameon=False)
    return fig


def _scan_name(row) -> str:
    """'KH (mp-24084, missing)', or 'mp-24084 (missing)' where no formula is known."""
    f = row.get("formula")
    head = f"{f} ({row['material_id']}, " if isinstance(f, str) and f else f"{row['material_id']} ("
    return f"{head}{row['status']})"


def amplitude_note(table) -> str:
    """In words, from the numbers: per model, which materials have imaginary modes at the
    smallest amplitude that are gone at the largest, which keep them, which are stable at every
    amplitude, and how much the maximum frequency moves with the amplitude."""
    from .. import plots

    if table.empty:
        return "No amplitude scan in the cache yet (`python -m softening_lib compute --chapter 06 --model NAME --preset full` computes it)."
    out = []
    for model, grp in table.groupby("model", sort=False):
        ok = grp[grp["status"] == "ok"]
        parts = []
        if ok.empty:
            out.append(f"**{plots.label(model)}**: no scan in the cache. Not in the cache: "
                       + ", ".join(_scan_name(r) for _, r in grp.iterrows()) + ".")
            continue
        lose, keep, stable, mixed = [], [], [], []
        spreads = []
        for mp, sub in ok.groupby("material_id", sort=False):
            sub = sub.sort_values("amplitude_A")
            amps = sub["amplitude_A"].to_numpy(float)
            mins = sub["min_freq_thz"].to_numpy(float)
            maxs = sub["max_freq_thz"].to_numpy(float)
            imag = mins < IMAGINARY_THZ
            name = f"{sub['formula'].iloc[0]} ({mp})"
            dmin = float(sub["dft_min_freq_thz"].iloc[0])
            dft_txt = "" if not np.isfinite(dmin) else (
                f"; DFT {'also has' if dmin < IMAGINARY_THZ else 'has no'} imaginary mode"
                + (f", {dmin:.2f} THz" if dmin < IMAGINARY_THZ else ""))
            path = " / ".join(f"{0.0 if abs(x) < 0.005 else x:.2f}" for x in mins)  # no "-0.00"
            spreads.append((name, float(maxs.max() / maxs.min() - 1)))
            if imag.all():
                keep.append(f"{name}: {path} THz{dft_txt}")
            elif not imag.any():
                stable.append(name)
            elif imag[0] and not imag[-1]:
                first_ok = amps[np.flatnonzero(imag).max() + 1]  # stable from here to the largest d
                lose.append(f"{name}: {path} THz, none from {first_ok:g} Å on{dft_txt}")
            else:
                mixed.append(f"{name}: imaginary at " + ", ".join(f"{a:g}" for a in amps[imag]) + f" Å ({path} THz)")
        amps_txt = " / ".join(f"{a:g}" for a in sorted(ok["amplitude_A"].unique()))
        parts.append(f"**{plots.label(model)}** (lowest frequency at d = {amps_txt} Å).")
        if lose:
            parts.append("Imaginary modes at small amplitudes that disappear at larger ones: " + "; ".join(lose) + ".")
        if keep:
            parts.append("Imaginary at every amplitude: " + "; ".join(keep) + ".")
        if mixed:
            parts.append("Other patterns: " + "; ".join(mixed) + ".")
        if stable:
            parts.append("No imaginary mode at any amplitude: " + ", ".join(stable) + ".")
        worst = max(spreads, key=lambda x: x[1])
        parts.append(f"The maximum frequency changes with the amplitude by at most {100 * worst[1]:.1f} % "
                     f"({worst[0]}).")
        missing = grp[grp["status"] != "ok"]
        if not missing.empty:
            parts.append("Not in the cache: " + ", ".join(_scan_name(r) for _, r in missing.iterrows()) + ".")
        out.append(" ".join(parts))
    return "\n\n".join(out)


# --------------------------------------------------------------------------------------
# the task contract (softening_lib.task): cases / compute / reference
# --------------------------------------------------------------------------------------

PHONON_FIELDS = ("formula", "max_freq_thz", "min_freq_thz", "has_imaginary", "softening_scale_dft_disp",
                 "n_atoms_supercell", "wall_s")


def cases(preset: str = "default", *, n_pbesol: int = 240, amplitude_scan: bool | None = None) -> list[dict]:
    """The materials the chapter shows: smoke = :func:`smoke_ids` (PBEsol); default / full = the
    PBEsol list of Fig. 4b (:func:`pbesol_selection`, CsF first) and the 68 JaGeo PBE force sets.
    ``amplitude_scan`` (default: only with ``full``) adds the amplitude scan's materials
    (:data:`SCAN_IDS`; the chapter draws it for :data:`SCAN_MODELS`)."""
    if preset not in ("smoke", "default", "full"):
        raise ValueError(f"preset must be smoke, default or full, got {preset!r}")
    if preset == "smoke":
        plan = [(PBESOL, mp) for mp in smoke_ids()]
    else:
        sizes = pbesol_index().set_index("mp_id")["n_atoms_supercell"]
        # cheap first (a killed run has the most materials done), CsF (Fig. 4a) before everything
        pbesol = sorted(pbesol_selection(n_pbesol), key=lambda m: (m not in SHOWCASE, sizes.get(m, 0)))
        plan = [(PBESOL, mp) for mp in pbesol] + [(PBE68, mp) for mp in jageo_ids(cheap_first=True)]
    out = [{"id": f"{d}/{mp}", "kind": "phonons", "dataset": d, "material_id": mp} for d, mp in plan]
    if amplitude_scan if amplitude_scan is not None else preset == "full":
        out += [{"id": f"{SCAN_KIND}/{mp}", "kind": SCAN_KIND, "dataset": PBESOL, "material_id": mp} for mp in SCAN_IDS]
    return out


def _phonon_case(model: str, case: dict) -> dict:
    table = run(case["dataset"], [case["material_id"]], [model], progress=False, showcase=SHOWCASE)
    rows = table[table["model"] == model] if "model" in table else table.iloc[0:0]
    if not len(rows):
        raise RuntimeError("phonons.run returned no row")
    row = rows.iloc[0].to_dict()
    status = row.get("status")
    values = {k: row[k] for k in PHONON_FIELDS if k in row}
    if status == "ok":
        return values
    if status == "failed":
        raise RuntimeError(str(row.get("reason", "failed")))
    return {"status": "skipped", "reason": f"{status}: {row.get('reason', '')}", **values}


def _scan_case(model: str, case: dict) -> dict:
    table = amplitude_scan([case["material_id"]], [model], dataset=case["dataset"], compute=True)
    rows = table[table["model"] == model] if "model" in table else table.iloc[0:0]
    statuses = set(rows["status"]) if "status" in rows else {"ok"}
    if not len(rows) or statuses - {"ok"}:
        reasons = "; ".join(str(r) for r in rows.get("reason", [])) if len(rows) else "no row"
        return {"status": "skipped", "reason": f"{'/'.join(sorted(map(str, statuses)))}: {reasons}"}
    return {"min_freq_thz": float(rows["min_freq_thz"].min()), "max_freq_thz": float(rows["max_freq_thz"].max())}


def _case_cached(model: str, case: dict) -> bool:
    if case["kind"] == SCAN_KIND:
        return cached_scan(model, case["dataset"], case["material_id"]) is not None
    rec = cached(model, case["dataset"], case["material_id"])
    if rec is None or rec.get("status") == "failed":
        return False
    return not (case["material_id"] in SHOWCASE and rec.get("status") == "ok"
                and arrays_of(model, case["dataset"], case["material_id"]) is None)


def is_cached(model: str, case: dict) -> bool:
    """True when ``case``'s record for ``model`` is cached (the executor skips it before submitting)."""
    return _case_cached(model, case)


def cost(case: dict) -> float:
    """A model run's relative cost: supercell atoms x (2 x displacements + 1), from the cached DFT
    record (0 when unknown); the executor starts the most expensive first so the workers drain evenly."""
    if case.get("kind") != "phonons":
        return 0.0
    rec = cached("dft", case["dataset"], case["material_id"])
    if not rec or rec.get("status") != "ok":
        return 0.0
    return float(rec["n_atoms_supercell"] * (2 * rec["n_displacements"] + 1))


def compute(model: str, cases: Sequence[dict], *, calc=None, progress=None,
            cached_only: bool = False) -> list[dict]:
    """One record per material (and per amplitude-scan material): model phonons, cached per
    (model, material) in ``data/results/phonons``; the missing ones are computed (minutes each on
    one core for the larger supercells). ``calc`` is not supported: phonon records are filed under
    the registry's model id (give an import path for your own calculator). ``cached_only``: read
    the cache only (the chapter's "default" build); a missing material is a skipped record."""
    from .. import task

    if calc is not None:
        raise ValueError("phonons: pass the model as a registry name or import path, not a calculator")
    out = []
    for case in task.progress_iter(list(cases), progress, desc=f"phonons {model}"):
        fn = _scan_case if case["kind"] == SCAN_KIND else _phonon_case
        was_cached = _case_cached(model, case)
        if cached_only and not was_cached:
            out.append(task.record(case["id"], model, "skipped", "not in the cache (this preset reads it only)"))
            continue
        out.append(task.run_case(fn, case["id"], model, model, case, cached=was_cached,
                                 finite=("max_freq_thz",)))
    return out


def reference(*, n_pbesol: int = 240, **_: Any):
    """The DFT phonons (PhononDB PBEsol, JaGeo PBE) the ratios are taken against: the cached
    DFT records of the chapter's lists (computed from the force sets on the first model run)."""
    return cached_table(PBESOL, pbesol_selection(n_pbesol), models_=["dft"])


# --------------------------------------------------------------------------------------
# numbers the chapter's prose quotes (glued, never typed)
# --------------------------------------------------------------------------------------

def pbe103_top_quantiles(material_id: str = "mp-682") -> dict[str, Any]:
    """The two highest frequency quantiles of one PhononDB-PBE 103 compound (NaF, mp-682, by
    default) and this chapter's no-NAC PBEsol DFT maximum of the same material: for a polar
    compound the level-1 quantile far above the next one is the LO branch at Gamma *with* the
    non-analytical correction. Keys: ``formula``, ``top_thz``, ``next_thz``, ``next_level``
    (e.g. 0.9375 = 15/16), ``next_level_text`` ("15/16"), ``pbesol_max_thz`` (NaN if not cached)."""
    from fractions import Fraction

    q = datasets.load(PBE103)
    rows = q[q["material_id"] == material_id].sort_values("quantile_level")
    if rows.empty:
        return {}
    top = rows.iloc[-1]
    nxt = rows.iloc[-2] if len(rows) > 1 else top
    dft = cached("dft", PBESOL, material_id)
    level = float(nxt["quantile_level"])
    return {"formula": str(top["formula"]), "top_thz": float(top["freq_dft_THz"]),
            "next_thz": float(nxt["freq_dft_THz"]), "next_level": level,
            "next_level_text": str(Fraction(level).limit_denominator(64)),
            "pbesol_max_thz": float(dft["max_freq_thz"]) if dft and dft.get("max_freq_thz") is not None else float("nan")}


def dense_mesh_max(dataset: str = PBE68, material_id: str = "mp-31053", mesh: int = 16) -> dict[str, Any]:
    """The maximum frequency on a ``mesh``^3 Gamma-centred mesh over the whole zone from the
    stored DFT forces of one reference (Ag2S, mp-31053, by default), next to the reference's own
    table value (JaGeo: ``benchmark_max_frequency``): does the table's number come from these
    force constants? Keys: ``formula``, ``mesh``, ``mesh_max_thz``, ``table_max_thz``, ``rel_diff``."""
    ref = datasets.load(dataset, subset=[material_id])[0]
    ph = ref.phonopy(with_forces=True)
    _finish_fc(ph, DEFAULT)
    ph.run_mesh([mesh] * 3, is_gamma_center=True)
    fmax = float(np.max(ph.get_mesh_dict()["frequencies"]))
    table = float("nan")
    if dataset == PBE68:
        props = jageo_properties().set_index("material_id")
        table = float(props.loc[material_id, "benchmark_max_frequency"]) if material_id in props.index else table
    return {"formula": ref.formula, "mesh": mesh, "mesh_max_thz": fmax, "table_max_thz": table,
            "rel_diff": fmax / table - 1 if np.isfinite(table) else float("nan")}


def cubic_binary_summary(model: str, ids: Sequence[str], dataset: str = PBESOL,
                         example: str = "mp-2172") -> dict[str, Any]:
    """The rock-salt and zinc-blende binaries (space groups 225 and 216) among ``ids`` with a
    cached ``model`` record: how their softening scale on the DFT displacements (force-constant
    definition) compares with their maximum-frequency ratio at the DFT geometry (a harmonic PES
    scaled by ``s`` gives ``sqrt(s)``) and after relaxation (the paper's ratio). ``example``
    (AlAs, a zinc-blende III-V like chapter 7's GaAs) is reported on its own (``ex_*``)."""
    rows = []
    for mid in ids:
        rec = cached(model, dataset, mid)
        dft = cached("dft", dataset, mid)
        if not rec or not dft or rec.get("status", "ok") != "ok" or rec.get("softening_scale_dft_disp") is None:
            continue
        sg = str(rec.get("spacegroup_dft", ""))
        if not (sg.endswith("(225)") or sg.endswith("(216)")) or len(set(_formula_elements(rec["formula"]))) != 2:
            continue
        rows.append({"material_id": mid, "formula": rec["formula"], "s": float(rec["softening_scale_dft_disp"]),
                     "ratio_dft_geometry": rec["max_freq_at_dft_geometry_thz"] / dft["max_freq_thz"],
                     "ratio_relaxed": rec["max_freq_thz"] / dft["max_freq_thz"]})
    if not rows:
        return {"n": 0}
    s = np.array([r["s"] for r in rows])
    at = np.array([r["ratio_dft_geometry"] for r in rows])
    rel = np.array([r["ratio_relaxed"] for r in rows])
    out = {"n": len(rows), "s_min": float(s.min()), "s_max": float(s.max()), "s_median": float(np.median(s)),
           "ratio_dft_min": float(at.min()), "ratio_dft_max": float(at.max()),
           "ratio_dft_median": float(np.median(at)), "sqrt_s_median": float(np.median(np.sqrt(s.clip(0)))),
           "ratio_relaxed_min": float(rel.min()), "ratio_relaxed_max": float(rel.max()),
           "ratio_relaxed_median": float(np.median(rel)),
           "pearson_sqrt_s_ratio_dft": float(np.corrcoef(np.sqrt(s.clip(0)), at)[0, 1]) if len(rows) > 2 else float("nan")}
    ex = next((r for r in rows if r["material_id"] == example), None)
    if ex:
        out.update({"ex_formula": ex["formula"], "ex_s": ex["s"], "ex_sqrt_s": float(np.sqrt(max(ex["s"], 0))),
                    "ex_ratio_dft_geometry": ex["ratio_dft_geometry"], "ex_ratio_relaxed": ex["ratio_relaxed"]})
    return out


def _formula_elements(formula: str) -> list[str]:
    import re

    return re.findall(r"[A-Z][a-z]?", formula)
