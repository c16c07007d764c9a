"""How much do the campaign's GPAW settings change the forces? k-points, cutoff, smearing.

    SOFTENING_DATA_DIR=/work/shared/data OMP_NUM_THREADS=1 \\
        nice -n 5 python scripts/gpaw_convergence.py wbm-1-25229 --frames 0 3
    OMP_NUM_THREADS=1 nice -n 5 python scripts/gpaw_convergence.py --scan Si LiF MgO Cu

``--scan``: the convergence scan behind ``softening_lib.dft.DEFAULTS``: rattled, strained
Si, Cu, MgO, LiF cells (``dft.convergence_structures``) labelled over a cutoff series and a
k-point series (``dft.convergence_scan``, resumable), written to
``data/reference/gpaw_convergence/scan_<name>.json`` and ``scan_summary.csv``.

Takes frames of a finished campaign compound (``data/reference/wbm_he_gpaw/<id>.extxyz.gz``)
and relabels them with a denser k-grid, a higher cutoff and a wider smearing, one change at
a time, against the campaign setting. Reports, per variant, the slope through the origin of
variant forces against the campaign forces and the MAE. Results:
``data/reference/gpaw_convergence/<id>.json`` (+ ``summary.csv``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from softening_lib.campaign import CAMPAIGN_DFT, DEFAULT_OUT, atomic_write_bytes, atomic_write_json, read_extxyz  # noqa: E402

OUT = ROOT / "data" / "reference" / "gpaw_convergence"
VARIANTS = {
    "kpt_density_3.5": {"kpt_density": 3.5},
    "ecut_+200": "ecut+200",
    "smearing_0.1": {"smearing": 0.1},
}


def main(argv=None) -> int:
    from softening_lib.dft import label, resolve_settings

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("material_id", nargs="?")
    p.add_argument("--scan", nargs="*", metavar="NAME", help="run the cutoff / k-point scan of these "
                   "structures of dft.convergence_structures() (all when none is named)")
    p.add_argument("--frames", type=int, nargs="*", default=[0, 3])
    p.add_argument("--variants", nargs="*", default=list(VARIANTS))
    from softening_lib import executor

    executor.add_arguments(p)  # --workers N (scan structures at once, default 1), --scheduler
    args = p.parse_args(argv)
    if args.scan is not None:
        return scan(args.scan, scheduler=args.scheduler, workers=args.workers)
    if not args.material_id:
        p.error("give a campaign material id or --scan")
    frames = read_extxyz(DEFAULT_OUT / f"{args.material_id}.extxyz.gz")
    frames = [f for f in frames if int(f.info["frame_id"]) in set(args.frames)]
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{args.material_id}.json"
    result = json.loads(path.read_text()) if path.is_file() else {"material_id": args.material_id, "variants": {}}
    ref_forces = np.concatenate([f.get_forces().ravel() for f in frames])
    for name in args.variants:
        if name in result["variants"]:
            continue
        spec = VARIANTS[name]
        forces, recs = [], []
        for f in frames:
            base = resolve_settings(f, **CAMPAIGN_DFT)
            settings = dict(CAMPAIGN_DFT)
            if spec == "ecut+200":
                settings["ecut"] = base["ecut"] + 200
            else:
                settings.update(spec)
            lab, rec = label(f, **settings)
            forces.append(lab.get_forces().ravel())
            recs.append(rec)
            print(f"[{time.strftime('%H:%M:%S')}] {args.material_id} frame {f.info['frame_id']} {name}: "
                  f"{rec['wall_time_s']:.0f} s, kpts {rec['kpts']}, {rec['ecut_eV']:.0f} eV", flush=True)
        y = np.concatenate(forces)
        x = ref_forces
        result["variants"][name] = {
            "settings": settings, "kpts": [r["kpts"] for r in recs], "ecut_eV": recs[0]["ecut_eV"],
            "slope_vs_campaign": float((x * y).sum() / (x * x).sum()),
            "mae_vs_campaign": float(np.abs(y - x).mean()), "max_abs_diff": float(np.abs(y - x).max()),
            "cpu_time_s": float(sum(r["cpu_time_s"] for r in recs)),
        }
        result.update({"frames": args.frames, "campaign_settings": CAMPAIGN_DFT,
                       "campaign_kpts": [f.info.get("dft_kpts") for f in frames],
                       "formula": frames[0].info.get("formula"),
                       "max_abs_force_campaign": float(np.abs(x).max())})
        atomic_write_json(path, result)
        v = result["variants"][name]
        print(f"  {name}: slope {v['slope_vs_campaign']:.4f}, MAE {v['mae_vs_campaign'] * 1000:.1f} meV/A", flush=True)
    rows = []
    for p_ in sorted(f for f in OUT.glob("*.json") if not f.name.startswith("scan_")):  # campaign checks only
        r = json.loads(p_.read_text())
        for name, v in r["variants"].items():
            rows.append(f"{r['material_id']},{r.get('formula', '')},{name},{v['slope_vs_campaign']:.5f},"
                        f"{v['mae_vs_campaign']:.5f},{v['max_abs_diff']:.5f}")
    atomic_write_bytes(OUT / "summary.csv", ("material_id,formula,variant,slope_vs_campaign,mae_vs_campaign_eV_A,"
                                              "max_abs_diff_eV_A\n" + "\n".join(rows) + "\n").encode())
    return 0


def _scan_task(item: tuple) -> str:
    """One structure's scan (a Dask task): dft.convergence_scan, which rewrites its JSON atomically
    after every point and skips the points already there."""
    from softening_lib import dft

    name, atoms = item
    dft.convergence_scan(atoms, OUT / f"scan_{name}.json")
    return name


def scan(names, *, scheduler=None, workers: int | None = None) -> int:
    """The cutoff / k-point scans, one Dask task per structure (softening_lib.executor.run_queue;
    ``workers`` processes, default 1: one GPAW at a time); the summary afterwards."""
    import pandas as pd

    from softening_lib import dft, executor

    structures = dft.convergence_structures()
    unknown = set(names) - set(structures)
    if unknown:
        raise SystemExit(f"unknown scan structure(s) {sorted(unknown)}; choose from {sorted(structures)}")
    OUT.mkdir(parents=True, exist_ok=True)
    n_workers = workers or 1
    executor.run_queue([(name, structures[name]) for name in names or list(structures)], _scan_task,
                       key=lambda it: it[0], scheduler=scheduler, workers=n_workers, desc="gpaw-scan",
                       env=executor.gpaw_env(n_workers, scheduler))
    tables = [dft.scan_table(json.loads(p_.read_text())) for p_ in sorted(OUT.glob("scan_*.json"))]
    table = pd.concat(tables, ignore_index=True)
    atomic_write_bytes(OUT / "scan_summary.csv", table.round(6).to_csv(index=False).encode())
    print(table.round(4).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
