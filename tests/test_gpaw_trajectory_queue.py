"""scripts/gpaw_trajectory.py: the frames are labelled as executor.run_queue tasks (an EMT stand-in
for GPAW, in-process workers so the stand-in reaches them); finished frames are never relabelled,
--max-frames is respected, an SCF failure is a finished (failed) record."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parent.parent


def test_label_frames_on_the_executor(tmp_path, monkeypatch, inprocess_dask):
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    from softening_lib import dft

    spec = importlib.util.spec_from_file_location("gpaw_trajectory_under_test", ROOT / "scripts" / "gpaw_trajectory.py")
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, mod)
    spec.loader.exec_module(mod)

    inprocess_dask(2)
    calls = []

    def fake_label(atoms, **settings):
        k = int(atoms.info["frame_id"])
        calls.append(k)
        if k == 2:
            raise dft.SCFNotConvergedError("test")
        work = atoms.copy()
        work.calc = EMT()
        lab = atoms.copy()
        lab.calc = SinglePointCalculator(lab, energy=work.get_potential_energy(), forces=work.get_forces())
        return lab, {"cpu_time_s": 1.0, "scf_iterations": 1, "kpts": [1, 1, 1], "ecut_eV": 100.0}

    monkeypatch.setattr(dft, "label", fake_label)
    frames = []
    for k in range(5):
        a = bulk("Cu", "fcc", a=3.61, cubic=True)
        a.rattle(0.05, seed=k)
        a.info.update(frame_id=k, md_time_ps=0.1 * k)
        frames.append(a)
    cdir = tmp_path / "wbm-x"
    cdir.mkdir()
    assert mod.label_frames(frames, cdir, "wbm-x", max_frames=2, workers=2) == 2
    assert sorted(calls) == [0, 1]
    assert mod.label_frames(frames, cdir, "wbm-x", workers=2) == 2  # 3, 4 labelled; 2 failed
    assert sorted(calls) == [0, 1, 2, 3, 4]
    assert (cdir / "frame_002.failed.json").is_file()
    assert all(mod.frame_path(cdir, k).is_file() for k in (0, 1, 3, 4))
    calls.clear()
    assert mod.label_frames(frames, cdir, "wbm-x", workers=2) == 0 and calls == []
