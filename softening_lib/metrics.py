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


def _flatten(forces, what: str = "forces") -> np.ndarray:
    if forces is None or isinstance(forces, (str, bytes, dict)):
        raise MetricError(f"{what} must be an array or a list of per-frame arrays, got {type(forces).__name__}")
    try:
        if isinstance(forces, np.ndarray):
            return forces.astype(float).ravel()
        parts = [np.asarray(f, dtype=float).ravel() for f in forces]
    except (TypeError, ValueError) as exc:
        raise MetricError(f"{what} are not numeric arrays ({exc}); pass (n, 3) float arrays") from None
    return np.concatenate(parts) if parts else np.zeros(0)


def _is_frame_list(obj) -> bool:
    return not isinstance(obj, np.ndarray)


def _pair(dft, model) -> tuple[np.ndarray, np.ndarray]:
    """Pool and check two sets of force components (arrays or lists of per-frame arrays).

    The two must have the same structure: the same number of frames and, frame by frame
    (or as whole arrays), the same shape. Equal sizes are not enough: (3, 4) against (4, 3)
    pairs components of different atoms."""
    x, y = _flatten(dft, "dft_forces"), _flatten(model, "model_forces")
    if _is_frame_list(dft) and _is_frame_list(model):
        if len(dft) != len(model):
            raise MetricError(f"{len(dft)} DFT frames but {len(model)} model frames (dft_forces vs model_forces); "
                              "pass one model array per DFT frame")
        for i, (a, b) in enumerate(zip(dft, model)):
            if np.shape(a) != np.shape(b):
                raise MetricError(f"frame {i}: dft_forces shape {np.shape(a)} vs model_forces shape {np.shape(b)}; "
                                  "the arrays must match atom by atom")
    else:
        sa = np.shape(dft) if not _is_frame_list(dft) else (x.size,)
        sb = np.shape(model) if not _is_frame_list(model) else (y.size,)
        if _is_frame_list(dft) != _is_frame_list(model):
            # one pooled array and one frame list: only the pooled sizes can be compared
            sa, sb = (x.size,), (y.size,)
        if sa != sb:
            raise MetricError(f"shape mismatch: dft_forces shape {sa} vs model_forces shape {sb}; the arrays must match atom by atom "
                              "(equal sizes are not enough)")
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
    if scale is not None:
        try:
            scale = float(scale)
        except (TypeError, ValueError):
            raise MetricError(f"scale must be a positive number, got {scale!r}") from None
        if not (np.isfinite(scale) and scale > 0):
            raise MetricError(f"scale must be a finite positive number (a softening scale, ~0.5-1.2), got {scale!r}; "
                              "omit it to fit it on the same data")
    s = softening_scale(x, y) if scale is None else scale
    if s == 0:
        raise MetricError("softening scale is zero (model forces uncorrelated with DFT forces): cMAE is undefined")
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
    if not callable(statistic):
        raise MetricError(f"statistic must be callable (e.g. metrics.mae), got {type(statistic).__name__}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise MetricError(f"n_boot must be an integer >= 1 (bootstrap resamples; 1000 is usual), got {n_boot!r}")
    if not (isinstance(ci, (int, float)) and 0 < ci < 1):
        raise MetricError(f"ci must be a confidence level strictly between 0 and 1 (e.g. 0.95), got {ci!r}")
    arrays = [np.asarray(a) for a in (values_or_pairs if isinstance(values_or_pairs, tuple) else (values_or_pairs,))]
    if not arrays or any(a.ndim == 0 for a in arrays):
        raise MetricError("values_or_pairs must be an array or a tuple of equal-length arrays")
    n = len(arrays[0])
    if n == 0:
        raise MetricError("values_or_pairs is empty: nothing to resample")
    if any(len(a) != n for a in arrays):
        raise MetricError(f"values_or_pairs arrays have different lengths {[len(a) for a in arrays]}; "
                          "they must have one row per sample")
    if groups is not None and len(groups) != n:
        raise MetricError(f"groups has {len(groups)} labels for {n} rows; give one group label per row")
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
    if s == 0:
        raise MetricError("all model force components are zero (or uncorrelated with DFT): softening scale 0, "
                          "cMAE undefined; check the model's forces")
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

    if isinstance(by, str):
        by = (by,)
    missing_cols = [c for c in (dft_col, model_col, *by) if c not in getattr(table, "columns", [])]
    if missing_cols:
        raise MetricError(f"table has no column(s) {missing_cols} (dft_col/model_col/by); "
                          f"it has {list(getattr(table, 'columns', []))}")
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
    b = np.asarray(bins, dtype=float) if not isinstance(bins, str) else np.zeros(0)
    if b.ndim != 1 or b.size < 2 or not np.all(np.isfinite(b)) or np.any(np.diff(b) <= 0):
        raise MetricError(f"bins must be >= 2 finite, increasing edges (eV/A), got {bins!r}")
    out = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        sel = (np.abs(x) >= lo) & (np.abs(x) < hi)
        if sel.sum() < 3:
            continue
        out.append({"lo": float(lo), "hi": float(hi), "n": int(sel.sum()),
                    "slope": float(np.dot(x[sel], y[sel]) / np.dot(x[sel], x[sel]))})
    return out
