"""What every chapter notebook calls first: parameter checks, models, figures, glue, records.

A chapter's first code cell (tagged ``parameters``) holds papermill parameters, at least::

    models = ["@default"]   # registry names, "@tag" (softening_lib/models.yml) or "pkg.mod:factory"
    preset = "default"      # "smoke" | "default" | "full"

and its second cell::

    from softening_lib import book
    ctx = book.setup_chapter("07", models=models, preset=preset)

``ctx.models`` are the models that can run here; the others are listed with the reason.
``ctx.figure(fig, "fig5a", caption=..., interactive=plotly_fig)`` saves the PNG and shows the
figure (with ``interactive``: the plotly figure on screen, the PNG in print) with its caption;
``ctx.glue("mae_chgnet", 0.19)`` makes a computed number available to the prose
(``{glue:text}`` roles); ``ctx.finish()`` writes the run record the "what ran here" page reads.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from . import config, models as registry, provenance

PRESETS = ("smoke", "default", "full")


class ParameterError(TypeError):
    pass


def check_parameters(chapter: str, models: Any, preset: Any, **extra_types: tuple[Any, type | tuple]) -> None:
    """Type-check papermill parameters with a message saying what was expected."""
    if isinstance(models, str):
        raise ParameterError(
            f"chapter {chapter}: parameter 'models' must be a list of model names, got the string "
            f"{models!r}; write models=[{models!r}]"
        )
    if not isinstance(models, (list, tuple)) or not all(isinstance(m, str) for m in models):
        raise ParameterError(f"chapter {chapter}: parameter 'models' must be a list of str, got {models!r}")
    if preset not in PRESETS:
        raise ParameterError(f"chapter {chapter}: parameter 'preset' must be one of {PRESETS}, got {preset!r}")
    for name, (value, typ) in extra_types.items():
        if not isinstance(value, typ):
            expected = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
            raise ParameterError(
                f"chapter {chapter}: parameter {name!r} must be {expected}, got {type(value).__name__} {value!r}"
            )


def page_name(chapter: str) -> str:
    """The page this execution renders: the runner names it in ``SOFTENING_RUN_PAGE`` (e.g.
    ``05_ion_migration__mypkg-calc-make`` for a run with another model); records and figures
    are filed under it so that such a run never overwrites the chapter's default page."""
    return os.environ.get("SOFTENING_RUN_PAGE") or chapter


