"""Chapter 9: one-label linear correction vs few-shot fine-tuning vs training from scratch.

The experiment (paper Fig. 6a right, SI Figs. 3-4), on any set of DFT-labelled frames of one
compound:

1. split the frames once (seed 0) into a *pool* of at most ``pool_size`` training
   candidates and a fixed held-out *test* set (everything else);
2. for each training-set size N and seed, draw N frames from the pool (seeded) and
   * fit the closed-form linear correction c = Σ F_model·F_DFT / Σ F_model² on them,
   * fine-tune the pretrained model on them (:func:`softening_lib.finetune.finetune`),
   * train the same architecture from scratch on them;
3. score every model on the same test frames (force MAE, softening scale, cMAE).

Every run is one record in ``ResultStore("fine_tuning")`` (metrics, settings, wall time,
train/val ids) plus an ``.npz`` with its test-set forces (float32), so the chapter renders
from the cache and a killed campaign resumes. :func:`run_campaign` runs the missing records
in priority order (the paper's headline runs first).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from ase import Atoms

from .. import cache, datasets, finetune, metrics, models, predict

log = logging.getLogger(__name__)

TASK = "fine_tuning"
METHODS = ("pretrained", "linear", "finetune", "scratch")
METHOD_LABELS = {"pretrained": "pretrained", "linear": "linear correction (closed form)",
                 "finetune": "fine-tuned", "scratch": "trained from scratch"}
METHOD_COLORS = {"pretrained": "#999999", "linear": "#E69F00", "finetune": "#0072B2", "scratch": "#D55E00"}

# the showcase this session could afford offline (see the chapter): 60 PBEsol displaced
# supercells (40 atoms) of a ZnS polytype; swap for wbm-he-gpaw frames when they exist.
DEFAULT_DATASET = "phonondb-pbesol"
DEFAULT_MATERIAL = "mp-561286"


@dataclass
class Split:
    dataset: str
    material_id: str
    frames: list[Atoms]
    pool: list[int]
    test: list[int]

    def ids(self, idx: Sequence[int]) -> list[str]:
        return [str(self.frames[i].info.get("frame_id", i)) for i in idx]

    def train_indices(self, n: int, seed: int) -> list[int]:
        """N training frames drawn from the pool (seeded; seed 0, N = pool size -> the pool)."""
        if n > len(self.pool):
            raise ValueError(f"N={n} exceeds the training pool of {len(self.pool)} frames")
        rng = np.random.default_rng(1000 + seed)
        return sorted(int(i) for i in rng.choice(self.pool, size=n, replace=False))


def load_frames(dataset: str = DEFAULT_DATASET, material_id: str = DEFAULT_MATERIAL) -> list[Atoms]:
    """Labelled frames of one material from any dataset (phonon force sets or frame sets)."""
    data = datasets.load(dataset, subset=[material_id])
    if data and hasattr(data[0], "frames"):  # PhononReference
        frames = [f for ref in data for f in ref.frames()]
    else:
        frames = [a for a in data if str(a.info.get("material_id")) == str(material_id)]
    if not frames:
        raise datasets.DatasetError(f"{dataset} has no frames for {material_id}")
    return frames


def make_split(frames: Sequence[Atoms], pool_size: int = 10, n_test: int | None = None,
               dataset: str = "?", material_id: str = "?") -> Split:
    """A fixed pool / test split (seed 0). ``n_test`` defaults to all frames outside the pool."""
    n = len(frames)
    if n < pool_size + 1:
        raise ValueError(f"{n} frames cannot hold a pool of {pool_size} and a test set")
    order = np.random.default_rng(0).permutation(n)
    pool = sorted(int(i) for i in order[:pool_size])
    rest = [int(i) for i in order[pool_size:]]
    test = sorted(rest if n_test is None else rest[:n_test])
    return Split(dataset=dataset, material_id=material_id, frames=list(frames), pool=pool, test=test)


def _dft(frames: Sequence[Atoms], idx: Sequence[int]) -> list[np.ndarray]:
    return [np.asarray(frames[i].get_forces(), dtype=float) for i in idx]


def score(dft_forces, model_forces) -> dict[str, float]:
    m = metrics.force_metrics(dft_forces, model_forces)
    return {"test_mae": m["mae"], "test_softening_scale": m["softening_scale"], "test_cmae": m["cmae"],
            "test_rmse": m["rmse"], "test_mean_abs_dft": m["mean_abs_dft"]}


def pretrained_forces(split: Split, model: str) -> list[np.ndarray]:
    """Pretrained-model forces on every frame (cached with predict_cached)."""
    tag = f"{split.dataset}"
    preds = predict.predict_cached(split.frames, model, dataset=tag, progress=False)
    by_id = {str(p["frame_id"]): p["forces"] for p in preds}
    return [np.asarray(by_id[str(a.info.get("frame_id", i))]) for i, a in enumerate(split.frames)]


def _key(split: Split, model: str, method: str, n: int, seed: int, settings: finetune.FineTuneSettings | None):
    s = None if settings is None else {k: v for k, v in settings.as_dict().items() if k not in ("notes", "seed", "from_scratch")}
    return cache.key_of(split.dataset, split.material_id, split.pool, split.test, models.model_id(model),
                        method, n, seed, s)


def _record_name(method: str, n: int, seed: int, key: str) -> str:
    return f"{method}-N{n}-seed{seed}-{key}"


def run_one(split: Split, model: str, method: str, n: int, seed: int,
            settings: finetune.FineTuneSettings | None = None, store: cache.ResultStore | None = None,
            recompute: bool = False, task: str = TASK) -> dict:
    """One (method, N, seed) run scored on the test frames; cached."""
    store = store or cache.ResultStore(task)
    settings = settings or finetune.FineTuneSettings()
    key = _key(split, model, method, n, seed, settings if method in ("finetune", "scratch") else None)
    name = _record_name(method, n, seed, key)
    if not recompute and store.has(model, name):
        return store.get(model, name)
    test_dft = _dft(split.frames, split.test)
    base = {"task": store.task, "dataset": split.dataset, "material_id": split.material_id, "model": model,
            "model_id": models.model_id(model), "method": method, "n_train_structures": n, "seed": seed,
            "test_ids": split.ids(split.test), "pool_ids": split.ids(split.pool), "n_test": len(split.test),
            "n_test_components": int(sum(f.size for f in test_dft))}
    t0 = time.perf_counter()
    if method in ("pretrained", "linear"):
        forces = pretrained_forces(split, model)
        test_pred = [forces[i] for i in split.test]
        c = 1.0
        train = []
        if method == "linear":
            train = split.train_indices(n, seed)
            c = finetune.linear_correction(_dft(split.frames, train), [forces[i] for i in train])
            test_pred = [c * f for f in test_pred]
        record = {**base, "c": c, "train_ids": split.ids(train), "wall_seconds": time.perf_counter() - t0}
    elif method in ("finetune", "scratch"):
        train = split.train_indices(n, seed)
        s = finetune.FineTuneSettings(**{**settings.as_dict(), "notes": [], "seed": seed,
                                         "from_scratch": method == "scratch"})
        calc, rec = finetune.finetune([split.frames[i] for i in train], model=model, settings=s)
        out = predict.predict([split.frames[i] for i in split.test], model, calc=calc)
        test_pred = out["forces"]
        record = {**base, **{k: v for k, v in rec.items() if k not in ("model", "method")},
                  "train_frame_ids": split.ids(train)}
    else:
        raise ValueError(f"unknown method {method!r}; one of {METHODS}")
    record.update(score(test_dft, test_pred))
    record["record"] = name
    cache.save_arrays(store.path(model, name).with_suffix(".npz"),
                      forces=np.concatenate(test_pred).astype(np.float32))
    store.put(model, name, record)
    return record


def test_forces(record: dict, store: cache.ResultStore | None = None) -> np.ndarray | None:
    task = record.get("task")
    store = store or cache.ResultStore(task if isinstance(task, str) else TASK)
    data = cache.load_arrays(store.path(record["model"], record["record"]).with_suffix(".npz"))
    return None if data is None else data["forces"].astype(float)


def plan(ns: Sequence[int] = (1, 2, 5, 10), seeds: Sequence[int] = (0, 1, 2),
         scratch_seeds: Sequence[int] | None = None, pool_size: int = 10) -> list[tuple[str, int, int]]:
    """(method, N, seed) in priority order: the paper's headline runs first."""
    scratch_seeds = list(seeds if scratch_seeds is None else scratch_seeds)
    ns = [n for n in ns if n <= pool_size]
    nmax = max(ns)
    jobs: list[tuple[str, int, int]] = [("pretrained", nmax, 0)]
    jobs += [("linear", n, s) for n in ns for s in seeds]
    head = [("finetune", nmax, seeds[0]), ("finetune", 1, seeds[0]), ("scratch", nmax, scratch_seeds[0])]
    jobs += [j for j in head if j[1] in ns]
    rest = [("finetune", n, s) for s in seeds for n in ns] + [("scratch", n, s) for s in scratch_seeds for n in ns]
    jobs += [j for j in rest if j not in jobs]
    return jobs


