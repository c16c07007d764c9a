"""Point-defect energies end to end with EMT, checked against supercells built directly with ASE."""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.optimize import BFGS

from softening_lib.models import ScaledCalculator
from softening_lib.tasks import defects as D


@pytest.fixture(scope="module")
def cu_cases():
    return {c.label: c for c in D.make_defects("Cu", repeat=(2, 2, 2))}


def test_vacancy_matches_direct_ase(cu_cases):
    case = cu_cases["V_Cu"]
    a = case.bulk.cell[0, 0] / 2  # the lattice the task used (MP PBE Cu)
    perfect = bulk("Cu", "fcc", a=a, cubic=True).repeat(2)
    perfect.calc = EMT()
    e_bulk = perfect.get_potential_energy()
    vac = perfect.copy()
    del vac[0]
    vac.calc = EMT()
    e_static = vac.get_potential_energy() - (len(vac) / len(perfect)) * e_bulk
    row = D.evaluate(case, EMT())
    assert row["e_f"] == pytest.approx(e_static, abs=1e-8)
    assert 0.5 < row["e_f"] < 2.0  # a vacancy costs about an eV in Cu
    BFGS(vac, logfile=None).run(fmax=0.005, steps=500)
    e_relaxed = vac.get_potential_energy() - (len(vac) / len(perfect)) * e_bulk
    rel = D.evaluate(case, EMT(), relax=True, fmax=0.005)
    assert rel["converged"]
    assert rel["e_f"] == pytest.approx(e_relaxed, abs=2e-3)
    assert rel["e_f"] < row["e_f"]


def test_defect_set_and_bookkeeping():
    cases = {c.label: c for c in D.make_defects("Cu3Au", repeat=(2, 2, 2))}
    assert set(cases) == {"V_Au", "V_Cu", "Cu_Au", "Au_Cu", "Au_i", "Cu_i"}
    for c in cases.values():
        before = {el: c.bulk.get_chemical_symbols().count(el) for el in ("Cu", "Au")}
        after = {el: c.defect.get_chemical_symbols().count(el) for el in ("Cu", "Au")}
        assert {el: after[el] - before[el] for el in before if after[el] != before[el]} == c.dN
    # interstitial at the largest void of fcc-like L12: the octahedral site, a/2 from its neighbours
    assert cases["Cu_i"].extra["clearance_A"] == pytest.approx(3.83 / 2, abs=1e-3)
    # relaxed start is kicked 0.1 A off the symmetric site, the static geometry is not
    kick = np.linalg.norm(cases["Cu_i"].start.positions[-1] - cases["Cu_i"].defect.positions[-1])
    assert kick == pytest.approx(0.1, abs=1e-9)


def test_antisite_pair_independent_of_mu_and_scaling():
    cases = D.make_defects("Cu3Au", repeat=(2, 2, 2), kinds=("antisite",))
    t = D.defect_energies(cases, EMT())
    pair = t["e_f"].sum()
    # independent: swap one Cu and one Au in separate cells; mu cancels in the sum
    cell = bulk("Cu", "fcc", a=3.83, cubic=True)
    cell.symbols[0] = "Au"
    sc = cell.repeat(2)
    sc.calc = EMT()
    e0 = sc.get_potential_energy()
    es = []
    for i, new in ((0, "Cu"), (1, "Au")):
        d = sc.copy()
        d.symbols[i] = new
        d.calc = EMT()
        es.append(d.get_potential_energy() - e0)
    assert pair == pytest.approx(sum(es), abs=1e-8)
    # one method, all energies scaled by c: every defect energy scales by c
    scaled = D.defect_energies(cases, ScaledCalculator(EMT(), 1.25))
    assert np.allclose(scaled["e_f"], 1.25 * t["e_f"], rtol=1e-10)


def test_too_small_supercell_is_refused():
    with pytest.raises(D.SupercellTooSmallError, match=r"repeat=\(3, 3, 3\)"):
        D.make_defects("Cu", min_distance=10.0, repeat=(2, 2, 2))
    case = D.make_defects("Cu", min_distance=10.0, kinds=("vacancy",))[0]
    assert case.image_distance >= 10.0 and case.repeat == (3, 3, 3)


def test_convergence_table():
    t = D.convergence("Cu", "vacancy", EMT(), repeats=(2, 3))
    assert list(t["n_atoms"]) == [31, 107]
    assert abs(t["e_f"].iloc[1] - t["e_f"].iloc[0]) < 0.05  # EMT is short ranged


