"""Chapter 5 (paper Fig. 3, SI Fig. 1): ion-migration barriers by ApproxNEB.

ApproxNEB (Rong et al., J. Chem. Phys. 145, 074112 (2016)), as used by Rutt et al. (ACS
Appl. Mater. Interfaces 14, 44367 (2022)) and by Deng et al. (2025):

1. the two end points (the moving ion on two stable sites) are relaxed, lattice fixed;
2. an initial path is interpolated between them (``interpolation="linear"``: straight
   line, periodic minimum image; ``"idpp"``: ASE's image-dependent pair potential);
3. every intermediate image is relaxed **independently** (no springs, no NEB forces) with
   the lattice fixed and the moving ion either fixed (``constraint="fixed"``, the paper's
   choice) or free only in the hyperplane perpendicular to the hop
   (``constraint="hyperplane"``). One host atom, the farthest from the hop midpoint, is
   fixed too (atomate's "fix_two_atoms" scheme): with the ion alone fixed, the host could
   translate rigidly and carry the ion back onto a site, and every image would relax to
   the end-point energy. Which atom is the same for every calculator (:func:`path_anchor`:
   chosen on the ideal structure; of several tied atoms, one the hop's symmetry keeps in
   place, so a symmetric hop keeps a symmetric profile);
4. the barrier is the highest energy along the path after referencing the end images to
   zero. Exactly, with ``E_0`` and ``E_N`` the end-image energies::

       E_KRA = max_i E_i - (E_0 + E_N) / 2          (kinetically resolved activation)

   i.e. the reference is the *mean* of the two end images. For a symmetric hop
   (``E_0 = E_N``) this is the usual ``max - E_0``; for an asymmetric one it is the barrier
   of the hop with the site-energy difference ``dE = E_N - E_0`` split evenly
   (``E_forward = E_KRA + dE/2``). :func:`kra_barrier` is the one place it is computed.

Flags on every path: end points that are not minima (the moving ion left its site while
relaxing, an end point did not converge, or an intermediate image lies below both end
images) and image relaxations that did not converge (with their final fmax).

``mode="relaxed"`` is the protocol above; ``mode="static"`` skips every relaxation: the
ideal-lattice end points and the straight-line images are evaluated as they are, a
*common geometry* every method (models and GPAW) shares exactly. The project's GPAW queue
computes the static paths first (``scripts/gpaw_solid_solution_migration.py``).

Hosts (:data:`HOSTS`) are small, non-magnetic, no-+U oxides, halides and sulfides in which
Mg or Li hops by a vacancy mechanism; the vacancy is made charge-neutral by removing
ions far from the hop (a bound Schottky complex, see :func:`build_path`).

Public reference: :func:`read_mpcontribs_approxneb` reads the ApproxNEB data of Rutt et
al. as deposited on MPContribs (project ``mg_cathode_screening_2022``; API key needed).

Chapter 8 re-scores with :func:`score` (``calc=``) or :func:`rescore`.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Collection, Sequence

import numpy as np
from ase import Atoms
from ase.geometry import find_mic

from .. import cache, config
from ..public_refs import (  # noqa: F401  (moved to a core module; names kept here)
    MPCONTRIBS_API, MPCONTRIBS_DATASET, MPCONTRIBS_PROJECT, kra_barrier, mpcontribs_cache_dir,
    parse_aneb_wf_data, read_mpcontribs_approxneb,
)
from .solid_solution import model_key

TASK = "migration"
VERSION = "3"  # 2: compensating vacancies far from both hop sites; 3: in-plane hops
#: how relaxed images pick their fixed host atom (part of a relaxed result's cache key):
#: "ideal+symmetry" = :func:`path_anchor` (before 2026-11-27: farthest atom of each
#: calculator's own relaxed end point, ties broken at random)
ANCHOR_RULE = "ideal+symmetry"

#: nominal oxidation states used to keep vacancy supercells charge neutral
CHARGES = {"Li": 1, "Na": 1, "K": 1, "Mg": 2, "Ca": 2, "Zn": 2, "Al": 3, "O": -2, "S": -2,
           "Se": -2, "F": -1, "Cl": -1, "Br": -1, "I": -1}


class MigrationError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------
# the barrier
# --------------------------------------------------------------------------------------

def referenced(energies: Sequence[float]) -> np.ndarray:
    """Energies relative to the mean of the two end images (the profile of Fig. 3a)."""
    e = np.asarray(energies, dtype=float)
    return e - 0.5 * (e[0] + e[-1])


# --------------------------------------------------------------------------------------
# hosts and paths
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Host:
    name: str
    prototype: str  # rocksalt | fluorite (antifluorite A2X)
    cation: str
    anion: str
    a: float  # approximate PBE lattice constant (A), the common lattice of every method
    supercell: tuple[int, int, int] = (2, 2, 2)  # repeats of the unit cell
    mp_id: str = ""
    cubic: bool = False  # unit cell: conventional cubic (True) or primitive fcc (False)

    def atoms(self) -> Atoms:
        from ase.build import bulk

        if self.prototype == "rocksalt":
            unit = bulk(f"{self.cation}{self.anion}", "rocksalt", a=self.a, cubic=self.cubic)
        elif self.prototype == "antifluorite":
            # anions on fcc sites, cations in all tetrahedral holes
            unit = bulk(f"{self.anion}{self.cation}2", "fluorite", a=self.a, cubic=self.cubic)
        else:
            raise ValueError(self.prototype)
        return unit.repeat(self.supercell)


HOSTS: dict[str, Host] = {h.name: h for h in [
    # rocksalt: 2x2x1 conventional (32 sites); in the 16-site 2x2x2 primitive cell every
    # anion is a nearest neighbour of one of the two hop sites, so no compensating anion
    # vacancy could be placed away from the hop
    Host("MgO", "rocksalt", "Mg", "O", 4.26, (2, 2, 1), "mp-1265", cubic=True),
    Host("MgS", "rocksalt", "Mg", "S", 5.22, (2, 2, 1), "mp-1315", cubic=True),
    Host("LiF", "rocksalt", "Li", "F", 4.07, (2, 2, 1), "mp-1138", cubic=True),
    Host("LiCl", "rocksalt", "Li", "Cl", 5.15, (2, 2, 1), "mp-22905", cubic=True),
    Host("Li2O", "antifluorite", "Li", "O", 4.63, mp_id="mp-1960"),
    Host("Li2S", "antifluorite", "Li", "S", 5.72, mp_id="mp-1153"),
]}


@dataclass(frozen=True)
class PathSpec:
    """A vacancy hop of ``host.cation`` to its ``shell``-th nearest cation site."""

    host: str
    shell: int = 1
    n_images: int = 5  # intermediate images (the paper's example has 5)

    @property
    def id(self) -> str:
        return f"{self.host}-vac-s{self.shell}"


PATHS: list[PathSpec] = [
    PathSpec("MgO", 1), PathSpec("MgS", 1), PathSpec("LiF", 1), PathSpec("LiCl", 1),
    PathSpec("Li2O", 1), PathSpec("Li2O", 2), PathSpec("Li2S", 1), PathSpec("Li2S", 2),
]


def _mic_vectors(atoms: Atoms, origin: np.ndarray) -> np.ndarray:
    d, _ = find_mic(atoms.positions - origin, atoms.cell, pbc=True)
    return d


def build_path(spec: PathSpec | str, host: Host | None = None) -> dict[str, Any]:
    """End points of a vacancy hop: ``initial`` (ion on site A, vacancy on B), ``final``
    (ion on B), the ion's index and the removed compensating ions.

    Charge neutrality: removing the cation on B leaves charge ``-q``; anions (and, if
    needed, further cations) are removed to compensate, each chosen as far as possible
    from both sites A and B (then, among equals, equidistant from A and B so the hop stays
    mirror-symmetric, then farthest from the hop midpoint).
    """
    if isinstance(spec, str):
        spec = next(p for p in PATHS if p.id == spec)
    host = host or HOSTS[spec.host]
    atoms = host.atoms()
    symbols = np.array(atoms.get_chemical_symbols())
    cations = np.flatnonzero(symbols == host.cation)
    a_idx = int(cations[0])
    vec = _mic_vectors(atoms, atoms.positions[a_idx])
    dist = np.linalg.norm(vec, axis=1)
    others = cations[cations != a_idx]
    shells = np.unique(np.round(dist[others], 2))
    if spec.shell > len(shells):
        raise MigrationError(f"{host.name} supercell has only {len(shells)} cation shells")
    r = shells[spec.shell - 1]
    in_shell = [int(i) for i in others if abs(dist[i] - r) <= 0.02]
    # prefer a hop with no component along the shortest cell vector: the mirror plane
    # between A and B is then a symmetry of the supercell and the hop can be symmetric
    short = int(np.argmin(atoms.cell.lengths()))
    frac = atoms.cell.scaled_positions(atoms.positions[a_idx] + vec) - atoms.get_scaled_positions()[a_idx]
    b_idx = min(in_shell, key=lambda i: (round(abs(frac[i, short]), 3), i))
    hop = vec[b_idx]
    mid = atoms.positions[a_idx] + 0.5 * hop
    q = CHARGES[host.cation]
    qa = -CHARGES[host.anion]
    vm = _mic_vectors(atoms, mid)
    da = np.linalg.norm(_mic_vectors(atoms, atoms.positions[a_idx]), axis=1)
    db = np.linalg.norm(_mic_vectors(atoms, atoms.positions[b_idx]), axis=1)
    sym_err = np.abs(da - db)
    far = np.linalg.norm(vm, axis=1)

    near = np.minimum(da, db)

    def pick(candidates, exclude):
        cand = [int(i) for i in candidates if int(i) not in exclude]
        # as far as possible from both sites of the hop, then equidistant from A and B
        # (mirror-symmetric hop), then farthest from the midpoint
        return sorted(cand, key=lambda i: (-round(near[i], 2), sym_err[i] > 0.02, -round(far[i], 2), i))[0]

    remove = [b_idx]
    charge = -q  # left behind by the missing cation
    while charge < 0:
        i = pick(np.flatnonzero(symbols == host.anion), remove)
        remove.append(i)
        charge += qa
    while charge > 0:
        i = pick(cations, remove + [a_idx])
        remove.append(i)
        charge -= q
    keep = [i for i in range(len(atoms)) if i not in remove]
    base = atoms[keep]
    mover = keep.index(a_idx)
    initial = base.copy()
    final = base.copy()
    pos = final.positions.copy()
    pos[mover] = atoms.positions[a_idx] + hop
    final.positions = pos
    for a in (initial, final):
        a.info.update(path_id=spec.id, host=host.name)
    return {"spec": spec, "host": host, "initial": initial, "final": final, "mover": mover,
            "hop_vector": hop, "hop_distance": float(np.linalg.norm(hop)),
            "removed": [(int(i), str(symbols[i])) for i in remove]}


# --------------------------------------------------------------------------------------
# ApproxNEB
# --------------------------------------------------------------------------------------

def interpolate(initial: Atoms, final: Atoms, n_images: int, method: str = "linear") -> list[Atoms]:
    """``n_images + 2`` images from ``initial`` to ``final`` (minimum-image displacements)."""
    d, _ = find_mic(final.positions - initial.positions, initial.cell, pbc=initial.pbc)
    images = []
    for t in np.linspace(0.0, 1.0, n_images + 2):
        img = initial.copy()
        img.positions = initial.positions + t * d
        images.append(img)
    if method == "linear":
        return images
    if method == "idpp":
        from ase.mep import NEB

        neb = NEB(images)
        neb.idpp_interpolate(traj=None, log=None, fmax=0.1, steps=200, mic=True)
        return neb.images
    raise ValueError(f"interpolation must be 'linear' or 'idpp', got {method!r}")


def _relax_fixed_cell(atoms: Atoms, calc, fmax: float, max_steps: int) -> tuple[Atoms, dict]:
    """BFGS at fixed cell (``softening_lib.relax``), constraints of ``atoms`` kept; a relaxation
    that stops at ``max_steps`` comes back with ``converged=False`` and the fmax it reached."""
    from ..relax import relax as shared

    out, info = shared(atoms, calc, fmax=fmax, steps=max_steps, cell_filter=None, optimizer="BFGS")
    return out, {"converged": bool(info["converged"]), "fmax": float(info["fmax"]), "steps": int(info["steps"])}


def _midpoint_distances(atoms: Atoms, mover: int, hop: np.ndarray) -> np.ndarray:
    """Periodic distance of every atom from the hop midpoint (-1 for the moving ion)."""
    d = np.linalg.norm(_mic_vectors(atoms, atoms.positions[mover] + 0.5 * np.asarray(hop)), axis=1)
    d[mover] = -1.0
    return d


def _path_coordinate(positions: Sequence[np.ndarray], cell) -> list[float]:
    """Distance the moving ion travelled along a path of its ``positions`` (minimum image)."""
    steps = [np.linalg.norm(find_mic(b - a, cell, pbc=True)[0]) for a, b in zip(positions[:-1], positions[1:])]
    return np.concatenate([[0.0], np.cumsum(steps)]).tolist()


def anchor_atom(atoms: Atoms, mover: int, hop: np.ndarray, symmetry: "HopSymmetry | None" = None,
                tol: float = 1e-2) -> int:
    """The host atom farthest from the hop midpoint: held fixed in every image so the host
    cannot translate rigidly back around the fixed ion (atomate's "fix_two_atoms").

    In a symmetric host several atoms tie for farthest. With ``symmetry`` (the hop's
    :class:`HopSymmetry`) the tie (within ``tol`` A) goes to the lowest-index atom the
    operation keeps in place, so the relaxed second half of the path is an exact mirror of
    the first (what the GPAW reference queue needs); without it, or when no tied atom is kept
    in place, to the first maximum (``argmax``, the rule of :func:`approx_neb`)."""
    d = _midpoint_distances(atoms, mover, hop)
    if symmetry is not None:
        kept = [k for k in np.flatnonzero(d >= d.max() - tol) if symmetry.perm[k] == k]
        if kept:
            return int(kept[0])
    return int(np.argmax(d))


# --------------------------------------------------------------------------------------
# symmetry: the mirror image of a hop
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HopSymmetry:
    """A space-group operation ``g`` of the perfect host that carries the initial end point
    of a hop onto the final one: ``x' = R x + t`` in fractional coordinates of the (shared)
    cell, and ``perm[k]`` is the index in ``final`` of the image of atom ``k`` of ``initial``.

    On a straight-line path ``g`` carries image ``j`` onto image ``n - 1 - j``
    (:func:`mirror_partners` checks this image by image), so the two have the same energy
    and their forces are rotated copies: a DFT reference computes only half of a
    symmetric path (:meth:`apply`, :meth:`rotate`)."""

    rotation: np.ndarray  # 3x3 integers, fractional
    translation: np.ndarray  # fractional
    perm: np.ndarray

    def cartesian_rotation(self, cell) -> np.ndarray:
        ct = np.asarray(cell, dtype=float).T  # columns = lattice vectors
        return ct @ self.rotation @ np.linalg.inv(ct)

    def apply(self, atoms: Atoms, template: Atoms | None = None) -> Atoms:
        """``g(atoms)``, atoms reordered by ``perm``; with ``template`` (a structure the result
        should coincide with) each atom is put at the periodic image nearest its template atom."""
        frac = atoms.get_scaled_positions(wrap=False) @ self.rotation.T + self.translation
        new_pos = np.empty_like(atoms.positions)
        new_pos[self.perm] = frac @ atoms.cell.array
        numbers = np.empty_like(atoms.numbers)
        numbers[self.perm] = atoms.numbers
        out = Atoms(numbers=numbers, positions=new_pos, cell=atoms.cell, pbc=atoms.pbc, info=dict(atoms.info))
        if template is not None:
            d, _ = find_mic(out.positions - template.positions, out.cell, pbc=True)
            out.positions = template.positions + d
        return out

    def rotate(self, vectors: np.ndarray, cell) -> np.ndarray:
        """Per-atom vectors (forces) of ``atoms`` -> those of ``g(atoms)`` (same order as :meth:`apply`)."""
        out = np.empty_like(np.asarray(vectors, dtype=float))
        out[self.perm] = np.asarray(vectors, dtype=float) @ self.cartesian_rotation(cell).T
        return out

    def as_record(self) -> dict:
        return {"rotation": self.rotation.tolist(), "translation": self.translation.tolist()}


def _match(a: Atoms, b: Atoms, tol: float) -> np.ndarray | None:
    """``perm`` with ``b[perm[k]]`` at the position of ``a[k]`` (same species, modulo lattice
    vectors, within ``tol`` A), or None."""
    if len(a) != len(b):
        return None
    diff = a.get_scaled_positions(wrap=False)[:, None, :] - b.get_scaled_positions(wrap=False)[None, :, :]
    diff -= np.round(diff)
    dist = np.linalg.norm(diff @ b.cell.array, axis=2)
    dist[a.numbers[:, None] != b.numbers[None, :]] = np.inf
    perm = np.argmin(dist, axis=1)
    if dist[np.arange(len(a)), perm].max() > tol or len(np.unique(perm)) != len(a):
        return None
    return perm


def hop_symmetry(initial: Atoms, final: Atoms, host: Atoms, tol: float = 1e-3) -> HopSymmetry | None:
    """The first operation of ``host``'s space group (spglib, on the supercell: every lattice
    translation of it included) with ``g(initial) = final`` and ``g(final) = initial`` atom
    by atom, or None when the hop has no such symmetry."""
    import spglib

    ops = spglib.get_symmetry((host.cell.array, host.get_scaled_positions(), host.numbers), symprec=1e-4)
    for rot, trans in zip(ops["rotations"], ops["translations"]):
        op = HopSymmetry(np.asarray(rot), np.asarray(trans), np.arange(len(initial)))
        moved = op.apply(initial)  # identity perm: moved[k] = g(initial[k])
        perm = _match(moved, final, tol)
        if perm is None:
            continue
        op = HopSymmetry(np.asarray(rot), np.asarray(trans), perm)
        back = _match(op.apply(final), initial, tol)
        if back is not None and np.array_equal(back, np.arange(len(initial))):
            return op
    return None


def path_anchor(built: dict[str, Any]) -> int:
    """The host atom every relaxed image of a built path (:func:`build_path`) holds fixed
    besides the moving ion, for every calculator alike (models and the GPAW reference): the
    farthest from the hop on the *ideal* initial end point, a tie going to the lowest-index
    atom the hop's symmetry keeps in place (:func:`anchor_atom`). On the ideal structure the
    tie is exact and the same for everyone (on a relaxed end point each model would break it
    at random), and with the anchor on the symmetry element the constrained problem keeps the
    hop's symmetry: a symmetric hop gives a symmetric profile, whose second half a DFT
    reference can mirror. Which far atom is fixed matters at the 10-30 meV level in these
    30-atom cells (CHGNet, MgO first-shell saddle image: 33 meV between two tied atoms)."""
    if "symmetry" in built:
        op = built["symmetry"]
    elif "host" in built:
        op = hop_symmetry(built["initial"], built["final"], built["host"].atoms())
    else:  # a hand-made path without its host: no symmetry to respect
        op = None
    return anchor_atom(built["initial"], built["mover"], built["hop_vector"], symmetry=op)


def mirror_partners(images: Sequence[Atoms], op: HopSymmetry | None, tol: float = 1e-3) -> dict[int, int]:
    """``{i: j}`` for every image ``i`` in the second half of the path whose partner
    ``j = n - 1 - i`` in the first half maps onto it under ``op`` (checked atom by atom,
    within ``tol`` A): image ``i`` then needs no calculation of its own."""
    n = len(images)
    out = {}
    if op is None:
        return out
    for i in range(n // 2 + 1, n) if n % 2 else range(n // 2, n):
        j = n - 1 - i
        perm = _match(op.apply(images[j]), images[i], tol)
        if perm is not None and np.array_equal(perm, np.arange(len(images[i]))):
            out[i] = j
    return out


def approx_neb(initial: Atoms, final: Atoms, mover: int, calc, *, n_images: int = 5,
               interpolation: str = "linear", constraint: str = "fixed", fmax: float = 0.05,
               max_steps: int = 300, relax: bool = True, min_tol: float = 1e-3,
               site_tol: float = 0.5, anchor: int | None = None) -> dict[str, Any]:
    """ApproxNEB path with one calculator; returns a JSON-able record.

    ``anchor``: the host atom held fixed with the moving ion in every image (default: the
    farthest from the hop on the unrelaxed ``initial``, :func:`anchor_atom`; :func:`score`
    passes :func:`path_anchor`).

    ``relax=False`` evaluates the unrelaxed end points and interpolated images (static
    mode). Flags: ``endpoint_moved`` (the ion moved more than ``site_tol`` A from its
    site), ``endpoint_unconverged``, ``endpoint_not_minimum`` (an intermediate image is
    more than ``min_tol`` eV below both end images), ``images_unconverged`` (with fmax).
    """
    from ase.constraints import FixAtoms, FixedPlane

    if constraint not in ("fixed", "hyperplane"):
        raise ValueError(f"constraint must be 'fixed' or 'hyperplane', got {constraint!r}")
    flags: list[str] = []
    ends, end_info = [], []
    for which, atoms in (("initial", initial), ("final", final)):
        work = atoms.copy()
        work.set_constraint()
        if relax:
            work, info = _relax_fixed_cell(work, calc, fmax, max_steps)
        else:
            work.calc = calc
            info = {"converged": True, "fmax": float(np.linalg.norm(work.get_forces(), axis=1).max()),
                    "steps": 0}
        moved, _ = find_mic(work.positions[mover] - atoms.positions[mover], work.cell, pbc=True)
        info["mover_displacement"] = float(np.linalg.norm(moved))
        info["energy"] = float(work.get_potential_energy())
        if info["mover_displacement"] > site_tol:
            flags.append(f"endpoint_moved:{which}:{info['mover_displacement']:.2f}A")
        if relax and not info["converged"]:
            flags.append(f"endpoint_unconverged:{which}:fmax={info['fmax']:.3f}")
        ends.append(work)
        end_info.append(info)
    images = interpolate(ends[0], ends[1], n_images, interpolation)
    hop, _ = find_mic(ends[1].positions[mover] - ends[0].positions[mover], ends[0].cell, pbc=True)
    direction = hop / np.linalg.norm(hop)
    if anchor is None:
        hop0, _ = find_mic(final.positions[mover] - initial.positions[mover], initial.cell, pbc=True)
        anchor = anchor_atom(initial, mover, hop0)
    energies = [end_info[0]["energy"]]
    img_info = []
    for img in images[1:-1]:
        work = img.copy()
        if constraint == "fixed":
            work.set_constraint(FixAtoms(indices=[mover, anchor]))
        else:
            work.set_constraint([FixedPlane(mover, direction), FixAtoms(indices=[anchor])])
        if relax:
            work, info = _relax_fixed_cell(work, calc, fmax, max_steps)
        else:
            work.calc = calc
            info = {"converged": True, "fmax": float(np.linalg.norm(work.get_forces(), axis=1).max()), "steps": 0}
        info["energy"] = float(work.get_potential_energy())
        energies.append(info["energy"])
        img_info.append(info)
    energies.append(end_info[1]["energy"])
    bad = [(i + 1, inf["fmax"]) for i, inf in enumerate(img_info) if relax and not inf["converged"]]
    if bad:
        flags.append("images_unconverged:" + ",".join(f"{i}(fmax={f:.3f})" for i, f in bad))
    e = np.asarray(energies)
    if len(e) > 2 and e[1:-1].min() < min(e[0], e[-1]) - min_tol:
        flags.append(f"endpoint_not_minimum:image {int(np.argmin(e[1:-1])) + 1} is "
                     f"{min(e[0], e[-1]) - e[1:-1].min():.3f} eV below the end images")
    # reaction coordinate: distance the moving ion travelled along the (possibly curved) path
    coord = np.asarray(_path_coordinate([im.positions[mover] for im in images], ends[0].cell))
    return {
        "energies": e.tolist(), "referenced": referenced(e).tolist(), "coordinate": coord.tolist(),
        "e_kra": kra_barrier(e), "e_max_minus_min_end": float(e.max() - min(e[0], e[-1])),
        "delta_e_end": float(e[-1] - e[0]), "image_converged": [bool(i["converged"]) for i in img_info],
        "image_fmax": [float(i["fmax"]) for i in img_info], "image_steps": [int(i["steps"]) for i in img_info],
        "endpoints": end_info, "flags": flags, "n_images": n_images, "interpolation": interpolation,
        "constraint": constraint, "anchor_atom": anchor, "fmax_target": fmax if relax else None, "mode": "relaxed" if relax else "static",
        "hop_distance": float(np.linalg.norm(hop)), "n_atoms": len(initial),
    }


# --------------------------------------------------------------------------------------
# scoring many paths with one model (cached)
# --------------------------------------------------------------------------------------

def score(paths: Sequence[PathSpec] | None, model: str, *, mode: str = "relaxed", calc=None,
          interpolation: str = "linear", constraint: str = "fixed", fmax: float = 0.05,
          max_steps: int = 300, store: cache.ResultStore | None = None, progress: bool = True,
          compute: bool = True):
    """ApproxNEB barriers of ``paths`` (default :data:`PATHS`) with one model: a tidy table
    (one row per path) with ``e_kra`` and the flags; cached per (model, path, settings).
    ``calc`` replaces the registry calculator (chapter 8); ``compute=False`` only reads."""
    import pandas as pd
    from tqdm.auto import tqdm

    if mode not in ("relaxed", "static"):
        raise ValueError(f"mode must be 'relaxed' or 'static', got {mode!r}")
    paths = list(paths) if paths is not None else list(PATHS)
    store = store or cache.ResultStore(TASK)
    mkey = model_key(model, calc)
    rows, todo = [], []
    for p in paths:
        # relaxed: the fixed anchor atom is part of the protocol (ANCHOR_RULE), so part of the key
        extra = [ANCHOR_RULE, path_anchor(build_path(p))] if mode == "relaxed" else []
        key = cache.key_of(VERSION, p.id, p.n_images, mode, interpolation, constraint,
                           fmax if mode == "relaxed" else None, *extra)
        rec = store.get(mkey, key)
        (rows.append(rec) if rec is not None else todo.append((p, key)))
    if todo and compute:
        if calc is None:
            from .. import models
            from ..predict import calculator

            c = calculator(model)
        else:
            c = calc
        for p, key in tqdm(todo, desc=f"{TASK} {mode} {model}", disable=not progress):
            if calc is None:
                from .. import models

                host = HOSTS[p.host]
                try:
                    models.check_elements(model, {host.cation, host.anion})
                except models.UnsupportedElementError:
                    continue
            built = build_path(p)
            t0 = time.time()
            res = approx_neb(built["initial"], built["final"], built["mover"], c, n_images=p.n_images,
                             interpolation=interpolation, constraint=constraint, fmax=fmax,
                             max_steps=max_steps, relax=(mode == "relaxed"), anchor=path_anchor(built))
            rec = {"model": model, "model_key": mkey, "path_id": p.id, "host": p.host, "shell": p.shell,
                   "mover": built["host"].cation, "removed": built["removed"], **res,
                   "seconds": round(time.time() - t0, 1), "version": VERSION}
            store.put(mkey, key, rec)
            rows.append(rec)
    return pd.DataFrame(rows)


def rescore(calc, label: str, *, paths: Sequence[PathSpec] | None = None, mode: str = "relaxed", **kw):
    """Chapter 8 entry point: barriers with a corrected calculator ``calc``."""
    return score(paths, label, mode=mode, calc=calc, **kw)


# --------------------------------------------------------------------------------------
# how well posed is a path? its barrier under other ways of removing the translation
# --------------------------------------------------------------------------------------

#: ``<results>/migration_constraints/<model>.json``: written by :func:`constraint_sensitivity`
CONSTRAINT_TASK = "migration_constraints"


def constraint_sensitivity(spec: PathSpec | str, calc, *, fmax: float = 0.05, max_steps: int = 300,
                           max_anchors: int = 3, host_com: bool = True) -> dict[str, Any]:
    """E_KRA of one path, images relaxed, with each of the (up to ``max_anchors``) host atoms
    tied for farthest from the hop fixed in turn, and with the host's centre of mass fixed
    instead of any one atom (``FixSubsetCom``: removes the translation and nothing else).

    In a large cell these agree (the far atom barely moves); in a small one the "far" atom is
    a near neighbour of the saddle and a spread of eV means the path is ill-posed: its
    barrier is a property of the constraint, not of the potential energy surface, and a
    model-DFT comparison on it measures which basin each relaxation fell into. Returns
    ``{"path_id", "max_anchor_distance", "e_kra": {scheme: barrier}, "spread", "path_anchor"}``."""
    from ase.constraints import FixAtoms, FixSubsetCom

    built = build_path(spec)
    ini, fin, m, hop = built["initial"], built["final"], built["mover"], built["hop_vector"]
    ends = []
    for a in (ini, fin):
        work, _ = _relax_fixed_cell(a.copy(), calc, fmax, max_steps)
        work.set_constraint()
        ends.append(work)
    e_ends = [float(e.get_potential_energy()) for e in ends]
    images = interpolate(ends[0], ends[1], built["spec"].n_images)
    d = _midpoint_distances(ini, m, hop)
    tied = [int(k) for k in np.flatnonzero(d >= d.max() - 1e-2)][:max_anchors]
    anchor = path_anchor(built)
    if anchor not in tied:
        tied = [anchor] + tied[:max_anchors - 1]
    schemes = {f"anchor {k}": [FixAtoms(indices=[m, k])] for k in tied}
    if host_com:
        schemes["host centre of mass"] = [FixAtoms(indices=[m]),
                                          FixSubsetCom([k for k in range(len(ini)) if k != m])]
    e_kra = {}
    for name, constraints in schemes.items():
        energies = [e_ends[0]]
        for img in images[1:-1]:
            work = img.copy()
            work.set_constraint(constraints)
            work, _ = _relax_fixed_cell(work, calc, fmax, max_steps)
            energies.append(float(work.get_potential_energy()))
        e_kra[name] = kra_barrier(energies + [e_ends[1]])
    vals = list(e_kra.values())
    return {"path_id": spec if isinstance(spec, str) else spec.id, "max_anchor_distance": float(d.max()),
            "path_anchor": anchor, "e_kra": e_kra, "spread": float(max(vals) - min(vals)), "fmax": fmax}


def constraint_table(models: Sequence[str], root: Path | None = None):
    """The cached :func:`constraint_sensitivity` results (``scripts/approxneb_constraints.py``):
    one row per (model, path), the barrier under each scheme and the spread; empty if none."""
    import pandas as pd

    store = cache.ResultStore(CONSTRAINT_TASK, root=root)
    rows = []
    for model in models:
        for rec in store.records(model):
            e = rec["e_kra"]
            mine = e.get(f"anchor {rec['path_anchor']}")
            others = [v for k, v in e.items() if k.startswith("anchor ") and k != f"anchor {rec['path_anchor']}"]
            rows.append({"model": model, "path": rec["path_id"],
                         "farthest host atom (Å)": round(rec["max_anchor_distance"], 2),
                         "E_KRA, book's anchor (eV)": mine,
                         "E_KRA, other tied anchors (eV)": (f"{min(others):.3f}-{max(others):.3f}" if others else ""),
                         "E_KRA, host centre of mass fixed (eV)": e.get("host centre of mass"),
                         "spread (eV)": rec["spread"]})
    order = {p.id: i for i, p in enumerate(PATHS)}
    table = pd.DataFrame(rows)
    if len(table):
        table = table.sort_values(["model", "path"], key=lambda c: c.map(order) if c.name == "path" else c)
    return table.reset_index(drop=True)


def ill_posed_paths(models: Sequence[str], threshold: float = 0.1, root: Path | None = None) -> set[str]:
    """Paths whose cached :func:`constraint_sensitivity` spread exceeds ``threshold`` eV for
    any of ``models`` (empty when nothing is cached)."""
    table = constraint_table(models, root=root)
    return set(table.loc[table["spread (eV)"] > threshold, "path"]) if len(table) else set()


# --------------------------------------------------------------------------------------
# the project's GPAW reference
# --------------------------------------------------------------------------------------

REFERENCE_LABEL = "gpaw-pbe"
REFERENCE_DIRS = ("migration_gpaw",)  # its folder(s) under data/reference


def reference_dir() -> Path:
    return config.reference_dir() / REFERENCE_DIRS[0]


def profile_path_for(reference, default: str = "MgO-vac-s1") -> str:
    """The path Fig. 3a shows when the chapter's ``profile_path`` is ``"auto"``: the first of
    :data:`PATHS` with a complete relaxed (ApproxNEB) reference, else the first with a complete
    static one, else ``default``; ``reference`` is :func:`load_reference`'s table."""
    for mode in ("relaxed", "static"):
        done = set(reference["path_id"][reference["mode"] == mode]) if len(reference) else set()
        for p in PATHS:
            if p.id in done:
                return p.id
    return default


