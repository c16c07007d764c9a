"""Bad inputs and real faults (torn files, flipped bytes, path escapes, killed processes).

Each test makes the fault for real (writes a truncated file, flips a byte, kills a
process) and checks the message names the input and the fix.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT

from softening_lib import cache, metrics, predict
from softening_lib.structures import NonFiniteResultError, StructureError, check_result, validate

ROOT = Path(__file__).resolve().parent.parent


def cu(material_id="cu", frame_id=0, rattle=0.05, seed=0):
    atoms = bulk("Cu", "fcc", a=3.62, cubic=True)
    atoms.rattle(rattle, seed=seed)
    atoms.info.update(material_id=material_id, frame_id=frame_id)
    return atoms


# --------------------------------------------------------------------------------------
# structures.validate
# --------------------------------------------------------------------------------------

def test_nan_position_is_refused_naming_the_frame():
    atoms = cu("mp-30", 3)
    atoms.positions[1, 2] = np.nan
    with pytest.raises(StructureError, match=r"mp-30 frame 3.*non-finite.*atom\(s\) \[1\]"):
        validate(atoms)


def test_inf_cell_is_refused():
    atoms = cu("mp-30", 1)
    atoms.cell[0, 0] = np.inf
    with pytest.raises(StructureError, match="mp-30 frame 1: non-finite.*cell"):
        validate(atoms)


def test_zero_atoms_is_refused():
    with pytest.raises(StructureError, match="empty-one: has zero atoms"):
        validate(Atoms(cell=np.eye(3) * 3, pbc=True), name="empty-one")


def test_singular_cell_is_refused():
    atoms = cu("flat", 0)
    atoms.cell[2] = atoms.cell[0]  # two parallel cell vectors
    with pytest.raises(StructureError, match="flat frame 0: singular cell"):
        validate(atoms)


def test_molecule_without_cell_needs_require_pbc_false():
    mol = Atoms("H2O", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    with pytest.raises(StructureError, match="structure 4: is not periodic.*require_pbc=False"):
        validate(mol, index=4)
    assert validate(mol, require_pbc=False) is mol


def test_atoms_too_close_are_refused_and_the_threshold_can_be_lowered():
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [0.1, 0, 0]], cell=np.eye(3) * 5, pbc=True,
                  info={"material_id": "squashed", "frame_id": 7})
    with pytest.raises(StructureError, match=r"squashed frame 7: atoms 0 and 1 are 0.100 A apart.*min_distance"):
        validate(atoms)
    validate(atoms, min_distance=0.05)  # the override
    validate(atoms, min_distance=0)  # switched off


def test_periodic_image_distance_is_checked():
    # the two atoms are 4.8 A apart inside the cell but 0.2 A apart across the boundary
    atoms = Atoms("Cu2", positions=[[0.1, 0, 0], [4.9, 0, 0]], cell=np.eye(3) * 5, pbc=True)
    with pytest.raises(StructureError, match="0.200 A apart .periodic images included"):
        validate(atoms, name="wrap")


def test_short_cell_vector_is_refused():
    atoms = Atoms("Cu", positions=[[0, 0, 0]], cell=[0.3, 5, 5], pbc=True)
    with pytest.raises(StructureError, match="tiny: cell vector 0 is shorter"):
        validate(atoms, name="tiny")


def test_validate_refuses_a_non_atoms_and_a_negative_threshold():
    with pytest.raises(StructureError, match="structure 2: expected an ase.Atoms, got dict"):
        validate({"positions": []}, index=2)
    with pytest.raises(ValueError, match="min_distance"):
        validate(cu(), min_distance=-1)


def test_check_result_names_the_structure():
    with pytest.raises(NonFiniteResultError, match="frame 9: non-finite energy"):
        check_result("frame 9", energy=np.nan)
    with pytest.raises(NonFiniteResultError, match="x: 1 non-finite force"):
        check_result("x", energy=1.0, forces=[[0, 0, np.inf]])
    check_result("molecule", stress=np.full(6, np.nan), allow_nan_stress=True)
    with pytest.raises(NonFiniteResultError, match="partly: non-finite stress"):
        check_result("partly", stress=[1, 2, 3, np.nan, 0, 0], allow_nan_stress=True)


# --------------------------------------------------------------------------------------
# predict: validation before the model, finite results, batching by atoms
# --------------------------------------------------------------------------------------

class NaNCalc(EMT):
    """EMT whose forces come back NaN (a broken model)."""

    def calculate(self, *a, **kw):
        super().calculate(*a, **kw)
        self.results["forces"] = self.results["forces"] * np.nan


def test_predict_refuses_a_nan_position_before_the_model(results_dir):
    frames = [cu("m", i, seed=i) for i in range(4)]
    frames[3].positions[0, 0] = np.nan
    with pytest.raises(StructureError, match="m frame 3"):
        predict.predict(frames, "emt")
    with pytest.raises(StructureError, match="m frame 3"):
        predict.predict_cached(frames, "emt", "toy", progress=False)
    assert not list(results_dir.rglob("*.npz")), "nothing may be cached"


def test_predict_refuses_close_atoms_and_the_override_lets_them_through():
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [0.1, 0, 0]], cell=np.eye(3) * 6, pbc=True,
                  info={"material_id": "close", "frame_id": 0})
    with pytest.raises(StructureError, match=r"close frame 0 \(structure 0\): atoms 0 and 1 are 0.100 A apart"):
        predict.predict([atoms], "emt")
    out = predict.predict([atoms], "emt", min_distance=0.05)
    assert np.isfinite(out["energy"][0])


def test_predict_refuses_a_molecule_unless_asked():
    mol = Atoms("Cu2", positions=[[0, 0, 0], [2.5, 0, 0]], info={"material_id": "dimer"})
    with pytest.raises(StructureError, match="dimer.*not periodic"):
        predict.predict([mol], "emt")
    out = predict.predict([mol], "emt", require_pbc=False)
    assert np.all(np.isnan(out["stress"][0]))


def test_non_finite_model_forces_are_refused_and_not_cached(results_dir):
    frames = [cu("broken", i, seed=i) for i in range(2)]
    with pytest.raises(NonFiniteResultError, match="broken frame 0.*non-finite force"):
        predict.predict_cached(frames, "emt", "toy", calc=NaNCalc(), cache_tag="nan", progress=False)
    assert not list(results_dir.rglob("*.npz"))


def test_a_cached_file_with_nan_is_set_aside_and_recomputed(results_dir):
    frames = [cu("m1", i, seed=i) for i in range(2)]
    predict.predict_cached(frames, "emt", "toy", cache_tag="t", progress=False)
    path = results_dir / "predictions" / "toy" / "t" / "m1.npz"
    data = cache.load_arrays(path)
    data["energy"] = data["energy"] * np.nan  # an old cache from before the checks
    cache.save_arrays(path, **data)
    out = predict.predict_cached(frames, "emt", "toy", cache_tag="t", progress=False)
    assert np.all(np.isfinite([o["energy"] for o in out]))
    assert len(list(path.parent.glob("m1.npz.corrupt-*"))) == 1


@pytest.mark.parametrize("kw, match", [
    ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
    ({"max_atoms_per_batch": -5}, "max_atoms_per_batch must be an integer >= 1, got -5"),
])
def test_predict_argument_checks(kw, match):
    with pytest.raises(ValueError, match=match):
        predict.predict([cu()], "emt", **kw)


def test_predict_refuses_a_single_atoms_and_a_non_atoms():
    with pytest.raises(ValueError, match=r"single Atoms; wrap it: \[atoms\]"):
        predict.predict(cu(), "emt")
    with pytest.raises(ValueError, match=r"frames\[1\] is a str"):
        predict.predict([cu(), "POSCAR"], "emt")
    with pytest.raises(ValueError, match="model must be a registry name"):
        predict.predict([cu()], None)


def test_batch_plan_bounds_atoms_not_structure_count():
    # two 1000-atom cells never share a batch under a 1500-atom ceiling
    assert predict.batch_plan([1000, 1000], max_atoms_per_batch=1500, max_structures=16) == [[0], [1]]
    plan = predict.batch_plan([8] * 10 + [1000, 8, 8], max_atoms_per_batch=40, max_structures=4)
    assert plan == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9], [10], [11, 12]]
    sizes = np.random.default_rng(0).integers(1, 300, size=200)
    plan = predict.batch_plan(sizes, max_atoms_per_batch=500, max_structures=16)
    assert sorted(i for b in plan for i in b) == list(range(200))
    for b in plan:
        assert len(b) <= 16
        assert len(b) == 1 or sum(sizes[b]) <= 500
    # a structure larger than the ceiling gets a batch of its own
    assert predict.batch_plan([10, 5000, 10], max_atoms_per_batch=100) == [[0], [1], [2]]
    with pytest.raises(ValueError, match="max_atoms_per_batch must be an integer >= 1, got 0"):
        predict.batch_plan([1], max_atoms_per_batch=0)


@pytest.mark.parametrize("kw, what", [
    ({"dataset": ".."}, "dataset '..'"),
    ({"dataset": "a/../../etc"}, "dataset 'a/../../etc' contains a path separator"),
    ({"dataset": "ok", "cache_tag": "../x"}, "cache_tag '../x' contains a path separator"),
    ({"dataset": "ok", "cache_tag": ".."}, "cache_tag '..'"),
    ({"dataset": ""}, "dataset is empty"),
])
def test_predict_cached_refuses_names_that_escape(results_dir, kw, what):
    with pytest.raises(ValueError, match=what.replace("(", r"\(").replace(")", r"\)")):
        predict.predict_cached([cu()], "emt", progress=False, **kw)
    assert not list(results_dir.parent.glob("etc")) and not list(results_dir.rglob("*.npz"))


def test_predict_cached_refuses_a_material_id_of_dotdot(results_dir):
    with pytest.raises(ValueError, match="material_id '..'"):
        predict.predict_cached([cu("..")], "emt", "toy", progress=False)


# --------------------------------------------------------------------------------------
# cache: torn files, unique temporaries, locks, names
# --------------------------------------------------------------------------------------

def _frames_two_materials():
    return [cu("m1", 0, seed=1), cu("m1", 1, seed=2), cu("m2", 0, seed=3)]


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty"])
def test_torn_prediction_npz_is_set_aside_and_recomputed(results_dir, damage):
    frames = _frames_two_materials()
    first = predict.predict_cached(frames, "emt", "toy", cache_tag="t", progress=False)
    path = results_dir / "predictions" / "toy" / "t" / "m1.npz"
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(bytes(raw[: len(raw) // 2]))
    elif damage == "flip":  # one byte inside the compressed forces (a flip in a zip header may be harmless)
        import zipfile

        info = zipfile.ZipFile(path).getinfo("forces.npy")
        off = info.header_offset
        start = off + 30 + int.from_bytes(raw[off + 26:off + 28], "little") + int.from_bytes(raw[off + 28:off + 30], "little")
        raw[start + info.compress_size // 2] ^= 0xFF
        path.write_bytes(bytes(raw))
    else:
        path.write_bytes(b"")
    other = (results_dir / "predictions" / "toy" / "t" / "m2.npz").stat().st_mtime_ns
    again = predict.predict_cached(frames, "emt", "toy", cache_tag="t", progress=False)
    for a, b in zip(first, again):
        assert a["energy"] == pytest.approx(b["energy"])
    assert len(list(path.parent.glob("m1.npz.corrupt-*"))) == 1
    assert (results_dir / "predictions" / "toy" / "t" / "m2.npz").stat().st_mtime_ns == other, \
        "only the torn material is recomputed"
    assert cache.load_arrays(path) is not None


def test_torn_result_store_json_is_set_aside(results_dir):
    store = cache.ResultStore("faults")
    path = store.put("emt", "k1", {"x": 1})
    path.write_text('{"x": ')
    assert store.get("emt", "k1") is None
    assert list(path.parent.glob("k1.json.corrupt-*"))
    assert not path.exists()


@pytest.mark.parametrize("task, model, match", [
    ("..", "emt", "task '..'"),
    ("ok", "..", "model '..'"),
    ("ok", "a/b", "model 'a/b' contains a path separator"),
    ("x/../../y", "emt", "task 'x/../../y' contains a path separator"),
])
def test_result_store_refuses_names_that_escape(results_dir, task, model, match):
    with pytest.raises(ValueError, match=match.replace("(", r"\(")):
        cache.ResultStore(task).put(model, "k", {"a": 1})


def test_result_store_key_cannot_be_dotdot(results_dir):
    with pytest.raises(ValueError, match="cache key '..'"):
        cache.ResultStore("ok").put("emt", "..", {})


def test_under_root_refuses_a_symlink_escape(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(ValueError, match="outside"):
        cache.under_root(root / "link" / "x.json", root)


def test_temporary_names_are_unique_per_writer(tmp_path):
    """Two writers of the same file never share a temporary name (mkstemp), and nothing is left behind."""
    import tempfile

    names = set()
    real = tempfile.mkstemp

    def spy(*a, **kw):
        fd, name = real(*a, **kw)
        names.add(name)
        return fd, name

    tempfile.mkstemp = spy
    try:
        for _ in range(5):
            cache.atomic_write_text(tmp_path / "same.json", "{}")
            cache.save_arrays(tmp_path / "same.npz", a=np.zeros(3))
    finally:
        tempfile.mkstemp = real
    assert len(names) == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.json", "same.npz"]


_RACE = textwrap.dedent("""
    import sys, json
    from pathlib import Path
    from softening_lib import cache
    path = Path(sys.argv[1]); me = sys.argv[2]
    for i in range(40):
        with cache.locked_json(path, {}) as data:
            data[f"{me}-{i}"] = i
