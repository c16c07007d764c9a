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


def _labelled_frames(material_id, c=1.0, n=3, seed=0, second="Au", rattle=0.12, element="Cu", a=3.62,
                     repeat=(2, 1, 1)):
    """``n`` rattled fcc cells of ``element`` (cubic cell x ``repeat``; ``second``, if not None,
    on site 2) labelled with the forces and energy of ``EMT / c``, so EMT, taken as the model,
    has softening scale exactly ``c``. ``c=None``: zero placeholder forces (for elements EMT
    cannot label)."""
    import numpy as np
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from softening_lib import datasets
    from softening_lib.models import ScaledCalculator

    out = []
    for i in range(n):
        atoms = bulk(element, "fcc", a=a, cubic=True).repeat(repeat)
        if second is not None:
            atoms.symbols[2] = second
        formula = f"{element}{len(atoms) - 1}{second}" if second is not None else atoms.get_chemical_formula()
        atoms.rattle(rattle, seed=seed + i)
        if c is None:
            datasets.labelled(atoms, forces=np.zeros((len(atoms), 3)), material_id=material_id, frame_id=i,
                              formula=formula)
        else:
            ref = atoms.copy()
            ref.calc = EMT() if c == 1.0 else ScaledCalculator(EMT(), 1.0 / c)  # c = 1: bit-exact EMT
            datasets.labelled(atoms, energy=ref.get_potential_energy(), forces=ref.get_forces(),
                              material_id=material_id, frame_id=i, formula=formula)
        out.append(atoms)
    return out


@pytest.fixture
def labelled_frames():
    """Factory of DFT-labelled toy frames with a known softening scale (see ``_labelled_frames``)."""
    return _labelled_frames


@pytest.fixture
def results_dir(tmp_path, monkeypatch):
    """A throw-away results store for one test (``SOFTENING_RESULTS_DIR``)."""
    monkeypatch.setenv("SOFTENING_RESULTS_DIR", str(tmp_path))
    return tmp_path


def _fake_scan_labeller(calls, kill_after=None):
    """EMT forces and stress times a factor that converges in cutoff and in k-point density:
    (1 + 50/ecut)(1 + 0.2/kpt_density^2). Raises KeyboardInterrupt after ``kill_after`` calls."""
    from ase.calculators.emt import EMT

    from softening_lib import dft
    from softening_lib.datasets import labelled

    def fake(atoms, *, ecut, kpt_density):
        if kill_after is not None and len(calls) >= kill_after:
            raise KeyboardInterrupt("killed")
        calls.append((ecut, kpt_density))
        work = atoms.copy()
        work.calc = EMT()
        factor = (1 + 50 / ecut) * (1 + 0.2 / kpt_density**2)
        out = atoms.copy()
        labelled(out, energy=factor * work.get_potential_energy(), forces=factor * work.get_forces(),
                 stress=factor * work.get_stress(voigt=True))
        return out, {"kpts": list(dft.kpts_from_density(atoms, kpt_density)), "cpu_time_s": 1.0}

    return fake


@pytest.fixture
def fake_scan_labeller():
    """Factory of a stand-in for ``dft.label`` in ``dft.convergence_scan`` (see above)."""
    return _fake_scan_labeller


@pytest.fixture
def inprocess_dask(monkeypatch):
    """``inprocess_dask(n)``: executor.client_for -> an in-process LocalCluster of ``n`` thread
    workers (monkeypatched labellers and datasets reach the tasks; the task splitting, resume
    and records are those of a process cluster)."""
    pytest.importorskip("distributed")
    import contextlib

    from distributed import Client, LocalCluster

    from softening_lib import executor

    def use(n_workers: int = 2):
        @contextlib.contextmanager
        def client_for(scheduler=None, workers=None, *, log=print, **kw):
            with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=False,
                              dashboard_address=None) as cl:
                with Client(cl) as client:
                    yield client

        monkeypatch.setattr(executor, "client_for", client_for)

    return use