def _ok_image_records(folder: Path) -> dict[int, dict]:
    """The ``image_XX.json`` records of one GPAW path folder with ``status: ok``, by image
    index (the file's number); unreadable (half-written) files are skipped."""
    out = {}
    for f in sorted(folder.glob("image_*.json")) if folder.is_dir() else []:
        try:
            r = json.loads(f.read_text())
        except json.JSONDecodeError:
            continue
        if r.get("status") == "ok":
            out[int(f.stem.split("_", 1)[1])] = r
    return out


def load_reference(mode: str | None = None, root: Path | None = None):
    """GPAW paths with every image done (``<path_id>/<mode>/image_XX.json``) as a table like
    :func:`score`'s; paths with images still missing are listed in ``.attrs['pending']``.
    ``root``: another reference folder (e.g. a k-point check written with ``--reference-dir``)."""
    import pandas as pd

    rows, pending = [], {}
    root = Path(root) if root is not None else reference_dir()
    for pdir in sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []:
        for mdir in sorted(m for m in pdir.glob("*") if m.is_dir()):
            if mode is not None and mdir.name != mode:
                continue
            meta_path = mdir / "path.json"
            if not meta_path.is_file():
                continue
            meta = json.loads(meta_path.read_text())
            n = int(meta["n_images"]) + 2
            recs = {i: r for i, r in _ok_image_records(mdir).items() if i < n}
            if len(recs) < n:
                pending[f"{pdir.name}/{mdir.name}"] = f"{len(recs)}/{n} images"
                continue
            e = [recs[i]["energy"] for i in range(n)]
            flags = [f"images_unconverged:{i}(fmax={recs[i]['fmax']:.3f})" for i in range(1, n - 1)
                     if not recs[i].get("converged", True)]
            rows.append({"model": REFERENCE_LABEL, "path_id": pdir.name, "host": meta["host"],
                         "mode": mdir.name, "energies": e, "referenced": referenced(e).tolist(),
                         "coordinate": _record_coordinate([recs[i] for i in range(n)], meta), "e_kra": kra_barrier(e),
                         "delta_e_end": e[-1] - e[0], "flags": flags, "n_images": meta["n_images"]})
    table = pd.DataFrame(rows)
    table.attrs["pending"] = pending
    return table