def run_campaign(split: Split, model: str = "chgnet-0.3.0", ns: Sequence[int] = (1, 2, 5, 10),
                 seeds: Sequence[int] = (0, 1, 2), scratch_seeds: Sequence[int] | None = None,
                 settings: finetune.FineTuneSettings | None = None, compute: bool | Sequence[str] = True,
                 progress: bool = True, max_seconds: float | None = None, task: str = TASK,
                 scheduler: Any = None, workers: int | None = None) -> "Any":
    """All records of the plan as a table; missing ones computed when ``compute``.

    ``compute`` may be a list of methods allowed to run (e.g. ``["pretrained", "linear"]``: the
    cheap ones); the others are read from the cache or reported as missing. ``workers`` /
    ``scheduler`` (:mod:`softening_lib.executor`): the missing runs (seeds, sizes, methods) go out
    as one Dask task each, at most ``max_seconds`` of starting them; the table is read afterwards.
    """
    import pandas as pd

    store = cache.ResultStore(task)
    allowed = set(METHODS) if compute is True else set() if compute is False else set(compute)
    jobs = plan(ns, seeds, scratch_seeds, pool_size=len(split.pool))
    if (workers is not None or scheduler is not None) and allowed:
        from functools import partial

        from .. import executor

        todo = [j for j in jobs if j[0] in allowed]
        executor.run_queue(todo, partial(_queue_run, split, model, settings, task), key=lambda j: j,
                           done=partial(_queue_done, split, model, settings, task), scheduler=scheduler,
                           workers=workers, progress=progress, desc=f"fine-tuning-{model}",
                           deadline=time.time() + max_seconds if max_seconds is not None else None)
        allowed = set()  # everything computable is cached now: read
    rows, t0 = [], time.perf_counter()
    iterator: Any = jobs
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(jobs, desc=f"fine-tuning {model}", unit="run")
    for method, n, seed in iterator:
        key = _key(split, model, method, n, seed, (settings or finetune.FineTuneSettings())
                   if method in ("finetune", "scratch") else None)
        name = _record_name(method, n, seed, key)
        rec = store.get(model, name)
        if rec is None and method in allowed and (max_seconds is None or time.perf_counter() - t0 < max_seconds):
            rec = run_one(split, model, method, n, seed, settings=settings, store=store)
        if rec is not None:
            rows.append({**rec, "missing": False,
                         "epochs": (rec.get("settings") or {}).get("epochs")})
        else:
            rows.append({"model": model, "method": method, "n_train_structures": n, "seed": seed,
                         "missing": True})
    return pd.DataFrame(rows)


