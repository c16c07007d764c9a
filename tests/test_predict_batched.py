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
