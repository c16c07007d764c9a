"""Chapter 10: the model zoo -- softening scale of every runnable model vs size and training set.

For each model and each material, the softening scale ``s = Σ F_DFT·F_model / Σ F_DFT²``
(paper Fig. 5, :func:`softening_lib.metrics.softening_scale`) on **chapter 7's frames**
(GPAW-labelled WBM high-energy states, plus the near-equilibrium phonon contrast sets), read
from chapter 7's record store (:mod:`softening_lib.tasks.high_energy`: the same records, so the
two chapters agree), summarised per model and dataset (median, quartiles, fraction softened)
next to the model's parameter count (counted from the loaded weights) and training set (MPF,
MPtrj, MatPES): the paper's model-size discussion and SI Figs. 6-7, extended to MatPES and
SevenNet-0.

>>> from softening_lib.tasks import model_zoo
>>> model_zoo.compute("sevennet-0", model_zoo.cases("smoke"))   # fills chapter 7's records (task contract)
>>> per = model_zoo.record_table(["chgnet-0.3.0", "sevennet-0"], preset="smoke")
>>> model_zoo.summary(per, model_zoo.model_card(["chgnet-0.3.0", "sevennet-0"]))

:func:`zoo_table` does the same for any list of labelled frames (user data, tests).
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
from ase import Atoms

from .. import cache, datasets, metrics, models, predict
from ..models import SEVENNET_FIX, sevennet0, sevennet0_available  # noqa: F401  (SevenNet-0's loader is the registry's)

log = logging.getLogger(__name__)

TASK = "model_zoo"
SEVENNET = "sevennet-0"  # registry entry (family sevenn)
ZOO_MODELS = models.tagged("zoo")
# chapter 7's frame sets: high-energy states first, then the near-equilibrium phonon contrast
ZOO_DATASETS = ("wbm-he-gpaw", "wbm-he-figshare", "phonondb-pbesol", "jageo-pbe-68")
TRAINING_FAMILIES = {"MPF": "MPF (MP relaxation frames, 188 k)", "MPtrj": "MPtrj (MP relaxation trajectories, 1.58 M)",
                     "MatPES": "MatPES (MD-sampled PES, 2025)", "other": "other / user"}
FAMILY_MARKERS = {"MPF": "s", "MPtrj": "o", "MatPES": "D", "other": "^"}

def zoo_label(model: str) -> str:
    from .. import plots

    return plots.label(model)


def training_family(model: str) -> str:
    """MPF | MPtrj | MatPES | other, from the registry's training-set string."""
    try:
        text = models.get_spec(model).training_set
    except Exception:
        return "other"
    for key in ("MatPES", "MPtrj", "MPF"):
        if key.lower() in text.lower():
            return key
    return "other"


def _torch_modules(calc) -> list:
    import torch

    found = []
    for attr in ("model", "potential", "models"):
        obj = getattr(calc, attr, None)
        if isinstance(obj, torch.nn.Module):
            found.append(obj)
        elif isinstance(obj, (list, tuple)):
            found += [m for m in obj if isinstance(m, torch.nn.Module)]
    base = getattr(calc, "base", None)  # ScaledCalculator
    if base is not None and not found:
        found = _torch_modules(base)
    return found


def parameter_count(model: str, calc=None) -> int | None:
    """Trainable + frozen parameters of the loaded model (sum of ``p.numel()``); None if not a torch model."""
    calc = calc if calc is not None else predict.calculator(model)
    mods = _torch_modules(calc)
    if not mods:
        return None
    seen, total = set(), 0
    for mod in mods:
        for p in mod.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
    return int(total)


def model_card(names: Sequence[str], count: bool = True) -> "Any":
    """One row per model: available?, reason, parameters (counted and as reported), training set."""
    import pandas as pd

    store = cache.ResultStore(TASK)
    rows = []
    for name in names:
        spec = models.get_spec(name)
        ok, reason, fix = spec.availability() if spec.availability else (True, "", "")
        counted = None
        if ok and count:
            key = cache.key_of("params", models.model_id(name))
            rec = store.get("_params", f"{cache._safe(name)}-{key}")
            if rec is None:
                try:
                    counted = parameter_count(name)
                    store.put("_params", f"{cache._safe(name)}-{key}", {"model": name, "n_parameters": counted})
                except Exception as exc:  # reported, not fatal (e.g. a side-environment model)
                    log.warning("could not count parameters of %s: %s", name, exc)
            else:
                counted = rec["n_parameters"]
        rows.append({"model": name, "display_name": spec.display_name, "version": spec.version,
                     "available": ok, "reason": "" if ok else reason,
                     "parameters_counted": counted, "parameters_reported": spec.n_parameters,
                     "training_set": spec.training_set, "training_family": training_family(name),
                     "paper_model": spec.paper_model})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------