def _job_name(split: Split, model: str, settings, job) -> str:
    method, n, seed = job
    key = _key(split, model, method, n, seed, (settings or finetune.FineTuneSettings())
               if method in ("finetune", "scratch") else None)
    return _record_name(method, n, seed, key)


def _queue_done(split: Split, model: str, settings, task: str, job) -> bool:
    return cache.ResultStore(task).has(model, _job_name(split, model, settings, job))


def _queue_run(split: Split, model: str, settings, task: str, job) -> dict:
    method, n, seed = job
    return run_one(split, model, method, n, seed, settings=settings, store=cache.ResultStore(task))


def missing_runs(table) -> list[str]:
    """Human-readable list of runs not in the cache."""
    if "missing" not in table:
        return []
    t = table[table["missing"].fillna(False).astype(bool)]
    return [f"{r.method} N={r.n_train_structures} seed={r.seed}" for r in t.itertuples()]


def paper_table(table, table_paper_protocol=None):
    """The paper's CHGNet numbers (mp-973966 AIMD, Fig. 5a / 6a) next to this chapter's."""
    import pandas as pd

    def pick(t, method, n):
        if t is None or not len(t):
            return None
        ok = t[~t["missing"].fillna(False).astype(bool)] if "missing" in t else t
        sel = ok[(ok.method == method) & (ok.n_train_structures == n)]
        return None if not len(sel) else sel

    t = table
    nmax = int(t.n_train_structures.max())
    rows = []
    from ..paper import published

    spec = [("pretrained", nmax, "pretrained", published("fig6a_mae_before_chgnet"), published("fig6a_s_before_chgnet")),
            ("linear", 1, "linear correction, 1 structure", published("fig6a_mae_after_chgnet"),
             published("fig6a_s_after_chgnet")),
            ("finetune", nmax, f"fine-tuned, {nmax} structures", published("fig6a_ft_mae_chgnet"), None),
            ("scratch", nmax, f"from scratch, {nmax} structures", None, None)]
    for method, n, label, p_mae, p_s in spec:
        sel = pick(t, method, n)
        row = {"setting": label, "paper MAE (eV/Å)": p_mae, "paper s": p_s,
               "book MAE (meV/Å), mean over seeds": None if sel is None else 1000 * float(sel.test_mae.mean()),
               "book s": None if sel is None else float(sel.test_softening_scale.mean()),
               "book seeds": 0 if sel is None else int(sel.seed.nunique())}
        if table_paper_protocol is not None:
            sel100 = pick(table_paper_protocol, method, n)
            row["book MAE, 100 epochs (meV/Å)"] = None if sel100 is None or method in ("pretrained", "linear") \
                else 1000 * float(sel100.test_mae.mean())
        rows.append(row)
    return pd.DataFrame(rows)


