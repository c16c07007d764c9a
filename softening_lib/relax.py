"""One relaxation helper for every task: positions (and optionally the cell) to ``fmax``.

>>> from softening_lib.relax import relax
>>> relaxed, info = relax(atoms, calc, fmax=0.05)                 # positions only, FIRE
>>> relaxed, info = relax(atoms, calc, cell_filter="frechet")     # positions + cell
>>> info["converged"], info["fmax"], info["steps"], info["energy"]

Conventions (the paper's MLIP protocol: fmax 0.05 eV/A):

* The input ``atoms`` is never modified; a relaxed copy is returned with ``calc`` attached.
* ``fmax`` is the largest atomic force norm (eV/A) over the *free* atoms; with a cell
  filter the filter's generalised forces (which include the stress times the volume) are
  used, as ASE's optimisers do.
* ``fix`` freezes atoms: a list of indices, a boolean mask, or a callable ``atoms -> mask``.
  Constraints already on ``atoms`` are kept and combined with ``fix``.
* A relaxation that stops at ``steps`` without reaching ``fmax`` is **not** an error: it is
  returned with ``info["converged"] = False`` and the ``fmax`` reached, so the caller can
  flag it instead of silently keeping it. Non-finite energies or forces raise
  :class:`RelaxationError` (a broken model or an exploded structure).
* The input is checked first by :func:`softening_lib.structures.validate` (finite positions
  and cell, no atoms closer than ``min_distance`` = 0.5 A, a 3D periodic cell when a cell
  filter is used): a broken structure raises :class:`~softening_lib.structures.StructureError`
  naming it before the calculator sees it.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np
from ase import Atoms
from ase.constraints import FixAtoms

OPTIMIZERS = ("FIRE", "BFGS", "LBFGS")
CELL_FILTERS = (None, "frechet", "exp")


class RelaxationError(RuntimeError):
    """The relaxation could not run (bad input) or produced non-finite numbers."""


def _fix_mask(atoms: Atoms, fix: Any) -> np.ndarray | None:
    if fix is None:
        return None
    if callable(fix):
        fix = fix(atoms)
    arr = np.asarray(fix)
    if arr.dtype == bool:
        if arr.shape != (len(atoms),):
            raise RelaxationError(f"fix mask has shape {arr.shape}, expected ({len(atoms)},)")
        return arr
    idx = arr.astype(int).ravel()
    if idx.size and (idx.min() < -len(atoms) or idx.max() >= len(atoms)):
        raise RelaxationError(f"fix indices out of range for {len(atoms)} atoms: {idx.tolist()}")
    mask = np.zeros(len(atoms), dtype=bool)
    mask[idx] = True
    return mask


def _max_force(forces: np.ndarray) -> float:
    if forces.size == 0:
        return 0.0
    return float(np.sqrt((forces ** 2).sum(axis=1)).max())


def relax(atoms: Atoms, calc, fmax: float = 0.05, steps: int = 500,
          cell_filter: str | None = None, fix: Sequence[int] | np.ndarray | Callable | None = None,
          optimizer: str = "FIRE", trajectory: str | None = None, logfile: str | None = None,
          min_distance: float | None = None, **filter_kw: Any) -> tuple[Atoms, dict[str, Any]]:
    """Relax a copy of ``atoms`` with ``calc``; returns ``(relaxed_atoms, info)``.

    ``info``: ``converged`` (bool), ``fmax`` (reached, eV/A), ``fmax_target``, ``steps``,
    ``energy`` (eV, final), ``energy_initial``, ``optimizer``, ``cell_filter``, ``n_fixed``,
    ``max_displacement`` (A, largest atomic move), ``wall_s``.
    """
    if not isinstance(atoms, Atoms):
        raise RelaxationError(f"relax() needs an ase.Atoms, got {type(atoms).__name__}")
    if len(atoms) == 0:
        raise RelaxationError("relax() got an empty structure")
    if not (np.isfinite(fmax) and fmax > 0):
        raise RelaxationError(f"fmax must be a positive number (eV/A), got {fmax!r}")
    if int(steps) < 0:
        raise RelaxationError(f"steps must be >= 0, got {steps!r}")
    if cell_filter not in CELL_FILTERS:
        raise RelaxationError(f"cell_filter must be one of {CELL_FILTERS}, got {cell_filter!r}")
    if optimizer.upper() not in OPTIMIZERS:
        raise RelaxationError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if calc is None:
        raise RelaxationError("relax() needs a calculator")
    from .structures import MIN_DISTANCE, validate

    # StructureError (a ValueError) names the structure: NaN positions, a singular periodic
    # cell, atoms closer than min_distance (default 0.5 A); a cell filter needs a 3D periodic cell
    validate(atoms, min_distance=MIN_DISTANCE if min_distance is None else min_distance,
             require_pbc=cell_filter is not None)

    work = atoms.copy()
    mask = _fix_mask(work, fix)
    if mask is not None and mask.any():
        work.set_constraint(list(work.constraints) + [FixAtoms(mask=mask)])
    work.calc = calc
    start_pos = work.get_positions().copy()

    if cell_filter == "frechet":
        from ase.filters import FrechetCellFilter

        target = FrechetCellFilter(work, **filter_kw)
    elif cell_filter == "exp":
        from ase.filters import ExpCellFilter

        target = ExpCellFilter(work, **filter_kw)
    else:
        target = work

    t0 = time.time()
    e0 = float(work.get_potential_energy())
    if not np.isfinite(e0):
        raise RelaxationError(f"{work.get_chemical_formula()}: initial energy is {e0}")

    from ase import optimize

    opt_cls = {"FIRE": optimize.FIRE, "BFGS": optimize.BFGS, "LBFGS": optimize.LBFGS}[optimizer.upper()]
    opt = opt_cls(target, logfile=logfile, trajectory=trajectory)
    converged = bool(opt.run(fmax=fmax, steps=int(steps))) if steps > 0 else False
    forces = np.asarray(target.get_forces(), dtype=float)
    energy = float(work.get_potential_energy())
    if not (np.isfinite(energy) and np.all(np.isfinite(forces))):
        raise RelaxationError(f"{work.get_chemical_formula()}: non-finite energy/forces during relaxation")
    reached = _max_force(forces)
    if steps == 0:
        converged = reached < fmax
    disp = work.get_positions() - start_pos
    info = {
        "converged": bool(converged and reached < fmax + 1e-12),
        "fmax": reached,
        "fmax_target": float(fmax),
        "steps": int(opt.nsteps),
        "max_steps": int(steps),
        "energy": energy,
        "energy_initial": e0,
        "optimizer": optimizer.upper(),
        "cell_filter": cell_filter,
        "n_fixed": int(mask.sum()) if mask is not None else 0,
        "max_displacement": float(np.sqrt((disp ** 2).sum(axis=1)).max()),
        "wall_s": round(time.time() - t0, 3),
    }
    return work, info


def flag(info: dict[str, Any]) -> str:
    """A one-line status for tables: ``ok`` or ``NOT CONVERGED (fmax 0.12 > 0.05 after 500 steps)``."""
    if info.get("converged"):
        return "ok"
    return (f"NOT CONVERGED (fmax {info.get('fmax', float('nan')):.3f} > {info.get('fmax_target', float('nan'))} "
            f"after {info.get('steps')} steps)")
