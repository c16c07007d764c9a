"""Batched inference of every registry model with a batched path equals its per-structure
ASE calculator; the CUDA path equals the CPU one (skipped without CUDA)."""

from __future__ import annotations

import numpy as np
import pytest

from softening_lib import datasets, devices, models, predict

BATCHED = ["chgnet-0.3.0", "m3gnet-mp-2021.2.8", "m3gnet-matpes-pbe", "tensornet-matpes-pbe", "sevennet-0"]


def _frames():
    try:
        frames = datasets.load("wbm-he-gpaw")
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"wbm-he-gpaw not here: {exc}")
    return [frames[i] for i in (0, 13, 27, 44, 130)]  # 5 compounds, 2-8 atoms, strained and not


def _runnable(name):
    ok, why = models.runnable([name])
    if not ok:
        pytest.skip(f"{name} does not run here: {why.get(name, '')[:80]}")


def _close(a, b, e_tol=2e-5, f_tol=5e-5, s_tol=5e-6):
    assert np.max(np.abs(a["energy"] - b["energy"])) < e_tol
    assert max(np.max(np.abs(x - y)) for x, y in zip(a["forces"], b["forces"])) < f_tol
    sa, sb = np.asarray(a["stress"]), np.asarray(b["stress"])
    assert np.array_equal(np.isnan(sa), np.isnan(sb))
    assert np.nanmax(np.abs(sa - sb)) < s_tol


@pytest.mark.parametrize("name", BATCHED)
def test_batched_equals_per_structure(name):
    _runnable(name)
    frames = _frames()
    calc = predict.calculator(name)
    assert predict.batched_family(calc) is not None
    batched = predict.predict(frames, name, batch_size=3)  # two batches: 3 + 2 structures
    serial = predict.predict(frames, name, batched=False)
    _close(batched, serial)


def test_batching_by_atoms_gives_the_same_numbers():
    name = "m3gnet-mp-2021.2.8"
    _runnable(name)
    frames = _frames()
    a = predict.predict(frames, name, max_atoms_per_batch=9)
    b = predict.predict(frames, name, batch_size=16)
    _close(a, b, 1e-5, 1e-5, 1e-6)


def test_device_resolution():
    assert devices.resolve("cpu") == "cpu"
    assert devices.resolve("auto") in ("cpu", "cuda")
    with pytest.raises(devices.DeviceError):
        devices.resolve("tpu")
    if not devices.cuda_available():
        with pytest.raises(devices.DeviceError, match="no CUDA"):
            devices.resolve("cuda")
    assert devices.calculator_kwargs("emt", "auto") == {}
    assert devices.calculator_kwargs("chgnet-0.3.0", "cpu") == {}


@pytest.mark.skipif(not devices.cuda_available(), reason="no CUDA device (CPU build of torch)")
@pytest.mark.parametrize("name", BATCHED)
def test_cuda_equals_cpu(name):
    _runnable(name)
    frames = _frames()
    cpu = predict.predict(frames, name, batch_size=3, device="cpu")
    gpu = predict.predict(frames, name, batch_size=3, device="cuda")
    _close(cpu, gpu, 1e-4, 2e-4, 2e-5)


@pytest.mark.parametrize("name", BATCHED)
def test_forces_only_path_equals_per_structure_and_restores_the_model(name):
    """with_stress=False (matgl: calc_stresses off; CHGNet: task "ef"; all: parameters frozen for
    the call) gives the per-structure energies and forces, NaN stress, and leaves the model's
    requires_grad flags and calc_stresses as they were."""
    _runnable(name)
    frames = _frames()
    calc = predict.calculator(name)
    module = predict.model_module(calc, predict.batched_family(calc))
    assert module is not None
    flags = [p.requires_grad for p in module.parameters()]
    stresses = getattr(getattr(calc, "potential", None), "calc_stresses", None)
    fast = predict.predict(frames, name, batch_size=3, with_stress=False)
    serial = predict.predict(frames, name, batched=False, with_stress=False)
    assert np.isnan(np.asarray(fast["stress"])).all()
    assert np.max(np.abs(fast["energy"] - serial["energy"])) < 2e-5
    assert max(np.max(np.abs(x - y)) for x, y in zip(fast["forces"], serial["forces"])) < 5e-5
    full = predict.predict(frames, name, batch_size=3)  # with stress: the same energies and forces
    assert np.max(np.abs(fast["energy"] - full["energy"])) < 1e-5
    assert max(np.max(np.abs(x - y)) for x, y in zip(fast["forces"], full["forces"])) < 1e-5
    assert [p.requires_grad for p in module.parameters()] == flags
    assert getattr(getattr(calc, "potential", None), "calc_stresses", None) == stresses


def test_frozen_params_and_matgl_stress_restore_on_error():
    torch = pytest.importorskip("torch")
    lin = torch.nn.Linear(2, 2)
    lin.bias.requires_grad_(False)
    net = torch.nn.Sequential(lin, torch.nn.Dropout(0.5))
    net.train()
    net[1].eval()  # mixed modes come back as they were
    with pytest.raises(RuntimeError):
        with predict.frozen_params(net):
            assert not any(p.requires_grad for p in lin.parameters())
            assert not any(m.training for m in net.modules())
            raise RuntimeError("boom")
    assert lin.weight.requires_grad and not lin.bias.requires_grad
    assert net.training and lin.training and not net[1].training

    class Pot:
        calc_stresses = True

    pot = Pot()
    with pytest.raises(RuntimeError):
        with predict.matgl_stress(pot, False):
            assert pot.calc_stresses is False
            raise RuntimeError("boom")
    assert pot.calc_stresses is True
    with predict.matgl_stress(pot, True):
        assert pot.calc_stresses is True
    with predict.frozen_params(None):
        pass


@pytest.mark.parametrize("name", ["m3gnet-mp-2021.2.8", "tensornet-matpes-pbe"])
def test_matgl_registry_potential_is_in_eval_mode_and_agrees_with_training_mode(name):
    """matgl.load_model returns the Potential in training mode, where each force call builds a
    double-backward graph; the registry puts it in eval mode. The numbers are those of
    training mode (same weights, no dropout): only the autograd graph differs."""
    _runnable(name)
    frames = _frames()
    calc = predict.calculator(name)
    assert not calc.potential.training
    ev = predict.predict(frames, name, batched=False)
    calc.potential.train()
    try:
        tr = predict.predict(frames, name, batched=False)
    finally:
        calc.potential.eval()
    _close(ev, tr, 1e-5, 1e-5, 1e-6)


def test_default_atom_ceiling_follows_the_device():
    """256 atoms per batched call on a CPU (larger batches are slower per atom there), 2000 on
    a GPU (a memory bound); a calculator without a batched path gets the CPU value."""
    assert predict.atoms_per_batch() == predict.CPU_ATOMS_PER_BATCH == 256
    name = "m3gnet-mp-2021.2.8"
    _runnable(name)
    calc = predict.calculator(name)
    assert predict.atoms_per_batch(calc, predict.batched_family(calc)) == predict.CPU_ATOMS_PER_BATCH
    if devices.cuda_available():
        gpu = predict.calculator(name, device="cuda")
        assert predict.atoms_per_batch(gpu, predict.batched_family(gpu)) == predict.MAX_ATOMS_PER_BATCH