def summary(table) -> "Any":
    """Mean, spread (std, min, max) of test force MAE per (method, N)."""
    t = table[~table["missing"].fillna(False).astype(bool)] if "missing" in table else table
    t = t[t.method != "pretrained"]
    g = t.groupby(["method", "n_train_structures"])
    out = g.agg(n_seeds=("seed", "nunique"), test_mae_mean=("test_mae", "mean"), test_mae_std=("test_mae", "std"),
                test_mae_min=("test_mae", "min"), test_mae_max=("test_mae", "max"),
                test_s_mean=("test_softening_scale", "mean"),
                wall_seconds_mean=("wall_seconds", "mean")).reset_index()
    return out


def headline(table) -> "Any":
    """One row per panel of the parity figure: pretrained, linear(1), ft(1), ft(Nmax), scratch(Nmax), seed 0."""
    import pandas as pd

    t = table[~table["missing"].fillna(False).astype(bool)] if "missing" in table else table
    nmax = int(t.n_train_structures.max())
    want = [("pretrained", nmax), ("linear", 1), ("finetune", 1), ("finetune", nmax), ("scratch", nmax)]
    rows = []
    for method, n in want:
        sel = t[(t.method == method) & (t.n_train_structures == n)].sort_values("seed")
        if len(sel):
            rows.append(sel.iloc[0])
    return pd.DataFrame(rows).reset_index(drop=True)


