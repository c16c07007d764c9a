"""Chapter 7 task: per-material softening records on frames with a known answer.

"DFT" labels come from ``ScaledCalculator(EMT(), 1/c)``, the model is EMT itself, so the
softening scale of every material is exactly ``c``.
"""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from softening_lib import datasets
from softening_lib.tasks import high_energy as he



@pytest.fixture()
def toy(results_dir, labelled_frames):
    frames = labelled_frames("soft", 0.8, n=4) + labelled_frames("stiff", 1.25, n=4, seed=20)
    skipped = he.compute_dataset("toy", ["emt"], frames=frames, progress=False, parity=["soft"])
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


def test_compute_resumes_from_the_store(toy, results_dir, labelled_frames):
    frames, _ = toy
    path = he.store().path("emt", "toy__soft")
    before = path.stat().st_mtime_ns
    he.compute_dataset("toy", ["emt"], frames=frames, progress=False, parity=["soft"])
    assert path.stat().st_mtime_ns == before
    # verify=True notices changed labels and recomputes that material only
    changed = labelled_frames("soft", 0.5, n=4) + frames[4:]
    he.compute_dataset("toy", ["emt"], frames=changed, progress=False, verify=True)
    assert he.cached_record("emt", "toy", "soft")["softening_scale"] == pytest.approx(0.5)
    assert he.cached_record("emt", "toy", "stiff")["softening_scale"] == pytest.approx(1.25)


def test_unsupported_element_is_skipped_with_reason(results_dir, labelled_frames):
    frames = labelled_frames("ok", 0.9, n=4) + labelled_frames("bad", None, n=4, second="Fe")  # EMT has no Fe
    skipped = he.compute_dataset("toy", ["emt"], frames=frames, progress=False)
    assert list(skipped["emt"]) == ["bad"] and "Fe" in skipped["emt"]["bad"]
    assert he.cached_record("emt", "toy", "bad") is None
    assert he.cached_record("emt", "toy", "ok") is not None


def test_split_residual_subtracts_the_undisplaced_frame(labelled_frames):
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


def test_interactive_figures_from_records(toy):
    frames, _ = toy
    fig = he.fig5a_interactive("toy", "soft", ["emt"])
    points = fig.data[0]
    dft = np.concatenate([a.get_forces() for a in frames[:4]]).ravel()
    np.testing.assert_allclose(np.sort(points.x), np.sort(dft))
    np.testing.assert_allclose(np.asarray(points.y), 0.8 * np.asarray(points.x), atol=1e-10)  # EMT = 0.8 DFT
    first = points.customdata[0]  # frame, atom, component, s
    assert list(first[2:5]) == ["0", "0", "x"] and first[5] == "0.800"  # after material id, formula
    with pytest.raises(he.NoDataError):
        he.fig5a_interactive("toy", "stiff", ["emt"])
    table = he.material_table("toy", ["emt"])
    fig = he.fig5b_interactive({"toy": table, "empty": table.iloc[:0]})
    hist, rug = fig.data
    assert sorted(rug.x) == pytest.approx([0.8, 1.25]) and len(hist.x) == 2  # histogram: outliers clipped into the edge bins
    assert sorted(rug.text) == ["soft Cu7Au", "stiff Cu7Au"] and rug.legendgroup == hist.legendgroup
    assert len(fig.layout.shapes) == 1 and fig.layout.shapes[0].x0 == 1.0


def test_fig5a_without_cached_forces_says_what_to_do(toy):
    with pytest.raises(he.NoDataError, match="parity"):
        he.fig5a("toy", "stiff", ["emt"], compute_missing=False)


def _frames_force_constants_frequencies(ref, frames, permute_forces=False):
    """Phonon frequencies (THz, 8x8x8 mesh) rebuilt from the task's frames alone: each
    frame's displacement is read off its positions, its forces are the attached DFT labels."""
    ph = ref.phonopy(with_forces=False)
    perfect = frames[-1]
    first = []
    for atoms in frames[:-1]:
        disp = atoms.positions - perfect.positions
        k = int(np.argmax(np.linalg.norm(disp, axis=1)))
        forces = atoms.get_forces()
        first.append({"number": k, "displacement": disp[k],
                      "forces": np.roll(forces, 1, axis=0) if permute_forces else forces})
    ph.dataset = {"natom": len(perfect), "first_atoms": first}
    ph.produce_force_constants()
    ph.run_mesh([8, 8, 8])
    return ph.get_mesh_dict()["frequencies"]


