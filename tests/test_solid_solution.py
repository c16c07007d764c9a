"""Solid-solution task: ordering enumeration, compositions, mixing energies, regular solution."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from ase.calculators.emt import EMT

from softening_lib.cache import ResultStore
from softening_lib.models import ScaledCalculator
from softening_lib.tasks import solid_solution as ss


def _brute_force_distinct(sub: ss.Sublattice, k: int) -> int:
    """Distinct arrangements by pymatgen's StructureMatcher (no use of our permutations)."""
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.io.ase import AseAtomsAdaptor

    structures = []
    for combo in itertools.combinations(range(sub.n_sites), k):
        occ = np.zeros(sub.n_sites, int)
        occ[list(combo)] = 1
        structures.append(AseAtomsAdaptor.get_structure(sub.structure(occ, geometry="parent")))
    matcher = StructureMatcher(primitive_cell=False, scale=False, attempt_supercell=False,
                               ltol=0.05, stol=0.05, angle_tol=1)
    return len(matcher.group_structures(structures))


@pytest.mark.slow
@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_rocksalt_orderings_match_structure_matcher(k):
    sub = ss.camgo_sublattice("conv112")
    ours = ss.enumerate_orderings(sub, n_solute=k, max_per_composition=10**6)
    assert len(ours) == _brute_force_distinct(sub, k)
    # orbits partition all C(N, k) arrangements
    assert sum(o.multiplicity for o in ours) == math.comb(sub.n_sites, k)
    assert len({o.id for o in ours}) == len(ours)


@pytest.mark.slow
def test_multiplicities_sum_to_binomials_in_16_cation_cell():
    sub = ss.camgo_sublattice("conv221")
    ours = ss.enumerate_orderings(sub, max_per_composition=10**6)
    for k in range(sub.n_sites + 1):
        assert sum(o.multiplicity for o in ours if o.n_solute == k) == math.comb(16, k)
    # complement symmetry: k and N - k have the same number of distinct orderings
    counts = [sum(1 for o in ours if o.n_solute == k) for k in range(17)]
    assert counts == counts[::-1]


@pytest.mark.slow
def test_fcc_alloy_enumeration_brute_force():
    sub = ss.alloy_sublattice("conv112", "Cu", "Au", 3.61, 4.08)
    for k in (2, 3):
        assert len(ss.enumerate_orderings(sub, n_solute=k, max_per_composition=10**6)) == \
            _brute_force_distinct(sub, k)


def test_composition_that_the_cell_cannot_realise_is_refused():
    with pytest.raises(ss.CompositionError, match="cannot be realised"):
        ss.enumerate_orderings("conv112", fraction=0.3)
    with pytest.raises(ss.CompositionError):
        ss.camgo_sublattice("conv112").counts_for_fraction(1.2)
    assert {o.n_solute for o in ss.enumerate_orderings("conv112", fraction=0.375)} == {3}


@pytest.mark.slow
def test_sampling_is_seeded_and_capped():
    a = ss.enumerate_orderings("conv221", n_solute=8, max_per_composition=5, seed=3)
    b = ss.enumerate_orderings("conv221", n_solute=8, max_per_composition=5, seed=3)
    c = ss.enumerate_orderings("conv221", n_solute=8, max_per_composition=5, seed=4)
    assert [o.id for o in a] == [o.id for o in b]
    assert len(a) == 5 and len({o.id for o in a}) == 5
    assert [o.id for o in a] != [o.id for o in c]


def test_vegard_geometry_and_occupancy():
    sub = ss.camgo_sublattice("conv112")
    occ = [1, 1, 0, 0, 0, 0, 0, 0]
    atoms = sub.structure(occ)
    assert atoms.get_chemical_symbols().count("Ca") == 2
    a = atoms.cell.lengths()[0]
    assert a == pytest.approx(0.75 * ss.A_MGO + 0.25 * ss.A_CAO)


def test_regular_solution_fit_recovers_omega():
    import pandas as pd

    omega = 0.085
    f = np.array([0.125, 0.25, 0.25, 0.5, 0.75])
    table = pd.DataFrame({"fraction": f, "e_mix": omega * f * (1 - f), "multiplicity": [8, 4, 12, 6, 2]})
    fit = ss.regular_solution_fit(table)
    assert fit["omega_eV"] == pytest.approx(omega)
    assert fit["Tc_K"] == pytest.approx(omega / (2 * 8.617333262e-5))


