"""Chapter 7 task: per-material softening records on frames with a known answer.

"DFT" labels come from ``ScaledCalculator(EMT(), 1/c)``, the model is EMT itself, so the
softening scale of every material is exactly ``c``.
"""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from softening_lib import datasets
from softening_lib.models import ScaledCalculator
from softening_lib.tasks import high_energy as he


def labelled_frames(material_id, c, n=4, seed=0, second="Au"):
    """Rattled Cu/X cells labelled with forces of EMT / c (so EMT has s = c)."""
    out = []
    for i in range(n):
        atoms = bulk("Cu", "fcc", a=3.62, cubic=True).repeat((2, 1, 1))
        atoms.symbols[2] = second
        atoms.rattle(0.12, seed=seed + i)
        ref = atoms.copy()
        ref.calc = ScaledCalculator(EMT(), 1.0 / c)
        datasets.labelled(atoms, energy=ref.get_potential_energy(), forces=ref.get_forces(),
                          material_id=material_id, frame_id=i, formula=f"Cu7{second}")
        out.append(atoms)
    return out


@pytest.fixture()
def results_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SOFTENING_RESULTS_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture()
def toy(results_dir):
    frames = labelled_frames("soft", 0.8) + labelled_frames("stiff", 1.25, seed=20)
    skipped = he.compute("toy", ["emt"], frames=frames, progress=False, parity=["soft"])
    return frames, skipped


def test_records_recover_the_known_scale(toy):
    _, skipped = toy
    assert skipped == {"emt": {}}
    for mid, c in (("soft", 0.8), ("stiff", 1.25)):
        rec = he.cached_record("emt", "toy", mid)
        assert rec["softening_scale"] == pytest.approx(c, rel=1e-10)
        assert rec["cmae"] == pytest.approx(0.0, abs=1e-10)
        assert rec["c_all"] == pytest.approx(1 / c, rel=1e-10)
        assert rec["n_frames"] == 4 and rec["n_atoms"] == 8
        assert sum(rec["bins"]["n"]) == rec["n_components"] == 4 * 8 * 3
        # held-out correction of an exactly scaled model is exact too
        for h in rec["heldout"]:
            assert h["c"] == pytest.approx(1 / c, rel=1e-10)
            assert h["mae_corrected"] == pytest.approx(0.0, abs=1e-10)
            assert h["mae_raw"] > 0


def test_table_summary_and_fraction_below_one(toy):
    table = he.material_table("toy", ["emt"])
    assert sorted(table["material_id"]) == ["soft", "stiff"]
    summ = he.summary(table)
    assert summ.loc[0, "fraction_s_below_1"] == pytest.approx(0.5)
    assert summ.loc[0, "n_materials"] == 2


def test_pooled_binned_slope_is_exact_in_every_bin(toy):
    recs = he.records("toy", ["emt"], ids=["soft"])["emt"]
    tab = he.pooled_binned_slope(recs, min_n=1)
    assert len(tab) >= 3
    np.testing.assert_allclose(tab["slope"], 0.8, rtol=1e-10)
    assert tab["n"].sum() == 96


def test_compute_resumes_from_the_store(toy, results_dir):
    frames, _ = toy
    path = he.store().path("emt", "toy__soft")
    before = path.stat().st_mtime_ns
    he.compute("toy", ["emt"], frames=frames, progress=False, parity=["soft"])
    assert path.stat().st_mtime_ns == before
    # verify=True notices changed labels and recomputes that material only
    changed = labelled_frames("soft", 0.5) + frames[4:]
    he.compute("toy", ["emt"], frames=changed, progress=False, verify=True)
    assert he.cached_record("emt", "toy", "soft")["softening_scale"] == pytest.approx(0.5)
    assert he.cached_record("emt", "toy", "stiff")["softening_scale"] == pytest.approx(1.25)


def test_unsupported_element_is_skipped_with_reason(results_dir):
    frames = labelled_frames("ok", 0.9)
    for atoms in labelled_frames("bad", 0.9):
        atoms.symbols[2] = "Fe"  # EMT has no Fe
        datasets.labelled(atoms, forces=np.ones((len(atoms), 3)), material_id="bad", frame_id=atoms.info["frame_id"])
        frames.append(atoms)
    skipped = he.compute("toy", ["emt"], frames=frames, progress=False)
    assert list(skipped["emt"]) == ["bad"] and "Fe" in skipped["emt"]["bad"]
    assert he.cached_record("emt", "toy", "bad") is None
    assert he.cached_record("emt", "toy", "ok") is not None


def test_split_residual_subtracts_the_undisplaced_frame():
    frames = labelled_frames("ph", 1.0, n=2)
    perfect = frames[0].copy()
    datasets.labelled(perfect, forces=np.zeros((8, 3)), material_id="ph", frame_id="perfect", residual_reference=True)
    rng = np.random.default_rng(0)
    residual = rng.normal(size=(8, 3))
    response = [rng.normal(size=(8, 3)) for _ in range(2)]
    kept, forces, rmax = he.split_residual(frames + [perfect], [response[0] + residual, response[1] + residual, residual])
    assert len(kept) == 2 and all(not a.info.get("residual_reference") for a in kept)
    np.testing.assert_allclose(forces[0], response[0])
    np.testing.assert_allclose(forces[1], response[1])
    assert rmax == pytest.approx(np.abs(residual).max())
    same, f2, none = he.split_residual(frames, response)
    assert none is None and len(same) == 2


def test_phonon_frames_of_a_real_reference():
    ref = datasets.load("phonondb-pbesol", subset=["mp-1784"])[0]
    frames = he.phonon_frames(ref)
    n_disp = len(ref.displacement_dataset["first_atoms"])
    assert len(frames) == n_disp + 1
    perfect = frames[-1]
    assert perfect.info["residual_reference"] and not np.any(perfect.get_forces())
    for atoms, disp in zip(frames[:-1], ref.displacement_dataset["first_atoms"]):
        moved = np.linalg.norm(atoms.positions - perfect.positions, axis=1)
        assert np.argmax(moved) == disp["number"]
        assert moved.max() == pytest.approx(np.linalg.norm(disp["displacement"]), abs=1e-6)
        np.testing.assert_allclose(atoms.get_forces(), disp["forces"])


def test_missing_dataset_is_reported_not_raised(monkeypatch, tmp_path):
    # the figshare file is not in the offline mirror
    monkeypatch.setenv("SOFTENING_ONLINE", "0")
    info = he.availability("wbm-he-figshare")
    assert info["available"] is False and "WBM_high_energy_states.json" in info["reason"]
    with pytest.raises(he.NoDataError):
        he.material_ids("not-a-force-dataset")


def test_figures_from_records(toy):
    fig, table = he.fig5a("toy", "soft", ["emt"], compute_missing=False)
    assert table.loc[0, "softening_scale"] == pytest.approx(0.8)
    assert len(fig.axes) == 1
    fig, frac = he.fig5b({"toy": he.material_table("toy", ["emt"])})
    assert frac.loc[0, "fraction_s_below_1"] == pytest.approx(0.5)
    fig, tab = he.fig_binned_slope({"toy": he.records("toy", ["emt"], ids=["soft"])}, min_n=1)
    np.testing.assert_allclose(tab["slope"], 0.8, rtol=1e-10)


def test_fig5a_without_cached_forces_says_what_to_do(toy):
    with pytest.raises(he.NoDataError, match="parity"):
        he.fig5a("toy", "stiff", ["emt"], compute_missing=False)
