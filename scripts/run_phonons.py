#!/usr/bin/env python
"""Chapter 6's phonons on many cores or nodes: one Dask task per (model, material).

    python -m softening_lib compute --chapter 06 --model chgnet-0.3.0          # one process (the usual way)
    python scripts/run_phonons.py --model chgnet-0.3.0 --workers 16 [--stop-after-min 50] [--preset full]
    python scripts/run_phonons.py --model @paper --scheduler tcp://head:8786    # an existing Dask cluster
    python scripts/run_phonons.py --model @paper --scheduler slurm --workers 128 # dask-jobqueue (executor.slurm_cluster)

A thin command line over :func:`softening_lib.executor.compute_chapter`: every (model, case) of
``phonons.cases(preset)`` whose record is not cached becomes one task running
``phonons.compute(model, [case])`` in a single-threaded worker, largest supercells first
(``phonons.cost``) so the workers drain evenly; ``--stop-after-min`` starts no new case after that
many minutes. Every result is one cache file written atomically (workers never share a file), so
the chapter and a later ``compute`` read them; rerunning computes only what is missing; a killed
worker's case is run again on another worker.
"""

from __future__ import annotations

import argparse
import time


def main(argv=None) -> int:
    from softening_lib import executor, models
    from softening_lib.tasks import phonons

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", "-m", action="append", required=True, help="registry name, import path or @tag")
    ap.add_argument("--preset", default="default", choices=["smoke", "default", "full"])
    ap.add_argument("--stop-after-min", type=float, default=None)
    executor.add_arguments(ap)
    args = ap.parse_args(argv)
    names = models.expand(args.model)
    for case in phonons.cases(args.preset):  # DFT records (cheap, cached) give the cost order
        if case["kind"] == "phonons":
            phonons.run(case["dataset"], [case["material_id"]], [], progress=False)
    deadline = time.time() + 60 * args.stop_after_min if args.stop_after_min else None
    executor.compute_chapter("06", names, args.preset, scheduler=args.scheduler, workers=args.workers,
                             device=args.device, deadline=deadline)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
