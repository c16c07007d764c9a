"""Migration task: the KRA definition, ApproxNEB on analytic and EMT paths, hosts, public data."""

from __future__ import annotations

import base64
import gzip
import json

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT

from softening_lib import datasets
from softening_lib.models import ScaledCalculator
from softening_lib.tasks import migration as mig


class Analytic1D(Calculator):
    """E = A sin^2(pi x0 / L) + B x0 / L + k/2 (x1 - x0 - d)^2 + k/2 ((y1-y0)^2 + (z1-z0)^2)

    Atom 0 is the moving ion (x0 along the hop), atom 1 a "host" atom tied to it by a
    spring, atom 2 is far away and feels nothing (it becomes the fixed anchor)."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, A=0.7, B=0.0, k=5.0, L=3.0, d=1.2):
        super().__init__()
        self.A, self.B, self.k, self.L, self.d = A, B, k, L, d

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        p = self.atoms.positions
        x0 = p[0, 0]
        u = p[1] - p[0] - np.array([self.d, 0.0, 0.0])
        w = np.pi / self.L
        e = self.A * np.sin(w * x0) ** 2 + self.B * x0 / self.L + 0.5 * self.k * u @ u
        f = np.zeros_like(p)
        f[0, 0] = -(self.A * 2 * np.sin(w * x0) * np.cos(w * x0) * w + self.B / self.L)
        f[0] += self.k * u
        f[1] -= self.k * u
        self.results = {"energy": e, "free_energy": e, "forces": f}


def _analytic_ends(L=3.0, d=1.2):
    cell = np.diag([30.0, 30.0, 30.0])
    ini = Atoms("H3", positions=[[6, 5, 5], [6 + d, 5, 5], [25, 25, 25]], cell=cell, pbc=True)
    fin = ini.copy()
    fin.positions[:2, 0] += L
    return ini, fin


def test_kra_definition_on_numbers():
    assert mig.kra_barrier([0.0, 0.3, 0.5, 0.2]) == pytest.approx(0.5 - 0.1)
    assert mig.kra_barrier([1.0, 1.4, 1.0]) == pytest.approx(0.4)
    # monotonic downhill path: the highest energy is the first end image
    assert mig.kra_barrier([0.2, 0.1, 0.0]) == pytest.approx(0.1)
    assert np.allclose(mig.referenced([1.0, 2.0, 1.2]), [-0.1, 0.9, 0.1])
    with pytest.raises(ValueError):
        mig.kra_barrier([0.1])


def test_approx_neb_recovers_analytic_barrier_after_relaxation():
    ini, fin = _analytic_ends()
    res = mig.approx_neb(ini, fin, 0, Analytic1D(A=0.7), n_images=3, fmax=1e-3, relax=True)
    # the host atom relaxes onto its spring minimum: every image lies on A sin^2(pi t)
    t = np.linspace(0, 1, 5)
    assert np.allclose(res["energies"], 0.7 * np.sin(np.pi * t) ** 2, atol=1e-5)
    assert res["e_kra"] == pytest.approx(0.7, abs=1e-5)
    assert all(res["image_converged"]) and max(res["image_fmax"]) < 1e-3
    assert res["anchor_atom"] == 2 and res["flags"] == []
    assert res["coordinate"][-1] == pytest.approx(3.0)


def test_approx_neb_asymmetric_static_path_uses_mean_of_end_images():
    ini, fin = _analytic_ends()
    calc = Analytic1D(A=0.5, B=0.3)
    res = mig.approx_neb(ini, fin, 0, calc, n_images=4, relax=False)
    t = np.linspace(0, 1, 6)
    e = 0.5 * np.sin(np.pi * t) ** 2 + 0.3 * (2 + t)  # x0 = 6 + 3 t, L = 3
    assert np.allclose(res["energies"], e, atol=1e-10)
    assert res["e_kra"] == pytest.approx(e.max() - 0.5 * (e[0] + e[-1]))
    assert res["delta_e_end"] == pytest.approx(0.3)


def test_endpoint_that_is_not_a_minimum_is_flagged():
    ini, fin = _analytic_ends()
    # shifted by L/2 the ends sit on maxima (0.4 cos^2(pi t)): the images are lower
    ini.positions[:2, 0] += 1.5
    fin.positions[:2, 0] += 1.5
    res = mig.approx_neb(ini, fin, 0, Analytic1D(A=0.4), n_images=3, relax=False)
    assert any(f.startswith("endpoint_not_minimum") for f in res["flags"])


def test_unconverged_images_are_flagged_with_fmax():
    ini, fin = _analytic_ends()
    ini.positions[1, 1] += 0.5  # the host atom starts off its spring minimum
    fin.positions[1, 1] += 0.5
    res = mig.approx_neb(ini, fin, 0, Analytic1D(A=0.7), n_images=3, fmax=1e-4, max_steps=1, relax=True)
    assert any(f.startswith("images_unconverged") and "fmax=" in f for f in res["flags"])
    assert not any(res["image_converged"])


def _cu_vacancy_hop():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    a_idx = 0
    d = atoms.get_distances(a_idx, range(len(atoms)), mic=True, vector=True)
    r = np.linalg.norm(d, axis=1)
    r[a_idx] = np.inf
    b_idx = int(np.argmin(r))
    hop = d[b_idx]
    keep = [i for i in range(len(atoms)) if i != b_idx]
    ini = atoms[keep]
    fin = ini.copy()
    fin.positions[keep.index(a_idx)] += hop
    return ini, fin, keep.index(a_idx)


@pytest.mark.slow
def test_emt_copper_vacancy_hop_three_images():
    ini, fin, mover = _cu_vacancy_hop()
    res = mig.approx_neb(ini, fin, mover, EMT(), n_images=3, fmax=0.05, relax=True)
    e = np.asarray(res["energies"])
    assert abs(res["delta_e_end"]) < 2e-3  # symmetric hop
    assert int(np.argmax(e)) == 2  # the middle image is the saddle
    assert 0.2 < res["e_kra"] < 2.0  # a vacancy hop in a metal: tenths of an eV to ~1 eV
    assert all(res["image_converged"]) and max(res["image_fmax"]) < 0.05
    assert res["flags"] == []

    # the corrected-calculator entry point of chapter 8: c * E gives c * barrier
    scaled = mig.approx_neb(ini, fin, mover, ScaledCalculator(EMT(), 1.25), n_images=3, fmax=0.01, relax=True)
    ref = mig.approx_neb(ini, fin, mover, EMT(), n_images=3, fmax=0.01, relax=True)
    assert scaled["e_kra"] == pytest.approx(1.25 * ref["e_kra"], rel=0.01)


@pytest.mark.slow
def test_hyperplane_constraint_never_raises_the_barrier():
    ini, fin, mover = _cu_vacancy_hop()
    fixed = mig.approx_neb(ini, fin, mover, EMT(), n_images=3, fmax=0.01, relax=True)
    plane = mig.approx_neb(ini, fin, mover, EMT(), n_images=3, fmax=0.01, relax=True, constraint="hyperplane")
    assert plane["e_kra"] <= fixed["e_kra"] + 2e-3


@pytest.mark.parametrize("spec", mig.PATHS, ids=lambda p: p.id)
def test_paths_are_charge_neutral_and_hop_the_right_shell(spec):
    built = mig.build_path(spec)
    ini, fin, m = built["initial"], built["final"], built["mover"]
    assert sum(mig.CHARGES[s] for s in ini.get_chemical_symbols()) == 0
    a = built["host"].a
    expected = {("rocksalt", 1): a / np.sqrt(2), ("antifluorite", 1): a / 2,
                ("antifluorite", 2): a / np.sqrt(2)}[(built["host"].prototype, spec.shell)]
    assert built["hop_distance"] == pytest.approx(expected, abs=1e-6)
    moved = np.linalg.norm(fin.positions - ini.positions, axis=1)
    assert moved[m] == pytest.approx(expected) and np.allclose(np.delete(moved, m), 0.0)
    # the final site was empty in the initial structure
    d = np.linalg.norm(ini.positions - fin.positions[m], axis=1)
    assert d.min() > 1.5


def test_enough_paths_and_hosts():
    assert len(mig.PATHS) >= 6 and len({p.host for p in mig.PATHS}) >= 3


def _aneb_attachment():
    from pymatgen.io.ase import AseAtomsAdaptor

    ini, fin = _analytic_ends()
    base = bulk("MgO", "rocksalt", a=4.2)
    docs = []
    energies = [-10.0, -9.7, -9.4, -9.6, -9.9]
    for i, e in enumerate(energies):
        s = AseAtomsAdaptor.get_structure(base).as_dict()
        docs.append({"index": i, "input_structure": s, "output": {"energy": e}})
    incomplete = [dict(d) for d in docs]
    incomplete[2] = {"index": 2, "input_structure": docs[2]["input_structure"]}
    return {"conversion_matrix": [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "inserted_ion_coords": [],
            "hop_data": {"0+1": docs, "1+2": incomplete}}, energies


def test_mpcontribs_reader_on_a_file_in_the_deposited_format(tmp_path):
    data, energies = _aneb_attachment()
    (tmp_path / "mp-0000.aneb_wf_data.json").write_text(json.dumps(data))
    with gzip.open(tmp_path / "mp-0001.aneb_wf_data.json.gz", "wt") as fh:
        json.dump(data, fh)
    recs = datasets.load("mg-approxneb-mpcontribs", path=tmp_path)
    assert {r["material_id"] for r in recs} == {"mp-0000", "mp-0001"}
    done = [r for r in recs if r["hop_key"] == "0+1"]
    assert all(r["complete"] for r in done)
    assert done[0]["e_kra"] == pytest.approx(-9.4 - 0.5 * (-10.0 - 9.9))
    assert done[0]["n_images"] == 3 and done[0]["images"][0].get_chemical_formula() == "MgO"
    bad = [r for r in recs if r["hop_key"] == "1+2"]
    assert all(not r["complete"] and r["e_kra"] is None for r in bad)
    sub = datasets.load("mg-approxneb-mpcontribs", subset=["mp-0001"], path=tmp_path)
    assert {r["material_id"] for r in sub} == {"mp-0001"}


def test_mpcontribs_attachment_unpacking_and_offline_errors(tmp_path, monkeypatch):
    data, _ = _aneb_attachment()
    content = base64.b64encode(gzip.compress(json.dumps(data).encode())).decode()
    assert mig._unpack_attachment(content)["hop_data"].keys() == data["hop_data"].keys()
    monkeypatch.setenv("SOFTENING_ONLINE", "0")
    with pytest.raises(datasets.DatasetUnavailableError, match="offline"):
        mig.fetch_mpcontribs_approxneb()
    monkeypatch.setenv("SOFTENING_ONLINE", "1")
    monkeypatch.delenv("MP_API_KEY", raising=False)
    with pytest.raises(datasets.DatasetUnavailableError, match="MP_API_KEY"):
        mig.fetch_mpcontribs_approxneb()
    with pytest.raises(datasets.DatasetUnavailableError, match="MP_API_KEY"):
        mig.read_mpcontribs_approxneb(path=tmp_path)


class Pair(Calculator):
    """A soft repulsion exp(-r) between all atoms within 4 A: a real, simple, symmetric PES."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        from ase.neighborlist import neighbor_list

        i, j, d, D = neighbor_list("ijdD", self.atoms, 4.0)
        e = 0.5 * np.sum(np.exp(-d))
        f = np.zeros((len(self.atoms), 3))
        np.add.at(f, i, -(np.exp(-d) / d)[:, None] * D)
        self.results = {"energy": e, "free_energy": e, "forces": f}


