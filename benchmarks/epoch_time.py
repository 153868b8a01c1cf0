"""Seconds per 60k-image MNIST epoch: the plain torchdiffeq loop against the engine, same device, same run.

    python benchmarks/epoch_time.py --device cuda --batches 60        # GPU (CUDA graphs)
    python benchmarks/epoch_time.py --device cpu --batches 4          # CPU (loop backend, no graphs)

For each of Yan et al.'s CNN, ODENet and TisODE (MNIST architecture, noise augmentation on, TisODE's
steady-state term on), it times ``--batches`` training batches of 128 random GPU-resident images with
:func:`robustode.core.training.train` (plain) and the engine's :func:`robustode.core.engine.train_epoch`, for one model
and for ``--together`` seeds at once (one CUDA stream each; the time per model is the group's time divided by
their number), each over a second epoch of the same runs after an untimed first one (graph capture), ended by
a device synchronisation; it scales all to 60,000 images and prints the ratios to the plain loop.
"""

from __future__ import annotations

import argparse
import time

import torch

from robustode.core.engine import EngineRun, run_streams, train_epoch
from robustode.core.noise import NoiseAugmentation
from robustode.core.regularisers import SteadyStateRegulariser
from robustode.core.training import TrainSpec, train
from robustode.models.robust import build
from robustode.profiles import resolve_device
from robustode.results import device_name

BATCH = 128
EPOCH_IMAGES = 60_000


def spec(arch: str, epochs: int, seed: int = 0) -> TrainSpec:
    reg = SteadyStateRegulariser(start_epoch=0) if arch == "TisODE" else None
    return TrainSpec(epochs=epochs, lr=1e-3, weight_decay=5e-4, augment=NoiseAugmentation(), regulariser=reg, seed=seed)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_plain(arch: str, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> float:
    model = build(arch)

    def batches(epoch):
        for s in range(0, len(x), BATCH):
            yield x[s : s + BATCH], y[s : s + BATCH]

    train(model, batches, spec(arch, 1), device, progress=False)  # warm-up epoch
    sync(device)
    tic = time.perf_counter()
    train(model, batches, spec(arch, 1), device, progress=False)
    sync(device)
    return time.perf_counter() - tic


def time_together(arch: str, x: torch.Tensor, y: torch.Tensor, device: torch.device, k: int) -> float:
    """Seconds per model when ``k`` models train at once (``k = 1``: the engine on one model): the runs are built
    once, a first epoch captures their graphs (untimed), and a second epoch of the same runs is timed, ended
    by a device synchronisation (:func:`robustode.core.engine.train_epoch`)."""
    runs = [EngineRun(build(arch), spec(arch, 2, seed), device, None) for seed in range(k)]
    active = list(zip(runs, run_streams(runs, device), strict=True))
    graphs = device.type == "cuda"
    train_epoch(active, x, y, 0, BATCH, graphs)  # warm-up + graph capture
    _, seconds = train_epoch(active, x, y, 1, BATCH, graphs)
    return seconds / k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--batches", type=int, default=40, help="timed batches of 128 per model")
    parser.add_argument("--models", nargs="+", default=["CNN", "ODENet", "TisODE"])
    parser.add_argument("--together", type=int, default=3, help="seeds trained at once (0: skip that column)")
    args = parser.parse_args()
    if args.batches <= 0:
        parser.error("--batches must be positive")
    if args.together < 0:
        parser.error("--together must be 0 or more")
    unknown = [m for m in args.models if m not in ("CNN", "ODENet", "TisODE")]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from CNN, ODENet, TisODE")
    device = resolve_device(args.device)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(args.batches * BATCH, 1, 28, 28, generator=gen).to(device)
    y = torch.randint(0, 10, (len(x),), generator=gen).to(device)
    scale = EPOCH_IMAGES / len(x)
    print(f"device: {device_name(device)}; {args.batches} batches of {BATCH}, scaled to {EPOCH_IMAGES:,} images")
    together = f"engine x{args.together} s/epoch/model"
    print(f"{'model':<8} {'plain s/epoch':>14} {'engine s/epoch':>15} {'ratio':>7}"
          + (f" {together:>26} {'ratio':>7}" if args.together else ""))
    for arch in args.models:
        plain = time_plain(arch, x, y, device) * scale
        fast = time_together(arch, x, y, device, 1) * scale
        line = f"{arch:<8} {plain:>14.2f} {fast:>15.2f} {plain / fast:>6.2f}x"
        if args.together:
            group = time_together(arch, x, y, device, args.together) * scale
            line += f" {group:>26.2f} {plain / group:>6.2f}x"
        print(line, flush=True)


if __name__ == "__main__":
    main()
