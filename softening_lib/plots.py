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

    display(HTML(interactive_html(fig)))


# --------------------------------------------------------------------------------------
# the book's interactive figures: one look for every chapter (ctx.figure(..., interactive=...))
# --------------------------------------------------------------------------------------

PLOTLY_CONFIG = {"displaylogo": False, "responsive": True,
                 "modeBarButtonsToRemove": ["select2d", "lasso2d"]}
HOVER_NAMES = {"material_id": "material", "formula": "formula", "frame": "frame", "dataset": "data set"}


def _layout(fig, *, xlabel: str, ylabel: str, title: str = "", height: int = 480, legend_title: str = ""):
    """House layout: white, labels 14 px, legend under the plot (never over the data)."""
    fig.update_layout(
        template="simple_white", height=height, autosize=True,
        title={"text": title, "font": {"size": 15}} if title else None,
        font={"size": 13}, hoverlabel={"font_size": 13},
        margin={"l": 70, "r": 20, "t": 50 if title else 20, "b": 60},
        legend={"orientation": "h", "yanchor": "top", "y": -0.16, "x": 0, "itemsizing": "constant",
                "title": {"text": legend_title}},
    )
    fig.update_xaxes(title_text=xlabel, showgrid=True, gridcolor="#eee")
    fig.update_yaxes(title_text=ylabel, showgrid=True, gridcolor="#eee")
    return fig


def _hover(columns: Sequence[str], names: dict | None = None) -> str:
    names = {**HOVER_NAMES, **(names or {})}
    return "<br>".join(f"{names.get(c, c)}: %{{customdata[{i}]}}" for i, c in enumerate(columns))


def _custom(table, columns: Sequence[str]):
    if not columns:
        return None
    out = table[list(columns)].copy()
    for c in out.columns:
        if out[c].dtype.kind == "f":
            out[c] = out[c].map(lambda v: f"{v:.4g}")
    return out.astype(str).to_numpy()


