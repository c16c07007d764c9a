"""Error metrics of the paper: MAE, the softening scale and the corrected MAE (cMAE).

Softening scale (paper, Fig. 5): the slope of the least-squares line *through the origin*
of MLIP force components against DFT force components, pooled over all frames of one
material::

    s = sum(x * y) / sum(x * x),   x = DFT components, y = MLIP components

``s < 1`` means the model's PES is softer than DFT. The corrected MAE rotates the
distribution back onto the diagonal: ``cMAE = MAE(F_MLIP / s, F_DFT)``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


class MetricError(ValueError):
    pass


def _flatten(forces) -> np.ndarray:
    if isinstance(forces, np.ndarray):
        return forces.astype(float).ravel()
    parts = [np.asarray(f, dtype=float).ravel() for f in forces]
    return np.concatenate(parts) if parts else np.zeros(0)


def _pair(dft, model) -> tuple[np.ndarray, np.ndarray]:
    """Pool and check two sets of force components (arrays or lists of per-frame arrays)."""
    if not isinstance(dft, np.ndarray) and not isinstance(model, np.ndarray):
        if len(dft) != len(model):
            raise MetricError(f"{len(dft)} DFT frames but {len(model)} model frames")
        for i, (a, b) in enumerate(zip(dft, model)):
            if np.shape(a) != np.shape(b):
                raise MetricError(f"frame {i}: DFT forces {np.shape(a)} vs model forces {np.shape(b)}")
    x, y = _flatten(dft), _flatten(model)
    if x.shape != y.shape:
        raise MetricError(f"shape mismatch: {x.size} DFT components vs {y.size} model components")
    if x.size == 0:
        raise MetricError("no force components given")
    if not np.all(np.isfinite(y)):
        raise MetricError(f"model forces contain {np.count_nonzero(~np.isfinite(y))} non-finite values")
    if not np.all(np.isfinite(x)):
        raise MetricError("DFT forces contain non-finite values")
    return x, y


def mae(dft, model) -> float:
    x, y = _pair(dft, model)
    return float(np.mean(np.abs(y - x)))


def softening_scale(dft_forces, model_forces) -> float:
    """Slope through the origin of model vs DFT force components (s = Σxy / Σx²)."""
    x, y = _pair(dft_forces, model_forces)
    denom = float(np.dot(x, x))
    if denom == 0.0:
        raise MetricError("all DFT force components are zero: the softening scale is undefined")
    return float(np.dot(x, y) / denom)


def correction_factor(dft_forces, model_forces) -> float:
    """Least-squares c minimising |c F_model - F_DFT|² (the closed-form one-label fit):
    c = Σ F_model·F_DFT / Σ F_model²."""
    x, y = _pair(dft_forces, model_forces)
    denom = float(np.dot(y, y))
    if denom == 0.0:
        raise MetricError("all model force components are zero: the correction is undefined")
    return float(np.dot(x, y) / denom)


def cmae(dft_forces, model_forces, scale: float | None = None) -> float:
    """MAE of ``model / s`` against DFT (the paper's corrected MAE).

    ``scale`` defaults to the softening scale fitted on the same data (the paper's
    definition); pass a scale fitted elsewhere for an honest held-out version.
    """
    x, y = _pair(dft_forces, model_forces)
    s = softening_scale(x, y) if scale is None else float(scale)
    if s == 0:
        raise MetricError("softening scale is zero")
    return float(np.mean(np.abs(y / s - x)))


def r2(dft, model) -> float:
    x, y = _pair(dft, model)
    ss_res = np.sum((y - x) ** 2)
    ss_tot = np.sum((x - x.mean()) ** 2)
    return float(1 - ss_res / ss_tot) if ss_tot else float("nan")


def bootstrap_ci(values_or_pairs, statistic: Callable[..., float], n_boot: int = 1000,
                 ci: float = 0.95, seed: int = 0, groups: Sequence | None = None) -> tuple[float, float, float]:
    """Percentile bootstrap: (estimate, low, high).

    ``values_or_pairs`` is a tuple of equal-length arrays passed to ``statistic``; rows are
    resampled with replacement (or whole groups, e.g. frames or materials, when ``groups``
    gives a group label per row -- the honest choice for correlated force components).
    """
    arrays = [np.asarray(a) for a in (values_or_pairs if isinstance(values_or_pairs, tuple) else (values_or_pairs,))]
    n = len(arrays[0])
    rng = np.random.default_rng(seed)
    estimate = statistic(*arrays)
    stats = np.empty(n_boot)
    if groups is None:
        for b in range(n_boot):
            idx = rng.integers(0, n, n)
            stats[b] = statistic(*(a[idx] for a in arrays))
    else:
        groups = np.asarray(groups)
        labels = np.unique(groups)
        members = {g: np.flatnonzero(groups == g) for g in labels}
        for b in range(n_boot):
            pick = rng.choice(labels, size=len(labels), replace=True)
            idx = np.concatenate([members[g] for g in pick])
            stats[b] = statistic(*(a[idx] for a in arrays))
    alpha = (1 - ci) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    return float(estimate), float(low), float(high)


def force_metrics(dft_forces, model_forces) -> dict[str, float]:
    """All per-material numbers the chapters report, in one dict."""
    x, y = _pair(dft_forces, model_forces)
    s = softening_scale(x, y)
    return {
        "n_components": int(x.size),
        "softening_scale": s,
        "mae": float(np.mean(np.abs(y - x))),
        "cmae": float(np.mean(np.abs(y / s - x))),
        "rmse": float(np.sqrt(np.mean((y - x) ** 2))),
        "mean_abs_dft": float(np.mean(np.abs(x))),
    }


def per_material(table, dft_col: str = "dft_forces", model_col: str = "model_forces",
                 by: Sequence[str] = ("model", "material_id")):
    """Per-(model, material) metrics from a frame table with per-frame force arrays."""
    import pandas as pd

    rows = []
    for key, grp in table.groupby(list(by), sort=False):
        try:
            m = force_metrics(list(grp[dft_col]), list(grp[model_col]))
        except MetricError as exc:
            m = {"error": str(exc)}
        rows.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))), "n_frames": len(grp), **m})
    return pd.DataFrame(rows)


def binned_slope(dft_forces, model_forces, bins: Sequence[float]) -> list[dict[str, float]]:
    """Softening scale within bins of |DFT force component| (how s depends on magnitude)."""
    x, y = _pair(dft_forces, model_forces)
    out = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        sel = (np.abs(x) >= lo) & (np.abs(x) < hi)
        if sel.sum() < 3:
            continue
        out.append({"lo": float(lo), "hi": float(hi), "n": int(sel.sum()),
                    "slope": float(np.dot(x[sel], y[sel]) / np.dot(x[sel], x[sel]))})
    return out