class Ionic(Calculator):
    """Morse attraction between unlike species, a soft repulsion between like ones, smoothly
    cut at 6 A: a stable rock salt, so ApproxNEB images relax to real constrained minima."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        from ase.neighborlist import neighbor_list

        i, j, d, D = neighbor_list("ijdD", self.atoms, 6.0)
        z = self.atoms.numbers
        x = np.exp(-1.5 * (d - 2.1))
        like = 0.5 * np.exp(-(d - 2.1) / 0.3)
        e = np.where(z[i] != z[j], x * x - 2 * x, like)
        de = np.where(z[i] != z[j], -3.0 * x * x + 3.0 * x, -like / 0.3)
        sw, dsw = 1 - (d / 6.0) ** 8, -8 * d ** 7 / 6.0 ** 8
        f = np.zeros((len(self.atoms), 3))
        np.add.at(f, i, ((de * sw + e * dsw) / d)[:, None] * D)
        energy = 0.5 * float(np.sum(e * sw))
        self.results = {"energy": energy, "free_energy": energy, "forces": f}


def test_relaxed_symmetric_hop_gives_a_symmetric_profile_with_the_path_anchor():
    """Rock-salt vacancy hop, images relaxed with the ion and one far host atom fixed: with
    the anchor the hop's symmetry keeps in place (path_anchor) image 1 and image 3 are mirror
    images, so their energies agree; fixing another of the atoms tied for farthest (argmax)
    breaks the symmetry of the constrained problem and the profile with it."""
    built = mig.build_path(mig.PathSpec("MgO", 1, n_images=3))
    op = mig.hop_symmetry(built["initial"], built["final"], built["host"].atoms())
    anchor = mig.path_anchor(built)
    plain = mig.anchor_atom(built["initial"], built["mover"], built["hop_vector"])
    assert op.perm[anchor] == anchor and op.perm[plain] != plain

    def energies(a):
        res = mig.approx_neb(built["initial"], built["final"], built["mover"], Ionic(), n_images=3,
                             fmax=0.01, anchor=a)
        assert res["anchor_atom"] == a and all(res["image_converged"])
        return np.asarray(res["energies"])

    e = energies(anchor)
    assert abs(e[1] - e[3]) < 2e-3 and abs(e[0] - e[4]) < 2e-3
    e_plain = energies(plain)
    assert abs(e_plain[1] - e_plain[3]) > 0.02


def test_constraint_sensitivity_reports_every_scheme_and_the_spread(tmp_path):
    """One rock-salt path (one image), the ionic pair model: the barrier with each tied far atom
    fixed and with the host's centre of mass fixed; the table reads the cached records back."""
    from softening_lib.cache import ResultStore

    spec = mig.PathSpec("MgO", 1, n_images=1)
    rec = mig.constraint_sensitivity(spec, Ionic(), fmax=0.02, max_anchors=2)
    anchor = mig.path_anchor(mig.build_path(spec))
    assert f"anchor {anchor}" in rec["e_kra"] and "host centre of mass" in rec["e_kra"]
    assert len(rec["e_kra"]) == 3 and rec["path_anchor"] == anchor
    vals = list(rec["e_kra"].values())
    assert np.all(np.isfinite(vals)) and rec["spread"] == pytest.approx(max(vals) - min(vals))
    assert rec["max_anchor_distance"] == pytest.approx(5.0, abs=0.1)  # 30-atom MgO cell: 5 A at most
    ResultStore(mig.CONSTRAINT_TASK, root=tmp_path).put("ionic", spec.id, rec)
    table = mig.constraint_table(["ionic"], root=tmp_path)
    assert list(table["path"]) == [spec.id]
    assert table["E_KRA, book's anchor (eV)"].iloc[0] == pytest.approx(rec["e_kra"][f"anchor {anchor}"])
    assert mig.ill_posed_paths(["ionic"], threshold=rec["spread"] + 1e-6, root=tmp_path) == set()
    assert mig.ill_posed_paths(["ionic"], threshold=rec["spread"] - 1e-6, root=tmp_path) == {spec.id}


