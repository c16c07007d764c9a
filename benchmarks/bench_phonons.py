#!/usr/bin/env python
"""Displaced-supercell force evaluation for phonons with CHGNet: one batched call vs a loop.

    export SOFTENING_DATA_DIR=/work/shared/data OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
    nice -n 10 .venv/bin/python benchmarks/bench_phonons.py [--materials mp-1784 mp-380 ...]

For each material: relax the PhononDB-PBEsol unit cell with CHGNet (once, not timed in the
comparison), build the DFT reference's displaced supercells on the relaxed cell, then
evaluate their forces (a) in one batched ``softening_lib.predict.predict`` call (CHGNet
``predict_structure`` on the list, energy + forces, as the phonon task does) and (b) one
structure at a time through the ASE calculator (``atoms.calc = calc; atoms.get_forces()``,
which in CHGNetCalculator also computes the stress), as phonopy tutorials do. Both
get a warm-up; the best of ``--repeat`` runs is reported, in wall and CPU (process) time:
on a shared machine CPU time is the fairer number. The forces of (a) and (b) must agree.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _timed(fn, repeat: int):
    best_wall, best_cpu, out = np.inf, np.inf, None
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        best_wall = min(best_wall, time.perf_counter() - w)
        best_cpu = min(best_cpu, time.process_time() - c)
    return best_wall, best_cpu, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--materials", nargs="+", default=["mp-1784", "mp-380", "mp-10074"])
    ap.add_argument("--model", default="chgnet-0.3.0")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()

    from phonopy import Phonopy

    from softening_lib import datasets, predict
    from softening_lib.phonopy_io import atoms_to_phonopy, phonopy_to_atoms
    from softening_lib.tasks import phonons as P

    calc = predict.calculator(args.model)
    rows = []
    for mp_id in args.materials:
        ref = datasets.load(P.PBESOL, subset=[mp_id])[0]
        w0, c0 = time.perf_counter(), time.process_time()
        relaxed, info = P.relax(ref.unitcell, calc)
        relax_wall, relax_cpu = time.perf_counter() - w0, time.process_time() - c0
        ph = Phonopy(atoms_to_phonopy(relaxed), supercell_matrix=ref.supercell_matrix,
                     primitive_matrix=ref.primitive_matrix)
        ph.dataset = {"natom": ref.displacement_dataset["natom"],
                      "first_atoms": [{"number": d["number"], "displacement": d["displacement"]}
                                      for d in ref.displacement_dataset["first_atoms"]]}
        cells = [phonopy_to_atoms(c) for c in ph.supercells_with_displacements]

        def batched():
            return predict.predict(cells, args.model, with_stress=False)["forces"]

        def loop():
            out = []
            for atoms in cells:
                work = atoms.copy()
                work.calc = calc
                out.append(np.array(work.get_forces()))
            return out

        batched()  # warm-up (graph code paths, allocator)
        loop()
        bw, bc, fb = _timed(batched, args.repeat)
        lw, lc, fl = _timed(loop, args.repeat)
        diff = max(float(np.abs(a - b).max()) for a, b in zip(fb, fl))
        rows.append({"material": mp_id, "formula": ref.formula, "n_atoms_sc": len(cells[0]), "n_disp": len(cells),
                     "relax_wall_s": relax_wall, "relax_cpu_s": relax_cpu, "relax_steps": info["steps"],
                     "batched_wall_s": bw, "loop_wall_s": lw, "batched_cpu_s": bc, "loop_cpu_s": lc,
                     "wall_ratio_loop/batched": lw / bw, "cpu_ratio_loop/batched": lc / bc,
                     "max_force_diff_eV_A": diff})
        print(f"{mp_id} {ref.formula}: {len(cells)} x {len(cells[0])} atoms  batched {bw:.2f} s wall / {bc:.2f} s cpu"
              f"   loop {lw:.2f} s wall / {lc:.2f} s cpu   loop/batched: wall {lw / bw:.2f}, cpu {lc / bc:.2f}"
              f"   (relax {relax_wall:.1f} s wall, {info['steps']} steps; max |dF| {diff:.1e} eV/Å)", flush=True)

    import pandas as pd

    table = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    print()
    print(table.round(3).to_string(index=False))
    tb, tl = table["batched_cpu_s"].sum(), table["loop_cpu_s"].sum()
    print(f"\nforce evaluation, all materials: batched {tb:.2f} s cpu, loop {tl:.2f} s cpu, ratio loop/batched {tl / tb:.2f}")
    per_mat_b = (table["relax_cpu_s"] + table["batched_cpu_s"]).mean()
    per_mat_l = (table["relax_cpu_s"] + table["loop_cpu_s"]).mean()
    print(f"per material incl. relaxation (cpu): batched {per_mat_b:.2f} s, loop {per_mat_l:.2f} s, "
          f"ratio {per_mat_l / per_mat_b:.2f}")


if __name__ == "__main__":
    main()
