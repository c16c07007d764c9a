"""Chapter 7: high-energy states and the softening scale (paper Fig. 5a, 5b).

For every (model, material) the task predicts forces on all DFT-labelled frames of that
material (through :func:`softening_lib.predict.predict_cached`) and stores one small JSON
record (:class:`~softening_lib.cache.ResultStore` ``"high_energy"``) holding

* the paper's numbers: softening scale ``s`` (slope through the origin of model against
  DFT force components, pooled over the material's frames), force MAE, cMAE;
* additive sufficient statistics per bin of ``|F_DFT|`` component (``sum xy``, ``sum xx``,
  ``n``), so the slope-vs-force-magnitude curve of any set of materials is exact;
* per-frame statistics and the held-out one-label correction of chapter 8 (fit ``c`` on
  one frame, score the others; :func:`softening_lib.correction.heldout_scores`).

The chapter renders from these records; a dataset is opened only for materials whose
record is missing. Datasets:

``wbm-he-figshare``  the paper's own deposited set (VASP, MP-compatible; needs the
                     figshare file, which is not mirrored offline)
``wbm-he-gpaw``      the paper's sampling protocol relabelled by this project with GPAW-PBE
``jageo-pbe-68``     near-equilibrium contrast: VASP-PBE phonon displaced supercells
``phonondb-pbesol``  near-equilibrium contrast: PhononDB PBEsol displaced supercells
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any, Iterable, Sequence

import numpy as np

from .. import cache, correction, datasets, metrics, models, predict

log = logging.getLogger(__name__)

TASK = "high_energy"
RECORD_VERSION = 1
# phonon-set records: version 2 = s from the force constants' harmonic forces -Phi u, the same
# definition as chapter 6's ``softening_scale_dft_disp`` (version 1 regressed raw forces with
# only the model's residual subtracted, which biased s low where the DFT cell has residual
# forces: wurtzites and other structures with free Wyckoff parameters)
PHONON_RECORD_VERSION = 2


def record_version(dataset: str) -> int:
    """The record version a cached record of ``dataset`` must carry to be used."""
    return PHONON_RECORD_VERSION if dataset in PHONON_SETS else RECORD_VERSION
HIGH_ENERGY = ("wbm-he-figshare", "wbm-he-gpaw")
TRAJECTORY = "wbm-he-trajectory-gpaw"  # Fig. 5a: many frames of one compound's 1000 K trajectory
FRAME_SETS = HIGH_ENERGY + (TRAJECTORY,)  # labelled frames read whole (not phonon force sets)
PHONON_SETS = ("jageo-pbe-68", "phonondb-pbesol")
DATASET_LABELS = {
    "wbm-he-figshare": "WBM high-energy states (paper, VASP-PBE(+U))",
    "wbm-he-gpaw": "WBM high-energy states (this project, GPAW-PBE)",
    TRAJECTORY: "one 1000 K MD trajectory (this project, GPAW-PBE)",
    "jageo-pbe-68": "phonon displacements, VASP-PBE (JaGeo 68)",
    "phonondb-pbesol": "phonon displacements, PhononDB VASP-PBEsol",
}
# |F_DFT| component bin edges (eV/A), shared by every record so bins add up across materials
BIN_EDGES = np.concatenate([[0.0], np.geomspace(1e-3, 30.0, 16), [np.inf]])


class NoDataError(RuntimeError):
    """A dataset (or the requested materials) is not available here."""


# --------------------------------------------------------------------------------------
# which materials
# --------------------------------------------------------------------------------------

def phonondb_subset(n: int = 100) -> list[str]:
    """A deterministic PhononDB-PBEsol subset: the first ``n`` of chapter 6's material list
    (CsF, the PBE-103 overlap, then the smallest supercells), so the chapters agree."""
    from . import phonons

    return phonons.pbesol_selection(n)


def material_ids(dataset: str, n: int | None = None) -> list[str]:
    """Material ids of ``dataset`` (cheap: reads only indices / labels), first ``n``."""
    if dataset == "jageo-pbe-68":
        import pandas as pd

        ids = list(pd.read_csv(datasets.locate(dataset, "index.csv"))["mp_id"])
    elif dataset == "phonondb-pbesol":
        ids = phonondb_subset(n or 100)
    elif dataset in FRAME_SETS:
        try:
            frames = datasets.load(dataset)
        except datasets.DatasetError as exc:
            raise NoDataError(str(exc)) from exc
        ids = list(dict.fromkeys(str(a.info["material_id"]) for a in frames))
    else:
        raise NoDataError(f"dataset {dataset!r} is not a force dataset of this chapter; "
                          f"choose from {FRAME_SETS + PHONON_SETS}")
    return ids[:n] if n is not None else ids


def availability(dataset: str) -> dict[str, Any]:
    """``{"available": bool, "n_materials": int, "n_frames": int, "reason": str}``."""
    try:
        if dataset in FRAME_SETS:
            frames = datasets.load(dataset)
            ids = {str(a.info["material_id"]) for a in frames}
            return {"available": bool(frames), "n_materials": len(ids), "n_frames": len(frames), "reason": ""}
        ids = material_ids(dataset)
        return {"available": True, "n_materials": len(ids), "n_frames": None, "reason": ""}
    except (datasets.DatasetError, NoDataError) as exc:
        return {"available": False, "n_materials": 0, "n_frames": 0, "reason": str(exc)}


def load_frames(dataset: str, ids: Sequence[str], progress: bool = False) -> tuple[list, dict[str, str]]:
    """Labelled frames of ``ids`` and ``{material_id: reason}`` for those without DFT forces."""
    skipped: dict[str, str] = {}
    frames: list = []
    if not ids:
        return frames, skipped
    if dataset in FRAME_SETS:
        try:
            frames = datasets.load(dataset, subset=list(ids))
        except datasets.DatasetError as exc:
            raise NoDataError(str(exc)) from exc
        found = {str(a.info["material_id"]) for a in frames}
        skipped.update({m: "not in the dataset" for m in ids if m not in found})
        return frames, skipped
    if dataset == "jageo-pbe-68":  # one upstream file appears under two ids
        dups = datasets.jageo_duplicates()
        skipped.update({m: dups[m] for m in ids if m in dups})
        ids = [m for m in ids if m not in dups]
    iterator: Iterable = ids
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(list(ids), desc=f"reading {dataset}", unit="material")
    for mp_id in iterator:
        try:
            ref = datasets.load(dataset, subset=[mp_id])[0]
        except datasets.DatasetError as exc:
            skipped[mp_id] = str(exc)
            continue
        ds = ref.displacement_dataset or {}
        first = ds.get("first_atoms") or []
        if not first or any("forces" not in d for d in first):
            skipped[mp_id] = "the reference holds no displaced supercells with DFT forces"
            continue
        frames.extend(phonon_frames(ref))
    return frames, skipped


def phonon_frames(ref) -> list:
    """Displaced supercells of a phonon reference (DFT forces attached) followed by the
    undisplaced supercell (``info["residual_reference"] = True``, zero DFT forces), whose
    model forces are subtracted from every displaced frame (see :func:`split_residual`)."""
    from ..phonopy_io import phonopy_to_atoms

    ph = ref.phonopy(with_forces=False)
    out = []
    for i, (cell, disp) in enumerate(zip(ph.supercells_with_displacements, ref.displacement_dataset["first_atoms"])):
        atoms = phonopy_to_atoms(cell)
        datasets.labelled(atoms, forces=disp["forces"], material_id=ref.material_id, frame_id=i,
                          dataset=ref.dataset, formula=ref.formula)
        out.append(atoms)
    perfect = phonopy_to_atoms(ph.supercell)
    datasets.labelled(perfect, forces=np.zeros((len(perfect), 3)), material_id=ref.material_id,
                      frame_id="perfect", dataset=ref.dataset, formula=ref.formula, residual_reference=True)
    out.append(perfect)
    return out


def split_residual(frames: Sequence, model_forces: Sequence[np.ndarray]) -> tuple[list, list, float | None]:
    """Drop the undisplaced reference frame and subtract its model forces from the others.

    Phonon displacement forces are small (0.01 Å displacements: |F| ~ 0.01-0.1 eV/Å); at the
    DFT geometry a model has its own residual forces (its minimum is elsewhere), which would
    swamp them. Subtracting the residual (as phonopy does for force constants) compares the
    harmonic force response. Returns (frames, model forces, max |residual| or None)."""
    ref = [i for i, a in enumerate(frames) if a.info.get("residual_reference")]
    if not ref:
        return list(frames), list(model_forces), None
    r = np.asarray(model_forces[ref[0]], dtype=float)
    keep = [i for i in range(len(frames)) if i not in ref]
    return ([frames[i] for i in keep], [np.asarray(model_forces[i], dtype=float) - r for i in keep],
            float(np.max(np.abs(r))))


def harmonic_response(ref, model_forces: Sequence[np.ndarray]) -> tuple[list, list]:
    """The harmonic forces ``-Phi u`` that the DFT force constants and the model's force
    constants (from ``model_forces`` on the DFT displaced supercells, in the reference's
    order) give for the reference's displacements: ``(dft, model)``.

    This is the one definition of a phonon set's softening scale in the book (chapter 6's
    ``softening_scale_dft_disp``, chapters 7 and 10): building force constants cancels the
    residual forces of *both* sides (phonopy's +/- displacement pairs and its symmetrisation),
    whereas subtracting only the model's residual from raw forces leaves the DFT residual in
    ``x``. PhononDB cells with free Wyckoff parameters (wurtzites) carry DFT residuals of
    ~0.01 eV/Å, as large as the displacement forces, and the raw regression then gives s far
    too low (CHGNet, wurtzite CdSe mp-1070: 0.107 from raw forces, 0.464 from force constants)."""
    from .phonons import DEFAULT, _finish_fc, harmonic_forces

    dft_ph = ref.phonopy(with_forces=True)
    _finish_fc(dft_ph, DEFAULT)
    model_ph = ref.phonopy(with_forces=False)
    model_ph.forces = np.array([np.asarray(f, dtype=float) for f in model_forces])
    _finish_fc(model_ph, DEFAULT)
    return (harmonic_forces(dft_ph.force_constants, ref.displacement_dataset),
            harmonic_forces(model_ph.force_constants, ref.displacement_dataset))


# --------------------------------------------------------------------------------------
# one record per (model, material)
# --------------------------------------------------------------------------------------

def data_hash(frames: Sequence) -> str:
    """Hash of geometries and DFT forces (a record is stale when either changes)."""
    h = hashlib.sha256(predict.geometry_hash(frames).encode())
    for atoms in frames:
        h.update(np.round(np.asarray(atoms.get_forces(), dtype=float), 6).tobytes())
    return h.hexdigest()[:16]


def binned_sums(x: np.ndarray, y: np.ndarray, edges: np.ndarray = BIN_EDGES) -> dict[str, list]:
    """Additive per-bin sums of ``|x|``-binned components: n, sum xy, sum xx, sum |y - x|."""
    ax = np.abs(x)
    idx = np.digitize(ax, edges[1:-1])  # bin i holds edges[i] <= |x| < edges[i+1]
    nb = len(edges) - 1
    return {
        "n": np.bincount(idx, minlength=nb).tolist(),
        "sxy": np.bincount(idx, weights=x * y, minlength=nb).tolist(),
        "sxx": np.bincount(idx, weights=x * x, minlength=nb).tolist(),
        "sabs": np.bincount(idx, weights=np.abs(y - x), minlength=nb).tolist(),
    }


def material_record(dft_forces: Sequence[np.ndarray], model_forces: Sequence[np.ndarray], *,
                    model: str, dataset: str, material_id: str, formula: str = "",
                    frame_ids: Sequence | None = None) -> dict:
    """Every number chapters 7-8 need for one (model, material)."""
    x, y = metrics._pair(list(dft_forces), list(model_forces))
    rec: dict[str, Any] = {
        "version": record_version(dataset), "model": model, "model_id": models.model_id(model) if model in models.REGISTRY else model,
        "dataset": dataset, "material_id": material_id, "formula": formula,
        "n_frames": len(dft_forces), "n_atoms": int(np.asarray(dft_forces[0]).shape[0]),
        "frame_ids": [str(f) for f in (frame_ids if frame_ids is not None else range(len(dft_forces)))],
    }
    try:
        rec.update(metrics.force_metrics(x, y))
        rec["c_all"] = correction.fit_scale(x, y)
        rec["mae_corrected_all"] = float(np.mean(np.abs(rec["c_all"] * y - x)))
    except metrics.MetricError as exc:
        rec["error"] = str(exc)
    rec["bins"] = {"edges": [float(e) for e in BIN_EDGES[:-1]] + ["inf"], **binned_sums(x, y)}
    rec["frames"] = [vars(s) for s in correction.frame_stats(dft_forces, model_forces)]
    if len(dft_forces) >= 2 and "error" not in rec:
        rec["heldout"] = correction.heldout_scores(dft_forces, model_forces)
    return rec


def store() -> cache.ResultStore:
    return cache.ResultStore(TASK)


def _key(dataset: str, material_id: str) -> str:
    return f"{dataset}__{material_id}"


def _store_model(model: str) -> str:
    return models.model_id(model) if model in models.REGISTRY else model


def cached_record(model: str, dataset: str, material_id: str) -> dict | None:
    rec = store().get(_store_model(model), _key(dataset, material_id))
    if rec is None or rec.get("version") != record_version(dataset):
        return None
    return rec


def parity_path(model: str, dataset: str, material_id: str):
    return store().root / "parity" / cache._safe(dataset) / cache._safe(_store_model(model)) / f"{cache._safe(material_id)}.npz"


def compute_dataset(dataset: str, models_: Sequence[str], ids: Sequence[str] | None = None, *,
                    progress: bool = True, verify: bool = False, parity: Sequence[str] = (),
                    batch_size: int = 1, frames: Sequence | None = None, calc=None) -> dict[str, dict[str, str]]:
    """Fill the record store for ``models_`` x ``ids`` of ``dataset`` (missing ones only).

    Frames are read only for materials with a missing record (all of them when ``verify``,
    which also recomputes records whose data hash changed). Materials listed in ``parity``
    also get their force components saved (``parity_path``) for the parity figures.
    ``frames`` (labelled Atoms with ``info["material_id"]``) replaces reading ``dataset``:
    any user data set (chapter 11) goes through the same records under its own name.
    ``calc`` (one model only) replaces the registry calculator; the model name is then its label.
    Returns ``{model: {material_id: reason}}`` of what was skipped.
    """
    if frames is not None and ids is None:
        ids = list(dict.fromkeys(str(a.info["material_id"]) for a in frames))
    ids = list(ids) if ids is not None else material_ids(dataset)
    skipped: dict[str, dict[str, str]] = {m: {} for m in models_}
    todo = sorted({mid for m in models_ for mid in ids
                   if verify or cached_record(m, dataset, mid) is None
                   or (mid in parity and not parity_path(m, dataset, mid).is_file())})
    if not todo:
        return skipped
    if frames is None:
        frames, unreadable = load_frames(dataset, todo, progress=progress)
    else:
        frames = [a for a in frames if str(a.info["material_id"]) in set(todo)]
        unreadable = {}
    for m in models_:
        skipped[m].update(unreadable)
    by_material: dict[str, list] = {}
    for atoms in frames:
        by_material.setdefault(str(atoms.info["material_id"]), []).append(atoms)
    for model in models_:
        need = [mid for mid in todo if mid in by_material and (
            verify or cached_record(model, dataset, mid) is None
            or (mid in parity and not parity_path(model, dataset, mid).is_file()))]
        if verify:
            need = [mid for mid in need if (cached_record(model, dataset, mid) or {}).get("data_hash")
                    != data_hash(by_material[mid]) or (mid in parity and not parity_path(model, dataset, mid).is_file())]
        if not need:
            continue
        sub = [a for mid in need for a in by_material[mid]]
        preds = predict.predict_cached(sub, model, dataset, progress=progress, batch_size=batch_size,
                                       with_stress=False, calc=calc, cache_tag=model if calc is not None else None)
        skipped[model].update(predict.skipped_materials(model, dataset))
        pred_by: dict[str, list[dict]] = {}
        for p in preds:
            pred_by.setdefault(str(p["material_id"]), []).append(p)
        for mid in need:
            if mid not in pred_by:
                continue
            fr, mod, residual = split_residual(by_material[mid], [p["forces"] for p in pred_by[mid]])
            dft = dft_raw = [np.asarray(a.get_forces(), dtype=float) for a in fr]
            s_resid = None
            if residual is not None and dataset in PHONON_SETS:  # one definition: force constants
                try:
                    s_resid = metrics.softening_scale(dft, mod)
                except metrics.MetricError:
                    pass
                dft, mod = harmonic_response(datasets.load(dataset, subset=[mid])[0], mod)
            rec = material_record(dft, mod, model=model, dataset=dataset, material_id=mid,
                                  formula=str(fr[0].info.get("formula", fr[0].get_chemical_formula(mode="metal"))),
                                  frame_ids=[a.info.get("frame_id", i) for i, a in enumerate(fr)])
            rec["data_hash"] = data_hash(by_material[mid])
            rec["residual_subtracted"] = residual is not None
            if residual is not None:  # the same numbers without subtracting the model's residual
                raw = [np.asarray(p["forces"], dtype=float) for p, a in zip(pred_by[mid], by_material[mid])
                       if not a.info.get("residual_reference")]
                try:
                    rec["softening_scale_raw"] = metrics.softening_scale(dft_raw, raw)
                    rec["mae_raw"] = metrics.mae(dft_raw, raw)
                except metrics.MetricError:
                    pass
            rec["max_abs_residual"] = residual
            if s_resid is not None:  # the version-1 number: raw forces, model residual subtracted
                rec["softening_scale_resid"] = s_resid
            rec["s_definition"] = ("harmonic forces -Phi u of the DFT and model force constants"
                                   if residual is not None and dataset in PHONON_SETS else "raw force components")
            store().put(_store_model(model), _key(dataset, mid), rec)
            if mid in parity:
                cache.save_arrays(parity_path(model, dataset, mid), dft=np.concatenate(dft), model=np.concatenate(mod),
                                  frame=np.concatenate([np.full(len(f), i) for i, f in enumerate(dft)]))
    return skipped


# --------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------

def material_table(dataset: str, models_: Sequence[str], ids: Sequence[str] | None = None):
    """One row per (model, material) with s, MAE, cMAE (from the record store)."""
    import pandas as pd

    rows = []
    for model in models_:
        for rec in store().records(_store_model(model)):
            if rec.get("dataset") != dataset or rec.get("version") != record_version(dataset):
                continue
            if ids is not None and rec["material_id"] not in set(ids):
                continue
            rows.append({k: rec.get(k) for k in (
                "model", "dataset", "material_id", "formula", "n_frames", "n_atoms", "softening_scale",
                "mae", "cmae", "rmse", "mean_abs_dft", "c_all", "mae_corrected_all", "softening_scale_raw",
                "mae_raw", "max_abs_residual", "error")})
            rows[-1]["model"] = model
    cols = ["model", "dataset", "material_id", "formula", "n_frames", "n_atoms", "softening_scale", "mae",
            "cmae", "rmse", "mean_abs_dft", "c_all", "mae_corrected_all", "softening_scale_raw", "mae_raw",
            "max_abs_residual", "error"]
    return pd.DataFrame(rows, columns=cols)


def records(dataset: str, models_: Sequence[str], ids: Sequence[str] | None = None) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    want = set(ids) if ids is not None else None
    for model in models_:
        out[model] = [r for r in store().records(_store_model(model))
                      if r.get("dataset") == dataset and r.get("version") == record_version(dataset)
                      and (want is None or r["material_id"] in want) and "error" not in r]
    return out


def summary(table, group: Sequence[str] = ("model",)):
    """Per model: number of materials, median / mean s, fraction with s < 1, median MAE/cMAE."""
    import pandas as pd

    ok = table[table["softening_scale"].notna()]
    rows = []
    for key, g in ok.groupby(list(group), sort=False):
        s = g["softening_scale"].to_numpy(float)
        rows.append({**dict(zip(group, key if isinstance(key, tuple) else (key,))),
                     "n_materials": len(g), "s_median": float(np.median(s)), "s_mean": float(np.mean(s)),
                     "fraction_s_below_1": float(np.mean(s < 1)),
                     "mae_median": float(g["mae"].median()), "cmae_median": float(g["cmae"].median()),
                     "mae_mean": float(g["mae"].mean()), "cmae_mean": float(g["cmae"].mean())})
    return pd.DataFrame(rows)


def pooled_binned_slope(recs: Sequence[dict], min_n: int = 30):
    """Softening scale per ``|F_DFT|`` bin, pooled over records (exact: sums add up)."""
    import pandas as pd

    if not recs:
        return pd.DataFrame(columns=["lo", "hi", "n", "slope", "mae"])
    n = np.sum([r["bins"]["n"] for r in recs], axis=0)
    sxy = np.sum([r["bins"]["sxy"] for r in recs], axis=0)
    sxx = np.sum([r["bins"]["sxx"] for r in recs], axis=0)
    sabs = np.sum([r["bins"]["sabs"] for r in recs], axis=0)
    edges = BIN_EDGES
    rows = []
    for i in range(len(n)):
        if n[i] < min_n or sxx[i] == 0:
            continue
        rows.append({"lo": float(edges[i]), "hi": float(edges[i + 1]), "n": int(n[i]),
                     "slope": float(sxy[i] / sxx[i]), "mae": float(sabs[i] / n[i])})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------

def _fmt(value: float) -> str:
    """3 decimals for eV/Å-sized errors, 3 significant digits for the tiny phonon ones."""
    return f"{value:.3f}" if abs(value) >= 0.01 else f"{value:.2e}"


def fig5a(dataset: str, material_id: str, models_: Sequence[str], compute_missing: bool = True):
    """Force parity for one material, one panel per model, s / MAE / cMAE in the legend."""
    import matplotlib.pyplot as plt
    import pandas as pd

    from .. import plots

    if compute_missing:
        compute_dataset(dataset, models_, [material_id], parity=[material_id], progress=False)
    panels = []
    for model in models_:
        arr = cache.load_arrays(parity_path(model, dataset, material_id))
        rec = cached_record(model, dataset, material_id)
        if arr is not None and rec is not None and "error" not in rec:
            panels.append((model, arr, rec))
    if not panels:
        raise NoDataError(f"no cached forces for {material_id} in {dataset}; run compute_dataset(..., parity=[{material_id!r}])")
    ncol = 1 if len(panels) == 1 else 2  # legible at page width: at most two panels per row
    nrow = (len(panels) + ncol - 1) // ncol
    fig, grid = plt.subplots(nrow, ncol, figsize=(3.7 * ncol, 3.7 * nrow), squeeze=False)
    for extra in grid.ravel()[len(panels):]:
        extra.set_visible(False)
    axes = [list(grid.ravel()[:len(panels)])]
    lim_hi = max(float(np.max(np.abs(np.concatenate([a["dft"], a["model"]])))) for _, a, _ in panels) * 1.05
    rows = []
    for ax, (model, arr, rec) in zip(axes[0], panels):
        s = rec["softening_scale"]
        plots.parity(ax, arr["dft"], arr["model"], model=model, xlabel="DFT force (eV/Å)",
                     ylabel="model force (eV/Å)" if ax.get_subplotspec().is_first_col() else "",
                     lim=(-lim_hi, lim_hi),
                     s=5, alpha=0.4)
        plots.slope_line(ax, s, (-lim_hi, lim_hi), model)
        ax.set_title(plots.label(model), fontsize=10)
        ax.legend([f"s = {s:.3f}\nMAE = {_fmt(rec['mae'])} eV/Å\ncMAE = {_fmt(rec['cmae'])} eV/Å"],
                  loc="upper left", fontsize=9.5, handlelength=0, handletextpad=0)
        rows.append({"model": model, "material_id": material_id, "formula": rec["formula"],
                     "n_frames": rec["n_frames"], "n_components": rec["n_components"],
                     "softening_scale": s, "mae": rec["mae"], "cmae": rec["cmae"]})
    fig.suptitle(f"{panels[0][2]['formula']} ({material_id}), {DATASET_LABELS.get(dataset, dataset)}", fontsize=10)
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def fig5b(tables: dict[str, Any], bins: int = 30):
    """Histogram of per-material softening scales, one panel per dataset, one line per model.

    ``tables``: ``{dataset: material_table(...)}``. Returns the figure and a summary table
    (fraction of materials with s < 1 per model and dataset).
    """
    import matplotlib.pyplot as plt
    import pandas as pd

    from .. import plots

    tables = {d: t for d, t in tables.items() if t is not None and len(t.dropna(subset=["softening_scale"]))}
    if not tables:
        raise NoDataError("no per-material softening scales to plot")
    fig, grid = plt.subplots(len(tables), 1, figsize=(7.2, 2.7 * len(tables) + 0.6), squeeze=False)
    axes = [list(grid[:, 0])]  # one data set per row: legible at page width
    rows = []
    for ax, (dataset, table) in zip(axes[0], tables.items()):
        ok = table.dropna(subset=["softening_scale"])
        vals = {m: g["softening_scale"].to_numpy(float) for m, g in ok.groupby("model", sort=False)}
        allv = np.concatenate(list(vals.values()))
        lo, hi = np.quantile(allv, [0.005, 0.995])
        edges = np.linspace(min(lo, 0.5), max(hi, 1.1), bins + 1)
        plots.histogram(ax, {m: np.clip(v, edges[0], edges[-1]) for m, v in vals.items()}, bins=edges,
                        xlabel="softening scale s")
        lines = []
        for m, v in vals.items():
            frac = float(np.mean(v < 1))
            lines.append(f"{plots.label(m)}: {100 * frac:.0f} %")
            rows.append({"dataset": dataset, "model": m, "n_materials": len(v), "fraction_s_below_1": frac,
                         "s_median": float(np.median(v))})
        ax.set_title(f"{DATASET_LABELS.get(dataset, dataset)} ({len(ok['material_id'].unique())} materials)",
                     fontsize=10, loc="left")
        # the fractions beside the panel, never over the bars
        ax.text(1.02, 1.0, "share with s < 1:\n" + "\n".join(lines), transform=ax.transAxes, va="top", ha="left",
                fontsize=8.5)
        if ax is not axes[0][-1]:
            ax.set_xlabel("")
    handles, labels_ = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels_, loc="upper center", ncol=2, fontsize=9, bbox_to_anchor=(0.4, 0.0))
    fig.tight_layout(rect=(0, 0.03, 0.72, 1))
    return fig, pd.DataFrame(rows)


def fig5a_interactive(dataset: str, material_id: str, models_: Sequence[str], max_points: int = 6000):
    """Fig. 5a as an interactive plotly scatter (all models overlaid; hover: frame, atom,
    Cartesian component, fitted s of the model). Reads the parity arrays :func:`fig5a` uses."""
    import pandas as pd

    from .. import plots

    parts = []
    for model in models_:
        arr = cache.load_arrays(parity_path(model, dataset, material_id))
        rec = cached_record(model, dataset, material_id)
        if arr is None or rec is None or "error" in rec:
            continue
        dft, mod, frame = np.asarray(arr["dft"]), np.asarray(arr["model"]), np.asarray(arr["frame"])
        atom = np.concatenate([np.arange(np.sum(frame == f)) for f in np.unique(frame)])
        parts.append(pd.DataFrame({
            "F_DFT": dft.ravel(), "F_model": mod.ravel(), "model": model,
            "frame": np.repeat(frame, 3), "atom": np.repeat(atom, 3),
            "component": np.tile(["x", "y", "z"], len(dft)), "s": f"{rec['softening_scale']:.3f}",
            "material_id": material_id, "formula": rec["formula"]}))
    if not parts:
        raise NoDataError(f"no cached forces for {material_id} in {dataset}; run compute_dataset(..., parity=[{material_id!r}])")
    table = pd.concat(parts, ignore_index=True)
    formula = cached_record(str(table["model"].iloc[0]), dataset, material_id)["formula"]
    return plots.parity_interactive(
        table, "F_DFT", "F_model", hover=["material_id", "formula", "frame", "atom", "component", "s"],
        max_points=max_points, xlabel="DFT force component (eV/Å)", ylabel="model force component (eV/Å)",
        title=f"{formula} ({material_id}), {DATASET_LABELS.get(dataset, dataset)}")


def fig5b_interactive(tables: dict[str, Any], nbins: int = 40):
    """Fig. 5b as interactive histograms (one row per data set, one colour per model); a rug
    under each histogram shows every material, hover gives its id, formula and s."""
    from plotly.subplots import make_subplots

    from .. import plots

    tables = {d: t.dropna(subset=["softening_scale"]) for d, t in tables.items() if t is not None}
    tables = {d: t for d, t in tables.items() if len(t)}
    if not tables:
        raise NoDataError("no per-material softening scales to plot")
    allv = np.concatenate([t["softening_scale"].to_numpy(float) for t in tables.values()])
    lo, hi = min(float(np.quantile(allv, 0.005)), 0.5), max(float(np.quantile(allv, 0.995)), 1.1)
    size = (hi - lo) / nbins  # one set of bins for every model and data set, as in fig5b
    fig = make_subplots(rows=len(tables), cols=1, shared_xaxes=True, vertical_spacing=0.12, subplot_titles=[
        f"{DATASET_LABELS.get(d, d)} ({t['material_id'].nunique()} materials)" for d, t in tables.items()])
    seen: set[str] = set()
    for row, (dataset, table) in enumerate(tables.items(), start=1):
        groups = {m: g for m, g in table.groupby("model", sort=False)}
        one = plots.interactive_histogram(
            {m: g["softening_scale"].to_numpy(float) for m, g in groups.items()}, xlabel="softening scale s",
            nbins=nbins, vline=None,
            hover_ids={m: [f"{r.material_id} {r.formula}" for r in g.itertuples()] for m, g in groups.items()})
        group = None
        for trace in one.data:  # a histogram, then (if any) its rug of materials
            if trace.type == "histogram":
                trace.xbins = {"start": lo, "end": hi + size, "size": size}
                trace.x = np.clip(np.asarray(trace.x, dtype=float), lo, hi)
                group = trace.name
            trace.legendgroup = group
            if trace.showlegend is not False:
                trace.showlegend = trace.name not in seen
                seen.add(trace.name)
            fig.add_trace(trace, row=row, col=1)
        fig.update_xaxes(title_text="softening scale s" if row == len(tables) else None, showticklabels=True,
                         row=row, col=1)
        fig.update_yaxes(title_text="materials", row=row, col=1)
    fig.update_xaxes(range=[lo - size, hi + size])
    fig.add_vline(x=1.0, line_dash="dash", line_color="black", line_width=1.5, row="all", col=1)
    fig.update_layout(barmode="overlay", template="simple_white", height=120 + 300 * len(tables))
    return fig


def fig_binned_slope(recs_by_dataset: dict[str, dict[str, list[dict]]], min_n: int = 100):
    """Beyond the paper: softening scale vs |F_DFT| (pooled within bins), per model and dataset.

    One panel per data set (one line per model, colour = model), bins with fewer than
    ``min_n`` force components dropped (their slopes are noise), the y range set by the bins
    kept. The table holds every bin with its count."""
    import matplotlib.pyplot as plt
    import pandas as pd

    from .. import plots

    tabs = {}
    for dataset, recs in recs_by_dataset.items():
        for model, rs in recs.items():
            tab = pooled_binned_slope(rs, min_n=min_n)
            if not tab.empty:
                tabs[(dataset, model)] = tab
    datasets_ = list(dict.fromkeys(d for d, _ in tabs)) or list(recs_by_dataset)[:1]
    fig, grid = plt.subplots(len(datasets_), 1, figsize=(7.0, 2.5 * len(datasets_) + 0.7), squeeze=False,
                             sharex=True)
    rows, handles = [], {}
    slopes = np.concatenate([t["slope"].to_numpy(float) for t in tabs.values()]) if tabs else np.array([1.0])
    lo, hi = min(0.5, float(np.quantile(slopes, 0.02)) - 0.05), max(1.1, float(np.quantile(slopes, 0.98)) + 0.05)
    for ax, dataset in zip(grid[:, 0], datasets_):
        for (d, model), tab in tabs.items():
            if d != dataset:
                continue
            centre = np.sqrt(tab["lo"].clip(lower=5e-4) * tab["hi"].replace(np.inf, 60.0))
            (line,) = ax.plot(centre, tab["slope"], marker="o", ms=4, lw=1.6, color=plots.color(model),
                              label=plots.label(model))
            handles.setdefault(plots.label(model), line)
            rows.append(tab.assign(model=model, dataset=dataset))
        ax.axhline(1.0, color="0.4", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_ylim(lo, hi)
        ax.set_title(DATASET_LABELS.get(dataset, dataset), fontsize=10, loc="left")
        ax.set_ylabel("slope in bin")
    grid[-1, 0].set_xlabel("|F_DFT| per component (eV/Å), bin centre")
    fig.legend(list(handles.values()), list(handles), loc="upper center", ncol=2, fontsize=9,
               bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout()
    return fig, (pd.concat(rows, ignore_index=True) if rows else pd.DataFrame())


# --------------------------------------------------------------------------------------
# beyond the paper: is a model harmonic at phonon-sized displacements?
# --------------------------------------------------------------------------------------

RESPONSE_AMPLITUDES = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


def displacement_response(model: str, atoms, atom_index: int = 0, direction=(1.0, 0.0, 0.0),
                          amplitudes: Sequence[float] = RESPONSE_AMPLITUDES, calc=None):
    """Effective self force constant ``k(d) = -(F_i(d) - F_i(0)) . n / d`` (eV/Å²) of atom
    ``i`` moved by ``d`` along ``n``, for several amplitudes ``d``.

    A smooth PES is harmonic near a minimum, so ``k`` is the same at every small ``d``; a
    ``k`` that changes with ``d`` means the force response at a phonon displacement (0.01 Å)
    is not the curvature of the PES, and the softening scale of a phonon set then measures
    that non-harmonicity, not a uniform softening."""
    import pandas as pd

    n = np.asarray(direction, dtype=float)
    n /= np.linalg.norm(n)
    frames = [atoms.copy()]
    for d in amplitudes:
        moved = atoms.copy()
        moved.positions[atom_index] += d * n
        frames.append(moved)
    forces = predict.predict(frames, model, with_stress=False, calc=calc)["forces"]
    f0 = np.asarray(forces[0][atom_index], dtype=float)
    return pd.DataFrame({"model": model, "amplitude": list(amplitudes), "k_eff": [
        float(-(np.asarray(f[atom_index], dtype=float) - f0) @ n / d) for f, d in zip(forces[1:], amplitudes)]})


def fig_displacement_response(dataset: str, material_id: str, models_: Sequence[str], min_length: float = 10.0,
                              amplitudes: Sequence[float] = RESPONSE_AMPLITUDES):
    """``k(d)`` of every model for the first displaced atom of a phonon reference, in the DFT
    unit cell repeated to ``min_length`` Å, with the DFT value of its 0.01 Å displacement."""
    import matplotlib.pyplot as plt
    import pandas as pd

    from .. import plots

    ref = datasets.load(dataset, subset=[material_id])[0]
    disp = ref.displacement_dataset["first_atoms"][0]
    dvec = np.asarray(disp["displacement"], dtype=float)
    k_dft = float(-np.asarray(disp["forces"])[disp["number"]] @ dvec / (dvec @ dvec))
    # the displaced supercell atom is an image of one unit-cell atom: move that one
    ph = ref.phonopy(with_forces=False)
    unit_index = int(ph.supercell.u2u_map[ph.supercell.s2u_map[disp["number"]]])
    reps = [max(1, int(np.ceil(min_length / length))) for length in ref.unitcell.cell.lengths()]
    cell = ref.unitcell.repeat(reps)
    rows = [displacement_response(m, cell, unit_index, dvec, amplitudes) for m in models_]
    table = pd.concat(rows, ignore_index=True)
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    for model, g in table.groupby("model", sort=False):
        ax.plot(g["amplitude"], g["k_eff"], marker="o", ms=4, color=plots.color(model), label=plots.label(model))
    ax.axhline(k_dft, color="k", ls="--", lw=1, label="DFT (0.01 Å, phonopy supercell)")
    ax.set_ylim(min(0.0, 1.1 * float(table["k_eff"].min())), 1.12 * max(k_dft, float(table["k_eff"].max())))
    ax.set_xscale("log")
    ax.set_xlabel("displacement d (Å)")
    ax.set_ylabel("k(d) = -ΔF/d (eV/Å²)")
    ax.set_title(f"{ref.formula} ({material_id}), atom {unit_index} of the unit cell, {len(cell)}-atom cell", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    table["k_dft_0.01"] = k_dft
    table["k_ratio"] = table["k_eff"] / k_dft
    return fig, table


# --------------------------------------------------------------------------------------
# presets: which materials the book computes
# --------------------------------------------------------------------------------------

def jageo_by_cost(n: int | None = None) -> list[str]:
    """JaGeo-68 ids with DFT forces, cheapest first (supercell atoms x displacements);
    upstream duplicates (:func:`softening_lib.datasets.jageo_duplicates`) left out."""
    import pandas as pd

    tab = pd.read_csv(datasets.locate("jageo-pbe-68", "index.csv"))
    tab = tab[(tab["n_displacements"] > 0) & ~tab["mp_id"].isin(list(datasets.jageo_duplicates()))].copy()
    det = [round(abs(np.linalg.det(np.array([[float(v) for v in row.split()] for row in s.split("/")]))))
           for s in tab["supercell_matrix_rows"]]
    tab["cost"] = tab["n_atoms_primitive"].to_numpy() * np.array(det) * tab["n_displacements"].to_numpy()
    tab["_num"] = tab["mp_id"].str.extract(r"(\d+)")[0].astype(int)
    ids = list(tab.sort_values(["cost", "_num"])["mp_id"])
    return ids[:n] if n is not None else ids


PRESET_SIZES = {
    # dataset: (smoke, default, full); None = all
    "wbm-he-gpaw": (2, None, None),
    "wbm-he-figshare": (2, 100, None),
    "phonondb-pbesol": (2, 40, 240),
    "jageo-pbe-68": (1, 12, None),
}


def preset_ids(dataset: str, preset: str = "default") -> list[str]:
    """The deterministic material list of ``dataset`` for a chapter preset."""
    n = PRESET_SIZES[dataset][("smoke", "default", "full").index(preset)]
    if dataset == "jageo-pbe-68":
        return jageo_by_cost(n)
    if dataset == "phonondb-pbesol":
        return phonondb_subset(n)
    return material_ids(dataset, n)


def parity_choice(dataset: str, ids: Sequence[str]) -> list[str]:
    """Materials whose force components are kept for parity plots: all high-energy ones
    (small cells), the first one of a phonon set."""
    return list(ids) if dataset in HIGH_ENERGY else list(ids[:1])


# --------------------------------------------------------------------------------------
# the task contract (softening_lib.task): cases / compute / reference
# --------------------------------------------------------------------------------------

ALL_DATASETS = ("wbm-he-gpaw", "wbm-he-figshare", "phonondb-pbesol", "jageo-pbe-68")
RECORD_FIELDS = ("formula", "n_frames", "n_atoms", "softening_scale", "mae", "cmae", "c_all")


def cases(preset: str = "default", *, datasets_: Sequence[str] = ALL_DATASETS) -> list[dict]:
    """One case per (dataset, material) of the preset's lists (:func:`preset_ids`); a dataset
    that is not here is one case, skipped with the reason."""
    out = []
    for dataset in datasets_:
        try:
            ids = preset_ids(dataset, preset)
        except (NoDataError, datasets.DatasetError, OSError) as exc:
            out.append({"id": f"{dataset}/*", "dataset": dataset, "material_id": None, "unavailable": str(exc)})
            continue
        parity = set(parity_choice(dataset, ids))
        out += [{"id": f"{dataset}/{mid}", "dataset": dataset, "material_id": mid, "parity": mid in parity}
                for mid in ids]
    return out


def _is_cached(model: str, case: dict) -> bool:
    return cached_record(model, case["dataset"], case["material_id"]) is not None and (
        not case.get("parity") or parity_path(model, case["dataset"], case["material_id"]).is_file())


def case_records(model: str, cases_: Sequence[dict], *, calc=None, progress=None,
                 frames: Sequence | None = None) -> list[dict]:
    """The contract's ``compute`` for any list of (dataset, material) cases (chapters 7, 8, 10, 11):
    per dataset one batched :func:`compute_dataset` call; if it raises, each material again on its
    own, so one material's error is that material's record."""
    from .. import task

    out: dict[str, dict] = {}
    by_set: dict[str, list[dict]] = {}
    for case in cases_:
        if case.get("material_id") is None:
            out[case["id"]] = task.record(case["id"], model, "skipped",
                                          f"dataset not here: {case.get('unavailable', '')}")
            task.advance(progress)
        else:
            by_set.setdefault(case["dataset"], []).append(case)
    for dataset, group in by_set.items():
        was_cached = {c["id"]: _is_cached(model, c) for c in group}
        ids = [c["material_id"] for c in group]
        parity = [c["material_id"] for c in group if c.get("parity")]
        skipped: dict[str, str] = {}
        errors: dict[str, dict] = {}
        todo = [c for c in group if not was_cached[c["id"]]]
        if todo:
            try:
                skipped = compute_dataset(dataset, [model], [c["material_id"] for c in todo], parity=parity,
                                          progress=False, frames=frames, calc=calc)[model]
            except Exception:  # noqa: BLE001 - redone material by material below
                for c in todo:
                    elements = None
                    r = task.run_case(lambda c=c: compute_dataset(
                        dataset, [model], [c["material_id"]], parity=parity, progress=False, frames=frames,
                        calc=calc)[model], c["id"], model, elements=elements)
                    if r["status"] != "ok":
                        errors[c["id"]] = r
                    elif c["material_id"] in r:
                        skipped[c["material_id"]] = r[c["material_id"]]
        for c in group:
            mid = c["material_id"]
            rec = cached_record(model, dataset, mid)
            if c["id"] in errors:
                out[c["id"]] = errors[c["id"]]
            elif rec is not None and "error" not in rec:
                values = {"dataset": dataset, "material_id": mid, **{k: rec.get(k) for k in RECORD_FIELDS if k in rec}}
                out[c["id"]] = task.run_case(lambda v=values: v, c["id"], model, cached=was_cached[c["id"]],
                                             finite=("softening_scale", "mae"))
            elif rec is not None:
                out[c["id"]] = task.record(c["id"], model, "failed", rec["error"], dataset=dataset, material_id=mid)
            else:
                why = skipped.get(mid) or "no frames with DFT forces here / no record"
                out[c["id"]] = task.record(c["id"], model, "skipped", why, dataset=dataset, material_id=mid)
            task.advance(progress)
    return [out[c["id"]] for c in cases_]


def compute(model: str, cases: Sequence[dict], *, calc=None, progress=None) -> list[dict]:
    """One record per (dataset, material) case: softening scale, MAE, cMAE (chapter 7's records,
    cached in ``data/results/high_energy``); only what is not cached is computed."""
    return case_records(model, cases, calc=calc, progress=progress)


def reference(**_: Any) -> None:
    """The DFT labels are the datasets' own forces (per frame, inside each case): no separate table."""
    return None


# --------------------------------------------------------------------------------------
# one definition: chapter 6's and chapter 7's softening scale on the same phonon displacements
# --------------------------------------------------------------------------------------

def phonon_scale_agreement(model: str, dataset: str = "phonondb-pbesol", ids: Sequence[str] | None = None,
                           chapter6_ids: Sequence[str] | None = None) -> dict[str, Any]:
    """Chapter 7's phonon-set ``s`` next to chapter 6's ``softening_scale_dft_disp`` for ``model``:

    ``n`` materials with both numbers, ``n_equal`` of them equal to 1e-6 (the same definition:
    harmonic forces of the force constants), ``median_s`` (this chapter, ``ids``),
    ``median_s_old`` (the superseded raw-force definition, ``softening_scale_resid``),
    ``median_s_ch6`` over chapter 6's longer list ``chapter6_ids`` and ``n_ch6``. Medians over
    different lists differ because the lists hold different materials, not by definition."""
    from . import phonons

    ids = list(ids) if ids is not None else preset_ids(dataset, "default")
    mine, old, both = [], [], []
    for mid in ids:
        rec = cached_record(model, dataset, mid)
        if rec is None or "error" in rec:
            continue
        mine.append(rec["softening_scale"])
        if rec.get("softening_scale_resid") is not None:
            old.append(rec["softening_scale_resid"])
        ph = phonons.cached(model, dataset, mid)
        if ph and ph.get("softening_scale_dft_disp") is not None:
            both.append((rec["softening_scale"], ph["softening_scale_dft_disp"]))
    ch6 = []
    for mid in (chapter6_ids or []):
        ph = phonons.cached(model, dataset, mid)
        if ph and ph.get("status", "ok") == "ok" and ph.get("softening_scale_dft_disp") is not None:
            ch6.append(ph["softening_scale_dft_disp"])
    med = lambda v: float(np.median(v)) if len(v) else float("nan")  # noqa: E731
    return {"n": len(both), "n_equal": int(sum(abs(a - b) < 1e-6 for a, b in both)),
            "n_s": len(mine), "median_s": med(mine), "median_s_old": med(old), "n_old": len(old),
            "median_s_ch6": med(ch6), "n_ch6": len(ch6)}
