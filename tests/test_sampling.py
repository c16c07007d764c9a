"""softening_lib.sampling: the paper's high-energy sampler, run for real with EMT on tiny Cu."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from ase.build import bulk

from softening_lib.sampling import sample_high_energy, strain_cell


def _cu():
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)  # 4 atoms
    atoms.info.update(material_id="test-cu", formula="Cu")
    return atoms


@pytest.fixture(scope="module")
def frames():
    return sample_high_energy(_cu(), model="emt", total_time_ps=0.04, timestep_fs=2.0, seed=7)


def test_ten_frames_four_strained(frames):
    assert len(frames) == 10
    assert [f.info["frame_id"] for f in frames] == list(range(10))
    strained = [f for f in frames if f.info["strained"]]
    assert len(strained) == 4
    ref = _cu().cell.lengths()
    for f in frames:
        ratio = f.cell.lengths() / ref
        s = np.array([f.info["strain_a"], f.info["strain_b"], f.info["strain_c"]])
        if f.info["strained"]:
            assert np.allclose(np.abs(s), 0.03)
            assert np.allclose(ratio, 1 + s, atol=1e-12)  # exactly +/-3 % per lattice vector
        else:
            assert np.allclose(s, 0) and np.allclose(ratio, 1)
        assert f.calc is None


def test_frames_evenly_spaced_and_recorded(frames):
    steps = [f.info["md_step"] for f in frames]
    assert steps == [2 * (k + 1) for k in range(10)]  # 20 steps, every 2nd
    info = frames[0].info
    assert info["md_model"] == "emt" and info["md_temperature_K"] == 1000
    assert info["md_total_time_ps"] == pytest.approx(0.04)
    assert info["md_n_steps"] == 20 and info["md_seed"] == 7
    assert info["md_thermostat"] == "berendsen" and info["md_paper_protocol"] is False
    assert info["material_id"] == "test-cu" and info["source_material_id"] == "test-cu"


def test_reproducible_with_seed(frames):
    again = sample_high_energy(_cu(), model="emt", total_time_ps=0.04, seed=7)
    for a, b in zip(frames, again):
        assert np.allclose(a.positions, b.positions) and np.allclose(a.cell, b.cell)
        assert a.info["strained"] == b.info["strained"]
    other = sample_high_energy(_cu(), model="emt", total_time_ps=0.04, seed=8)
    assert not all(np.allclose(a.positions, b.positions) for a, b in zip(frames, other))


def test_langevin_and_strain_helper():
    fr = sample_high_energy(_cu(), model="emt", total_time_ps=0.02, thermostat="langevin", seed=1,
                            n_frames=5, n_strained=2)
    assert len(fr) == 5 and sum(f.info["strained"] for f in fr) == 2
    atoms = _cu()
    s = strain_cell(atoms, [0.03, -0.03, 0.0])
    assert np.allclose(s.cell.lengths(), atoms.cell.lengths() * [1.03, 0.97, 1.0])
    assert np.allclose(s.get_scaled_positions(), atoms.get_scaled_positions())
    with pytest.raises(ValueError):
        sample_high_energy(_cu(), model="emt", total_time_ps=0.002, n_frames=10)


@pytest.mark.skipif(importlib.util.find_spec("gpaw") is None, reason="the cost model reads GPAW's setup files")
def test_campaign_selection_rule(mirror_available):
    from softening_lib import campaign
    from softening_lib.dft import REFUSED_ELEMENTS

    ids = campaign.select_compounds(20)
    assert ids == campaign.select_compounds(20)  # deterministic
    table = campaign.candidate_table().set_index("material_id")
    for mid in ids:
        row = table.loc[mid]
        assert row.excluded == "" and row.n_atoms <= 8 and row.cost <= campaign.DEFAULT_MAX_COST
        assert not set(row.elements.split()) & (REFUSED_ELEMENTS | {"H"})
    assert "wbm-1-10384" not in ids  # Rb2CuCl4: odd electron count (Cu2+), excluded
    assert campaign.seed_for("wbm-1-25229") == campaign.seed_for("wbm-1-25229") != campaign.seed_for("wbm-1-3187")


def test_atomic_write(tmp_path):
    from softening_lib.campaign import atomic_write_json, load_progress

    atomic_write_json(tmp_path / "progress.json", {"compounds": {"a": 1}, "failures": {}})
    assert load_progress(tmp_path)["compounds"] == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["progress.json"]  # no temp files left
