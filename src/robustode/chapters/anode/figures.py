"""Chapter 5 figures: loss / NFE / NFE-vs-loss per augmented dimension (the survey's Fig. 3), NODE
instability traces (its Fig. 4), and memory / time of a training step against solver steps."""

from __future__ import annotations

import numpy as np

from robustode.chapters.anode.memory import memory_series, peak_bytes
from robustode.figures import band, new_figure, skipped

FAILED = {"color": "#c00", "marker": "x", "ms": 9, "mew": 2, "ls": "none"}


def _smooth(values: list[float], window: int) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if window <= 1 or len(values) < window:
        return values
    return np.convolve(values, np.ones(window) / window, mode="valid")


def _variants(runs: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for r in sorted(runs, key=lambda r: (r["params"]["augment_dim"], r["seed"])):
        grouped.setdefault(r["params"]["model"], []).append(r)
    return grouped


def sweep(runs: list[dict], title: str, smooth: int = 5):
    """Training loss, forward and backward NFE per iteration, and forward NFE against loss, per p.

    Finished runs are averaged (mean +- sd); a failed run is drawn on its own and ends in a red x.
    With no runs nothing is drawn: one italic line says so, and None is returned.
    """
    if not runs:
        skipped(title)
        return None
    fig, axes = new_figure(4, width=3.6, height=3.1)
    for name, mine in _variants(runs).items():
        p = mine[0]["params"]["augment_dim"]
        done = [r["metrics"]["history"]["iterations"] for r in mine if not r["metrics"]["failure"]]
        failed = [r["metrics"]["history"]["iterations"] for r in mine if r["metrics"]["failure"]]
        label = f"p = {p} ({name})" + (f", {len(failed)}/{len(mine)} failed" if failed else "")
        colour = None
        for ax, key in zip(axes[:3], ("loss", "nfe_forward", "nfe_backward"), strict=True):
            if done:
                band(ax, [its[key] for its in done], label, colour, smooth=smooth)
                colour = ax.lines[-1].get_color()
            for its in failed:
                (line,) = ax.plot(_smooth(its[key], smooth), color=colour, lw=0.8, alpha=0.8,
                                  label=None if done else label)
                colour = line.get_color()
                ax.plot(len(_smooth(its[key], smooth)) - 1, _smooth(its[key], smooth)[-1], **FAILED)
        for its in done + failed:
            axes[3].plot(_smooth(its["nfe_forward"], smooth), _smooth(its["loss"], smooth), ".", ms=2, color=colour,
                         alpha=0.5)
    axes[0].set_ylabel("training loss (cross-entropy)")
    axes[1].set_ylabel("forward NFE")
    axes[2].set_ylabel("backward NFE (adjoint)")
    for ax in axes[:3]:
        ax.set_xlabel("iteration")
    axes[3].set_xlabel("forward NFE")
    axes[3].set_ylabel("training loss")
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return fig


def instability(runs: list[dict], title: str, smooth: int = 1):
    """Every NODE repetition on its own: loss and forward / backward NFE per iteration; a failed solve ends in a red x.

    With no runs nothing is drawn: one italic line says so, and None is returned.
    """
    if not runs:
        skipped(title)
        return None
    fig, axes = new_figure(2, width=4.6)
    for r in runs:
        its, failure = r["metrics"]["history"]["iterations"], r["metrics"]["failure"]
        label = f"seed {r['seed']}" + (f" (failed: {failure})" if failure else "")
        colour = None
        for ax, key in zip((axes[0], axes[1], axes[1]), ("loss", "nfe_forward", "nfe_backward"), strict=True):
            series = _smooth(its[key], smooth)
            (line,) = ax.plot(series, lw=0.8, color=colour, ls="--" if key == "nfe_backward" else "-",
                              label=label if key == "loss" else None)
            colour = line.get_color()
            if failure and len(series):
                ax.plot(len(series) - 1, series[-1], **FAILED)
    axes[0].set_ylabel("training loss")
    axes[0].set_yscale("log")
    axes[1].set_ylabel("NFE: forward (solid), backward (dashed)")
    for ax in axes:
        ax.set_xlabel("iteration")
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return fig


def memory(runs: list[dict], title: str):
    """Saved-for-backward bytes, allocator peak and step time against forward NFE (log-log), per solver and gradient."""
    fig, axes = new_figure(3, width=3.9)
    for label, points in memory_series(runs).items():
        nfe = [m["nfe_forward"] for m in points]
        style = {"ls": "--" if "adjoint" in label else "-", "marker": "o", "ms": 3, "label": label}
        if label.startswith("ResNet"):
            style.update(color="black", ls=":")
        axes[0].plot(nfe, [m["saved_bytes"] / 2**20 for m in points], **style)
        axes[1].plot(nfe, [peak_bytes(m) / 2**20 for m in points], **style)
        axes[2].plot(nfe, [1000 * m["seconds"] for m in points], **style)
    for ax, ylabel in zip(axes, ("saved for backward (MiB)", "allocator peak (MiB)", "step time (ms, median)"), strict=True):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("forward NFE (ResNet: depth)")
        ax.set_ylabel(ylabel)
    if axes[0].lines:  # a profile whose sweep is not measured yet draws empty axes, without a legend warning
        axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return fig
