"""GPAW-PBE references for chapters 4 (solid solution) and 5 (ion migration): a resumable queue.

One JSON per calculation, written atomically; a finished item (``status: ok``) is never
redone, so the queue can be killed and restarted at any time. Settings are those of
``softening_lib.dft`` (PBE, plane waves, 800 eV for oxides/fluorides else 520 eV,
Fermi-Dirac 0.05 eV, spin-paired) with the WBM campaign's k-point density,
:data:`REFERENCE_DFT` (2 per reciprocal Angstrom instead of the labeller's default 3): every
host here is a wide-gap insulator (MgO, CaO, MgS, LiF, LiCl, Li2O, Li2S) in a 16-30 atom
cell, where the denser grid changes forces by ~1e-3 eV/A (``data/reference/gpaw_convergence``)
and costs 2-3x more CPU; ``--kpt-density 3 --reference-dir DIR --only ID`` recomputes any
item on the denser grid to check an energy difference (read it back with
``migration.load_reference(root=DIR / "migration_gpaw")`` or
``solid_solution.load_reference(root=DIR / "solid_solution_gpaw")``).

Stages, in the order worth running them:

``solid-static``   every ordering of ``solid_solution.reference_orderings()`` (all 44 symmetry-
                   distinct orderings of the two 8-cation cells, 16 atoms each) as a static at
                   the common Vegard-law geometry -> data/reference/solid_solution_gpaw/<id>__static.json
``mig-static``     the unrelaxed straight-line path of every ``migration.PATHS`` entry (2 end
                   points + 5 images) -> data/reference/migration_gpaw/<path>/static/image_XX.json
``mig-relaxed``    ApproxNEB with GPAW (BFGS, fmax 0.05 eV/A, lattice fixed; end points first,
                   then images with the ion + one far host atom fixed)
                   -> data/reference/migration_gpaw/<path>/relaxed/image_XX.json
``solid-relaxed``  cell + positions relaxations of the 8-cation orderings (most expensive)
                   -> data/reference/solid_solution_gpaw/<id>__relaxed.json

Relaxations start warm (``--warm-start chgnet-0.3.0``, the default): the start is first relaxed with
the MLIP under the same constraints, then GPAW relaxes to fmax 0.05 eV/A on its own forces, so
the result is GPAW's minimum and only the number of (expensive) DFT steps changes; the record's
``warm_start`` says which model moved the atoms how far. ``--warm-start none`` starts GPAW from
the interpolated geometry.

Symmetric hops (``migration.hop_symmetry``: a space-group operation of the host swaps the
two end points; 6 of the 8 paths) are computed on their first half: image ``n-1-j`` is
written as the rotated copy of image ``j`` (``"mirror_of": j`` in its record, no
calculation), which the operation guarantees, image by image (``mirror_partners``). Relaxed
images are mirrored only when the operation keeps the moving ion and the anchor atom in
place (``migration.path_anchor`` picks such an anchor where one ties for farthest, and every
model's ApproxNEB fixes the same atom); a relaxed final end point is g(relaxed initial end point).

Usage::

    export OMP_NUM_THREADS=1 SOFTENING_DATA_DIR=/work/shared/data
    python scripts/gpaw_solid_solution_migration.py --estimate            # queue + CPU-hour estimate
    python scripts/gpaw_solid_solution_migration.py --list --stage solid-relaxed   # per item, cheapest first
    nice -n 10 python scripts/gpaw_solid_solution_migration.py --stage solid-static mig-static --workers 2
    python scripts/gpaw_solid_solution_migration.py --check               # < 2 min plumbing test
    python scripts/gpaw_solid_solution_migration.py --stage mig-static --only 'Li2S-vac-s1/*' \
        --kpt-density 3 --reference-dir /tmp/kcheck                       # k-point check of one path

The queue runs on the Dask executor (``softening_lib.executor.run_queue``): ``--workers N``
single-threaded worker processes here (default: every core), or ``--scheduler tcp://HOST:8786 |
slurm``. One task per calculation; a mirror record is written by the task that computes its
partner (same task, right after it). Relaxed images run in a second pass, after their relaxed end
points. A killed run (or worker) leaves whole records only; rerunning skips every finished one.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

STAGES = ["solid-static", "mig-static", "mig-relaxed", "solid-relaxed"]
FMAX = 0.05
#: DFT settings of every reference calculation here (on top of softening_lib.dft's defaults)
REFERENCE_DFT = {"kpt_density": 2.0}


# --------------------------------------------------------------------------------------
# GPAW calculator with softening_lib.dft's settings (label() only does statics)
# --------------------------------------------------------------------------------------

def gpaw_calculator(atoms, txt=None, **settings):
    """A GPAW calculator with exactly the settings ``dft.label`` would use for ``atoms``
    (for relaxations; statics go through ``dft.label``). Returns (calc, settings)."""
    from softening_lib import dft

    dft.check_chemistry(atoms)
    dft._import_gpaw()
    from gpaw import GPAW, PW, FermiDirac

    s = dft.resolve_settings(atoms, **settings)
    dft.ensure_setups(atoms.get_chemical_symbols(), s["xc"])
    calc = GPAW(mode=PW(s["ecut"]), xc=s["xc"], kpts={"size": s["kpts"], "gamma": True},
                occupations=FermiDirac(s["smearing"]), spinpol=bool(s["spinpol"]),
                convergence=dict(s["convergence"]), maxiter=int(s["maxiter"]), txt=txt)
    return calc, s


def _settings_record(s: dict) -> dict:
    import gpaw

    return {"code": "GPAW", "code_version": gpaw.__version__, "xc": s["xc"], "ecut_eV": s["ecut"],
            "kpts": list(s["kpts"]), "smearing_eV": s["smearing"], "spinpol": s["spinpol"],
            "convergence": s["convergence"], "maxiter": s["maxiter"]}


def _write(path: Path, record: dict) -> None:
    from softening_lib.cache import atomic_write_text

    atomic_write_text(path, json.dumps(record, indent=1, default=float))


def _done(path: Path) -> bool:
    return record_status(path) == "ok"


def _atoms_record(atoms) -> dict:
    return {"symbols": atoms.get_chemical_symbols(), "positions": atoms.positions.tolist(),
            "cell": atoms.cell.array.tolist(), "pbc": atoms.pbc.tolist()}


# --------------------------------------------------------------------------------------
# the queue
# --------------------------------------------------------------------------------------

def solid_items(mode: str, reference_dir: Path):
    from softening_lib.tasks import solid_solution as ss

    orderings = ss.reference_orderings()
    if mode == "relaxed":
        orderings = [o for o in orderings if o.supercell == "conv112"]  # 28, the most expensive stage
    for o in orderings:
        sub = ss.camgo_sublattice(o.supercell)
        yield {"kind": f"solid-{mode}", "id": f"{o.id}__{mode}", "ordering": o,
               "atoms": sub.structure(o.occupancy, geometry="vegard"),
               "out": reference_dir / "solid_solution_gpaw" / f"{o.id}__{mode}.json"}


def mig_items(mode: str, reference_dir: Path):
    """Static: every image. Relaxed: end points, then (when both exist) the images.

    A hop with a symmetry (``migration.hop_symmetry``: a host operation swapping its two
    ends) is computed on its first half only: image ``i`` of the second half gets
    ``mirror_of = n - 1 - i`` and its record is the rotated copy of its partner's (same
    energy, rotated forces). Relaxed images are mirrored only when the operation also fixes
    the two atoms the image relaxations hold fixed (moving ion and anchor atom)."""
    from softening_lib.tasks import migration as mig

    for p in mig.PATHS:
        built = mig.build_path(p)
        built["symmetry"] = mig.hop_symmetry(built["initial"], built["final"], built["host"].atoms())
        pdir = reference_dir / "migration_gpaw" / p.id / mode
        n = p.n_images + 2
        images = mig.interpolate(built["initial"], built["final"], p.n_images, "linear")
        partners = mig.mirror_partners(images, built["symmetry"])
        if mode == "static":
            for i, img in enumerate(images):
                yield {"kind": "mig-static", "id": f"{p.id}/static/{i:02d}", "path": p, "built": built,
                       "index": i, "atoms": img, "out": pdir / f"image_{i:02d}.json", "pdir": pdir,
                       "mirror_of": partners.get(i)}
        else:
            op = built["symmetry"]
            fixed = [built["mover"], path_anchor(built)]
            images_mirrored = op is not None and all(op.perm[k] == k for k in fixed)
            for i, atoms in ((0, built["initial"]), (n - 1, built["final"])):
                yield {"kind": "mig-relaxed", "id": f"{p.id}/relaxed/{i:02d}", "path": p, "built": built,
                       "index": i, "atoms": atoms, "out": pdir / f"image_{i:02d}.json", "pdir": pdir,
                       "mirror_of": 0 if (i == n - 1 and op is not None) else None}
            for i in range(1, n - 1):
                yield {"kind": "mig-relaxed", "id": f"{p.id}/relaxed/{i:02d}", "path": p, "built": built,
                       "index": i, "atoms": None, "out": pdir / f"image_{i:02d}.json", "pdir": pdir,
                       "mirror_of": partners.get(i) if images_mirrored else None}


def path_anchor(built: dict) -> int:
    """The host atom a relaxed image holds fixed besides the moving ion:
    ``migration.path_anchor``, the same atom every model's ApproxNEB fixes."""
    from softening_lib.tasks import migration as mig

    return mig.path_anchor(built)


