"""Where MLIP work runs: ``--device auto|cpu|cuda`` for predictions, MD, phonons, fine-tuning.

``resolve("auto")`` is ``"cuda"`` when torch sees a CUDA device and ``"cpu"`` otherwise;
``"cuda"`` without one raises :class:`DeviceError` (never a silent fall-back to the CPU, so a
GPU job that landed on a CPU node says so). The default, when nothing is passed, is
``$SOFTENING_DEVICE`` or ``"cpu"``: results cached by the book do not depend on it (the CUDA
results equal the CPU ones within float tolerance, ``tests/test_devices.py``), but the CPU is
what every committed record was made on.

The project pins the CPU build of torch (``requirements.txt``). A GPU user replaces it with
the CUDA build of the same version before installing the rest::

    pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126
    pip install -r requirements.txt            # keeps that torch (same version)
"""

from __future__ import annotations

import os
from typing import Any

DEVICES = ("auto", "cpu", "cuda")


class DeviceError(RuntimeError):
    pass


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is in the [models] extra
        return False
    try:
        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken driver counts as no GPU
        return False


def resolve(device: str | None = None) -> str:
    """``"cpu"`` or ``"cuda"`` (or ``"cuda:N"``) for ``device`` (``None``: ``$SOFTENING_DEVICE`` or cpu)."""
    if device is None:
        device = os.environ.get("SOFTENING_DEVICE", "cpu") or "cpu"
    device = str(device).strip().lower()
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device == "cpu":
        return "cpu"
    if device == "cuda" or device.startswith("cuda:"):
        if not cuda_available():
            raise DeviceError(f"device {device!r} asked for, but torch sees no CUDA device "
                              "(CPU build of torch, or no GPU here); use --device auto or cpu, or install "
                              "the CUDA build of torch (see softening_lib/devices.py)")
        return device
    raise DeviceError(f"device must be one of {', '.join(DEVICES)} (or cuda:N), got {device!r}")


def calculator_kwargs(model: str, device: str | None = None) -> dict[str, Any]:
    """The keyword arguments that put ``model``'s registry calculator on ``device``.

    Empty on the CPU (every factory's default), so the calculator cache key and the records
    made so far are unchanged; ``{"device": "cuda"}`` otherwise. ASE's own calculators (EMT)
    have no device and always run on the CPU."""
    dev = resolve(device)
    if dev == "cpu":
        return {}
    try:
        from . import models

        if models.resolve(model).family == "ase":
            return {}
    except Exception:  # noqa: BLE001 - an import path: let its factory take the keyword or not
        pass
    return {"device": dev}


def move_matgl(calc, device: str) -> None:
    """Move a matgl ``PESCalculator``'s potential to ``device`` (the registry factory builds
    it on the CPU; ``Potential.forward`` moves each graph to the model's device)."""
    if device != "cpu" and hasattr(calc, "potential"):
        calc.potential.to(device)