# --------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------

def _panel_title(row) -> str:
    m = row["method"]
    if m == "pretrained":
        return "pretrained"
    if m == "linear":
        return f"linear correction, N={int(row['n_train_structures'])}"
    word = "fine-tuned" if m == "finetune" else "from scratch"
    return f"{word}, N={int(row['n_train_structures'])}"


def fig_parity(split: Split, table, model: str = "chgnet-0.3.0"):
    """Force parity on the held-out frames, one panel per method (Fig. 6a analogue)."""
    import matplotlib.pyplot as plt

    from .. import plots

    rows = headline(table)
    dft = np.concatenate(_dft(split.frames, split.test)).ravel()
    ncol = min(3, len(rows))  # legible at page width: at most three panels per row
    nrow = (len(rows) + ncol - 1) // ncol
    fig, grid = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, 3.4 * nrow), squeeze=False)
    for extra in grid.ravel()[len(rows):]:
        extra.set_visible(False)
    axes = [list(grid.ravel()[:len(rows)])]
    lim = float(np.max(np.abs(dft))) * 1.1
    for ax, (_, row) in zip(axes[0], rows.iterrows()):
        pred = test_forces(row.to_dict())
        if pred is None:
            ax.set_axis_off()
            continue
        plots.parity(ax, dft, pred.ravel(), model=model, xlabel="DFT force (eV/Å)",
                     ylabel="model force (eV/Å)" if ax.get_subplotspec().is_first_col() else "", lim=(-lim, lim),
                     color_=METHOD_COLORS[row["method"]], s=3,
                     annotate={"MAE": f"{row['test_mae'] * 1000:.2f} meV/Å",
                               "s": f"{row['test_softening_scale']:.3f}"})
        ax.set_title(_panel_title(row), fontsize=10)
    fig.tight_layout()
    return fig, rows


