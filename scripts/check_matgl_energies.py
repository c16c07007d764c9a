#!/usr/bin/env python
"""Energy check of the matgl models against DFT, with and without softening_lib.matgl_fix.

    .venv/bin/python scripts/check_matgl_energies.py --n 40

Takes N WBM equilibrium structures (PBE, no +U / magnetic elements, <= 20 atoms), predicts the
energy per atom with each matgl model before and after the fix, and with CHGNet, and prints
the MAE against the WBM DFT energy (uncorrected). Energies are comparable because all models
are trained on PBE energies of the same kind (MP-like VASP PBE; MatPES uses a higher cutoff,
so expect a small offset there).
"""
from __future__ import annotations

import argparse

import numpy as np

from softening_lib import datasets, dft, matgl_fix, models


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=40)
    args = ap.parse_args()
    frames = [a for a in datasets.load("wbm-equilibrium") if len(a) <= 20]
    ok = []
    for a in frames:
        try:
            dft.check_chemistry(a)
        except Exception:
            continue
        ok.append(a)
    rng = np.random.default_rng(0)
    pick = [ok[i] for i in sorted(rng.choice(len(ok), size=min(args.n, len(ok)), replace=False))]
    ref = np.array([a.get_potential_energy() / len(a) for a in pick])
    print(f"{len(pick)} WBM structures, {sum(len(a) for a in pick)} atoms")
    rows = []
    matgl_models = [m for m in models.tagged("default") if models.get_spec(m).family == "matgl"]
    for name in matgl_models + models.tagged("primary"):
        for fixed in ([False, True] if name in matgl_models else [None]):
            calc = models.get_calculator(name)
            if fixed is False:
                matgl_fix.revert()
            pred = []
            for a in pick:
                b = a.copy()
                b.calc = calc
                pred.append(b.get_potential_energy() / len(b))
            err = np.array(pred) - ref
            rows.append((name, fixed, np.mean(np.abs(err)), np.median(err)))
            print(f"{name:24s} fix={fixed!s:5s} MAE {np.mean(np.abs(err)):.3f} eV/atom, median error {np.median(err):+.3f}",
                  flush=True)
            matgl_fix.apply()


if __name__ == "__main__":
    main()
