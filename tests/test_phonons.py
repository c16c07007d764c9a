"""Tests of softening_lib.tasks.phonons: analytic EMT checks, the DFT pipeline against the
JaGeo set's own numbers, and one small material end to end with CHGNet."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from scipy.spatial.transform import Rotation

from softening_lib import datasets
from softening_lib.models import ScaledCalculator
from softening_lib.phonopy_io import atoms_to_phonopy, phonopy_to_atoms
from softening_lib.tasks import phonons as P

FAST = P.PhononSettings(mesh=12.0, band_npoints=11, fmax=1e-4, max_steps=300)
FCC_PRIM = np.array([[0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])


def _emt_reference(unitcell, supercell=(2, 2, 2), primitive=FCC_PRIM, amplitude=0.01,
                   material_id="Cu-emt", plusminus="auto", residual=None,
                   dataset="emt-test") -> datasets.PhononReference:
    """A force set built like a DFT one, with EMT playing DFT (plus an optional residual force)."""
    from phonopy import Phonopy

    ph = Phonopy(atoms_to_phonopy(unitcell), supercell_matrix=np.diag(supercell), primitive_matrix=primitive)
    ph.generate_displacements(distance=amplitude, is_plusminus=plusminus)
    first = []
    for disp, cell in zip(ph.dataset["first_atoms"], ph.supercells_with_displacements):
        atoms = phonopy_to_atoms(cell)
        atoms.calc = EMT()
        forces = atoms.get_forces() + (0 if residual is None else residual)
        first.append({"number": disp["number"], "displacement": np.asarray(disp["displacement"]),
                      "forces": forces})
    return datasets.PhononReference(
        material_id=material_id, dataset=dataset, formula=unitcell.get_chemical_formula(),
        unitcell=unitcell, supercell_matrix=np.diag(supercell), primitive_matrix=primitive,
        displacement_dataset={"natom": len(ph.supercell), "first_atoms": first}, functional="EMT")


@pytest.fixture(scope="module")
def cu_emt():
    """Cu fcc (conventional cell) relaxed with EMT, so EMT's own minimum is the reference."""
    unit = bulk("Cu", "fcc", a=3.6, cubic=True)
    relaxed, info = P.relax(unit, EMT(), FAST)
    assert info["converged"]
    return _emt_reference(relaxed)


def test_emt_model_reproduces_emt_reference(cu_emt):
    """Model = the calculator that made the force set -> identical phonons, s = 1."""
    dft, _ = P.dft_phonons(cu_emt, FAST)
    rec, _ = P.model_phonons(cu_emt, "emt", calc=EMT(), settings=FAST)
    assert dft["max_freq_thz"] > 5  # Cu, EMT: ~7 THz
    assert rec["max_freq_thz"] == pytest.approx(dft["max_freq_thz"], rel=1e-4)
    assert rec["softening_scale_dft_disp"] == pytest.approx(1.0, abs=1e-6)
    assert rec["max_freq_at_dft_geometry_thz"] == pytest.approx(dft["max_freq_thz"], rel=1e-4)
    assert rec["n_displacements"] == dft["n_displacements"] == 1
    assert rec["displacement_amplitude"] == pytest.approx(0.01)
    assert rec["spacegroup_model"] == rec["spacegroup_dft"]
    assert not rec["has_imaginary"]


@pytest.mark.parametrize("c", [0.64, 0.81, 1.21])
def test_scaled_emt_scales_frequencies_by_sqrt_c(cu_emt, c):
    """E -> c E keeps the minimum and multiplies force constants by c: omega -> sqrt(c) omega."""
    base, _ = P.model_phonons(cu_emt, "emt", calc=EMT(), settings=FAST)
    scaled, _ = P.model_phonons(cu_emt, "emt", calc=ScaledCalculator(EMT(), c), settings=FAST)
    assert scaled["max_freq_thz"] / base["max_freq_thz"] == pytest.approx(np.sqrt(c), rel=1e-4)
    assert scaled["max_freq_mesh_thz"] / base["max_freq_mesh_thz"] == pytest.approx(np.sqrt(c), rel=1e-4)
    # and the softening scale on the reference displacements is c itself (all three versions)
    assert scaled["softening_scale_dft_disp"] == pytest.approx(c, rel=1e-6)
    assert scaled["softening_scale_dft_disp_raw"] == pytest.approx(c, rel=1e-6)
    assert scaled["softening_scale_dft_disp_resid"] == pytest.approx(c, rel=1e-6)
    # frequencies of the model's force constants at the reference geometry: sqrt(c) as well
    assert scaled["max_freq_at_dft_geometry_thz"] / base["max_freq_at_dft_geometry_thz"] == pytest.approx(
        np.sqrt(c), rel=1e-4)
    assert scaled["relax"]["volume_change"] == pytest.approx(base["relax"]["volume_change"], abs=1e-4)


