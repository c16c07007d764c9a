"""The GPAW-vs-VASP appendix's task module, on a fake validation directory written in the
format of scripts/gpaw_validate.py (its own summarise() writes the summary files)."""

import importlib.util
import json

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from softening_lib import config
from softening_lib.tasks import gpaw_validation as gv

SCRIPT = config.REPO_ROOT / "scripts" / "gpaw_validate.py"


def _script():
    spec = importlib.util.spec_from_file_location("gpaw_validate_under_test", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _write_material(script, out, mid, formula, slope, residual_how, seed):
    rng = np.random.default_rng(seed)
    vasp = rng.normal(scale=0.1, size=(2, 4, 3))
    gpaw = slope * vasp  # after subtracting the residual: exactly `slope` times VASP
    resid = rng.normal(scale=0.2, size=(4, 3)) if residual_how == "computed" else np.zeros((4, 3))
    np.savez_compressed(out / f"{mid}.npz", vasp_forces=vasp, gpaw_forces=gpaw, gpaw_residual_forces=resid)
    m = script.metrics(vasp, gpaw)
    rec = {"material_id": mid, "formula": formula, "dataset": "phonondb-pbesol", "functional": "PBEsol",
           "n_atoms_supercell": 4, "n_frames": 2, "n_frames_total": 2, **m,
           "raw": script.metrics(vasp, gpaw + resid[None]), "max_abs_gpaw_residual": float(np.abs(resid).max()),
           "residual_subtracted": True, "residual_forces": residual_how,
           "within_target": bool(abs(m["slope"] - 1) <= 0.03), "wall_time_s": 10.0, "cpu_time_s": 9.0,
           "settings": {"ecut_eV": 800.0, "kpts": [2, 2, 2], "xc": "PBEsol"}, "scf_iterations": [12, 12]}
    (out / f"{mid}.json").write_text(json.dumps(rec))


RESIDUALS = [
    {"material_id": "mp-23330", "formula": "NaClO3", "xc": "PBE", "setups": "default", "ecut_eV": 800.0,
     "kpts": [2, 2, 2], "max_residual_eV_A": 0.64,
     "max_residual_per_element": {"Cl": 0.1, "Na": 0.02, "O": 0.64},
     "shortest_bond": {"Na-O": {"length_A": 2.37, "force_along_bond_eV_A": 0.01},
                       "Cl-O": {"length_A": 1.501, "force_along_bond_eV_A": -0.05},
                       "O-Cl": {"length_A": 1.501, "force_along_bond_eV_A": 0.6}},
     "cpu_time_s": 300.0},
    {"material_id": "mp-23330", "formula": "NaClO3", "xc": "PBEsol", "setups": "default", "ecut_eV": 800.0,
     "kpts": [2, 2, 2], "max_residual_eV_A": 0.31,
     "max_residual_per_element": {"Cl": 0.05, "Na": 0.01, "O": 0.31},
     "shortest_bond": {"Na-O": {"length_A": 2.37, "force_along_bond_eV_A": 0.004},
                       "Cl-O": {"length_A": 1.501, "force_along_bond_eV_A": -0.03},
                       "O-Cl": {"length_A": 1.501, "force_along_bond_eV_A": 0.29}},
     "cpu_time_s": 300.0},
    {"material_id": "mp-23330", "formula": "NaClO3", "xc": "PBEsol", "setups": "pbe", "ecut_eV": 800.0,
     "kpts": [2, 2, 2], "max_residual_eV_A": 0.305,
     "max_residual_per_element": {"Cl": 0.05, "Na": 0.01, "O": 0.305},
     "shortest_bond": {"O-Cl": {"length_A": 1.501, "force_along_bond_eV_A": 0.28}},
     "cpu_time_s": 300.0},
]


@pytest.fixture
def val_dir(tmp_path, monkeypatch):
    script = _script()
    monkeypatch.setattr(script, "OUT", tmp_path)
    _write_material(script, tmp_path, "mp-23330", "NaClO3", 1.1, "computed", seed=1)
    _write_material(script, tmp_path, "mp-149", "Si", 1.01, gv.ZERO_BY_SYMMETRY, seed=2)
    script.summarise()
    return tmp_path


def test_load_summary_and_pooled(val_dir):
    summary = gv.load_summary(val_dir)
    assert sorted(summary.material_id) == ["mp-149", "mp-23330"]
    s = dict(zip(summary.material_id, summary.slope))
    assert s["mp-23330"] == pytest.approx(1.1, abs=1e-4)  # csv keeps 5 significant digits
    assert s["mp-149"] == pytest.approx(1.01, abs=1e-4)
    p = gv.pooled(val_dir)
    assert p["n_materials"] == 2 and p["n_within_target"] == 1
    assert 1.01 < p["pooled"]["slope"] < 1.1
    assert gv.glue_values(val_dir) == {"val_n": 2, "val_slope_pooled": p["pooled"]["slope"], "val_n_within": 1}


def test_summary_note(val_dir):
    note = gv.summary_note(val_dir)
    p = gv.pooled(val_dir)
    assert "**1 of 2 materials**" in note
    assert f"pooled slope {p['pooled']['slope']:.3f}" in note
    assert f"MAE {1000 * p['pooled']['mae']:.1f} meV/Å" in note
    assert p["remaining"] and all(m in note for m in p["remaining"])  # still to do (the script's list)
    assert "mp-149" not in note.split("Not done yet:")[1]


def test_fig_parity_panels_titles(val_dir):
    fig = gv.fig_parity(val_dir)
    assert len(fig.axes) == 2
    titles = {ax.get_title().splitlines()[0]: ax.get_title() for ax in fig.axes}
    assert "residual computed" in titles["NaClO3 (mp-23330)"]
    assert "slope 1.100" in titles["NaClO3 (mp-23330)"]
    assert "residual zero by symmetry" in titles["Si (mp-149)"]
    assert "slope 1.010" in titles["Si (mp-149)"]
    x, y = gv.parity_data("mp-23330", val_dir)
    np.testing.assert_allclose(fig.axes[[a.get_title().startswith("NaClO3") for a in fig.axes].index(True)]
                               .collections[0].get_offsets(), np.c_[x, y])


def test_fig_parity_wraps_at_max_cols_per_row(val_dir):
    script = _script()
    for k in range(4):
        _write_material(script, val_dir, f"mp-9{k}", "Si", 1.0, gv.ZERO_BY_SYMMETRY, seed=10 + k)
    script.OUT = val_dir
    script.summarise()
    fig = gv.fig_parity(val_dir)
    assert len(fig.axes) == 6
    rows = {round(ax.get_position().y0, 3) for ax in fig.axes}
    cols = {round(ax.get_position().x0, 3) for ax in fig.axes}
    assert gv.MAX_COLS == 3 and len(rows) == 2 and len(cols) == gv.MAX_COLS  # 6 panels: 2 rows of 3


def test_residual_table_and_note(val_dir):
    (val_dir / "residual_checks.json").write_text(json.dumps(RESIDUALS))
    t = gv.residual_table(val_dir)
    assert len(t) == 3
    r = t[(t.xc == "PBEsol") & (t.setups == "default")].iloc[0]
    assert r.max_residual_eV_A == pytest.approx(0.31)
    assert r.bond == "O-Cl" and r.bond_length_A == pytest.approx(1.501)
    assert r.force_along_bond_eV_A == pytest.approx(0.29)
    assert r.max_residual_per_element.startswith("O 0.31")
    note = gv.residual_note(val_dir)
    assert "0.31 eV/Å (GPAW-PBEsol with generated PBEsol setups)" in note
    assert "0.30 eV/Å (GPAW-PBEsol with GPAW's PBE setups)" in note
    assert "0.64 eV/Å (GPAW-PBE with GPAW's PBE setups)" in note
    assert note.index("0.31 eV/Å") < note.index("0.30 eV/Å") < note.index("0.64 eV/Å")
    assert "pushes O away from Cl with 0.29 eV/Å" in note and "GPAW's bond is longer" in note
    assert "Displaced-cell slope 1.100 (outside 1.00 ± 0.03)" in note
    assert "Si (mp-149) 1.010" in note


def test_residual_note_sign_stretched(val_dir):
    flipped = json.loads(json.dumps(RESIDUALS[1]))
    flipped["shortest_bond"]["O-Cl"]["force_along_bond_eV_A"] = -0.29
    (val_dir / "residual_checks.json").write_text(json.dumps([flipped]))
    note = gv.residual_note(val_dir)
    assert "pulls O towards Cl" in note and "GPAW's bond is shorter" in note


def test_absent_files(tmp_path):
    assert gv.load_summary(tmp_path).empty
    assert gv.pooled(tmp_path) is None
    assert gv.glue_values(tmp_path) == {}
    assert "No validation results yet" in gv.summary_note(tmp_path)
    assert gv.fig_parity(tmp_path) is None
    t = gv.residual_table(tmp_path)
    assert t.empty and "max_residual_eV_A" in t.columns
    assert "has not been run" in gv.residual_note(tmp_path)
    assert gv.convergence_table(tmp_path).empty
    assert gv.campaign_table(tmp_path).empty
    assert "not written" in gv.campaign_note(tmp_path)


def test_residual_how_of_older_records():
    assert gv.residual_how({"residual_subtracted": True}) == "computed"
    assert gv.residual_how({"residual_forces": gv.ZERO_BY_SYMMETRY}) == gv.ZERO_BY_SYMMETRY
    assert gv.residual_how(None) == "unknown"


def test_campaign_and_convergence_tables(tmp_path):
    prog = {"compounds": {"wbm-1-1": {"formula": "LiGa", "n_atoms": 2, "n_frames": 10, "n_failed": 0,
                                      "s_per_frame": 30.0, "md_wall_s": 100.0, "md_total_time_ps": 20.0}},
            "failures": [{"id": "x"}]}
    (tmp_path / "progress.json").write_text(json.dumps(prog))
    t = gv.campaign_table(tmp_path)
    assert list(t.material_id) == ["wbm-1-1"] and t.n_frames.iloc[0] == 10
    assert gv.campaign_note(tmp_path).startswith("1 compounds labelled; failures recorded: 1.")
    (tmp_path / "summary.csv").write_text("material_id,variant,slope_vs_campaign\nwbm-1-1,ecut_+200,0.99998\n")
    assert gv.convergence_table(tmp_path).slope_vs_campaign.iloc[0] == pytest.approx(0.99998)


def test_matpes_crosscheck_on_given_frames(labelled_frames):
    frames = labelled_frames("m1", 0.8, n=2) + labelled_frames("m2", 0.9, n=2, seed=7)
    t = gv.matpes_crosscheck(["emt", "no-such-model"], n=1, frames=frames)
    assert list(t.material_id) == ["m1"] and t.frames.iloc[0] == 2
    assert t["s emt"].iloc[0] == pytest.approx(0.8, rel=1e-6)
    assert "s no-such-model" not in t.columns


def test_convergence_scan_figure_and_note(tmp_path, fake_scan_labeller):
    """scan files as scripts/gpaw_convergence.py --scan writes them (dft.convergence_scan ->
    dft.scan_table -> scan_summary.csv), for a metal (Cu) and an oxide-like cell (800 eV default)."""
    import pandas as pd

    from softening_lib import dft

    cu = dft.convergence_structures()["Cu"]
    cu3o = cu.copy()
    cu3o.symbols[0] = "O"
    cu3o.info.update(formula="Cu3O", metal=False)
    tables = [dft.scan_table(dft.convergence_scan(a, tmp_path / f"scan_{a.info['formula']}.json",
                                                  kpt_densities=(2.0, 3.0, 5.0), labeller=fake_scan_labeller([]),
                                                  log=None)) for a in (cu, cu3o)]
    pd.concat(tables).to_csv(tmp_path / "scan_summary.csv", index=False)
    table = gv.scan_table(tmp_path)
    assert set(table.material) == {"Cu", "Cu3O"}
    assert set(table[(table.material == "Cu3O") & (table.series == "kpt_density")].ecut) == {800.0}
    fig = gv.fig_convergence_scan(tmp_path)
    assert [ax.get_xlabel() for ax in fig.axes] == ["plane-wave cutoff (eV)", "k-point density (per Å⁻¹)"]
    assert len(fig.axes[0].get_lines()) == 2 + len(gv.SCAN_MARKS["ecut"])  # one line per material + marks
    note = gv.scan_note(tmp_path)
    k2 = table[(table.series == "kpt_density") & (table.kpt_density == 2.0)].set_index("material").force_mae
    assert f"Cu {1000 * k2['Cu']:.1f}" in note and f"Cu3O {1000 * k2['Cu3O']:.1f}" in note
    line_520 = next(line for line in note.splitlines() if "520 eV" in line)
    assert "Cu " in line_520 and "Cu3O" not in line_520  # O asks for 800 eV: not scored at 520
    stress = table[(table.series == "ecut") & (table.ecut == 800.0) & (table.material == "Cu3O")].stress_max_dev_GPa
    assert f"Cu3O {stress.iloc[0]:.2f}" in next(line for line in note.splitlines() if "stress" in line)
    assert gv.fig_convergence_scan(tmp_path / "absent") is None
    assert "has not been run" in gv.scan_note(tmp_path / "absent")


def test_kpoint_check_of_campaign_frames(tmp_path):
    assert gv.kpoint_check(tmp_path) is None and "have not been checked" in gv.kpoint_check_note(tmp_path)
    (tmp_path / "summary.csv").write_text(
        "material_id,formula,variant,slope_vs_campaign,mae_vs_campaign_eV_A,max_abs_diff_eV_A\n"
        "wbm-1,LiGa,kpt_density_3.5,1.009,0.011,0.03\n"
        "wbm-1,LiGa,ecut_+200,0.99998,0.00001,0.00003\n"
        "wbm-2,Si,kpt_density_3.5,1.030,0.030,0.09\n"
        "wbm-3,KF,kpt_density_3.5,0.998,0.002,0.01\n")
    k = gv.kpoint_check(tmp_path)
    assert k["n_compounds"] == 3 and k["slope_median"] == pytest.approx(1.009)  # the cutoff row is not counted
    assert (k["slope_min_formula"], k["slope_max_formula"]) == ("KF", "Si")
    assert k["mae_max"] == pytest.approx(0.030)
    note = gv.kpoint_check_note(tmp_path)
    assert "3 campaign compounds" in note and "0.998 (KF) to 1.030 (Si)" in note
