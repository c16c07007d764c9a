"""softening_lib: reproduce and extend Deng et al., "Systematic softening in universal
machine learning interatomic potentials", npj Comput. Mater. 11, 9 (2025).

The package holds the science behind the book: a model registry (:mod:`.models`), an
offline-aware data layer (:mod:`.datasets`), metrics (:mod:`.metrics`), batched
predictions with a resumable cache (:mod:`.predict`, :mod:`.cache`), one task module per
chapter (:mod:`.tasks`), plotting in one house style (:mod:`.plots`) and the runner that
executes the chapters with papermill and builds the book (:mod:`.runner`).

Outside the book (:mod:`.measure`, imported on first use so ``import softening_lib`` stays
light): ``softening_lib.measure(frames, model)`` (softening scale per material, bootstrap
interval, MAE, cMAE), ``softening_lib.correct(model, labelled_frames)`` (the one-label
correction, Eq. 4) and ``softening_lib.phonon_ratio(phonopy_yaml, model)``.
"""

from __future__ import annotations

import os as _os

# matgl / huggingface look-ups hang ~45 s offline before failing; be explicit unless the
# user asked to go online.
if _os.environ.get("SOFTENING_ONLINE", "0") != "1":
    _os.environ.setdefault("HF_HUB_OFFLINE", "1")

__version__ = "0.1.0"

PAPER_CITATION = (
    "B. Deng, Y. Choi, P. Zhong, J. Riebesell, S. Anand, Z. Li, K. Jun, K. A. Persson, "
    "G. Ceder, \"Systematic softening in universal machine learning interatomic "
    "potentials\", npj Comput. Mater. 11, 9 (2025), doi:10.1038/s41524-024-01500-6 "
    "(arXiv:2405.07105)"
)
PAPER_DOI = "10.1038/s41524-024-01500-6"


_LAZY = ("measure", "correct", "phonon_ratio")


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module = importlib.import_module(".measure", __name__)  # callable: softening_lib.measure(...)
        return module if name == "measure" else getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
