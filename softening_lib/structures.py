"""Checks a structure must pass before any model or DFT code sees it, and checks on results.

>>> from softening_lib.structures import validate, StructureError
>>> validate(atoms, name="mp-149 frame 3")            # raises StructureError, or returns atoms

What :func:`validate` refuses (each with a message that names the structure and the fix):

* not an ``ase.Atoms``, or zero atoms;
* non-finite (NaN/inf) positions or cell;
* ``require_pbc=True`` (the default) and a direction that is not periodic, or a periodic
  cell that is singular (volume ~ 0: a missing cell vector, two parallel vectors);
* two atoms (periodic images included) closer than ``min_distance`` Angstrom (default
  0.5 A: shorter than any bond; a model gives a finite but meaningless number there, e.g.
  M3GNet +1002 eV for two atoms 0.1 A apart). Pass ``min_distance=0`` to switch the check
  off, or a smaller value for a deliberately compressed structure.

:func:`check_result` refuses non-finite energy, forces or stress (so they are never cached).
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: default smallest interatomic distance (Angstrom) :func:`validate` accepts
MIN_DISTANCE = 0.5


class StructureError(ValueError):
    """A structure that no model or DFT code should be asked about."""


def describe(atoms: Any, name: str | None = None, index: int | None = None) -> str:
    """A short name for messages: ``name``, else ``material_id frame frame_id``, else ``structure <index>``."""
    if name:
        return str(name)
    info = getattr(atoms, "info", None) or {}
    parts = []
    for key in ("material_id", "id", "name"):
        if info.get(key) is not None:
            parts.append(str(info[key]))
            break
    if info.get("frame_id") is not None:
        parts.append(f"frame {info['frame_id']}")
    if parts:
        return " ".join(parts) + (f" (structure {index})" if index is not None else "")
    if index is not None:
        return f"structure {index}"
    try:
        return f"structure {atoms.get_chemical_formula()}"
    except Exception:
        return "structure"


def _min_distance_small_cell(atoms, cutoff: float, max_atoms: int = 64):
    """:func:`_min_distance` for a small periodic cell by brute force over the 27 neighbouring
    cells (~20x faster than ASE's neighbour list for the 2-8-atom frames of the paper), or
    ``None`` where that is not exact. Exact when every cell height is >= ``cutoff``: with
    fractional coordinates wrapped into [0, 1), a vector shorter than ``cutoff`` then needs
    image shifts of -1, 0 or +1 only."""
    n = len(atoms)
    if n > max_atoms or not all(atoms.pbc):
        return None
    cell = np.asarray(atoms.cell.array, dtype=float)
    vol = abs(float(np.linalg.det(cell)))
    if not np.isfinite(vol) or vol <= 1e-12:
        return None
    heights = vol / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
    if not np.all(heights >= cutoff):
        return None
    frac = np.linalg.solve(cell.T, np.asarray(atoms.positions, dtype=float).T).T
    frac -= np.floor(frac)
    pos = frac @ cell
    shifts = np.array([(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)], dtype=float) @ cell
    vec = pos[None, :, None, :] - pos[:, None, None, :] + shifts[None, None, :, :]  # (i, j, shift, 3)
    d = np.linalg.norm(vec, axis=-1)
    d[np.arange(n), np.arange(n), 13] = np.inf  # shift (0, 0, 0) is index 13: an atom and itself
    k = int(np.argmin(d))
    dmin = float(d.flat[k])
    if not dmin < cutoff:
        return float("inf"), None
    i, j, _ = np.unravel_index(k, d.shape)
    return dmin, (int(i), int(j))


def _min_distance(atoms, cutoff: float) -> tuple[float, tuple[int, int] | None]:
    """Smallest distance below ``cutoff`` between two atoms (periodic images included).

    Returns ``(inf, None)`` when no pair is closer than ``cutoff``."""
    from ase.neighborlist import neighbor_list

    if len(atoms) == 0 or cutoff <= 0:
        return float("inf"), None
    fast = _min_distance_small_cell(atoms, cutoff)
    if fast is not None:
        return fast
    probe = atoms.copy()
    probe.calc = None
    i, j, d = neighbor_list("ijd", probe, cutoff, self_interaction=False)
    if d.size == 0:
        # an atom and its own periodic image (a cell vector shorter than the cutoff)
        return float("inf"), None
    k = int(np.argmin(d))
    return float(d[k]), (int(i[k]), int(j[k]))


def validate(atoms, *, name: str | None = None, index: int | None = None,
             min_distance: float = MIN_DISTANCE, require_pbc: bool = True):
    """Raise :class:`StructureError` if ``atoms`` cannot be given to a model; return ``atoms``.

    ``name`` / ``index`` identify the structure in the message (default: its
    ``info['material_id']`` and ``info['frame_id']``). ``min_distance`` (Angstrom): the
    smallest interatomic distance accepted, periodic images included (0 switches the check
    off). ``require_pbc``: the structure must be periodic in all three directions with a
    non-singular cell (``False`` accepts molecules and slabs; a cell is then checked only
    along its periodic directions).
    """
    from ase import Atoms

    if not isinstance(atoms, Atoms):
        raise StructureError(f"{describe(atoms, name, index)}: expected an ase.Atoms, got {type(atoms).__name__}; "
                             "convert it first (e.g. pymatgen AseAtomsAdaptor.get_atoms)")
    who = describe(atoms, name, index)
    if not (isinstance(min_distance, (int, float)) and np.isfinite(min_distance) and min_distance >= 0):
        raise ValueError(f"min_distance must be a finite number >= 0 (Angstrom), got {min_distance!r}")
    if len(atoms) == 0:
        raise StructureError(f"{who}: has zero atoms; drop it from the input")
    pos = np.asarray(atoms.positions, dtype=float)
    bad = ~np.all(np.isfinite(pos), axis=1)
    if bad.any():
        raise StructureError(f"{who}: non-finite (NaN/inf) position of atom(s) {np.flatnonzero(bad)[:10].tolist()}; "
                             "fix or drop the structure (a model would return a finite, meaningless number)")
    cell = np.asarray(atoms.cell.array, dtype=float)
    if not np.all(np.isfinite(cell)):
        raise StructureError(f"{who}: non-finite (NaN/inf) cell {cell.tolist()}; fix or drop the structure")
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if require_pbc and not pbc.all():
        raise StructureError(f"{who}: is not periodic in all three directions (pbc={pbc.tolist()}); give it a "
                             "cell and set atoms.pbc = True, or pass require_pbc=False for a molecule or slab")
    if pbc.any():
        vectors = cell[pbc]
        # volume (or area/length) spanned by the periodic vectors, relative to their lengths
        lengths = np.linalg.norm(vectors, axis=1)
        gram = vectors @ vectors.T
        measure = float(np.sqrt(max(np.linalg.det(gram), 0.0)))
        if lengths.min() < 1e-6 or measure < 1e-6 * float(np.prod(lengths)):
            raise StructureError(f"{who}: singular cell (periodic cell vectors {vectors.tolist()} are zero or "
                                 "linearly dependent); give the structure a full 3D cell")
    if min_distance > 0 and len(atoms) > 0:
        if pbc.any():
            # an atom too close to its own periodic image: a cell vector shorter than the threshold
            short = [k for k in range(3) if pbc[k] and np.linalg.norm(cell[k]) < min_distance]
            if short:
                raise StructureError(f"{who}: cell vector {short[0]} is shorter than {min_distance} A, so each atom "
                                     f"sits closer than min_distance={min_distance} A to its own image; "
                                     "fix the cell or pass a smaller min_distance")
        d, pair = _min_distance(atoms, float(min_distance))
        if pair is not None and d < min_distance:
            raise StructureError(
                f"{who}: atoms {pair[0]} and {pair[1]} are {d:.3f} A apart (periodic images included), below "
                f"min_distance={min_distance} A; fix the structure, or pass a smaller min_distance if it is "
                "deliberately compressed")
    return atoms


def validate_all(frames, *, min_distance: float = MIN_DISTANCE, require_pbc: bool = True) -> None:
    """:func:`validate` every structure of ``frames`` (the message names its index)."""
    for i, atoms in enumerate(frames):
        validate(atoms, index=i, min_distance=min_distance, require_pbc=require_pbc)


class NonFiniteResultError(StructureError):
    """A model or DFT code returned NaN/inf energy, forces or stress."""


def check_result(who: str, *, energy=None, forces=None, stress=None, allow_nan_stress: bool = False) -> None:
    """Raise :class:`NonFiniteResultError` naming ``who`` if any given value is NaN/inf.

    ``allow_nan_stress``: a stress that is NaN in *all* components is the marker for
    "not computed" (e.g. a molecule) and is accepted; a partly NaN stress is not."""
    if energy is not None:
        e = np.asarray(energy, dtype=float)
        if not np.all(np.isfinite(e)):
            raise NonFiniteResultError(f"{who}: non-finite energy {e.tolist()}; not cached. "
                                       "The structure or the model is broken: check the structure (validate()).")
    if forces is not None:
        f = np.asarray(forces, dtype=float)
        if not np.all(np.isfinite(f)):
            raise NonFiniteResultError(f"{who}: {int(np.count_nonzero(~np.isfinite(f)))} non-finite force "
                                       "component(s); not cached. Check the structure and the model.")
    if stress is not None:
        s = np.asarray(stress, dtype=float)
        if not np.all(np.isfinite(s)):
            if allow_nan_stress and np.all(np.isnan(s)):
                return
            raise NonFiniteResultError(f"{who}: non-finite stress {s.tolist()}; not cached. "
                                       "Check the structure and the model.")
