"""kill -9 at random points, then check nothing unreadable is left and a rerun redoes only what was lost.

    OMP_NUM_THREADS=1 python benchmarks/kill_resume.py [--kills 10] [--seed 0] [--only predict,gpaw,campaign]

Three workloads, each run in a child process that is killed with SIGKILL after a random
(seeded) delay, ``--kills`` times, then run once more to the end:

* ``predict``: :func:`softening_lib.predict.predict_cached` over 12 toy materials with a slowed
  EMT (the MLIP);
* ``gpaw``: :func:`softening_lib.dft.label_queue` over 3 small Si cells with real GPAW
  (skipped with a message if GPAW cannot be imported);
* ``campaign``: :func:`softening_lib.campaign.run` on 3 toy compounds, EMT as the MLIP and a
  slowed EMT labeller standing in for GPAW (the kill, the files and the resume logic are real).

After the kills every cache file is read back (0 unreadable expected) and the final run's
work is compared with what was missing before it (it must recompute only that). Prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

N_MATERIALS = 12


# --------------------------------------------------------------------------------------
# child workloads
# --------------------------------------------------------------------------------------

def _toy_frames():
    from ase.build import bulk

    frames = []
    for m in range(N_MATERIALS):
        for k in range(2):
            atoms = bulk("Cu", "fcc", a=3.62, cubic=True)
            atoms.rattle(0.05, seed=100 * m + k)
            atoms.info.update(material_id=f"m{m:02d}", frame_id=k)
            frames.append(atoms)
    return frames


def _slow_emt(delay: float, log: Path | None = None):
    from ase.calculators.emt import EMT

    class SlowEMT(EMT):
        def calculate(self, *a, **kw):
            time.sleep(delay)
            super().calculate(*a, **kw)
            if log is not None:
                with open(log, "a") as fh:
                    fh.write("calc\n")

    return SlowEMT()


def child_predict(root: Path, delay: float, log: Path | None) -> None:
    os.environ["SOFTENING_RESULTS_DIR"] = str(root)
    from softening_lib import predict

    predict.predict_cached(_toy_frames(), "emt", "killbench", calc=_slow_emt(delay, log), cache_tag="slow-emt",
                           progress=False)


def _si_cells():
    from ase.build import bulk

    out = []
    for k in range(3):
        atoms = bulk("Si", "diamond", a=5.43)
        atoms.rattle(0.03, seed=k)
        atoms.info.update(material_id="si", frame_id=k)
        out.append(atoms)
    return out


def child_gpaw(root: Path, delay: float, log: Path | None) -> None:
    from softening_lib import dft

    def labeller(atoms, **settings):
        lab, rec = dft.label(atoms, ecut=200.0, kpts=(2, 2, 2))
        if log is not None:
            with open(log, "a") as fh:
                fh.write("label\n")
        return lab, rec

    dft.label_queue(_si_cells(), root / "si.extxyz", labeller=labeller, log=None)


def _toy_compounds():
    from ase.build import bulk

    cu = bulk("Cu", "fcc", a=3.62, cubic=True)
    cu3al = bulk("Cu", "fcc", a=3.62, cubic=True)
    cu3al.symbols[1] = "Al"
    al2 = bulk("Al", "fcc", a=4.05).repeat((2, 1, 1))
    out = []
    for i, (atoms, formula) in enumerate([(cu, "Cu"), (cu3al, "Cu3Al"), (al2, "Al")]):
        atoms.info.update(material_id=f"toy-{i}", formula=formula)
        out.append(atoms)
    return out


def child_campaign(root: Path, delay: float, log: Path | None) -> None:
    os.environ["SOFTENING_CACHE_DIR"] = str(root / "cache")
    from ase.calculators.singlepoint import SinglePointCalculator

    from softening_lib import campaign, datasets, dft

    datasets.load = lambda name, subset=None, **kw: [a for a in _toy_compounds()
                                                     if subset is None or a.info["material_id"] in subset]

    def fake_label(atoms, **settings):  # EMT standing in for GPAW
        from ase.calculators.emt import EMT

        time.sleep(delay)
        work = atoms.copy()
        work.calc = EMT()
        lab = atoms.copy()
        lab.calc = SinglePointCalculator(lab, energy=work.get_potential_energy(), forces=work.get_forces())
        if log is not None:
            with open(log, "a") as fh:
                fh.write(f"{atoms.info['material_id']} {atoms.info['frame_id']}\n")
        return lab, {"wall_time_s": delay, "scf_iterations": 1, "kpts": [1, 1, 1], "ecut_eV": 100.0}

    dft.label = fake_label
    with open(os.devnull, "w") as null:
        sys.stdout = null
        campaign.run(out=root / "out", only=[a.info["material_id"] for a in _toy_compounds()], model="emt",
                     total_time_ps=0.02, md_batch=1)


CHILDREN = {"predict": child_predict, "gpaw": child_gpaw, "campaign": child_campaign}


# --------------------------------------------------------------------------------------
# state checks
# --------------------------------------------------------------------------------------

def _readable(path: Path) -> bool:
    from softening_lib import cache

    if path.suffix == ".npz":
        return cache.load_arrays(path) is not None
    if path.suffix == ".json":
        try:
            json.loads(path.read_text())
            return True
        except (ValueError, OSError):
            return False
    if path.name.endswith((".extxyz", ".extxyz.gz")):
        from softening_lib.campaign import read_extxyz

        try:
            return len(read_extxyz(path)) > 0
        except Exception:
            return False
    return True


def scan(root: Path) -> dict:
    """Files a later run would read (hidden temporaries and set-aside files excluded)."""
    files = [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")
             and ".corrupt-" not in p.name and not p.name.endswith((".lock", ".stale"))]
    bad = [str(p.relative_to(root)) for p in files if not _readable(p)]
    temps = [p for p in root.rglob(".*") if p.is_file()]
    corrupt = [p for p in root.rglob("*.corrupt-*")]
    return {"files": len(files), "unreadable": bad, "temporaries": len(temps), "set_aside": len(corrupt)}


def lost_units(kind: str, root: Path) -> int:
    """How many units of work a rerun must do given what is on disk now."""
    if kind == "predict":
        have = {p.stem for p in (root / "predictions" / "killbench" / "slow-emt").glob("*.npz")}
        return 2 * (N_MATERIALS - len(have))  # frames to compute
    if kind == "gpaw":
        from ase.io import read

        if (root / "si.extxyz").is_file():
            return 0
        part = root / "si.partial.extxyz"
        try:
            return 3 - (len(read(part, index=":")) if part.is_file() else 0)
        except Exception:
            return 3
    if kind == "campaign":
        from softening_lib.campaign import read_extxyz

        done = 0
        for m in ("toy-0", "toy-1", "toy-2"):
            gz = root / "out" / f"{m}.extxyz.gz"
            if gz.is_file():
                done += len(read_extxyz(gz))
            else:
                done += len(list((root / "cache" / "wbm_he_gpaw_work" / m).glob("frame_*.extxyz")))
        return 30 - done
    raise ValueError(kind)


# --------------------------------------------------------------------------------------
# the kill loop
# --------------------------------------------------------------------------------------

def _spawn(kind: str, root: Path, delay: float, log: Path | None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--root", str(root), "--delay", str(delay)]
    if log is not None:
        cmd += ["--log", str(log)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def kill_and_resume(kind: str, root: Path, n_kills: int, seed: int, delay: float,
                    window: tuple[float, float]) -> dict:
    """Start the child, SIGKILL it after a random time in ``window`` (s), ``n_kills`` times;
    check the files; run it once more to the end, counting its work."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    kills = finished_early = 0
    t0 = time.time()
    for _ in range(n_kills):
        proc = _spawn(kind, root, delay, None)
        try:
            proc.wait(timeout=rng.uniform(*window))
            finished_early += 1  # it ended before the kill: start over in a fresh folder would hide nothing
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
        if proc.returncode not in (0, -signal.SIGKILL):
            err = proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            raise RuntimeError(f"{kind} child failed (rc {proc.returncode}): {err}")
    state = scan(root)
    lost = lost_units(kind, root)
    log = root / "final-run.log"
    proc = _spawn(kind, root, delay, log)
    rc = proc.wait(timeout=1800)
    if rc != 0:
        raise RuntimeError(f"{kind} final run failed (rc {rc}): {proc.stderr.read().decode()[-2000:]}")
    redone = len(log.read_text().splitlines()) if log.is_file() else 0
    after = scan(root)
    return {"workload": kind, "kills": kills, "ended_before_kill": finished_early,
            "files_after_kills": state["files"], "unreadable": len(state["unreadable"]) + len(after["unreadable"]),
            "unreadable_files": state["unreadable"] + after["unreadable"],
            "set_aside": after["set_aside"], "stray_temporaries": after["temporaries"],
            "lost_units": lost, "recomputed_units": redone,
            "only_lost_recomputed": redone == lost, "wall_s": round(time.time() - t0, 1)}