""")


def test_locked_json_loses_no_update_when_two_processes_race(tmp_path):
    path = tmp_path / "index.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", _RACE, str(path), name], env=env) for name in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    data = json.loads(path.read_text())
    assert len(data) == 80, "a read-modify-write without the lock loses updates"


# --------------------------------------------------------------------------------------
# metrics: arguments that make no sense
# --------------------------------------------------------------------------------------

def test_softening_scale_requires_equal_shapes_not_equal_sizes():
    rng = np.random.default_rng(0)
    with pytest.raises(metrics.MetricError, match=r"dft_forces shape \(3, 4\) vs model_forces shape \(4, 3\)"):
        metrics.softening_scale(rng.normal(size=(3, 4)), rng.normal(size=(4, 3)))
    with pytest.raises(metrics.MetricError, match=r"frame 0: dft_forces shape \(3, 4\)"):
        metrics.mae([rng.normal(size=(3, 4))], [rng.normal(size=(4, 3))])


@pytest.mark.parametrize("scale", [-1, 0, np.nan, np.inf, "big"])
def test_cmae_refuses_a_nonsense_scale(scale):
    f = np.ones((2, 3))
    with pytest.raises(metrics.MetricError, match="scale must be a"):
        metrics.cmae(f, f, scale=scale)


@pytest.mark.parametrize("n_boot", [0, -3, 2.5, True])
def test_bootstrap_refuses_a_nonsense_n_boot(n_boot):
    with pytest.raises(metrics.MetricError, match="n_boot must be an integer >= 1"):
        metrics.bootstrap_ci(np.arange(5.0), np.mean, n_boot=n_boot)


def test_bootstrap_other_arguments():
    with pytest.raises(metrics.MetricError, match="ci must be"):
        metrics.bootstrap_ci(np.arange(5.0), np.mean, ci=95)
    with pytest.raises(metrics.MetricError, match="empty"):
        metrics.bootstrap_ci(np.zeros(0), np.mean)
    with pytest.raises(metrics.MetricError, match="different lengths"):
        metrics.bootstrap_ci((np.zeros(3), np.zeros(4)), metrics.mae)
    with pytest.raises(metrics.MetricError, match="groups has 2 labels for 5 rows"):
        metrics.bootstrap_ci(np.arange(5.0), np.mean, groups=[0, 1])
    with pytest.raises(metrics.MetricError, match="statistic must be callable"):
        metrics.bootstrap_ci(np.arange(5.0), "mean")


def test_force_metrics_with_all_zero_model_forces_raises_not_nan():
    dft = np.random.default_rng(1).normal(size=(4, 3))
    with pytest.raises(metrics.MetricError, match="all model force components are zero"):
        metrics.force_metrics(dft, np.zeros((4, 3)))


def test_metrics_refuse_strings_and_bad_bins():
    with pytest.raises(metrics.MetricError, match="dft_forces must be an array"):
        metrics.mae("forces.npy", np.zeros(3))
    with pytest.raises(metrics.MetricError, match="bins must be"):
        metrics.binned_slope(np.ones(6), np.ones(6), bins=[1.0, 0.5])


def test_per_material_names_a_missing_column():
    import pandas as pd

    with pytest.raises(metrics.MetricError, match=r"no column\(s\) \['dft_forces'\]"):
        metrics.per_material(pd.DataFrame({"model": [], "material_id": [], "model_forces": []}))


# --------------------------------------------------------------------------------------
# datasets: manifest hashes, subsets, labels
# --------------------------------------------------------------------------------------

#: files without a pinned hash, each with its reason in the manifest; this set may only shrink
KNOWN_UNPINNED = {("wbm-he-figshare", "WBM_high_energy_states.json"), ("mp-surfaces-tran2016", "surfaces.json")}


def test_every_non_local_manifest_file_has_a_64_hex_sha256():
    import re

    from softening_lib import datasets

    unpinned = set()
    for name, ent in datasets.manifest().items():
        if ent.get("local"):
            continue
        for filename, spec in (ent.get("files") or {}).items():
            sha = (spec or {}).get("sha256")
            if sha is None:
                assert (spec or {}).get("unpinned"), f"{name}/{filename}: sha256 null without an `unpinned` reason"
                unpinned.add((name, filename))
            else:
                assert re.fullmatch(r"[0-9a-f]{64}", sha), f"{name}/{filename}: sha256 {sha!r} is not 64 hex digits"
    assert unpinned <= KNOWN_UNPINNED, f"new unpinned files: {unpinned - KNOWN_UNPINNED}"


def test_an_unpinned_file_is_never_downloaded(tmp_path, monkeypatch):
    from softening_lib import datasets

    monkeypatch.setenv("SOFTENING_ONLINE", "1")
    monkeypatch.setenv("SOFTENING_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("SOFTENING_DATA_DIR", str(tmp_path / "no-mirror"))
    with pytest.raises(datasets.UnpinnedDownloadError, match="'wbm-he-figshare': file 'WBM_high_energy_states.json' has no pinned sha256"):
        datasets.locate("wbm-he-figshare", "WBM_high_energy_states.json")
    assert not list(tmp_path.rglob("WBM_high_energy_states.json"))


def test_a_mirror_file_with_a_flipped_byte_is_refused(tmp_path, monkeypatch, mirror_available):
    import shutil

    from softening_lib import datasets

    src = mirror_available / "wbm" / "wbm-random-pbe52-equilibrium-2025.1.json.gz"
    (tmp_path / "wbm").mkdir()
    dst = tmp_path / "wbm" / src.name
    shutil.copy(src, dst)
    raw = bytearray(dst.read_bytes())
    raw[1000] ^= 0x01
    dst.write_bytes(bytes(raw))
    monkeypatch.setenv("SOFTENING_DATA_DIR", str(tmp_path))
    with pytest.raises(datasets.DatasetHashError, match="wbm-random-pbe52-equilibrium-2025.1.json.gz fails its sha256"):
        datasets.locate("wbm-equilibrium", src.name, download=False)


@pytest.mark.parametrize("subset, match", [
    ("wbm-1-10", r"subset must be a list of ids, got the string 'wbm-1-10'; write subset=\['wbm-1-10'\]"),
    ({"a": 1}, "subset must be a list of ids, got a dict"),
    ([1, 2], "subset holds non-string ids"),
    (5, "subset must be a list of ids, got int"),
])
def test_dataset_subset_must_be_a_list_of_ids(subset, match):
    from softening_lib import datasets

    with pytest.raises(ValueError, match=match):
        datasets.load("wbm-he-gpaw", subset=subset)


def test_labelled_refuses_non_finite_labels():
    from softening_lib import datasets

    with pytest.raises(datasets.DatasetError, match="energy of mp-9 frame 2 is nan"):
        datasets.labelled(cu(), energy=float("nan"), material_id="mp-9", frame_id=2)
    forces = np.zeros((4, 3))
    forces[0, 0] = np.inf
    with pytest.raises(datasets.DatasetError, match="forces of mp-9 frame 1 hold non-finite"):
        datasets.labelled(cu(), forces=forces, material_id="mp-9", frame_id=1)


def test_unknown_dataset_name_type():
    from softening_lib import datasets

    with pytest.raises(datasets.UnknownDatasetError, match="dataset name must be a string, got NoneType"):
        datasets.load(None)


def test_wbm_he_gpaw_still_loads_600_frames():
    from softening_lib import datasets

    assert len(datasets.load("wbm-he-gpaw")) == 600


# --------------------------------------------------------------------------------------
# relax, dft, correction, finetune
# --------------------------------------------------------------------------------------

def test_relax_refuses_a_broken_structure_before_the_calculator():
    from softening_lib.relax import relax

    calls = []

    class Spy(EMT):
        def calculate(self, *a, **kw):
            calls.append(1)
            super().calculate(*a, **kw)

    atoms = cu("mp-30", 5)
    atoms.positions[2] = atoms.positions[1] + [0.05, 0, 0]
    with pytest.raises(StructureError, match="mp-30 frame 5: atoms 1 and 2 are 0.050 A apart"):
        relax(atoms, Spy())
    atoms = cu("mp-30", 6)
    atoms.cell[1] = 0
    with pytest.raises(StructureError, match="mp-30 frame 6: singular cell"):
        relax(atoms, Spy(), cell_filter="frechet")
    assert not calls, "the calculator must never see a refused structure"


def _fake_labeller(calls):
    from softening_lib.datasets import labelled

    def fake(atoms, **settings):
        calls.append(len(calls))
        work = atoms.copy()
        work.calc = EMT()
        out = atoms.copy()
        labelled(out, energy=work.get_potential_energy(), forces=work.get_forces(), stress=work.get_stress())
        return out, {"code": "fake", "n": len(calls)}

    return fake


def _queue_frames(n=4):
    return [cu("q", i, rattle=0.05, seed=i) for i in range(n)]


def test_label_queue_sets_aside_a_torn_partial_file_and_goes_on(tmp_path):
    from softening_lib import dft

    out = tmp_path / "scan.extxyz"
    frames = _queue_frames()
    calls = []
    dft.label_queue(frames[:3], out, labeller=_fake_labeller(calls), log=None)  # as if killed after 3 ...
    os.replace(out, out.with_suffix(".partial.extxyz"))  # ... with the partial file left behind
    partial = out.with_suffix(".partial.extxyz")
    text = partial.read_text()
    partial.write_text(text[: len(text) * 2 // 3])  # torn mid-frame
    calls.clear()
    done = dft.label_queue(frames, out, labeller=_fake_labeller(calls), log=None)
    assert len(done) == 4 and len(calls) == 4, "a torn partial file is recomputed from the start"
    assert len(list(tmp_path.glob("scan.partial.extxyz.corrupt-*"))) == 1
    assert not partial.exists()


def test_label_queue_resumes_an_intact_partial_file_without_recomputing(tmp_path):
    from softening_lib import dft

    out = tmp_path / "scan.extxyz"
    frames = _queue_frames()
    calls = []
    dft.label_queue(frames[:2], out, labeller=_fake_labeller(calls), log=None)
    os.replace(out, out.with_suffix(".partial.extxyz"))
    calls.clear()
    done = dft.label_queue(frames, out, labeller=_fake_labeller(calls), log=None)
    assert len(done) == 4 and len(calls) == 2


def test_label_queue_refuses_to_mix_another_queue(tmp_path):
    from softening_lib import dft

    out = tmp_path / "scan.extxyz"
    calls = []
    dft.label_queue(_queue_frames()[:2], out, labeller=_fake_labeller(calls), log=None)
    os.replace(out, out.with_suffix(".partial.extxyz"))
    other = [cu("q", i, rattle=0.05, seed=100 + i) for i in range(3)]
    calls.clear()
    dft.label_queue(other, out, labeller=_fake_labeller(calls), log=None)
    assert len(calls) == 3
    assert list(tmp_path.glob("scan.partial.extxyz.corrupt-*"))


def test_dft_label_refuses_a_broken_structure_before_gpaw():
    from softening_lib import dft

    atoms = cu("wbm-1-2", 4)
    atoms.positions[0] = np.nan
    with pytest.raises(StructureError, match="wbm-1-2 frame 4: non-finite"):
        dft.label(atoms)
    mol = Atoms("N2", positions=[[0, 0, 0], [1.1, 0, 0]], info={"material_id": "n2"})
    with pytest.raises(StructureError, match="n2: is not periodic"):
        dft.label(mol)


@pytest.mark.parametrize("c", [0, -1, np.nan, "x"])
def test_correction_apply_refuses_a_nonsense_c(c):
    from softening_lib import correction

    with pytest.raises(correction.CorrectionError, match="c must be a"):
        correction.apply(EMT(), c)


def test_correction_heldout_train_indices_and_frame_counts():
    from softening_lib import correction

    f = [np.ones((2, 3)), np.ones((2, 3)) * 2]
    with pytest.raises(correction.CorrectionError, match=r"train indices \[5\] are out of range for 2 frames"):
        correction.heldout_scores(f, f, train=[5])
    with pytest.raises(correction.CorrectionError, match="train must be a list of frame indices, got 0"):
        correction.heldout_scores(f, f, train=0)
    with pytest.raises(metrics.MetricError, match="2 DFT frames but 1 model frames"):
        correction.frame_stats(f, f[:1])
    with pytest.raises(correction.CorrectionError, match="atoms must be one labelled ase.Atoms, got list"):
        correction.fit_scale_on_frame([cu()], "emt")


def test_finetune_refuses_a_tampered_foundation_model(tmp_path):
    import shutil

    from softening_lib import finetune

    src = finetune.tiny_mace_path()
    if not src.is_file():
        pytest.skip("tiny MACE model missing")
    finetune.check_trusted_model(src)  # the shipped file is trusted
    bad = tmp_path / "tiny_mace.model"
    shutil.copy(src, bad)
    raw = bytearray(bad.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    bad.write_bytes(bytes(raw))
    with pytest.raises(finetune.FineTuneError, match=r"tiny_mace.model \(sha256 [0-9a-f]{64}\) is a pickled model.*foundation_sha256"):
        finetune.finetune_mace([], bad)
    with pytest.raises(finetune.FineTuneError, match="not the expected"):
        finetune.check_trusted_model(bad, "0" * 64)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_an_untrusted_pickle_never_runs(tmp_path):
    import pickle

    from softening_lib import finetune

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.model"
    evil.write_bytes(pickle.dumps(_Evil(str(marker))))
    with pytest.raises(finetune.FineTuneError, match="evil.model .sha256 .* is a pickled model"):
        finetune._load_foundation(evil)
    assert not marker.exists(), "the pickle ran"


# --------------------------------------------------------------------------------------
# kill -9 of predict_cached (the fast version of benchmarks/kill_resume.py)
# --------------------------------------------------------------------------------------

def test_predict_cached_survives_three_kill_9(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import kill_resume
    finally:
        sys.path.pop(0)
    row = kill_resume.kill_and_resume("predict", tmp_path / "predict", n_kills=3, seed=1, delay=0.3,
                                      window=(1.3, 2.5))
    assert row["kills"] + row["ended_before_kill"] == 3
    assert row["kills"] >= 1, "no kill landed: the workload ended too soon"
    assert row["unreadable"] == 0, row["unreadable_files"]
    assert row["recomputed_units"] == row["lost_units"], row
    assert len(list((tmp_path / "predict" / "predictions" / "killbench" / "slow-emt").glob("m*.npz"))) == 12