def test_score_relaxed_fixes_the_path_anchor_and_keys_the_cache_by_it(tmp_path, monkeypatch):
    """Every model's relaxed ApproxNEB fixes path_anchor's atom; a result computed with
    another anchor (another cache key) is never read back for it."""
    from softening_lib.cache import ResultStore

    seen = []

    def fake(initial, final, mover, calc, **kw):
        seen.append(kw["anchor"])
        return {"energies": [0.0, 1.0, 0.0], "e_kra": 1.0, "flags": [], "anchor_atom": kw["anchor"]}

    monkeypatch.setattr(mig, "approx_neb", fake)
    store = ResultStore("migration", root=tmp_path)
    spec = mig.PathSpec("LiCl", 1, n_images=1)
    mig.score([spec], "pair", calc=Pair(), mode="relaxed", store=store, progress=False)
    assert seen == [mig.path_anchor(mig.build_path(spec))]
    assert len(mig.score([spec], "pair", calc=Pair(), mode="relaxed", store=store, compute=False)) == 1
    monkeypatch.setattr(mig, "ANCHOR_RULE", "another rule")
    assert mig.score([spec], "pair", calc=Pair(), mode="relaxed", store=store, compute=False).empty


@pytest.mark.parametrize("path_id", ["MgO-vac-s1", "LiCl-vac-s1", "Li2O-vac-s2"])
def test_compensated_hops_are_mirror_symmetric(path_id):
    built = mig.build_path(path_id)
    res = mig.approx_neb(built["initial"], built["final"], built["mover"], Pair(), n_images=5, relax=False)
    assert abs(res["delta_e_end"]) < 1e-8
    e = np.asarray(res["energies"])
    assert np.allclose(e, e[::-1], atol=1e-8)