# frames
# --------------------------------------------------------------------------------------

def phonon_materials(dataset: str = "jageo-pbe-68", n: int | None = None) -> list[str]:
    """Material ids of a phonon dataset in chapter 7's order (JaGeo: cheapest first), the first ``n``."""
    from . import high_energy

    if dataset == "jageo-pbe-68":
        return high_energy.jageo_by_cost(n)
    if dataset == "phonondb-pbesol":
        return high_energy.phonondb_subset(n or 100)
    raise ValueError(f"{dataset} is not a phonon dataset")


def phonon_frames(dataset: str = "jageo-pbe-68", materials: Sequence[str] | None = None,
                  n: int | None = None) -> list[Atoms]:
    """Chapter 7's frames of a phonon dataset: displaced supercells (DFT forces) plus the
    undisplaced supercell of each material (``info["residual_reference"]``), so the prediction
    cache is shared with chapter 7 and the model's residual force can be subtracted."""
    from . import high_energy

    if materials is None:
        materials = phonon_materials(dataset, n)
    # one read of the archive for all materials; frames built exactly as chapter 7 builds them
    refs = datasets.load(dataset, subset=list(materials))
    frames: list[Atoms] = []
    for ref in refs:
        first = (ref.displacement_dataset or {}).get("first_atoms") or []
        if not first or any("forces" not in d for d in first):
            BAD_REFERENCES[f"{dataset}:{ref.material_id}"] = "the reference holds no displaced supercells with DFT forces"
            continue
        frames.extend(high_energy.phonon_frames(ref))
    return frames


BAD_REFERENCES: dict[str, str] = {}


# --------------------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------------------

LAST_SKIPPED: dict[str, str] = {}


def cached_frames(frames: Sequence[Atoms], model: str, dataset: str) -> list[Atoms]:
    """The frames of those materials whose predictions by ``model`` are already cached (same geometry)."""
    from .. import config

    root = config.results_dir() / "predictions" / cache._safe(dataset) / cache._safe(models.model_id(model))
    groups: dict[str, list[Atoms]] = {}
    for i, a in enumerate(frames):
        groups.setdefault(str(a.info.get("material_id", f"frame{i}")), []).append(a)
    out: list[Atoms] = []
    for mid, sub in groups.items():
        data = cache.load_arrays(root / f"{cache._safe(mid)}.npz")
        if data is not None and str(data.get("geometry_hash")) == predict.geometry_hash(sub):
            out.extend(sub)
    return out


def _subtract_residual(frames: Sequence[Atoms], preds: list[dict]) -> list[dict]:
    """Drop each material's undisplaced reference frame and subtract its model forces from the
    material's other frames (chapter 7's convention for phonon displacements; a no-op for
    frame sets without a reference frame)."""
    ref_ids = {(str(a.info.get("material_id")), str(a.info.get("frame_id"))) for a in frames
               if a.info.get("residual_reference")}
    if not ref_ids:
        return preds
    residual = {p["material_id"]: np.asarray(p["forces"]) for p in preds
                if (str(p["material_id"]), str(p["frame_id"])) in ref_ids}
    out = []
    for p in preds:
        if (str(p["material_id"]), str(p["frame_id"])) in ref_ids:
            continue
        r = residual.get(p["material_id"])
        out.append({**p, "forces": np.asarray(p["forces"]) - r if r is not None else p["forces"]})
    return out


