"""Surface energies end to end with EMT, checked against slabs built independently with ASE."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk, fcc100, fcc111
from ase.calculators.emt import EMT
from ase.optimize import BFGS

from softening_lib.models import ScaledCalculator
from softening_lib.tasks import surfaces as S

A_CU = 3.61


@pytest.fixture(scope="module")
def cu_cases():
    cases, skipped = S.make_slabs(bulk("Cu", "fcc", a=A_CU), system="Cu", millers=[(1, 0, 0), (1, 1, 1)])
    assert not skipped
    return {c.miller: c for c in cases}


def ase_gamma(slab, relax=False):
    """gamma from slab and bulk energies computed directly with ASE (no library code)."""
    ref = bulk("Cu", "fcc", a=A_CU)
    ref.calc = EMT()
    e_bulk = ref.get_potential_energy() / len(ref)
    slab.calc = EMT()
    if relax:
        BFGS(slab, logfile=None).run(fmax=0.005, steps=500)
    area = np.linalg.norm(np.cross(slab.cell[0], slab.cell[1]))
    return (slab.get_potential_energy() - len(slab) * e_bulk) / (2 * area), area


@pytest.mark.parametrize("miller, builder", [((1, 0, 0), fcc100), ((1, 1, 1), fcc111)])
def test_surface_energy_matches_direct_ase(cu_cases, miller, builder):
    case = cu_cases[miller]
    # the paper's geometry rules
    assert case.thickness >= 10.0 and case.vacuum >= 10.0
    assert np.allclose(case.bulk.cell[:2], case.slab.cell[:2])  # bulk shares the in-plane vectors
    # an ASE slab with the same number of (one-atom) layers, 1x1 in plane, 12 A vacuum each side
    slab = builder("Cu", size=(1, 1, len(case.slab)), a=A_CU, vacuum=12.0, periodic=True)
    g_ref, area = ase_gamma(slab)
    assert case.area == pytest.approx(area, rel=1e-6)
    row = S.evaluate(case, EMT())
    assert row["gamma_eV_A2"] == pytest.approx(g_ref, abs=1e-6)
    assert row["gamma_J_m2"] == pytest.approx(g_ref * 16.021766, rel=1e-6)
    relaxed = S.evaluate(case, EMT(), relax=True, fmax=0.005)
    g_rel, _ = ase_gamma(builder("Cu", size=(1, 1, len(case.slab)), a=A_CU, vacuum=12.0, periodic=True), relax=True)
    assert relaxed["converged"]
    assert relaxed["gamma_eV_A2"] == pytest.approx(g_rel, abs=2e-4)
    assert relaxed["gamma_eV_A2"] <= row["gamma_eV_A2"] + 1e-9  # relaxation only lowers it


def test_fcc_ordering_and_scaled_calculator(cu_cases):
    table = S.surface_energies(list(cu_cases.values()), EMT(), model="emt")
    g = dict(zip(table["miller"], table["gamma_eV_A2"]))
    assert g["111"] < g["100"]  # close-packed face is the cheapest
    scaled = S.surface_energies(list(cu_cases.values()), ScaledCalculator(EMT(), 0.8))
    # gamma is a difference of energies of one method: scaling E by c scales gamma by c exactly
    assert np.allclose(scaled["gamma_eV_A2"], 0.8 * table["gamma_eV_A2"], rtol=1e-10)
    assert set(scaled["model"]) == {"EMT*0.8"}


def test_polar_slabs_are_listed_and_skipped():
    cases, skipped = S.make_slabs(bulk("ZnS", "zincblende", a=5.45), system="ZnS",
                                  millers=[(1, 1, 1), (1, 1, 0)])
    assert [s["miller"] for s in skipped] == ["111"]
    assert "symmetric" in skipped[0]["reason"]
    (case,) = cases
    symbols = case.slab.get_chemical_symbols()
    assert symbols.count("Zn") == symbols.count("S")


@pytest.mark.parametrize("kw, match", [
    ({"min_slab": 8.0}, "10 A"),
    ({"min_vacuum": 5.0}, "10 A"),
    ({"max_index": 0}, "max_index"),
    ({"max_terminations": 0}, "max_terminations"),
    ({"millers": [(0, 0, 0)]}, "Miller"),
])
def test_make_slabs_bad_input(kw, match):
    with pytest.raises(S.SurfaceError, match=match):
        S.make_slabs(bulk("Cu", "fcc", a=A_CU), **kw)


def test_other_bad_input():
    from ase import Atoms

    with pytest.raises(S.SurfaceError, match="string"):
        S.build_cases("Cu")
    with pytest.raises(S.SurfaceError, match="unknown"):
        S.build_cases(["Unobtainium"])
    with pytest.raises(S.SurfaceError, match="periodic"):
        S.make_slabs(Atoms("Cu", cell=[3, 3, 3], pbc=[True, True, False]))
    with pytest.raises(S.SurfaceError, match="area"):
        S.surface_energy(-1.0, 4, -1.0, 0.0)
    with pytest.raises(S.SurfaceError, match="variant"):
        S.load_reference("annealed")
    with pytest.raises(S.SurfaceError, match="SurfaceCase"):
        S.surface_energies(["Cu-111"], EMT())


def test_cases_cached_and_round_trip(cu_cases):
    case = cu_cases[(1, 1, 1)]
    back = S.case_from_dict(json.loads(json.dumps(S.case_to_dict(case))))
    assert np.allclose(back.slab.positions, case.slab.positions, atol=1e-7)
    assert back.id == case.id and back.miller == case.miller


def test_compare_and_stats():
    import pandas as pd

    ref = pd.DataFrame({"id": ["a", "b", "c"], "system": "X", "miller": "100", "gamma_eV_A2": [0.1, 0.2, 0.3],
                        "converged": [True, True, False]})
    model = pd.DataFrame({"id": ["a", "b", "c"], "gamma_eV_A2": [0.05, 0.25, 0.1], "converged": True})
    joined = S.compare(ref, model)
    assert list(joined["id"]) == ["a", "b"]  # the non-converged reference is left out
    st = S.stats(joined)
    assert st["n"] == 2 and st["mae"] == pytest.approx(0.05) and st["frac_under"] == pytest.approx(0.5)


@pytest.mark.slow
def test_reference_queue_records_load(tmp_path):
    """The GPAW queue script's records (EMT dry run) give the same gamma as the library."""
    script = Path(__file__).resolve().parent.parent / "scripts" / "gpaw_surfaces_defects.py"
    out = subprocess.run([sys.executable, str(script), "--engine", "emt", "--out-root", str(tmp_path),
                          "--task", "surfaces", "--variant", "static", "--surface-systems", "Al",
                          "--only", "Al-111-t0"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    recs = sorted(p.name for p in (tmp_path / "surfaces_gpaw").glob("*.json"))
    assert recs == ["bulk-Al-111-t0.json", "slab-static-Al-111-t0.json"]
    ref = S.load_reference("static", tmp_path / "surfaces_gpaw")
    cases, _ = S.build_cases(["Al"])
    case = [c for c in cases if c.id == "Al-111-t0"][0]
    assert ref["gamma_eV_A2"].iloc[0] == pytest.approx(S.evaluate(case, EMT())["gamma_eV_A2"], abs=1e-9)
    # resumable: a second run finds nothing to do
    again = subprocess.run([sys.executable, str(script), "--engine", "emt", "--out-root", str(tmp_path),
                            "--task", "surfaces", "--variant", "static", "--surface-systems", "Al",
                            "--only", "Al-111-t0"], capture_output=True, text=True, timeout=600)
    assert "0 to run now" in again.stdout


def test_mp_surfaces_reader(tmp_path, monkeypatch):
    """The Tran et al. / MP reader on a small file in the Dryad surfaces.json layout."""
    from softening_lib import datasets

    docs = [
        {"material_id": "mp-30", "pretty_formula": "Cu", "polymorph": 0, "spacegroup": {"symbol": "Fm-3m"},
         "weighted_surface_energy": 1.39, "weighted_surface_energy_EV_PER_ANG2": 0.0868,
         "surfaces": [
             {"miller_index": [1, 1, 1], "surface_energy": 1.30, "surface_energy_EV_PER_ANG2": 0.0811,
              "is_reconstructed": False, "area_fraction": 0.7},
             {"miller_index": [1, 0, 0], "surface_energy": 1.47, "surface_energy_EV_PER_ANG2": 0.0918,
              "is_reconstructed": False, "area_fraction": 0.3}]},
        {"material_id": "mp-149", "pretty_formula": "Si", "polymorph": 0,
         "surfaces": [{"miller_index": [1, 1, 1], "surface_energy": 1.36, "is_reconstructed": True}]},
    ]
    monkeypatch.setenv("SOFTENING_CACHE_DIR", str(tmp_path))
    target = tmp_path / "downloads" / S.MP_SURFACES / "surfaces.json"
    target.parent.mkdir(parents=True)
    target.write_text(json.dumps(docs))
    table = datasets.load(S.MP_SURFACES)
    assert len(table) == 3
    cu111 = table[(table.material_id == "mp-30") & (table.miller == "111")].iloc[0]
    assert cu111.gamma_eV_A2 == pytest.approx(0.0811) and cu111.gamma_J_m2 == pytest.approx(1.30)
    si = table[table.formula == "Si"].iloc[0]
    assert si.gamma_eV_A2 == pytest.approx(1.36 / 16.021766208) and si.is_reconstructed
    assert len(datasets.load(S.MP_SURFACES, subset=["Si"])) == 1
    # the MP API response layout parses the same way
    assert len(S.parse_mp_surfaces({"data": docs})) == 3
    target.unlink()
    monkeypatch.delenv("MP_API_KEY", raising=False)
    with pytest.raises(datasets.DatasetUnavailableError, match="MP_API_KEY"):
        datasets.load(S.MP_SURFACES)
    with pytest.raises(S.SurfaceError, match="MP_API_KEY"):
        S.fetch_mp_surfaces()


def test_parity_figure_statistics_with_known_softening(cu_cases):
    """A model that is EMT x 0.8 against EMT: slope 0.8, all under-predicted, MAE = 0.2 <gamma>."""
    import matplotlib

    matplotlib.use("Agg")
    cases = list(cu_cases.values())
    ref = S.surface_energies(cases, EMT())
    ref["converged"] = True
    soft = S.surface_energies(cases, ScaledCalculator(EMT(), 0.8))
    fig, summary = S.parity_figure({"static": ref}, {"emt": {"static": soft}}, ref_label="EMT")
    row = summary.iloc[0]
    assert row["n"] == len(cases)
    assert row["slope"] == pytest.approx(0.8, rel=1e-9)
    assert row["frac_under"] == 1.0
    assert row["mae"] == pytest.approx(0.2 * ref["gamma_eV_A2"].mean(), rel=1e-9)
    assert len(fig.axes) == 1
    # no relaxed reference yet: no empty relaxed row (the static one only)
    fig, summary = S.parity_figure({"static": ref, "relaxed": ref.iloc[:0]},
                                   {"emt": {"static": soft, "relaxed": soft}}, ref_label="EMT")
    assert len(fig.axes) == 1 and list(summary["variant"]) == ["static"]
    ratios = S.ratio_table({"static": ref}, {"soft": {"static": soft}, "same": {"static": ref}})
    assert len(ratios) == len(cases)
    assert np.allclose(ratios["soft"], 0.8) and np.allclose(ratios["same"], 1.0)


def test_unconverged_relaxations_are_listed(cu_cases):
    case = cu_cases[(1, 0, 0)]
    rattled = S.SurfaceCase(**{**case.__dict__, "id": "Cu-100-rattled", "slab": case.slab.copy()})
    rattled.slab.rattle(0.1, seed=3)
    table = S.surface_energies([rattled], EMT(), relax=True, steps=1)
    assert not table["converged"].iloc[0] and table["fmax"].iloc[0] > 0.05
    flagged = S.unconverged({"emt": {"relaxed": table}})
    assert list(flagged["id"]) == ["Cu-100-rattled"]
    # and compare() leaves it out of the statistics
    ref = table.assign(converged=True)
    assert len(S.compare(ref, table)) == 0


def test_fresh_and_cached_cases_hash_alike(results_dir):
    """Result keys must not depend on whether the slabs were just built or read from the cache."""
    fresh, _ = S.build_cases(["Al"], max_index=1)
    cached, _ = S.build_cases(["Al"], max_index=1)
    assert [S._case_key(c, "static", 0.05, 500) for c in fresh] == \
        [S._case_key(c, "static", 0.05, 500) for c in cached]


def test_model_tables_demo_reference_and_report(results_dir, capsys):
    """The chapter's three calls: cached model tables, the EMT demo stand-in, the parity report."""
    import matplotlib

    matplotlib.use("Agg")
    cases, _ = S.build_cases(["Cu", "MgO"], max_index=1)
    tables = S.model_tables(S.compute_cases, cases, ["emt"], ["static", "relaxed"], what="surfaces")
    assert "emt static: %d of %d surfaces available" % (len(cases), len(cases)) in capsys.readouterr().out
    static = tables["emt"]["static"]
    assert set(static.loc[static["skipped"] != "", "system"]) == {"MgO"}  # EMT has no Mg: listed, skipped
    assert len(tables["emt"]["relaxed"]) == 0  # relaxations are only read unless compute_relaxed
    empty = {v: S.load_reference(v, root=results_dir / "none") for v in S.VARIANTS}
    reference, label, demo = S.reference_or_demo(S.compute_cases, cases, empty, ["static"], S.EMT_SYSTEMS)
    assert demo and "NOT DFT" in label and set(reference["static"]["system"]) == {"Cu"}
    ref = reference["static"].assign(gamma_eV_A2=reference["static"]["gamma_eV_A2"] / 0.9)  # model 10 % soft
    fig, summary, note, flagged = S.parity_report(S.parity_figure, {"static": ref}, {"emt": {"static": static}},
                                                  "test", demo=False)
    row = summary[summary["variant"] == "static"].iloc[0]
    n_cu = sum(c.system == "Cu" for c in cases)
    assert row["n"] == n_cu and row["frac_under"] == 1.0 and row["slope"] == pytest.approx(0.9)
    assert note == f"{n_cu} static / 0 relaxed GPAW surfaces." and len(flagged) == 0
    real, label, demo = S.reference_or_demo(S.compute_cases, cases, {"static": ref}, ["static"], S.EMT_SYSTEMS)
    assert not demo and label == "GPAW-PBE" and real["static"] is ref
