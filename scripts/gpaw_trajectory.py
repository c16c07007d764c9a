"""A GPAW-labelled 1000 K MD trajectory of one WBM compound (the book's stand-in for Fig. 5a).

The paper's Fig. 5a is a force parity plot on the frames of one 1000 K AIMD trajectory
(Li6Zn2In2(IO3)16, mp-973966, never deposited). This script makes the book's own version on
one compound of the committed WBM campaign (``data/reference/wbm_he_gpaw``): a CHGNet 0.3.0
NVT MD at 1000 K (the campaign's sampler, :func:`softening_lib.sampling.sample_high_energy`:
ASE ``NVTBerendsen``, tau 200 fs, 2 fs step, Maxwell-Boltzmann start, seeded) sampled at
``--n-frames`` evenly spaced times, **no strained frames**, every frame labelled with
:func:`softening_lib.dft.label` at the campaign's DFT settings (``campaign.CAMPAIGN_DFT``:
PBE, PW 520 eV / 800 eV with O or F, k-point density 2 per reciprocal A, Fermi-Dirac
0.05 eV, spin-paired). The default compound is the one chapter 7 shows in Fig. 5a
(the first of the campaign: wbm-1-14956, KGeF3, 5 atoms).

Layout (``data/reference/wbm_he_trajectory_gpaw/``)::

    progress.json                          settings, seeds, per-compound CPU/wall times
    <wbm-id>/md_sampled.extxyz             the unlabelled CHGNet snapshots (positions, cell,
                                           CHGNet energy, MD step/time/temperature in info)
    <wbm-id>/frame_XXX.extxyz              one GPAW-labelled frame each (energy, free_energy,
                                           forces, stress; DFT record as dft_* in info),
                                           written atomically when its calculation is done
    <wbm-id>/frame_XXX.failed.json         a frame whose SCF did not converge (skipped)

Resumable: the MD is done once (``md_sampled.extxyz``, written atomically) and a finished
frame is never redone, so the script can be killed and restarted at any time.

Usage::

    export OMP_NUM_THREADS=1 SOFTENING_DATA_DIR=/work/shared/data
    python scripts/gpaw_trajectory.py --estimate                 # CPU hours left
    nice -n 19 python scripts/gpaw_trajectory.py                 # MD (if needed), then label
    python scripts/gpaw_trajectory.py --md-only                  # CHGNet MD only (no GPAW)
    python scripts/gpaw_trajectory.py --status                   # what is there

Read it back with :func:`read_wbm_he_trajectory_gpaw` below (a reader meant to move into
``softening_lib.datasets``, keyed ``wbm-he-trajectory-gpaw``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

DEFAULT_MATERIAL = "wbm-1-14956"  # KGeF3: chapter 7's Fig. 5a compound (first of the campaign)
DEFAULT_OUT = ROOT / "data" / "reference" / "wbm_he_trajectory_gpaw"
DATASET = "wbm-he-trajectory-gpaw"
MD = {"temperature_K": 1000.0, "total_time_ps": 20.0, "timestep_fs": 2.0, "n_frames": 40,
      "n_strained": 0, "strain": 0.03, "thermostat": "berendsen"}
MODEL = "chgnet-0.3.0"


# --------------------------------------------------------------------------------------
# reader (meant for softening_lib.datasets: ``load("wbm-he-trajectory-gpaw")``)
# --------------------------------------------------------------------------------------

def read_wbm_he_trajectory_gpaw(subset=None, root: Path | None = None, **_):
    """The GPAW-labelled trajectory frames under ``root`` (default
    ``data/reference/wbm_he_trajectory_gpaw``): a list of ASE Atoms with a
    SinglePointCalculator (``energy`` = GPAW free energy, eV; ``forces``, eV/A; ``stress``,
    eV/A^3, ASE sign, Voigt) and ``info`` with ``material_id``, ``frame_id``, ``md_step``,
    ``md_time_ps``, ``md_instant_temperature_K``, ``md_mlip_energy`` and the ``dft_*`` record,
    sorted by compound and frame. Only finished frames (``frame_XXX.extxyz``) are read, so a
    half-done trajectory reads as the frames it has. ``subset``: material ids to keep."""
    from ase.io import read

    root = Path(root) if root is not None else DEFAULT_OUT
    wanted = set(subset) if subset is not None else None
    out = []
    for cdir in sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []:
        if wanted is not None and cdir.name not in wanted:
            continue
        frames = []
        for f in sorted(cdir.glob("frame_*.extxyz")):
            if f.name.endswith(".failed.json"):
                continue
            atoms = read(f, index=0, format="extxyz")
            atoms.info.setdefault("material_id", cdir.name)
            atoms.info.setdefault("dataset", DATASET)
            frames.append(atoms)
        out.extend(sorted(frames, key=lambda a: int(a.info["frame_id"])))
    return out


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------

def _log(msg: str) -> None:
    print(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {msg}", flush=True)


def trajectory_seed(material_id: str) -> int:
    """First 8 hex digits of sha256("trajectory:<wbm-id>"): independent of the campaign's
    seed of the same compound (sha256("0:<wbm-id>")), so these are new MD frames."""
    return int(hashlib.sha256(f"trajectory:{material_id}".encode()).hexdigest()[:8], 16)


def _write_text(path: Path, text: str) -> None:
    from softening_lib.cache import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


def _extxyz(frames) -> str:
    from softening_lib.campaign import frames_to_extxyz

    return frames_to_extxyz(frames)


def _read(path: Path):
    from ase.io import read

    return read(path, index=":", format="extxyz")


def load_structure(material_id: str):
    from softening_lib import datasets

    found = datasets.load("wbm-equilibrium", subset=[material_id])
    if not found:
        raise SystemExit(f"{material_id} is not in wbm-equilibrium")
    return found[0]


def md_settings(args) -> dict:
    return {**MD, "n_frames": args.n_frames, "total_time_ps": args.total_time_ps}


def run_md(atoms, cdir: Path, md: dict, seed: int):
    """The CHGNet MD (once): ``md_sampled.extxyz``, atomically."""
    from softening_lib.sampling import sample_high_energy

    path = cdir / "md_sampled.extxyz"
    if path.is_file():
        frames = _read(path)
        if len(frames) == md["n_frames"] and int(frames[0].info["md_seed"]) == seed:
            return frames
        raise SystemExit(f"{path} holds {len(frames)} frames / seed {frames[0].info.get('md_seed')}, "
                         f"not {md['n_frames']} / {seed}: move it away to redo the MD with these settings")
    mid = atoms.info["material_id"]
    _log(f"{mid} {atoms.get_chemical_formula()} ({len(atoms)} atoms): {MODEL} NVT {md['temperature_K']:.0f} K, "
         f"{md['total_time_ps']} ps, dt {md['timestep_fs']} fs, {md['n_frames']} frames, seed {seed}")
    c0 = time.process_time()
    frames = sample_high_energy(atoms, model=MODEL, seed=seed, log_every=1, **md)
    cpu = time.process_time() - c0
    for f in frames:
        f.info["md_cpu_time_s"] = round(cpu, 1)
        f.info["sampler_script"] = "scripts/gpaw_trajectory.py"
    _write_text(path, _extxyz(frames))
    _log(f"{mid}: MD done, {frames[0].info['md_wall_time_s']:.0f} s wall, {cpu:.0f} s CPU")
    return frames


def frame_path(cdir: Path, k: int) -> Path:
    return cdir / f"frame_{k:03d}.extxyz"


def _frame_done(cdir: Path, frame) -> bool:
    k = int(frame.info["frame_id"])
    return frame_path(cdir, k).is_file() or (cdir / f"frame_{k:03d}.failed.json").is_file()


def label_frame(cdir: Path, mid: str, frame) -> str:
    """One frame (a Dask task of :func:`label_frames`): label it, write ``frame_kkk.extxyz`` (or
    ``frame_kkk.failed.json`` when the SCF does not converge) atomically. Returns the status."""
    from softening_lib.campaign import CAMPAIGN_DFT
    from softening_lib.dft import SCFNotConvergedError, label

    import numpy as np

    k = int(frame.info["frame_id"])
    done, fail = frame_path(cdir, k), cdir / f"frame_{k:03d}.failed.json"
    if done.is_file() or fail.is_file():
        return "cached"
    try:
        lab, rec = label(frame, **CAMPAIGN_DFT)
    except SCFNotConvergedError as exc:
        _write_text(fail, json.dumps({"frame_id": k, "error": "SCFNotConvergedError", "message": str(exc)}))
        _log(f"{mid}: frame {k} FAILED (SCF not converged), skipped")
        return "failed"
    lab.info["dataset"] = DATASET
    lab.info["material_id"] = mid
    _write_text(done, _extxyz([lab]))
    fmax = float(np.linalg.norm(lab.get_forces(), axis=1).max())
    _log(f"{mid}: frame {k} (t = {float(frame.info['md_time_ps']):.2f} ps) labelled in {rec['cpu_time_s']:.0f} CPU s "
         f"({rec['scf_iterations']} SCF it., kpts {rec['kpts']}, {rec['ecut_eV']:.0f} eV), max |F| {fmax:.2f} eV/A")
    return "done"


def label_frames(frames, cdir: Path, mid: str, max_frames: int | None = None, *, scheduler=None,
                 workers: int | None = None) -> int:
    """Label the frames without a record, in order, at most ``max_frames``; one Dask task per
    frame (:func:`softening_lib.executor.run_queue`, ``workers`` processes, default 1: one GPAW at
    a time). Returns the number labelled this run."""
    from functools import partial

    from softening_lib import executor

    todo = [f for f in frames if not _frame_done(cdir, f)]
    if max_frames is not None:
        todo = todo[:max_frames]
    if not todo:
        return 0
    n_workers = workers or 1
    order = {int(f.info["frame_id"]): i for i, f in enumerate(todo)}
    res = executor.run_queue(todo, partial(label_frame, cdir, mid), key=lambda f: int(f.info["frame_id"]),
                             done=partial(_frame_done, cdir), priority=lambda f: len(todo) - order[int(f.info["frame_id"])],
                             scheduler=scheduler, workers=n_workers, desc=f"label-{mid}",
                             env=executor.gpaw_env(n_workers, scheduler))
    return sum(v == "done" for v in res.values())


def summary(cdir: Path, mid: str, md: dict, seed: int) -> dict:
    from ase.io import read

    md_path = cdir / "md_sampled.extxyz"
    md_cpu = md_wall = 0.0
    formula = ""
    if md_path.is_file():
        f0 = read(md_path, index=0, format="extxyz")
        md_cpu, md_wall = float(f0.info.get("md_cpu_time_s", 0.0)), float(f0.info.get("md_wall_time_s", 0.0))
        formula = str(f0.info.get("formula", f0.get_chemical_formula()))
    labelled = read_wbm_he_trajectory_gpaw(subset=[mid], root=cdir.parent)
    failed = sorted(int(p.name.split("_")[1].split(".")[0]) for p in cdir.glob("frame_*.failed.json"))
    cpu = sum(float(a.info.get("dft_cpu_time_s", 0.0)) for a in labelled)
    wall = sum(float(a.info.get("dft_wall_time_s", 0.0)) for a in labelled)
    return {"formula": formula, "n_frames_planned": md["n_frames"],
            "n_frames": len(labelled), "failed_frames": failed, "md_seed": seed,
            "md_cpu_s": round(md_cpu, 1), "md_wall_s": round(md_wall, 1),
            "dft_cpu_s": round(cpu, 1), "dft_wall_s": round(wall, 1),
            "cpu_hours": round((cpu + md_cpu) / 3600, 3),
            "dft_cpu_s_per_frame": round(cpu / max(1, len(labelled)), 1),
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S")}


def write_progress(out: Path, mid: str, md: dict, seed: int) -> dict:
    from softening_lib.campaign import CAMPAIGN_DFT

    path = out / "progress.json"
    prog = json.loads(path.read_text()) if path.is_file() else {"compounds": {}}
    prog["settings"] = {"model": MODEL, "md": md, "dft": CAMPAIGN_DFT, "dft_defaults": "softening_lib.dft.DEFAULTS",
                        "seed_rule": "int(sha256('trajectory:<wbm-id>')[:8], 16)",
                        "script": "scripts/gpaw_trajectory.py"}
    new = summary(out / mid, mid, md, seed)
    before = prog["compounds"].get(mid, {})
    if {k: v for k, v in before.items() if k != "updated"} == {k: v for k, v in new.items() if k != "updated"}:
        return before  # nothing new: leave the file (and its timestamp) alone
    prog["compounds"][mid] = new
    prog["totals"] = {"compounds": len(prog["compounds"]),
                      "frames": sum(c["n_frames"] for c in prog["compounds"].values()),
                      "cpu_hours": round(sum(c["cpu_hours"] for c in prog["compounds"].values()), 3)}
    _write_text(path, json.dumps(prog, indent=1, sort_keys=True) + "\n")
    return prog["compounds"][mid]


def estimate(atoms, cdir: Path, md: dict, seed: int) -> dict:
    """CPU seconds left: the cost model of ``softening_lib.dft.estimate_cpu_seconds`` on the
    MD frames (or, before the MD, on a rattled copy: MD frames have no symmetry), beside the
    mean CPU per frame the campaign measured on this compound."""
    import numpy as np

    from softening_lib import dft
    from softening_lib.campaign import CAMPAIGN_DFT, DEFAULT_OUT as CAMPAIGN_OUT, read_extxyz

    md_path = cdir / "md_sampled.extxyz"
    frames = _read(md_path) if md_path.is_file() else None
    if frames is None:
        probe = atoms.copy()
        probe.rattle(0.05, seed=seed % (2**31))
        per_frame = [dft.estimate_cpu_seconds(probe, **CAMPAIGN_DFT)] * md["n_frames"]
        todo = list(range(md["n_frames"]))
    else:
        todo = [int(f.info["frame_id"]) for f in frames
                if not frame_path(cdir, int(f.info["frame_id"])).is_file()
                and not (cdir / f"frame_{int(f.info['frame_id']):03d}.failed.json").is_file()]
        per_frame = [dft.estimate_cpu_seconds(f, **CAMPAIGN_DFT) for f in frames if int(f.info["frame_id"]) in todo]
    measured = None
    camp = CAMPAIGN_OUT / f"{atoms.info['material_id']}.extxyz.gz"
    if camp.is_file():
        cpus = [float(a.info.get("dft_cpu_time_s", np.nan)) for a in read_extxyz(camp)]
        measured = float(np.nanmean(cpus))
    md_left = 0.0 if frames is not None else 0.02 * len(atoms) ** 0.3 * md["total_time_ps"] * 1000 / md["timestep_fs"]
    return {"frames_left": len(todo), "model_cpu_s": float(sum(per_frame)), "md_cpu_s": md_left,
            "campaign_measured_cpu_s_per_frame": measured,
            "measured_cpu_s": measured * len(todo) if measured is not None else None}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--material", default=DEFAULT_MATERIAL, help="WBM id (a compound of wbm-equilibrium)")
    ap.add_argument("--n-frames", type=int, default=MD["n_frames"])
    ap.add_argument("--total-time-ps", type=float, default=MD["total_time_ps"])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--max-frames", type=int, default=None, help="label at most this many frames, then stop")
    ap.add_argument("--md-only", action="store_true", help="run (or reuse) the CHGNet MD, label nothing")
    ap.add_argument("--estimate", action="store_true", help="print the CPU hours left and exit")
    ap.add_argument("--status", action="store_true", help="print progress.json's entry and exit")
    from softening_lib import executor

    executor.add_arguments(ap)  # --workers N frames labelled at once (default 1), --scheduler
    args = ap.parse_args(argv)

    md = md_settings(args)
    mid = args.material
    seed = trajectory_seed(mid)
    cdir = args.out / mid
    if args.status:
        print(json.dumps(summary(cdir, mid, md, seed), indent=1))
        return
    atoms = load_structure(mid)
    if args.estimate:
        e = estimate(atoms, cdir, md, seed)
        meas = (f"; at the campaign's measured {e['campaign_measured_cpu_s_per_frame']:.0f} CPU s per frame of this "
                f"compound: {e['measured_cpu_s'] / 3600:.2f} CPU h" if e["measured_cpu_s"] is not None else "")
        print(f"{mid} {atoms.get_chemical_formula()} ({len(atoms)} atoms): {e['frames_left']} of {md['n_frames']} "
              f"frames to label, cost model {e['model_cpu_s'] / 3600:.2f} CPU h{meas}; "
              f"MD still to run: ~{e['md_cpu_s'] / 60:.0f} CPU min")
        return
    frames = run_md(atoms, cdir, md, seed)
    write_progress(args.out, mid, md, seed)
    if args.md_only:
        return
    n = label_frames(frames, cdir, mid, args.max_frames, scheduler=args.scheduler, workers=args.workers)
    s = write_progress(args.out, mid, md, seed)
    _log(f"{mid}: {n} frames labelled this run; {s['n_frames']}/{md['n_frames']} done, {s['cpu_hours']:.2f} CPU h")


if __name__ == "__main__":
    main()
