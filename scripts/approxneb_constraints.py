"""How well posed is each ApproxNEB path of chapter 5? Its relaxed barrier with each of the
host atoms tied for farthest from the hop fixed in turn, and with the host's centre of mass
fixed instead (``migration.constraint_sensitivity``). Cached per (model, path) in the results
store (``data/results/migration_constraints/<model>/<path>.json``), read by chapter 5.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/approxneb_constraints.py [--models chgnet-0.3.0 ...]

About 9 CPU minutes per model on one core (8 paths, 4-5 schemes, 5 images each).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")


def main(argv: list[str] | None = None) -> int:
    from softening_lib import cache
    from softening_lib.predict import calculator
    from softening_lib.tasks import migration as mig

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["chgnet-0.3.0"])
    ap.add_argument("--paths", nargs="+", default=[p.id for p in mig.PATHS])
    ap.add_argument("--force", action="store_true", help="recompute cached paths")
    args = ap.parse_args(argv)
    store = cache.ResultStore(mig.CONSTRAINT_TASK)
    for model in args.models:
        calc = calculator(model)
        for pid in args.paths:
            if store.has(model, pid) and not args.force:
                print(f"{model} {pid}: cached")
                continue
            t0 = time.time()
            rec = {**mig.constraint_sensitivity(pid, calc), "model": model}
            rec["seconds"] = round(time.time() - t0, 1)
            store.put(model, pid, rec)
            print(f"{model} {pid}: spread {rec['spread']:.3f} eV {rec['e_kra']} ({rec['seconds']:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
