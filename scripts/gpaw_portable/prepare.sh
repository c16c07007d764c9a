#!/usr/bin/env bash
# Make a self-contained GPAW build kit (~16 MB) for a machine that has Python, numpy, scipy and a
# C++ compiler but no package registry and no libxc (used here for a lent 16-core machine, Python
# 3.12, with no internet). Run on a Debian bookworm machine with libxc-dev, libfftw3-dev and
# libopenblas-dev installed (`make system-deps`), from the repository root:
#     bash scripts/gpaw_portable/prepare.sh KIT [PYVER] [SETUP ELEMENTS...]
# KIT is a folder to fill (git-ignore it: it holds Debian binaries and third-party sources, not
# ours to commit). Then on the target:  bash scripts/gpaw_portable/run_queue.sh KIT SECONDS STAGES...
set -euo pipefail
KIT=$1; PYVER=${2:-3.12}; shift 2 || true
ELEMENTS=${*:-Mg Ca O S Li F Cl}
PIP=${PIP:-.venv/bin/pip}
SETUPS=$(.venv/bin/python -c "import gpaw_data; print(gpaw_data.datapath())")
mkdir -p "$KIT"/{include,setups,whl} /tmp/gpaw_kit_lib/lib
for l in libxc.so.9 libfftw3.so.3 libopenblas.so.0 libgfortran.so.5 libquadmath.so.0; do
  cp -L "/lib/x86_64-linux-gnu/$l" /tmp/gpaw_kit_lib/lib/
done
tar cJf "$KIT/libs.tar.xz" -C /tmp/gpaw_kit_lib lib   # libxc 5.2.3, FFTW 3, OpenBLAS 0.3.21 (bookworm)
cp /usr/include/xc*.h /usr/include/fftw3.h "$KIT/include/"
for e in $ELEMENTS; do cp "$SETUPS/$e.PBE.gz" "$KIT/setups/"; done
$PIP download -q --no-deps --no-binary :all: --no-build-isolation gpaw==26.7.0 -d "$KIT"
$PIP download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
  -d "$KIT/whl" ase==3.29.0 spglib==2.8.0 setuptools pybind11
# the queue runs on Dask (softening_lib.executor): distributed + its pure-python/manylinux deps
$PIP download -q --only-binary=:all: --python-version "$PYVER" --implementation cp \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
  -d "$KIT/whl" dask==2026.8.0 distributed==2026.8.0 tqdm
du -sh "$KIT"
