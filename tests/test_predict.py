"""Batched / cached predictions on small labelled frames (EMT, c * EMT)."""

import numpy as np
import pytest
from ase.calculators.emt import EMT

from softening_lib import metrics, predict
from softening_lib.models import ScaledCalculator


class CountingEMT(EMT):
    """EMT that counts how often it really computes."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.n_calls = 0

    def calculate(self, *args, **kw):
        self.n_calls += 1
        super().calculate(*args, **kw)



def test_predict_matches_the_labels_for_the_same_calculator(labelled_frames):
    frames = labelled_frames("m1")
    out = predict.predict(frames, "emt")
    assert out["energy"].shape == (3,)
    assert out["stress"].shape == (3, 6)
    for atoms, f, e in zip(frames, out["forces"], out["energy"]):
        np.testing.assert_allclose(f, atoms.get_forces(), atol=1e-12)
        assert e == pytest.approx(atoms.get_potential_energy())


def test_predict_with_a_scaled_calculator_scales_everything(labelled_frames):
    frames = labelled_frames("m1")
    plain = predict.predict(frames, "emt")
    scaled = predict.predict(frames, "emt", calc=ScaledCalculator(EMT(), 0.7))
    np.testing.assert_allclose(scaled["energy"], 0.7 * plain["energy"])
    np.testing.assert_allclose(np.concatenate(scaled["forces"]), 0.7 * np.concatenate(plain["forces"]))
    np.testing.assert_allclose(scaled["stress"], 0.7 * plain["stress"])
    dft = [a.get_forces() for a in frames]
    assert metrics.softening_scale(dft, scaled["forces"]) == pytest.approx(0.7, rel=1e-12)


def test_predict_of_nothing_is_empty():
    out = predict.predict([], "emt")
    assert out["energy"].shape == (0,) and out["forces"] == []


def test_predict_cached_resumes_without_recomputing(results_dir, labelled_frames):
    frames = labelled_frames("m1") + labelled_frames("m2", seed=10)
    calc = CountingEMT()
    first = predict.predict_cached(frames, "emt", "toy", calc=calc, cache_tag="counting-emt", progress=False)
    n_first = calc.n_calls
    assert n_first >= len(frames)
    files = sorted((results_dir / "predictions" / "toy" / "counting-emt").glob("*.npz"))
    assert [f.stem for f in files] == ["m1", "m2"]
    mtimes = [f.stat().st_mtime_ns for f in files]
    second = predict.predict_cached(frames, "emt", "toy", calc=calc, cache_tag="counting-emt", progress=False)
    assert calc.n_calls == n_first, "the second call must come from the cache"
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    for a, b in zip(first, second):
        assert (a["material_id"], a["frame_id"]) == (b["material_id"], b["frame_id"])
        np.testing.assert_allclose(a["forces"], b["forces"])
    # frames come back in input order with the right ids
    assert [(p["material_id"], p["frame_id"]) for p in second] == [(a.info["material_id"], a.info["frame_id"]) for a in frames]


def test_predict_cached_recomputes_a_changed_material_only(results_dir, labelled_frames):
    frames = labelled_frames("m1") + labelled_frames("m2", seed=10)
    calc = CountingEMT()
    predict.predict_cached(frames, "emt", "toy", calc=calc, cache_tag="c", progress=False)
    n = calc.n_calls
    changed = labelled_frames("m1") + labelled_frames("m2", seed=99)  # m2 geometries differ
    out = predict.predict_cached(changed, "emt", "toy", calc=calc, cache_tag="c", progress=False)
    assert 0 < calc.n_calls - n <= 3 * 3  # only m2's three frames (a few properties each)
    np.testing.assert_allclose(out[3]["forces"], changed[3].get_forces(), atol=1e-12)


def test_unsupported_element_is_skipped_and_listed(results_dir, labelled_frames):
    # Fe is not an EMT element (labels are placeholders: the frames must never reach EMT)
    frames = labelled_frames("cu-au") + labelled_frames("cu-fe", None, second="Fe")
    out = predict.predict_cached(frames, "emt", "toy", progress=False)
    assert {p["material_id"] for p in out} == {"cu-au"}
    skipped = predict.skipped_materials("emt", "toy")
    assert list(skipped) == ["cu-fe"]
    assert "Fe" in skipped["cu-fe"]


def test_forces_only_cache_is_upgraded_when_stress_is_asked_for(results_dir, labelled_frames):
    frames = labelled_frames("m1")
    calc = CountingEMT()
    out = predict.predict_cached(frames, "emt", "toy", calc=calc, cache_tag="s", progress=False, with_stress=False)
    assert np.isnan(out[0]["stress"]).all()
    n = calc.n_calls
    predict.predict_cached(frames, "emt", "toy", calc=calc, cache_tag="s", progress=False, with_stress=False)
    assert calc.n_calls == n  # cached
    out = predict.predict_cached(frames, "emt", "toy", calc=calc, cache_tag="s", progress=False)
    assert calc.n_calls > n  # recomputed with stress
    assert np.isfinite(out[0]["stress"]).all()