def queue(stages, reference_dir: Path):
    for stage in stages:
        kind, mode = stage.split("-")
        yield from (solid_items(mode, reference_dir) if kind == "solid" else mig_items(mode, reference_dir))


def _path_meta(item: dict) -> None:
    """path.json next to the images: what the chapter's loader needs."""
    import numpy as np

    from softening_lib.tasks import migration as mig

    meta_path = item["pdir"] / "path.json"
    if meta_path.is_file():
        return
    p, built = item["path"], item["built"]
    images = mig.interpolate(built["initial"], built["final"], p.n_images, "linear")
    m = built["mover"]
    coord = [float(np.linalg.norm(im.positions[m] - images[0].positions[m])) for im in images]
    _write(meta_path, {"path_id": p.id, "host": p.host, "shell": p.shell, "n_images": p.n_images,
                       "mover": m, "removed": built["removed"], "hop_distance": built["hop_distance"],
                       "coordinate": coord, "anchor_atom": path_anchor(built),
                       "constraint": "fixed (moving ion + anchor atom)", "interpolation": "linear",
                       "energy_reference": "E_KRA = max_i E_i - (E_0 + E_N)/2"})


def _record_atoms(path: Path):
    from ase import Atoms

    r = json.loads(path.read_text())["structure"]
    return Atoms(r["symbols"], positions=r["positions"], cell=r["cell"], pbc=r["pbc"])


