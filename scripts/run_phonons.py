#!/usr/bin/env python
"""The full phonon run of chapter 6 (paper Fig. 4): resumable, one job, cached per (model, material).

    export SOFTENING_DATA_DIR=/work/shared/data OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
    nice -n 10 .venv/bin/python scripts/run_phonons.py --models chgnet-0.3.0 > /tmp/phonons.log 2>&1 &

Per model, in order: the PBEsol selection (CsF first, then the PBE-103 overlap, then the
smallest PhononDB supercells; ``--n-pbesol``), then the 68 JaGeo PBE force sets. Rerunning
the same command skips everything already cached (``data/results/phonons/<model>/``).

On a many-core machine, ``--workers N`` runs the same plan as N one-thread processes
(one material per task, largest supercells first within each tier so the pool drains
evenly); ``--stop-after-min M`` starts no new task after M minutes (finished ones stay
cached, the next run resumes). Tiers, in order: the PBEsol selection of every model,
then the JaGeo PBE sets. Each result is one cache file written atomically, so workers
never share a file.

``--amplitude-scan`` runs only chapter 6's amplitude scan (beyond the paper): CHGNet and
M3GNet-MP phonons at the DFT geometry with finite displacements of 0.003-0.1 Å for the
materials of ``phonons.SCAN_IDS`` (a few minutes; cached, rerunning computes nothing).
"""

from __future__ import annotations

import argparse
import os
import time

from softening_lib import models
from softening_lib.tasks import phonons as P


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=None,
                    help="registry names, import paths or @tags; default: the models tagged 'default' "
                         "that run here (with --amplitude-scan: those tagged 'scan')")
    ap.add_argument("--n-pbesol", type=int, default=240)
    ap.add_argument("--sets", nargs="+", default=["pbesol", "pbe68"], choices=["pbesol", "pbe68"])
    ap.add_argument("--check-jageo", action="store_true",
                    help="first recompute the DFT max frequency of all 68 JaGeo force sets and compare "
                         "with the set's own benchmark_max_frequency column (1 %% check)")
    ap.add_argument("--report", action="store_true",
                    help="only print coverage, ratio summaries and timings (per material, projected totals)")
    ap.add_argument("--workers", type=int, default=1,
                    help="processes (one thread each); >1 runs the plan as a task pool")
    ap.add_argument("--stop-after-min", type=float, default=None,
                    help="with --workers: start no new task after this many minutes")
    ap.add_argument("--amplitude-scan", action="store_true",
                    help="only the chapter's amplitude scan (beyond the paper): model phonons at the DFT "
                         "geometry for finite displacements of 0.003-0.1 Å, materials phonons.SCAN_IDS (cached)")
    args = ap.parse_args()
    if args.models:
        args.models = models.expand(args.models)  # "@tag" -> the registry's models
    if args.amplitude_scan:
        amplitude_scan(args.models or list(P.SCAN_MODELS))
        return
    if args.models is None:
        args.models = models.runnable(models.tagged("default"))[0]  # the registry's, those that run here
    if args.workers > 1:
        parallel(args.models, args.sets, args.n_pbesol, args.workers, args.stop_after_min)
        return
    if args.report:
        report(args.models, P.pbesol_selection(args.n_pbesol))
        return
    # processing order, cheap first (the selection itself does not change): PBEsol by supercell
    # size, JaGeo by supercell atoms x structures; a killed run resumes from the cache
    sizes = P.pbesol_index().set_index("mp_id")["n_atoms_supercell"]
    pbesol_ids = sorted(P.pbesol_selection(args.n_pbesol), key=lambda m: (m not in P.SHOWCASE, sizes[m]))
    plan = {"pbesol": (P.PBESOL, pbesol_ids), "pbe68": (P.PBE68, P.jageo_ids(cheap_first=True))}
    if args.check_jageo:
        check_jageo()
    # the Fig. 4a showcase (CsF) for every model first: cheap, and the chapter needs it
    P.run(P.PBESOL, list(P.SHOWCASE), list(args.models), progress=False)
    # DFT-PBEsol of every material that also has a PBE reference (the functional shift, no model)
    P.run(P.PBESOL, P.pbe_overlap_ids(), [], progress=False)
    for model in args.models:
        for name in args.sets:
            dataset, ids = plan[name]
            t0 = time.time()
            table = P.run(dataset, ids, [model])
            m = table[table["model"] == model]
            print(f"[{time.strftime('%H:%M:%S')}] {model} on {dataset}: {len(ids)} materials, "
                  f"status {m['status'].value_counts().to_dict()}, {time.time() - t0:.0f} s this pass",
                  flush=True)
            ok = P.ratio_table(dataset, ids, [model])
            if not ok.empty:
                print(P.summarise(ok).to_string(index=False), flush=True)


def amplitude_scan(models: list[str]) -> None:
    """Chapter 6, beyond the paper: min/max frequency vs finite-displacement amplitude (cached)."""
    import pandas as pd

    t0 = time.time()
    table = P.amplitude_scan(list(P.SCAN_IDS), models, compute=True)
    pd.set_option("display.width", 200)
    print(table.round(3).to_string(index=False), flush=True)
    print(P.amplitude_note(table), flush=True)
    print(f"[{time.strftime('%H:%M:%S')}] amplitude scan done in {time.time() - t0:.0f} s", flush=True)


