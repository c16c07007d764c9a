#!/usr/bin/env python
"""Chapter 6's phonons on many cores: the task contract's cases, one process per core.

    python -m softening_lib compute --chapter 06 --model chgnet-0.3.0          # one process (the usual way)
    python scripts/run_phonons.py --model chgnet-0.3.0 --workers 16 [--stop-after-min 50] [--preset full]

What this adds to ``compute``: ``--workers N`` runs ``phonons.compute(model, [case])`` for every
(model, case) of ``phonons.cases(preset)`` in N one-thread processes, largest supercells first
so the pool drains evenly; ``--stop-after-min`` starts no new case after that many minutes.
Every result is one cache file written atomically (workers never share a file), so the
chapter and a later ``compute`` read them; rerunning computes only what is missing.
"""

from __future__ import annotations

import argparse
import os
import time


def _one(model: str, case: dict, stop_at: float | None) -> dict:
    if stop_at is not None and time.time() > stop_at:
        return {"case": case["id"], "model": model, "status": "skipped", "reason": "not started (time)"}
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from softening_lib.tasks import phonons

    return phonons.compute(model, [case])[0]


def _cost(case: dict) -> float:
    from softening_lib.tasks import phonons

    rec = phonons.cached("dft", case["dataset"], case["material_id"])
    return float(rec["n_atoms_supercell"] * (2 * rec["n_displacements"] + 1)) if rec and rec.get("status") == "ok" else 0.0


def main(argv=None) -> int:
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    from softening_lib import models, task
    from softening_lib.tasks import phonons

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", "-m", action="append", required=True, help="registry name, import path or @tag")
    ap.add_argument("--preset", default="default", choices=["smoke", "default", "full"])
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--stop-after-min", type=float, default=None)
    args = ap.parse_args(argv)
    names = models.expand(args.model) if hasattr(models, "expand") else args.model
    cases = phonons.cases(args.preset)
    for case in cases:  # DFT records (cheap, cached) give the cost order
        if case["kind"] == "phonons":
            phonons.run(case["dataset"], [case["material_id"]], [], progress=False)
    stop_at = time.time() + 60 * args.stop_after_min if args.stop_after_min else None
    for model in names:
        todo = sorted([c for c in cases if not phonons._case_cached(model, c)], key=lambda c: -_cost(c))
        records = {c["id"]: None for c in cases}
        with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(_one, model, c, stop_at): c for c in todo}
            for fut in as_completed(futures):
                try:
                    rec = fut.result()
                except Exception as exc:  # noqa: BLE001 - a dead worker must not stop the others
                    rec = task.record(futures[fut]["id"], model, "failed", f"{type(exc).__name__}: {exc}")
                records[rec["case"]] = rec
        done = phonons.compute(model, [c for c in cases if records[c["id"]] is None])  # cached ones: read
        records.update({r["case"]: r for r in done})
        print(task.summary_line("06", "phonons", model, args.preset, list(records.values())), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