def test_band_path_is_invariant_under_rotation(cu_emt):
    """seekpath's q-points are converted to phonopy's basis: a rotated cell gives the same bands."""
    unit = cu_emt.unitcell.copy()
    rot = Rotation.from_euler("zyx", [23, 41, -17], degrees=True).as_matrix()
    turned = unit.copy()
    turned.set_cell(unit.cell.array @ rot.T, scale_atoms=True)
    ref_turned = _emt_reference(turned)
    a, _ = P.dft_phonons(cu_emt, FAST)
    b, _ = P.dft_phonons(ref_turned, FAST)
    assert b["max_freq_band_thz"] == pytest.approx(a["max_freq_band_thz"], rel=1e-6)
    assert b["min_freq_band_thz"] == pytest.approx(a["min_freq_band_thz"], abs=1e-6)
    assert b["band_ticks"] == a["band_ticks"]
    # fcc path: the zone-boundary maximum sits at X; the band max must not be below the mesh max
    assert a["max_freq_band_thz"] >= a["max_freq_mesh_thz"] - 1e-6


def test_harmonic_softening_scale_ignores_residual_forces(cu_emt):
    """Reference forces carrying a residual (the structure not exactly at its DFT minimum):
    the force-constant based scale cancels it through the +/- displacement pairs, the
    raw-force scale does not."""
    rng = np.random.default_rng(1)
    residual = rng.normal(0, 0.02, (32, 3))
    residual -= residual.mean(axis=0)
    ref = _emt_reference(cu_emt.unitcell, plusminus=True, residual=residual)
    assert len(ref.displacement_dataset["first_atoms"]) == 2  # + and -
    scaled, _ = P.model_phonons(ref, "emt", calc=ScaledCalculator(EMT(), 0.7), settings=FAST)
    assert scaled["softening_scale_dft_disp"] == pytest.approx(0.7, rel=1e-6)
    assert abs(scaled["softening_scale_dft_disp_raw"] - 0.7) > 0.01
    clean, _ = P.dft_phonons(_emt_reference(cu_emt.unitcell, plusminus=True), FAST)
    dirty, _ = P.dft_phonons(ref, FAST)
    assert dirty["max_freq_thz"] == pytest.approx(clean["max_freq_thz"], rel=1e-6)


def test_imaginary_modes_are_reported_not_dropped():
    """A structure away from its minimum (Cu squeezed by 12 %) keeps its unstable modes."""
    unit = bulk("Cu", "fcc", a=3.6 * 1.12, cubic=True)
    ref = _emt_reference(unit)
    rec, _ = P.dft_phonons(ref, FAST)
    assert rec["status"] == "ok"
    assert np.isfinite(rec["min_freq_thz"])
    assert rec["has_imaginary"] == (rec["min_freq_thz"] < P.IMAGINARY_THZ)


def test_unsupported_element_is_skipped_and_listed(results_dir):
    """EMT covers no Cs/F: CsF is recorded as skipped with the reason, DFT still computed."""
    table = P.run(P.PBESOL, ["mp-1784"], ["emt"], settings=FAST, progress=False, showcase=[])
    emt = table[table["model"] == "emt"].iloc[0]
    assert emt["status"] == "skipped"
    assert "Cs" in emt["reason"] and "F" in emt["reason"]
    assert table[table["model"] == "dft"].iloc[0]["status"] == "ok"
    cov = P.coverage(["emt"], P.PBESOL, ["mp-1784"], settings=FAST).set_index("model")
    assert cov.loc["emt", "skipped"] == 1 and cov.loc["dft", "ok"] == 1


def test_pbesol_selection_is_deterministic_and_starts_with_csf():
    sel = P.pbesol_selection(240)
    assert sel == P.pbesol_selection(240)
    assert len(sel) == len(set(sel)) == 240
    assert sel[0] == "mp-1784"
    assert set(P.pbe103_ids_in_pbesol()) <= set(sel)


@pytest.mark.slow
@pytest.mark.parametrize("mp_id", ["mp-1000", "mp-1103235", "mp-11217", "mp-1564"])
def test_jageo_max_frequency_matches_its_own_table(mp_id):
    """Our phonopy pipeline on the JaGeo DFT forces reproduces the set's benchmark_max_frequency."""
    props = P.jageo_properties().set_index("material_id")
    ref = datasets.load(P.PBE68, subset=[mp_id])[0]
    rec, _ = P.dft_phonons(ref, P.PhononSettings(mesh=10.0))
    expected = props.loc[mp_id, "benchmark_max_frequency"]
    assert rec["max_freq_band_thz"] == pytest.approx(expected, rel=0.01)
    assert rec["max_freq_thz"] == pytest.approx(expected, rel=0.01)


