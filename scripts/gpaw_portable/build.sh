#!/usr/bin/env bash
# Build GPAW 26.7.0 from a kit made by prepare.sh (libxc, FFTW, OpenBLAS from the kit) into SITE.
# usage: bash scripts/gpaw_portable/build.sh KIT PYTHON SITE WORKDIR      (~1 min on one core)
# The target needs numpy, scipy and typing_extensions (spglib < py3.13) already installed.
set -e
KIT=$(cd "$1" && pwd); PY=$2; SITE=$3; W=$4
mkdir -p "$W" "$SITE"
cd "$W"
tar xJf "$KIT/libs.tar.xz"
(cd lib && ln -sf libopenblas.so.0 libopenblas.so && ln -sf libxc.so.9 libxc.so && ln -sf libfftw3.so.3 libfftw3.so)
"$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" ${WHL:-"$KIT"/whl/*.whl}
tar xzf "$KIT"/gpaw-26.7.0.tar.gz
cat > siteconfig.py <<EOC
mpi = False
fftw = True
libraries = ['xc', 'fftw3', 'openblas']
library_dirs += ['$W/lib']
include_dirs += ['$KIT/include']
runtime_library_dirs += ['$W/lib']
EOC
cd gpaw-26.7.0
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"  # the kit's setuptools/pybind11 for the build
CXX=g++; command -v g++ >/dev/null || CXX=gcc
GPAW_CONFIG=$W/siteconfig.py CC=$CXX "$PY" -m pip install -q --no-index --no-deps --no-build-isolation \
  --no-compile --target "$SITE" .