def zoo_table(frames: Sequence[Atoms], model_names: Sequence[str], dataset: str,
              progress: bool = True, batch_size: int = 2, compute: bool = True) -> "Any":
    """Per-(model, material) force metrics (softening scale, MAE, cMAE) from cached predictions.

    Models that cannot run are skipped (see :func:`model_card`); materials with an element a
    model does not cover are skipped for that model (``predict.skipped_materials``).
    """
    import pandas as pd

    ok, skipped = models.runnable(list(model_names))
    preds = {}
    for name in ok:
        try:
            # small batches: CHGNet's graphs of 500-atom supercells take GBs per batch of 16
            use = frames if compute else cached_frames(frames, name, dataset)
            if not use:
                skipped[name] = "no cached predictions for these frames (run the zoo CLI or the full preset)"
                continue
            preds[name] = _subtract_residual(use, predict.predict_cached(use, name, dataset=dataset,
                                                                            progress=progress,
                                                                            batch_size=batch_size))
        except Exception as exc:  # e.g. SevenNet without a cached prediction here, EMT on oxides
            skipped[name] = f"{type(exc).__name__}: {exc}"
            log.warning("skipping %s: %s", name, exc)
    LAST_SKIPPED.clear()
    LAST_SKIPPED.update(skipped)
    if not preds:
        return pd.DataFrame(columns=["model", "material_id", "softening_scale"])
    table = predict.frame_table(frames, preds)
    per = metrics.per_material(table)
    per["dataset"] = dataset
    per["training_family"] = per["model"].map(training_family)
    return per


def summary(per_material, card=None) -> "Any":
    """Per model: n materials, median s and quartiles, fraction with s < 1, median MAE / cMAE."""
    import pandas as pd

    t = per_material.dropna(subset=["softening_scale"]) if "softening_scale" in per_material else per_material
    if not len(t) or "dataset" not in t:
        return pd.DataFrame(columns=["model", "dataset", "n_materials", "median_s", "q1_s", "q3_s",
                                     "frac_softened", "median_mae", "median_cmae", "training_family",
                                     "parameters_counted", "parameters_reported", "training_set"])
    rows = []
    for (model, dataset), g in t.groupby(["model", "dataset"], sort=False):
        s = g["softening_scale"].to_numpy(float)
        q1, med, q3 = np.quantile(s, [0.25, 0.5, 0.75])
        rows.append({"model": model, "dataset": dataset, "n_materials": len(g), "median_s": med,
                     "q1_s": q1, "q3_s": q3,
                     # softened: s below 1 by more than rounding (an exact model can give 1 - 1e-16)
                     "frac_softened": float(np.mean(s < 1 - 1e-9)),
                     "median_mae": float(np.median(g["mae"])), "median_cmae": float(np.median(g["cmae"])),
                     "training_family": training_family(model)})
    out = pd.DataFrame(rows)
    if card is not None and len(out):
        out = out.merge(card[["model", "parameters_counted", "parameters_reported", "training_set"]],
                        on="model", how="left")
    return out


def common_materials(per_material) -> "Any":
    """Restrict to materials every model in the table covers (a like-for-like comparison)."""
    t = per_material.dropna(subset=["softening_scale"])
    n_models = t["model"].nunique()
    counts = t.groupby("material_id")["model"].nunique()
    keep = counts[counts == n_models].index
    return t[t.material_id.isin(keep)]


# --------------------------------------------------------------------------------------
# chapter 7's frames and records (the zoo's default data)
# --------------------------------------------------------------------------------------

def zoo_ids(dataset: str, preset: str = "default") -> list[str]:
    """Chapter 7's material list of ``dataset`` for ``preset`` (the same frames, the same records)."""
    from . import high_energy

    return high_energy.preset_ids(dataset, preset)


def available_datasets(datasets_: Sequence[str] = ZOO_DATASETS) -> list[str]:
    """Those of ``datasets_`` that are present here (high-energy sets only when they hold frames)."""
    from . import high_energy

    return [d for d in datasets_ if high_energy.availability(d)["available"]]


def _load(dataset: str, ids: Sequence[str]) -> list[Atoms]:
    """Chapter 7's frames of ``ids`` (phonon sets: one archive read for all materials)."""
    from . import high_energy

    if dataset in high_energy.PHONON_SETS:
        return phonon_frames(dataset, materials=list(ids))
    frames, _ = high_energy.load_frames(dataset, list(ids))
    return frames


