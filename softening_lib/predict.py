"""Batched model predictions (energy, forces, stress) for many labelled structures.

``predict(frames, model)`` evaluates a list of ASE Atoms with one registry model, using the
model's own batched API where it has one (CHGNet ``predict_structure`` on a list) and the
ASE calculator otherwise. ``predict_cached`` groups frames by material and keeps one
``.npz`` per (dataset, model, material) under the results store, keyed by a hash of the
geometries, so a killed run resumes and an unchanged run costs nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from typing import Any, Iterable, Sequence

import numpy as np
from ase import Atoms

from . import cache, config, models

log = logging.getLogger(__name__)

GPA_TO_EV_A3 = 1 / 160.21766208


class PredictionError(RuntimeError):
    pass


def geometry_hash(frames: Sequence[Atoms]) -> str:
    h = hashlib.sha256()
    for atoms in frames:
        h.update(np.ascontiguousarray(atoms.numbers, dtype=np.int64).tobytes())
        h.update(np.round(np.ascontiguousarray(atoms.positions, dtype=float), 6).tobytes())
        h.update(np.round(np.ascontiguousarray(atoms.cell.array, dtype=float), 6).tobytes())
    return h.hexdigest()[:16]


_CALC_CACHE: "OrderedDict[str, Any]" = OrderedDict()


def calculator(model: str, **kw: Any):
    """A calculator per model name, loaded once per process (weights are slow to load)."""
    key = f"{model}|{sorted(kw.items())}"
    if key not in _CALC_CACHE:
        _CALC_CACHE[key] = models.get_calculator(model, **kw)
        while len(_CALC_CACHE) > 4:
            _CALC_CACHE.popitem(last=False)
    return _CALC_CACHE[key]


def _check(out: dict, frames: Sequence[Atoms]) -> dict:
    for i, f in enumerate(out["forces"]):
        if not np.all(np.isfinite(f)):
            info = frames[i].info
            raise PredictionError(
                f"model returned non-finite forces for {info.get('material_id', '?')} "
                f"frame {info.get('frame_id', i)}"
            )
    return out


def _predict_chgnet(frames: Sequence[Atoms], calc, batch_size: int, with_stress: bool = True) -> dict:
    from pymatgen.io.ase import AseAtomsAdaptor

    structures = [AseAtomsAdaptor.get_structure(a) for a in frames]
    preds = calc.model.predict_structure(structures, task="efs" if with_stress else "ef", batch_size=batch_size)
    if isinstance(preds, dict):
        preds = [preds]
    energies = [float(p["e"]) * len(a) for p, a in zip(preds, frames)]  # CHGNet: eV/atom
    forces = [np.asarray(p["f"], dtype=float) for p in preds]
    # CHGNet stress is in GPa, sign convention as ASE; convert to eV/A^3 Voigt
    from ase.stress import full_3x3_to_voigt_6_stress

    stress = [full_3x3_to_voigt_6_stress(np.asarray(p["s"], dtype=float)) * GPA_TO_EV_A3 if "s" in p
              else np.full(6, np.nan) for p in preds]
    return {"energy": np.array(energies), "forces": forces, "stress": np.array(stress)}


def _predict_ase(frames: Sequence[Atoms], calc, progress: bool = False, with_stress: bool = True) -> dict:
    energies, forces, stress = [], [], []
    iterator: Iterable = frames
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(frames, desc="frames", leave=False)
    for atoms in iterator:
        work = atoms.copy()
        work.calc = calc
        energies.append(work.get_potential_energy())
        forces.append(np.array(work.get_forces(), dtype=float))
        if with_stress and all(work.pbc):
            try:
                stress.append(np.array(work.get_stress(), dtype=float))
            except Exception:  # calculators without stress
                stress.append(np.full(6, np.nan))
        else:
            stress.append(np.full(6, np.nan))
    return {"energy": np.array(energies), "forces": forces, "stress": np.array(stress)}


def predict(frames: Sequence[Atoms], model: str, batch_size: int = 16, progress: bool = False,
            calc=None, with_stress: bool = True) -> dict:
    """Energies (n,), forces (list of (n_i, 3)) and Voigt stress (n, 6, eV/Å³) of ``frames``.

    ``calc`` overrides the registry calculator (e.g. a :class:`~softening_lib.models.ScaledCalculator`).
    ``with_stress=False`` skips the stress where that saves time (CHGNet's batched path;
    the stress is then NaN).
    """
    if not frames:
        return {"energy": np.zeros(0), "forces": [], "stress": np.zeros((0, 6))}
    if calc is None:
        symbols = set().union(*(set(a.get_chemical_symbols()) for a in frames))
        models.check_elements(model, symbols)
        calc = calculator(model)
    if type(calc).__name__ == "CHGNetCalculator" and hasattr(calc, "model"):
        out = _predict_chgnet(frames, calc, batch_size, with_stress=with_stress)
    else:
        out = _predict_ase(frames, calc, progress=progress, with_stress=with_stress)
    return _check(out, frames)


def predict_cached(frames: Sequence[Atoms], model: str, dataset: str, progress: bool = True,
                   batch_size: int = 16, calc=None, cache_tag: str | None = None,
                   with_stress: bool = True) -> list[dict]:
    """Per-frame predictions for ``frames`` (grouped by ``atoms.info['material_id']``), cached.

    Returns one dict per frame: material_id, frame_id, energy, forces, stress.
    Materials the model cannot handle (unsupported element) are skipped with a log line and
    listed in the returned dicts' absence; see :func:`skipped_materials`.
    A cache entry written with ``with_stress=False`` is recomputed when stress is asked for.
    """
    groups: "OrderedDict[str, list[int]]" = OrderedDict()
    for i, atoms in enumerate(frames):
        groups.setdefault(str(atoms.info.get("material_id", f"frame{i}")), []).append(i)
    tag = cache_tag or models.model_id(model)
    root = config.results_dir() / "predictions" / cache._safe(dataset) / cache._safe(tag)
    results: list[dict | None] = [None] * len(frames)
    iterator: Iterable = groups.items()
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(list(groups.items()), desc=f"{model} on {dataset}", unit="material")
    _SKIPPED.pop((model, dataset), None)
    for material_id, idx in iterator:
        sub = [frames[i] for i in idx]
        ghash = geometry_hash(sub)
        path = root / f"{cache._safe(material_id)}.npz"
        data = cache.load_arrays(path)
        stale = data is None or str(data.get("geometry_hash")) != ghash
        if not stale and with_stress and not bool(data.get("has_stress", True)):
            stale = True
        if stale:
            try:
                out = predict(sub, model, batch_size=batch_size, calc=calc, with_stress=with_stress)
            except models.UnsupportedElementError as exc:
                _SKIPPED.setdefault((model, dataset), {})[material_id] = str(exc)
                log.warning("skipping %s: %s", material_id, exc)
                continue
            natoms = np.array([len(a) for a in sub])
            cache.save_arrays(path, energy=out["energy"], forces=np.concatenate(out["forces"]),
                              stress=out["stress"], natoms=natoms, geometry_hash=np.array(ghash),
                              has_stress=np.array(bool(with_stress)))
            data = cache.load_arrays(path)
            assert data is not None
        splits = np.cumsum(data["natoms"])[:-1]
        forces = np.split(data["forces"], splits)
        for j, i in enumerate(idx):
            results[i] = {"material_id": material_id, "frame_id": frames[i].info.get("frame_id", j),
                          "energy": float(data["energy"][j]), "forces": forces[j],
                          "stress": data["stress"][j]}
    return [r for r in results if r is not None]


_SKIPPED: dict[tuple[str, str], dict[str, str]] = {}


def skipped_materials(model: str, dataset: str) -> dict[str, str]:
    """{material_id: reason} skipped by the last :func:`predict_cached` call for this pair."""
    return dict(_SKIPPED.get((model, dataset), {}))


def frame_table(frames: Sequence[Atoms], predictions: dict[str, list[dict]]):
    """A tidy table: one row per (model, frame) with DFT and model forces side by side."""
    import pandas as pd

    by_key = {}
    for atoms in frames:
        key = (str(atoms.info.get("material_id")), str(atoms.info.get("frame_id")))
        by_key[key] = atoms
    rows = []
    for model, preds in predictions.items():
        for p in preds:
            atoms = by_key.get((str(p["material_id"]), str(p["frame_id"])))
            if atoms is None:
                continue
            dft_energy = atoms.calc.results.get("energy") if atoms.calc is not None else None
            rows.append({
                "model": model, "material_id": p["material_id"], "frame_id": p["frame_id"],
                "formula": atoms.info.get("formula", atoms.get_chemical_formula(mode="metal")),
                "n_atoms": len(atoms), "dft_energy": dft_energy, "model_energy": p["energy"],
                "dft_forces": np.asarray(atoms.get_forces()), "model_forces": p["forces"],
            })
    return pd.DataFrame(rows)
