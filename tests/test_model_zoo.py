"""Model zoo table (softening_lib.tasks.model_zoo) on analytic models with a known answer."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from softening_lib import models
from softening_lib.tasks import model_zoo


def emt_frames(labelled_frames):
    """Three rattled Cu and three rattled Al cells labelled with EMT itself (scale 1)."""
    kw = dict(n=3, second=None, rattle=0.1, repeat=(1, 1, 1))
    return (labelled_frames("cu", 1.0, element="Cu", a=3.61, **kw)
            + labelled_frames("al", 1.0, seed=10, element="Al", a=4.05, **kw))


def scaled_emt_07():
    return models.ScaledCalculator(EMT(), 0.7)






def test_zoo_table_gives_the_scale_of_a_scaled_model_exactly(results_dir, labelled_frames):
    frames = emt_frames(labelled_frames)
    names = ["emt", "test_model_zoo:scaled_emt_07", "mace-mp-0-medium"]
    per = model_zoo.zoo_table(frames, names, dataset="emt-test", progress=False)
    scaled = per[per.model == "test_model_zoo:scaled_emt_07"].set_index("material_id")
    assert sorted(scaled.index) == ["al", "cu"]
    assert np.allclose(scaled.softening_scale, 0.7, atol=1e-12)
    assert np.allclose(scaled.cmae, 0.0, atol=1e-12)
    exact = per[per.model == "emt"]
    assert np.allclose(exact.softening_scale, 1.0, atol=1e-12) and np.allclose(exact.mae, 0.0)
    summ = model_zoo.summary(per).set_index("model")
    assert summ.loc["test_model_zoo:scaled_emt_07", "median_s"] == pytest.approx(0.7)
    assert summ.loc["test_model_zoo:scaled_emt_07", "frac_softened"] == 1.0
    assert summ.loc["emt", "frac_softened"] == 0.0
    # a model that cannot run here is absent from the table, not an error
    assert "mace-mp-0-medium" not in set(per.model) or not models.runnable(["mace-mp-0-medium"])[1]
    # cached: a second call reads the predictions back and gives the same numbers
    again = model_zoo.zoo_table(frames, names[:2], dataset="emt-test", progress=False)
    assert np.allclose(np.sort(again.softening_scale), np.sort(per[per.model != "mace-mp-0-medium"].softening_scale))


def test_common_materials_keeps_only_shared(results_dir):
    import pandas as pd

    per = pd.DataFrame({"model": ["a", "a", "b"], "material_id": ["x", "y", "x"], "softening_scale": [1, 2, 3]})
    assert set(model_zoo.common_materials(per).material_id) == {"x"}


def test_training_family_and_model_card(results_dir):
    assert model_zoo.training_family("chgnet-0.3.0") == "MPtrj"
    assert model_zoo.training_family("m3gnet-mp-2021.2.8") == "MPF"
    assert model_zoo.training_family("m3gnet-matpes-pbe") == "MatPES"
    assert model_zoo.training_family("tensornet-matpes-pbe") == "MatPES"
    assert model_zoo.training_family(model_zoo.SEVENNET) == "MPtrj"  # the registry entry sevennet-0
    card = model_zoo.model_card(["emt", "mace-mp-0-medium"], count=True).set_index("model")
    assert card.loc["emt", "parameters_counted"] is None or np.isnan(card.loc["emt", "parameters_counted"])
    if not card.loc["mace-mp-0-medium", "available"]:
        assert "MACE" in card.loc["mace-mp-0-medium", "reason"] or "mace" in card.loc["mace-mp-0-medium", "reason"]


def test_parameter_count_sums_numel_of_loaded_weights():
    import torch

    class Fake:
        model = torch.nn.Linear(3, 2)  # 3*2 + 2 = 8 parameters

    assert model_zoo.parameter_count("x", calc=Fake()) == 8
    assert model_zoo.parameter_count("x", calc=models.ScaledCalculator(Fake(), 1.0)) == 8
    assert model_zoo.parameter_count("emt", calc=EMT()) is None


@pytest.mark.slow
def test_parameter_count_of_chgnet_matches_the_paper():
    from softening_lib import predict

    calc = predict.calculator("chgnet-0.3.0")
    assert model_zoo.parameter_count("chgnet-0.3.0", calc=calc) == 412_525  # paper Table 1: 412.5 k


def test_record_table_reads_chapter7_records_and_figures_render(results_dir, labelled_frames):
    import matplotlib

    matplotlib.use("Agg")
    from softening_lib.tasks import high_energy

    frames = emt_frames(labelled_frames)
    names = ["emt", "test_model_zoo:scaled_emt_07"]
    high_energy.compute_dataset("emt-test", names, frames=frames, progress=False)
    per = model_zoo.record_table(names + ["mace-mp-0-medium"], ids={"emt-test": ["cu", "al"]})
    scaled = per[per.model == "test_model_zoo:scaled_emt_07"]
    assert sorted(scaled.material_id) == ["al", "cu"]
    assert np.allclose(scaled.softening_scale, 0.7, atol=1e-12)
    assert np.allclose(per[per.model == "emt"].softening_scale, 1.0, atol=1e-12)
    assert "mace-mp-0-medium" in model_zoo.LAST_SKIPPED or "mace-mp-0-medium" in set(per.model)
    # the same records as frames -> zoo_table (chapter 7 and chapter 10 agree)
    direct = model_zoo.zoo_table(frames, names, dataset="emt-test-direct", progress=False)
    a = per.set_index(["model", "material_id"]).softening_scale.sort_index()
    b = direct.set_index(["model", "material_id"]).softening_scale.sort_index()
    assert np.allclose(a.to_numpy(float), b.to_numpy(float), atol=1e-12)
    card = model_zoo.model_card(names, count=False)
    summ = model_zoo.summary(per, card)
    assert set(summ.dataset) == {"emt-test"}
    fig = model_zoo.fig_distributions(per, order=names)
    assert len(fig.axes) == 1
    fig2 = model_zoo.fig_size_and_training(summ)
    assert len(fig2.axes) == 2


def test_sevennet_registry_entry():
    spec = models.get_spec(model_zoo.SEVENNET)
    assert spec.family == "sevenn" and "MPtrj" in spec.training_set
    ok, reason, fix = spec.availability()
    if not ok:  # the package is optional: the reason and the fix name the pin
        assert "sevenn==0.10.4" in fix


@pytest.mark.slow
def test_sevennet0_gives_sane_energies_and_consistent_forces():
    ok, _ = models.runnable([model_zoo.SEVENNET])
    if not ok:
        pytest.skip("sevenn not installed here")
    calc = models.get_calculator(model_zoo.SEVENNET)
    mgo = bulk("MgO", "rocksalt", a=4.21)
    mgo.calc = calc
    assert -6.3 < mgo.get_potential_energy() / len(mgo) < -5.6  # MP (PBE): about -5.97 eV/atom
    assert np.abs(mgo.get_forces()).max() < 1e-4  # symmetric cell: no forces
    cell = bulk("MgO", "rocksalt", a=4.21, cubic=True)
    cell.rattle(0.05, seed=1)
    cell.calc = calc
    f = cell.get_forces()
    assert np.abs(f).max() > 0.1 and np.allclose(f.sum(axis=0), 0.0, atol=1e-4)
    d, i = 0.01, 3
    plus, minus = cell.copy(), cell.copy()
    plus.positions[i, 0] += d
    minus.positions[i, 0] -= d
    plus.calc = minus.calc = calc
    fd = -(plus.get_potential_energy() - minus.get_potential_energy()) / (2 * d)
    assert fd == pytest.approx(f[i, 0], abs=0.02)
    assert model_zoo.parameter_count(model_zoo.SEVENNET, calc) == pytest.approx(842_440, rel=0.01)
