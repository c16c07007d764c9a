"""Compute the DFT (GPAW-PBE) reference scans of chapter 1 and commit them.

    OMP_NUM_THREADS=1 python scripts/gpaw_primer.py Si [MgO]

Each point is one GPAW static (softening_lib.dft.label, project defaults); the scan is
written atomically to data/reference/primer/<system>_scan.extxyz with all settings in
each frame's info. Resumable: points already computed (in a .partial file) are kept.
"""

from __future__ import annotations

import os
import sys
import time

os.environ["OMP_NUM_THREADS"] = "1"

from ase.io import read, write  # noqa: E402

from softening_lib import dft  # noqa: E402
from softening_lib.cache import atomic_write_text  # noqa: E402
from softening_lib.tasks import softening_primer as primer  # noqa: E402


def main(system: str) -> None:
    frames = primer.build_scan(system)
    out = primer.reference_path(system)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".partial.extxyz")
    done = read(partial, index=":") if partial.is_file() else []
    for i, atoms in enumerate(frames):
        if i < len(done):
            continue
        t0 = time.time()
        lab, record = dft.label(atoms)
        lab.info.update(atoms.info)
        lab.info.update(dft.record_to_info(record))
        done.append(lab)
        write(partial, done, format="extxyz")
        print(f"{system} point {i + 1}/{len(frames)} amp={atoms.info['amplitude']:+.3f} A "
              f"E={lab.get_potential_energy():.4f} eV ({time.time() - t0:.0f} s)", flush=True)
    write(str(out) + ".tmp", done, format="extxyz")
    os.replace(str(out) + ".tmp", out)
    partial.unlink(missing_ok=True)
    atomic_write_text(out.parent / "PROVENANCE.md", (
        "# Chapter 1 reference scans (computed by this project)\n\n"
        "One atom displaced along a fixed direction (see `softening_lib/tasks/softening_primer.py`),\n"
        "each point a GPAW plane-wave PBE static computed with `softening_lib.dft.label` defaults\n"
        "by `scripts/gpaw_primer.py`. Every frame's `info` holds the GPAW version, cutoff, k-points,\n"
        "smearing and SCF data. GPAW-PBE, not VASP: only energy differences along one scan and\n"
        "forces are used. License: CC BY 4.0 (this project).\n"))
    print(f"wrote {out}")


if __name__ == "__main__":
    for name in sys.argv[1:] or ["Si"]:
        main(name)
