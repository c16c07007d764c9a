# GPAW build configuration for `make gpaw` (passed as GPAW_CONFIG; GPAW's setup.py executes it
# with its own `libraries` list in scope). Adds FFTW for the plane-wave FFTs when its headers
# are installed (Debian: libfftw3-dev): the same energies and forces, ~10-20 % less CPU on the
# 30-atom reference cells here (scripts/bench_gpaw_fftw.py prints the ratio). Without the
# headers this file changes nothing and GPAW uses numpy's FFT.
import os

if os.path.exists("/usr/include/fftw3.h"):
    fftw = True  # noqa: F841 (read by GPAW's setup.py)
    libraries += ["fftw3", "openblas"]  # noqa: F821 (naming a library turns off GPAW's BLAS auto-detection)
