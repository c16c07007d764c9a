"""The one-label linear correction of the paper (Eq. 4, Fig. 6a left, Fig. 6b, SI Fig. 5).

``E_corr = c * E_MLIP`` (hence ``F_corr = c * F_MLIP`` and ``sigma_corr = c * sigma_MLIP``),
with ``c`` fitted on ONE DFT-labelled high-energy structure of the system.

Two ways to get ``c``, which agree when the loss holds only forces:

* :func:`fit_scale` -- the closed form. Minimising ``sum |c F_model - F_DFT|^2`` over the
  force components of the training frame(s) gives ``c = sum F_model . F_DFT / sum F_model^2``.
* :func:`fit_scalar_layer` -- the paper's own implementation: a scalar layer (initialised
  to 1) in front of CHGNet's energy output, all other weights frozen, trained with Adam on
  that one structure (:class:`ScaledEnergyCHGNet`). With a force-only loss its optimum is
  the closed form above; with energy in the loss the optimum moves towards
  ``E_DFT / E_model`` (absolute energies are ~ -5 eV/atom, so even a small energy weight
  pulls ``c`` towards the ratio of total energies, which has nothing to do with the
  curvature of the PES). That is why the check uses forces only.

Note ``c`` is *not* ``1 / s`` (``s`` = softening scale, the slope of model against DFT):
``c * s = (sum xy)^2 / (sum xx * sum yy) = r^2 <= 1``, so ``c <= 1/s``; the two are equal
only when the points lie exactly on a line through the origin.

:func:`apply` wraps any ASE calculator in :class:`~softening_lib.models.ScaledCalculator`;
:func:`heldout_scores` fits on one frame and scores on the others (the honest version of
the paper's cMAE, which fits and scores on the same frames); :func:`rescore` re-runs any
task function with a corrected calculator (SI Fig. 5).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from . import metrics, models


class CorrectionError(ValueError):
    pass


# --------------------------------------------------------------------------------------
# the closed form
# --------------------------------------------------------------------------------------

def fit_scale(dft_forces, model_forces) -> float:
    """Closed-form one-label fit ``c = sum F_model.F_DFT / sum F_model^2``.

    ``dft_forces`` / ``model_forces``: one frame's ``(n, 3)`` arrays, or lists of per-frame
    arrays (pooled). Raises :class:`~softening_lib.metrics.MetricError` on bad input.
    """
    return metrics.correction_factor(dft_forces, model_forces)


def fit_scale_on_frame(atoms, model: str | None = None, calc=None) -> float:
    """``c`` from one DFT-labelled ASE ``Atoms`` (its calculator holds the DFT forces)."""
    from ase import Atoms

    from . import predict

    if not isinstance(atoms, Atoms):
        raise CorrectionError(f"atoms must be one labelled ase.Atoms, got {type(atoms).__name__}")
    if atoms.calc is None or "forces" not in atoms.calc.results:
        raise CorrectionError("the training frame carries no DFT forces (atoms.calc.results['forces'])")
    if model is None and calc is None:
        raise CorrectionError("give a registry model name or a calculator")
    out = predict.predict([atoms], model or getattr(calc, "softening_model", "calc"), calc=calc)
    return fit_scale(np.asarray(atoms.calc.results["forces"]), out["forces"][0])


def apply(calc, c: float):
    """The corrected calculator ``c * calc`` (energy, forces and stress)."""
    if calc is None:
        raise CorrectionError("calc is None; give the ASE calculator to correct")
    return models.ScaledCalculator(calc, _check_c(c))


def _check_c(c: Any) -> float:
    try:
        value = float(c)
    except (TypeError, ValueError):
        raise CorrectionError(f"c must be a positive number (the fitted correction, ~1), got {c!r}") from None
    if not (np.isfinite(value) and value > 0):
        raise CorrectionError(f"c must be a finite positive number (the fitted correction, ~1), got {c!r}; "
                              "refit it with fit_scale")
    return value


# --------------------------------------------------------------------------------------
# scoring: fit on one frame, score on the others
# --------------------------------------------------------------------------------------

@dataclass
class FrameStats:
    """Per-frame force statistics: enough to fit ``c`` and ``s`` on any subset of frames."""

    sxy: float
    sxx: float
    syy: float
    n: int


def frame_stats(dft_forces: Sequence[np.ndarray], model_forces: Sequence[np.ndarray]) -> list[FrameStats]:
    if len(dft_forces) != len(model_forces):
        raise metrics.MetricError(f"{len(dft_forces)} DFT frames but {len(model_forces)} model frames "
                                  "(dft_forces vs model_forces)")
    out = []
    for x, y in zip(dft_forces, model_forces):
        x, y = metrics._pair(np.asarray(x), np.asarray(y))
        out.append(FrameStats(float(x @ y), float(x @ x), float(y @ y), int(x.size)))
    return out


def heldout_scores(dft_forces: Sequence[np.ndarray], model_forces: Sequence[np.ndarray],
                   train: Sequence[int] | None = None) -> list[dict[str, float]]:
    """For each training frame ``k`` (default: every frame in turn): fit ``c`` on frame
    ``k`` alone and score the other frames.

    Returns one dict per ``k``: ``train_frame``, ``c``, ``mae_raw`` (held-out frames,
    uncorrected), ``mae_corrected`` (held-out frames, ``c * F_model``), ``s_raw`` and
    ``s_corrected`` (softening scale of the held-out frames before/after).
    """
    n = len(dft_forces)
    if n != len(model_forces):
        raise metrics.MetricError(f"{n} DFT frames but {len(model_forces)} model frames")
    if n < 2:
        raise CorrectionError("need at least two frames: one to fit, one to score")
    xs = [metrics._flatten([f]) for f in dft_forces]
    ys = [metrics._flatten([f]) for f in model_forces]
    for i, (x, y) in enumerate(zip(xs, ys)):
        if x.shape != y.shape:
            raise metrics.MetricError(f"frame {i}: {x.size} DFT vs {y.size} model components")
    if train is not None:
        if isinstance(train, (int, np.integer, str)):
            raise CorrectionError(f"train must be a list of frame indices, got {train!r}; write train=[{train!r}]")
        bad = [k for k in train if not isinstance(k, (int, np.integer)) or not 0 <= k < n]
        if bad:
            raise CorrectionError(f"train indices {bad} are out of range for {n} frames (0..{n - 1})")
    rows = []
    for k in (range(n) if train is None else train):
        try:
            c = fit_scale(xs[k], ys[k])
        except metrics.MetricError as exc:
            rows.append({"train_frame": int(k), "error": str(exc)})
            continue
        x = np.concatenate([xs[i] for i in range(n) if i != k])
        y = np.concatenate([ys[i] for i in range(n) if i != k])
        rows.append({
            "train_frame": int(k), "c": c,
            "mae_raw": float(np.mean(np.abs(y - x))),
            "mae_corrected": float(np.mean(np.abs(c * y - x))),
            "s_raw": _scale_or_nan(x, y),
            "s_corrected": _scale_or_nan(x, c * y),
        })
    return rows


def _scale_or_nan(x: np.ndarray, y: np.ndarray) -> float:
    try:
        return metrics.softening_scale(x, y)
    except metrics.MetricError:  # held-out DFT forces all zero
        return float("nan")


# --------------------------------------------------------------------------------------
# the paper's implementation: a trainable scalar in front of CHGNet's energy
# --------------------------------------------------------------------------------------

def _torch_module_base():
    import torch

    return torch.nn.Module


class ScaledEnergyCHGNet(_torch_module_base()):  # type: ignore[misc]
    """CHGNet with one extra trainable scalar multiplying its energy (init 1), all CHGNet
    weights frozen. Forces and stress are derivatives of the energy, so they are scaled by
    the same scalar: ``forward(graphs)`` returns CHGNet's dict with ``e``, ``f``, ``s``
    multiplied by :attr:`scale`.
    """

    def __init__(self, chgnet_model, init: float = 1.0):
        import torch

        super().__init__()
        self.chgnet = chgnet_model
        for p in self.chgnet.parameters():
            p.requires_grad_(False)
        self.scale = torch.nn.Parameter(torch.tensor(float(init), dtype=torch.float32))

    def forward(self, graphs, task: str = "ef") -> dict:
        out = self.chgnet(graphs, task=task)
        scaled = dict(out)
        # CHGNet's outputs are detached from its graph: its weights are frozen and the atom
        # positions are inputs, so the only gradient needed is d loss / d scale. Without the
        # detach, backward() would differentiate through CHGNet's force graph (a second-order
        # pass, ~100x slower) only to throw the result away.
        scaled["e"] = out["e"].detach() * self.scale
        for key in ("f", "s"):
            if key in out:
                scaled[key] = [t.detach() * self.scale for t in out[key]]
        return scaled


@dataclass
class ScalarLayerFit:
    c: float
    c_closed_form: float
    history: list[float] = field(default_factory=list)
    steps: int = 0
    energy_weight: float = 0.0
    force_weight: float = 1.0

    @property
    def relative_difference(self) -> float:
        return abs(self.c - self.c_closed_form) / abs(self.c_closed_form)


def fit_scalar_layer(atoms, chgnet_model=None, *, steps: int = 300, lr: float = 0.01,
                     energy_weight: float = 0.0, force_weight: float = 1.0, seed: int = 0,
                     progress: bool = False) -> ScalarLayerFit:
    """Train the scalar layer of :class:`ScaledEnergyCHGNet` on ONE labelled frame.

    Loss: ``force_weight * MSE(F) + energy_weight * MSE(E per atom)`` (CHGNet's
    convention; the paper's fine-tuning used weights 0.1/100 for E/F). Adam, ``steps``
    full forward+backward passes through the frozen CHGNet. Returns the learned scalar
    and the closed-form ``c`` of the same frame (CHGNet's own forces) for comparison.
    """
    import torch
    from pymatgen.io.ase import AseAtomsAdaptor

    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise CorrectionError(f"steps must be an integer >= 1 (Adam steps), got {steps!r}")
    if not (isinstance(lr, (int, float)) and np.isfinite(lr) and lr > 0):
        raise CorrectionError(f"lr must be a finite positive learning rate (e.g. 0.01), got {lr!r}")
    if energy_weight < 0 or force_weight < 0 or (energy_weight == 0 and force_weight == 0):
        raise CorrectionError(f"energy_weight ({energy_weight}) and force_weight ({force_weight}) must be >= 0 "
                              "and not both zero")
    if chgnet_model is None:
        from chgnet.model import CHGNet

        from .chatter import quiet

        with quiet():
            chgnet_model = CHGNet.load(model_name="0.3.0", use_device="cpu", verbose=False)
    if atoms.calc is None or "forces" not in atoms.calc.results:
        raise CorrectionError("the training frame carries no DFT forces")
    torch.manual_seed(seed)
    structure = AseAtomsAdaptor.get_structure(atoms)
    graph = chgnet_model.graph_converter(structure)
    f_dft = torch.tensor(np.asarray(atoms.calc.results["forces"]), dtype=torch.float32)
    e_dft = None
    if energy_weight:
        if "energy" not in atoms.calc.results:
            raise CorrectionError("energy_weight > 0 but the frame has no DFT energy")
        e_dft = torch.tensor(float(atoms.calc.results["energy"]) / len(atoms), dtype=torch.float32)
    model = ScaledEnergyCHGNet(chgnet_model)
    model.chgnet.eval()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(trainable) == 1, "only the scalar may train"
    opt = torch.optim.Adam(trainable, lr=lr)
    history = []
    iterator = range(steps)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="scalar layer", leave=False)
    f_model0 = None
    for _ in iterator:
        opt.zero_grad()
        out = model([graph], task="ef")
        if f_model0 is None:
            f_model0 = (out["f"][0] / model.scale).detach().numpy().astype(float)
        loss = force_weight * torch.mean((out["f"][0] - f_dft) ** 2)
        if e_dft is not None:
            loss = loss + energy_weight * (out["e"][0] - e_dft) ** 2
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
    c_closed = fit_scale(np.asarray(atoms.calc.results["forces"]), f_model0)
    return ScalarLayerFit(c=float(model.scale.detach()), c_closed_form=c_closed, history=history,
                          steps=steps, energy_weight=energy_weight, force_weight=force_weight)


# --------------------------------------------------------------------------------------
# re-scoring other chapters' tasks with a corrected calculator (SI Fig. 5)
# --------------------------------------------------------------------------------------

def rescore(task_fn: Callable[..., Any], calc, c: float, **task_kwargs: Any) -> dict[str, Any]:
    """Run ``task_fn(calc=..., **task_kwargs)`` twice: with ``calc`` and with ``c * calc``.

    ``task_fn`` is any task function that takes an ASE calculator as ``calc`` and returns
    a result (a number, a dict or a DataFrame). Returns ``{"raw": ..., "corrected": ...,
    "c": c}`` so a chapter can compare errors before and after the one-label correction.
    """
    if not callable(task_fn):
        raise CorrectionError(f"task_fn must be callable, got {type(task_fn).__name__}")
    c = _check_c(c)
    raw = task_fn(calc=calc, **task_kwargs)
    corrected = task_fn(calc=apply(calc, c), **task_kwargs)
    return {"raw": raw, "corrected": corrected, "c": float(c)}
