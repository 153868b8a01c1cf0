"""Figure helpers shared by the chapters' figures (each chapter draws from results files only: chapters/<name>/figures.py)."""

from __future__ import annotations

import textwrap

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
    text = f"*Figure not drawn: no stored runs for {what}.*"
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display(Markdown(text))
    else:  # outside Jupyter
        print(text)


# The book's content column is about 690 px wide at a 1280 px window; figures are drawn at matplotlib's
# 100 dpi, so a figure no wider than this many inches is shown at its own size and its text stays
# as large as it was drawn (the browser check fails on figures scaled below 75 %).
COLUMN_WIDTH_IN = 6.8
MAX_PANELS_PER_ROW = 2


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 4.2, height: float = 3.4, **kw):
    """A figure of ``nrows`` x ``ncols`` panels (``width`` x ``height`` inches each) that fits the book's column.

    A single row of more than :data:`MAX_PANELS_PER_ROW` panels is wrapped into rows of two (the axes
    still come back as one flat array of ``ncols``; a spare slot is hidden), and a figure wider than
    :data:`COLUMN_WIDTH_IN` is scaled down to it — panels shrink, the font sizes do not.
    """
    if nrows == 1 and ncols > MAX_PANELS_PER_ROW and kw.get("squeeze", True):
        rows = -(-ncols // MAX_PANELS_PER_ROW)
        fig, grid = _subplots(rows, MAX_PANELS_PER_ROW, width, height, **kw)
        flat = grid.ravel()
        for ax in flat[ncols:]:
            ax.set_visible(False)
        return fig, flat[:ncols]
    return _subplots(nrows, ncols, width, height, **kw)


def _subplots(nrows: int, ncols: int, width: float, height: float, **kw):
    scale = min(1.0, COLUMN_WIDTH_IN / (width * ncols))
    return plt.subplots(nrows, ncols, figsize=(width * ncols * scale, height * nrows * scale), constrained_layout=True, **kw)


READING_COLOURS = {"supports": "#1f77b4", "contradicts": "#d62728", "unresolved": "#7f7f7f"}


def forest(panels: list[tuple[str, list[tuple[str, float, float | None, float | None, str]]]], xlabel: str = ""):
    """Effects with their 95 % intervals, one panel per group (own x scale: the groups' units differ), zero marked.

    ``panels``: ``(title, [(label, value, low, high, reading), ...])``; ``reading`` (supports / contradicts /
    unresolved) colours the point; an effect without an interval is drawn as a cross. Labels of the form
    "comparison, quantity" that share the comparison name it once, under the title. With no panels nothing is
    drawn: one italic line says so, and None is returned."""
    panels = [(title, rows) for title, rows in panels if rows]
    if not panels:
        skipped("effects with intervals")
        return None
    shown = []
    for title, rows in panels:
        labels = [label for label, *_ in rows]
        shared = {label.split(", ", 1)[0] for label in labels}
        if len(shared) == 1 and all(", " in label for label in labels):
            title = f"{title}\n{shared.pop()}"
            labels = [label.split(", ", 1)[1] for label in labels]
        shown.append(("\n".join(textwrap.fill(line, 80) for line in title.split("\n")),
                      [textwrap.fill(label, 44) for label in labels]))
    # a panel's rows are as tall as its longest label; its title's lines come on top
    heights = [len(labels) * max(1.0, 0.75 * max(label.count("\n") + 1 for label in labels)) + 0.6 * (title.count("\n") + 1)
               + 0.6 for title, labels in shown]
    fig, axes = plt.subplots(len(panels), 1, figsize=(COLUMN_WIDTH_IN, 0.3 * sum(heights) + 0.4),
                             gridspec_kw={"height_ratios": heights}, constrained_layout=True, squeeze=False)
    for ax, (title, labels), (_, rows) in zip(axes[:, 0], shown, panels, strict=True):
        ys = np.arange(len(rows))[::-1]
        for y, (_, value, low, high, reading) in zip(ys, rows, strict=True):
            colour = READING_COLOURS.get(reading, "#7f7f7f")
            if low is None or high is None:
                ax.plot(value, y, "x", color=colour)
            else:
                ax.errorbar(value, y, xerr=[[value - low], [high - value]], fmt="o", color=colour, capsize=3, ms=4)
        ax.axvline(0.0, color="black", lw=0.8)
        ax.set_yticks(ys, labels, fontsize=8)
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.margins(x=0.08)
        ax.tick_params(axis="x", labelsize=8)
        ax.set_title(title, fontsize=8.5, loc="right")
        ax.grid(axis="x", alpha=0.3)
    if xlabel:
        axes[-1, 0].set_xlabel(xlabel, fontsize=8)
    return fig