def test_jageo_frames_reproduce_the_upstream_dft_phonons(mirror_available):
    """Positions and DFT forces of every JaGeo frame belong together: force constants built
    from the frames give the upstream DFT frequency range (max, and the imaginary min of
    Sb2Te3), while forces shifted by one atom do not (a mismatch would be caught)."""
    import pandas as pd

    props = pd.read_csv(datasets.locate("jageo-pbe-68", "phonon_properties_mace-mp-0b3_vs_pbe.csv"))
    props = props.set_index("material")
    ref = datasets.load("jageo-pbe-68", subset=["mp-1201"])[0]  # Sb2Te3, 15 displacements
    frames = he.phonon_frames(ref)
    assert len(frames) == 16 and frames[-1].info["residual_reference"]
    freqs = _frames_force_constants_frequencies(ref, frames)
    assert freqs.max() == pytest.approx(props.loc["mp-1201", "benchmark_max_frequency"], rel=0.02)
    assert freqs.min() == pytest.approx(props.loc["mp-1201", "benchmark_min_frequency"], abs=0.1)
    shifted = _frames_force_constants_frequencies(ref, frames, permute_forces=True)
    assert shifted.min() < -3.0  # mismatched forces give a badly unstable crystal


def test_jageo_without_forces_or_duplicated_is_skipped_with_reason(mirror_available, results_dir):
    no_forces = ["mp-2809", "mp-603640", "mp-7436", "mp-938"]
    skipped = he.compute_dataset("jageo-pbe-68", ["emt"], no_forces + ["mp-2201"], progress=False)["emt"]
    assert set(skipped) == set(no_forces) | {"mp-2201"}
    assert all("no displaced supercells with DFT forces" in skipped[m] for m in no_forces)
    assert "exact copy of mp-9935" in skipped["mp-2201"]  # byte-identical upstream file
    ids = he.jageo_by_cost()
    assert len(ids) == 63 and not set(ids) & set(skipped) and "mp-9935" in ids


def test_displacement_response_of_a_smooth_potential_is_flat_and_scales():
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from softening_lib.models import ScaledCalculator

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    tab = he.displacement_response("emt", atoms, atom_index=0, direction=(1, 1, 0), amplitudes=(1e-3, 3e-3, 1e-2))
    k = tab["k_eff"].to_numpy()
    assert np.all(k > 0) and np.ptp(k) / k.mean() < 0.01  # harmonic at small d
    # the curvature of the energy along the same path
    n = np.array([1, 1, 0]) / np.sqrt(2)
    energies = []
    for d in (-1e-3, 0.0, 1e-3):
        moved = atoms.copy()
        moved.positions[0] += d * n
        moved.calc = EMT()
        energies.append(moved.get_potential_energy())
    assert k[0] == pytest.approx((energies[0] - 2 * energies[1] + energies[2]) / 1e-6, rel=0.01)
    soft = he.displacement_response("emt", atoms, 0, (1, 1, 0), (1e-3, 3e-3, 1e-2), calc=ScaledCalculator(EMT(), 0.7))
    np.testing.assert_allclose(soft["k_eff"], 0.7 * k, rtol=1e-10)


def test_phonon_set_s_is_the_force_constant_definition_of_chapter_6():
    """A model whose harmonic PES is exactly 0.5 x DFT's has s = 0.5 on a phonon set, whatever
    the residual forces of either side; regressing raw DFT forces (which keep PhononDB's residual
    of the free Wyckoff parameter of wurtzite CdSe) against the residual-free model forces does not."""
    from softening_lib import metrics

    ref = datasets.load("phonondb-pbesol", subset=["mp-1070"])[0]  # wurtzite CdSe, +/- pairs
    dft_h, _ = he.harmonic_response(ref, [d["forces"] for d in ref.displacement_dataset["first_atoms"]])
    raw_dft = [np.asarray(d["forces"]) for d in ref.displacement_dataset["first_atoms"]]
    dft, model = he.harmonic_response(ref, [0.5 * f for f in dft_h])
    assert metrics.softening_scale(dft, model) == pytest.approx(0.5, abs=1e-6)
    # a residual with the crystal's symmetry (here: DFT's own, raw minus harmonic) cancels too
    dft_residual = np.mean([r - h for r, h in zip(raw_dft, dft_h)], axis=0)
    dft, model = he.harmonic_response(ref, [0.5 * f + dft_residual for f in dft_h])
    assert metrics.softening_scale(dft, model) == pytest.approx(0.5, abs=0.01)
    assert metrics.softening_scale(raw_dft, [0.5 * f for f in dft_h]) < 0.3  # the old, biased number
    assert he.record_version("phonondb-pbesol") == he.PHONON_RECORD_VERSION != he.record_version("wbm-he-gpaw")


def test_chapters_6_and_7_give_the_same_s_on_the_same_displacements(monkeypatch):
    from softening_lib import config
    from softening_lib.tasks import phonons

    monkeypatch.setenv("SOFTENING_RESULTS_DIR", str(config.REPO_ROOT / "data" / "results"))  # the committed results
    got = he.phonon_scale_agreement("chgnet-0.3.0", "phonondb-pbesol", phonons.pbesol_selection(40))
    if got["n"] == 0:
        pytest.skip("no cached CHGNet phonon records here")
    assert got["n_equal"] == got["n"]
