"""One house style for every figure, and the standard plots the chapters share."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .models import REGISTRY as _REGISTRY
from .models import colour as _model_colour

# One colour per model, stable across chapters: the registry's (softening_lib/models.yml,
# colour-blind-safe Okabe-Ito order); other names get a stable colour from models.colour.
MODEL_COLORS = {"dft": "#000000", **{name: _model_colour(name) for name in _REGISTRY}}


def color(model: str) -> str:
    if model in MODEL_COLORS:
        return MODEL_COLORS[model]
    return _model_colour(model)


def label(model: str) -> str:
    from . import models

    try:
        return models.get_spec(model).display_name
    except Exception:
        return model


def use_style() -> None:
    import matplotlib as mpl
    import seaborn as sns

    sns.set_theme(context="notebook", style="ticks", font_scale=1.0)
    mpl.rcParams.update({
        "figure.dpi": 110, "savefig.dpi": 150, "savefig.bbox": "tight",
        "axes.spines.top": False, "axes.spines.right": False,
        "legend.frameon": False, "figure.autolayout": False,
    })


def parity(ax, x, y, *, model: str, xlabel: str, ylabel: str, lim=None, s: float = 4,
           alpha: float = 0.35, annotate: dict | None = None, color_=None, label_=None):
    """Scatter y vs x with the y = x diagonal; ``annotate`` prints key: value lines."""
    x = np.asarray(x).ravel()
    y = np.asarray(y).ravel()
    ax.scatter(x, y, s=s, alpha=alpha, color=color_ or color(model), lw=0,
               label=label_ or label(model), rasterized=len(x) > 2000)
    if lim is None:
        hi = float(np.nanmax(np.abs(np.concatenate([x, y])))) * 1.05 if len(x) else 1.0
        lim = (-hi, hi) if np.nanmin(np.concatenate([x, y])) < 0 else (0, hi)
    ax.plot(lim, lim, color="0.4", lw=0.8, ls="--", zorder=0)
    ax.set_xlim(lim)
    ax.set_ylim(lim)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if annotate:
        text = "\n".join(f"{k}: {v}" for k, v in annotate.items())
        ax.text(0.03, 0.97, text, transform=ax.transAxes, va="top", ha="left", fontsize=9)
    return ax


def slope_line(ax, slope: float, lim: Sequence[float], model: str, **kw):
    lim = np.asarray(lim)
    ax.plot(lim, slope * lim, color=color(model), lw=1.2, **kw)


def histogram(ax, values_by_model: dict[str, Sequence[float]], *, bins=30, xlabel: str,
              vline: float | None = 1.0, stat: str = "count"):
    """Overlaid step histograms, one colour per model, with a reference line."""
    all_vals = np.concatenate([np.asarray(v, dtype=float) for v in values_by_model.values() if len(v)]) \
        if values_by_model else np.zeros(0)
    if isinstance(bins, int) and all_vals.size:
        lo, hi = float(np.nanmin(all_vals)), float(np.nanmax(all_vals))
        if hi - lo < 1e-12:  # one value (or all equal): a bin of finite width around it
            half = max(0.05, 0.05 * abs(lo))
            lo, hi = lo - half, hi + half
        bins = np.linspace(lo, hi, bins + 1)
    for model, vals in values_by_model.items():
        vals = np.asarray(vals, dtype=float)
        if not vals.size:
            continue
        ax.hist(vals, bins=bins, histtype="step", lw=1.6, color=color(model), label=label(model),
                density=(stat == "density"))
    if vline is not None:
        ax.axvline(vline, color="0.3", lw=0.8, ls="--")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density" if stat == "density" else "count")
    if stat != "density":
        from matplotlib.ticker import MaxNLocator

        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no 2.5 materials
    return ax


def caption(*, what: str, data: str, models: Sequence[str], note: str = "") -> str:
    """A figure caption naming what is shown, the data and the model versions."""
    from . import models as registry

    names = []
    for m in models:
        try:
            spec = registry.get_spec(m)
            names.append(f"{spec.display_name} ({spec.version})")
        except Exception:
            names.append(m)
    text = f"{what} Data: {data}. Models: {', '.join(names) if names else 'none'}."
    return text + (f" {note}" if note else "")


# --------------------------------------------------------------------------------------
# interactive figures (plotly) that work in the static HTML book, offline
# --------------------------------------------------------------------------------------

def interactive_scatter(table, x: str, y: str, *, color: str = "model", hover: Sequence[str] = (),
                        xlabel: str = "", ylabel: str = "", title: str = "", diagonal: bool = True,
                        max_points: int = 6000, seed: int = 0):
    """A plotly scatter (hover shows ``hover`` columns, e.g. material id, formula, frame).

    Large tables are subsampled (seeded) to ``max_points`` so pages stay light; the static
    PNG next to it shows every point.
    """
    import plotly.graph_objects as go

    if len(table) > max_points:
        table = table.sample(max_points, random_state=seed)
    fig = go.Figure()
    for key, grp in table.groupby(color, sort=False):
        custom = grp[list(hover)].astype(str).to_numpy() if hover else None
        template = "<br>".join(f"{h}: %{{customdata[{i}]}}" for i, h in enumerate(hover))
        fig.add_trace(go.Scattergl(
            x=grp[x], y=grp[y], mode="markers", name=label(str(key)),
            marker={"size": 5, "opacity": 0.5, "color": globals()["color"](str(key))},
            customdata=custom,
            hovertemplate=(template + "<br>" if template else "") + f"{x}: %{{x:.3f}}<br>{y}: %{{y:.3f}}<extra>{label(str(key))}</extra>",
        ))
    if diagonal and len(table):
        lo = float(min(table[x].min(), table[y].min()))
        hi = float(max(table[x].max(), table[y].max()))
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x",
                                 line={"color": "gray", "dash": "dash", "width": 1}, hoverinfo="skip"))
    fig.update_layout(template="simple_white", title=title, xaxis_title=xlabel or x,
                      yaxis_title=ylabel or y, height=480, legend={"itemsizing": "constant"})
    return fig


def interactive_histogram(values_by_model: dict, *, xlabel: str, nbins: int = 40, vline: float | None = 1.0,
                          hover_ids: dict | None = None):
    """Overlaid histograms, one per model; with ``hover_ids`` a rug of per-material points
    whose hover shows the material id / formula."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for model, vals in values_by_model.items():
        fig.add_trace(go.Histogram(x=list(vals), name=label(model), nbinsx=nbins, opacity=0.55,
                                   marker_color=color(model)))
        if hover_ids and model in hover_ids:
            fig.add_trace(go.Scatter(x=list(vals), y=[-0.5] * len(vals), mode="markers", showlegend=False,
                                     marker={"symbol": "line-ns-open", "color": color(model), "size": 10},
                                     text=list(hover_ids[model]), hovertemplate="%{text}<br>%{x:.3f}<extra></extra>"))
    if vline is not None:
        fig.add_vline(x=vline, line_dash="dash", line_color="gray")
    fig.update_layout(barmode="overlay", template="simple_white", xaxis_title=xlabel, yaxis_title="count",
                      height=420)
    return fig


def show_interactive(fig) -> None:
    """Display a plotly figure as self-contained HTML that uses the book's local plotly.js
    (copied into ``_static`` at build time: no network needed to view the page)."""
    from IPython.display import HTML, display

    display(HTML(fig.to_html(include_plotlyjs=False, full_html=False, config={"displaylogo": False})))
