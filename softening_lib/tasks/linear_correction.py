"""Chapter 8: the one-label linear correction (paper Fig. 6a left, Fig. 6b, SI Fig. 5).

Everything here reads the per-(model, material) records of chapter 7
(:mod:`softening_lib.tasks.high_energy`), which already hold, per material,

* the paper's cMAE: ``MAE(F_model / s, F_DFT)`` with ``s`` fitted on *all* frames of the
  material -- an in-sample number (fit and score on the same data);
* the honest version: ``c`` fitted on ONE frame (closed form,
  :func:`softening_lib.correction.fit_scale`) and the MAE of ``c * F_model`` on the
  *other* frames, for every choice of training frame.

:func:`rescore` / :func:`rescore_surfaces` re-run another chapter's task with a corrected
calculator (SI Fig. 5). Because ``E_corr = c E`` for a constant ``c > 0``, the corrected
PES has the same minima, so relaxed geometries do not change and every energy difference
(surface, defect, mixing energy, barrier) is multiplied by exactly ``c``; phonon
frequencies by ``sqrt(c)``. The re-scoring hooks run the task anyway, which checks this.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from .. import cache, correction, models
from . import high_energy as he

TRAIN_COLOR = "#C0392B"  # training frame (paper: red)
TEST_COLOR = "#E69F00"  # held-out frames (paper: orange)


class NoRecordsError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------

def heldout_table(dataset: str, models_: Sequence[str], ids: Sequence[str] | None = None,
                  train_frame: int = 0):
    """One row per (model, material): MAE, the paper's cMAE, and the held-out one-label fit.

    ``train_frame``: which frame (position within the material) is the one label;
    ``mae_heldout_corrected_mean`` averages over every choice of the training frame.
    """
    import pandas as pd

    rows = []
    for model, recs in he.records(dataset, models_, ids).items():
        for r in recs:
            row = {"model": model, "dataset": dataset, "material_id": r["material_id"], "formula": r["formula"],
                   "n_frames": r["n_frames"], "softening_scale": r["softening_scale"], "mae": r["mae"],
                   "cmae": r["cmae"], "c_all": r.get("c_all"), "mae_corrected_all": r.get("mae_corrected_all")}
            ho = [h for h in r.get("heldout", []) if "error" not in h]
            pick = [h for h in ho if h["train_frame"] == train_frame]
            if pick:
                h = pick[0]
                row.update(c_one=h["c"], mae_heldout_raw=h["mae_raw"], mae_heldout_corrected=h["mae_corrected"],
                           s_heldout_raw=h["s_raw"], s_heldout_corrected=h["s_corrected"])
            if ho:
                row.update(mae_heldout_corrected_mean=float(np.mean([h["mae_corrected"] for h in ho])),
                           mae_heldout_raw_mean=float(np.mean([h["mae_raw"] for h in ho])),
                           c_one_spread=float(np.std([h["c"] for h in ho])))
            rows.append(row)
    return pd.DataFrame(rows)


def reduction_summary(table):
    """Per model: medians of MAE, cMAE and held-out corrected MAE, and the error reductions.

    ``reduction_paper`` = 1 - median(cMAE) / median(MAE) (the paper's ~15 %);
    ``reduction_heldout`` = 1 - median(held-out corrected MAE) / median(held-out raw MAE),
    both over the same materials.
    """
    import pandas as pd

    rows = []
    for model, g in table.groupby("model", sort=False):
        row = {"model": model, "n_materials": len(g), "mae_median": g["mae"].median(),
               "cmae_median": g["cmae"].median(),
               "reduction_paper": 1 - g["cmae"].median() / g["mae"].median(),
               "reduction_paper_per_material_median": float(np.median(1 - g["cmae"] / g["mae"]))}
        if "mae_heldout_corrected" in g and g["mae_heldout_corrected"].notna().any():
            h = g.dropna(subset=["mae_heldout_corrected"])
            row.update(mae_heldout_raw_median=h["mae_heldout_raw"].median(),
                       mae_heldout_corrected_median=h["mae_heldout_corrected"].median(),
                       reduction_heldout=1 - h["mae_heldout_corrected"].median() / h["mae_heldout_raw"].median(),
                       fraction_improved_heldout=float(np.mean(h["mae_heldout_corrected"] < h["mae_heldout_raw"])))
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------

def fig6a_left(dataset: str, material_id: str, model: str, train_frame: int = 0, compute_missing: bool = True):
    """Parity before and after the one-label correction: ``c`` fitted on the training frame
    (red), scored on the other frames (orange). Returns the figure and a one-row table."""
    import matplotlib.pyplot as plt
    import pandas as pd

    from .. import metrics, plots

    if compute_missing:
        he.compute_dataset(dataset, [model], [material_id], parity=[material_id], progress=False)
    arr = cache.load_arrays(he.parity_path(model, dataset, material_id))
    rec = he.cached_record(model, dataset, material_id)
    if arr is None or rec is None:
        raise NoRecordsError(f"no cached forces of {model} for {material_id} ({dataset})")
    frame = arr["frame"]
    n_frames = int(frame.max()) + 1
    if not 0 <= train_frame < n_frames:
        raise ValueError(f"train_frame must be in 0..{n_frames - 1}, got {train_frame}")
    if n_frames < 2:
        raise NoRecordsError(f"{material_id} has a single frame: nothing to hold out")
    x, y = arr["dft"].ravel(), arr["model"].ravel()
    fr = np.repeat(frame, 3) if frame.size * 3 == x.size else frame.ravel()
    tr, te = fr == train_frame, fr != train_frame
    c = correction.fit_scale(x[tr], y[tr])
    hi = float(np.max(np.abs(np.concatenate([x, y, c * y])))) * 1.05
    lim = (-hi, hi)
    fig, axes = plt.subplots(1, 2, figsize=(7.6, 3.9))
    before = {"s": metrics.softening_scale(x[te], y[te]), "mae": metrics.mae(x[te], y[te])}
    after = {"s": metrics.softening_scale(x[te], c * y[te]), "mae": metrics.mae(x[te], c * y[te])}
    plots.parity(axes[0], x[te], y[te], model=model, xlabel="DFT force component (eV/Å)",
                 ylabel="model force component (eV/Å)", lim=lim, s=5, label_="held-out frames")
    axes[0].set_title(f"{plots.label(model)}", fontsize=10)
    axes[0].legend([f"held-out frames\ns = {before['s']:.3f}\nMAE = {he._fmt(before['mae'])} eV/Å"],
                   loc="upper left", fontsize=8, handlelength=0.8)
    plots.parity(axes[1], x[te], c * y[te], model=model, xlabel="DFT force component (eV/Å)", ylabel="",
                 lim=lim, s=5, color_=TEST_COLOR, label_=f"test frames: s = {after['s']:.3f}, MAE = {he._fmt(after['mae'])}")
    axes[1].scatter(x[tr], c * y[tr], s=7, color=TRAIN_COLOR, lw=0, alpha=0.8, label=f"training frame (c = {c:.3f})")
    axes[1].set_title(f"corrected: {c:.3f} × {plots.label(model)}", fontsize=10)
    axes[1].legend(loc="upper left", fontsize=7.5, markerscale=2)
    fig.suptitle(f"{rec['formula']} ({material_id}), {he.DATASET_LABELS.get(dataset, dataset)}", fontsize=10)
    fig.tight_layout()
    table = pd.DataFrame([{"model": model, "material_id": material_id, "train_frame": train_frame, "c": c,
                           "s_before": before["s"], "s_after": after["s"], "mae_before": before["mae"],
                           "mae_after": after["mae"], "cmae_paper": rec["cmae"],
                           "n_test_frames": n_frames - 1}])
    return fig, table


def fig6a_left_interactive(dataset: str, material_id: str, model: str, train_frame: int = 0):
    """Fig. 6a (left) on screen: the force components before and after the one-label correction
    (``plots.parity_interactive``; legend toggles each set, hover: material, formula, frame,
    component and both forces). Reads the same cached arrays as :func:`fig6a_left`."""
    import pandas as pd

    from .. import plots

    arr = cache.load_arrays(he.parity_path(model, dataset, material_id))
    rec = he.cached_record(model, dataset, material_id)
    if arr is None or rec is None:
        raise NoRecordsError(f"no cached forces of {model} for {material_id} ({dataset})")
    x, y = arr["dft"].ravel(), arr["model"].ravel()
    fr = np.repeat(arr["frame"], 3) if arr["frame"].size * 3 == x.size else arr["frame"].ravel()
    tr = fr == train_frame
    c = correction.fit_scale(x[tr], y[tr])
    name = plots.label(model)
    base = pd.DataFrame({"material_id": material_id, "formula": rec["formula"], "frame": fr,
                         "component": np.tile(["x", "y", "z"], x.size // 3 + 1)[:x.size], "dft": x})
    sets = [base[~tr].assign(pred=y[~tr], series=f"{name}, held-out frames"),
            base[~tr].assign(pred=c * y[~tr], series=f"corrected ({c:.3f} ×), held-out frames"),
            base[tr].assign(pred=c * y[tr], series=f"corrected, training frame {train_frame}")]
    table = pd.concat(sets, ignore_index=True)
    fig = plots.parity_interactive(table, "dft", "pred", model="series",
                                   hover=("material_id", "formula", "frame", "component"),
                                   xlabel="DFT force component (eV/Å)", ylabel="model force component (eV/Å)")
    for trace, col in zip(fig.data, (plots.color(model), TEST_COLOR, TRAIN_COLOR)):
        trace.marker.color = col
    return fig


def fig6b_interactive(table, before: str = "mae_heldout_raw", after: str = "mae_heldout_corrected"):
    """Fig. 6b on screen: per material, the held-out force MAE after the one-label correction
    against before (log axes; below the diagonal: the label helped). Legend toggles a model;
    hover: material id, formula and both errors."""
    from .. import plots

    t = table.dropna(subset=[before, after]) if before in table and after in table else table.iloc[:0]
    return plots.parity_interactive(t, before, after, hover=("material_id", "formula"), log=True,
                                    xlabel=f"{METRIC_LABELS.get(before, before)} (eV/Å)",
                                    ylabel=f"{METRIC_LABELS.get(after, after)} (eV/Å)")


METRIC_LABELS = {
    "mae": "MAE (all frames)",
    "cmae": "cMAE, paper (s fitted on all frames)",
    "mae_heldout_raw": "MAE, held-out frames",
    "mae_heldout_corrected": "MAE, held-out, c from 1 frame",
}


def fig6b(table, metrics_: Sequence[str] = ("mae", "cmae", "mae_heldout_raw", "mae_heldout_corrected"),
          log: bool = True):
    """Per-material force-error distributions per model (violins, quartiles dashed) and the
    median reduction. Returns the figure and :func:`reduction_summary`."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    from .. import plots

    if table is None or table.empty:
        raise NoRecordsError("no per-material records to plot")
    metrics_ = [m for m in metrics_ if m in table and table[m].notna().any()]
    long = table.melt(id_vars=["model", "material_id"], value_vars=list(metrics_), var_name="metric",
                      value_name="error").dropna()
    long = long[long["error"] > 0]
    long["value"] = np.log10(long["error"]) if log else long["error"]
    long["metric"] = long["metric"].map(METRIC_LABELS)
    long["model_label"] = long["model"].map(plots.label)
    fig, ax = plt.subplots(figsize=(max(6.0, 2.4 * table["model"].nunique()), 4.2))
    palette = dict(zip([METRIC_LABELS[m] for m in metrics_], ["0.55", "#56B4E9", "0.8", TEST_COLOR]))
    sns.violinplot(data=long, x="model_label", y="value", hue="metric", inner="quart", cut=0,
                   density_norm="width", palette=palette, linewidth=0.8, ax=ax)
    ax.set_xlabel("")
    ax.set_xticks(ax.get_xticks(), [t.get_text().replace("-PBE-", "-PBE-\n").replace("-MP-", "-MP-\n")
                                    for t in ax.get_xticklabels()], fontsize=8)
    ax.set_ylabel("log10 force error per material (eV/Å)" if log else "force error per material (eV/Å)")
    summary = reduction_summary(table)
    for i, model in enumerate(long["model"].drop_duplicates()):
        row = summary[summary["model"] == model]
        if row.empty:
            continue
        r = row.iloc[0]
        text = f"median change\ncMAE (paper's way): {-100 * r['reduction_paper']:+.0f}%"
        if "reduction_heldout" in r and pd.notna(r.get("reduction_heldout")):
            text += f"\nheld-out: {-100 * r['reduction_heldout']:+.0f}%"
        ax.text(i, ax.get_ylim()[1], text, ha="center", va="bottom", fontsize=7.5)
    ax.legend(fontsize=7, loc="lower left", ncol=2)
    fig.tight_layout()
    return fig, summary


# --------------------------------------------------------------------------------------
# re-scoring other chapters (SI Fig. 5)
# --------------------------------------------------------------------------------------

def corrected_calculator(model: str, c: float):
    """``c`` times the registry calculator of ``model``."""
    from .. import predict

    return correction.apply(predict.calculator(model), c)


def rescore(task_fn: Callable[..., Any], calc, c: float, **task_kwargs: Any) -> dict[str, Any]:
    """Run any task function that takes ``calc=`` with ``calc`` and with ``c * calc``
    (see :func:`softening_lib.correction.rescore`)."""
    return correction.rescore(task_fn, calc, c, **task_kwargs)


def surfaces_available() -> bool:
    try:
        from . import surfaces  # noqa: F401
    except ImportError:
        return False
    return hasattr(surfaces, "surface_energies")


def rescore_surfaces(cases: Sequence, calc, c: float, relax: bool = False, **kw: Any):
    """Surface energies with ``calc`` and with ``c * calc``, side by side (one row per case).

    Columns: id, system, miller, gamma_raw, gamma_corrected (eV/Å²), ratio (= c up to
    relaxation noise: a constant factor does not move minima)."""
    if not surfaces_available():
        raise NoRecordsError("softening_lib.tasks.surfaces (chapter 2) is not available")
    from . import surfaces

    def task(calc, **k):
        return surfaces.surface_energies(cases, calc, relax=relax, **k)

    out = rescore(task, calc, c, **kw)
    raw, cor = out["raw"], out["corrected"]
    keep = [k for k in ("id", "system", "miller") if k in raw]
    table = raw[keep].copy()
    table["gamma_raw"] = raw["gamma_eV_A2"].to_numpy()
    table["gamma_corrected"] = cor["gamma_eV_A2"].to_numpy()
    table["ratio"] = table["gamma_corrected"] / table["gamma_raw"]
    table["c"] = c
    return table


def typical_c(dataset: str, models_: Sequence[str], ids: Sequence[str] | None = None, train_frame: int = 0) -> dict[str, float]:
    """Median one-label ``c`` over a dataset's materials, per model (a universal fallback
    when a system has no DFT label of its own)."""
    tab = heldout_table(dataset, models_, ids, train_frame=train_frame)
    if tab.empty or "c_one" not in tab:
        return {}
    return {m: float(g["c_one"].median()) for m, g in tab.groupby("model", sort=False)}


def model_names(models_: Sequence[str]) -> list[str]:
    ok, _ = models.runnable(list(models_))
    return ok


# --------------------------------------------------------------------------------------
# the paper's scalar layer vs the closed form (cached: it trains CHGNet's wrapper)
# --------------------------------------------------------------------------------------

def training_frame(dataset: str, material_id: str, train_frame: int = 0):
    """The labelled ``train_frame``-th frame of a material (phonon sets: a displaced supercell)."""
    frames, skipped = he.load_frames(dataset, [material_id])
    frames = [a for a in frames if not a.info.get("residual_reference")]
    if not frames:
        raise NoRecordsError(f"{material_id} ({dataset}): no frames ({skipped.get(material_id, 'not found')})")
    if not 0 <= train_frame < len(frames):
        raise ValueError(f"train_frame must be in 0..{len(frames) - 1}, got {train_frame}")
    return frames[train_frame]


def scalar_layer_check(dataset: str, material_id: str, train_frame: int = 0, steps: int = 150,
                       lr: float = 0.02, recompute: bool = False) -> dict:
    """Train the paper's scalar layer (CHGNet 0.3.0, force-only loss) on one frame and
    compare with the closed-form ``c`` of the same frame. Cached in ResultStore("linear_correction")."""
    store = cache.ResultStore("linear_correction")
    key = cache.key_of("scalar_layer", dataset, material_id, train_frame, steps, lr)
    rec = None if recompute else store.get("chgnet-0.3.0", key)
    if rec is not None:
        return rec
    frame = training_frame(dataset, material_id, train_frame)
    from chgnet.model import CHGNet

    model = CHGNet.load(model_name="0.3.0", use_device="cpu", verbose=False)
    fit = correction.fit_scalar_layer(frame, model, steps=steps, lr=lr)
    rec = {"dataset": dataset, "material_id": material_id, "train_frame": train_frame, "n_atoms": len(frame),
           "steps": steps, "lr": lr, "loss": "force MSE only", "c_scalar_layer": fit.c,
           "c_closed_form": fit.c_closed_form, "relative_difference": fit.relative_difference,
           "loss_first": fit.history[0], "loss_last": fit.history[-1]}
    store.put("chgnet-0.3.0", key, rec)
    return rec


# --------------------------------------------------------------------------------------
# SI Fig. 5 from chapter 2's cached surface energies
# --------------------------------------------------------------------------------------

def cached_surface_table(model: str, variant: str = "static"):
    """Chapter 2's cached model surface energies (no computation), or None."""
    import pandas as pd

    recs = [r for r in cache.ResultStore("surfaces").records(models.model_id(model))
            if r.get("variant") == variant and not r.get("skipped")]
    return pd.DataFrame(recs) if recs else None


def si_fig5(models_: Sequence[str], c_by_model: dict[str, float], variant: str = "static"):
    """Surface energies vs the GPAW reference before/after ``c * model``; None when chapter 2's
    model results or reference are not cached. Returns (figure, table of MAE before/after)."""
    import matplotlib.pyplot as plt
    import pandas as pd

    from .. import plots

    if not surfaces_available():
        return None
    from . import surfaces

    try:
        ref = surfaces.load_reference(variant)
    except Exception:  # reference folder missing or unreadable
        return None
    panels = []
    for model in models_:
        if model not in c_by_model:
            continue
        tab = cached_surface_table(model, variant)
        if tab is None or ref is None or not len(ref):
            continue
        joined = surfaces.compare(ref, tab)
        if not len(joined):
            continue
        joined = joined.assign(gamma_corrected=c_by_model[model] * joined["gamma_model"])
        panels.append((model, joined))
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.6), squeeze=False)
    rows = []
    for ax, (model, j) in zip(axes[0], panels):
        c = c_by_model[model]
        mae_raw = float(np.mean(np.abs(j["gamma_model"] - j["gamma_ref"])))
        mae_cor = float(np.mean(np.abs(j["gamma_corrected"] - j["gamma_ref"])))
        hi = float(np.max(np.abs(j[["gamma_ref", "gamma_model", "gamma_corrected"]].to_numpy()))) * 1.08
        lo = min(0.0, float(j[["gamma_ref", "gamma_model", "gamma_corrected"]].to_numpy().min()) * 1.08)
        ax.scatter(j["gamma_ref"], j["gamma_model"], s=16, facecolors="none", edgecolors=plots.color(model),
                   label=f"raw: MAE {mae_raw:.4f}")
        ax.scatter(j["gamma_ref"], j["gamma_corrected"], s=14, color=TEST_COLOR, label=f"× {c:.3f}: MAE {mae_cor:.4f}")
        ax.plot([lo, hi], [lo, hi], color="0.4", lw=0.8, ls="--")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_title(plots.label(model), fontsize=9)
        ax.set_xlabel("GPAW-PBE γ (eV/Å²)")
        ax.legend(fontsize=7, loc="upper left")
        rows.append({"model": model, "c": c, "n_surfaces": len(j), "mae_raw": mae_raw, "mae_corrected": mae_cor,
                     "mean_error_raw": float(np.mean(j["gamma_model"] - j["gamma_ref"])),
                     "mean_error_corrected": float(np.mean(j["gamma_corrected"] - j["gamma_ref"]))})
    axes[0][0].set_ylabel("model γ (eV/Å²)")
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


# --------------------------------------------------------------------------------------
# the task contract (softening_lib.task): cases / compute / reference
# --------------------------------------------------------------------------------------

TASK = "linear_correction"


def cases(preset: str = "default", **params: Any) -> list[dict]:
    """Chapter 7's (dataset, material) cases: the correction is fitted on chapter 7's records."""
    return he.cases(preset, **params)


def compute(model: str, cases: Sequence[dict], *, calc=None, progress=None) -> list[dict]:
    """One record per (dataset, material): chapter 7's record (``c_all`` is the closed-form c)."""
    return he.case_records(model, cases, calc=calc, progress=progress)


def reference(**_: Any) -> None:
    """The DFT forces are the data sets' own (chapter 7): no separate reference table."""
    return None
