# The two commands of the README: `make book` and `make test`. Both set up everything on a
# fresh machine (virtual environment, pinned packages; as root also Debian's GPAW build
# libraries and Chromium) and work offline against the data mirror in SOFTENING_DATA_DIR.

PY      ?= python3
VENV    ?= .venv
BIN      = $(VENV)/bin
SUDO    := $(shell [ "$$(id -u)" = 0 ] && echo "" || echo "sudo")

export SOFTENING_DATA_DIR ?= $(abspath ../shared/data)
export OMP_NUM_THREADS = 1
export HF_HUB_OFFLINE = 1
export MPLBACKEND = Agg

.PHONY: book smoke-book test test-fast venv system-deps gpaw browser models data clean

$(BIN)/.installed: requirements.txt pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	@$(BIN)/pip freeze | grep -E '^(nvidia-.*-cu|triton)' && { echo "a CUDA build slipped in: pin torch==2.13.0"; exit 1; } || true
	touch $@

venv: $(BIN)/.installed

# Debian packages: GPAW's build needs libxc + OpenBLAS (+ FFTW, optional: faster plane-wave
# FFTs); the browser check needs chromium.
system-deps:
	@if command -v apt-get >/dev/null && { [ ! -e /usr/include/xc.h ] || [ ! -e /usr/include/fftw3.h ] || ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; }; then \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq libxc-dev libopenblas-dev libfftw3-dev chromium chromium-driver >/dev/null; \
	fi

# GPAW (optional extra `dft`): labels our own DFT references; the tests run one tiny calculation.
# Built with FFTW where its headers exist (scripts/gpaw_siteconfig.py; --no-cache-dir: a wheel
# cached from a build without FFTW would otherwise be reused), else GPAW's default build.
gpaw: venv system-deps
	@$(BIN)/python -c "import gpaw" 2>/dev/null || \
	  GPAW_CONFIG=$(CURDIR)/scripts/gpaw_siteconfig.py CC=g++ $(BIN)/pip install -q --no-cache-dir "gpaw==26.7.0" "gpaw-data==1.2.1" || \
	  CC=g++ $(BIN)/pip install -q "gpaw==26.7.0" "gpaw-data==1.2.1"

test: venv gpaw
	$(BIN)/python -m pytest -q -ra

test-fast: venv
	$(BIN)/python -m pytest -q -m "not slow"

book: venv
	$(BIN)/python -m softening_lib book

smoke-book: venv
	$(BIN)/python -m softening_lib book --preset smoke

models: venv
	$(BIN)/python -m softening_lib models

data: venv
	$(BIN)/python -m softening_lib data

clean:
	rm -rf _build