@pytest.fixture()
def cuau():
    sub = ss.alloy_sublattice("conv112", "Cu", "Au", 3.61, 4.08)
    orderings = [o for o in ss.enumerate_orderings(sub) if o.n_solute in (0, 8)]
    orderings.append(ss.enumerate_orderings(sub, n_solute=4)[0])
    return sub, orderings


def test_emt_relaxed_mixing_energy_end_to_end(cuau, tmp_path):
    sub, orderings = cuau
    store = ResultStore("solid_solution", root=tmp_path)
    table = ss.score(orderings, "emt", mode="relaxed", calc=EMT(), sub=sub, store=store, progress=False)
    assert len(table) == 3 and table["converged"].all()
    assert (table["fmax"] < 0.05).all()
    ends = table[table["n_solute"].isin([0, 8])]
    assert np.allclose(ends["e_mix"], 0.0, atol=1e-12)
    mixed = table[table["n_solute"] == 4].iloc[0]
    assert np.isfinite(mixed["e_mix"])
    # relaxed Cu and Au lattice constants come out near EMT's own (3.59 / 4.06 A)
    v = ends.set_index("n_solute")["volume_per_site"]
    assert (4 * v[0]) ** (1 / 3) == pytest.approx(3.59, abs=0.03)
    assert (4 * v[8]) ** (1 / 3) == pytest.approx(4.06, abs=0.03)
    # a second call reads the cache instead of recomputing
    again = ss.score(orderings, "emt", mode="relaxed", calc=None, sub=sub, store=store, compute=False)
    assert sorted(again["ordering_id"]) == sorted(table["ordering_id"])
    assert np.allclose(again.set_index("ordering_id")["e_mix"].sort_index().to_numpy(),
                       table.set_index("ordering_id")["e_mix"].sort_index().to_numpy())


def test_rescore_with_scaled_calculator_scales_static_mixing_energies(cuau, tmp_path):
    sub, orderings = cuau
    base = ss.score(orderings, "emt", mode="static", calc=EMT(), sub=sub,
                    store=ResultStore("ss", root=tmp_path / "a"), progress=False)
    scaled = ss.score(orderings, "emt*1.3", mode="static", calc=ScaledCalculator(EMT(), 1.3), sub=sub,
                      store=ResultStore("ss", root=tmp_path / "b"), progress=False)
    b = base.set_index("ordering_id")["e_mix"]
    s = scaled.set_index("ordering_id")["e_mix"]
    assert np.allclose(s[b.index], 1.3 * b, atol=1e-10)
    assert abs(b).max() > 1e-3  # the mixed ordering has a non-trivial mixing energy


def test_gpaw_reference_loader_skips_failed_and_builds_mixing_energies(tmp_path, monkeypatch):
    import json

    base = {"mode": "static", "supercell": "conv112", "n_sites": 8, "multiplicity": 1, "converged": True}
    for k, e in ((0, -8.0), (8, -16.0), (4, -11.6)):
        rec = {**base, "status": "ok", "ordering_id": f"o{k}", "n_solute": k, "fraction": k / 8,
               "energy": 8 * e, "energy_per_site": e}
        (tmp_path / f"o{k}__static.json").write_text(json.dumps(rec))
    (tmp_path / "o2__static.json").write_text(json.dumps({"status": "failed", "error": "SCF"}))
    (tmp_path / "notes.json").write_text(json.dumps({"note": "not a record"}))
    ref = ss.load_reference("static", root=tmp_path)  # e.g. a k-point check's folder
    assert sorted(ref["ordering_id"]) == ["o0", "o4", "o8"]
    assert ref.set_index("ordering_id").loc["o4", "e_mix"] == pytest.approx(-11.6 - (-12.0))