def test_score_caches_and_rescore_with_emt_like_calculator(tmp_path):
    """score() on a built-in path with a user calculator (static mode keeps it fast)."""
    from softening_lib.cache import ResultStore

    store = ResultStore("migration", root=tmp_path)
    spec = mig.PathSpec("LiF", 1, n_images=3)

    t1 = mig.score([spec], "pair", calc=Pair(), mode="static", store=store, progress=False)
    t2 = mig.score([spec], "pair", mode="static", store=store, compute=False)
    assert len(t1) == len(t2) == 1 and t1["e_kra"].iloc[0] == pytest.approx(t2["e_kra"].iloc[0])
    assert t1["e_kra"].iloc[0] > 0  # squeezing between two anions costs repulsion energy
    half = mig.rescore(ScaledCalculator(Pair(), 0.5), "pair*0.5", paths=[spec], mode="static",
                       store=store, progress=False)
    assert half["e_kra"].iloc[0] == pytest.approx(0.5 * t1["e_kra"].iloc[0])


def test_gpaw_reference_loader_counts_complete_and_pending_paths(tmp_path, monkeypatch):
    """The loader reads the queue's layout (<path>/<mode>/path.json + image_XX.json)."""
    monkeypatch.setattr(mig, "reference_dir", lambda: tmp_path)
    e = [-100.0, -99.8, -99.1, -98.9, -99.1, -99.8, -100.0]
    for pid, n_done in (("MgO-vac-s1", 7), ("LiF-vac-s1", 4)):
        d = tmp_path / pid / "static"
        d.mkdir(parents=True)
        (d / "path.json").write_text(json.dumps({"path_id": pid, "host": pid.split("-")[0], "n_images": 5,
                                                 "coordinate": [0.5 * i for i in range(7)]}))
        for i in range(n_done):
            (d / f"image_{i:02d}.json").write_text(json.dumps({"status": "ok", "energy": e[i], "fmax": 0.01}))
    (tmp_path / "LiF-vac-s1" / "static" / "image_05.json").write_text(json.dumps({"status": "failed"}))
    ref = mig.load_reference()
    assert list(ref["path_id"]) == ["MgO-vac-s1"]
    assert ref["e_kra"].iloc[0] == pytest.approx(-98.9 + 100.0)
    assert ref.attrs["pending"] == {"LiF-vac-s1/static": "4/7 images"}
    # the same records read from another folder (a k-point check written with --reference-dir)
    monkeypatch.setattr(mig, "reference_dir", lambda: tmp_path / "elsewhere")
    assert mig.load_reference().empty
    assert list(mig.load_reference(root=tmp_path)["path_id"]) == ["MgO-vac-s1"]


