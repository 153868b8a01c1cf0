"""Chapters 2-3 figures: accuracy vs noise level and vs attack strength, drawn from results files only."""

from __future__ import annotations

import numpy as np

from robustode.figures import new_figure, skipped

MODEL_COLOURS = {"CNN": "#7f7f7f", "ODENet": "#1f77b4", "TisODE": "#d62728",
                 "CNN+denoise": "#bcbd22", "ODENet+denoise": "#17becf", "TisODE+denoise": "#ff7f0e"}




def _model_line(label: str) -> tuple[str, str | None]:
    """Line style and colour for a per-model label ("TisODE, the authors' checkpoint", "TisODE (seed 0)"): its first
    word picks the colour; a control, without a colour of its own, is drawn dashed in the next colour of the cycle."""
    model = label.replace(",", " ").split()[0]
    return ("-o" if model in MODEL_COLOURS else "--s"), MODEL_COLOURS.get(model)


def _line(ax, points: dict[float, tuple[float, float]], label: str, style: str = "-o") -> None:
    xs = sorted(points)
    mean = np.array([points[x][0] for x in xs])
    sd = np.array([points[x][1] for x in xs], dtype=float)
    (line,) = ax.plot(xs, mean, style, label=label, color=MODEL_COLOURS.get(label), ms=4)
    if not np.isnan(sd).all():
        ax.fill_between(xs, mean - np.nan_to_num(sd), mean + np.nan_to_num(sd), alpha=0.2, color=line.get_color())


def accuracy_curves(curves: dict[str, dict], title: str = ""):
    """Three panels: accuracy vs sigma (Gaussian noise), vs eps for faithful FGSM, vs eps for faithful PGD.

    ``curves`` comes from :func:`robustode.chapters.robustness.tables.curves` (mean and sd over seeds, %).
    With no curves (e.g. the data set is missing) nothing is drawn: one italic line says so, and None is returned.
    """
    if not curves:
        skipped(title or "accuracy curves")
        return None
    fig, axes = new_figure(3, width=4.0, height=3.2)
    panels = (("noise", "Gaussian noise σ (0-255 scale)"), ("fgsm", "FGSM ε (faithful protocol)"),
              ("pgd", "PGD ε (faithful protocol)"))
    for ax, (key, xlabel) in zip(axes, panels, strict=True):
        for name, entry in curves.items():
            if entry[key]:
                _line(ax, entry[key], name)
        ax.set_xlabel(xlabel)
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (%)")
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def field_profiles(profiles: dict[str, dict], t_end: float = 1.0, window: tuple[float, float] = (0.9, 1.5),
                   title: str | None = None):
    """Mean |f(z(t))| along trajectories for each ODE model: does the state settle after T? A label's first word
    names the model, which picks its colour ("TisODE, the authors' checkpoint", "TisODE (seed 0)").

    With no profiles (e.g. the data set is missing) nothing is drawn: one italic line says so, and None is returned.
    """
    if not profiles:
        skipped("field profiles")
        return None
    fig, ax = new_figure(width=5.0)
    for name, prof in profiles.items():
        style, colour = _model_line(name)
        ax.plot(prof["t"], prof["mean_abs_f"], style, ms=3, label=name, color=colour)
    if title:
        ax.set_title(title, fontsize=9)
    ax.axvline(t_end, color="k", lw=0.8, ls="--", label="T (read-out)")
    ax.axvspan(*window, color="#d62728", alpha=0.08, label="steady-state term window")
    ax.set_xlabel("t")
    ax.set_ylabel("mean |f(z(t))|")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    return fig


def readout_curves(read: dict[str, dict], eps: str | None = None, title: str | None = None):
    """Two panels along the read-out time t: the share of clean decisions equal to those at T, and the accuracy on
    Yan et al.'s PGD-``eps`` images crafted at T (every checked iterate right at t; default: the largest eps read).
    ``read`` as :func:`robustode.chapters.robustness.readout.results` gives it; a label's first word picks the
    colour, controls dashed. With nothing to draw, one italic line says so and None is returned."""
    if eps is None:
        eps = max((e for m in read.values() for e in m["pgd"]), key=float, default="")
    read = {name: m for name, m in read.items() if eps in m["pgd"]}
    if not read:
        skipped(f"read-out curves (PGD-{eps})")
        return None
    fig, (left, right) = new_figure(2, width=4.0, height=3.2)
    for name, m in read.items():
        style, colour = _model_line(name)
        t = m["times"]
        left.plot(t, [100 * a for a in m["clean"]["agreement"]], style, ms=3, label=name, color=colour)
        right.plot(t, [100 * a for a in m["pgd"][eps]["accuracy"]], style, ms=3, label=name, color=colour)
    end = next(iter(read.values()))["T"]
    for ax, label in ((left, "clean: decisions equal to those at T (%)"), (right, f"PGD-{eps} crafted at T: accuracy (%)")):
        ax.axvline(end, color="k", lw=0.8, ls="--")
        ax.set_xlabel("read-out time t")
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
    left.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
