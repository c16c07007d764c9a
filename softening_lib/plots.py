"""One house style for every figure, and the standard plots the chapters share."""

from __future__ import annotations

from typing import Sequence

import numpy as np

# One colour per model, stable across chapters (colour-blind-safe Okabe-Ito order).
MODEL_COLORS = {
    "dft": "#000000",
    "chgnet-0.3.0": "#0072B2",
    "m3gnet-mp-2021.2.8": "#E69F00",
    "mace-mp-0-medium": "#009E73",
    "m3gnet-matpes-pbe": "#CC79A7",
    "tensornet-matpes-pbe": "#D55E00",
    "emt": "#999999",
}
_EXTRA = ["#56B4E9", "#F0E442", "#882255", "#44AA99", "#117733", "#332288"]


def color(model: str) -> str:
    if model in MODEL_COLORS:
        return MODEL_COLORS[model]
    base = model.split("*")[0]
    if base in MODEL_COLORS:
        return MODEL_COLORS[base]
    return _EXTRA[sum(map(ord, model)) % len(_EXTRA)]


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
        bins = np.linspace(np.nanmin(all_vals), np.nanmax(all_vals), bins + 1)
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