def run_dir() -> Path:
    """Where the runner collects figures and run records (``_build/run`` by default)."""
    path = Path(os.environ.get("SOFTENING_RUN_DIR", config.REPO_ROOT / "_build" / "run"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class ChapterContext:
    chapter: str
    models: list[str]
    skipped: dict[str, str]
    preset: str
    requested: list[str]
    started: float = field(default_factory=time.time)
    figures: list[dict] = field(default_factory=list)
    datasets: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    glued: dict[str, Any] = field(default_factory=dict)

    def pick(self, smoke: Any, default: Any, full: Any) -> Any:
        """The value for this chapter's preset."""
        return {"smoke": smoke, "default": default, "full": full}[self.preset]

    def use_dataset(self, name: str, note: str = "") -> None:
        """Record that a dataset was read (for the what-ran-here page)."""
        from . import datasets

        try:
            fp = datasets.fingerprint(name)
        except Exception:
            fp = "?"
        self.datasets[name] = f"{fp}{' ' + note if note else ''}"

    def figure(self, fig, name: str, caption: str, show: bool = True, interactive=None) -> None:
        """Save ``fig`` as PNG (``_build/run/figures/<page>/<name>.png``), show it and its caption.

        ``interactive``: a plotly figure of the same data (``plots.parity_interactive``,
        ``plots.histogram_interactive``, ``plots.dispersion_interactive``...). The page then shows
        the interactive figure (hover, legend toggles, zoom) with a link to the PNG, and prints
        the PNG (``softening_lib/static``); a notebook shows both. Every PNG on a page opens at full
        size on a click."""
        from IPython.display import HTML, Image, Markdown, display

        from .pages import scrub
        from .plots import interactive_html

        out = run_dir() / "figures" / page_name(self.chapter)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{name}.png"
        fig.savefig(path)
        caption = scrub(caption)
        self.figures.append({"name": name, "caption": caption, "png": str(path),
                             "interactive": interactive is not None})
        import matplotlib.pyplot as plt

        plt.close(fig)
        if show:
            # the PNG itself, so the static HTML shows exactly the saved figure
            display(Image(filename=str(path)))
            if interactive is not None:
                display(HTML(interactive_html(interactive, name)))
            display(Markdown(f"*{caption}*"))

    def glue(self, name: str, value: Any, display: bool = False) -> Any:
        """Expose a computed value to the prose (``{glue:text}`name` ``)."""
        try:
            from myst_nb import glue as _glue

            _glue(name, value, display=display)
        except ImportError:  # pragma: no cover - myst-nb is a requirement
            pass
        self.glued[name] = value if isinstance(value, (int, float, str)) else str(value)
        return value

    def glue_paper(self, keys=None) -> dict[str, Any]:
        """Glue the paper's published numbers (:mod:`softening_lib.paper`) for the prose:
        ``paper_<key>`` (the value, e.g. ``{glue:text}`paper_fig5a_s_chgnet:.3f` ``) and
        ``paper_<key>_text`` (value with bound, unit and figure: "> 90 % (Fig. 5b)").
        ``keys``: keys of ``paper.NUMBERS`` (default: all)."""
        from . import paper

        return paper.glue_all(self, keys)

    def show_models(self):
        """Display which models ran and which were skipped (with the reason)."""
        import pandas as pd
        from IPython.display import display

        rows = [{"model": m, "status": "ran", "reason": ""} for m in self.models]
        rows += [{"model": m, "status": "skipped", "reason": r} for m, r in self.skipped.items()]
        table = pd.DataFrame(rows).set_index("model")
        display(table)
        return table

    def not_run_note(self) -> str:
        """For the prose, from what this run recorded (never typed into a page, which would hold
        only for one machine): the requested models that did not run, each with its reason, or
        "none". Glue it (``ctx.glue("models_not_run", ctx.not_run_note())``) after a typed lead-in
        such as "Requested but not run for this build: "."""
        from .pages import scrub
        from .plots import label

        if not self.skipped:
            return "none"
        def short(m: str, r: Any) -> str:  # the reason's first part: no "name:" prefix, no fix recipe
            r = scrub(str(r)).split(" Fix:")[0].strip()
            return (r[len(m) + 1:].strip() if r.startswith(f"{m}:") else r).rstrip(".")

        items = [f"{label(m)}: {short(m, r)}" for m, r in self.skipped.items()]
        return "; ".join(items)

    def note(self, text: str) -> None:
        """A line for the what-ran page (local paths written relative to $SOFTENING_DATA_DIR etc.)."""
        from .pages import scrub

        self.notes.append(scrub(str(text)))

    def finish(self) -> Path:
        """Write the run record (models, datasets, figures, versions, timing)."""
        from . import __version__

        record = {
            "chapter": self.chapter, "page": page_name(self.chapter), "preset": self.preset,
            "requested_models": self.requested,
            "models": self.models, "skipped": self.skipped, "datasets": self.datasets,
            "figures": self.figures, "notes": self.notes, "glued": self.glued,
            "wall_seconds": round(time.time() - self.started, 1),
            "versions": software_versions(), "softening_lib": __version__,
            "matgl_fix": matgl_fix_state(),
            "model_specs": {m: _spec_summary(m) for m in self.requested},
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            # what this run really used: the runner keys the page on it (see provenance)
            "used": provenance.snapshot(),
        }
        path = run_dir() / "records" / f"{page_name(self.chapter)}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        from .cache import atomic_write_text

        atomic_write_text(path, json.dumps(record, indent=1, default=str))
        return path


def _spec_summary(name: str) -> dict:
    try:
        spec = registry.get_spec(name)
    except Exception as exc:
        return {"error": str(exc)}
    return {"display_name": spec.display_name, "version": spec.version,
            "parameters": spec.n_parameters, "training_set": spec.training_set,
            "weights": spec.weights_source, "sha256": spec.sha256, "citation": spec.citation}


def matgl_fix_state() -> str:
    """The state of matgl in this process, for the run record: ``matgl_fix.describe()`` once a
    matgl model was built (every such path applies the fix), else what was and was not loaded
    (importing matgl only to describe it would cost every chapter a torch start-up)."""
    import sys

    if "matgl" not in sys.modules:
        return "matgl not loaded"
    from . import matgl_fix

    if getattr(matgl_fix, "_applied", False) or not matgl_fix.is_affected(sys.modules["matgl"].__version__):
        return matgl_fix.describe()
    return (f"matgl {sys.modules['matgl'].__version__} imported, no matgl model built (matgl results "
            "read from the result store carry the model id of the fixed models, '+mfix1')")


def software_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("ase", "pymatgen", "phonopy", "torch", "chgnet", "matgl", "mace-torch", "gpaw",
                "numpy", "jupyter-book", "papermill"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def expand_models(names: Sequence[str]) -> list[str]:
    """Registry tags (``"@default"``) replaced by the models that carry them; names as given
    otherwise."""
    names = list(names)
    if any(n.startswith("@") for n in names):
        return registry.expand(names)
    return names


def setup_chapter(chapter: str, models: Sequence[str], preset: str = "default",
                  **extra_types: tuple[Any, type | tuple]) -> ChapterContext:
    """Check parameters, split models into runnable / skipped, set the plot style."""
    check_parameters(chapter, models, preset, **extra_types)
    provenance.start()  # note the data files this chapter reads from here on
    import warnings

    import pandas as pd

    from .plots import use_style

    # library chatter (deprecations inside torch/matgl/chgnet, tqdm's notebook hint) is not
    # part of the story; real errors still raise.
    for category in (DeprecationWarning, FutureWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)
    try:
        from tqdm import TqdmWarning

        warnings.filterwarnings("ignore", category=TqdmWarning)
    except ImportError:  # pragma: no cover
        pass
    pd.set_option("display.max_colwidth", None)
    use_style()
    models = expand_models(models)
    ok, skipped = registry.runnable(list(models))
    return ChapterContext(chapter=chapter, models=ok, skipped=skipped, preset=preset,
                          requested=list(models))