def test_gpaw_reference_coordinate_follows_the_moving_ion_of_the_records(tmp_path, monkeypatch):
    """A relaxed reference path's x axis is where its moving ion really is (relaxed end points
    pull the ion in), not the static path's coordinate stored in path.json."""
    monkeypatch.setattr(mig, "reference_dir", lambda: tmp_path)
    d = tmp_path / "LiF-vac-s1" / "relaxed"
    d.mkdir(parents=True)
    (d / "path.json").write_text(json.dumps({"path_id": "LiF-vac-s1", "host": "LiF", "n_images": 1, "mover": 1,
                                             "coordinate": [0.0, 1.5, 3.0]}))
    cell = np.diag([10.0, 10.0, 10.0]).tolist()
    for i, x in enumerate([0.2, 1.5, 4.6]):  # the last one is stored in the previous cell (mic)
        rec = {"status": "ok", "energy": [-10.0, -9.5, -10.1][i], "fmax": 0.01,
               "structure": {"positions": [[0.0, 0.0, 0.0], [x, 0.0, 0.0]], "cell": cell}}
        if i == 2:
            rec["structure"]["positions"][1][0] = -5.4  # the same site as x = 4.6
        (d / f"image_{i:02d}.json").write_text(json.dumps(rec))
    ref = mig.load_reference()
    assert ref["coordinate"].iloc[0] == pytest.approx([0.0, 1.3, 1.3 + 3.1])
    # records without structures fall back to path.json
    for i in range(3):
        f = d / f"image_{i:02d}.json"
        rec = json.loads(f.read_text())
        del rec["structure"]
        f.write_text(json.dumps(rec))
    assert mig.load_reference()["coordinate"].iloc[0] == [0.0, 1.5, 3.0]


def test_profile_path_auto_prefers_a_relaxed_reference_then_a_static_one():
    import pandas as pd

    table = pd.DataFrame({"path_id": ["Li2S-vac-s2", "Li2S-vac-s1", "LiF-vac-s1"],
                          "mode": ["static", "static", "relaxed"]})
    assert mig.profile_path_for(table) == "LiF-vac-s1"
    assert mig.profile_path_for(table[table["mode"] == "static"]) == "Li2S-vac-s1"  # PATHS order
    assert mig.profile_path_for(table.iloc[:0]) == "MgO-vac-s1"
    assert mig.profile_path_for(pd.DataFrame()) == "MgO-vac-s1"  # what load_reference gives with no files


def test_barrier_pairs_and_figures_with_a_reference():
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    ref = pd.DataFrame({"path_id": ["a", "b"], "mode": ["static"] * 2, "e_kra": [1.0, 2.0],
                        "referenced": [[0, 1.0, 0], [0, 2.0, 0]], "coordinate": [[0, 1, 2]] * 2})
    model = pd.DataFrame({"path_id": ["a", "b", "c"], "mode": ["static"] * 3, "e_kra": [0.8, 1.5, 3.0],
                          "referenced": [[0, 0.8, 0], [0, 1.5, 0], [0, 3, 0]], "coordinate": [[0, 1, 2]] * 3})
    pairs = mig.barrier_pairs({"emt": model}, ref, mode="static")
    assert sorted(pairs["path_id"]) == ["a", "b"]
    assert np.allclose(sorted(pairs["diff"]), [-0.5, -0.2])
    fig = mig.figure_3b_si1({"emt": model}, ref, mode="static")
    assert len(fig.axes) == 3  # dot plot, parity, and the legend beside the parity
    # a constraint-dependent path: drawn open, left out of the legend's MAE and of the bars
    fig = mig.figure_3b_si1({"emt": model}, ref, mode="static", ill_posed={"b"})
    ax1, ax2 = fig.axes[:2]
    labels = ax2.get_legend_handles_labels()[1]
    assert any("MAE 0.20 eV, well-posed" in t for t in labels), labels  # path a only: |0.8 - 1.0|
    open_ = [c for c in ax2.collections if len(c.get_offsets()) and c.get_facecolor().size == 0]
    assert [tuple(c.get_offsets()[0]) for c in open_] == [(2.0, 1.5)]
    # Fig. 3b is a dot plot: one point per path and model, b's difference drawn open, a's filled
    open_dots = [c for c in ax1.collections if len(c.get_offsets()) and c.get_facecolor().size == 0]
    assert [float(c.get_offsets()[0][0]) for c in open_dots] == [-0.5]
    filled = [c for c in ax1.collections if len(c.get_offsets()) and c.get_facecolor().size]
    assert [float(c.get_offsets()[0][0]) for c in filled] == pytest.approx([-0.2])
    assert not ax1.patches  # no histogram bars
    assert [t.get_text() for t in ax1.get_yticklabels()] == ["b\n(ill-posed)", "a"]  # bottom to top
    assert not ax2.child_axes  # a: 1.0 eV is not crowded next to b: 2.0 eV
    far = ref.assign(e_kra=[0.3, 3.0])
    fig = mig.figure_3b_si1({"emt": model.assign(e_kra=[0.28, 2.0, 3.0])}, far, mode="static", ill_posed={"b"})
    assert len(fig.axes[1].child_axes) == 1  # the well-posed path, crowded in a corner, gets a zoom
    fig = mig.figure_3a({"emt": model}, "a", mode="static", reference=ref)
    assert len(fig.axes[0].lines) >= 2  # reference + model profile


