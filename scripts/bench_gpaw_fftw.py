"""How much CPU FFTW saves GPAW here: the same two statics with GPAW's FFTW plans and with
numpy's FFT (``gpaw.fftw.have_fftw`` patched off), in one process; prints CPU seconds, the
ratio and the energy difference (must be ~0). Needs a GPAW built with FFTW (``make gpaw`` on a
machine with libfftw3-dev; ``gpaw info`` says ``FFTW yes``).

    OMP_NUM_THREADS=1 SOFTENING_DATA_DIR=../shared/data python scripts/bench_gpaw_fftw.py

Measured on the project machine (2026-11-26, one core each, two other GPAW jobs sharing the
two cores, so single runs are noisy by +/- 20 %): the 31-atom Al vacancy cell, the size of the
defect and migration references, 1.12-1.17x faster with FFTW in three runs (e.g. 164 -> 147
CPU s); small cells anywhere from 0.85x (FFTW's MEASURE planning, ~1 s per new FFT grid, is
charged to a 5 s calculation) to 1.57x; energies equal to 1e-12 eV.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def cases():
    from ase.build import bulk, fcc111

    al = bulk("Al", "fcc", a=4.04, cubic=True).repeat(2)
    del al[0]
    return {
        "MgO primitive, 800 eV, 4x4x4 k": (bulk("MgO", "rocksalt", a=4.26), {"kpts": (4, 4, 4)}),
        "Al(111) 6 layers, 8x8x1 k": (fcc111("Al", (1, 1, 6), a=4.04, vacuum=8.0, periodic=True), {"kpts": (8, 8, 1)}),
        "Al 31-atom vacancy cell, 2x2x2 k": (al, {"kpts": (2, 2, 2)}),
    }


def run(atoms, kw, fftw: bool):
    import gpaw.fftw

    from softening_lib import dft

    real = gpaw.fftw.have_fftw
    gpaw.fftw.have_fftw = real if fftw else (lambda: False)
    gpaw.fftw._plan_cache.clear()  # plans of the other kind must not be reused
    try:
        c0 = time.process_time()
        labelled, _ = dft.label(atoms, **kw)
        return time.process_time() - c0, labelled.get_potential_energy()
    finally:
        gpaw.fftw.have_fftw = real


def main() -> None:
    from gpaw.fftw import have_fftw

    if not have_fftw():
        sys.exit("this GPAW was built without FFTW: install libfftw3-dev and rebuild it (make gpaw)")
    for name, (atoms, kw) in cases().items():
        t_fftw, e_fftw = run(atoms, kw, fftw=True)  # first: any one-off start-up cost is charged to FFTW
        t_np, e_np = run(atoms, kw, fftw=False)
        print(f"{name:36s} numpy FFT {t_np:7.1f} CPU s   FFTW {t_fftw:7.1f} CPU s   "
              f"ratio {t_np / t_fftw:4.2f}   |dE| {abs(e_np - e_fftw):.1e} eV", flush=True)


if __name__ == "__main__":
    main()