def _task_cost(dataset: str, mp_id: str) -> float:
    """Relative cost of one model run: supercell atoms x structures, from the cached DFT record."""
    rec = P.cached("dft", dataset, mp_id)
    if rec is None or rec.get("status") != "ok":
        return 0.0
    return float(rec["n_atoms_supercell"] * (2 * rec["n_displacements"] + 1))


def _one(task: tuple[str, str, str], stop_at: float | None) -> tuple[str, str, str, str, float]:
    dataset, mp_id, model = task
    if stop_at is not None and time.time() > stop_at:
        return dataset, mp_id, model, "not started (time)", 0.0
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    t0 = time.time()
    table = P.run(dataset, [mp_id], [model], progress=False)
    status = table.loc[table["model"] == model, "status"]
    return dataset, mp_id, model, str(status.iloc[0]) if len(status) else "?", time.time() - t0


def parallel(models: list[str], sets: list[str], n_pbesol: int, workers: int, stop_after_min: float | None) -> None:
    """The plan of :func:`main` as a pool of one-thread worker processes (see the module doc)."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    t_start = time.time()
    stop_at = t_start + 60 * stop_after_min if stop_after_min else None
    ids = {"pbesol": (P.PBESOL, P.pbesol_selection(n_pbesol)), "pbe68": (P.PBE68, P.jageo_ids())}
    tasks: list[tuple[str, str, str]] = []
    for name in [s for s in ("pbesol", "pbe68") if s in sets]:
        dataset, mids = ids[name]
        P.run(dataset, mids, [], progress=False)  # DFT records (cached) give the cost order
        tier = [(dataset, m, model) for model in models for m in mids
                if (rec := P.cached(model, dataset, m)) is None or rec.get("status") == "failed"]
        tasks += sorted(tier, key=lambda t: -_task_cost(t[0], t[1]))
    print(f"[{time.strftime('%H:%M:%S')}] {len(tasks)} tasks on {workers} workers "
          f"({', '.join(models)}; {', '.join(sets)})", flush=True)
    done: dict[str, int] = {}
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_one, t, stop_at) for t in tasks]
        for k, fut in enumerate(as_completed(futures), 1):
            try:
                dataset, mp_id, model, status, wall = fut.result()
            except Exception as exc:  # noqa: BLE001 - a dead worker must not stop the others
                print(f"  task failed outside the cache layer: {type(exc).__name__}: {exc}", flush=True)
                continue
            done[status] = done.get(status, 0) + 1
            if status != "not started (time)":
                print(f"[{time.strftime('%H:%M:%S')}] {k}/{len(tasks)} {model} {dataset} {mp_id}: {status} "
                      f"({wall:.0f} s)", flush=True)
    print(f"[{time.strftime('%H:%M:%S')}] done in {time.time() - t_start:.0f} s: {done}", flush=True)


def report(models: list[str], pbesol_ids: list[str]) -> None:
    import numpy as np
    import pandas as pd

    pd.set_option("display.width", 200)
    print(P.coverage_table(models, pbesol_ids).to_string(index=False))
    for dataset, ids in ((P.PBESOL, pbesol_ids), (P.PBE68, P.jageo_ids())):
        t = P.ratio_table(dataset, ids, models)
        if t.empty:
            continue
        print(f"\n{dataset}: model / DFT max frequency")
        print(P.summarise(t).round(3).to_string(index=False))
        for model, grp in t.groupby("model"):
            cpu, wall = grp["cpu_s"].to_numpy(float), grp["wall_s"].to_numpy(float)
            n = len(ids)
            print(f"  {model}: {len(grp)} materials, cpu per material mean {cpu.mean():.1f} s "
                  f"(median {np.median(cpu):.1f}, max {cpu.max():.1f}), wall mean {wall.mean():.1f} s; "
                  f"projected {n} materials: {cpu.mean() * n / 3600:.2f} h cpu = {cpu.mean() * n / 2 / 3600:.2f} h "
                  f"on 2 dedicated cores (one process per core)")
    r103 = P.pbe103_ratio_table(models)
    if not r103.empty:
        print("\nPhononDB-PBE 103 (model on the PBEsol structure):")
        print(P.summarise(r103[r103["model"] != "dft"]).round(3).to_string(index=False))
    ratios = pd.concat([P.ratio_table(P.PBESOL, pbesol_ids, models).assign(reference="pbesol"),
                        P.ratio_table(P.PBE68, None, models).assign(reference="pbe-jageo68")], ignore_index=True)
    common = P.common_summary(ratios, models)
    if not common.empty:
        print("\nOn the materials every model with results has:")
        print(common.round(3).to_string(index=False))
    imag = P.imaginary_table(models, pbesol_ids)
    if not imag.empty:
        print("\nImaginary modes (< %.1f THz), materials per model:" % P.IMAGINARY_THZ)
        print(P.imaginary_summary(imag).to_string(index=False))
    shift = P.functional_shift_table()
    if len(shift):
        print("\nDFT PBE / PBEsol max frequency:", shift.groupby("pbe_set")["pbe_over_pbesol"].describe().round(3).to_string())


def check_jageo() -> None:
    """Our phonopy pipeline on the 68 JaGeo DFT force sets vs the set's own max frequency."""
    import pandas as pd

    P.run(P.PBE68, P.jageo_ids(), [])  # DFT only (cached)
    table = P.jageo_check()
    pd.set_option("display.width", 200)
    print(table.round(4).to_string(index=False), flush=True)
    for line in P.jageo_check_summary(table):
        print(line, flush=True)


if __name__ == "__main__":
    main()