def test_bad_input():
    with pytest.raises(D.DefectError, match="unknown defect host"):
        D.make_defects("Kryptonite")
    with pytest.raises(D.DefectError, match="kind"):
        D.make_defects("Cu", kinds=("dislocation",))
    with pytest.raises(D.DefectError, match="repeat"):
        D.make_defects("Cu", repeat=(2, 2))
    with pytest.raises(D.DefectError, match="string"):
        D.build_cases("Cu")
    with pytest.raises(D.DefectError, match="chemical potential"):
        D.formation_energy(-10.0, -12.0, {"Cu": -3.5}, {"Au": 1})
    with pytest.raises(D.DefectError, match="positive"):
        D.choose_repeat(bulk("Cu", cubic=True), 0.0)
    with pytest.raises(D.DefectError, match="variant"):
        D.load_reference("annealed")


def test_image_distance_and_void():
    fcc = bulk("Cu", "fcc", a=3.6, cubic=True)
    assert D.image_distance(fcc.cell) == pytest.approx(3.6)
    assert D.image_distance(bulk("Cu", "fcc", a=3.6).cell) == pytest.approx(3.6 / np.sqrt(2))
    frac, clearance = D.largest_void(fcc)
    assert clearance == pytest.approx(1.8, abs=1e-6)  # octahedral site


def test_summary_by_kind_with_known_softening():
    cases = D.make_defects("Cu3Au", repeat=(2, 2, 2))
    ref = D.defect_energies(cases, EMT())
    soft = D.defect_energies(cases, ScaledCalculator(EMT(), 0.9))
    t = D.summary_by_kind({"static": ref}, {"soft": {"static": soft}})
    assert list(t["kind"]) == list(D.KINDS)
    for _, row in t.iterrows():
        sub = ref[ref["kind"] == row["kind"]]
        assert row["n"] == len(sub)
        assert row["mae"] == pytest.approx(0.1 * sub["e_f"].abs().mean(), rel=1e-9)
        assert row["slope"] == pytest.approx(0.9, rel=1e-9)


def test_unconverged_relaxation_is_flagged_with_fmax_and_left_out(cu_cases):
    from softening_lib.tasks import surfaces as S

    case = cu_cases["V_Cu"]
    rows = D.defect_energies([case], EMT(), relax=True, steps=1, model="emt")
    assert not rows["converged"].iloc[0] and rows["fmax"].iloc[0] > 0.05 and rows["steps"].iloc[0] == 1
    flagged = S.unconverged({"emt": {"relaxed": rows}})
    assert list(flagged["id"]) == [case.id] and flagged["fmax"].iloc[0] > 0.05
    assert len(S.compare(rows.assign(converged=True), rows, col="e_f")) == 0  # not in the statistics


def test_cached_compute_records_unsupported_elements_as_skipped(results_dir):
    """A registry model that does not cover an element: the case is stored as skipped, with why."""
    cases = D.build_cases(["Cu", "CaSn3"], kinds=("vacancy",))  # EMT has no Ca or Sn
    table = D.compute_cases(cases, "emt", progress=False)
    skipped = table[table["skipped"] != ""]
    assert set(skipped["system"]) == {"CaSn3"} and skipped["skipped"].str.contains("Ca|Sn").all()
    done = table[table["skipped"] == ""]
    assert set(done["system"]) == {"Cu"} and np.isfinite(done["e_f"]).all()
    # the second call reads everything (skips included) from the cache
    again = D.compute_cases(cases, "emt", progress=False, compute_missing=False)
    assert len(again) == len(cases) == len(table)


def test_is_cached_is_true_only_for_finished_cases_and_lets_the_executor_skip_them(results_dir):
    """``is_cached`` reads the store without loading a model: False before, True after a case is
    computed; a skipped case (element the model lacks) is not counted as cached-and-ok. The
    executor then submits nothing for the finished cases."""
    from softening_lib import executor

    cases = D.cases("default", systems=["Cu", "CaSn3"], variants=["static"])
    cases = [c for c in cases if c["item"].kind == "vacancy"]
    assert not any(D.is_cached("emt", c) for c in cases)
    D.compute("emt", cases)
    cached = {c["item"].system: D.is_cached("emt", c) for c in cases}
    assert cached["Cu"] is True and cached["CaSn3"] is False
    cu = [c for c in cases if c["item"].system == "Cu"]
    out = executor.compute_chapter("03", ["emt"], "default", workers=1, progress=False, log=None,
                                   systems=["Cu"], variants=["static"])
    assert len(out["queue"].cached) >= len(cu) and out["failed"] == 0
