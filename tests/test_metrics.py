"""Metrics of the paper on analytic data: EMT and c * EMT (ScaledCalculator) give s = c exactly."""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from softening_lib import metrics, predict
from softening_lib.models import ScaledCalculator


def _rattled_frames(n=3, seed=0):
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 1))
        atoms.symbols[[1, 5]] = "Au"
        atoms.rattle(stdev=0.15, seed=int(rng.integers(1_000_000)))
        frames.append(atoms)
    return frames


def _forces(frames, calc):
    """Forces of ``frames`` with any ASE calculator, through the library's prediction path."""
    return predict.predict(frames, "test", calc=calc, with_stress=False)["forces"]


@pytest.fixture(scope="module")
def emt_forces():
    frames = _rattled_frames()
    return frames, _forces(frames, EMT())


@pytest.mark.parametrize("c", [0.5, 0.859, 1.0, 1.3])
def test_softening_scale_of_scaled_emt_is_c(emt_forces, c):
    frames, dft = emt_forces
    model = _forces(frames, ScaledCalculator(EMT(), c))
    assert metrics.softening_scale(dft, model) == pytest.approx(c, rel=1e-12)
    # a perfectly scaled model is perfectly corrected: cMAE = 0, the one-label fit gives 1/c
    assert metrics.cmae(dft, model) == pytest.approx(0.0, abs=1e-12)
    assert metrics.correction_factor(dft, model) == pytest.approx(1 / c, rel=1e-12)


def test_mae_and_cmae_by_hand():
    x = np.array([1.0, -2.0, 0.5, 0.0])
    y = np.array([0.8, -1.5, 0.5, 0.1])
    assert metrics.mae(x, y) == pytest.approx((0.2 + 0.5 + 0.0 + 0.1) / 4)
    s = (0.8 - 2.0 * -1.5 + 0.25) / (1 + 4 + 0.25)
    assert metrics.softening_scale(x, y) == pytest.approx(s)
    assert metrics.cmae(x, y) == pytest.approx(np.mean(np.abs(y / s - x)))
    # a scale fitted elsewhere is honoured
    assert metrics.cmae(x, y, scale=0.5) == pytest.approx(np.mean(np.abs(y / 0.5 - x)))
    assert metrics.correction_factor(x, y) == pytest.approx(np.dot(x, y) / np.dot(y, y))


def test_softening_scale_pools_frames_not_averages():
    dft = [np.array([[1.0, 0, 0]]), np.array([[10.0, 0, 0]])]
    model = [np.array([[0.5, 0, 0]]), np.array([[10.0, 0, 0]])]
    pooled = (0.5 + 100) / (1 + 100)
    assert metrics.softening_scale(dft, model) == pytest.approx(pooled)
    assert metrics.softening_scale(dft, model) != pytest.approx(np.mean([0.5, 1.0]))


def test_shape_mismatch_is_an_error():
    with pytest.raises(metrics.MetricError, match="shape|frame"):
        metrics.softening_scale([np.zeros((3, 3)) + 1], [np.zeros((4, 3))])
    with pytest.raises(metrics.MetricError, match="frames"):
        metrics.mae([np.ones((2, 3))], [np.ones((2, 3)), np.ones((2, 3))])
    with pytest.raises(metrics.MetricError, match="mismatch"):
        metrics.mae(np.ones(6), np.ones(5))


def test_all_zero_dft_forces_make_the_scale_undefined():
    with pytest.raises(metrics.MetricError, match="undefined"):
        metrics.softening_scale(np.zeros((4, 3)), np.ones((4, 3)))
    with pytest.raises(metrics.MetricError, match="undefined"):
        metrics.cmae(np.zeros((4, 3)), np.ones((4, 3)))


def test_nan_model_output_is_an_error():
    model = np.ones((4, 3))
    model[2, 1] = np.nan
    with pytest.raises(metrics.MetricError, match="non-finite"):
        metrics.softening_scale(np.ones((4, 3)), model)
    with pytest.raises(metrics.MetricError, match="non-finite"):
        metrics.mae(np.ones((4, 3)), model)


def test_empty_input_is_an_error():
    with pytest.raises(metrics.MetricError, match="no force"):
        metrics.mae(np.zeros(0), np.zeros(0))


def test_bootstrap_ci_brackets_the_estimate_and_shrinks_with_data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=4000)
    y = 0.8 * x + rng.normal(scale=0.1, size=x.size)
    est, lo, hi = metrics.bootstrap_ci((x, y), metrics.softening_scale, n_boot=200)
    assert lo < est < hi
    assert lo < 0.8 < hi
    _, lo_small, hi_small = metrics.bootstrap_ci((x[:100], y[:100]), metrics.softening_scale, n_boot=200)
    assert (hi - lo) < (hi_small - lo_small)


def test_bootstrap_ci_by_group_is_wider_for_correlated_groups():
    # 20 frames whose components share a frame-level slope: resampling components
    # pretends there are 2000 independent points, resampling frames is honest
    rng = np.random.default_rng(2)
    slopes = rng.normal(0.85, 0.1, size=20)
    x = rng.normal(size=(20, 100))
    y = slopes[:, None] * x
    groups = np.repeat(np.arange(20), 100)
    _, lo_c, hi_c = metrics.bootstrap_ci((x.ravel(), y.ravel()), metrics.softening_scale, n_boot=200)
    _, lo_g, hi_g = metrics.bootstrap_ci((x.ravel(), y.ravel()), metrics.softening_scale, n_boot=200, groups=groups)
    assert (hi_g - lo_g) > 2 * (hi_c - lo_c)


def test_binned_slope_recovers_magnitude_dependent_softening():
    x = np.linspace(-4, 4, 801)
    y = np.where(np.abs(x) < 1, 0.9 * x, 0.7 * x)
    rows = metrics.binned_slope(x, y, bins=[0, 1, 4.01])
    assert rows[0]["slope"] == pytest.approx(0.9)
    assert rows[1]["slope"] == pytest.approx(0.7)
