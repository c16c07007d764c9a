"""Compute the DFT (GPAW-PBE) reference scans of chapter 1 and commit them.

    OMP_NUM_THREADS=1 python scripts/gpaw_primer.py Si [MgO]

Each point is one GPAW static (softening_lib.dft.label, project defaults); the scan is
written atomically to data/reference/primer/<system>_scan.extxyz with all settings in
each frame's info. Resumable: points already computed (in a .partial file) are kept.
"""

from __future__ import annotations

import os
import sys

os.environ["OMP_NUM_THREADS"] = "1"

from softening_lib import dft  # noqa: E402
from softening_lib.cache import atomic_write_text  # noqa: E402
from softening_lib.tasks import softening_primer as primer  # noqa: E402


def main(system: str) -> None:
    frames = primer.build_scan(system)
    out = primer.reference_path(system)
    out.parent.mkdir(parents=True, exist_ok=True)
    # resumable: finished points live in <out>.partial.extxyz (a torn one is set aside)
    done = dft.label_queue(frames, out, log=None)
    for i, lab in enumerate(done):
        print(f"{system} point {i + 1}/{len(frames)} amp={lab.info['amplitude']:+.3f} A "
              f"E={lab.get_potential_energy():.4f} eV", flush=True)
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
