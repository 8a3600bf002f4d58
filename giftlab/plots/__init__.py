"""matplotlib helpers: arrays in, a Figure out; no computation, no file I/O."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def panels(n: int, width: float = 4.6, height: float = 3.6):
    """A row of n axes; returns (fig, axes list)."""
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False)
    return fig, list(axes[0])


def lines(
    ax,
    x,
    series: dict,
    xlabel: str,
    ylabel: str,
    title: str = "",
    logx=False,
    logy=False,
    styles: dict | None = None,
    band: dict | None = None,
):
    """One line per entry of `series` ({label: y}); optional `band` ({label: (lo, hi)}) shading."""
    for label, y in series.items():
        kw = (styles or {}).get(label, {})
        ax.plot(x if not isinstance(x, dict) else x[label], y, label=label, **kw)
        if band and label in band:
            lo, hi = band[label]
            ax.fill_between(
                x if not isinstance(x, dict) else x[label],
                lo,
                hi,
                alpha=0.2,
                color=ax.lines[-1].get_color(),
            )
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    return _finish(ax, xlabel, ylabel, title)


def intervals(
    ax,
    x,
    series: dict,
    xlabel: str,
    ylabel: str,
    title: str = "",
    symlogx: float | None = None,
    offset: float = 0.0,
):
    """Point estimates with 95% intervals: `series` = {label: (mean, low, high)} over x; a zero
    line (the comparison's null); `symlogx` = linthresh for a symlog x axis (keeps x = 0)."""
    import numpy as np

    x = np.asarray(x, dtype=float)
    for i, (label, (mean, low, high)) in enumerate(series.items()):
        mean, low, high = (np.asarray(v, dtype=float) for v in (mean, low, high))
        shift = x * (1 + offset * (i - (len(series) - 1) / 2)) if offset else x
        ax.errorbar(
            shift, mean, yerr=[mean - low, high - mean], fmt="o-", ms=4, capsize=3, label=label
        )
    ax.axhline(0.0, color="k", lw=0.8)
    if symlogx is not None:
        ax.set_xscale("symlog", linthresh=symlogx)
        ax.set_xlim(left=float(x.min()) - 0.2 * symlogx)
    return _finish(ax, xlabel, ylabel, title)


def _finish(ax, xlabel: str, ylabel: str, title: str):
    """Labels, the title, a light grid and the legend: how every panel ends."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def caption(fig, text: str):
    fig.suptitle(text, fontsize=10)
    fig.tight_layout()
    return fig
