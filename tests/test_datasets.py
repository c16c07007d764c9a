import json

import numpy as np
import pytest

from softening_lib import datasets


def test_manifest_entries_have_provenance():
    for name, ent in datasets.manifest().items():
        for key in ("title", "holds", "reader", "license", "citation"):
            assert ent.get(key), f"{name} lacks {key}"
        assert ent["reader"] in datasets.READERS, name
        assert ent.get("mirror") or ent.get("local"), name


def test_unknown_dataset_lists_known():
    with pytest.raises(datasets.UnknownDatasetError, match="wbm-he-gpaw"):
        datasets.load("no-such-set")


def test_missing_offline_file_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("SOFTENING_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SOFTENING_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SOFTENING_ONLINE", "0")
    with pytest.raises(datasets.DatasetUnavailableError) as err:
        datasets.load("wbm-he-figshare")
    msg = str(err.value)
    assert "SOFTENING_ONLINE=1" in msg and "figshare.com/ndownloader/files/50005317" in msg


def test_file_failing_its_hash_is_refused(monkeypatch, tmp_path, mirror_available):
    # a mirror whose WBM file has been tampered with
    (tmp_path / "wbm").mkdir()
    src = mirror_available / "wbm" / "wbm-random-pbe52-equilibrium-2025.1.json.gz"
    data = src.read_bytes()
    (tmp_path / "wbm" / src.name).write_bytes(data[:-10] + b"0123456789")
    monkeypatch.setenv("SOFTENING_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SOFTENING_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(datasets.DatasetHashError) as err:
        datasets.load("wbm-equilibrium")
    assert src.name in str(err.value) and "refusing" in str(err.value)


def _fake_high_energy_file(path, rng):
    """A small file in the exact layout of figshare 27307776 (WBM_high_energy_states.json)."""
    from pymatgen.core import Lattice, Structure

    data = {}
    truth = {}
    for wbm_id in ["wbm-1-1", "wbm-2-7"]:
        data[wbm_id] = {}
        for frame in range(3):
            s = Structure(Lattice.cubic(4.1 + 0.01 * frame), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
            s.perturb(0.05)
            f = rng.normal(size=(2, 3))
            stress_kbar = rng.normal(size=(3, 3))
            stress_kbar = (stress_kbar + stress_kbar.T) / 2
            data[wbm_id][str(frame)] = {"structure": s.as_dict(), "vasp_e": -7.5 - frame,
                                        "vasp_f": f.tolist(), "vasp_s": stress_kbar.tolist()}
            truth[(wbm_id, str(frame))] = (s, f, stress_kbar)
    path.write_text(json.dumps(data))
    return truth


def test_figshare_high_energy_reader_on_file_in_its_format(monkeypatch, tmp_path):
    rng = np.random.default_rng(3)
    mirror = tmp_path / "mirror"
    (mirror / "wbm").mkdir(parents=True)
    truth = _fake_high_energy_file(mirror / "wbm" / "WBM_high_energy_states.json", rng)
    monkeypatch.setenv("SOFTENING_DATA_DIR", str(mirror))
    frames = datasets.load("wbm-he-figshare")
    assert len(frames) == 6
    for atoms in frames:
        s, f, stress_kbar = truth[(atoms.info["material_id"], atoms.info["frame_id"])]
        np.testing.assert_allclose(atoms.get_forces(), f)
        np.testing.assert_allclose(atoms.positions, s.cart_coords, atol=1e-10)
        # kBar, VASP sign -> eV/A^3, ASE sign: 1 kBar = 0.1 GPa; 1 eV/A^3 = 160.2 GPa
        from ase.stress import voigt_6_to_full_3x3_stress

        np.testing.assert_allclose(voigt_6_to_full_3x3_stress(atoms.get_stress()),
                                   -stress_kbar * 0.1 / 160.21766208, rtol=1e-10)
        assert atoms.info["dataset"] == "wbm-he-figshare"
    sub = datasets.load("wbm-he-figshare", subset=["wbm-2-7"])
    assert {a.info["material_id"] for a in sub} == {"wbm-2-7"}


def test_labelled_rejects_wrong_force_shape():
    from ase.build import bulk

    with pytest.raises(datasets.DatasetError, match="shape"):
        datasets.labelled(bulk("Cu"), forces=np.zeros((2, 3)), material_id="x")


def test_wbm_equilibrium(mirror_available):
    frames = datasets.load("wbm-equilibrium")
    assert len(frames) == 972
    a = frames[0]
    assert a.info["material_id"].startswith("wbm-")
    assert np.isfinite(a.get_potential_energy())


def test_mp_references(mirror_available):
    mu = datasets.load("mp-elemental-refs")
    assert -6 < mu["Si"] < -5  # MP GGA Si: about -5.42 eV/atom
    structs = datasets.load("mp-element-structures", subset=["Cu"])
    assert structs["Cu"].get_chemical_symbols()[0] == "Cu"


def test_jageo_force_sets(mirror_available):
    (ref,) = datasets.load("jageo-pbe-68", subset=["mp-1000"])
    frames = ref.frames()
    assert len(frames) == ref.displacement_dataset["first_atoms"].__len__()
    f = frames[0].get_forces()
    assert f.shape == (len(frames[0]), 3)
    # a displaced atom feels a restoring force opposite to its displacement
    d = ref.displacement_dataset["first_atoms"][0]
    assert np.dot(f[d["number"]], d["displacement"]) < 0
    # forces of a finite-displacement set sum to ~0 (translation invariance)
    assert np.abs(f.sum(axis=0)).max() < 0.05


def test_phonondb_pbesol_verified_by_git_blob(mirror_available):
    (ref,) = datasets.load("phonondb-pbesol", subset=["mp-1784"])  # CsF, the paper's Fig. 4a
    assert ref.formula in ("CsF", "FCs")
    assert ref.functional == "PBEsol"
    ph = ref.phonopy()
    ph.produce_force_constants()
    assert ph.force_constants.shape[0] > 0


def test_phonondb_pbe_103(mirror_available):
    table = datasets.load("phonondb-pbe-103")
    assert table["material_id"].nunique() == 103
    assert set(np.round(table["quantile_level"].unique(), 4)) >= {0.0, 1.0}


def test_status_table_does_not_download(monkeypatch):
    monkeypatch.setenv("SOFTENING_ONLINE", "1")
    table = datasets.status()
    assert set(table["dataset"]) == set(datasets.manifest())