def reference_anchor_check(path_id: str, alt: str = "anchor16_images", root: Path | None = None):
    """The GPAW side of :func:`constraint_sensitivity`: images of ``path_id`` relaxed twice
    with DFT, once with the path's anchor atom fixed (``<path_id>/relaxed``) and once with
    another host atom fixed (``<path_id>/<alt>``, same end points and interpolation).
    One row per image present in both: energies relative to the (shared) initial end point
    and their difference. Empty when either set is missing."""
    import pandas as pd

    root = Path(root) if root is not None else reference_dir()
    cols = ["image", "fixed atoms (path anchor)", "E - E_0, path anchor (eV)", "E - E_0, other atom (eV)",
            "difference (eV)"]
    main, other = _ok_image_records(root / path_id / "relaxed"), _ok_image_records(root / path_id / alt)
    if 0 not in main:
        return pd.DataFrame(columns=cols)
    e0 = main[0]["energy"]
    rows = [{"image": i, "fixed atoms (path anchor)": main[i].get("fixed_atoms"),
             "E - E_0, path anchor (eV)": main[i]["energy"] - e0, "E - E_0, other atom (eV)": other[i]["energy"] - e0,
             "difference (eV)": main[i]["energy"] - other[i]["energy"]}
            for i in sorted(set(main) & set(other)) if i != 0]
    return pd.DataFrame(rows, columns=cols)