def _min_same_species_distance(atoms) -> float:
    """The shortest distance between two atoms of the same species (periodic images included)."""
    import numpy as np
    from ase.neighborlist import neighbor_list

    i, j, d = neighbor_list("ijd", atoms, 6.0)
    same = atoms.numbers[i] == atoms.numbers[j]
    return float(d[same].min()) if same.any() else 6.0


def mirror_record(item: dict, base: dict) -> dict | None:
    """The record of image ``i`` as the symmetry-rotated copy of its partner ``mirror_of``
    (``{"status": "waiting"}`` until the partner is done). For a relaxed image the operation
    must carry the path between the *relaxed* end points onto itself and keep the moving ion
    and the anchor atom in place; None when it does not (the image is then computed)."""
    import numpy as np

    from softening_lib.tasks import migration as mig

    p, built, i, j = item["path"], item["built"], item["index"], item["mirror_of"]
    op = built["symmetry"]
    n = p.n_images + 2
    partner = item["pdir"] / f"image_{j:02d}.json"
    if not _done(partner):
        return {"status": "waiting", "reason": f"mirror partner {j} not done yet"}
    prec = json.loads(partner.read_text())
    if item["kind"] == "mig-static":
        template = item["atoms"]
    elif i == n - 1:  # relaxed final end point = g(relaxed initial end point)
        template = built["final"]
    else:
        if not _done(item["pdir"] / f"image_{n - 1:02d}.json"):
            return {"status": "waiting", "reason": f"end point {n - 1} not done yet"}
        ends = [_record_atoms(item["pdir"] / f"image_{k:02d}.json") for k in (0, n - 1)]
        path = mig.interpolate(ends[0], ends[1], p.n_images, "linear")
        if mig.mirror_partners(path, op).get(i) != j or any(op.perm[k] != k for k in (built["mover"], path_anchor(built))):
            return None
        template = path[i]
    partner_atoms = _record_atoms(partner)
    atoms = op.apply(partner_atoms, template=template)
    # sanity check: each atom of the copy is nearer its own template atom than any other atom of
    # its species (relaxation moves atoms by up to ~0.5 A here, so a fixed 0.5 A was too tight)
    perm = mig._match(atoms, template, tol=0.5 * _min_same_species_distance(template))
    if perm is None or not np.array_equal(perm, np.arange(len(atoms))):
        return None
    rec = {**base, "mode": prec["mode"], "path_id": p.id, "index": i, "mirror_of": j,
           "symmetry": {**op.as_record(), "how": "space-group operation of the host swapping the hop's "
                        "end points (migration.hop_symmetry); record rotated from image "
                        f"{j:02d}, no calculation"},
           "energy": prec["energy"], "converged": prec.get("converged", True), "fmax": prec["fmax"],
           "structure": _atoms_record(atoms), "dft": prec["dft"], "wall_time_s": 0.0, "cpu_time_s": 0.0}
    if "steps" in prec:
        rec["steps"] = prec["steps"]
    if "forces" in prec:
        rec["forces"] = op.rotate(np.asarray(prec["forces"]), partner_atoms.cell).tolist()
    return rec