def gpaw_importable() -> tuple[bool, str]:
    try:
        from softening_lib import dft

        ok, why = dft.gpaw_available()
        return bool(ok), why
    except Exception as exc:  # pragma: no cover
        return False, f"{type(exc).__name__}: {exc}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default="predict,gpaw,campaign")
    ap.add_argument("--child", choices=sorted(CHILDREN))
    ap.add_argument("--root", type=Path)
    ap.add_argument("--delay", type=float, default=0.02)
    ap.add_argument("--log", type=Path)
    args = ap.parse_args(argv)
    if args.child:
        CHILDREN[args.child](args.root, args.delay, args.log)
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="kill_resume_") as tmp:
        for i, kind in enumerate(args.only.split(",")):
            if kind == "gpaw":
                ok, why = gpaw_importable()
                if not ok:
                    print(f"gpaw: skipped, GPAW is not importable here ({why})")
                    continue
                window, delay = (3.0, 40.0), 0.0
            elif kind == "campaign":
                window, delay = (3.0, 5.5), 1.0
            else:
                window, delay = (1.3, 3.0), 0.5
            rows.append(kill_and_resume(kind, Path(tmp) / kind, args.kills, args.seed + i, delay, window))
    cols = ["workload", "kills", "ended_before_kill", "files_after_kills", "unreadable", "set_aside",
            "stray_temporaries", "lost_units", "recomputed_units", "only_lost_recomputed", "wall_s"]
    print(" | ".join(cols))
    print(" | ".join("---" for _ in cols))
    for r in rows:
        print(" | ".join(str(r[c]) for c in cols))
    bad = [r for r in rows if r["unreadable"] or not r["only_lost_recomputed"]]
    for r in bad:
        print(f"FAIL {r['workload']}: unreadable {r['unreadable_files']}, lost {r['lost_units']} "
              f"recomputed {r['recomputed_units']}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