@pytest.mark.slow
def test_chgnet_end_to_end_small_material(results_dir):
    """CHGNet on CsF (64-atom supercell, 2 displacements): relax, batched forces, phonons, cache."""
    index = P.pbesol_index().set_index("mp_id")
    mp_id = "mp-1784"
    settings = P.PhononSettings(mesh=10.0, band_npoints=11, fmax=0.01)
    table = P.run(P.PBESOL, [mp_id], ["chgnet-0.3.0"], settings=settings, progress=False,
                  showcase=[mp_id], on_error="raise")
    by = table.set_index("model")
    dft, chg = by.loc["dft"], by.loc["chgnet-0.3.0"]
    assert chg["status"] == "ok"
    assert chg["n_displacements"] == dft["n_displacements"]
    assert chg["n_atoms_supercell"] == dft["n_atoms_supercell"] == index.loc[mp_id, "n_atoms_supercell"] == 64
    assert chg["displacement_amplitude"] == pytest.approx(dft["displacement_amplitude"])
    assert chg["relax_fmax_reached"] <= settings.fmax or not chg["relax_converged"]
    assert 0.3 < chg["max_freq_thz"] / dft["max_freq_thz"] < 2.0
    assert 0.3 < chg["softening_scale_dft_disp"] < 2.0
    # cached: a second call computes nothing and returns the same numbers
    again = P.run(P.PBESOL, [mp_id], ["chgnet-0.3.0"], settings=settings, progress=False,
                  showcase=[mp_id], compute=False).set_index("model")
    assert again.loc["chgnet-0.3.0", "max_freq_thz"] == chg["max_freq_thz"]
    arrays = P.arrays_of("chgnet-0.3.0", P.PBESOL, mp_id)
    assert arrays is not None and arrays["band_frequencies"].ndim == 3
    ratios = P.ratio_table(P.PBESOL, [mp_id], ["chgnet-0.3.0"], settings=settings)
    assert ratios.iloc[0]["ratio"] == pytest.approx(chg["max_freq_thz"] / dft["max_freq_thz"])


# --------------------------------------------------------------------------------------
# the chapter's cache-only path with several models and partial coverage
# --------------------------------------------------------------------------------------

SOFT_C = 0.64  # a uniformly softened EMT: frequencies x 0.8


def soft_emt(**kw):
    """An import-path model for the tests ('test_phonons:soft_emt'): EMT with E -> 0.64 E."""
    return ScaledCalculator(EMT(), SOFT_C)


SOFT = "test_phonons:soft_emt"


def _put(model, ref, rec, arrays):
    path = P.store().put(P._store_model(model), P._key(ref.dataset, ref.material_id), rec)
    if arrays:
        from softening_lib import cache

        cache.save_arrays(path.with_suffix(".npz"), **arrays)


@pytest.fixture()
def two_model_cache(results_dir, cu_emt):
    """A result store filled by the real pipeline, filed as PhononDB-PBEsol records: Cu (at
    EMT's minimum) with EMT and soft EMT, and Cu stretched by 12 % (a reference off its
    minimum, with imaginary modes) with EMT only -- soft EMT is 'not cached yet' there."""
    cu = _emt_reference(cu_emt.unitcell, material_id="Cu-emt", dataset=P.PBESOL)
    stretched_cell = cu_emt.unitcell.copy()
    stretched_cell.set_cell(stretched_cell.cell * 1.12, scale_atoms=True)
    stretched = _emt_reference(stretched_cell, material_id="Cu-stretched", dataset=P.PBESOL)
    for ref in (cu, stretched):
        rec, arrays = P.dft_phonons(ref, FAST, with_arrays=True)
        _put("dft", ref, rec, arrays)
        path = P.band_path(ref.phonopy(with_forces=False).primitive, FAST.band_npoints)
        models_here = ["emt", SOFT] if ref is cu else ["emt"]
        for m in models_here:
            rec, arrays = P.model_phonons(ref, m, settings=FAST, with_arrays=True, dft_path=path)
            _put(m, ref, rec, arrays)
    return ["Cu-emt", "Cu-stretched"]


def test_compute_plan_default_preset_reads_the_cache_only():
    assert P.compute_plan("default", ["a", "b"]) is False
    assert P.compute_plan("smoke", ["a", "b"]) == ["a"]
    assert P.compute_plan("full", ["a"]) is True
    with pytest.raises(ValueError):
        P.compute_plan("huge", ["a"])