def warm_start(atoms, model, relax_fn):
    """Pre-relax ``atoms`` with an MLIP under the same constraints (and cell freedom) as the
    DFT relaxation that follows, so GPAW starts near its minimum and needs fewer BFGS steps.
    The DFT relaxation still runs to fmax 0.05 eV/A on its own forces, so the reference is
    GPAW's minimum, not the model's; the record says how far the model moved the atoms.
    ``model``: a registry name, a calculator, or None (no warm start). Returns (atoms, record)."""
    import numpy as np

    if model is None:
        return atoms, None
    from softening_lib import models

    calc = models.get_calculator(model) if isinstance(model, str) else model
    name = models.model_id(model) if isinstance(model, str) else getattr(calc, "softening_model", type(calc).__name__)
    pre, info = relax_fn(atoms, calc)
    out = atoms.copy()  # keep the constraints and the cell of the original unless the relaxation moved the cell
    out.set_cell(pre.cell, scale_atoms=False)
    out.positions = pre.positions
    moved = np.linalg.norm(out.positions - atoms.positions, axis=1)
    return out, {"model": name, "converged": bool(info["converged"]), "fmax_model": float(info["fmax"]),
                 "steps": int(info["steps"]), "max_displacement": float(moved.max()),
                 "how": "MLIP pre-relaxation with the same constraints; GPAW then relaxed to fmax "
                        f"{FMAX} eV/A from the pre-relaxed positions"}


