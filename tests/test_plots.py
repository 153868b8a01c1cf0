"""Figures fit the book's column, and the attention heatmaps say what their axes and colours mean."""

from __future__ import annotations

import io

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from robustode.chapters.attention import figures as attention_figs  # noqa: E402
from robustode.figures import COLUMN_WIDTH_IN, new_figure  # noqa: E402


def _rendered_width_px(fig) -> int:
    """Width of the PNG as Jupyter's inline backend saves it (100 dpi, tight bounding box)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return int.from_bytes(buf.getvalue()[16:20], "big")


@pytest.mark.parametrize(("ncols", "nrows", "width"), [(1, 1, 5.0), (2, 1, 4.6), (3, 1, 4.2), (4, 1, 3.6), (3, 4, 2.2)])
def test_every_figure_fits_the_column(ncols, nrows, width):
    import matplotlib.pyplot as plt

    fig, axes = new_figure(ncols, nrows, width=width, squeeze=nrows == 1)
    for ax in np.ravel(axes):
        ax.set_xlabel("a label")
        ax.set_ylabel("a label")
    assert fig.get_figwidth() <= COLUMN_WIDTH_IN + 1e-9
    # 75 % of the figure's pixels still fit the 690 px column: the browser check's limit.
    assert _rendered_width_px(fig) <= 690 / 0.75
    plt.close(fig)


def test_a_row_of_three_panels_wraps_into_two_rows_and_keeps_three_axes():
    import matplotlib.pyplot as plt

    fig, axes = new_figure(3)
    assert len(axes) == 3 and all(ax.get_visible() for ax in axes)
    assert sum(ax.get_visible() for ax in fig.axes) == 3 and len(fig.axes) == 4
    plt.close(fig)


def _attention_runs(times=(0.25, 0.5, 0.75, 1.0)) -> list[dict]:
    rng = np.random.default_rng(0)
    runs = []
    for model, steps in (("ClassicAttention", 1), ("ODEAttention", len(times))):
        weights = rng.dirichlet(np.ones(28), size=(2, steps)).tolist()  # (examples, T, L)
        runs.append({"seed": 0, "params": {"model": model, "dataset": "MNIST", "times": list(times)},
                     "metrics": {"examples": {"labels": [7, 2], "predicted": [7, 3], "weights": weights,
                                              "images": rng.random((2, 28, 28)).tolist()}}})
    return runs


def test_attention_heatmaps_have_a_colour_bar_and_labelled_axes():
    import matplotlib.pyplot as plt

    fig = attention_figs.example_attention(_attention_runs(), "MNIST", count=2)
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 1 and bars[0].get_ylabel() == "attention weight"
    heatmaps = [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]
    limits = {ax.images[0].get_clim() for ax in heatmaps[1:] if ax.get_title().startswith(("Classic", "ODE"))}
    assert len(limits) == 1  # one colour scale for every heatmap, as the single colour bar says
    ticks = {t.get_text() for ax in fig.axes for t in ax.get_xticklabels()}
    assert "-" not in ticks and {"0.25", "1"} <= ticks
    labels = {ax.get_xlabel() for ax in fig.axes} | {ax.get_ylabel() for ax in fig.axes}
    assert {"image row", "time t", "one map (no time axis)"} <= labels
    assert not any("y axes" in label for label in labels)
    plt.close(fig)


def test_the_forest_of_effects_has_a_panel_per_group_fits_the_column_and_names_shared_comparisons_once():
    import matplotlib.pyplot as plt

    from robustode.figures import READING_COLOURS, forest

    panels = [("claim A — supported (full)", [("B − A, FGSM-0.3", 2.0, 1.0, 3.0, "supports"),
                                             ("B − A, PGD-0.2", 1.0, None, None, "unresolved")]),
              ("claim B — contradicted (paper-short)", [("a long effect name " * 4, -2.0, -3.0, -1.0, "contradicts")]),
              ("claim C, no effects", [])]
    fig = forest(panels, "effect")
    axes = fig.axes
    assert len(axes) == 2  # the panel without effects is left out
    assert axes[0].get_title(loc="right").endswith("\nB − A")  # the shared comparison, once, under the title
    assert [t.get_text() for t in axes[0].get_yticklabels()] == ["FGSM-0.3", "PGD-0.2"]
    # the interval is drawn in the reading's colour, the effect without one as a cross
    assert any(matplotlib.colors.same_color(line.get_color(), READING_COLOURS["supports"]) for line in axes[0].lines)
    assert any(line.get_marker() == "x" for line in axes[0].lines)
    assert fig.get_figwidth() <= COLUMN_WIDTH_IN + 1e-9 and _rendered_width_px(fig) <= 690 / 0.75  # as above
    plt.close(fig)
    assert forest([("empty", [])]) is None
