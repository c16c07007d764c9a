"""Chapter 9's campaign logic (softening_lib.tasks.fine_tuning) on EMT frames with a known answer."""

from __future__ import annotations

import numpy as np
import pytest
from ase.calculators.emt import EMT

from softening_lib import models
from softening_lib.tasks import fine_tuning as ft


def scaled_emt_08():
    return models.ScaledCalculator(EMT(), 0.8)






def test_split_is_fixed_disjoint_and_draws_from_the_pool(labelled_frames):
    frames = labelled_frames("cu", 1.0, n=14, seed=3, second=None, rattle=0.08, a=3.61, repeat=(1, 1, 1))
    a = ft.make_split(frames, pool_size=5, dataset="emt", material_id="cu")
    b = ft.make_split(frames, pool_size=5, dataset="emt", material_id="cu")
    assert a.pool == b.pool and a.test == b.test  # fixed (seed 0)
    assert not set(a.pool) & set(a.test) and len(a.pool) + len(a.test) == len(frames)
    for seed in (0, 1, 2):
        idx = a.train_indices(2, seed)
        assert len(idx) == 2 and set(idx) <= set(a.pool)
        assert idx == a.train_indices(2, seed)
    assert a.train_indices(5, 1) == a.pool  # N = pool size: the whole pool for every seed
    assert a.train_indices(2, 0) != a.train_indices(2, 1) or a.train_indices(2, 0) != a.train_indices(2, 2)
    with pytest.raises(ValueError):
        a.train_indices(6, 0)
    with pytest.raises(ValueError):
        ft.make_split(frames[:5], pool_size=5)


def test_plan_puts_headline_runs_first_and_covers_every_seed():
    jobs = ft.plan(ns=(1, 2, 5), seeds=(0, 1), scratch_seeds=(0,), pool_size=5)
    assert jobs[0] == ("pretrained", 5, 0)
    assert jobs.index(("finetune", 5, 0)) < jobs.index(("finetune", 1, 1))
    assert {("finetune", n, s) for n in (1, 2, 5) for s in (0, 1)} <= set(jobs)
    assert ("scratch", 2, 1) not in jobs and len(jobs) == len(set(jobs))


def test_campaign_linear_correction_undoes_a_known_softening(results_dir, labelled_frames):
    frames = labelled_frames("cu", 1.0, n=14, seed=3, second=None, rattle=0.08, a=3.61, repeat=(1, 1, 1))
    split = ft.make_split(frames, pool_size=5, dataset="emt-ft-test", material_id="cu")
    model = "test_fine_tuning:scaled_emt_08"
    table = ft.run_campaign(split, model=model, ns=[1, 2], seeds=[0, 1], scratch_seeds=[0],
                            compute=["pretrained", "linear"], progress=False)
    ok = table[~table.missing]
    pre = ok[ok.method == "pretrained"].iloc[0]
    assert pre.test_softening_scale == pytest.approx(0.8, abs=1e-12)
    lin = ok[ok.method == "linear"]
    assert len(lin) == 4
    assert np.allclose(lin.c, 1 / 0.8, rtol=1e-10) and np.allclose(lin.test_mae, 0.0, atol=1e-10)
    # fine-tunes were not allowed to run: reported missing, not silently dropped
    missing = ft.missing_runs(table)
    assert "finetune N=1 seed=0" in missing and "scratch N=2 seed=0" in missing
    summ = ft.summary(table).set_index(["method", "n_train_structures"])
    assert summ.loc[("linear", 1), "n_seeds"] == 2
    # cached: a second pass with compute=False reads the same records
    again = ft.run_campaign(split, model=model, ns=[1, 2], seeds=[0, 1], scratch_seeds=[0], compute=False,
                            progress=False)
    assert (~again.missing).sum() == len(ok)


def test_campaign_seeds_on_the_executor_equal_the_serial_path(results_dir, labelled_frames, monkeypatch,
                                                              inprocess_dask):
    """run_campaign(workers=N): one Dask task per (method, N, seed); the same table as the serial
    path, nothing recomputed on a second run. One in-process worker here (the test model's import
    path resolves; two threads would share one cached EMT calculator, which is not thread-safe:
    real runs use worker processes)."""
    inprocess_dask(1)
    frames = labelled_frames("cu", 1.0, n=14, seed=3, second=None, rattle=0.08, a=3.61, repeat=(1, 1, 1))
    split = ft.make_split(frames, pool_size=5, dataset="emt-ft-dask", material_id="cu")
    model = "test_fine_tuning:scaled_emt_08"
    calls = []
    real = ft.run_one
    monkeypatch.setattr(ft, "run_one", lambda *a, **kw: calls.append(a[2:5]) or real(*a, **kw))
    table = ft.run_campaign(split, model=model, ns=[1, 2], seeds=[0, 1], scratch_seeds=[0],
                            compute=["pretrained", "linear"], progress=False, workers=2)
    assert sorted(calls) == sorted([("pretrained", 2, 0)] + [("linear", n, s) for n in (1, 2) for s in (0, 1)])
    ok = table[~table.missing]
    assert len(ok) == 5 and np.allclose(ok[ok.method == "linear"].c, 1 / 0.8, rtol=1e-10)
    calls.clear()
    again = ft.run_campaign(split, model=model, ns=[1, 2], seeds=[0, 1], scratch_seeds=[0],
                            compute=["pretrained", "linear"], progress=False, workers=2)
    assert calls == [] and (~again.missing).sum() == 5
