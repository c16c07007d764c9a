"""The shared relaxation helper, on EMT copper (cheap, analytic)."""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from softening_lib.relax import RelaxationError, flag, relax


def rattled_cu(seed=0):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    atoms.rattle(0.08, seed=seed)
    return atoms


def test_relax_positions_converges_and_leaves_input_alone():
    atoms = rattled_cu()
    before = atoms.positions.copy()
    relaxed, info = relax(atoms, EMT(), fmax=0.02, steps=300)
    assert np.array_equal(atoms.positions, before)  # input untouched
    assert info["converged"] and info["fmax"] < 0.02
    assert info["energy"] < info["energy_initial"]
    forces = relaxed.get_forces()
    assert np.sqrt((forces ** 2).sum(1)).max() == pytest.approx(info["fmax"], abs=1e-9)
    # the perfect lattice is the minimum: relaxed energy within 1 meV/atom of it
    perfect = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    perfect.calc = EMT()
    assert info["energy"] == pytest.approx(perfect.get_potential_energy(), abs=1e-3 * len(atoms))
    assert flag(info) == "ok"


def test_not_converged_is_flagged_not_hidden():
    relaxed, info = relax(rattled_cu(), EMT(), fmax=1e-4, steps=2)
    assert info["converged"] is False
    assert info["steps"] == 2
    assert info["fmax"] > 1e-4
    assert "NOT CONVERGED" in flag(info)


def test_fix_freezes_atoms():
    atoms = rattled_cu(1)
    relaxed, info = relax(atoms, EMT(), fmax=0.05, steps=200, fix=[0, 3])
    assert info["n_fixed"] == 2
    assert np.allclose(relaxed.positions[[0, 3]], atoms.positions[[0, 3]])
    assert not np.allclose(relaxed.positions[1], atoms.positions[1])
    mask = np.zeros(len(atoms), bool)
    mask[5] = True
    relaxed2, _ = relax(atoms, EMT(), fmax=0.05, steps=50, fix=mask)
    assert np.allclose(relaxed2.positions[5], atoms.positions[5])


@pytest.mark.slow
def test_cell_filter_finds_emt_lattice_constant():
    # independent reference: minimise E(a) of the 1-atom fcc cell by a fine scan
    a_grid = np.linspace(3.55, 3.65, 201)
    energies = []
    for a in a_grid:
        at = bulk("Cu", "fcc", a=a)
        at.calc = EMT()
        energies.append(at.get_potential_energy())
    a0 = a_grid[int(np.argmin(energies))]
    start = bulk("Cu", "fcc", a=3.50)
    relaxed, info = relax(start, EMT(), fmax=1e-4, steps=500, cell_filter="frechet")
    assert info["converged"]
    a_relaxed = relaxed.cell.lengths()[0] * np.sqrt(2)
    assert a_relaxed == pytest.approx(a0, abs=1e-3)


@pytest.mark.parametrize("kw, match", [
    ({"fmax": -1}, "fmax"),
    ({"fmax": float("nan")}, "fmax"),
    ({"cell_filter": "unit"}, "cell_filter"),
    ({"optimizer": "newton"}, "optimizer"),
    ({"steps": -3}, "steps"),
    ({"fix": [99]}, "out of range"),
])
def test_bad_input(kw, match):
    with pytest.raises(RelaxationError, match=match):
        relax(rattled_cu(), EMT(), **kw)


def test_bad_structure_or_calc():
    from ase import Atoms

    with pytest.raises(RelaxationError, match="empty"):
        relax(Atoms(), EMT())
    with pytest.raises(RelaxationError, match="calculator"):
        relax(rattled_cu(), None)
    with pytest.raises(RelaxationError, match="ase.Atoms"):
        relax("Cu", EMT())