def test_cache_only_figures_with_partial_coverage(two_model_cache, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    ids = two_model_cache
    models_ = ["emt", SOFT]

    def no_compute(*a, **k):
        raise AssertionError("the default preset must not compute")

    monkeypatch.setattr(P, "model_phonons", no_compute)
    monkeypatch.setattr(P, "dft_phonons", no_compute)
    table = P.run(P.PBESOL, ids, models_, settings=FAST, progress=False,
                  compute=P.compute_plan("default", models_))
    status = {(r["model"], r["material_id"]): r["status"] for _, r in table.iterrows()}
    assert status[(SOFT, "Cu-stretched")] == "missing"
    assert status[("emt", "Cu-stretched")] == status[(SOFT, "Cu-emt")] == "ok"

    # Fig. 4a: DFT + both models drawn for Cu; soft EMT reported missing for the stretched cell
    fig, t = P.fig4a("Cu-emt", models_, compute=False, settings=FAST)
    assert len(fig.legends[0].get_texts()) == 3  # the legend sits under the plot, off the branches
    note = P.showcase_note(P.run(P.PBESOL, ["Cu-stretched"], models_, settings=FAST, progress=False,
                                 compute=False, showcase=[]), models_)
    assert "Not drawn" in note and SOFT in note

    # Fig. 4b: per-model n and medians from the cache; the soft model is sqrt(0.64) = 0.8 on Cu
    fig, summary, ratios = P.fig4b(models_, ids, settings=FAST)
    s = summary[summary["reference"] == "pbesol"].set_index("model")
    assert s.loc["emt", "n"] == 2 and s.loc[SOFT, "n"] == 1
    assert s.loc[SOFT, "median"] == pytest.approx(np.sqrt(SOFT_C), rel=1e-3)
    assert s.loc[SOFT, "fraction_below_1"] == 1.0
    shown = P.fig4b_table(summary)  # the numbers sit under the figure, none in the panels
    from softening_lib.plots import label

    assert shown.loc[("PhononDB-PBEsol", label("emt")), "n"] == 2
    assert shown.loc[("PhononDB-PBEsol", label(SOFT)), "% < 1"] == 100
    assert "imaginary" in shown and not fig.axes[0].texts  # a panel with data holds no text
    common = P.common_summary(ratios, models_).set_index("model")
    assert (common["n_common"] == 1).all()
    assert common.loc["emt", "median"] == pytest.approx(1.0, rel=1e-3)

    cov = P.coverage(models_, P.PBESOL, ids, settings=FAST).set_index("model")
    assert cov.loc["emt", "ok"] == 2 and cov.loc[SOFT, "ok"] == 1 and cov.loc[SOFT, "missing"] == 1

    # beyond the paper, per model: s and the frequency ratio at the DFT geometry follow sqrt(s)
    fig, scale = P.fig_scale(models_, ids, settings=FAST)
    assert len(fig.axes) == 4  # one row per model
    soft = scale[scale["model"] == SOFT].iloc[0]
    assert soft["median_sqrt_s"] == pytest.approx(np.sqrt(SOFT_C), rel=1e-4)
    assert soft["median_ratio_at_dft_geometry"] == pytest.approx(np.sqrt(SOFT_C), rel=1e-3)

    # imaginary modes are listed, not dropped: the stretched reference has them, the relaxed model not
    dft_min = P.cached("dft", P.PBESOL, "Cu-stretched", FAST)["min_freq_thz"]
    imag = P.imaginary_table(models_, ids, settings=FAST)
    listed = imag[(imag["material_id"] == "Cu-stretched") & (imag["model"] == "emt")]
    assert dft_min < -1.0  # EMT Cu stretched by 12 %: about -2.8 THz
    assert list(listed["imaginary_in"]) == ["DFT only"]
    assert listed.iloc[0]["min_freq_thz_dft"] == pytest.approx(dft_min)
    assert "Cu-stretched" in set(ratios.loc[ratios["model"] == "emt", "material_id"])  # kept in Fig. 4b
    fig, counts = P.fig_imaginary(models_, ids, settings=FAST)
    c = counts.set_index("model")
    assert c.loc["emt", "n"] == 2 and c.loc["emt", "DFT only"] == 1 and c.loc["emt", "model only"] == 0


def test_model_sentences_cover_every_model_and_reference():
    import pandas as pd

    ratios = pd.DataFrame({"model": ["emt"] * 4 + ["chgnet-0.3.0"] * 2,
                           "ratio": [0.8, 0.9, 1.1, 0.95, 0.7, 0.75]})
    summary = pd.concat([P.summarise(ratios).assign(reference="pbesol"),
                         P.summarise(ratios[ratios.model == "emt"]).assign(reference="pbe-jageo68")])
    text = P.model_sentences(summary)
    first, second = text.split("\n\n")
    assert first.startswith("Against PhononDB-PBEsol") and "75 % of 4 (median 0.925)" in first
    assert "100 % of 2 (median 0.725)" in first and second.startswith("Against the JaGeo VASP-PBE")
    from softening_lib.plots import label

    assert label("chgnet-0.3.0") in first and label("chgnet-0.3.0") not in second


# --------------------------------------------------------------------------------------
# beyond the paper: the finite-displacement amplitude scan
# --------------------------------------------------------------------------------------

from ase.calculators.calculator import Calculator, all_changes  # noqa: E402

NONLIN_U0 = 0.02  # Å


def _nonlinear_factor(u):
    """Force factor of :class:`NonlinearEMT` at displacement ``u``: reversed (< 0) below
    u0 ln 2 ~ 0.014 Å, harmonic EMT (-> 1) at large ``u``."""
    return 1.0 - 2.0 * np.exp(-u / NONLIN_U0)


class NonlinearEMT(Calculator):
    """EMT forces times a factor that depends on the largest displacement from ``reference``
    (same atom order): a force response that is not linear in the displacement."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, reference, **kw):
        super().__init__(**kw)
        self.reference = reference.copy()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        work = self.atoms.copy()
        work.calc = EMT()
        frac = work.get_scaled_positions(wrap=False) - self.reference.get_scaled_positions(wrap=False)
        frac -= np.round(frac)
        u = float(np.linalg.norm(frac @ self.reference.cell.array, axis=1).max())
        self.results = {"energy": work.get_potential_energy(), "forces": work.get_forces() * _nonlinear_factor(u)}


def nonlinear_emt(**kw):
    """The import-path model name of :class:`NonlinearEMT` (the tests pass ``calc=``; it needs
    the reference supercell)."""
    raise RuntimeError("NonlinearEMT needs its reference supercell: pass calc=NonlinearEMT(...)")


NONLIN = "test_phonons:nonlinear_emt"
AMPS = (0.003, 0.01, 0.03, 0.1)


def _supercell(ref):
    from phonopy import Phonopy

    ph = Phonopy(atoms_to_phonopy(ref.unitcell), supercell_matrix=ref.supercell_matrix,
                 primitive_matrix=ref.primitive_matrix)
    return phonopy_to_atoms(ph.supercell)


def test_amplitude_scan_emt_is_amplitude_independent_and_cached(results_dir, cu_emt, monkeypatch):
    table = P.amplitude_scan([cu_emt], ["emt"], amplitudes=AMPS, settings=FAST)
    assert list(table.columns[:7]) == ["material_id", "formula", "model", "amplitude_A", "min_freq_thz",
                                       "max_freq_thz", "imaginary"]
    assert len(table) == 4 and (table["status"] == "ok").all()
    assert list(table["amplitude_A"]) == list(AMPS)
    mx = table["max_freq_thz"].to_numpy(float)
    assert mx.min() > 5  # Cu, EMT: ~7 THz
    assert mx.max() / mx.min() - 1 < 0.01  # harmonic within 1 % from 0.003 to 0.1 Å
    assert not table["imaginary"].astype(bool).any()
    assert (table["min_freq_thz"] > P.IMAGINARY_THZ).all()
    # the DFT side (EMT made the force set at 0.01 Å) is reported alongside and agrees
    assert table["dft_max_freq_thz"].iloc[0] == pytest.approx(mx[1], rel=1e-3)
    assert table["dft_amplitude_A"].iloc[0] == pytest.approx(0.01)
    assert table["formula"].iloc[0] == "Cu"
    # the scan record is filed apart from the phonon records: the chapter's tables never see it
    assert set(P.cached_table(cu_emt.dataset, None, ["emt"], FAST)["model"]) == {"dft"}
    rec = P.store().get(P._store_model("emt"), f"amplitude_scan__{cu_emt.dataset}__{cu_emt.material_id}")
    assert rec["amplitudes"] == list(AMPS) and rec["phonon_settings_key"] == FAST.key()

    # cache round trip: nothing is computed the second time, the table is the same
    def no_compute(*a, **k):
        raise AssertionError("compute=False must not compute")

    monkeypatch.setattr(P, "scan_phonons", no_compute)
    monkeypatch.setattr(P, "dft_phonons", no_compute)
    again = P.amplitude_scan([cu_emt], ["emt"], amplitudes=AMPS, settings=FAST, compute=False)
    import pandas as pd

    pd.testing.assert_frame_equal(again, table)
    # other amplitudes (or settings) are a different record: missing, not the old numbers
    other = P.amplitude_scan([cu_emt], ["emt"], amplitudes=(0.01, 0.05), settings=FAST, compute=False)
    assert list(other["status"]) == ["missing"] and other["min_freq_thz"].isna().all()
    other = P.amplitude_scan([cu_emt], ["emt"], amplitudes=AMPS, settings=P.PhononSettings(mesh=13.0),
                             compute=False)
    assert list(other["status"]) == ["missing"]


def test_amplitude_scan_compute_false_on_empty_cache_computes_nothing(results_dir, cu_emt, monkeypatch):
    def no_compute(*a, **k):
        raise AssertionError("compute=False must not compute")

    for name in ("scan_phonons", "dft_phonons", "run"):
        monkeypatch.setattr(P, name, no_compute)
    table = P.amplitude_scan([cu_emt, "mp-1784"], ["emt", NONLIN], settings=FAST, compute=False)
    assert len(table) == 4 and (table["status"] == "missing").all()
    assert table[["amplitude_A", "min_freq_thz", "max_freq_thz", "dft_max_freq_thz"]].isna().all().all()
    assert not any(P.store().root.glob("*/amplitude_scan__*"))
    assert "not in the cache" in P.amplitude_note(table).lower()
    import matplotlib

    matplotlib.use("Agg")
    P.fig_amplitude_scan(table)  # draws "nothing cached yet", does not fail


def test_amplitude_scan_shows_a_nonlinear_force_response(results_dir, cu_emt):
    """Forces = EMT x (1 - 2 exp(-u/u0)): reversed at small displacements (all modes imaginary,
    by sqrt|factor|), EMT-like at large ones -- the pattern CHGNet shows for MgS and BeSe."""
    calc = NonlinearEMT(_supercell(cu_emt))
    base = P.amplitude_scan([cu_emt], ["emt"], amplitudes=AMPS, settings=FAST).set_index("amplitude_A")
    table = P.amplitude_scan([cu_emt], [NONLIN], amplitudes=AMPS, settings=FAST, calc=calc)
    nl = table.set_index("amplitude_A")
    for d in AMPS:
        s = _nonlinear_factor(d)
        emt_max = base.loc[d, "max_freq_thz"]
        if s > 0:  # force constants x s: frequencies x sqrt(s)
            assert nl.loc[d, "max_freq_thz"] / emt_max == pytest.approx(np.sqrt(s), rel=1e-3)
            assert not nl.loc[d, "imaginary"]
        else:  # force constants reversed: every mode imaginary, the lowest at -sqrt|s| x EMT's highest
            assert nl.loc[d, "min_freq_thz"] / emt_max == pytest.approx(-np.sqrt(-s), rel=1e-3)
            assert nl.loc[d, "imaginary"]
    assert list(nl["imaginary"]) == [True, True, False, False]
    assert nl.loc[0.1, "max_freq_thz"] == pytest.approx(base.loc[0.1, "max_freq_thz"], rel=0.02)

    both = P.amplitude_scan([cu_emt], ["emt", NONLIN], amplitudes=AMPS, settings=FAST, compute=False)
    assert (both["status"] == "ok").all() and len(both) == 8
    note = P.amplitude_note(both)
    emt_part, nl_part = note.split("\n\n")
    assert "No imaginary mode at any amplitude: Cu (Cu-emt)" in emt_part
    assert "disappear" not in emt_part
    assert "disappear at larger ones: Cu (Cu-emt)" in nl_part and "none from 0.03 Å on" in nl_part
    assert "every amplitude" not in nl_part

    import matplotlib

    matplotlib.use("Agg")
    fig = P.fig_amplitude_scan(both)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    curves = [line for line in ax.get_lines() if len(line.get_xdata()) == len(AMPS)]
    assert len(curves) == 2  # one per (material, model)
    assert min(np.min(c.get_ydata()) for c in curves) == pytest.approx(nl["min_freq_thz"].min())


def test_amplitude_note_keeps_and_loses():
    """The note sorts materials by the pattern of their numbers, not by name."""
    import pandas as pd

    rows = []
    for mp, f, mins in (("mp-a", "AB", [-6.0, -4.0, -0.0, -0.0]), ("mp-b", "CD", [-11.0, -10.0, -9.0, -8.0]),
                        ("mp-c", "EF", [0.0, 0.0, 0.0, 0.0]), ("mp-d", "GH", [0.0, -2.0, 0.0, 0.0])):
        for d, m in zip(AMPS, mins):
            rows.append({"material_id": mp, "formula": f, "model": "emt", "amplitude_A": d, "min_freq_thz": m,
                         "max_freq_thz": 10.0 + d, "imaginary": m < P.IMAGINARY_THZ, "dft_min_freq_thz": 0.0,
                         "dft_max_freq_thz": 10.0, "dft_amplitude_A": 0.01, "status": "ok"})
    note = P.amplitude_note(pd.DataFrame(rows, columns=P.SCAN_COLUMNS))
    assert "disappear at larger ones: AB (mp-a): -6.00 / -4.00 / 0.00 / 0.00 THz, none from 0.03 Å on" in note
    assert "Imaginary at every amplitude: CD (mp-b)" in note
    assert "No imaginary mode at any amplitude: EF (mp-c)" in note
    assert "Other patterns: GH (mp-d): imaginary at 0.01 Å" in note
    assert "at most 1.0 %" in note


def test_numbers_the_prose_quotes_come_from_the_data():
    from softening_lib import datasets as _ds

    try:
        naf = P.pbe103_top_quantiles("mp-682")
    except _ds.DatasetError:
        pytest.skip("PhononDB-PBE 103 not here")
    assert naf["formula"] == "NaF" and naf["top_thz"] > naf["next_thz"] and naf["next_level"] < 1
    try:
        ag2s = P.dense_mesh_max(P.PBE68, "mp-31053", mesh=8)
    except _ds.DatasetError:
        pytest.skip("JaGeo 68 not here")
    assert ag2s["formula"] == "Ag2S" and ag2s["mesh_max_thz"] > 0 and ag2s["rel_diff"] < 0


def test_cubic_binaries_frequency_ratio_follows_sqrt_s(monkeypatch):
    from softening_lib import config

    monkeypatch.setenv("SOFTENING_RESULTS_DIR", str(config.REPO_ROOT / "data" / "results"))  # the committed results
    got = P.cubic_binary_summary("chgnet-0.3.0", P.pbesol_selection(40))
    if got["n"] < 3:
        pytest.skip("no cached CHGNet phonons of cubic binaries here")
    assert got["s_min"] < got["s_median"] < got["s_max"]
    assert abs(got["sqrt_s_median"] - got["ratio_dft_median"]) < 0.1 and got["pearson_sqrt_s_ratio_dft"] > 0.5
    assert got["ex_formula"] == "AlAs" and got["ex_ratio_dft_geometry"] < 0.5


def test_jageo_models_drawn_only_from_the_threshold_on(monkeypatch):
    """The JaGeo panel and ratios: a model with fewer than JAGEO_MIN_MATERIALS materials is not
    drawn or summarised; the page's sentence names the drawn ones with their n and gives the
    others the compute command instead of listing their materials."""
    import matplotlib
    import pandas as pd

    matplotlib.use("Agg")
    n_min = P.JAGEO_MIN_MATERIALS
    ids = [f"mp-{i}" for i in range(68)]
    counts = {"chgnet-0.3.0": n_min, "m3gnet-mp-2021.2.8": n_min - 1, "tensornet-matpes-pbe": 0}
    r68 = pd.DataFrame([{"model": m, "material_id": ids[i], "ratio": 0.9, "has_imaginary": False}
                        for m, n in counts.items() for i in range(n)])
    empty = pd.DataFrame(columns=["model", "material_id", "ratio"])
    monkeypatch.setattr(P, "jageo_ids", lambda cheap_first=False: ids)
    monkeypatch.setattr(P, "ratio_table", lambda dataset, *a, **k: r68 if dataset == P.PBE68 else empty)
    monkeypatch.setattr(P, "pbe103_ratio_table", lambda *a, **k: empty)
    models_ = list(counts)

    shown, not_shown = P.jageo_split(models_)
    assert shown == {"chgnet-0.3.0": n_min}
    assert not_shown == {"m3gnet-mp-2021.2.8": n_min - 1, "tensornet-matpes-pbe": 0}

    note = P.jageo_note(models_)
    assert f"({n_min} materials)" in note and f"({n_min - 1} so far)" in note
    assert "python -m softening_lib compute --chapter 06 --model M" in note
    assert "`m3gnet-mp-2021.2.8`" in note and "`tensornet-matpes-pbe`" in note
    assert "mp-0" not in note  # no material list
    shown_text, not_shown_text = P.jageo_lists(models_)
    assert shown_text == f"CHGNet 0.3.0, {n_min} materials" and "NAME = tensornet-matpes-pbe" in not_shown_text
    assert P.jageo_lists(["chgnet-0.3.0"])[1] == "none" and P.jageo_lists(["tensornet-matpes-pbe"])[0] == "no model yet"
    glued = P.jageo_note(models_, command=False)  # for {glue:text}: names, no command
    assert "--model" not in glued and "`" not in glued and "m3gnet-mp-2021.2.8" in glued
    one = P.jageo_note(["chgnet-0.3.0", "tensornet-matpes-pbe"])
    assert "--model tensornet-matpes-pbe`" in one
    assert "Not shown" not in P.jageo_note(["chgnet-0.3.0"])
    assert "no model of this build" in P.jageo_note(["tensornet-matpes-pbe"])

    fig, summary, ratios = P.fig4b(models_, None)
    jageo = summary[summary["reference"] == "pbe-jageo68"]
    assert list(jageo["model"]) == ["chgnet-0.3.0"] and int(jageo["n"].iloc[0]) == n_min
    assert set(ratios.loc[ratios["reference"] == "pbe-jageo68", "model"]) == {"chgnet-0.3.0"}
    _, summary_low, _ = P.fig4b(models_, None, jageo_min=1)
    assert set(summary_low.loc[summary_low["reference"] == "pbe-jageo68", "model"]) == {
        "chgnet-0.3.0", "m3gnet-mp-2021.2.8"}


def test_shared_set_comparison_uses_the_materials_in_both_sets(monkeypatch):
    """The JaGeo and PBEsol set medians differ by material set; on the shared materials (same id
    and compound, model on both) the medians are compared, and the sentence says which it is."""
    import pandas as pd

    assert P._same_compound("CSi", "SiC") and P._same_compound("Ba2Te2", "BaTe")
    assert not P._same_compound("PbSe", "GeSb") and not P._same_compound(None, "BaTe")

    def rows(dataset, spec):
        return pd.DataFrame([{"model": m, "material_id": i, "formula": "X", "ratio": r, "max_freq_thz_dft": d,
                              "max_freq_thz": r * d, "n_atoms_supercell": 64 if dataset == P.PBESOL else 216}
                             for m, i, r, d in spec])

    # shared: a, b; JaGeo also holds c, d (soft), the PBEsol list e, f (stiff): the sets differ by material
    r68 = rows(P.PBE68, [("m", "a", 0.80, 10.0), ("m", "b", 0.90, 10.0), ("m", "c", 0.50, 5.0),
                         ("m", "d", 0.55, 5.0), ("m", "z", 0.60, 5.0)])
    rsol = rows(P.PBESOL, [("m", "a", 0.78, 10.0 * 0.8 / 0.78), ("m", "b", 0.88, 10.0), ("m", "e", 1.0, 8.0),
                           ("m", "f", 1.05, 8.0), ("m", "g", 1.0, 8.0)])
    monkeypatch.setattr(P, "ratio_table", lambda dataset, *a, **k: r68 if dataset == P.PBE68 else rsol)
    monkeypatch.setattr(P, "jageo_ids", lambda cheap_first=False: list("abcdz"))
    dft = pd.DataFrame({"model": ["dft"] * 2, "material_id": ["a", "b"], "status": ["ok", "no_dft_forces"]})
    monkeypatch.setattr(P, "cached_table", lambda *a, **k: dft)
    pairs, summary = P.shared_set_comparison(["m", "other"], pbesol_ids=list("abef"), shared=["a", "b"],
                                             clashes=["z"])
    assert sorted(pairs["material_id"]) == ["a", "b"] and set(pairs["model"]) == {"m"}
    a = pairs.set_index("material_id").loc["a"]
    assert a["ratio_pbe"] == pytest.approx(0.80) and a["ratio_pbesol"] == pytest.approx(0.78)
    assert a["dft_pbe_over_pbesol"] == pytest.approx(0.78 / 0.8) and a["model_pbe_over_pbesol"] == pytest.approx(1.0)
    s = summary.set_index("model")
    assert s.loc["m", "n_computed"] == 2 and s.loc["m", "n_shared"] == 2 and s.loc["m", "n_clash"] == 1
    assert s.loc["m", "median_pbe"] == pytest.approx(0.85) and s.loc["m", "median_pbesol"] == pytest.approx(0.83)
    assert s.loc["m", "set_median_pbe"] == pytest.approx(0.6) and s.loc["m", "n_set_pbe"] == 5
    assert s.loc["m", "set_median_pbesol"] == pytest.approx(0.94) and s.loc["m", "n_set_pbesol"] == 4  # list only
    text = P.shared_set_sentence(s.reset_index().iloc[0])
    assert "0.850 against PBE" in text and "0.830 against PBEsol" in text
    assert "comes from which materials are in each set" in text and "indication" in text
    assert "not explained" not in text  # DFT PBE below PBEsol here (0.975), as expected
    assert s.loc["m", "n_dft_both"] == 1 and "1 of them have DFT phonons from both sets" in text
    assert "1 more id names another compound" in text and "2 of them are in this chapter" not in text
    assert "1 of them are in this chapter" in P.shared_set_sentence(s.reset_index().iloc[0].copy().to_dict() | {"n_in_list": 1})
    assert "cannot yet be compared" in P.shared_set_sentence(s.reset_index().iloc[1])
    counts, medians = (P.shared_set_sentence(s.reset_index().iloc[0], part=k) for k in ("counts", "medians"))
    assert text == counts + " " + medians and "against PBE" not in counts and medians.startswith("On these 2")

    # the gap survives on the shared materials: the sentence says so
    rsol2 = rows(P.PBESOL, [("m", "a", 1.10, 10.0), ("m", "b", 1.20, 10.0), ("m", "e", 1.0, 8.0)])
    monkeypatch.setattr(P, "ratio_table", lambda dataset, *a, **k: r68 if dataset == P.PBE68 else rsol2)
    _, summary2 = P.shared_set_comparison(["m"], shared=["a", "b"])
    text2 = P.shared_set_sentence(summary2.iloc[0], few=2)
    assert "not only a matter of which materials" in text2 and "indication" not in text2
    assert "not explained" in P.shared_set_sentence(summary2.iloc[0].to_dict() | {"median_dft_shift": 1.05})
