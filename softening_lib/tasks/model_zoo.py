"""Chapter 10: the model zoo -- softening scale of every runnable model vs size and training set.

For each model and each material of a frame set, the softening scale
``s = Σ F_DFT·F_model / Σ F_DFT²`` (paper Fig. 5, :func:`softening_lib.metrics.softening_scale`)
is computed from cached predictions (:func:`softening_lib.predict.predict_cached`, the same
cache chapter 7 fills), then summarised per model (median, quartiles, fraction softened) next
to the model's parameter count (counted from the loaded weights) and training set (MPF,
MPtrj, MatPES): the paper's model-size discussion and SI Figs. 6-7, extended to MatPES.

>>> from softening_lib.tasks import model_zoo
>>> frames = model_zoo.phonon_frames("jageo-pbe-68", n=8)
>>> per_mat = model_zoo.zoo_table(frames, ["chgnet-0.3.0", "m3gnet-matpes-pbe"], dataset="jageo-pbe-68")
>>> model_zoo.summary(per_mat)
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
from ase import Atoms

from .. import cache, datasets, metrics, models, predict

log = logging.getLogger(__name__)

TASK = "model_zoo"
ZOO_MODELS = ["chgnet-0.3.0", "m3gnet-mp-2021.2.8", "m3gnet-matpes-pbe", "tensornet-matpes-pbe",
              "mace-mp-0-medium"]
TRAINING_FAMILIES = {"MPF": "MPF (MP relaxation frames, 188 k)", "MPtrj": "MPtrj (MP relaxation trajectories, 1.58 M)",
                     "MatPES": "MatPES (MD-sampled PES, 2025)", "other": "other / user"}
FAMILY_MARKERS = {"MPF": "s", "MPtrj": "o", "MatPES": "D", "other": "^"}


# SevenNet-0 through an import path: its wheel ships the weights, but sevenn >= 0.11 pins
# e3nn >= 0.5 while mace-torch 0.3.16 pins e3nn == 0.4.4; sevenn 0.10.4 (no e3nn pin) runs
# with e3nn 0.4.4. Predictions may come from a side environment that has it (see chapter 10).
SEVENNET = "softening_lib.tasks.model_zoo:sevennet0"
EXTRA_SPECS = {
    SEVENNET: {"display_name": "SevenNet-0 (11Jul2024)", "training_set": "MPtrj (1.58 M structures)",
               "version": "sevenn 0.10.4 wheel, SevenNet_0__11Jul2024",
               "citation": "Y. Park et al., J. Chem. Theory Comput. 20, 4857 (2024)"},
}


def sevennet0(device: str = "cpu", **kw: Any):
    """SevenNet-0 (weights inside the ``sevenn`` wheel) as an ASE calculator."""
    try:
        import torch

        # sevenn 0.10.4 checkpoints (inside the wheel) pickle a `slice`; torch >= 2.6 loads with
        # weights_only=True and refuses it unless allow-listed
        torch.serialization.add_safe_globals([slice])
        from sevenn.calculator import SevenNetCalculator
    except ImportError as exc:
        raise models.ModelUnavailableError(
            f"SevenNet-0: the sevenn package is not installed here ({exc}). Fix: pip install "
            "'sevenn==0.10.4' braceexpand scikit-learn (sevenn>=0.11 needs e3nn>=0.5, which "
            "conflicts with mace-torch's e3nn==0.4.4)") from exc
    return SevenNetCalculator("7net-0", device=device, **kw)


def zoo_label(model: str) -> str:
    if model in EXTRA_SPECS:
        return EXTRA_SPECS[model]["display_name"]
    from .. import plots

    return plots.label(model)


def training_family(model: str) -> str:
    """MPF | MPtrj | MatPES | other, from the registry's training-set string."""
    try:
        text = EXTRA_SPECS[model]["training_set"] if model in EXTRA_SPECS else models.get_spec(model).training_set
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
        extra = EXTRA_SPECS.get(name, {})
        rows.append({"model": name, "display_name": extra.get("display_name", spec.display_name),
                     "version": extra.get("version", spec.version),
                     "available": ok, "reason": "" if ok else reason,
                     "parameters_counted": counted, "parameters_reported": spec.n_parameters,
                     "training_set": extra.get("training_set", spec.training_set), "training_family": training_family(name),
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
                                     "frac_softened", "median_mae", "median_cmae", "training_family"])
    rows = []
    for (model, dataset), g in t.groupby(["model", "dataset"], sort=False):
        s = g["softening_scale"].to_numpy(float)
        q1, med, q3 = np.quantile(s, [0.25, 0.5, 0.75])
        rows.append({"model": model, "dataset": dataset, "n_materials": len(g), "median_s": med,
                     "q1_s": q1, "q3_s": q3, "frac_softened": float(np.mean(s < 1)),
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
# figures
# --------------------------------------------------------------------------------------

def fig_distributions(per_material, order: Sequence[str] | None = None):
    """Softening-scale distribution per model (strip + box), s = 1 marked."""
    import matplotlib.pyplot as plt

    from .. import plots

    t = per_material.dropna(subset=["softening_scale"])
    order = [m for m in (order or list(dict.fromkeys(t.model))) if m in set(t.model)]
    fig, ax = plt.subplots(figsize=(1.6 * max(len(order), 2) + 2, 3.6))
    rng = np.random.default_rng(0)
    for i, model in enumerate(order):
        s = t.loc[t.model == model, "softening_scale"].to_numpy(float)
        ax.boxplot([s], positions=[i], widths=0.5, showfliers=False, medianprops={"color": plots.color(model)})
        ax.scatter(i + rng.uniform(-0.18, 0.18, s.size), s, s=10, alpha=0.6, color=plots.color(model), lw=0)
    ax.axhline(1.0, color="0.3", ls="--", lw=0.8)
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels([plots.label(m).replace(" ", "\n", 1) for m in order], fontsize=8)
    ax.set_ylabel("softening scale s (per material)")
    fig.tight_layout()
    return fig


def fig_size_and_training(summary_table):
    """Median s (IQR bars) vs parameter count (left) and by training set (right)."""
    import matplotlib.pyplot as plt

    from .. import plots

    t = summary_table.copy()
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6), gridspec_kw={"width_ratios": [1.3, 1]})
    for _, row in t.iterrows():
        n = row.get("parameters_counted") or row.get("parameters_reported")
        yerr = [[row.median_s - row.q1_s], [row.q3_s - row.median_s]]
        kw = dict(color=plots.color(row.model), marker=FAMILY_MARKERS.get(row.training_family, "^"), ms=7,
                  capsize=3, ls="none")
        if n:
            axes[0].errorbar([n], [row.median_s], yerr=yerr, label=plots.label(row.model), **kw)
        fam = list(FAMILY_MARKERS).index(row.training_family) if row.training_family in FAMILY_MARKERS else 3
        jitter = (hash(row.model) % 7 - 3) * 0.05
        axes[1].errorbar([fam + jitter], [row.median_s], yerr=yerr, **kw)
    axes[0].set_xscale("log")
    axes[0].set_xlabel("parameters (counted from the loaded weights)")
    axes[0].set_ylabel("median softening scale (IQR)")
    axes[0].legend(fontsize=7, loc="best")
    axes[1].set_xticks(range(4))
    axes[1].set_xticklabels(["MPF", "MPtrj", "MatPES", "other"])
    axes[1].set_xlim(-0.5, 3.5)
    axes[1].set_xlabel("training set")
    for ax in axes:
        ax.axhline(1.0, color="0.3", ls="--", lw=0.8)
    fig.tight_layout()
    return fig


def scaled_emt(c: float = 0.8):
    """A debug 'model': EMT with every output multiplied by ``c`` (s must come out as c)."""
    from ase.calculators.emt import EMT

    return models.ScaledCalculator(EMT(), c)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m softening_lib.tasks.model_zoo --n 8 --models ...``: fill the prediction cache."""
    import argparse

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--dataset", default="jageo-pbe-68")
    p.add_argument("--n", type=int, default=8, help="number of materials (chapter 7's order, cheapest first)")
    p.add_argument("--models", nargs="+", default=[m for m in ZOO_MODELS])
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    frames = phonon_frames(a.dataset, n=a.n)
    per = zoo_table(frames, a.models, dataset=a.dataset)
    card = model_card(a.models)
    print(card.to_string())
    print(summary(per, card).to_string())
    print("skipped:", LAST_SKIPPED)
    print("bad references:", BAD_REFERENCES)


if __name__ == "__main__":
    main()
