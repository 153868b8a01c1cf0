"""Does the engine train as well as the plain loop? Same MNIST recipe, same seeds, both paths, one run.

    python benchmarks/engine_accuracy.py --device cuda --epochs 5 --seeds 3          # a few GPU minutes
    python benchmarks/engine_accuracy.py --device cpu --train-size 512 --width 8 --epochs 1 --seeds 2

For each seed it builds the model (Yan et al.'s MNIST architecture at ``--width``) from the same initial
weights, trains it with :func:`robustode.core.training.train` (plain torchdiffeq loop) and with the engine
(:func:`robustode.core.engine.train_fast_many`, all seeds at once), using the full profile's recipe (noise
augmentation, Adam, weight decay; validation on a 5,000-image split, selection on noisy validation
accuracy), and reports clean and sigma=100 test accuracy per path as mean +- sample sd over seeds, the
difference of the means, and whether it lies within the plain path's seed spread. The two paths draw
different noise and batch orders, so their runs are different samples of the same recipe.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from robustode.chapters import robustness
from robustode.core.engine import train_fast_many
from robustode.core.evaluation import accuracy, noise_accuracy
from robustode.core.training import train
from robustode.data.images import tensor_batches
from robustode.profiles import load_profile, resolve_device
from robustode.results import device_name, mean_sd
from robustode.seeding import seed_everything


def settings(args: argparse.Namespace) -> dict:
    prof = load_profile("full")
    common = prof["robustness"]["common"]
    common.update(epochs=args.epochs, repetitions=args.seeds, width=args.width, train_size=args.train_size,
                  milestones=[m for m in common["milestones"] if m < args.epochs])
    if args.steady_start is not None:
        common["steady_start_epoch"] = args.steady_start
    return robustness.config.config(prof, "MNIST")


def scores(model: torch.nn.Module, data: dict, cfg: dict) -> tuple[float, float]:
    x, y = data["test"]
    return (100 * accuracy(model, x, y, cfg["eval_batch"]),
            100 * noise_accuracy(model, x, y, 100.0, seed=0, batch_size=cfg["eval_batch"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--model", default="ODENet", choices=("CNN", "ODENet", "TisODE"))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--train-size", type=int, default=None, help="training images (default: all 55,000)")
    parser.add_argument("--steady-start", type=int, default=None, help="TisODE: first epoch of the steady-state term")
    args = parser.parse_args()
    for name in ("epochs", "seeds", "width"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be positive")
    if args.seeds < 2:
        parser.error("--seeds must be at least 2 for a seed spread")
    device = resolve_device(args.device)
    cfg = settings(args)
    if not robustness.config.available("MNIST")[0]:
        parser.error(robustness.config.missing_reason("MNIST"))
    data = robustness.run.load_data(cfg, device)
    seeds = list(range(args.seeds))
    initial = []
    for seed in seeds:
        seed_everything(seed)
        initial.append(robustness.run.make_model(args.model, cfg))
    results: dict[str, list[tuple[float, float]]] = {}
    seconds: dict[str, float] = {}

    tic = time.perf_counter()
    plain = []
    for seed, model in zip(seeds, initial, strict=True):
        model = copy.deepcopy(model)
        train(model, tensor_batches(*data["train"], cfg["batch_size"], seed),
              robustness.run.train_spec(args.model, cfg, seed, data["val"]), device, progress=False)
        plain.append(scores(model, data, cfg))
    seconds["plain"], results["plain"] = time.perf_counter() - tic, plain

    tic = time.perf_counter()
    models = [copy.deepcopy(m) for m in initial]
    train_fast_many(models, *data["train"], [robustness.run.train_spec(args.model, cfg, s, data["val"]) for s in seeds],
                    cfg["batch_size"], device, progress=False)
    seconds["engine"], results["engine"] = time.perf_counter() - tic, [scores(m, data, cfg) for m in models]

    print(f"device: {device_name(device)}; {args.model} width {args.width}, {args.epochs} epochs, "
          f"{len(data['train'][0]):,} training images, seeds {seeds}")
    print(f"{'path':<8} {'clean % (mean ± sd)':>22} {'sigma=100 % (mean ± sd)':>26} {'train s':>9}")
    stats = {}
    for path, rows in results.items():
        clean, noisy = mean_sd([r[0] for r in rows])[:2], mean_sd([r[1] for r in rows])[:2]
        stats[path] = (clean, noisy)
        print(f"{path:<8} {clean[0]:>14.2f} ± {clean[1]:<5.2f} {noisy[0]:>18.2f} ± {noisy[1]:<5.2f} {seconds[path]:>9.1f}")
    for i, label in enumerate(("clean", "sigma=100")):
        (m_plain, sd_plain), (m_engine, _) = stats["plain"][i], stats["engine"][i]
        diff = m_engine - m_plain
        verdict = "within" if abs(diff) <= sd_plain else "outside"
        print(f"{label}: engine - plain = {diff:+.2f} points, {verdict} the plain path's seed sd ({sd_plain:.2f})")


if __name__ == "__main__":
    main()
