#!/usr/bin/env python
"""GPAW-PBE reference for chapters 2 and 3: surface and point-defect energies, as a resumable queue.

The paper's VASP surface and defect calculations were never deposited, so the book's
reference is computed by this project with GPAW (PBE, plane waves; settings of
``softening_lib.dft``). Every calculation is one JSON record, written atomically:

    data/reference/surfaces_gpaw/<calc_id>.json    bulk-<case>, slab-static-<case>, slab-relaxed-<case>
    data/reference/defects_gpaw/<calc_id>.json     element-<El>, bulk-<host>-<n>x<n>x<n>,
                                                   defect-static-<case>, defect-relaxed-<case>

A killed run resumes where it stopped (records that exist are skipped; ``--retry-failed``
re-runs failed ones). The queue is ordered: every *static* calculation (and the bulk /
element references they need) first, then the relaxations.

    # what would run, and the estimated cost (no GPAW needed)
    python scripts/gpaw_surfaces_defects.py --list
    python scripts/gpaw_surfaces_defects.py --estimate
    # run (one process; OMP_NUM_THREADS=1; `nice` on a shared machine)
    nice -n 10 python scripts/gpaw_surfaces_defects.py --task all --variant all
    # a subset: surfaces of Cu only, statics only, at most 5 calculations
    python scripts/gpaw_surfaces_defects.py --task surfaces --variant static --only 'Cu-*' --max-calcs 5
    # in parallel: one Dask task per calculation (softening_lib.executor): one single-threaded
    # GPAW worker per core by default, --workers N, or --scheduler tcp://HOST:PORT | slurm
    python scripts/gpaw_surfaces_defects.py --task all --variant static --workers 16
    # (--shard i/N still takes every N-th item, e.g. to split the queue by hand between machines)

k-points: slab ``(n1, n2, 1)`` and its bulk cell ``(n1, n2, n3)`` share the in-plane grid
(the bulk cell has the slab's in-plane vectors), n_i from ``kpt_density`` (default
``softening_lib.dft.DEFAULTS``). Defect and perfect supercells share one cell, hence one
grid. Relaxations: BFGS to fmax 0.05 eV/A at fixed cell (the paper's MLIP tolerance; its
VASP runs used 0.02 eV/A). Energies are GPAW free energies (Fermi-Dirac 0.05 eV), the
quantity consistent with the forces, for slab, bulk, defect and element alike.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import platform
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from softening_lib import config  # noqa: E402
from softening_lib.cache import atomic_write_text  # noqa: E402
from softening_lib.predict import geometry_hash  # noqa: E402
from softening_lib.tasks import defects as D  # noqa: E402
from softening_lib.tasks import surfaces as S  # noqa: E402

SCRIPT_VERSION = 1
FMAX = 0.05
RELAX_STEPS = 200
# systems the GPAW labeller refuses by default (spin-paired PBE, no +U) but which are
# non-magnetic in PBE: labelled with force=True and recorded as such
FORCE_CHEMISTRY = {"AlNi"}
# elemental references that are magnetic in PBE: fcc Ni (mu_Ni for AlNi) is computed
# spin-polarised from a ferromagnetic start (the labeller's other settings unchanged)
ELEMENT_SETTINGS = {"Ni": {"spinpol": True, "magmom": 0.6}}

#: a default k-point density; read from softening_lib.dft when it is importable
KPT_DENSITY = 3.0


# --------------------------------------------------------------------------------------
# the queue
# --------------------------------------------------------------------------------------

def _kpts(atoms, density, periodic=(True, True, True)):
    recip = atoms.cell.reciprocal()
    out = []
    for i in range(3):
        if not periodic[i]:
            out.append(1)
            continue
        out.append(max(1, math.ceil(density * 2 * math.pi * float(np.linalg.norm(recip[i])) - 1e-6)))
    return tuple(out)


def slab_kpts(slab, density):
    """(n1, n2, 1) from the 2-D lattice alone: the slab's c is replaced by the surface normal,
    so a tilted c vector (pymatgen keeps a bulk lattice vector) does not distort the grid."""
    from ase import Atoms

    cell = slab.cell.array.copy()
    normal = np.cross(cell[0], cell[1])
    normal /= np.linalg.norm(normal)
    ortho = Atoms(cell=[cell[0], cell[1], normal * abs(cell[2] @ normal)], pbc=True)
    return _kpts(ortho, density, (True, True, False))


def surface_items(systems, density):
    cases, skipped = S.build_cases(systems)
    items = []
    for c in cases:
        k_slab = slab_kpts(c.slab, density)
        k_bulk = (k_slab[0], k_slab[1], _kpts(c.bulk, density)[2])
        base = {"task": "surfaces", "case_id": c.id, "system": c.system, "miller": S.miller_tag(c.miller),
                "area_A2": c.area}
        items.append({**base, "calc_id": f"bulk-{c.id}", "role": "bulk", "variant": "static",
                      "atoms": c.bulk, "kpts": k_bulk})
        items.append({**base, "calc_id": f"slab-static-{c.id}", "role": "slab", "variant": "static",
                      "atoms": c.slab, "kpts": k_slab})
        items.append({**base, "calc_id": f"slab-relaxed-{c.id}", "role": "slab", "variant": "relaxed",
                      "atoms": c.slab, "kpts": k_slab})
    return items, skipped


def defect_items(systems, density, min_distance):
    cases = D.build_cases(systems, min_distance=min_distance)
    items, seen_bulk, elements = [], set(), set()
    for c in cases:
        elements |= set(c.elements())
    for el in sorted(elements):
        ref, source = D.element_reference(el)
        extra = dict(ELEMENT_SETTINGS.get(el, {}))
        magmom = extra.pop("magmom", None)
        if magmom is not None:
            ref.set_initial_magnetic_moments([magmom] * len(ref))
        items.append({"task": "defects", "calc_id": f"element-{el}", "role": "element", "variant": "static",
                      "element": el, "system": el, "atoms": ref, "kpts": _kpts(ref, density),
                      "source": source, "force": el in ("Ni",), "settings": extra})
    for c in cases:
        tag = "x".join(map(str, c.repeat))
        bulk_id = f"{c.system}-{tag}"
        k = _kpts(c.bulk, density)
        base = {"task": "defects", "system": c.system, "bulk_id": bulk_id, "kpts": k,
                "force": c.system in FORCE_CHEMISTRY}
        if bulk_id not in seen_bulk:
            seen_bulk.add(bulk_id)
            items.append({**base, "calc_id": f"bulk-{bulk_id}", "role": "bulk", "variant": "static",
                          "atoms": c.bulk, "repeat": list(c.repeat)})
        for variant in D.VARIANTS:
            items.append({**base, "calc_id": f"defect-{variant}-{c.id}", "role": "defect", "variant": variant,
                          "case_id": c.id, "kind": c.kind, "label": c.label, "dN": c.dN,
                          "atoms": c.defect if variant == "static" or c.start is None else c.start,
                          "repeat": list(c.repeat), "image_distance_A": c.image_distance})
    return items


def build_queue(task, variant, surface_systems, defect_systems, density, min_distance, only=None):
    items = []
    skipped = None
    if task in ("surfaces", "all"):
        s_items, skipped = surface_items(surface_systems, density)
        items += s_items
    if task in ("defects", "all"):
        items += defect_items(defect_systems, density, min_distance)
    if variant != "all":
        items = [it for it in items if it["variant"] == variant or it["role"] in ("bulk", "element")]
    if only:
        pats = only.split(",")
        items = [it for it in items if any(fnmatch.fnmatch(it.get("case_id", it.get("bulk_id", it["system"])), p)
                                           or fnmatch.fnmatch(it["calc_id"], p) for p in pats)]
    return order_queue(items), skipped


def order_queue(items):
    """Statics before relaxations; element references first; then case by case, cheapest case
    (estimated static CPU time) first, each bulk immediately followed by what needs it (a surface's slab, a host's defects),
    so every finished pair already gives a surface or defect energy."""
    order = {"element": 0, "bulk": 1, "slab": 2, "defect": 2}

    def group(it):
        return it.get("case_id") if it["task"] == "surfaces" else it.get("bulk_id", "")

    cost: dict = {}  # a group's estimated static CPU time (the cost model below)
    for it in items:
        if it["role"] != "element" and it["variant"] == "static":
            cost[group(it)] = cost.get(group(it), 0.0) + estimate_seconds(it)
    return sorted(items, key=lambda it: (it["variant"] != "static", it["role"] != "element",
                                         cost.get(group(it), 0.0), group(it) or "",
                                         order[it["role"]], len(it["atoms"])))


OUT_ROOT = None  # --out-root: write records elsewhere (tests, EMT dry runs)


def out_dir(task):
    root = Path(OUT_ROOT) if OUT_ROOT else config.reference_dir()
    return root / ("surfaces_gpaw" if task == "surfaces" else "defects_gpaw")


def record_path(item):
    return out_dir(item["task"]) / f"{item['calc_id']}.json"


# --------------------------------------------------------------------------------------
# cost model
# --------------------------------------------------------------------------------------

# one static: softening_lib.dft.estimate_cpu_seconds (rough, +/- a factor 2-3; its docstring has
# the model and its calibration); a relaxation: RELAX_FACTOR statics (~15 BFGS steps, later
# steps reuse the wave functions)
RELAX_FACTOR = 6.0
CALIB_S = 1.0  # multiplies the whole model (--calib)


def estimate_seconds(item, calib=CALIB_S):
    from softening_lib import dft

    t = dft.estimate_cpu_seconds(item["atoms"], kpts=item["kpts"])
    if item["variant"] == "relaxed" and item["role"] in ("slab", "defect"):
        t *= RELAX_FACTOR
    return calib * t


# --------------------------------------------------------------------------------------
# running one item
# --------------------------------------------------------------------------------------

def _gpaw_calculator(atoms, kpts, txt=None, **settings):
    """A GPAW calculator with softening_lib.dft's settings (for relaxations)."""
    from softening_lib import dft

    s = dft.resolve_settings(atoms, kpts=kpts, **settings)
    dft.ensure_setups(atoms.get_chemical_symbols(), s["xc"])
    from gpaw import GPAW, PW, FermiDirac

    calc = GPAW(mode=PW(s["ecut"]), xc=s["xc"], kpts={"size": s["kpts"], "gamma": True},
                occupations=FermiDirac(s["smearing"]), spinpol=bool(s["spinpol"]),
                convergence=dict(s["convergence"]), maxiter=int(s["maxiter"]), txt=txt)
    return calc, s


