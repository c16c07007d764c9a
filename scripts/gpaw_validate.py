"""Validate our GPAW labels against VASP: forces on PhononDB displaced supercells.

    SOFTENING_DATA_DIR=/work/shared/data OMP_NUM_THREADS=1 \\
        nice -n 5 python scripts/gpaw_validate.py                 # default list, resumable
    python scripts/gpaw_validate.py --materials mp-149 mp-1138    # some of them
    python scripts/gpaw_validate.py --summary                     # just rebuild the summary
    python scripts/gpaw_validate.py --workers 4                   # 4 materials at once (Dask)

For each material: every displaced supercell of the PhononDB (VASP-PBEsol) force set is
labelled with :func:`softening_lib.dft.label` using the same functional (PBEsol setups,
generated with GPAW's generator when missing) and the *campaign's* k-point density
(2.0 per reciprocal A, ``softening_lib.campaign.CAMPAIGN_DFT``) and cutoff rule (520 eV,
800 eV with O/F), so this checks the settings the WBM labels use. Reported per material:
slope through the origin ``sum(x*y)/sum(x*x)`` (x = VASP, y = GPAW force components),
MAE, RMSE and the largest |F|; target slope 1.00 +/- 0.03.

Output in ``data/reference/gpaw_validation/``: ``<mp-id>.json`` (settings record, metrics),
``<mp-id>.npz`` (VASP and GPAW forces, per frame), ``summary.csv`` and ``summary.json``.
Finished frames are checkpointed in ``$SOFTENING_CACHE_DIR/gpaw_validation_work/`` so a
killed run resumes. GPAW work is serialised with every other labelling process through
:func:`softening_lib.dft.gpaw_lock`.
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

from softening_lib import config, datasets  # noqa: E402
from softening_lib.campaign import CAMPAIGN_DFT, atomic_write_bytes, atomic_write_json  # noqa: E402

OUT = ROOT / "data" / "reference" / "gpaw_validation"
# The 20-atom chlorate/bromate cells (P2_13) first (done: their free Cl-O / Br-O bond sits at a
# different length in GPAW and VASP, see residual_check), then cells whose every site forbids a
# force (diamond, zinc blende, rock salt: no residual, no free internal coordinate), cheapest
# first: 1 displaced 64-atom cell for Si, 2 for the binaries (O/F need 800 eV)
DEFAULT_MATERIALS = ["mp-23330", "mp-23339", "mp-149", "mp-1479", "mp-1550", "mp-1138", "mp-1265",
                     "mp-1315", "mp-463", "mp-2605", "mp-1784"]
DATASET = "phonondb-pbesol"


def metrics(x: np.ndarray, y: np.ndarray) -> dict:
    x = np.asarray(x, float).ravel()
    y = np.asarray(y, float).ravel()
    slope = float((x * y).sum() / (x * x).sum())
    return {"slope": slope, "mae": float(np.abs(y - x).mean()), "rmse": float(np.sqrt(((y - x) ** 2).mean())),
            "max_abs_vasp": float(np.abs(x).max()), "max_abs_gpaw": float(np.abs(y).max()),
            "n_components": int(x.size),
            "corr": float(np.corrcoef(x, y)[0, 1]) if x.size > 2 else float("nan")}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def validate(mp_id: str, dataset: str = DATASET, settings: dict | None = None, max_frames: int | None = None) -> dict:
    from softening_lib.dft import label

    settings = {**CAMPAIGN_DFT, **(settings or {})}
    ref = datasets.load(dataset, subset=[mp_id])[0]
    settings.setdefault("xc", ref.functional)
    frames = ref.frames()[: max_frames or None]
    work = config.cache_dir() / "gpaw_validation_work" / mp_id
    work.mkdir(parents=True, exist_ok=True)
    vasp, gpaw, records = [], [], []
    for k, frame in enumerate(frames):
        ck = work / f"frame_{k:02d}.npz"
        if ck.is_file():
            data = np.load(ck, allow_pickle=False)
            gpaw.append(data["gpaw"])
            records.append(json.loads(str(data["record"])))
        else:
            log(f"{mp_id} {ref.formula}: frame {k + 1}/{len(frames)} ({len(frame)} atoms) ...")
            # GPAW's text log, to follow a long frame: tail -f <work>/frame_XX.gpaw.txt
            lab, rec = label(frame, **{**settings, "txt": str(work / f"frame_{k:02d}.gpaw.txt")})
            f = lab.get_forces()
            buf_path = ck.with_suffix(".tmp.npz")
            np.savez(buf_path, gpaw=f, record=json.dumps(rec, default=str))
            buf_path.replace(ck)
            gpaw.append(f)
            records.append(rec)
            log(f"{mp_id}: frame {k} done in {rec['wall_time_s']:.0f} s wall / {rec['cpu_time_s']:.0f} s CPU, "
                f"{rec['scf_iterations']} SCF it., kpts {rec['kpts']}, {rec['ecut_eV']:.0f} eV")
        vasp.append(frame.get_forces())
    vasp_a, gpaw_a = np.array(vasp), np.array(gpaw)
    # GPAW on the undisplaced supercell: where the structure has free internal coordinates
    # (e.g. ClO3 units), the PBEsol equilibrium of GPAW's setups differs slightly from VASP's
    # and the residual forces swamp the 0.01 A displacement response. PhononDB's forces are
    # taken at VASP's own equilibrium (residual ~ 0), so the like-for-like comparison is
    # VASP forces vs GPAW forces minus GPAW's residual (what phonopy's force constants see).
    from softening_lib.phonopy_io import phonopy_to_atoms

    from softening_lib.dft import forces_vanish_by_symmetry

    ck0 = work / "perfect.npz"
    perfect = phonopy_to_atoms(ref.phonopy(with_forces=False).supercell)
    residual_how = "computed"
    if forces_vanish_by_symmetry(perfect):
        # every site's point group forbids a force (diamond, rock salt, ...): zero by symmetry
        resid = np.zeros((len(perfect), 3))
        residual_how = "zero by site symmetry"
    elif ck0.is_file():
        resid = np.load(ck0, allow_pickle=False)["gpaw"]
    else:
        log(f"{mp_id}: undisplaced supercell ({len(perfect)} atoms) for the residual forces ...")
        lab, rec0 = label(perfect, **{**settings, "txt": str(work / "perfect.gpaw.txt")})
        resid = lab.get_forces()
        tmp = ck0.with_suffix(".tmp.npz")
        np.savez(tmp, gpaw=resid, record=json.dumps(rec0, default=str))
        tmp.replace(ck0)
        records.append(rec0)
    m_raw = metrics(vasp_a, gpaw_a)
    gpaw_a = gpaw_a - resid[None]
    m = metrics(vasp_a, gpaw_a)
    result = {
        "material_id": mp_id, "formula": ref.formula, "dataset": dataset, "functional": ref.functional,
        "n_atoms_supercell": len(frames[0]), "n_frames": len(frames),
        "n_frames_total": len(ref.frames()), **m,
        "raw": m_raw, "max_abs_gpaw_residual": float(np.abs(resid).max()),
        "residual_subtracted": True, "residual_forces": residual_how,
        "within_target": bool(abs(m["slope"] - 1) <= 0.03),
        "wall_time_s": round(sum(r["wall_time_s"] for r in records), 1),
        "cpu_time_s": round(sum(r.get("cpu_time_s", 0) for r in records), 1),
        "settings": {k: v for k, v in records[0].items() if k not in ("wall_time_s", "cpu_time_s",
                                                                       "scf_iterations", "energy_zero_width",
                                                                       "lock_wait_s", "host")},
        "scf_iterations": [r["scf_iterations"] for r in records],
        "x_is": "VASP force components (eV/A)", "y_is": "GPAW force components minus GPAW's forces on the undisplaced supercell (eV/A)",
        "slope_definition": "sum(x*y)/sum(x*x), least squares through the origin",
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, vasp_forces=vasp_a, gpaw_forces=gpaw_a, gpaw_residual_forces=resid)
    atomic_write_bytes(OUT / f"{mp_id}.npz", buf.getvalue())
    atomic_write_json(OUT / f"{mp_id}.json", result)
    log(f"{mp_id} {ref.formula}: slope {m['slope']:.3f}, MAE {m['mae'] * 1000:.1f} meV/A over "
        f"{m['n_components']} components (max |F_VASP| {m['max_abs_vasp']:.3f} eV/A)")
    return result


def residual_check(mp_id: str, xc: str, setups: str, dataset: str = DATASET, ecut: float | None = None) -> dict:
    """GPAW forces on the *undisplaced* PhononDB supercell (VASP's equilibrium) for one
    functional and one choice of PAW setups; a large residual means the two codes put the
    minimum in different places, and the displaced-cell slope then also measures that shift.

    ``setups``: ``"default"`` (what :func:`softening_lib.dft.label` uses: GPAW's own for PBE,
    generated ones for PBEsol) or ``"pbe"`` (GPAW's PBE setups run with ``xc``, as VASP runs
    its PBE PAW potentials with PBEsol). Adds each anion-centre bond's residual along the bond.
    Written to ``residual_checks.json`` (one entry per material/xc/setups).
    """
    from gpaw import GPAW, PW, FermiDirac
    from gpaw.setup_data import SetupData

    from softening_lib.dft import resolve_settings
    from softening_lib.phonopy_io import phonopy_to_atoms

    ref = datasets.load(dataset, subset=[mp_id])[0]
    sc = phonopy_to_atoms(ref.phonopy(with_forces=False).supercell)
    s = resolve_settings(sc, **{**CAMPAIGN_DFT, "xc": xc, **({"ecut": ecut} if ecut else {})})
    symbols = sorted(set(sc.get_chemical_symbols()))
    if setups == "pbe":
        chosen = {}
        for sym in symbols:
            data = SetupData(sym, "PBE")
            data.setupname = xc  # GPAW refuses PBE data for another functional unless told
            chosen[sym] = data
    else:
        from softening_lib.dft import ensure_setups

        ensure_setups(symbols, xc)
        chosen = "paw"
    work = config.cache_dir() / "gpaw_validation_work" / mp_id
    work.mkdir(parents=True, exist_ok=True)
    sc.calc = GPAW(mode=PW(s["ecut"]), xc=xc, kpts={"size": s["kpts"], "gamma": True},
                   occupations=FermiDirac(s["smearing"]), convergence=dict(s["convergence"]),
                   setups=chosen, txt=str(work / f"residual_{xc}_{setups}.gpaw.txt"))
    t0 = time.process_time()
    f = sc.get_forces()
    sym = np.array(sc.get_chemical_symbols())
    per_element = {e: float(np.linalg.norm(f[sym == e], axis=1).max()) for e in symbols}
    # along the shortest bond of each atom: + = pushes the atom away from its neighbour (bond wants to be longer)
    bonds = {}
    for i in range(len(sc)):
        d = sc.get_distances(i, [j for j in range(len(sc)) if j != i], mic=True, vector=True)
        n = np.linalg.norm(d, axis=1)
        k = int(n.argmin())
        key = f"{sym[i]}-{sym[[j for j in range(len(sc)) if j != i][k]]}"
        along = float(-(f[i] @ d[k]) / n[k])
        bonds.setdefault(key, {"length_A": round(float(n[k]), 4), "force_along_bond_eV_A": []})
        bonds[key]["force_along_bond_eV_A"].append(round(along, 4))
    for b in bonds.values():
        b["force_along_bond_eV_A"] = float(np.median(b["force_along_bond_eV_A"]))
    out = {"material_id": mp_id, "formula": ref.formula, "xc": xc, "setups": setups, "ecut_eV": s["ecut"],
           "kpts": list(s["kpts"]), "max_residual_eV_A": float(np.linalg.norm(f, axis=1).max()),
           "max_residual_per_element": per_element, "shortest_bond": bonds,
           "cpu_time_s": round(time.process_time() - t0, 1), "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "sign": "force_along_bond > 0: the atom is pushed away from its nearest neighbour"}
    path = OUT / "residual_checks.json"
    data = json.loads(path.read_text()) if path.is_file() else []
    data = [d for d in data if (d["material_id"], d["xc"], d["setups"]) != (mp_id, xc, setups)] + [out]
    atomic_write_json(path, data)
    log(f"{mp_id} {xc} setups={setups}: max residual {out['max_residual_eV_A']:.3f} eV/A {per_element}")
    return out


def summarise() -> list[dict]:
    import pandas as pd

    rows = []
    for path in sorted(OUT.glob("mp-*.json")):
        r = json.loads(path.read_text())
        rows.append({k: r[k] for k in ("material_id", "formula", "dataset", "functional", "n_atoms_supercell",
                                       "n_frames", "slope", "mae", "rmse", "max_abs_vasp", "corr",
                                       "within_target", "cpu_time_s", "wall_time_s")}
                    | {"ecut_eV": r["settings"]["ecut_eV"], "kpts": "x".join(map(str, r["settings"]["kpts"]))})
    if rows:
        df = pd.DataFrame(rows)
        atomic_write_bytes(OUT / "summary.csv", df.to_csv(index=False, float_format="%.5g").encode())
        allx = np.concatenate([np.load(OUT / f"{r['material_id']}.npz")["vasp_forces"].ravel() for r in rows])
        ally = np.concatenate([np.load(OUT / f"{r['material_id']}.npz")["gpaw_forces"].ravel() for r in rows])
        atomic_write_json(OUT / "summary.json", {
            "n_materials": len(rows), "pooled": metrics(allx, ally),
            "n_within_target": int(sum(r["within_target"] for r in rows)),
            "target": "slope 1.00 +/- 0.03", "materials": rows,
            "remaining": [m for m in DEFAULT_MATERIALS if m not in {r["material_id"] for r in rows}],
        })
        print(df.to_string(index=False))
    return rows


def _validate_done(mp_id: str) -> bool:
    return (OUT / f"{mp_id}.json").is_file()


def _validate_task(dataset: str, settings: dict, max_frames: int | None, mp_id: str) -> str:
    """One material (a Dask task): validate it, write its records atomically, refresh the summary."""
    validate(mp_id, dataset, settings, max_frames)
    summarise()
    return mp_id


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--materials", nargs="*", default=DEFAULT_MATERIALS)
    p.add_argument("--dataset", default=DATASET)
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--kpt-density", type=float, default=None)
    p.add_argument("--ecut", type=float, default=None)
    p.add_argument("--summary", action="store_true", help="only rebuild summary.csv/json")
    p.add_argument("--redo", action="store_true", help="recompute materials already done")
    p.add_argument("--residual-check", nargs=2, metavar=("XC", "SETUPS"),
                   help="only GPAW's forces on the undisplaced supercells of --materials with this "
                        "functional and setups (default | pbe); see residual_check()")
    from softening_lib import executor

    executor.add_arguments(p)  # --workers N (default 1: one GPAW at a time), --scheduler
    args = p.parse_args(argv)
    if args.residual_check:
        for mp_id in args.materials:
            residual_check(mp_id, *args.residual_check, dataset=args.dataset, ecut=args.ecut)
        return 0
    if not args.summary:
        settings = {}
        if args.kpt_density is not None:
            settings["kpt_density"] = args.kpt_density
        if args.ecut is not None:
            settings["ecut"] = args.ecut
        from functools import partial

        from softening_lib import executor

        # one Dask task per material (softening_lib.executor.run_queue): N workers validate N
        # materials at once; a finished <mp-id>.json is never redone (unless --redo)
        workers = args.workers or 1
        res = executor.run_queue(args.materials, partial(_validate_task, args.dataset, settings, args.max_frames),
                                 key=lambda m: m, done=None if args.redo else _validate_done,
                                 scheduler=args.scheduler, workers=workers, desc="gpaw-validate",
                                 env=executor.gpaw_env(workers, args.scheduler))
        for mp_id, err in res.failed.items():
            log(f"{mp_id}: FAILED {err}")
    summarise()
    return 0


if __name__ == "__main__":
    sys.exit(main())