def test_endpoint_that_leaves_its_site_is_flagged():
    ini, fin = _analytic_ends()
    # ends placed near a maximum of the site potential: relaxing them rolls the ion off its site
    ini.positions[:2, 0] += 1.3
    fin.positions[:2, 0] += 1.3
    res = mig.approx_neb(ini, fin, 0, Analytic1D(A=0.7), n_images=3, fmax=0.01, relax=True)
    moved = [f for f in res["flags"] if f.startswith("endpoint_moved")]
    assert moved and all(float(f.split(":")[-1].rstrip("A")) > 0.5 for f in moved)


def test_barrier_pairs_leave_out_unconverged_paths_and_list_them():
    import pandas as pd

    ref = pd.DataFrame({"path_id": ["a", "b", "c"], "mode": ["relaxed"] * 3, "e_kra": [1.0, 2.0, 1.5],
                        "flags": [[], [], ["images_unconverged:2(fmax=0.300)"]]})
    model = pd.DataFrame({"path_id": ["a", "b", "c"], "mode": ["relaxed"] * 3, "e_kra": [0.8, 1.5, 1.0],
                          "flags": [[], ["images_unconverged:1(fmax=0.120)"],
                                    ["endpoint_not_minimum:image 1 is 0.010 eV below the end images"]]})
    pairs = mig.barrier_pairs({"m": model}, ref, mode="relaxed")
    assert list(pairs["path_id"]) == ["a"]
    dropped = {d["path_id"]: d["flags"] for d in pairs.attrs["unconverged"]}
    assert set(dropped) == {"b", "c"} and "fmax=0.120" in dropped["b"] and "reference:images" in dropped["c"]
    kept = mig.barrier_pairs({"m": model}, ref, mode="relaxed", keep_unconverged=True)
    assert sorted(kept["path_id"]) == ["a", "b", "c"]
    assert "endpoint_not_minimum" in kept.set_index("path_id").loc["c", "flags"]  # reported, not hidden


@pytest.mark.parametrize("path_id", ["MgO-vac-s1", "Li2O-vac-s2"])
def test_hop_symmetry_maps_each_image_onto_its_mirror_with_rotated_forces(path_id):
    """The operation found on the host carries image j onto image n-1-j: same energy and
    forces that are the rotated, re-ordered forces of the partner (a pair potential computes
    both independently)."""
    built = mig.build_path(path_id)
    op = mig.hop_symmetry(built["initial"], built["final"], built["host"].atoms())
    assert op is not None and op.perm[built["mover"]] == built["mover"]
    images = mig.interpolate(built["initial"], built["final"], 5)
    partners = mig.mirror_partners(images, op)
    assert partners == {4: 2, 5: 1, 6: 0}
    rot = op.cartesian_rotation(images[0].cell)
    assert np.allclose(rot @ rot.T, np.eye(3), atol=1e-10)  # an isometry
    for i, j in partners.items():
        a, b = images[j].copy(), images[i].copy()
        a.calc, b.calc = Pair(), Pair()
        assert abs(a.get_potential_energy() - b.get_potential_energy()) < 1e-9
        assert np.allclose(op.rotate(a.get_forces(), a.cell), b.get_forces(), atol=1e-9)
        moved = op.apply(images[j], template=images[i])
        assert np.allclose(moved.positions, images[i].positions, atol=1e-6)
        assert moved.get_chemical_symbols() == images[i].get_chemical_symbols()


def test_no_hop_symmetry_when_one_side_of_the_hop_is_disturbed():
    built = mig.build_path("MgO-vac-s1")
    final = built["final"].copy()
    mid = built["initial"].positions[built["mover"]] + 0.5 * built["hop_vector"]
    d = np.linalg.norm(final.positions - mid, axis=1)
    d[built["mover"]] = np.inf
    final.positions[int(np.argmin(d))] += [0.05, 0.0, 0.0]  # a neighbour of the hop moves on one end only
    assert mig.hop_symmetry(built["initial"], final, built["host"].atoms()) is None
    assert mig.mirror_partners(mig.interpolate(built["initial"], final, 5), None) == {}