def fig_learning_curve(table, model: str = "chgnet-0.3.0", pretrained_mae: float | None = None):
    """Test force MAE vs number of training structures (mean over seeds, min-max band, points)."""
    import matplotlib.pyplot as plt

    t = table[~table["missing"].fillna(False).astype(bool)] if "missing" in table else table
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6))
    for method in ("linear", "finetune", "scratch"):
        sel = t[t.method == method]
        if not len(sel):
            continue
        g = sel.groupby("n_train_structures")
        n = np.array(sorted(g.groups))
        for ax, col, scale in ((axes[0], "test_mae", 1000), (axes[1], "test_softening_scale", 1)):
            mean = g[col].mean().loc[n].to_numpy() * scale
            lo = g[col].min().loc[n].to_numpy() * scale
            hi = g[col].max().loc[n].to_numpy() * scale
            ax.plot(n, mean, "-o", color=METHOD_COLORS[method], label=METHOD_LABELS[method], ms=4)
            ax.fill_between(n, lo, hi, color=METHOD_COLORS[method], alpha=0.18, lw=0)
            ax.scatter(sel["n_train_structures"], sel[col] * scale, color=METHOD_COLORS[method], s=8, alpha=0.6)
    pre = t[t.method == "pretrained"]
    if len(pre):
        axes[0].axhline(float(pre.test_mae.iloc[0]) * 1000, color=METHOD_COLORS["pretrained"], ls="--",
                        label="pretrained")
        axes[1].axhline(float(pre.test_softening_scale.iloc[0]), color=METHOD_COLORS["pretrained"], ls="--")
        if "test_mean_abs_dft" in pre:
            axes[0].axhline(float(pre.test_mean_abs_dft.iloc[0]) * 1000, color="0.2", ls=":", lw=1,
                            label="zero-force baseline (mean |F_DFT|)")
    axes[1].axhline(1.0, color="0.3", lw=0.8, ls=":")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("training structures N")
        ns = sorted(t.n_train_structures.unique())
        ax.set_xticks(ns)
        ax.set_xticklabels([str(int(v)) for v in ns])
    axes[0].set_ylabel("test force MAE (meV/Å)")
    axes[0].set_ylim(bottom=0)
    axes[1].set_ylabel("test softening scale s")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def fig_training_history(table, model: str = "chgnet-0.3.0"):
    """Validation force MAE per epoch of the headline fine-tuned and from-scratch runs."""
    import matplotlib.pyplot as plt

    t = table[~table["missing"].fillna(False).astype(bool)] if "missing" in table else table
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    nmax = int(t.n_train_structures.max())
    for method in ("finetune", "scratch"):
        sel = t[(t.method == method) & (t.n_train_structures == nmax)].sort_values("seed")
        if not len(sel) or not isinstance(sel.iloc[0].get("history"), list):
            continue
        hist = sel.iloc[0]["history"]
        ep = [h["epoch"] + 1 for h in hist]
        ax.plot(ep, [h.get("train_f_mae", np.nan) * 1000 for h in hist], color=METHOD_COLORS[method],
                lw=1, ls="--", label=f"{METHOD_LABELS[method]}: train")
        if any("val_f_mae" in h for h in hist):
            ax.plot(ep, [h.get("val_f_mae", np.nan) * 1000 for h in hist], color=METHOD_COLORS[method],
                    lw=1.6, label=f"{METHOD_LABELS[method]}: validation")
    ax.set_yscale("log")
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("epoch")
    ax.set_ylabel("force MAE (meV/Å)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def wall_time_table(table):
    t = table[~table["missing"].fillna(False).astype(bool)] if "missing" in table else table
    t = t[t.method.isin(["finetune", "scratch"])]
    cols = ["method", "n_train_structures", "seed", "n_train", "n_val", "checkpoint_epoch", "wall_seconds",
            "test_mae", "test_softening_scale"]
    return t[[c for c in cols if c in t]].sort_values(["method", "n_train_structures", "seed"]).reset_index(drop=True)


# --------------------------------------------------------------------------------------
# the task contract (softening_lib.task): cases / compute / reference
# --------------------------------------------------------------------------------------

SMOKE_TASK = "_smoke_fine_tuning"  # the smoke preset's scratch store (2 epochs: not the book's numbers)


def cases(preset: str = "default", *, dataset: str = DEFAULT_DATASET, material: str = DEFAULT_MATERIAL,
          pool_size: int = 10, ns: Sequence[int] = (1, 2, 5, 10), seeds: Sequence[int] = (0, 1, 2),
          scratch_seeds: Sequence[int] = (0, 1), epochs: int = 30, epochs_paper: int = 100) -> list[dict]:
    """The chapter's runs, in priority order (:func:`plan`): smoke = N 1, 2, seed 0, 2 epochs, 10
    test frames, in a scratch store; default / full = the learning curve (``epochs``) and the
    paper's protocol (``epochs_paper``: fine-tune N = 1 and N max, scratch N max, seed 0)."""
    if preset not in ("smoke", "default", "full"):
        raise ValueError(f"preset must be smoke, default or full, got {preset!r}")
    base = {"dataset": dataset, "material": material, "pool_size": pool_size}
    if preset == "smoke":
        runs = [(m, n, s, 2) for m, n, s in plan([1, 2], [0], [0], pool_size=pool_size)]
        base.update(task=SMOKE_TASK, n_test=10)
    else:
        runs = [(m, n, s, epochs) for m, n, s in plan(list(ns), list(seeds), list(scratch_seeds), pool_size=pool_size)]
        nmax = max(n for n in ns if n <= pool_size)
        runs += [(m, n, s, epochs_paper) for m, n, s in plan([1, nmax], [0], [0], pool_size=pool_size)
                 if m in ("finetune", "scratch") and epochs_paper != epochs]
        base.update(task=TASK, n_test=None)
    out = []
    for method, n, seed, ep in runs:
        tag = f"-e{ep}" if method in ("finetune", "scratch") else ""
        out.append({**base, "id": f"{material}/{method}-N{n}-seed{seed}{tag}", "method": method, "n": n,
                    "seed": seed, "epochs": ep})
    return out


def compute(model: str, cases: Sequence[dict], *, calc=None, progress=None,
            compute_methods: Sequence[str] | None = None) -> list[dict]:
    """One record per run (method, N, seed, epochs) scored on the held-out frames; cached runs
    are read, the others trained (fine-tunes take minutes each on a CPU). ``calc`` is not used:
    fine-tuning needs the model's weights, not a calculator. ``compute_methods``: the methods
    that may run (the chapter's "default" build: the cheap ``pretrained`` and ``linear``); a
    missing run of another method is a skipped record ("not in the cache")."""
    from .. import task

    if calc is not None:
        raise ValueError("fine_tuning trains the registry model's weights; a calculator cannot be fine-tuned")
    splits: dict[tuple, Split | Exception] = {}
    out = []
    for case in task.progress_iter(list(cases), progress, desc=f"fine-tuning {model}"):
        skey = (case["dataset"], case["material"], case["pool_size"], case.get("n_test"))
        if skey not in splits:
            try:
                frames = load_frames(case["dataset"], case["material"])
                splits[skey] = make_split(frames, pool_size=case["pool_size"], n_test=case.get("n_test"),
                                          dataset=case["dataset"], material_id=case["material"])
            except Exception as exc:  # noqa: BLE001 - every run of this split gets the reason
                splits[skey] = exc
        split = splits[skey]
        if isinstance(split, Exception):
            out.append(task.record(case["id"], model, "skipped", f"frames not here: {split}"))
            continue
        store = cache.ResultStore(case.get("task", TASK))
        method = case["method"]
        settings = finetune.FineTuneSettings(epochs=case["epochs"])
        key = _key(split, model, method, case["n"], case["seed"], settings if method in ("finetune", "scratch") else None)
        cached = store.has(model, _record_name(method, case["n"], case["seed"], key))
        if not cached and compute_methods is not None and method not in compute_methods:
            out.append(task.record(case["id"], model, "skipped", "not in the cache (this preset reads it only)")
                       | {"method": method, "n_train_structures": case["n"], "seed": case["seed"],
                          "epochs": case["epochs"]})
            continue
        r = task.run_case(lambda: run_one(split, model, method, case["n"], case["seed"], settings=settings,
                                          store=store),
                          case["id"], model, cached=cached, finite=("test_mae", "test_softening_scale"),
                          elements=set(split.frames[0].get_chemical_symbols()))
        if r["status"] == "failed" and "no fine-tuning path" in r["reason"]:
            # a model that cannot be trained (an ASE calculator behind an import path): not computable, not an error
            r = task.record(case["id"], model, "skipped", r["reason"].split(": ", 1)[-1], method=method,
                            n_train_structures=case["n"], seed=case["seed"])
        keep = ("case", "model", "status", "reason", "cached", "method", "n_train_structures", "seed", "test_mae",
                "test_softening_scale", "test_cmae", "c", "wall_seconds", "record")
        out.append({k: v for k, v in r.items() if k in keep} | {"epochs": case["epochs"]})
    return out


def reference(*, dataset: str = DEFAULT_DATASET, material: str = DEFAULT_MATERIAL, **_: Any) -> None:
    """The DFT forces are the frames' own labels (held-out test frames of the split): no separate table."""
    return None
