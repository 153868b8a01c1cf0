"""Figure helpers shared by the chapters' figures (each chapter draws from results files only: chapters/<name>/figures.py)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

LABEL_COLOURS = {-1: "#d62728", 1: "#1f77b4"}


def band(ax, series: list[list[float]], label: str, colour: str | None = None, smooth: int = 1) -> None:
    """Mean curve with a +-1 sd band over repetitions (series truncated to the shortest)."""
    length = min(len(s) for s in series)
    data = np.array([s[:length] for s in series], dtype=float)
    if smooth > 1 and length >= smooth:
        kernel = np.ones(smooth) / smooth
        data = np.array([np.convolve(row, kernel, mode="valid") for row in data])
    mean = data.mean(axis=0)
    sd = data.std(axis=0, ddof=1) if len(data) > 1 else np.zeros_like(mean)
    steps = np.arange(len(mean))
    (line,) = ax.plot(steps, mean, label=label, color=colour)
    ax.fill_between(steps, mean - sd, mean + sd, alpha=0.2, color=line.get_color())


def skipped(what: str) -> None:
    """One italic line instead of a figure that would have no data (e.g. its data set is missing)."""
    text = f"*Figure not drawn: no stored runs ({what}).*"
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display(Markdown(text))
    else:  # outside Jupyter
        print(text)


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 4.2, height: float = 3.4, **kw):
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), constrained_layout=True, **kw)