def test_gpaw_queue_writes_mirror_images_as_rotated_copies_of_their_partners(tmp_path):
    """scripts/gpaw_solid_solution_migration.py: a static path with a hop symmetry queues only
    its first half; each mirror record (written from its partner's record, no calculation)
    holds the energy and forces a direct calculation of that image gives."""
    q = _load_gpaw_queue_script()
    items = [it for it in q.mig_items("static", tmp_path) if it["path"].id == "MgO-vac-s1"]
    assert [it["mirror_of"] for it in items] == [None, None, None, None, 2, 1, 0]
    assert [q.estimate(it) == 0.0 for it in items] == [False] * 4 + [True] * 3
    for it in items[:4]:  # stand-in for GPAW: the pair potential, written in the record format
        a = it["atoms"].copy()
        a.calc = Pair()
        q._write(it["out"], {"status": "ok", "mode": "static", "energy": a.get_potential_energy(),
                             "fmax": float(np.linalg.norm(a.get_forces(), axis=1).max()), "converged": True,
                             "forces": a.get_forces().tolist(), "structure": q._atoms_record(a),
                             "dft": {"code": "pair"}})
    waiting = q.mirror_record({**items[4], "mirror_of": 2, "pdir": tmp_path / "empty"}, {})
    assert waiting["status"] == "waiting"
    for it in items[4:]:
        rec = q.run_item(it)
        b = it["atoms"].copy()
        b.calc = Pair()
        assert rec["mirror_of"] == 6 - it["index"] and rec["cpu_time_s"] == 0.0
        assert abs(rec["energy"] - b.get_potential_energy()) < 1e-9
        assert np.allclose(rec["forces"], b.get_forces(), atol=1e-9)
        assert np.allclose(rec["structure"]["positions"], b.positions, atol=1e-6)


def _load_gpaw_queue_script():
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "scripts" / "gpaw_solid_solution_migration.py"
    spec = importlib.util.spec_from_file_location("gpaw_ssm", script)
    q = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(q)
    return q


def test_anchor_atom_tie_goes_to_an_atom_the_hop_symmetry_keeps_in_place():
    """Rock salt: four host atoms tie for farthest from the hop; the first of them (argmax,
    what a model's approx_neb fixes) is moved by the hop's symmetry, two others are not."""
    built = mig.build_path("MgO-vac-s1")
    op = mig.hop_symmetry(built["initial"], built["final"], built["host"].atoms())
    ini, m, hop = built["initial"], built["mover"], built["hop_vector"]
    d = np.linalg.norm(mig._mic_vectors(ini, ini.positions[m] + 0.5 * hop), axis=1)
    d[m] = -1
    plain, kept = mig.anchor_atom(ini, m, hop), mig.anchor_atom(ini, m, hop, symmetry=op)
    assert op.perm[plain] != plain and op.perm[kept] == kept
    assert d[kept] == pytest.approx(d.max(), abs=1e-6) and d[plain] == pytest.approx(d.max(), abs=1e-6)
    assert mig.anchor_atom(ini, m, hop, symmetry=None) == plain


def test_gpaw_queue_mirrors_relaxed_end_point_and_images_only_when_the_fixed_atoms_stay(tmp_path):
    """Relaxed ApproxNEB: the final end point is g(relaxed initial); intermediate images are
    mirrored where g keeps the moving ion and the anchor atom in place (the anchor is chosen
    so: Li2O second shell, MgO), never on a hop without symmetry (Li2O first shell)."""
    q = _load_gpaw_queue_script()
    li2o_s1 = [it for it in q.mig_items("relaxed", tmp_path) if it["path"].id == "Li2O-vac-s1"]
    assert [it["mirror_of"] for it in li2o_s1] == [None] * 7
    for pid in ("MgO-vac-s1", "Li2O-vac-s2"):
        _check_relaxed_mirror(q, tmp_path / pid, pid)


def _check_relaxed_mirror(q, tmp_path, path_id):
    items = {it["index"]: it for it in q.mig_items("relaxed", tmp_path) if it["path"].id == path_id}
    assert [items[i]["mirror_of"] for i in range(7)] == [None, None, None, None, 2, 1, 0]

    def write(it, atoms):
        a = atoms.copy()
        a.calc = Pair()
        q._write(it["out"], {"status": "ok", "mode": "relaxed", "energy": a.get_potential_energy(),
                             "fmax": 0.01, "converged": True, "steps": 3, "structure": q._atoms_record(a),
                             "dft": {"code": "pair"}})

    r0 = items[0]["atoms"].copy()
    r0.rattle(0.02, seed=1)  # a stand-in for the relaxed initial end point ...
    far = int(np.argmax(np.linalg.norm(r0.positions - r0.positions[items[0]["built"]["mover"]], axis=1)))
    r0.positions[far] += [0.6, 0.0, 0.0]  # ... where one atom relaxed 0.6 A (Li2S-vac-s2 end points: 0.54 A)
    write(items[0], r0)
    assert q.mirror_record(items[6], {"status": "ok"}) is not None  # a mirror, never a GPAW run
    end = q.run_item(items[6])
    assert end["mirror_of"] == 0
    q._write(items[6]["out"], end)
    op = items[0]["built"]["symmetry"]
    assert np.allclose(end["structure"]["positions"], op.apply(r0, template=items[0]["built"]["final"]).positions)
    from ase import Atoms

    r6 = Atoms(end["structure"]["symbols"], positions=end["structure"]["positions"], cell=r0.cell, pbc=True)
    path = mig.interpolate(r0, r6, 5)
    for i in (1, 2, 3):
        write(items[i], path[i])
    for i in (4, 5):
        rec = q.run_item(items[i])
        b = path[i].copy()
        b.calc = Pair()
        assert rec["mirror_of"] == 6 - i
        assert abs(rec["energy"] - b.get_potential_energy()) < 1e-9


