"""The MACE code path on the tiny self-built model (MACE-MP-0 weights are not here)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from softening_lib import datasets, finetune, models

TINY = "softening_lib.finetune:tiny_mace_calculator"


def test_tiny_model_matches_its_provenance():
    path = finetune.tiny_mace_path()
    meta = json.loads((path.parent / "tiny_mace.json").read_text())
    assert path.stat().st_size < 1_000_000
    assert hashlib.sha256(path.read_bytes()).hexdigest() == meta["sha256"]
    assert (path.parent / "PROVENANCE.md").is_file()


def test_registry_loads_tiny_mace_via_import_path_and_forces_are_gradients():
    calc = models.get_calculator(TINY)
    assert calc.softening_model == TINY
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.symbols[1] = "Ni"
    atoms.rattle(0.05, seed=3)
    atoms.calc = calc
    f = atoms.get_forces()
    assert np.all(np.isfinite(f)) and np.abs(f).max() > 1e-4
    # central finite difference of the energy: F = -dE/dx
    h, i, k = 1e-4, 2, 1
    e = []
    for sign in (1, -1):
        b = atoms.copy()
        b.positions[i, k] += sign * h
        b.calc = calc
        e.append(b.get_potential_energy())
    assert -(e[0] - e[1]) / (2 * h) == pytest.approx(f[i, k], abs=1e-5)


@pytest.mark.slow
def test_mace_run_train_finetunes_tiny_model(tmp_path):
    rng = np.random.default_rng(4)
    frames = []
    for i in range(4):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
        atoms.positions += rng.normal(0, 0.08, atoms.positions.shape)
        atoms.calc = EMT()
        datasets.labelled(atoms, energy=atoms.get_potential_energy(), forces=atoms.get_forces(),
                          stress=atoms.get_stress(), material_id="emt-cu", frame_id=i)
        frames.append(atoms)
    settings = finetune.FineTuneSettings(epochs=2)
    calc, rec = finetune.finetune_mace(frames, finetune.tiny_mace_path(), settings=settings,
                                       workdir=tmp_path, timeout=600)
    assert rec["n_train"] + rec["n_val"] == 4 and rec["n_val"] == 1
    assert "--multiheads_finetuning" in rec["command"]
    assert [e for e, _ in rec["validation_loss_by_epoch"]] == [0, 1]
    base = models.get_calculator(TINY)
    a, b = frames[0].copy(), frames[0].copy()
    a.calc, b.calc = calc, base
    fa, fb = a.get_forces(), b.get_forces()
    assert np.all(np.isfinite(fa))
    assert not np.allclose(fa, fb)  # the weights moved
