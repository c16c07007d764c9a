"""Few-shot fine-tuning (softening_lib.finetune): split rules, labels, the real CHGNet trainer."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from softening_lib import datasets, finetune, models


def emt_cells(n: int, seed: int = 0, symbol: str = "Cu", a: float = 3.61):
    """Rattled, strained 4-atom fcc cells labelled (energy, forces, stress) with EMT."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        atoms = bulk(symbol, "fcc", a=a, cubic=True)
        atoms.set_cell(atoms.cell * (1 + rng.uniform(-0.03, 0.03, 3))[:, None], scale_atoms=True)
        atoms.positions += rng.normal(0, 0.08, atoms.positions.shape)
        atoms.calc = EMT()
        e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        datasets.labelled(atoms, energy=e, forces=f, stress=s, material_id="emt-cu", frame_id=i)
        out.append(atoms)
    return out


def test_split_sizes_follow_the_paper():
    assert finetune.split_sizes(10) == (9, 1)      # 9:1
    assert finetune.split_sizes(1) == (1, 0)       # one structure: no validation, last epoch
    assert finetune.split_sizes(2) == (1, 1)       # keep one for validation whenever possible
    assert finetune.split_sizes(20) == (18, 2)
    with pytest.raises(finetune.FineTuneError):
        finetune.split_sizes(0)


def test_scheduler_steps_per_epoch_match_chgnet_trainer():
    # chgnet.trainer.Trainer._train steps the scheduler at idx+1 in arange(1, 11) * n // 10
    for n in (1, 2, 5, 9, 10, 37):
        expected = sum(1 for idx in range(n) if idx + 1 in np.arange(1, 11) * n // 10)
        assert finetune._n_scheduler_calls(n) == expected
    assert finetune._n_scheduler_calls(1) == 1
    assert finetune._n_scheduler_calls(100) == 10


def test_labels_of_requires_forces_and_drops_partial_energies():
    frames = emt_cells(2)
    lab = finetune.labels_of(frames)
    assert lab["energies"].shape == (2,)
    assert len(lab["stresses"]) == 2 and lab["stresses"][0].shape == (3, 3)
    # a frame without energy: energies are not used at all (forces-only training)
    frames[1].calc.results.pop("energy")
    assert finetune.labels_of(frames)["energies"] is None
    bare = bulk("Cu", "fcc", a=3.61)
    with pytest.raises(finetune.FineTuneError, match="no DFT forces"):
        finetune.labels_of([bare])


def test_linear_correction_recovers_a_known_scale():
    frames = emt_cells(3, seed=1)
    dft = [a.get_forces() for a in frames]
    soft = models.ScaledCalculator(EMT(), 0.8)
    pred = []
    for a in frames:
        b = a.copy()
        b.calc = soft
        pred.append(b.get_forces())
    # c = sum(F_model . F_DFT) / sum(F_model^2) must undo the 0.8 exactly
    assert finetune.linear_correction(dft, pred) == pytest.approx(1 / 0.8, rel=1e-12)


@pytest.mark.slow
def test_chgnet_finetune_two_epochs_lowers_training_loss():
    frames = emt_cells(3, seed=2)
    settings = finetune.FineTuneSettings(epochs=2, seed=0)
    calc, rec = finetune.finetune(frames, model="chgnet-0.3.0", settings=settings)
    assert rec["n_train"] == 2 and rec["n_val"] == 1
    assert sorted(rec["train_ids"] + rec["val_ids"]) == sorted(finetune.frame_ids(frames))
    assert not set(rec["train_ids"]) & set(rec["val_ids"])
    assert rec["targets"] == "efs"
    assert rec["train_loss_after"] < rec["train_loss_before"]
    assert len(rec["history"]) == 2
    # the cosine schedule ends at the final learning rate
    assert rec["history"][-1]["lr"] == pytest.approx(settings.learning_rate_final)
    assert rec["wall_seconds"] > 0 and rec["n_parameters"] == 412_525  # CHGNet 0.3.0 (paper Table 1)
    atoms = frames[0].copy()
    atoms.calc = calc
    assert np.all(np.isfinite(atoms.get_forces()))


@pytest.mark.slow
def test_from_scratch_has_same_architecture_new_weights():
    scratch, pretrained = finetune._chgnet_base(from_scratch=True, seed=0)
    n_s = sum(p.numel() for p in scratch.parameters())
    n_p = sum(p.numel() for p in pretrained.parameters())
    assert n_s == n_p
    ps = dict(scratch.named_parameters())
    differs = [not np.allclose(ps[k].detach().numpy(), v.detach().numpy()) for k, v in pretrained.named_parameters()
               if v.numel() > 1]
    assert sum(differs) > 0.9 * len(differs)


@pytest.mark.slow
def test_matgl_finetune_path_runs_lowers_the_training_loss_and_moves_the_weights():
    pytest.importorskip("matgl")
    ok, _ = models.runnable(["m3gnet-mp-2021.2.8"])
    if not ok:
        pytest.skip("M3GNet weights not available here")
    frames = emt_cells(3, seed=2)
    calc, rec = finetune.finetune(frames, model="m3gnet-mp-2021.2.8", settings=finetune.FineTuneSettings(epochs=2))
    assert rec["n_train"] == 2 and rec["n_val"] == 1 and rec["include_line_graph"] is False
    assert np.isfinite(rec["best_val_force_mae"])
    # matgl_fix applied: two epochs on the same loss lower the training loss
    assert rec["train_loss_after"] < rec["train_loss_before"]
    assert len(rec["history"]) == 2
    before = frames[0].copy()
    before.calc = models.get_calculator("m3gnet-mp-2021.2.8")
    after = frames[0].copy()
    after.calc = calc
    assert not np.allclose(before.get_forces(), after.get_forces())
