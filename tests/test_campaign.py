"""softening_lib.campaign.run end to end without GPAW: EMT as the MLIP, a fake EMT labeller,
toy structures instead of WBM; the batched MD path (--md-batch) against the one-by-one path,
and resuming after a kill."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk


def _structures():
    cu = bulk("Cu", "fcc", a=3.62, cubic=True)
    cu3al = bulk("Cu", "fcc", a=3.62, cubic=True)
    cu3al.symbols[1] = "Al"
    al2 = bulk("Al", "fcc", a=4.05).repeat((2, 1, 1))
    out = []
    for i, (atoms, formula) in enumerate([(cu, "Cu"), (cu3al, "Cu3Al"), (al2, "Al")]):
        atoms.info.update(material_id=f"toy-{i}", formula=formula)
        out.append(atoms)
    return out


IDS = [a.info["material_id"] for a in _structures()]


class _Killed(KeyboardInterrupt):
    pass


@pytest.fixture
def campaign_env(tmp_path, monkeypatch):
    """Work dirs under tmp_path, toy structures for ``wbm-equilibrium``, and a labeller that
    records its calls and can be told to 'kill' the run at a given (material, frame)."""
    from softening_lib import campaign, datasets, dft

    monkeypatch.setenv("SOFTENING_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets, "load", lambda name, subset=None, **kw: [
        a for a in _structures() if subset is None or a.info["material_id"] in subset])
    state = {"calls": [], "kill_at": None}

    def fake_label(atoms, **settings):
        from ase.calculators.emt import EMT
        from ase.calculators.singlepoint import SinglePointCalculator

        key = (atoms.info["material_id"], int(atoms.info["frame_id"]))
        if key == state["kill_at"]:
            state["kill_at"] = None
            raise _Killed()
        state["calls"].append(key)
        work = atoms.copy()
        work.calc = EMT()
        lab = atoms.copy()
        lab.calc = SinglePointCalculator(lab, energy=work.get_potential_energy(), forces=work.get_forces())
        return lab, {"wall_time_s": 1.0, "scf_iterations": 1, "kpts": [1, 1, 1], "ecut_eV": 100.0}

    monkeypatch.setattr(dft, "label", fake_label)
    return campaign, state, tmp_path


def _run(campaign, out, md_batch):
    return campaign.run(out=out, only=IDS, model="emt", total_time_ps=0.02, md_batch=md_batch)


def _results(campaign, out):
    return {m: campaign.read_extxyz(out / f"{m}.extxyz.gz") for m in IDS}


def test_batched_md_resumes_and_matches_one_by_one(campaign_env, monkeypatch):
    campaign, state, tmp = campaign_env
    from softening_lib import sampling

    serial_progress = _run(campaign, tmp / "serial", md_batch=1)
    serial = _results(campaign, tmp / "serial")
    assert set(serial_progress["compounds"]) == set(IDS)

    batch_calls, single_calls = [], []
    real_batch, real_single = sampling.sample_high_energy_batch, sampling.sample_high_energy
    monkeypatch.setattr(sampling, "sample_high_energy_batch", lambda structures, *a, **kw: (
        batch_calls.append([s.info["material_id"] for s in structures]) or real_batch(structures, *a, **kw)))
    monkeypatch.setattr(sampling, "sample_high_energy", lambda atoms, *a, **kw: (
        single_calls.append(atoms.info["material_id"]) or real_single(atoms, *a, **kw)))

    # kill the batched run while labelling frame 3 of the second compound
    state["calls"].clear()
    state["kill_at"] = ("toy-1", 3)
    with pytest.raises(_Killed):
        _run(campaign, tmp / "batched", md_batch=2)
    assert batch_calls == [["toy-0", "toy-1"]] and single_calls == []
    assert (tmp / "batched" / "toy-0.extxyz.gz").is_file()
    assert not (tmp / "batched" / "toy-1.extxyz.gz").is_file()
    assert campaign.sampled_path("toy-1").is_file() and not campaign.sampled_path("toy-2").is_file()
    labelled_before = list(state["calls"])
    assert labelled_before == [("toy-0", k) for k in range(10)] + [("toy-1", k) for k in range(3)]

    # resume: toy-1's MD is reused, its frames 0-2 are not relabelled, toy-2 is sampled alone
    state["calls"].clear()
    progress = _run(campaign, tmp / "batched", md_batch=2)
    assert batch_calls == [["toy-0", "toy-1"], ["toy-2"]] and single_calls == []
    assert state["calls"] == [("toy-1", k) for k in range(3, 10)] + [("toy-2", k) for k in range(10)]
    assert set(progress["compounds"]) == set(IDS) and not progress["failures"]
    assert progress["compounds"]["toy-0"]["md_batch_size"] == 2
    assert progress["compounds"]["toy-2"]["md_batch_size"] == 1
    assert progress["settings"]["md_batch"] == 2
    assert not any(p.is_dir() for p in campaign.work_root().iterdir())  # work dirs cleaned up

    # same frames, labels and records as the one-by-one campaign (EMT is deterministic)
    for m, frames in _results(campaign, tmp / "batched").items():
        ref = serial[m]
        assert [f.info["frame_id"] for f in frames] == list(range(10))  # no duplicates, none missing
        for a, b in zip(ref, frames):
            assert np.allclose(a.positions, b.positions, rtol=0, atol=1e-7)
            assert np.allclose(a.cell, b.cell, rtol=0, atol=1e-7)
            assert np.allclose(a.get_forces(), b.get_forces(), rtol=0, atol=1e-6)
            assert b.info["sampler"].endswith("_batch")
            for key in ("md_seed", "md_step", "strained", "strain_a", "strain_b", "strain_c"):
                assert a.info[key] == b.info[key]


def test_failed_batch_falls_back_to_one_by_one(campaign_env, monkeypatch):
    campaign, state, tmp = campaign_env
    from softening_lib import sampling

    def broken(*a, **kw):
        raise RuntimeError("batched forces exploded")

    monkeypatch.setattr(sampling, "sample_high_energy_batch", broken)
    progress = _run(campaign, tmp / "out", md_batch=3)
    assert set(progress["compounds"]) == set(IDS) and not progress["failures"]
    assert all(c["md_batch_size"] == 1 for c in progress["compounds"].values())


def test_md_batch_arguments(campaign_env):
    campaign, _, tmp = campaign_env
    with pytest.raises(ValueError, match="md_batch"):
        campaign.run(out=tmp / "x", only=IDS, model="emt", md_batch=0)
    with pytest.raises(ValueError, match="berendsen"):
        campaign.run(out=tmp / "x", only=IDS, model="emt", md_batch=2, thermostat="langevin")


def _count_md_forces(monkeypatch, kill_at=None):
    """Count the batched MD's force calls per cell formula (the default batch_forces calls
    predict.predict once per cell); raise _Killed on call number ``kill_at``."""
    from softening_lib import predict

    real, calls = predict.predict, []

    def counting(frames, *a, **kw):
        calls.append("".join(f.get_chemical_formula() for f in frames))
        if len(calls) == kill_at:
            raise _Killed()
        return real(frames, *a, **kw)

    monkeypatch.setattr(predict, "predict", counting)
    return calls


def test_killed_batch_resumes_from_its_checkpoint(campaign_env, monkeypatch):
    """A run killed in the middle of a batch's MD resumes the same batch from its last frame
    step (even with another --md-batch), redoes no finished MD step, and gives exactly the
    labelled frames of an uninterrupted batched campaign; no checkpoint is left behind."""
    campaign, state, tmp = campaign_env
    from softening_lib import sampling

    run = lambda out, k: campaign.run(out=out, only=IDS, model="emt", total_time_ps=0.04, md_batch=k)  # noqa: E731
    # 20 steps per compound, frames (and checkpoints) every 2 steps
    calls = _count_md_forces(monkeypatch)
    run(tmp / "ref", 2)
    ref = _results(campaign, tmp / "ref")
    assert calls == ["Cu4", "AlCu3"] * 21 + ["Al2"] * 21  # initial forces + 20 steps per batch
    assert not list(campaign.work_root().iterdir())  # work dirs and checkpoints removed

    batch_calls = []
    real_batch = sampling.sample_high_energy_batch
    monkeypatch.setattr(sampling, "sample_high_energy_batch", lambda structures, *a, **kw: (
        batch_calls.append([s.info["material_id"] for s in structures]) or real_batch(structures, *a, **kw)))
    # kill during step 10 of the first batch (call 21): its last checkpoint is at step 8
    calls = _count_md_forces(monkeypatch, kill_at=21)
    state["calls"].clear()
    with pytest.raises(_Killed):
        run(tmp / "killed", 2)
    assert batch_calls == [["toy-0", "toy-1"]] and state["calls"] == []
    ckpt = campaign.batch_checkpoint_path(["toy-0", "toy-1"])
    assert ckpt.is_file() and sampling.read_checkpoint_meta(ckpt)["step"] == 8
    assert not campaign.sampled_path("toy-0").is_file() and not campaign.sampled_path("toy-1").is_file()
    assert "interrupted batched MD" in campaign.status(tmp / "killed") and "step 8/20" in campaign.status(tmp / "killed")

    # resume with --md-batch 3: the checkpointed batch (toy-0, toy-1) is preferred over the next 3
    calls = _count_md_forces(monkeypatch)
    progress = run(tmp / "killed", 3)
    assert batch_calls == [["toy-0", "toy-1"], ["toy-0", "toy-1"], ["toy-2"]]
    assert calls == ["Cu4", "AlCu3"] * (1 + 12) + ["Al2"] * 21  # restart forces + steps 9..20 only
    assert set(progress["compounds"]) == set(IDS) and not progress["failures"]
    assert not list(campaign.work_root().iterdir())
    for m, frames in _results(campaign, tmp / "killed").items():
        assert len(frames) == len(ref[m]) == 10
        for a, b in zip(ref[m], frames):
            assert np.array_equal(a.positions, b.positions) and np.array_equal(a.cell, b.cell)
            assert np.array_equal(a.get_forces(), b.get_forces())
            assert a.info["md_mlip_energy"] == b.info["md_mlip_energy"]


def test_stale_batch_checkpoint_is_moved_aside(campaign_env, monkeypatch):
    """A leftover checkpoint of the same compounds but other MD settings neither confuses nor
    stops the campaign: it is renamed *.stale and the batch starts over."""
    campaign, state, tmp = campaign_env
    from softening_lib import sampling

    calls = _count_md_forces(monkeypatch, kill_at=5)
    with pytest.raises(_Killed):
        campaign.run(out=tmp / "out", only=IDS, model="emt", total_time_ps=0.02, md_batch=2)
    ckpt = campaign.batch_checkpoint_path(["toy-0", "toy-1"])
    assert sampling.read_checkpoint_meta(ckpt)["settings"]["total_time_ps"] == 0.02
    calls = _count_md_forces(monkeypatch)
    progress = campaign.run(out=tmp / "out", only=IDS, model="emt", total_time_ps=0.04, md_batch=2)
    assert calls == ["Cu4", "AlCu3"] * 21 + ["Al2"] * 21  # the batch was redone in full
    assert set(progress["compounds"]) == set(IDS) and not progress["failures"]
    assert all(c["md_batch_size"] == (2 if m != "toy-2" else 1) for m, c in progress["compounds"].items())
    assert [p.name for p in campaign.work_root().iterdir()] == [ckpt.name + ".stale"]


def test_md_only_run_samples_and_a_later_run_labels_the_same_frames(campaign_env, monkeypatch):
    """``md_only`` (the MD on another machine, e.g. a GPU) then a plain run: no MD is redone,
    every frame is labelled once, and the result equals a campaign run in one go."""
    campaign, state, tmp = campaign_env
    from softening_lib import sampling

    _run(campaign, tmp / "one_go", md_batch=1)
    one_go = _results(campaign, tmp / "one_go")
    state["calls"].clear()

    campaign.run(out=tmp / "split", only=IDS, model="emt", total_time_ps=0.02, md_batch=1, md_only=True)
    assert state["calls"] == []  # nothing labelled
    assert all(campaign.sampled_path(m).is_file() for m in IDS)
    assert not any((tmp / "split" / f"{m}.extxyz.gz").is_file() for m in IDS)
    assert campaign.read_extxyz(campaign.sampled_path("toy-1"))[0].info["md_device"] == "cpu"

    md_calls = []
    monkeypatch.setattr(sampling, "sample_high_energy_batch", lambda *a, **kw: md_calls.append("batch"))
    monkeypatch.setattr(sampling, "sample_high_energy", lambda *a, **kw: md_calls.append("single"))
    campaign.run(out=tmp / "split", only=IDS, model="emt", total_time_ps=0.02, md_batch=2, md_only=True)
    progress = _run(campaign, tmp / "split", md_batch=2)
    assert md_calls == []  # the sampled frames were reused, by the second md-only run and by the labelling
    assert state["calls"] == [(m, k) for m in IDS for k in range(10)]
    assert set(progress["compounds"]) == set(IDS) and not progress["failures"]
    for m, frames in _results(campaign, tmp / "split").items():
        for a, b in zip(one_go[m], frames, strict=True):
            assert np.allclose(a.positions, b.positions, rtol=0, atol=1e-7)
            assert np.allclose(a.get_forces(), b.get_forces(), rtol=0, atol=1e-6)
            assert a.info["md_seed"] == b.info["md_seed"]


def test_a_second_run_on_the_same_output_refuses_while_the_first_holds_it(campaign_env):
    campaign, state, tmp = campaign_env
    out = tmp / "out"
    with campaign.exclusive_run(out):
        with pytest.raises(RuntimeError, match="already writing"):
            _run(campaign, out, md_batch=1)
        assert state["calls"] == []  # refused before any labelling
        _run(campaign, tmp / "other", md_batch=1)  # another output folder is not blocked
    state["calls"].clear()
    _run(campaign, out, md_batch=1)  # released: runs
    assert state["calls"]
    # a run that dies releases the lock too
    state["kill_at"] = (IDS[0], 0)
    with pytest.raises(_Killed):
        _run(campaign, tmp / "killed", md_batch=1)
    with campaign.exclusive_run(tmp / "killed"):
        pass


def test_committed_campaign_labels_load_complete_and_follow_the_protocol():
    """The committed campaign output itself (data/reference/wbm_he_gpaw): ``load("wbm-he-gpaw")``
    returns every compound that progress.json lists as finished, each with its 10 frames (4 of
    them strained by +-3 % per lattice vector), the recorded seed, PBE at 520 eV (800 eV with
    O or F), finite forces that sum to ~0, and the compounds are the first N of the selection
    rule (so growing the campaign never changed what had been labelled)."""
    import json
    from collections import defaultdict

    from softening_lib import campaign, datasets
    from softening_lib.dft import find_setup

    progress = json.loads((campaign.DEFAULT_OUT / "progress.json").read_text())
    md = progress["settings"]["md"]
    frames = datasets.load("wbm-he-gpaw")
    by_id = defaultdict(list)
    for atoms in frames:
        by_id[atoms.info["material_id"]].append(atoms)
    assert set(by_id) == set(progress["compounds"]) and len(by_id) >= 50
    assert len(frames) == progress["totals"]["frames"] and not progress["failures"]
    for mid, group in by_id.items():
        rec = progress["compounds"][mid]
        assert len(group) == rec["n_frames"] == md["n_frames"], mid
        assert sorted(int(a.info["frame_id"]) for a in group) == list(range(md["n_frames"])), mid
        strained = [a for a in group if a.info["strained"]]
        assert len(strained) == md["n_strained"], mid
        for a in strained:
            assert {abs(a.info[f"strain_{v}"]) for v in "abc"} == {md["strain"]}, mid
        for a in group:
            assert a.info["md_seed"] == rec["md_seed"] == campaign.seed_for(mid, progress["settings"]["base_seed"])
            assert a.info["md_temperature_K"] == md["temperature_K"] and a.info["dft_xc"] == "PBE"
            hard = bool({"O", "F"} & set(a.get_chemical_symbols()))
            assert a.info["dft_ecut_eV"] == (800.0 if hard else 520.0), mid
            f = a.get_forces()
            assert f.shape == (len(a), 3) and np.isfinite(f).all() and a.get_stress().shape == (6,)
            assert np.abs(f.sum(axis=0)).max() < 0.1, (mid, a.info["frame_id"])
    if find_setup("Si", "PBE") is None:
        pytest.skip("GPAW's setups (gpaw-data) are not installed: the selection costs need them")
    assert set(campaign.select_compounds(len(by_id))) == set(by_id)


# --------------------------------------------------------------------------------------
# runs with other settings never mix with existing work or output
# --------------------------------------------------------------------------------------

def _kill_during_labels(campaign, state, out, **kw):
    state["kill_at"] = ("toy-0", 3)
    with pytest.raises(_Killed):
        campaign.run(out=out, only=IDS, model="emt", md_batch=1, **{"total_time_ps": 0.02, **kw})


@pytest.mark.parametrize("change, what", [
    ({"total_time_ps": 0.04}, "total_time_ps"),
    ({"base_seed": 1}, "base_seed"),
    ({"dft_settings": {"kpt_density": 3.0}}, "kpt_density"),
    ({"out": "other"}, "out"),
])
def test_a_run_with_other_settings_refuses_another_runs_work(campaign_env, change, what):
    campaign, state, tmp = campaign_env
    _kill_during_labels(campaign, state, tmp / "first")
    work = campaign.work_root() / "toy-0"
    assert (work / "settings.json").is_file() and (work / "sampled.extxyz").is_file()
    out = tmp / change.pop("out") if "out" in change else tmp / "first"
    n_calls = len(state["calls"])
    with pytest.raises(campaign.CampaignSettingsError, match=f"toy-0: its work dir .*{what}.*refusing to mix"):
        campaign.run(out=out, only=IDS, model="emt", md_batch=1, **{"total_time_ps": 0.02, **change})
    assert len(state["calls"]) == n_calls, "nothing may be computed before the refusal"
    # the first campaign, with its own settings, resumes and finishes
    progress = campaign.run(out=tmp / "first", only=IDS, model="emt", total_time_ps=0.02, md_batch=1)
    assert set(progress["compounds"]) == set(IDS)


def test_a_finished_output_refuses_other_settings(campaign_env):
    campaign, state, tmp = campaign_env
    campaign.run(out=tmp / "done", only=IDS[:1], model="emt", total_time_ps=0.02, md_batch=1)
    with pytest.raises(campaign.CampaignSettingsError, match=r"done already holds 1 compounds made with other settings "
                                                             r"\(model: 'emt' -> 'emt2'"):
        campaign.run(out=tmp / "done", only=IDS, model="emt2", total_time_ps=0.02, md_batch=1)
    progress = campaign.load_progress(tmp / "done")
    assert progress["settings"]["model"] == "emt", "progress.json keeps the settings it used"


def test_a_legacy_work_dir_without_settings_is_checked_by_its_frames(campaign_env):
    campaign, state, tmp = campaign_env
    _kill_during_labels(campaign, state, tmp / "first")
    (campaign.work_root() / "toy-0" / "settings.json").unlink()  # as written before settings.json existed
    with pytest.raises(campaign.CampaignSettingsError, match=r"toy-0: .*made before settings.json.*md_seed"):
        campaign.run(out=tmp / "first", only=IDS, model="emt", total_time_ps=0.02, md_batch=1, base_seed=5)
    progress = campaign.run(out=tmp / "first", only=IDS, model="emt", total_time_ps=0.02, md_batch=1)
    assert set(progress["compounds"]) == set(IDS)


def test_committed_campaign_settings_are_accepted():
    from softening_lib import campaign

    out = campaign.DEFAULT_OUT
    progress = campaign.load_progress(out)
    s = progress["settings"]
    md = {"temperature_K": 1000.0, "total_time_ps": 20.0, "timestep_fs": 2.0, "n_frames": 10, "n_strained": 4,
          "strain": 0.03, "thermostat": "berendsen"}
    ws = campaign.work_settings(model="chgnet-0.3.0", md=md, base_seed=0, dft_settings=dict(campaign.CAMPAIGN_DFT),
                                out=out)
    campaign.check_progress_settings(progress, ws, out)  # the defaults are the committed campaign's settings
    with pytest.raises(campaign.CampaignSettingsError, match="total_time_ps"):
        campaign.check_progress_settings(progress, {**ws, "md": {**md, "total_time_ps": 10.0}}, out)
    assert s["model"] == "chgnet-0.3.0"


def test_run_dask_equals_run_and_resumes(campaign_env, inprocess_dask):
    """campaign.run_dask: MD and every frame's label as Dask tasks on 2 workers; the same files as
    the serial run, and a second run computes nothing."""
    inprocess_dask(2)
    campaign, state, tmp = campaign_env
    _run(campaign, tmp / "serial", md_batch=1)
    serial = _results(campaign, tmp / "serial")
    state["calls"].clear()
    progress = campaign.run_dask(out=tmp / "dask", only=IDS, model="emt", total_time_ps=0.02, workers=2,
                                 progress=False)
    assert set(progress["compounds"]) == set(IDS) and not progress["failures"]
    assert sorted(state["calls"]) == sorted((m, k) for m in IDS for k in range(10))  # each frame once
    for m, frames in _results(campaign, tmp / "dask").items():
        assert [f.info["frame_id"] for f in frames] == list(range(10))
        for a, b in zip(serial[m], frames):
            assert np.allclose(a.positions, b.positions, rtol=0, atol=1e-7)
            assert np.allclose(a.get_forces(), b.get_forces(), rtol=0, atol=1e-6)
    state["calls"].clear()
    campaign.run_dask(out=tmp / "dask", only=IDS, model="emt", total_time_ps=0.02, workers=2, progress=False)
    assert state["calls"] == []
