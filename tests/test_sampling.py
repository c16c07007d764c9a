"""softening_lib.sampling: the paper's high-energy sampler, run for real with EMT on tiny Cu."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from ase.build import bulk

from softening_lib.sampling import sample_high_energy, sample_high_energy_batch, strain_cell


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

    dft = campaign.CAMPAIGN_DFT  # the campaign's k-point density sets the cost of a frame
    ids = campaign.select_compounds(20, **dft)
    assert len(ids) == 20 and ids == campaign.select_compounds(20, **dft)  # deterministic
    table = campaign.candidate_table(**dft).set_index("material_id")
    for mid in ids:
        row = table.loc[mid]
        assert row.excluded == "" and row.n_atoms <= 8 and row.cost <= campaign.DEFAULT_MAX_COST
        assert not set(row.elements.split()) & (REFUSED_ELEMENTS | {"H"})
    assert "wbm-1-10384" not in ids  # Rb2CuCl4: odd electron count (Cu2+), excluded
    # past the cheapest pool the selection goes on in dearer tiers, keeping what came before
    n_cheap = int(((table.excluded == "") & (table.cost <= campaign.DEFAULT_MAX_COST)).sum())
    longer = campaign.select_compounds(n_cheap + 6, **dft)
    assert len(longer) == n_cheap + 6 and longer[:20] == ids
    assert all(table.loc[m].cost <= campaign.DEFAULT_MAX_COST for m in longer[:n_cheap])
    assert all(campaign.DEFAULT_MAX_COST < table.loc[m].cost <= 1.5 * campaign.DEFAULT_MAX_COST
               for m in longer[n_cheap:])
    assert campaign.seed_for("wbm-1-25229") == campaign.seed_for("wbm-1-25229") != campaign.seed_for("wbm-1-3187")


def test_atomic_write(tmp_path):
    from softening_lib.campaign import atomic_write_json, load_progress

    atomic_write_json(tmp_path / "progress.json", {"compounds": {"a": 1}, "failures": {}})
    assert load_progress(tmp_path)["compounds"] == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["progress.json"]  # no temp files left


# --------------------------------------------------------------------------------------
# sample_high_energy_batch: several structures in lock-step, one force call per step
# --------------------------------------------------------------------------------------

_BATCH_ONLY = {"sampler", "md_batch_size", "md_batch_wall_time_s", "md_wall_time_s"}


def _cu3al():
    atoms = bulk("Cu", "fcc", a=3.62, cubic=True)
    atoms.symbols[1] = "Al"
    atoms.info.update(material_id="test-cu3al", formula="Cu3Al", corrected_energy=-1.0)
    return atoms


def _assert_same_frames(ref, got, atol=1e-8):
    assert len(ref) == len(got)
    for a, b in zip(ref, got):
        assert np.allclose(a.positions, b.positions, rtol=0, atol=atol)
        assert np.allclose(a.cell, b.cell, rtol=0, atol=1e-12)
        assert list(a.numbers) == list(b.numbers) and "momenta" not in b.arrays and b.calc is None
        assert set(a.info) == set(b.info) - {"md_batch_size", "md_batch_wall_time_s"}
        for key in set(a.info) - _BATCH_ONLY:
            if isinstance(a.info[key], float):
                assert b.info[key] == pytest.approx(a.info[key], rel=1e-9, abs=1e-9), key
            else:
                assert b.info[key] == a.info[key], key
    assert got[0].info["sampler"].endswith("sample_high_energy_batch")


def test_batch_of_one_is_ase_nvtberendsen():
    """One Cu3Al cell, EMT, 0.1 ps (50 steps), 10 frames: the numpy integrator follows ASE's
    NVTBerendsen (through sample_high_energy) to rounding, with the same frames and info."""
    kw = dict(total_time_ps=0.1, timestep_fs=2.0, temperature_K=1000.0)
    ref = sample_high_energy(_cu3al(), model="emt", seed=11, **kw)
    (got,) = sample_high_energy_batch([_cu3al()], model="emt", seeds=[11], **kw)
    _assert_same_frames(ref, got)
    assert got[0].info["md_batch_size"] == 1
    # the run moved the atoms and the thermostat acted (not a trivially static trajectory)
    assert np.abs(got[-1].positions - _cu3al().positions).max() > 0.05
    # a different taut changes the trajectory (the thermostat is really applied)
    (other,) = sample_high_energy_batch([_cu3al()], model="emt", seeds=[11], taut_fs=10.0, **kw)
    assert not np.allclose(other[-1].positions, got[-1].positions, atol=1e-6)
    ref10 = sample_high_energy(_cu3al(), model="emt", seed=11, taut_fs=10.0, **kw)
    _assert_same_frames(ref10, other)


def test_batch_of_three_equals_three_runs():
    """Three different EMT cells with their own seeds == three sample_high_energy runs."""
    al = bulk("Al", "fcc", a=4.05).repeat((2, 1, 1))  # 2 atoms, primitive (non-orthogonal) cell
    al.info.update(material_id="test-al2")
    cu = _cu()
    ni = bulk("Ni", "fcc", a=3.52, cubic=True).repeat((1, 1, 2))
    ni.symbols[0] = "Cu"
    structures, seeds = [cu, al, ni], [1, 2, 3]
    kw = dict(total_time_ps=0.04, timestep_fs=2.0, n_frames=5, n_strained=2)
    batch = sample_high_energy_batch(structures, model="emt", seeds=seeds, **kw)
    assert len(batch) == 3
    for atoms, seed, got in zip(structures, seeds, batch):
        ref = sample_high_energy(atoms, model="emt", seed=seed, **kw)
        _assert_same_frames(ref, got)
        assert got[0].info["md_batch_size"] == 3


def test_batch_custom_force_call_is_called_once_per_step():
    forces, calls = _emt_forces()
    kw = dict(total_time_ps=0.02, n_frames=5, n_strained=1)
    batch = sample_high_energy_batch([_cu(), _cu3al()], model="emt", seeds=[5, 6], batch_forces=forces, **kw)
    assert calls == [2] * 11  # the initial forces + one call per step (10 steps)
    _assert_same_frames(sample_high_energy(_cu3al(), model="emt", seed=6, **kw), batch[1])


def test_batch_bad_input():
    with pytest.raises(ValueError, match="one seed per structure"):
        sample_high_energy_batch([_cu(), _cu()], model="emt", seeds=[1], total_time_ps=0.02)
    with pytest.raises(ValueError, match="only thermostat='berendsen'"):
        sample_high_energy_batch([_cu()], model="emt", seeds=[1], total_time_ps=0.02, thermostat="langevin")
    with pytest.raises(TypeError, match="one name for the whole batch"):
        sample_high_energy_batch([_cu(), _cu()], model="emt", seeds=[1, 2], total_time_ps=0.02,
                                 thermostat=["berendsen", "langevin"])
    with pytest.raises(ValueError, match="distinct frames"):
        sample_high_energy_batch([_cu()], model="emt", seeds=[1], total_time_ps=0.002)
    from ase.constraints import FixAtoms

    fixed = _cu()
    fixed.set_constraint(FixAtoms([0]))
    with pytest.raises(ValueError, match="constraints"):
        sample_high_energy_batch([fixed], model="emt", seeds=[1], total_time_ps=0.02)
    assert sample_high_energy_batch([], model="emt", seeds=[]) == []


# --------------------------------------------------------------------------------------
# checkpoints of a batched run: a killed batch resumes where it was, bit for bit
# --------------------------------------------------------------------------------------

_WALL_KEYS = {"md_wall_time_s", "md_batch_wall_time_s"}


class _Kill(Exception):
    pass


def _emt_forces(kill_at=None):
    """A batch_forces with a fresh EMT per structure (no state), counting its calls and
    raising _Kill on call number ``kill_at``."""
    calls = []

    def forces(cells):
        from ase.calculators.emt import EMT

        calls.append(len(cells))
        if len(calls) == kill_at:
            raise _Kill()
        out_e, out_f = [], []
        for c in cells:
            w = c.copy()
            w.calc = EMT()
            out_e.append(w.get_potential_energy())
            out_f.append(w.get_forces())
        return out_e, out_f

    return forces, calls


def _assert_identical(ref, got):
    """Bit for bit: positions, cells, numbers and every info entry but the wall times."""
    assert len(ref) == len(got)
    for fr_ref, fr_got in zip(ref, got):
        assert len(fr_ref) == len(fr_got)
        for a, b in zip(fr_ref, fr_got):
            assert np.array_equal(a.positions, b.positions) and np.array_equal(a.cell, b.cell)
            assert np.array_equal(a.numbers, b.numbers)
            assert set(a.info) == set(b.info)
            for key in set(a.info) - _WALL_KEYS:
                assert a.info[key] == b.info[key], key


def test_batch_checkpoint_resume_is_bit_for_bit(tmp_path):
    from softening_lib.sampling import read_checkpoint_meta

    structures, seeds = [_cu(), _cu3al()], [5, 6]
    kw = dict(total_time_ps=0.04, n_frames=5, n_strained=2)  # 20 steps, a frame (and checkpoint) every 4
    forces, calls = _emt_forces()
    ref = sample_high_energy_batch(structures, model="emt", seeds=seeds, batch_forces=forces, **kw)
    assert len(calls) == 21
    ckpt = tmp_path / "batch.npz"
    # 'kill' during step 11 (call 12: the initial forces + 10 steps done): last checkpoint at step 8
    forces, calls = _emt_forces(kill_at=12)
    with pytest.raises(_Kill):
        sample_high_energy_batch(structures, model="emt", seeds=seeds, batch_forces=forces, checkpoint=ckpt, **kw)
    meta = read_checkpoint_meta(ckpt)
    assert meta["step"] == 8 and not meta["finished"] and meta["settings"]["seeds"] == seeds
    with np.load(ckpt, allow_pickle=False) as z:  # pickle-free
        assert list(z["snap_steps"]) == [4, 8] and z["snap_pos_1"].shape == (2, 4, 3)
        assert z["signs_0"].shape == (2, 3) and len(z["strained_ids_0"]) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["batch.npz"]  # no temp file left
    forces, calls = _emt_forces()
    got = sample_high_energy_batch(structures, model="emt", seeds=seeds, batch_forces=forces, checkpoint=ckpt, **kw)
    assert len(calls) == 1 + 12  # forces at the restart positions + steps 9..20, nothing redone
    _assert_identical(ref, got)
    # kept after success, finished: the same call returns the same frames without any force call
    assert read_checkpoint_meta(ckpt)["finished"] and read_checkpoint_meta(ckpt)["step"] == 20
    forces, calls = _emt_forces()
    again = sample_high_energy_batch(structures, model="emt", seeds=seeds, batch_forces=forces, checkpoint=ckpt, **kw)
    assert calls == []
    _assert_identical(ref, again)


def test_batch_checkpoint_default_forces_batch_of_one(tmp_path, monkeypatch):
    """The default force call (a shared, stateful EMT calculator) resumes bit for bit too,
    for a lone structure (no neighbour-list state carried over between calls)."""
    from softening_lib import predict

    kw = dict(total_time_ps=0.2, n_frames=10, n_strained=4)  # 100 steps: the neighbour list ages
    ref = sample_high_energy_batch([_cu3al()], model="emt", seeds=[3], **kw)
    real, n = predict.predict, []

    def killer(*a, **k):
        n.append(1)
        if len(n) == 58:
            raise _Kill()
        return real(*a, **k)

    monkeypatch.setattr(predict, "predict", killer)
    with pytest.raises(_Kill):
        sample_high_energy_batch([_cu3al()], model="emt", seeds=[3], checkpoint=tmp_path / "c.npz", **kw)
    monkeypatch.setattr(predict, "predict", real)
    got = sample_high_energy_batch([_cu3al()], model="emt", seeds=[3], checkpoint=tmp_path / "c.npz", **kw)
    _assert_identical([ref[0]], [got[0]])


def test_batch_checkpoint_refuses_other_inputs(tmp_path):
    from softening_lib.sampling import CheckpointMismatchError

    kw = dict(total_time_ps=0.02, n_frames=5, n_strained=1)
    ckpt = tmp_path / "c.npz"
    sample_high_energy_batch([_cu(), _cu3al()], model="emt", seeds=[1, 2], checkpoint=ckpt, **kw)
    moved = _cu3al()
    moved.positions[0] += 0.01
    for change, message in [
        (dict(seeds=[1, 3]), "seeds"),
        (dict(temperature_K=900.0), "temperature_K"),
        (dict(total_time_ps=0.04), "total_time_ps"),
        (dict(strain=0.02), "strain"),
        (dict(taut_fs=50.0), "taut_fs"),
        (dict(model="chgnet-0.3.0"), "model"),
        (dict(structures=[_cu(), moved]), "input structures"),
        (dict(structures=[_cu()], seeds=[1]), "n_structures"),
    ]:
        args = {"structures": [_cu(), _cu3al()], "model": "emt", "seeds": [1, 2], **kw, **change}
        forces, calls = _emt_forces()
        with pytest.raises(CheckpointMismatchError, match=f"other inputs/settings.*{message}"):
            sample_high_energy_batch(args.pop("structures"), batch_forces=forces, checkpoint=ckpt, **args)
        assert calls == []
    assert issubclass(CheckpointMismatchError, ValueError)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(CheckpointMismatchError, match="cannot read MD checkpoint"):
        sample_high_energy_batch([_cu()], model="emt", seeds=[1], checkpoint=tmp_path / "junk.npz", **kw)