def compute_models(model_names: Sequence[str], preset: str = "default", datasets_: Sequence[str] = ZOO_DATASETS,
                   progress: bool = True) -> dict:
    """Fill chapter 7's record store (``high_energy``) for every runnable model on chapter 7's
    frames: per dataset the frames are read once, then the models run one after the other
    (resumable: existing records are kept). Returns ``{model: {dataset: skipped}}`` plus the
    models that cannot run, under ``"_not_runnable"``."""
    from . import high_energy

    ok, not_runnable = models.runnable(list(model_names))
    report: dict[str, Any] = {"_not_runnable": not_runnable, **{m: {} for m in ok}}
    for dataset in available_datasets(datasets_):
        ids = zoo_ids(dataset, preset)
        todo = sorted({mid for m in ok for mid in ids if high_energy.cached_record(m, dataset, mid) is None})
        frames = _load(dataset, todo) if todo else []
        for model in ok:
            try:
                skipped = high_energy.compute_dataset(dataset, [model], ids if not todo else None, progress=progress,
                                              parity=high_energy.parity_choice(dataset, ids),
                                              frames=frames if todo else None)
            except Exception as exc:  # e.g. EMT on oxides: reported, the other models go on
                log.warning("zoo %s %s failed: %s", model, dataset, exc)
                report[model][dataset] = {"*": f"{type(exc).__name__}: {exc}"}
                continue
            for mid in todo:  # materials that have no usable frames here
                if high_energy.cached_record(model, dataset, mid) is None:
                    skipped[model].setdefault(mid, BAD_REFERENCES.get(f"{dataset}:{mid}", "no frames / no record"))
            report[model][dataset] = skipped[model]
            log.warning("zoo %s %s: %d materials, %d skipped", model, dataset, len(ids), len(skipped[model]))
    return report


def record_table(model_names: Sequence[str], preset: str = "default",
                 datasets_: Sequence[str] = ZOO_DATASETS, compute_missing: bool = False,
                 ids: dict[str, Sequence[str]] | None = None) -> "Any":
    """Per-(model, dataset, material) softening scale, MAE, cMAE from chapter 7's records.

    Only reads the record store unless ``compute_missing`` (then :func:`compute_models` runs first).
    ``ids`` (``{dataset: material ids}``) replaces chapter 7's preset lists (any record set,
    e.g. a user data set computed with ``high_energy.compute_dataset(..., frames=...)``).
    Models without records for a dataset are simply absent; :data:`LAST_SKIPPED` says why.
    """
    import pandas as pd

    from . import high_energy

    failed: dict[str, str] = {}
    if compute_missing and ids is None:
        report = compute_models(model_names, preset, datasets_, progress=False)
        failed = {m: f"{d}: {r['*']}" for m, per_set in report.items() if m != "_not_runnable"
                  for d, r in per_set.items() if "*" in r}
    ok, skipped = models.runnable(list(model_names))
    skipped.update(failed)
    tables = []
    wanted = dict(ids) if ids is not None else {d: zoo_ids(d, preset) for d in available_datasets(datasets_)}
    for dataset, mids in wanted.items():
        t = high_energy.material_table(dataset, list(model_names), list(mids))
        if "error" in t:
            t = t[t["error"].isna()]
        tables.append(t)
    per = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=["model", "dataset", "material_id",
                                                                                      "softening_scale"])
    for name in model_names:
        if name not in skipped and not (per["model"] == name).any():
            skipped[name] = "no records in the cache (run `python -m softening_lib compute --chapter 10 --model NAME`)"
    LAST_SKIPPED.clear()
    LAST_SKIPPED.update(skipped)
    per["training_family"] = per["model"].map(training_family)
    return per


# --------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------

def _datasets_in(table, datasets_: Sequence[str] | None) -> list[str]:
    present = list(dict.fromkeys(table["dataset"])) if "dataset" in table else []
    return [d for d in (datasets_ or present) if d in set(present)]


def _dataset_title(dataset: str, n: int) -> str:
    from . import high_energy

    return f"{high_energy.DATASET_LABELS.get(dataset, dataset)}\n({n} materials)"


def _wrap_name(name: str, width: int = 12) -> str:
    """A model's display name broken after spaces and hyphens into lines of about ``width``
    characters (tick labels side by side that do not run into each other)."""
    import re

    parts = re.findall(r"[^ :-]+(?:[ :-]|$)", name)
    lines, cur = [], ""
    for p in parts:
        if cur and len(cur + p.rstrip()) > width:
            lines.append(cur.rstrip())
            cur = ""
        cur += p
    lines.append(cur.rstrip())
    return "\n".join(lines)


