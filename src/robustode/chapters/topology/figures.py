"""Chapter 1 figures: crossing vs non-crossing trajectories, learned flows, lifted ANODE paths, curves."""

from __future__ import annotations

import numpy as np

from robustode.figures import LABEL_COLOURS, band, new_figure


def _by_model(runs: list[dict], seed: int = 0) -> dict[str, dict]:
    return {r["params"]["model"]: r["metrics"] for r in runs if r["seed"] == seed}


def flip_trajectories(runs: list[dict]):
    """h(t) for the inputs -1 and +1: the NODE paths cannot cross, the ResNet's jump, ANODE goes round."""
    models = _by_model(runs)
    fig, axes = new_figure(3)
    for ax, name in zip(axes, ("NODE", "ResNet", "ANODE-p1"), strict=True):
        traj = np.array(models[name]["trajectory"])  # (time, 2 inputs, dim)
        depth = np.linspace(0, 1, len(traj)) if name != "ResNet" else np.arange(len(traj))
        for i, (start, colour) in enumerate(((-1, LABEL_COLOURS[1]), (1, LABEL_COLOURS[-1]))):
            ax.plot(depth, traj[:, i, 0], "-o" if name == "ResNet" else "-", color=colour, label=f"x = {start:+d}")
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_title(f"{name}: g(-1)={models[name]['g_minus1']:+.2f}, g(1)={models[name]['g_plus1']:+.2f}", fontsize=9)
        ax.set_xlabel("layer" if name == "ResNet" else "t")
        ax.set_ylabel("h (first coordinate)")
    axes[0].legend(fontsize=8)
    return fig


def lifted_flip(runs: list[dict]):
    """ANODE p=1 on the flip: the 2-D path of [h; a] shows how the extra dimension lets paths pass."""
    traj = np.array(_by_model(runs)["ANODE-p1"]["trajectory"])
    fig, ax = new_figure()
    for i, colour in enumerate((LABEL_COLOURS[1], LABEL_COLOURS[-1])):
        ax.plot(traj[:, i, 0], traj[:, i, 1], color=colour)
        ax.plot(traj[0, i, 0], traj[0, i, 1], "o", color=colour)
        ax.plot(traj[-1, i, 0], traj[-1, i, 1], "s", color=colour)
    ax.set_xlabel("h")
    ax.set_ylabel("a (augmented)")
    ax.set_title("ANODE p=1: start (o) to end (s)", fontsize=9)
    return fig


def interval_paths(runs: list[dict]):
    """1-D intervals: first coordinate of each point's path, coloured by class."""
    models = _by_model(runs)
    names = [n for n in ("NODE", "ANODE-p1", "ResNet") if n in models]
    fig, axes = new_figure(len(names))
    for ax, name in zip(axes, names, strict=True):
        flow = models[name]["flow"]
        traj = np.array(flow["trajectory"])
        depth = np.arange(len(traj)) if name == "ResNet" else np.linspace(0, 1, len(traj))
        for j, label in enumerate(flow["y"]):
            ax.plot(depth, traj[:, j, 0], color=LABEL_COLOURS[int(label)], lw=0.7, alpha=0.7)
        ax.set_title(f"{name} (test acc. {100 * models[name]['test']['accuracy']:.0f} %)", fontsize=9)
        ax.set_xlabel("layer" if name == "ResNet" else "t")
    axes[0].set_ylabel("h (first coordinate)")
    return fig


def training_curves(runs: list[dict], keys=("loss", "nfe_forward"), smooth: int = 5):
    """Per-iteration training loss and forward NFE, mean +- sd over repetitions, per model."""
    fig, axes = new_figure(len(keys))
    names = list(dict.fromkeys(r["params"]["model"] for r in runs))
    for ax, key in zip(np.atleast_1d(axes), keys, strict=True):
        for name in names:
            if key.startswith("nfe") and name == "ResNet":
                continue
            series = [r["metrics"]["history"]["iterations"][key] for r in runs if r["params"]["model"] == name]
            band(ax, series, name, smooth=smooth)
        ax.set_xlabel("iteration")
        ax.set_ylabel({"loss": "training loss (Smooth-L1)", "nfe_forward": "forward NFE"}.get(key, key))
        if key == "loss":
            ax.set_yscale("log")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    return fig


def sphere_flows(runs: list[dict]):
    """NODE in the plane (paths and learned field at t=0) beside ANODE p=1's lifted 3-D paths."""
    models = _by_model(runs)
    fig = new_figure(2, width=4.6)[0]
    fig.clf()
    ax2 = fig.add_subplot(1, 2, 1)
    node = models["NODE"]["flow"]
    field = node["field"]
    ax2.quiver(field["x"], field["y"], field["u"], field["v"], color="0.6", width=0.004)
    traj = np.array(node["trajectory"])
    for j, label in enumerate(node["y"]):
        ax2.plot(traj[:, j, 0], traj[:, j, 1], color=LABEL_COLOURS[int(label)], lw=0.5, alpha=0.6)
        ax2.plot(traj[-1, j, 0], traj[-1, j, 1], ".", color=LABEL_COLOURS[int(label)], ms=3)
    ax2.set_title("NODE: paths in the plane, field at t=0", fontsize=9)
    ax2.set_aspect("equal")
    ax3 = fig.add_subplot(1, 2, 2, projection="3d")
    anode = models["ANODE-p1"]["flow"]
    traj = np.array(anode["trajectory"])
    for j, label in enumerate(anode["y"]):
        ax3.plot(traj[:, j, 0], traj[:, j, 1], traj[:, j, 2], color=LABEL_COLOURS[int(label)], lw=0.5, alpha=0.6)
    ax3.set_title("ANODE p=1: paths lifted into 3-D", fontsize=9)
    ax3.set_zlabel("a")
    return fig