def run_item(item: dict) -> dict:
    """Compute one queue item; returns its record (also written to item['out'])."""
    import numpy as np

    from softening_lib import dft
    from softening_lib.tasks import migration as mig

    t0, c0 = time.time(), time.process_time()
    kind = item["kind"]
    base = {"id": item["id"], "kind": kind, "status": "ok", "host": os.uname().nodename,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    if item.get("mirror_of") is not None:
        rec = mirror_record(item, base)
        if rec is not None:
            return rec  # else: the symmetry does not hold for these relaxed end points: compute
    if kind == "solid-static":
        o = item["ordering"]
        labelled, settings = dft.label(item["atoms"], **item.get("settings", REFERENCE_DFT))
        e = float(labelled.get_potential_energy())
        rec = {**base, "mode": "static", "ordering_id": o.id, "supercell": o.supercell, "n_sites": o.n_sites,
               "n_solute": o.n_solute, "fraction": o.fraction, "multiplicity": o.multiplicity,
               "occupancy": "".join(map(str, o.occupancy)), "energy": e, "energy_per_site": e / o.n_sites,
               "volume_per_site": labelled.get_volume() / o.n_sites, "n_atoms": len(labelled),
               "converged": True, "fmax": float(np.linalg.norm(labelled.get_forces(), axis=1).max()),
               "forces": labelled.get_forces().tolist(), "stress": labelled.get_stress().tolist(),
               "structure": _atoms_record(labelled), "dft": settings}
    elif kind == "solid-relaxed":
        from softening_lib.tasks import solid_solution as ss

        o = item["ordering"]
        start, warm = warm_start(item["atoms"], item.get("warm_start"),
                                 lambda a, c: ss.relax(a, c, fmax=FMAX, relax_cell=True, max_steps=200))
        calc, s = gpaw_calculator(start, **item.get("settings", REFERENCE_DFT))
        atoms, info = ss.relax(start, calc, fmax=FMAX, relax_cell=True, max_steps=200)
        e = float(atoms.get_potential_energy())
        rec = {**base, "mode": "relaxed", "ordering_id": o.id, "supercell": o.supercell, "n_sites": o.n_sites,
               "n_solute": o.n_solute, "fraction": o.fraction, "multiplicity": o.multiplicity,
               "occupancy": "".join(map(str, o.occupancy)), "energy": e, "energy_per_site": e / o.n_sites,
               "volume_per_site": atoms.get_volume() / o.n_sites, "n_atoms": len(atoms),
               "converged": bool(info["converged"]), "fmax": float(info["fmax"]), "steps": int(info["steps"]),
               "structure": _atoms_record(atoms), "dft": _settings_record(s)}
        if warm is not None:
            rec["warm_start"] = warm
    elif kind == "mig-static":
        _path_meta(item)
        labelled, settings = dft.label(item["atoms"], **item.get("settings", REFERENCE_DFT))
        rec = {**base, "mode": "static", "path_id": item["path"].id, "index": item["index"],
               "energy": float(labelled.get_potential_energy()), "converged": True,
               "fmax": float(np.linalg.norm(labelled.get_forces(), axis=1).max()),
               "forces": labelled.get_forces().tolist(), "structure": _atoms_record(labelled), "dft": settings}
    elif kind == "mig-relaxed":
        from ase.constraints import FixAtoms

        _path_meta(item)
        p, built, i = item["path"], item["built"], item["index"]
        n = p.n_images + 2
        if i in (0, n - 1):
            atoms = item["atoms"].copy()
        else:  # interpolate between the relaxed end points
            ends = []
            for j in (0, n - 1):
                f = item["pdir"] / f"image_{j:02d}.json"
                if not _done(f):
                    return {"status": "waiting", "reason": f"end point {j} not done yet"}
                ends.append(_record_atoms(f))
            atoms = mig.interpolate(ends[0], ends[1], p.n_images, "linear")[i]
            atoms.set_constraint(FixAtoms(indices=[built["mover"], path_anchor(built)]))
        atoms, warm = warm_start(atoms, item.get("warm_start"), lambda a, c: mig._relax_fixed_cell(a, c, FMAX, 200))
        calc, s = gpaw_calculator(atoms, **item.get("settings", REFERENCE_DFT))
        relaxed, info = mig._relax_fixed_cell(atoms, calc, FMAX, 200)
        rec = {**base, "mode": "relaxed", "path_id": p.id, "index": i,
               "energy": float(relaxed.get_potential_energy()), "converged": bool(info["converged"]),
               "fmax": float(info["fmax"]), "steps": int(info["steps"]), "structure": _atoms_record(relaxed),
               "dft": _settings_record(s)}
        if i not in (0, n - 1):
            rec["fixed_atoms"] = [int(built["mover"]), path_anchor(built)]
        if warm is not None:
            rec["warm_start"] = warm
    else:
        raise ValueError(kind)
    rec["wall_time_s"] = round(time.time() - t0, 1)
    rec["cpu_time_s"] = round(time.process_time() - c0, 1)
    return rec


# --------------------------------------------------------------------------------------
# cost estimate
# --------------------------------------------------------------------------------------

#: typical GPAW BFGS steps of a relaxation started cold (from the interpolated/ideal geometry)
RELAX_STEPS = {"solid-relaxed": 20, "mig-relaxed": 15}
#: ... and started warm from an MLIP-relaxed geometry (--warm-start): measured on the 11 relaxed
#: Li2O images of 2026-11-26/27 (CHGNet warm start: 3-11 GPAW steps, mean 5.4)
WARM_RELAX_STEPS = {"solid-relaxed": 8, "mig-relaxed": 5.5}
#: CPU of one relaxation step as a fraction of a static (SCF restarts from the previous
#: step's density); measured 0.36-0.43 on the same images (CPU(relaxed) / CPU(static image))
STEP_COST = 0.4


def estimate(item: dict) -> float:
    """CPU seconds of one item: :func:`softening_lib.dft.estimate_cpu_seconds` of a static
    (the model calibrated on the project's surfaces/defects records, +/- a factor 2-3), times
    ``1 + STEP_COST * steps`` for a relaxation (``WARM_RELAX_STEPS`` when the item starts warm)."""
    from softening_lib import dft

    if item.get("mirror_of") is not None:
        return 0.0  # a rotated copy of its partner's record
    atoms = item["atoms"] if item["atoms"] is not None else item["built"]["initial"]
    steps = (WARM_RELAX_STEPS if item.get("warm_start") else RELAX_STEPS).get(item["kind"])
    return dft.estimate_cpu_seconds(atoms, **item.get("settings", REFERENCE_DFT)) * (1 + STEP_COST * steps if steps else 1.0)


def check(tmp: Path) -> dict:
    """The one tiny GPAW run: MgO rocksalt primitive cell, 800 eV, 3x3x3 k-points with
    symmetry off, through the same run_item() path as a real solid-static item."""
    from ase.build import bulk

    from softening_lib import dft
    from softening_lib.tasks import solid_solution as ss

    atoms = bulk("MgO", "rocksalt", a=ss.A_MGO)
    # 3x3x3 k-points without symmetry: every k-point is computed, as in a low-symmetry cell
    settings = {"kpts": (3, 3, 3), "symmetry": "off"}
    s = dft.resolve_settings(atoms, **settings)
    o = ss.Ordering("prim111", 1, 0, (0,), 1)
    item = {"kind": "solid-static", "id": "check", "ordering": o, "atoms": atoms, "out": tmp / "check.json",
            "settings": settings}
    rec = run_item(item)
    _write(item["out"], rec)
    return {"seconds": rec["cpu_time_s"], "wall": rec["wall_time_s"], "n_atoms": len(atoms),
            "volume": atoms.get_volume(), "nk": math.prod(s["kpts"]), "ecut": s["ecut"],
            "kpts": s["kpts"], "energy": rec["energy"], "scf_iterations": rec["dft"].get("scf_iterations")}


def record_status(path: Path) -> str:
    """``todo`` (no record, or an unreadable one), else the record's ``status`` (ok, failed, skipped)."""
    if not path.is_file():
        return "todo"
    try:
        return str(json.loads(path.read_text()).get("status", "todo"))
    except json.JSONDecodeError:
        return "todo"


def item_done(item: dict, retry_failed: bool = False) -> bool:
    """A finished record: ``ok`` or ``skipped`` always; ``failed`` unless ``retry_failed``."""
    st = record_status(item["out"])
    return st in ("ok", "skipped") or (st == "failed" and not retry_failed)


def group_items(items: list[dict]) -> list[list[dict]]:
    """The Dask tasks of the queue: each item whose mirror partner is in the queue joins its
    partner's task (a mirror record is written by the task that computes its partner, right
    after it); every other item is a task of its own. A task is a list, partner first."""
    pos = {it["id"]: k for k, it in enumerate(items)}
    groups: dict[str, list[dict]] = {}
    for it in items:
        j = it.get("mirror_of")
        partner = it["id"].rsplit("/", 1)[0] + f"/{j:02d}" if j is not None else None
        home = partner if partner in pos and partner != it["id"] else it["id"]
        groups.setdefault(home, []).append(it)
    # a partner that is itself a mirror (never in this queue's data) would leave its group unrooted
    return [sorted(g, key=lambda it: (it.get("mirror_of") is not None, pos[it["id"]])) for g in groups.values()]


def group_done(retry_failed: bool, group: list[dict]) -> bool:
    return all(item_done(it, retry_failed) for it in group)


def group_cost(group: list[dict]) -> float:
    return sum(estimate(it) for it in group)


def group_order(group: list[dict]) -> tuple[int, float]:
    """Queue order of a task: stage order first, then cheapest first."""
    return STAGES.index(group[0]["kind"]), group_cost(group)


def run_and_write(item: dict, retry_failed: bool = False) -> str:
    """Compute one item unless its record is finished, write the record atomically; returns its
    status (``cached``, ``ok``, ``failed``, ``waiting``: no record written)."""
    if item_done(item, retry_failed):
        return "cached"
    print(f"[{time.strftime('%H:%M:%S')}] {item['id']}", flush=True)
    try:
        rec = run_item(item)
    except Exception as exc:  # record and go on: a failed SCF must not stop the queue
        rec = {"id": item["id"], "kind": item["kind"], "status": "failed", "error": f"{type(exc).__name__}: {exc}",
               "traceback": traceback.format_exc()[-2000:]}
    if rec.get("status") == "waiting":
        print(f"   {item['id']} waiting: {rec['reason']}", flush=True)
        return "waiting"
    _write(item["out"], rec)
    print(f"   {item['id']} {rec['status']} {rec.get('energy', '')} ({rec.get('cpu_time_s', '?')} CPU s)", flush=True)
    return rec["status"]


def run_group(retry_failed: bool, group: list[dict]) -> dict:
    """One Dask task: the partner, then the mirror records it makes possible. ``{id: status}``."""
    return {it["id"]: run_and_write(it, retry_failed) for it in group}


def run_groups(groups: list[list[dict]], *, retry_failed: bool = False, scheduler=None, workers=None,
               progress: bool = True, log=print, client=None, desc: str = "gpaw-ss-mig"):
    """The queue on :func:`softening_lib.executor.run_queue`: one task per group, cheapest first
    (stage order first: a relaxed image needs its relaxed end points; they are run as a second
    pass, after every end point's task of the first pass has finished)."""
    from functools import partial

    from softening_lib import executor

    def needs_ends(g):
        return any(it["kind"] == "mig-relaxed" and it["index"] not in (0, it["path"].n_images + 1) for it in g)

    passes = [[g for g in groups if not needs_ends(g)], [g for g in groups if needs_ends(g)]]
    results = []
    for pass_groups in passes:
        if not pass_groups:
            continue
        ranked = sorted(pass_groups, key=group_order)
        rank = {g[0]["id"]: r for r, g in enumerate(ranked)}
        n_workers = workers or executor.n_cores()
        env = executor.gpaw_env(n_workers, scheduler if client is None else client)
        results.append(executor.run_queue(
            ranked, partial(run_group, retry_failed), key=lambda g: g[0]["id"],
            done=partial(group_done, retry_failed), priority=lambda g: len(ranked) - rank[g[0]["id"]],
            scheduler=scheduler, workers=n_workers, client=client, progress=progress, log=log, desc=desc,
            env=env))
    return results


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", nargs="+", default=STAGES[:3], choices=STAGES)
    ap.add_argument("--max", type=int, default=None,
                    help="run at most this many tasks (one calculation each, with the mirrored images it makes), cheapest first")
    ap.add_argument("--retry-failed", action="store_true")
    ap.add_argument("--estimate", action="store_true", help="list the queue with a CPU-time estimate")
    ap.add_argument("--list", action="store_true",
                    help="print every item (done/todo/failed/mirror) with its CPU-minute estimate, cheapest first")
    ap.add_argument("--kpt-density", type=float, default=REFERENCE_DFT["kpt_density"],
                    help="k-points per reciprocal Angstrom (a convergence check: use with --reference-dir)")
    ap.add_argument("--only", default=None, help="comma-separated glob(s) on item ids, e.g. 'Li2S-vac-s1/*'")
    ap.add_argument("--check", action="store_true", help="one tiny GPAW static (< 2 min) to test the plumbing")
    ap.add_argument("--reference-dir", type=Path, default=ROOT / "data" / "reference")
    ap.add_argument("--warm-start", default="chgnet-0.3.0",
                    help="MLIP that pre-relaxes each relaxation's start (same constraints) so GPAW needs "
                         "fewer BFGS steps; 'none' to start GPAW from the interpolated geometry")
    from softening_lib import executor

    executor.add_arguments(ap)  # --scheduler, --workers (Dask worker processes), --device
    args = ap.parse_args(argv)

    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            out = check(Path(tmp))
        print(json.dumps(out, indent=1, default=float))
        return

    settings = {**REFERENCE_DFT, "kpt_density": args.kpt_density}
    warm = None if args.warm_start.lower() == "none" else args.warm_start
    if warm is not None and any(s in ("mig-relaxed", "solid-relaxed") for s in args.stage) and not args.estimate:
        from softening_lib import models

        try:
            models.check_available(warm)
        except Exception as exc:  # unknown or unavailable model
            ap.error(f"--warm-start {warm}: {exc}. Install it, name another model, or pass --warm-start none")
    items = [{**it, "settings": settings, "warm_start": warm} for it in queue(args.stage, args.reference_dir)
             if not args.only or any(fnmatch.fnmatch(it["id"], pat) for pat in args.only.split(","))]
    if args.list:
        def state(it):
            st = record_status(it["out"])
            if st in ("ok", "failed"):
                return "done" if st == "ok" else "failed"
            return "mirror" if it.get("mirror_of") is not None else "todo"
        rows = [(state(it), it["id"], len(it["atoms"] if it["atoms"] is not None else it["built"]["initial"]),
                 0.0 if _done(it["out"]) else estimate(it) / 60) for it in items]
        order = {"done": 0, "todo": 1, "failed": 2, "mirror": 3}
        for st, iid, n, est in sorted(rows, key=lambda r: (order[r[0]], r[3])):
            print(f"{st:6s} {iid:40s} atoms={n:4d} est={est:7.1f} CPU min")
        return
    if args.estimate:
        totals: dict[str, list] = {}
        for it in items:
            tot = totals.setdefault(it["kind"], [0, 0, 0.0])
            tot[0] += 1
            tot[1] += int(_done(it["out"]))
            tot[2] += 0.0 if _done(it["out"]) else estimate(it)
        print(f"k-points: {args.kpt_density} per reciprocal Angstrom; cost model of softening_lib.dft "
              "(+/- a factor 2-3)")
        for kind, (n, done, left) in totals.items():
            print(f"{kind:14s} {n:4d} calculations ({done} done)  {left / 3600:7.1f} CPU h to go  "
                  f"({left / max(1, n - done) / 60:.0f} CPU min each)")
        print(f"{'total':14s} {len(items):4d} calculations          "
              f"{sum(t[2] for t in totals.values()) / 3600:7.1f} CPU h to go")
        return

    groups = [g for g in group_items(items) if not group_done(args.retry_failed, g)]
    if args.max is not None:  # the cheapest --max calculations (a task with mirrors counts once)
        groups = sorted(groups, key=group_order)[: args.max]
    print(f"{len(items)} items, {len(groups)} task(s) to run", flush=True)
    if groups:
        run_groups(groups, retry_failed=args.retry_failed, scheduler=args.scheduler, workers=args.workers)


if __name__ == "__main__":
    main()