def _record_coordinate(records: list[dict], meta: dict) -> list[float] | None:
    """Distance the moving ion travelled along a reference path, from the images' own
    structures (as :func:`approx_neb` measures it for a model): relaxed end points move the ion
    towards each other, so the static ``meta["coordinate"]`` would stretch a relaxed profile.
    Falls back to ``meta["coordinate"]`` where a record has no structure."""
    mover = meta.get("mover")
    try:
        pos = [np.asarray(r["structure"]["positions"], float)[mover] for r in records]
        cell = np.asarray(records[0]["structure"]["cell"], float)
    except (KeyError, TypeError, IndexError):
        return meta.get("coordinate")
    return _path_coordinate(pos, cell)


# --------------------------------------------------------------------------------------
# the public reference: Rutt et al. (2022) ApproxNEB data on MPContribs
# --------------------------------------------------------------------------------------

def _unpack_attachment(content: str) -> dict:
    raw = base64.b64decode(content)
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return json.loads(raw)


def fetch_mpcontribs_approxneb(api_key: str | None = None, limit: int | None = None,
                               target: Path | None = None) -> list[Path]:
    """Download the ``aneb_wf_data`` attachments of MPContribs project
    ``mg_cathode_screening_2022`` (needs ``SOFTENING_ONLINE=1`` and a Materials Project API
    key in ``api_key`` or ``$MP_API_KEY``). Uses ``mpcontribs-client`` when installed,
    else the REST API directly. One file per contribution, written atomically."""
    from ..datasets import DatasetUnavailableError

    if not config.online():
        raise DatasetUnavailableError("offline: set SOFTENING_ONLINE=1 to download from MPContribs")
    api_key = api_key or os.environ.get("MP_API_KEY")
    if not api_key:
        raise DatasetUnavailableError(
            "MPContribs needs a Materials Project API key: set MP_API_KEY (from "
            "https://materialsproject.org/api) or pass api_key=")
    target = Path(target) if target is not None else mpcontribs_cache_dir()
    written = []
    try:
        from mpcontribs.client import Client  # type: ignore

        client = Client(apikey=api_key, project=MPCONTRIBS_PROJECT)
        resp = client.query_contributions(fields=["identifier", "formula", "attachments"], paginate=True)
        for doc in resp["data"][:limit]:
            for att in doc.get("attachments") or []:
                if str(att.get("name", "")).startswith("aneb_wf_data"):
                    a = client.get_attachment(att["id"])
                    data = json.loads(a.unpack())
                    written.append(_write_attachment(target, doc, data))
        return written
    except ImportError:
        pass
    import requests

    headers = {"X-API-KEY": api_key, "Accept": "application/json"}
    page, per_page = 1, 100
    while True:
        r = requests.get(f"{MPCONTRIBS_API}/contributions/", headers=headers, timeout=60,
                         params={"project": MPCONTRIBS_PROJECT, "_fields": "id,identifier,formula,attachments",
                                 "_page": page, "_limit": per_page})
        r.raise_for_status()
        docs = r.json().get("data", [])
        for doc in docs:
            for att in doc.get("attachments") or []:
                if str(att.get("name", "")).startswith("aneb_wf_data"):
                    ra = requests.get(f"{MPCONTRIBS_API}/attachments/{att['id']}/", headers=headers,
                                      params={"_fields": "content"}, timeout=120)
                    ra.raise_for_status()
                    written.append(_write_attachment(target, doc, _unpack_attachment(ra.json()["content"])))
                    if limit is not None and len(written) >= limit:
                        return written
        if len(docs) < per_page:
            return written
        page += 1


