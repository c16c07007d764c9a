"""Conversions between ASE Atoms and phonopy's PhonopyAtoms (kept in one place)."""

from __future__ import annotations

from ase import Atoms


def atoms_to_phonopy(atoms: Atoms):
    from phonopy.structure.atoms import PhonopyAtoms

    return PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=atoms.cell.array,
                        scaled_positions=atoms.get_scaled_positions(), masses=atoms.get_masses())


def phonopy_to_atoms(cell) -> Atoms:
    return Atoms(symbols=cell.symbols, cell=cell.cell, scaled_positions=cell.scaled_positions,
                 masses=cell.masses, pbc=True)


def harmonic_forces(force_constants, dataset: dict) -> list:
    """Forces F_i = -sum_j Phi_ij u_j the force constants give for each displacement of a
    phonopy ``dataset``: type 1 (``first_atoms``: ``number``, ``displacement``) or type 2
    (``displacements``: (n, natom, 3)). ``force_constants``: full (natom, natom, 3, 3)."""
    import numpy as np

    fc = np.asarray(force_constants)
    if "first_atoms" not in dataset:
        return [-np.einsum("ijab,jb->ia", fc, np.asarray(u, dtype=float))
                for u in dataset["displacements"]]
    out = []
    for d in dataset["first_atoms"]:
        j = int(d["number"])
        u = np.asarray(d["displacement"], dtype=float)
        out.append(-np.einsum("iab,b->ia", fc[:, j], u))
    return out
