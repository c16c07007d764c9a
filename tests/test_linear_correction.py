"""The one-label linear correction: closed form, held-out scoring, scalar layer, re-scoring."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from softening_lib import correction, metrics
from softening_lib.tasks import high_energy as he
from softening_lib.tasks import linear_correction as lc



def test_closed_form_on_one_frame_and_apply(labelled_frames):
    frame = labelled_frames("m", 0.8, n=1)[0]
    c = correction.fit_scale_on_frame(frame, "emt")
    assert c == pytest.approx(1 / 0.8, rel=1e-12)
    corrected = correction.apply(EMT(), c)
    other = labelled_frames("m", 0.8, n=2, seed=50)[1]
    work = other.copy()
    work.calc = corrected
    np.testing.assert_allclose(work.get_forces(), other.get_forces(), atol=1e-10)
    assert work.get_potential_energy() == pytest.approx(other.get_potential_energy())


def test_c_is_not_one_over_s_unless_the_fit_is_perfect():
    rng = np.random.default_rng(0)
    x = rng.normal(size=3000)
    y = 0.85 * x + rng.normal(scale=0.2, size=x.size)
    s = metrics.softening_scale(x, y)
    c = correction.fit_scale(x, y)
    r2 = np.dot(x, y) ** 2 / (np.dot(x, x) * np.dot(y, y))
    assert c * s == pytest.approx(r2)
    assert c < 1 / s


def test_heldout_scores_fit_on_one_frame_score_on_the_others():
    rng = np.random.default_rng(3)
    dft = [rng.normal(size=(10, 3)) for _ in range(4)]
    model = [0.8 * f + rng.normal(scale=0.05, size=f.shape) for f in dft]
    rows = correction.heldout_scores(dft, model)
    assert [r["train_frame"] for r in rows] == [0, 1, 2, 3]
    for k, r in enumerate(rows):
        assert r["c"] == pytest.approx(correction.fit_scale(dft[k], model[k]))
        others = [i for i in range(4) if i != k]
        x = np.concatenate([dft[i].ravel() for i in others])
        y = np.concatenate([model[i].ravel() for i in others])
        assert r["mae_raw"] == pytest.approx(np.mean(np.abs(y - x)))
        assert r["mae_corrected"] == pytest.approx(np.mean(np.abs(r["c"] * y - x)))
        assert r["mae_corrected"] < r["mae_raw"]
        assert abs(r["s_corrected"] - 1) < abs(r["s_raw"] - 1)


def test_heldout_scores_bad_input():
    with pytest.raises(correction.CorrectionError, match="two frames"):
        correction.heldout_scores([np.ones((2, 3))], [np.ones((2, 3))])
    with pytest.raises(metrics.MetricError):
        correction.heldout_scores([np.ones((2, 3))] * 2, [np.ones((3, 3))] * 2)
    rows = correction.heldout_scores([np.zeros((2, 3)), np.ones((2, 3))], [np.zeros((2, 3)), np.ones((2, 3))])
    assert "undefined" in rows[0]["error"] and rows[1]["c"] == pytest.approx(1.0)


def test_rescore_runs_the_task_with_the_corrected_calculator():
    atoms = bulk("Cu", "fcc", a=3.7)

    def task(calc, scale_cell=1.0):
        work = atoms.copy()
        work.set_cell(atoms.cell * scale_cell, scale_atoms=True)
        work.calc = calc
        return work.get_potential_energy()

    out = lc.rescore(task, EMT(), 1.2, scale_cell=0.98)
    assert out["corrected"] == pytest.approx(1.2 * out["raw"])
    with pytest.raises(correction.CorrectionError):
        correction.rescore("not callable", EMT(), 1.0)


@pytest.mark.slow
def test_rescore_surfaces_scales_surface_energies_by_c():
    if not lc.surfaces_available():
        pytest.skip("chapter 2 surfaces task not present")
    from softening_lib.tasks import surfaces

    cases, _ = surfaces.build_cases(["Cu"], max_index=1)
    table = lc.rescore_surfaces(cases[:2], EMT(), 1.15)
    assert len(table) == 2
    np.testing.assert_allclose(table["ratio"], 1.15, rtol=1e-10)
    assert (table["gamma_raw"] > 0).all()


def test_tables_and_figures_from_records(results_dir, labelled_frames):
    frames = labelled_frames("soft", 0.8, n=4) + labelled_frames("stiff", 1.1, n=4, seed=10)
    he.compute_dataset("toy", ["emt"], frames=frames, progress=False, parity=["soft"])
    table = lc.heldout_table("toy", ["emt"], train_frame=1)
    assert len(table) == 2
    soft = table[table["material_id"] == "soft"].iloc[0]
    assert soft["c_one"] == pytest.approx(1.25)
    assert soft["mae_heldout_corrected"] == pytest.approx(0.0, abs=1e-10)
    assert soft["mae_heldout_raw"] > 0
    summ = lc.reduction_summary(table)
    assert summ.loc[0, "reduction_heldout"] == pytest.approx(1.0)
    assert summ.loc[0, "fraction_improved_heldout"] == 1.0
    fig, one = lc.fig6a_left("toy", "soft", "emt", train_frame=2, compute_missing=False)
    assert one.loc[0, "c"] == pytest.approx(1.25)
    assert one.loc[0, "s_after"] == pytest.approx(1.0)
    assert one.loc[0, "n_test_frames"] == 3
    with pytest.raises(ValueError, match="train_frame"):
        lc.fig6a_left("toy", "soft", "emt", train_frame=7, compute_missing=False)
    fig, summ2 = lc.fig6b(table)
    assert set(summ2["model"]) == {"emt"}
    assert lc.typical_c("toy", ["emt"], train_frame=0)["emt"] == pytest.approx(np.median([1.25, 1 / 1.1]))


@pytest.mark.slow
def test_scalar_layer_lands_on_the_closed_form(labelled_frames):
    """The paper's implementation (a trainable scalar in front of CHGNet's energy, all
    else frozen, force-only loss) converges to the closed-form c of the same frame."""
    torch = pytest.importorskip("torch")
    from chgnet.model import CHGNet

    model = CHGNet.load(model_name="0.3.0", use_device="cpu", verbose=False)
    frame = labelled_frames("m", 1.0, n=1)[0]  # labels: EMT forces; the model: CHGNet
    fit = correction.fit_scalar_layer(frame, model, steps=150, lr=0.02)
    assert fit.relative_difference < 0.01, (fit.c, fit.c_closed_form)
    assert fit.c != pytest.approx(1.0, abs=0.02)  # it actually moved
    assert fit.history[-1] < fit.history[0]
    # nothing but the scalar was trained
    wrapped = correction.ScaledEnergyCHGNet(model)
    assert [n for n, p in wrapped.named_parameters() if p.requires_grad] == ["scale"]
    assert torch.is_tensor(wrapped.scale)