def fig_distributions(per_material, order: Sequence[str] | None = None, datasets_: Sequence[str] | None = None):
    """Softening-scale distribution per model (strip + box), one row per dataset, s = 1 marked."""
    import matplotlib.pyplot as plt

    from .. import plots

    t = per_material.dropna(subset=["softening_scale"])
    if "dataset" not in t:
        t = t.assign(dataset="frames")
    sets = _datasets_in(t, datasets_)
    order = [m for m in (order or list(dict.fromkeys(t.model))) if m in set(t.model)]
    n = max(len(sets), 1)
    # one panel per row: five models side by side need the column's whole width
    fig, axes = plt.subplots(n, 1, figsize=(max(1.45 * len(order), 5.0), 2.9 * n + 0.4), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, dataset in zip(axes[:, 0], sets):
        sub = t[t.dataset == dataset]
        here = [m for m in order if m in set(sub.model)]
        for i, model in enumerate(here):
            s = sub.loc[sub.model == model, "softening_scale"].to_numpy(float)
            ax.boxplot([s], positions=[i], widths=0.5, showfliers=False, medianprops={"color": plots.color(model)})
            ax.scatter(i + rng.uniform(-0.18, 0.18, s.size), s, s=12, alpha=0.6, color=plots.color(model), lw=0)
        ax.axhline(1.0, color="0.3", ls="--", lw=0.8)
        ax.set_xticks(range(len(here)))
        ax.set_xticklabels([_wrap_name(plots.label(m)) for m in here], fontsize=9)
        ax.set_xlim(-0.6, len(order) - 0.4)
        ax.set_title(_dataset_title(dataset, sub.material_id.nunique()).replace("\n", " "), fontsize=10, loc="left")
        ax.set_ylabel("softening scale s", fontsize=10)
        ax.grid(axis="y", color="0.93", lw=0.6)
    fig.tight_layout()
    return fig


def _dodge(xs: Sequence[float], log: bool = True, gap: float = 0.035) -> list[float]:
    """Positions moved apart where markers would overlap: points closer than ``gap`` (decades on
    a log axis, else axis units) are spread symmetrically about their group's centre."""
    xs = np.asarray(xs, dtype=float)
    u = np.log10(xs) if log else xs.copy()
    order = np.argsort(u, kind="stable")
    out = u.copy()
    groups, cur = [], [order[0]] if len(order) else []
    for i in order[1:]:
        if u[i] - u[cur[-1]] < gap:
            cur.append(i)
        else:
            groups.append(cur)
            cur = [i]
    if cur:
        groups.append(cur)
    for g in groups:
        centre = float(np.mean(u[g]))
        for k, i in enumerate(g):
            out[i] = centre + (k - (len(g) - 1) / 2) * gap
    return list(10 ** out if log else out)


def fig_size_and_training(summary_table, datasets_: Sequence[str] | None = None):
    """Median s (IQR bars) vs parameter count (left) and by training set (right), one row per
    dataset. Markers that would overlap are moved apart; only the training sets present get a
    column; the legend sits under the panels."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from .. import plots

    t = summary_table.copy()
    if "dataset" not in t:
        t["dataset"] = "frames"
    sets = _datasets_in(t, datasets_)
    families = [f for f in FAMILY_MARKERS if f in set(t.get("training_family", []))] or ["other"]
    n = max(len(sets), 1)
    fig, axes = plt.subplots(n, 2, figsize=(8.4, 3.0 * n + 1.0), squeeze=False,
                             gridspec_kw={"width_ratios": [1.5, max(0.55 * len(families), 0.9)]})

    def count(row):
        c = row.get("parameters_counted")
        if c is None or c != c:
            c = row.get("parameters_reported")
        return float(c) if c is not None and c == c and c > 0 else None

    for row_axes, dataset in zip(axes, sets):
        sub = t[t.dataset == dataset].reset_index(drop=True)
        sized = [i for i in range(len(sub)) if count(sub.iloc[i]) is not None]
        xpos = dict(zip(sized, _dodge([count(sub.iloc[i]) for i in sized]))) if sized else {}
        fam_members = {f: [i for i in range(len(sub)) if sub.training_family[i] == f] for f in families}
        for i, row in sub.iterrows():
            yerr = [[row.median_s - row.q1_s], [row.q3_s - row.median_s]]
            kw = dict(color=plots.color(row.model), marker=FAMILY_MARKERS.get(row.training_family, "^"), ms=7,
                      capsize=3, ls="none")
            if i in xpos:
                row_axes[0].errorbar([xpos[i]], [row.median_s], yerr=yerr, label=plots.label(row.model), **kw)
            if row.training_family in families:
                members = fam_members[row.training_family]
                k = members.index(i)
                x = families.index(row.training_family) + (k - (len(members) - 1) / 2) * min(0.6 / len(members), 0.2)
                row_axes[1].errorbar([x], [row.median_s], yerr=yerr, **kw)
        n_mat = int(sub["n_materials"].max()) if len(sub) else 0
        row_axes[0].set_xscale("log")
        row_axes[0].set_ylabel("median s (IQR)")
        row_axes[0].set_title(_dataset_title(dataset, n_mat).replace("\n", " "), fontsize=10, loc="left")
        row_axes[1].set_xticks(range(len(families)))
        row_axes[1].set_xticklabels(families)
        row_axes[1].set_xlim(-0.5, len(families) - 0.5)
        row_axes[1].sharey(row_axes[0])
        row_axes[1].tick_params(labelleft=False)
        if xpos:  # a little room either side of the dodged markers
            lo, hi = min(xpos.values()), max(xpos.values())
            row_axes[0].set_xlim(lo / 10 ** 0.08, hi * 10 ** 0.08)
        for ax in row_axes:
            ax.axhline(1.0, color="0.3", ls="--", lw=0.8)
            ax.grid(axis="y", color="0.93", lw=0.6)
    axes[-1][0].set_xlabel("parameters (counted from the loaded weights)")
    axes[-1][1].set_xlabel("training set")
    # under the panels: one entry per model (its colour) and one per training set (its marker)
    seen: dict[str, Any] = {}
    for ax in axes[:, 0]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    handles, labels_ = list(seen.values()), list(seen)
    for f in families:
        handles.append(Line2D([], [], color="0.35", marker=FAMILY_MARKERS[f], ls="none", ms=7))
        labels_.append(TRAINING_FAMILIES.get(f, f))
    fig.tight_layout(rect=(0, 0.9 / (3.0 * n + 1.0) + 0.02 * ((len(handles) + 1) // 2 > 4), 1, 1))
    if handles:
        fig.legend(handles, labels_, loc="lower center", ncol=2, fontsize=9, frameon=False,
                   handletextpad=0.3, columnspacing=1.5)
    return fig


def scaled_emt(c: float = 0.8):
    """A debug 'model': EMT with every output multiplied by ``c`` (s must come out as c)."""
    from ase.calculators.emt import EMT

    return models.ScaledCalculator(EMT(), c)


# --------------------------------------------------------------------------------------
# the task contract (softening_lib.task): cases / compute / reference
# --------------------------------------------------------------------------------------

def cases(preset: str = "default", *, datasets_: Sequence[str] = ZOO_DATASETS) -> list[dict]:
    """Chapter 7's (dataset, material) cases of the preset, on the data sets that are here
    (the zoo's numbers are chapter 7's records: the same cases, the same cache)."""
    from . import high_energy

    return high_energy.cases(preset, datasets_=available_datasets(datasets_))


def compute(model: str, cases: Sequence[dict], *, calc=None, progress=None,
            cached_only: bool = False) -> list[dict]:
    """One record per (dataset, material) for ``model``, in chapter 7's record store.
    ``cached_only``: read the store only (the chapter's "default" build); a material not
    there is a skipped record ("not in the cache")."""
    from .. import task
    from . import high_energy

    if not cached_only:
        return high_energy.case_records(model, cases, calc=calc, progress=progress)
    here = [c for c in cases if c.get("material_id") is None or high_energy._is_cached(model, c)]
    got = {r["case"]: r for r in high_energy.case_records(model, here, calc=calc, progress=progress)}
    return [got.get(c["id"]) or task.record(c["id"], model, "skipped", "not in the cache (this preset reads it only)")
            for c in cases]


def reference(**_: Any) -> None:
    """The DFT forces are the data sets' own (chapter 7): no separate reference table."""
    return None