def test_figure_2c_and_fit_table_with_reference():
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    def table(model, omega):
        f = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
        e = omega * f * (1 - f)
        return pd.DataFrame({"model": model, "mode": "static", "supercell": "conv112", "fraction": f,
                             "n_sites": 8, "n_solute": (8 * f).astype(int), "multiplicity": 1,
                             "energy_per_site": e, "e_mix": e, "converged": True})

    ref = table(ss.REFERENCE_LABEL, 0.2)
    model = table("emt", 0.1)
    fig = ss.figure_2c({"emt": model}, mode="static", reference=ref, reference_note="test note")
    assert "test note" in fig.axes[0].get_title()
    def dashed(f):
        return [ln for ln in f.axes[0].get_lines() if ln.get_linestyle() == "--"]

    assert len(dashed(fig)) == 2  # a dashed fit each for the reference and the model
    partial = ss.figure_2c({"emt": model}, mode="static", reference=ref, fit_reference=False)
    assert len(dashed(partial)) == 1  # the reference's points stay, its curve does not
    fits = ss.fit_table({"emt": model, ss.REFERENCE_LABEL: ref}).set_index("model")
    assert fits.loc["emt", "omega_eV"] == pytest.approx(0.1)
    assert fits.loc[ss.REFERENCE_LABEL, "Tc_K"] == pytest.approx(0.2 / (2 * ss.K_B))


def test_unconverged_relaxations_are_flagged_with_fmax_and_not_fitted(cuau, tmp_path):
    sub, orderings = cuau
    store = ResultStore("solid_solution", root=tmp_path)
    table = ss.score(orderings, "emt-1step", mode="relaxed", calc=EMT(), sub=sub, store=store, progress=False,
                     max_steps=1)
    assert not table["converged"].any() and (table["fmax"] > 0.05).all()
    flagged = ss.unconverged({"emt-1step": table})
    assert sorted(flagged["ordering_id"]) == sorted(o.id for o in orderings)
    assert (flagged["fmax"] > 0.05).all() and (flagged["steps"] == 1).all()
    # unconverged end members give no mixing energies; nothing unconverged enters the fit
    assert table["e_mix"].isna().all()
    assert ss.regular_solution_fit(table)["n_orderings"] == 0
    fits = ss.fit_table({"emt-1step": table})
    assert fits["n_unconverged"].iloc[0] == 3
    # converged end members but an unconverged mixed ordering: shown, flagged, left out of the fit
    good = ss.score(orderings, "emt", mode="relaxed", calc=EMT(), sub=sub, store=store, progress=False)
    mixed = good["n_solute"] == 4
    good.loc[mixed, "converged"] = False
    assert np.isfinite(good.loc[mixed, "e_mix"]).all()
    assert ss.regular_solution_fit(good)["n_orderings"] == 0
    assert list(ss.unconverged({"emt": good})["ordering_id"]) == list(good.loc[mixed, "ordering_id"])
    fig = ss.figure_2c({"emt": good}, mode="relaxed")
    assert any("not converged" in t.get_text() for t in fig.axes[0].get_legend().get_texts())


def test_matched_errors_compare_only_shared_converged_mixed_orderings():
    import pandas as pd

    def table(model, e, converged=True):
        return pd.DataFrame({"model": model, "mode": "relaxed", "ordering_id": ["o0", "a", "b", "c", "o8"],
                             "n_sites": 8, "n_solute": [0, 2, 4, 6, 8], "e_mix": e, "converged": converged})

    ref = table(ss.REFERENCE_LABEL, [0.0, 0.20, 0.30, np.nan, 0.0])  # "c" not reached by the reference
    soft = table("soft", [0.0, 0.10, 0.27, 0.05, 0.0], converged=[True, True, False, True, True])
    out = ss.matched_errors({"soft": soft, "none": soft.iloc[0:0]}, ref).set_index("model")
    assert list(out.index) == ["soft"]  # no rows, no comparison
    r = out.loc["soft"]
    assert r["n"] == 1  # only "a": end members out, "b" unconverged, "c" has no reference
    assert r["ratio_pct"] == pytest.approx(-50.0)
    assert r["mae_meV"] == pytest.approx(100.0) and r["mse_meV"] == pytest.approx(-100.0)
    assert r["frac_below"] == 1.0
    assert ss.matched_errors({"soft": soft}, ref.iloc[0:0]).empty