def _write_attachment(target: Path, doc: dict, data: dict) -> Path:
    data = dict(data)
    data["_formula"] = doc.get("formula", "")
    path = target / f"{doc['identifier']}.aneb_wf_data.json.gz"
    cache.atomic_write_bytes(path, gzip.compress(json.dumps(data).encode()))
    return path


def score_public_paths(records: Sequence[dict], model: str, calc=None, progress: bool = True):
    """Model energies on the public DFT ApproxNEB images (static, the DFT geometries): a
    table of DFT vs model KRA barriers for the complete hops a model covers."""
    import pandas as pd
    from tqdm.auto import tqdm

    from .. import models

    c = calc
    if c is None:
        from ..predict import calculator

        c = calculator(model)
    rows = []
    for rec in tqdm([r for r in records if r["complete"]], desc=f"public paths {model}", disable=not progress):
        try:
            if calc is None:
                models.check_elements(model, set().union(*(set(im.get_chemical_symbols()) for im in rec["images"])))
        except models.UnsupportedElementError:
            continue
        e = []
        for im in rec["images"]:
            im = im.copy()
            im.calc = c
            e.append(float(im.get_potential_energy()))
        rows.append({"model": model, "material_id": rec["material_id"], "hop_key": rec["hop_key"],
                     "e_kra_dft": rec["e_kra"], "e_kra_model": kra_barrier(e)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------

def figure_3a(tables: dict[str, Any], path_id: str, *, mode: str = "relaxed", reference=None,
              reference_note: str = "", ax=None):
    """Energy profile (end images referenced to 0) along one path, reference and models."""
    import matplotlib.pyplot as plt

    from .. import plots

    if ax is None:
        fig, ax = plt.subplots(figsize=(5.6, 4.0))
    else:
        fig = ax.figure
    series = {}
    if reference is not None and len(reference):
        r = reference[(reference["path_id"] == path_id) & (reference["mode"] == mode)]
        if len(r):
            series[REFERENCE_LABEL] = r.iloc[0]
    for name, tab in tables.items():
        if tab is None or not len(tab):
            continue
        r = tab[(tab["path_id"] == path_id) & (tab["mode"] == mode)]
        if len(r):
            series[name] = r.iloc[0]
    if not series:
        ax.text(0.5, 0.5, f"no {mode} results for {path_id} yet\n(run the 'full' preset or\n"
                "python -m softening_lib compute --chapter 05)", ha="center", va="center", transform=ax.transAxes,
                color="0.3", fontsize=9)
    for name, row in series.items():
        y = np.asarray(row["referenced"])
        x = np.asarray(row["coordinate"]) if row.get("coordinate") is not None else np.linspace(0, 1, len(y))
        col = "black" if name == REFERENCE_LABEL else plots.color(name)
        lab = "GPAW-PBE (this project)" if name == REFERENCE_LABEL else plots.label(name)
        ax.plot(x, y, "o-", color=col, ms=4, lw=1.3, label=f"{lab}: {row['e_kra']:.2f} eV")
    ax.axhline(0, color="0.5", lw=0.6)
    ax.set_xlabel("moving-ion displacement along the path (Å)")
    ax.set_ylabel("E − (E$_0$+E$_N$)/2 (eV)")
    ax.set_title(f"{path_id} ({mode})", fontsize=10)
    if reference_note:  # under the title, where it cannot cover data or legend
        ax.set_title(ax.get_title() + "\n" + reference_note, fontsize=9, color="0.2")
    if series:  # under the axes: a barrier profile leaves no empty corner
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    return fig


UNCONVERGED_FLAGS = ("images_unconverged", "endpoint_unconverged")


def _flag_list(flags: Any) -> list[str]:
    return [str(f) for f in flags] if isinstance(flags, (list, tuple, np.ndarray)) else []


def is_unconverged(flags: Any) -> bool:
    """True when a path record's flags say an image or an end point did not reach fmax."""
    return any(f.startswith(UNCONVERGED_FLAGS) for f in _flag_list(flags))


def barrier_pairs(tables: dict[str, Any], reference, *, mode: str = "relaxed", keep_unconverged: bool = False):
    """One row per (model, path) with both a model and a reference barrier.

    A path whose model or reference relaxation did not converge (flag ``images_unconverged``
    or ``endpoint_unconverged``, with the fmax reached) is left out unless
    ``keep_unconverged``; those left out are listed in ``pairs.attrs["unconverged"]``.
    Other flags (end points that are not minima) are carried in the ``flags`` column.
    """
    import pandas as pd

    cols = ["model", "path_id", "e_ref", "e_model", "diff", "flags"]
    if reference is None or not len(reference):
        return pd.DataFrame(columns=cols)
    ref = reference[reference["mode"] == mode].set_index("path_id")
    rows, dropped = [], []
    for name, tab in tables.items():
        if tab is None or not len(tab):
            continue
        for _, r in tab[tab["mode"] == mode].iterrows():
            if r["path_id"] not in ref.index:
                continue
            rr = ref.loc[r["path_id"]]
            flags = _flag_list(r.get("flags")) + [f"reference:{f}" for f in _flag_list(rr.get("flags"))]
            if not keep_unconverged and (is_unconverged(r.get("flags", [])) or is_unconverged(rr.get("flags", []))):
                dropped.append({"model": name, "path_id": r["path_id"], "flags": "; ".join(flags)})
                continue
            rows.append({"model": name, "path_id": r["path_id"], "e_ref": float(rr["e_kra"]),
                         "e_model": float(r["e_kra"]), "diff": float(r["e_kra"] - rr["e_kra"]),
                         "flags": "; ".join(flags)})
    out = pd.DataFrame(rows, columns=cols)
    out.attrs["unconverged"] = dropped
    return out


def _strip_plot(ax, pairs, ill: "set[str]"):
    """Fig. 3b as a dot plot: one row per path, one point per model (dodged within the row),
    x = E_KRA(model) - E_KRA(reference). Constraint-dependent paths are drawn open and named so."""
    from .. import plots

    order = (pairs.groupby("path_id", sort=False)["e_ref"].first().sort_values(ascending=False).index.tolist())
    order = [p for p in order if p not in ill] + [p for p in order if p in ill]  # ill-posed last (bottom)
    models = list(dict.fromkeys(pairs["model"]))
    n = len(models)
    step = 0.7 / max(1, n)
    for j, m in enumerate(models):
        g = pairs[pairs["model"] == m]
        y = np.array([len(order) - 1 - order.index(p) for p in g["path_id"]], dtype=float)
        y += (n - 1) / 2 * step - j * step  # first model on top within its row
        bad = g["path_id"].isin(ill).to_numpy()
        col = plots.color(m)
        if (~bad).any():
            ax.scatter(g["diff"][~bad], y[~bad], s=42, color=col, lw=0, zorder=3)
        if bad.any():
            ax.scatter(g["diff"][bad], y[bad], s=42, facecolors="none", edgecolors=col, lw=1.4, zorder=3)
    ax.set_yticks(range(len(order)))
    ax.set_yticklabels([f"{p}\n(ill-posed)" if p in ill else p for p in reversed(order)], fontsize=10)
    ax.set_ylim(-0.6, len(order) - 0.4)
    for k in range(len(order) - 1):
        ax.axhline(k + 0.5, color="0.9", lw=0.8, zorder=0)
    if any(p in ill for p in order) and any(p not in ill for p in order):
        ax.axhline(sum(p in ill for p in order) - 0.5, color="0.5", lw=0.8, ls=":", zorder=0)
    ax.axvline(0.0, color="0.3", lw=0.8, ls="--", zorder=1)
    ax.grid(axis="x", color="0.92", lw=0.6)
    ax.set_xlabel("E$_{KRA}$(model) − E$_{KRA}$(reference) (eV)   (< 0: barrier too low, softening)")
    ax.tick_params(axis="y", length=0)
    return order


def figure_3b_si1(tables: dict[str, Any], reference, *, mode: str = "relaxed", reference_note: str = "",
                  ill_posed: Collection[str] = ()):
    """Fig. 3b (model - reference barrier, one point per path and model) above SI Fig. 1 (parity).
    With a handful of paths a histogram would show counts of one or two: the dot plot names
    every path instead. Without reference barriers the panels say so and show the model
    barriers alone.

    ``ill_posed``: path ids whose barrier depends on the ApproxNEB constraint
    (:func:`ill_posed_paths`). They are drawn open (both panels, their rows marked
    "ill-posed") and the legend's MAE is over the other paths, so a constraint artifact is
    never read as softening."""
    import matplotlib.pyplot as plt

    from .. import plots

    pairs = barrier_pairs(tables, reference, mode=mode)
    if not len(pairs):  # no reference yet: the model barriers alone, and what is pending
        fig, ax1 = plt.subplots(figsize=(7.6, 4.2))
        for name, tab in tables.items():
            if tab is None or not len(tab):
                continue
            t = tab[tab["mode"] == mode]
            ax1.scatter(np.arange(len(t)), t["e_kra"], color=plots.color(name), s=24, label=plots.label(name))
            ax1.set_xticks(np.arange(len(t)))
            ax1.set_xticklabels(t["path_id"], rotation=45, ha="right", fontsize=9)
        ax1.set_ylabel("model E$_{KRA}$ (eV)")
        if ax1.get_legend_handles_labels()[0]:
            ax1.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1))
        import textwrap

        ax1.text(0.5, 0.5, "reference barriers pending\n" + textwrap.fill(reference_note, 50), ha="center",
                 va="center", fontsize=10, color="0.3", transform=ax1.transAxes)
        what = {"relaxed": "ApproxNEB, images relaxed", "static": "unrelaxed straight-line paths"}[mode]
        ax1.set_title(f"Migration barriers E_KRA ({what})", fontsize=11)
        return fig
    n_rows = pairs["path_id"].nunique()
    top_h = 1.0 + 0.5 * n_rows
    fig = plt.figure(figsize=(7.6, top_h + 5.4))
    gs = fig.add_gridspec(2, 2, height_ratios=[top_h, 5.0], width_ratios=[5.0, 2.6], hspace=0.32, wspace=0.05,
                          top=1 - 0.8 / (top_h + 5.4), bottom=0.06)
    ax1 = fig.add_subplot(gs[0, :])
    ax2 = fig.add_subplot(gs[1, 0])
    ill = pairs["path_id"].isin(set(ill_posed))
    well = pairs[~ill]
    _strip_plot(ax1, pairs, set(ill_posed) & set(pairs["path_id"]))
    ax1.set_title("Fig. 3b: error per path (one point per model)", fontsize=10, loc="left")
    hi = 1.1 * float(np.nanmax(pairs[["e_ref", "e_model"]].to_numpy()))
    for m, g in pairs.groupby("model", sort=False):
        g_ill, g_ok = g[ill[g.index]], g[~ill[g.index]]
        mae_on = g_ok if len(g_ok) else g
        what = ", well-posed\npaths" if len(g_ill) and len(g_ok) else ""
        mae = float(np.mean(np.abs(mae_on["diff"])))
        plots.parity(ax2, g_ok["e_ref"], g_ok["e_model"], model=m, s=36, alpha=0.85, lim=(0, hi),
                     xlabel="reference E$_{KRA}$ (eV)", ylabel="model E$_{KRA}$ (eV)",
                     label_=f"{plots.label(m)}\n(MAE {mae:.2f} eV{what})")
        if len(g_ill):
            ax2.scatter(g_ill["e_ref"], g_ill["e_model"], s=36, facecolors="none",
                        edgecolors=plots.color(m), lw=1.3)
    ax2.set_title("SI Fig. 1: parity", fontsize=10, loc="left")
    if ill.any():
        ax2.scatter([], [], s=36, facecolors="none", edgecolors="0.3", lw=1.3,
                    label="open: constraint-dependent\n(ill-posed) path, not in\nthe MAE")
    # the well-posed paths (or, without ill-posed ones, all but the highest reference barrier)
    # crowd a corner next to an outlier: zoom on them where no point is
    near = well if ill.any() else pairs[pairs["e_ref"] < pairs["e_ref"].max()]
    top = 1.15 * float(np.nanmax(near[["e_ref", "e_model"]].to_numpy())) if len(near) else hi
    if len(near) and top < 0.3 * hi:
        xy = pairs[["e_ref", "e_model"]].to_numpy() / hi  # axes coordinates (limits 0..hi)

        def crowd(box):  # points in the box, widened by its tick labels (left, below)
            x0, y0, w, h = box
            return int(np.sum((xy[:, 0] > x0 - 0.1) & (xy[:, 0] < x0 + w + 0.02)
                              & (xy[:, 1] > y0 - 0.1) & (xy[:, 1] < y0 + h + 0.05)))

        ins = ax2.inset_axes(min(([0.15, 0.62, 0.3, 0.3], [0.64, 0.1, 0.3, 0.3]), key=crowd))
        for m, g in near.groupby("model"):
            ins.scatter(g["e_ref"], g["e_model"], s=22, alpha=0.85, color=plots.color(m), lw=0)
        ins.plot([0, top], [0, top], color="0.4", lw=0.8, ls="--", zorder=0)
        ins.set(xlim=(0, top), ylim=(0, top), aspect="equal")
        ins.tick_params(labelsize=8)
        ins.set_title("well-posed paths" if ill.any() else "zoom", fontsize=8)
    # right of the parity panel: the models' colours for both panels, clear of the points
    handles, labels = ax2.get_legend_handles_labels()
    lax = fig.add_subplot(gs[1, 1])
    lax.axis("off")
    lax.legend(handles, labels, loc="center left", fontsize=9, frameon=False, labelspacing=0.9,
               handletextpad=0.3, borderaxespad=0)
    what = {"relaxed": "ApproxNEB, images relaxed", "static": "unrelaxed straight-line paths"}[mode]
    fig.suptitle(f"Migration barriers E_KRA ({what})", fontsize=11)
    return fig




