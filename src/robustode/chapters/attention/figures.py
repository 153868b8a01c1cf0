"""Chapter 4 figures (the survey's Fig. 5 and around it), drawn from ``attention-table3`` results files only."""

from __future__ import annotations

import numpy as np

from robustode.figures import new_figure, skipped

TIME_COLOURS = ("#9ecae1", "#4292c6", "#2171b5", "#08306b")




def _seed0(runs: list[dict], name: str, dataset: str) -> dict | None:
    found = [r["metrics"] for r in runs if r["params"]["model"] == name and r["params"]["dataset"] == dataset and r["seed"] == 0]
    return found[0] if found else None


def _times(runs: list[dict]) -> list[float]:
    return next(r["params"]["times"] for r in runs)


def mean_attention(runs: list[dict], datasets: list[str], models=("ClassicAttention", "ODEAttention")):
    """Attention over the rows, averaged over the test set: one line for Classic, one per time point for ODE.

    With no dataset that has runs of every model, nothing is drawn: one italic line says so, and None is returned."""
    datasets = [d for d in datasets if all(_seed0(runs, m, d) for m in models)]
    if not datasets:
        skipped("mean attention")
        return None
    fig, axes = new_figure(len(models), len(datasets), width=4.4, height=2.6, squeeze=False, sharey="row")
    times = _times(runs)
    for i, dataset in enumerate(datasets):
        for j, name in enumerate(models):
            ax, att = axes[i][j], _seed0(runs, name, dataset)["attention"]
            mean_map = np.array(att["mean_map"])  # (T, L)
            rows = np.arange(mean_map.shape[1])
            for t, line in enumerate(mean_map):
                label = f"t = {times[t]:g}" if len(mean_map) > 1 else "attention"
                ax.plot(rows, line, color=TIME_COLOURS[t % len(TIME_COLOURS)] if len(mean_map) > 1 else "#c44e52", label=label)
            ax.axhline(1 / len(rows), color="grey", lw=0.6, ls=":")
            ax.set_title(f"{name}, {dataset}: H/log L = {att['normalised_entropy']:.2f}, max = {att['max_weight']:.2f}",
                         fontsize=8)
            ax.set_xlabel("image row")
        axes[i][0].set_ylabel("mean weight (test set)")
    for j in range(len(models)):
        axes[0][j].legend(fontsize=7)
    return fig


def example_attention(runs: list[dict], dataset: str, models=("ClassicAttention", "ODEAttention"), count: int = 4):
    """Test images with each model's attention on their rows (ODE: one column per time point), the Fig. 5 view.

    Every heatmap shares one colour scale (the colour bar on the right); its rows are the image's rows.
    """
    found = {m: _seed0(runs, m, dataset) for m in models}
    if not all(found.values()):
        skipped(f"attention examples, {dataset}")
        return None
    examples = {m: found[m]["examples"] for m in models}
    count = min(count, len(examples[models[0]]["labels"]))
    weights = {m: [np.array(examples[m]["weights"][k]).T for k in range(count)] for m in models}  # (L, T) each
    top = max(max(float(w.max()) for w in maps) for maps in weights.values()) or 1e-6
    times = _times(runs)
    fig, axes = new_figure(1 + len(models), count, width=2.2, height=2.2, squeeze=False)
    for k in range(count):
        image = np.array(examples[models[0]]["images"][k])
        axes[k][0].imshow(image, cmap="gray_r")
        axes[k][0].set_title(f"label {examples[models[0]]['labels'][k]}", fontsize=8)
        axes[k][0].set_ylabel("image row", fontsize=7)
        axes[k][0].set_xticks([])
        for j, name in enumerate(models, start=1):
            w, ax = weights[name][k], axes[k][j]
            shown = ax.imshow(w, aspect="auto", cmap="magma", vmin=0, vmax=top)
            ax.set_title(f"{name.removesuffix('Attention')}: pred {examples[name]['predicted'][k]}, max {w.max():.2f}",
                         fontsize=8)
            ax.set_ylabel("image row", fontsize=7)
            if w.shape[1] > 1:
                ax.set_xticks(range(w.shape[1]))
                ax.set_xticklabels([f"{t:g}" for t in times[: w.shape[1]]], fontsize=6)
            else:
                ax.set_xticks([])
        for ax in axes[k]:
            ax.tick_params(labelsize=6)
    for j, name in enumerate(models, start=1):
        single = weights[name][0].shape[1] == 1
        axes[-1][j].set_xlabel("one map (no time axis)" if single else "time t", fontsize=7)
    fig.colorbar(shown, ax=[ax for row in axes for ax in row[1:]], shrink=0.6, label="attention weight")
    return fig


def validation_curves(runs: list[dict], dataset: str):
    """Validation accuracy per epoch for every model run on ``dataset`` (mean over seeds); None, with one italic line
    saying so, when nothing ran on ``dataset``."""
    if not any(r["params"]["dataset"] == dataset for r in runs):
        skipped(f"validation curves, {dataset}")
        return None
    fig, ax = new_figure(width=5.0, height=3.2)
    for name in dict.fromkeys(r["params"]["model"] for r in runs if r["params"]["dataset"] == dataset):
        curves = [[e["val_accuracy"] for e in r["metrics"]["history"]["epochs"]] for r in runs
                  if r["params"]["model"] == name and r["params"]["dataset"] == dataset]
        length = min(len(c) for c in curves)
        ax.plot(np.arange(1, length + 1), np.mean([c[:length] for c in curves], axis=0), "-o", ms=3, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation accuracy ({dataset})")
    ax.legend(fontsize=7)
    return fig