def test_gpaw_queue_puts_a_mirror_image_in_its_partners_task(tmp_path):
    q = _load_gpaw_queue_script()
    items = list(q.mig_items("static", tmp_path))
    groups = q.group_items(items)
    assert sorted(it["id"] for g in groups for it in g) == sorted(it["id"] for it in items)
    home = {it["id"]: g[0]["id"] for g in groups for it in g}
    for g in groups:
        assert g[0].get("mirror_of") is None  # the partner is computed first
    for it in items:
        if it["mirror_of"] is not None:
            partner = next(p for p in items if p["path"].id == it["path"].id and p["index"] == it["mirror_of"])
            assert home[it["id"]] == partner["id"]


def test_gpaw_queue_warm_start_reaches_the_same_minimum_in_fewer_dft_steps(tmp_path, monkeypatch):
    """--warm-start: an MLIP pre-relaxes the start under the same constraints, then the DFT
    stand-in (EMT here) relaxes to fmax 0.05 on its own forces. A softened model of the same
    PES (EMT forces x 0.7: same minimum) leaves the DFT relaxation almost nothing to do, and
    the result is the DFT minimum either way; the fixed atoms of an image never move."""
    from types import SimpleNamespace

    q = _load_gpaw_queue_script()
    monkeypatch.setattr(q, "gpaw_calculator", lambda atoms, **s: (EMT(), s))
    monkeypatch.setattr(q, "_settings_record", lambda s: {"code": "EMT stand-in for GPAW"})
    ini, fin, mover = _cu_vacancy_hop()
    built = {"mover": mover, "hop_vector": fin.positions[mover] - ini.positions[mover], "initial": ini, "final": fin}
    pdir = tmp_path / "relaxed"
    pdir.mkdir()
    (pdir / "path.json").write_text("{}")

    def item(i, atoms, warm):
        return {"kind": "mig-relaxed", "id": f"Cu-vac/relaxed/{i:02d}", "path": SimpleNamespace(id="Cu-vac", n_images=3),
                "built": built, "index": i, "atoms": atoms, "out": pdir / f"image_{i:02d}.json", "pdir": pdir,
                "mirror_of": None, "settings": {}, "warm_start": warm}

    soft = ScaledCalculator(EMT(), 0.7)
    cold = q.run_item(item(0, ini, None))
    hot = q.run_item(item(0, ini, soft))
    assert "warm_start" not in cold and cold["converged"] and hot["converged"]
    assert hot["warm_start"]["model"] == "EMT*0.7" and hot["warm_start"]["converged"]
    assert hot["warm_start"]["max_displacement"] > 0.01  # the vacancy's neighbours relax
    assert hot["steps"] < cold["steps"]
    assert hot["energy"] == pytest.approx(cold["energy"], abs=2e-3)
    assert np.allclose(hot["structure"]["positions"], cold["structure"]["positions"], atol=0.03)

    for i, atoms in ((0, ini), (4, fin)):  # relaxed end points, then one image between them
        q._write(pdir / f"image_{i:02d}.json", q.run_item(item(i, atoms, None)))
    ends = [q._record_atoms(pdir / f"image_{i:02d}.json") for i in (0, 4)]
    start = mig.interpolate(ends[0], ends[1], 3, "linear")[2]
    anchor = mig.anchor_atom(ends[0], mover, built["hop_vector"])
    rec = q.run_item(item(2, None, soft))
    pos = np.asarray(rec["structure"]["positions"])
    assert rec["converged"] and rec["warm_start"]["converged"]
    assert np.allclose(pos[[mover, anchor]], start.positions[[mover, anchor]], atol=1e-9)


def test_reference_anchor_check_pairs_images_relaxed_with_two_anchors(tmp_path):
    import json

    def write(folder, index, energy, **extra):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"image_{index:02d}.json").write_text(json.dumps(
            {"status": "ok", "index": index, "energy": energy, **extra}))

    main, alt = tmp_path / "P" / "relaxed", tmp_path / "P" / "anchor16_images"
    write(main, 0, -10.0)
    write(main, 1, -9.5, fixed_atoms=[1, 6])
    write(main, 2, -8.0, fixed_atoms=[1, 6])
    write(alt, 2, -9.0)
    write(alt, 3, -9.9)  # no partner in the main path: left out
    table = mig.reference_anchor_check("P", root=tmp_path)
    assert list(table["image"]) == [2]
    assert np.isclose(table["E - E_0, path anchor (eV)"].iloc[0], 2.0)
    assert np.isclose(table["E - E_0, other atom (eV)"].iloc[0], 1.0)
    assert np.isclose(table["difference (eV)"].iloc[0], 1.0)
    assert mig.reference_anchor_check("missing", root=tmp_path).empty
