"""Seconds per 60k-image MNIST epoch: the plain torchdiffeq loop against the engine, same device, same run.

    python benchmarks/epoch_time.py --device cuda --batches 60        # GPU (CUDA graphs)
    python benchmarks/epoch_time.py --device cpu --batches 4          # CPU (loop backend, no graphs)

For each of Yan et al.'s CNN, ODENet and TisODE (MNIST architecture, noise augmentation on, TisODE's
steady-state term on), it times ``--batches`` training batches of 128 random GPU-resident images with
:func:`robustode.training.train` (plain) and :func:`robustode.engine.train_fast` (engine), after one
untimed warm-up epoch each, scales both to 60,000 images, and prints the ratio.
"""

from __future__ import annotations

import argparse
import time

import torch

from robustode.engine import train_fast
from robustode.models.robust import build
from robustode.noise import NoiseAugmentation
from robustode.profiles import resolve_device
from robustode.regularisers import SteadyStateRegulariser
from robustode.results import device_name
from robustode.training import TrainSpec, train

BATCH = 128
EPOCH_IMAGES = 60_000


def spec(arch: str, epochs: int) -> TrainSpec:
    reg = SteadyStateRegulariser(start_epoch=0) if arch == "TisODE" else None
    return TrainSpec(epochs=epochs, lr=1e-3, weight_decay=5e-4, augment=NoiseAugmentation(), regulariser=reg)


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


def time_engine(arch: str, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> float:
    model = build(arch)
    train_fast(model, x, y, spec(arch, 1), BATCH, device, progress=False)  # warm-up + graph capture
    sync(device)
    tic = time.perf_counter()
    train_fast(model, x, y, spec(arch, 1), BATCH, device, progress=False)
    sync(device)
    return time.perf_counter() - tic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--batches", type=int, default=40, help="timed batches of 128 per model")
    parser.add_argument("--models", nargs="+", default=["CNN", "ODENet", "TisODE"])
    args = parser.parse_args()
    if args.batches <= 0:
        parser.error("--batches must be positive")
    device = resolve_device(args.device)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(args.batches * BATCH, 1, 28, 28, generator=gen).to(device)
    y = torch.randint(0, 10, (len(x),), generator=gen).to(device)
    scale = EPOCH_IMAGES / len(x)
    print(f"device: {device_name(device)}; {args.batches} batches of {BATCH}, scaled to {EPOCH_IMAGES:,} images")
    print(f"{'model':<8} {'plain s/epoch':>14} {'engine s/epoch':>15} {'ratio':>7}")
    for arch in args.models:
        plain = time_plain(arch, x, y, device) * scale
        fast = time_engine(arch, x, y, device) * scale
        print(f"{arch:<8} {plain:>14.2f} {fast:>15.2f} {plain / fast:>6.2f}x", flush=True)


if __name__ == "__main__":
    main()