def run_item_emt(item):
    """The same queue with ASE's EMT instead of GPAW: a dry run of the machinery (never a reference)."""
    from ase.calculators.emt import EMT

    from softening_lib.relax import relax

    atoms = item["atoms"].copy()
    rec = {k: v for k, v in item.items() if k != "atoms"}
    rec.update(n_atoms=len(atoms), kpts=list(item["kpts"]), script_version=SCRIPT_VERSION, engine="emt")
    if item["variant"] == "static" or item["role"] in ("bulk", "element"):
        atoms.calc = EMT()
        rec.update(energy=float(atoms.get_potential_energy()), converged=True, steps=0)
        final = atoms
    else:
        final, info = relax(atoms, EMT(), fmax=FMAX, steps=RELAX_STEPS, optimizer="BFGS")
        rec.update(energy=info["energy"], fmax=info["fmax"], converged=info["converged"], steps=info["steps"])
    rec.update(status="done", structure=S._atoms_to_dict(final))
    return rec


def run_item(item, log_dir=None):
    from softening_lib import dft
    from softening_lib.relax import relax

    atoms = item["atoms"].copy()
    txt = str(log_dir / f"{item['calc_id']}.txt") if log_dir else None
    t0, c0 = time.time(), time.process_time()
    rec = {k: v for k, v in item.items() if k not in ("atoms",)}
    rec.update(n_atoms=len(atoms), kpts=list(item["kpts"]), input_geometry_hash=geometry_hash([atoms]),
               input_structure=S._atoms_to_dict(atoms), script_version=SCRIPT_VERSION,
               started=time.strftime("%Y-%m-%dT%H:%M:%S%z"), host=platform.node())
    if item["variant"] == "static" or item["role"] in ("bulk", "element"):
        dft.check_chemistry(atoms, force=item.get("force", False))
        labelled, settings = dft.label(atoms, kpts=item["kpts"], force=item.get("force", False), txt=txt,
                                       **item.get("settings", {}))
        energy = float(labelled.get_potential_energy())
        forces = labelled.get_forces()
        rec.update(energy=energy, fmax=float(np.sqrt((forces ** 2).sum(1)).max()), converged=True, steps=0,
                   dft=settings)
        final = atoms
    else:
        dft.check_chemistry(atoms, force=item.get("force", False))
        calc, s = _gpaw_calculator(atoms, item["kpts"], txt=txt)
        final, info = relax(atoms, calc, fmax=FMAX, steps=RELAX_STEPS, optimizer="BFGS")
        energy = float(final.get_potential_energy(force_consistent=True))
        import gpaw

        rec.update(energy=energy, fmax=info["fmax"], converged=info["converged"], steps=info["steps"],
                   max_displacement=info["max_displacement"],
                   dft={"code": "GPAW", "code_version": gpaw.__version__, "xc": s["xc"], "ecut_eV": s["ecut"],
                        "kpts": list(s["kpts"]), "smearing_eV": s["smearing"], "spinpol": bool(s["spinpol"]),
                        "convergence": s["convergence"], "energy_is": "free energy (Fermi-Dirac)",
                        "relaxation": f"BFGS fmax {FMAX} eV/A, max {RELAX_STEPS} steps, fixed cell",
                        "forced_chemistry": bool(item.get("force", False))})
    rec.update(status="done", structure=S._atoms_to_dict(final), wall_s=round(time.time() - t0, 1),
               cpu_s=round(time.process_time() - c0, 1), finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    return rec


def record_state(it):
    """``todo`` (no record or an unreadable one), else the record's status (``done``, ``failed``)."""
    path = record_path(it)
    if not path.is_file():
        return "todo"
    try:
        return json.loads(path.read_text()).get("status", "?")
    except json.JSONDecodeError:
        return "todo"


def queue_done(retry_failed, out_root, it):
    global OUT_ROOT
    OUT_ROOT = out_root
    st = record_state(it)
    return not (st == "todo" or (retry_failed and st == "failed"))


def queue_run(engine, log_dir, out_root, calib, it):
    """One calculation of the queue (a Dask task): run it, write its record atomically."""
    global OUT_ROOT
    OUT_ROOT = out_root
    path = record_path(it)
    print(f"[{time.strftime('%H:%M:%S')}] {it['calc_id']} ({len(it['atoms'])} atoms, kpts {it['kpts']}, "
          f"est {estimate_seconds(it, calib) / 60:.1f} min)", flush=True)
    try:
        rec = run_item_emt(it) if engine == "emt" else run_item(it, log_dir)
    except Exception as exc:
        rec = {k: v for k, v in it.items() if k != "atoms"}
        rec.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                   traceback=traceback.format_exc()[-2000:], n_atoms=len(it["atoms"]),
                   kpts=list(it["kpts"]), script_version=SCRIPT_VERSION)
        print(f"  FAILED: {rec['error']}", flush=True)
    atomic_write_text(path, json.dumps(rec, indent=1, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
    if rec.get("status") == "done":
        print(f"  E = {rec['energy']:.6f} eV, wall {rec.get('wall_s', 0)} s, converged {rec['converged']}",
              flush=True)
    return rec.get("status")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", choices=["surfaces", "defects", "all"], default="all")
    p.add_argument("--variant", choices=["static", "relaxed", "all"], default="all")
    p.add_argument("--surface-systems", default=",".join(S.DEFAULT_SYSTEMS))
    p.add_argument("--defect-systems", default=",".join(D.DEFAULT_SYSTEMS))
    p.add_argument("--min-distance", type=float, default=7.0, help="defect-image separation, A")
    p.add_argument("--kpt-density", type=float, default=None)
    p.add_argument("--only", default=None, help="comma-separated glob(s) on case id or calc id")
    p.add_argument("--max-calcs", type=int, default=None)
    p.add_argument("--shard", default=None, help="i/N: run every N-th item starting at i")
    p.add_argument("--retry-failed", action="store_true")
    p.add_argument("--list", action="store_true", help="print the queue and exit")
    p.add_argument("--estimate", action="store_true", help="print the estimated CPU hours and exit")
    p.add_argument("--calib", type=float, default=CALIB_S, help="multiply the cost model (e.g. 0.5 on a faster CPU)")
    p.add_argument("--log-dir", default=None, help="write GPAW text logs here")
    p.add_argument("--engine", choices=["gpaw", "emt"], default="gpaw",
                   help="emt: dry-run the queue with ASE's EMT (needs --out-root; never a reference)")
    p.add_argument("--out-root", default=None, help="write records under this folder instead of data/reference")
    from softening_lib import executor

    executor.add_arguments(p)
    args = p.parse_args(argv)
    global OUT_ROOT
    OUT_ROOT = args.out_root
    if args.engine == "emt" and not args.out_root:
        p.error("--engine emt writes EMT numbers: give --out-root so they never land in data/reference")

    density = args.kpt_density
    if density is None:
        try:
            from softening_lib import dft

            density = float(dft.DEFAULTS["kpt_density"])
        except Exception:
            density = KPT_DENSITY
    items, skipped = build_queue(args.task, args.variant, args.surface_systems.split(","),
                                 args.defect_systems.split(","), density, args.min_distance, args.only)
    if args.shard:
        i, n = (int(x) for x in args.shard.split("/"))
        items = items[i::n]

    state = record_state

    if args.list or args.estimate:
        total = {"static": 0.0, "relaxed": 0.0}
        for it in items:
            est = estimate_seconds(it, args.calib)
            total[it["variant"]] += est
            if args.list:
                print(f"{state(it):6s} {it['calc_id']:45s} atoms={len(it['atoms']):4d} kpts={it['kpts']} "
                      f"est={est / 60:7.1f} min")
        n_s = sum(it["task"] == "surfaces" and it["role"] == "slab" for it in items) // (2 if args.variant == "all" else 1)
        n_d = sum(it["task"] == "defects" and it["role"] == "defect" for it in items) // (2 if args.variant == "all" else 1)
        print(f"{len(items)} calculations ({n_s} surfaces, {n_d} defects); done "
              f"{sum(state(it) == 'done' for it in items)}, failed {sum(state(it) == 'failed' for it in items)}")
        print(f"estimated CPU time (1 core each): static {total['static'] / 3600:.1f} h, relaxed "
              f"{total['relaxed'] / 3600:.1f} h, total {(total['static'] + total['relaxed']) / 3600:.1f} h "
              f"(rough cost model x{args.calib:g}; treat as +/- a factor 2-3)")
        if skipped is not None and len(skipped):
            print(f"{len(skipped)} Miller indices skipped (no stoichiometric symmetric slab)")
        return 0

    log_dir = Path(args.log_dir) if args.log_dir else None
    if log_dir:
        log_dir.mkdir(parents=True, exist_ok=True)
    todo = [it for it in items if state(it) == "todo" or (args.retry_failed and state(it) == "failed")]
    if args.max_calcs is not None:
        todo = todo[: args.max_calcs]
    print(f"{len(items)} items in the queue, {len(todo)} to run now", flush=True)
    from functools import partial

    order = {it["calc_id"]: i for i, it in enumerate(todo)}  # statics (and their references) first
    workers = args.workers or executor.n_cores()
    res = executor.run_queue(todo, partial(queue_run, args.engine, log_dir, args.out_root, args.calib),
                             key=lambda it: (it["task"], it["calc_id"]),
                             done=partial(queue_done, args.retry_failed, args.out_root),
                             priority=lambda it: len(todo) - order[it["calc_id"]],
                             scheduler=args.scheduler, workers=workers, desc="GPAW",
                             env=executor.gpaw_env(workers, args.scheduler))
    done = len(res)
    print(f"finished {done} calculations", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