def parity_interactive(table, x: str, y: str, *, model: str = "model",
                       hover: Sequence[str] = ("material_id", "formula", "frame"),
                       xlabel: str = "", ylabel: str = "", title: str = "", diagonal: bool = True,
                       log: bool = False, max_points: int = 4000, seed: int = 0, height: int = 560,
                       names: dict | None = None, symbol: str | None = None):
    """Model against DFT (``y`` against ``x``), one legend entry per model (click to hide it).

    Hover: the ``hover`` columns present in ``table`` (material id, formula, frame...) and both
    values under their axis labels. SVG markers (no WebGL: works in every browser and headless);
    tables above ``max_points`` are subsampled per model (seeded; the static PNG shows all).
    ``log`` puts both axes on a log scale (values <= 0 are dropped); ``symbol`` a column whose
    values get different marker shapes (e.g. the data set)."""
    import plotly.graph_objects as go

    hover = [c for c in hover if c in table.columns]
    table = table[np.isfinite(table[x].astype(float)) & np.isfinite(table[y].astype(float))]
    if log:
        table = table[(table[x] > 0) & (table[y] > 0)]
    groups = list(table.groupby(model, sort=False))
    per_model = max(1, max_points // max(1, len(groups)))
    xl, yl = xlabel or x, ylabel or y
    fig = go.Figure()
    symbols = ["circle", "square", "diamond", "triangle-up", "cross", "x"]
    for key, grp in groups:
        if len(grp) > per_model:
            grp = grp.sample(per_model, random_state=seed)
        marker = {"size": 7 if len(grp) < 300 else 5, "opacity": 0.75 if len(grp) < 300 else 0.45,
                  "color": color(str(key)), "line": {"width": 0}}
        if symbol and symbol in grp:
            kinds = {v: symbols[i % len(symbols)] for i, v in enumerate(table[symbol].unique())}
            marker["symbol"] = [kinds[v] for v in grp[symbol]]
        fig.add_trace(go.Scatter(
            x=grp[x].astype(float), y=grp[y].astype(float), mode="markers", name=label(str(key)),
            legendgroup=str(key), marker=marker, customdata=_custom(grp, hover),
            hovertemplate=(_hover(hover, names) + "<br>" if hover else "")
            + f"{xl}: %{{x:.4g}}<br>{yl}: %{{y:.4g}}<extra>{label(str(key))}</extra>"))
    if diagonal and len(table):
        vals = np.concatenate([table[x].to_numpy(float), table[y].to_numpy(float)])
        lo, hi = float(np.min(vals)), float(np.max(vals))
        pad = 0.0 if log else 0.03 * (hi - lo or 1.0)
        fig.add_trace(go.Scatter(x=[lo - pad, hi + pad], y=[lo - pad, hi + pad], mode="lines", name="y = x",
                                 line={"color": "gray", "dash": "dash", "width": 1}, hoverinfo="skip"))
    _layout(fig, xlabel=xl, ylabel=yl, title=title, height=height)
    if log:
        fig.update_xaxes(type="log")
        fig.update_yaxes(type="log")
    fig.update_yaxes(scaleanchor="x", scaleratio=1, constrain="domain")
    fig.update_xaxes(constrain="domain")
    return fig


def histogram_interactive(table, value: str, *, model: str = "model", facet: str | None = None,
                          hover: Sequence[str] = ("material_id", "formula"), xlabel: str = "",
                          nbins: int = 30, vline: float | None = 1.0, clip_quantile: float = 0.005,
                          facet_titles: dict | None = None, names: dict | None = None, height_per_row: int = 300):
    """Overlaid histograms of ``value``, one colour per model (legend toggles the model), one
    row per ``facet`` value (e.g. the data set), and under each a rug with one tick per row of
    ``table``: hover gives its material id, formula and value. One set of bins for all; values
    beyond the ``clip_quantile`` tails are drawn in the outermost bins (the rug shows the true
    value)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    hover = [c for c in hover if c in table.columns]
    table = table[np.isfinite(table[value].astype(float))]
    facets = list(table.groupby(facet, sort=False)) if facet else [("", table)]
    allv = table[value].to_numpy(float)
    if len(allv):
        lo, hi = (np.quantile(allv, [clip_quantile, 1 - clip_quantile]) if len(allv) > 20
                  else (allv.min(), allv.max()))
        if vline is not None:
            lo, hi = min(lo, vline), max(hi, vline)
    else:
        lo, hi = 0.0, 1.0
    size = (hi - lo) / nbins if hi > lo else 0.05
    titles = [(facet_titles or {}).get(k, str(k)) + f" ({len(g)} rows)" if facet else "" for k, g in facets]
    fig = make_subplots(rows=len(facets), cols=1, shared_xaxes=True, vertical_spacing=0.14 if facet else 0.05,
                        subplot_titles=titles if facet else None)
    seen: set = set()
    for row, (_, sub) in enumerate(facets, start=1):
        for key, grp in sub.groupby(model, sort=False):
            name, col = label(str(key)), color(str(key))
            vals = grp[value].to_numpy(float)
            fig.add_trace(go.Histogram(
                x=np.clip(vals, lo, hi), name=name, legendgroup=str(key), showlegend=key not in seen,
                xbins={"start": lo, "end": hi + size, "size": size}, marker_color=col, opacity=0.55,
                hovertemplate=f"{name}<br>{xlabel or value}: %{{x}}<br>count: %{{y}}<extra></extra>"), row=row, col=1)
            fig.add_trace(go.Scatter(
                x=vals, y=np.full(len(vals), -0.06), yaxis="y", mode="markers", name=name, legendgroup=str(key),
                showlegend=False, marker={"symbol": "line-ns-open", "size": 12, "color": col, "line": {"width": 1.5}},
                customdata=_custom(grp, hover),
                hovertemplate=(_hover(hover, names) + "<br>" if hover else "")
                + f"{xlabel or value}: %{{x:.4g}}<extra>{name}</extra>"), row=row, col=1)
            seen.add(key)
        fig.update_yaxes(title_text="count", rangemode="tozero", row=row, col=1)
    _layout(fig, xlabel="", ylabel="", height=120 + height_per_row * len(facets))
    fig.update_yaxes(title_text="count")
    fig.update_xaxes(title_text=xlabel or value, row=len(facets), col=1)
    fig.update_xaxes(showticklabels=True, range=[lo - size, hi + size])
    fig.update_layout(barmode="overlay")
    if vline is not None:
        fig.add_vline(x=vline, line_dash="dash", line_color="black", line_width=1.2)
    return fig


def dispersion_interactive(curves: dict, *, ticks: Sequence[float] = (), tick_labels: Sequence[str] = (),
                           ylabel: str = "frequency (THz)", title: str = "", height: int = 520,
                           reference: str | None = "dft", names: dict | None = None):
    """Phonon dispersions, one legend entry per model (click to hide all its branches).

    ``curves``: ``{model: [(distance[nq], frequencies[nq, nbands]), ...]}``, one tuple per path
    segment (phonopy's band structure). Hover: model, branch, frequency and the q-point's
    position along the path (the nearest high-symmetry label). ``reference`` (e.g. "dft") is
    drawn in black, underneath the models."""
    import plotly.graph_objects as go

    ticks = [float(t) for t in ticks]
    fig = go.Figure()
    order = sorted(curves, key=lambda m: m != reference)
    for key in order:
        name = "DFT" if key == reference else label(str(key))
        col = "#000000" if key == reference else color(str(key))
        first = True
        for dist, freq in curves[key]:
            dist, freq = np.asarray(dist, dtype=float), np.asarray(freq, dtype=float)
            near = [tick_labels[int(np.argmin(np.abs(np.asarray(ticks) - d)))] if ticks and tick_labels else ""
                    for d in dist]
            for b in range(freq.shape[1]):
                fig.add_trace(go.Scatter(
                    x=dist, y=freq[:, b], mode="lines", name=name, legendgroup=str(key), showlegend=first,
                    line={"color": col, "width": 2.2 if key == reference else 1.5,
                          "dash": "solid" if key == reference else None},
                    customdata=np.array([[b + 1, n] for n in near], dtype=object),
                    hovertemplate=f"{name}<br>branch %{{customdata[0]}}<br>%{{y:.3f}} THz"
                                  "<br>path %{x:.3f} (near %{customdata[1]})<extra></extra>"))
                first = False
    _layout(fig, xlabel="", ylabel=ylabel, title=title, height=height)
    if ticks:
        fig.update_xaxes(tickmode="array", tickvals=ticks, ticktext=list(tick_labels) or None, showgrid=True,
                         gridcolor="#bbb")
    fig.add_hline(y=0, line_color="#888", line_width=0.8)
    return fig


def interactive_html(fig, name: str = "") -> str:
    """A plotly figure as HTML for the static book: uses the book's local plotly.js (no CDN),
    fills the column width, in a ``div.softening-interactive`` (the page pairs it with its PNG)."""
    body = fig.to_html(include_plotlyjs=False, full_html=False, config=PLOTLY_CONFIG, default_width="100%",
                       div_id=f"fig-{name}" if name else None)
    return f'<div class="softening-interactive" data-figure="{name}">{body}</div>'