# --------------------------------------------------------------------------------------
# the task contract (softening_lib.task): cases / compute / reference
# --------------------------------------------------------------------------------------

def cases(preset: str = "default", *, profile_path: str = "auto", interpolation: str = "linear",
          constraint: str = "fixed", modes: Sequence[str] | None = None, fmax: float = 0.05) -> list[dict]:
    """(path, mode) cases: smoke = the profile path of Fig. 3a, static; default / full = every
    hop of :data:`PATHS`, static (straight-line images) and relaxed (ApproxNEB)."""
    if preset not in ("smoke", "default", "full"):
        raise ValueError(f"preset must be smoke, default or full, got {preset!r}")
    if preset == "smoke":
        if profile_path == "auto":
            profile_path = profile_path_for(load_reference())
        paths = [p for p in PATHS if p.id == profile_path]
    else:
        paths = list(PATHS)
    modes = list(modes) if modes is not None else (["static"] if preset == "smoke" else ["static", "relaxed"])
    return [{"id": f"{p.id}-{mode}", "item": p, "mode": mode, "interpolation": interpolation,
             "constraint": constraint, "fmax": fmax} for mode in modes for p in paths]


def _score_key(p: PathSpec, mode: str, interpolation: str, constraint: str, fmax: float) -> str:
    extra = [ANCHOR_RULE, path_anchor(build_path(p))] if mode == "relaxed" else []
    return cache.key_of(VERSION, p.id, p.n_images, mode, interpolation, constraint,
                        fmax if mode == "relaxed" else None, *extra)


