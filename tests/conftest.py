"""Test environment: offline, one thread, the data mirror beside the repository, and a
throw-away results store so unit tests never write into the committed data/results."""

import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("SOFTENING_DATA_DIR", str(ROOT.parent / "shared" / "data"))
os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("SOFTENING_RESULTS_DIR", tempfile.mkdtemp(prefix="softening-results-"))
os.environ.setdefault("SOFTENING_CACHE_DIR", str(Path.home() / ".cache" / "softening_lib"))

import pytest  # noqa: E402


@pytest.fixture
def mirror_available():
    from softening_lib import config

    if config.data_dir() is None:
        pytest.skip("SOFTENING_DATA_DIR does not point at a data mirror")
    return config.data_dir()


def _labelled_frames(material_id, c=1.0, n=3, seed=0, second="Au", rattle=0.12):
    """``n`` rattled Cu7X cells (X = ``second`` on site 2) labelled with the forces and energy
    of ``EMT / c``, so EMT, taken as the model, has softening scale exactly ``c``.
    ``c=None``: zero placeholder forces (for elements EMT cannot label)."""
    import numpy as np
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from softening_lib import datasets
    from softening_lib.models import ScaledCalculator

    out = []
    for i in range(n):
        atoms = bulk("Cu", "fcc", a=3.62, cubic=True).repeat((2, 1, 1))
        atoms.symbols[2] = second
        atoms.rattle(rattle, seed=seed + i)
        if c is None:
            datasets.labelled(atoms, forces=np.zeros((len(atoms), 3)), material_id=material_id, frame_id=i,
                              formula=f"Cu7{second}")
        else:
            ref = atoms.copy()
            ref.calc = ScaledCalculator(EMT(), 1.0 / c)
            datasets.labelled(atoms, energy=ref.get_potential_energy(), forces=ref.get_forces(),
                              material_id=material_id, frame_id=i, formula=f"Cu7{second}")
        out.append(atoms)
    return out


@pytest.fixture
def labelled_frames():
    """Factory of DFT-labelled toy frames with a known softening scale (see ``_labelled_frames``)."""
    return _labelled_frames