def compute(model: str, cases: Sequence[dict], *, calc=None, progress=None,
            cached_only: Sequence[str] = ()) -> list[dict]:
    """One record per (path, mode): the KRA barrier, cached in ``data/results/migration`` (the
    same keys as :func:`score`); the missing ones computed (relaxed: an ApproxNEB, minutes).
    ``cached_only``: modes only read from the cache (the chapter's "default" build reads the
    ApproxNEBs; a missing one is a skipped record, "not in the cache")."""
    from .. import models as registry
    from .. import task

    store = cache.ResultStore(TASK)
    mkey = model_key(model, calc)
    out = []
    for case in task.progress_iter(list(cases), progress, desc=f"{TASK} {model}"):
        p, mode = case["item"], case["mode"]
        interp, cons, fmax = case.get("interpolation", "linear"), case.get("constraint", "fixed"), case.get("fmax", 0.05)
        key = _score_key(p, mode, interp, cons, fmax)
        host = HOSTS[p.host]
        if mode in cached_only and store.get(mkey, key) is None:
            out.append(task.record(case["id"], model, "skipped", "not in the cache (this preset reads it only)"))
            continue

        def one(p=p, mode=mode, interp=interp, cons=cons, fmax=fmax, key=key, host=host):
            if calc is None:
                registry.check_elements(model, {host.cation, host.anion})
            score([p], model, mode=mode, calc=calc, interpolation=interp, constraint=cons, fmax=fmax,
                  progress=False)
            rec = store.get(mkey, key)
            return {k: rec.get(k) for k in ("mode", "host", "shell", "mover", "e_kra", "flags")}

        out.append(task.run_case(one, case["id"], model, cached=store.get(mkey, key) is not None,
                                 elements={host.cation, host.anion}, finite=("e_kra",)))
    return out


def reference(mode: str | None = None, **_: Any):
    """The GPAW-PBE barriers of the hops (this project's queue; pending paths in ``attrs``)."""
    return load_reference(mode)
