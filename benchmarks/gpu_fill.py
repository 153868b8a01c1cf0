"""How to fill one GPU with the robustness models' training: ways of running measured side by side, in one run.

    python benchmarks/gpu_fill.py --device cuda --out results/full/gpu-fill.json     # the first GPU piece runs this
    python benchmarks/gpu_fill.py --device cpu --width 4 --batches 2                  # the code path, on a CPU

One model (TisODE by default: the dearest step, steady-state term on, noise augmentation on) at the paper's
width, on random MNIST-shaped images resident on the device, trained by the engine. Every configuration
builds its runs once, trains an untimed first epoch (graph capture) and times a second one of ``--batches``
batches of 128 (``--batch-size``), ended by a device synchronisation; the time is scaled to a 55,000-image epoch per model:

* ``eager x1``: the engine without CUDA graphs (the launch-bound baseline);
* ``graphed x1``: one run, every full-batch step replayed from its graph;
* ``graphed x1, cudnn.benchmark``: the same with cuDNN's algorithm search on;
* ``graphed x1, channels_last``: model and input in NHWC;
* ``streams xk``: k runs at once in one process, each on its own stream with its own capture stream;
* ``processes xk``: k processes at once, each training one graphed run (the epochs timed from a common start).

On a CPU the graphed rows are eager, streams run in turn, and cudnn.benchmark is skipped. A configuration
starts only if the time left (``--budget``) allows about twice what the last one took; skipped ones are listed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from robustode.core.engine import EngineRun, run_streams, train_epoch
from robustode.core.noise import NoiseAugmentation
from robustode.core.regularisers import SteadyStateRegulariser
from robustode.core.training import TrainSpec
from robustode.models.robust import build
from robustode.profiles import resolve_device
from robustode.results import device_name, write_json_atomic

BATCH = 128
EPOCH_IMAGES = 55_000  # MNIST's training images less the 5,000-image validation split
MODELS = ("CNN", "ODENet", "TisODE")


class ToChannelsLast(nn.Module):
    """Puts the input in NHWC (the model's convolutions then run channels-last kernels)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last)


def make_runs(arch: str, width: int, device: torch.device, k: int, channels_last: bool = False) -> list[EngineRun]:
    runs = []
    for seed in range(k):
        torch.manual_seed(seed)
        model = build(arch, width=width, pre=ToChannelsLast() if channels_last else None)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        reg = SteadyStateRegulariser(start_epoch=0) if arch == "TisODE" else None
        spec = TrainSpec(epochs=2, lr=1e-3, weight_decay=5e-4, augment=NoiseAugmentation(), regulariser=reg, seed=seed)
        runs.append(EngineRun(model, spec, device, None))
    return runs


def time_runs(runs: list[EngineRun], x: torch.Tensor, y: torch.Tensor, batch: int, graphs: bool | None = None) -> float:
    """Seconds of the second epoch of ``runs`` trained at once (the first captures their graphs)."""
    device = x.device
    active = list(zip(runs, run_streams(runs, device), strict=True))
    graphs = device.type == "cuda" if graphs is None else graphs
    train_epoch(active, x, y, 0, batch, graphs)
    return train_epoch(active, x, y, 1, batch, graphs)[1]


def data(batches: int, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batches * batch, 1, 28, 28, generator=gen)
    return x.to(device), torch.randint(0, 10, (len(x),), generator=gen).to(device)


def child(args: argparse.Namespace) -> None:
    """One process of ``processes xk``: warm up, say ready, wait for the common start, time one epoch."""
    device = resolve_device(args.device)
    x, y = data(args.batches, args.batch_size, device)
    runs = make_runs(args.model, args.width, device, 1)
    active = list(zip(runs, run_streams(runs, device), strict=True))
    train_epoch(active, x, y, 0, args.batch_size, device.type == "cuda")
    Path(args.ready).touch()
    limit = time.monotonic() + 120
    while not Path(args.go).exists():
        if time.monotonic() > limit:
            raise SystemExit("no start signal within 120 s")
        time.sleep(0.005)
    start = time.time()
    seconds = train_epoch(active, x, y, 1, args.batch_size, device.type == "cuda")[1]
    Path(args.result).write_text(json.dumps({"start": start, "end": time.time(), "seconds": seconds}))


def time_processes(args: argparse.Namespace, k: int, timeout: float) -> float:
    """Wall seconds from the common start until the last of ``k`` processes has timed its epoch."""
    folder = Path(tempfile.mkdtemp(prefix="gpu-fill-"))
    go = folder / "go"
    procs = []
    try:
        for i in range(k):
            cmd = [sys.executable, __file__, "--child", "--device", args.device, "--model", args.model,
                   "--width", str(args.width), "--batches", str(args.batches), "--batch-size", str(args.batch_size),
                   "--ready", str(folder / f"ready{i}"),
                   "--go", str(go), "--result", str(folder / f"result{i}.json")]
            # same process group as this one: a piece that stops this benchmark stops them with it
            procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL))
        end = time.monotonic() + timeout
        while not all((folder / f"ready{i}").exists() for i in range(k)):
            if time.monotonic() > end or any(p.poll() not in (None, 0) for p in procs):
                raise RuntimeError("a process did not get ready in time (or failed)")
            time.sleep(0.02)
        go.touch()
        for p in procs:
            p.wait(timeout=max(1.0, end - time.monotonic()))
        results = [json.loads((folder / f"result{i}.json").read_text()) for i in range(k)]
        return max(r["end"] for r in results) - min(r["start"] for r in results)
    finally:
        for p in procs:  # only the processes started here, by their PID
            if p.poll() is None:
                p.kill()
                p.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--model", default="TisODE", choices=MODELS)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batches", type=int, default=40, help="timed batches per run")
    parser.add_argument("--batch-size", type=int, default=BATCH, help="images per batch (the paper's: 128)")
    parser.add_argument("--streams", type=int, nargs="*", default=[2, 3, 4, 6], help="runs at once on streams")
    parser.add_argument("--processes", type=int, nargs="*", default=[2, 3], help="processes at once")
    parser.add_argument("--budget", type=float, default=150.0, help="seconds for all configurations")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for hidden in ("--ready", "--go", "--result"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.width, args.batches, args.batch_size, args.budget) <= 0:
        parser.error("--width, --batches, --batch-size and --budget must be positive")
    if any(k < 2 for k in [*args.streams, *args.processes]):
        parser.error("--streams and --processes take counts of 2 or more")
    if args.child:
        child(args)
        return 0
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    end = time.monotonic() + args.budget
    batch = args.batch_size
    x, y = data(args.batches, batch, device)
    scale = EPOCH_IMAGES / len(x)
    rows: list[dict] = []
    skipped: list[str] = []
    last = [5.0]  # seconds the previous configuration took, for the budget check

    def measure(name: str, runs: int, timed) -> None:
        if time.monotonic() + 2 * last[0] > end:
            skipped.append(f"{name}: not enough of the {args.budget:.0f} s budget left")
            return
        tic = time.monotonic()
        try:
            seconds = timed()
        except Exception as err:  # a configuration that fails is a result too (e.g. out of memory)
            rows.append({"config": name, "runs": runs, "error": f"{type(err).__name__}: {str(err)[:300]}"})
        else:
            rows.append({"config": name, "runs": runs, "epoch_s_per_model": seconds * scale / runs})
        last[0] = time.monotonic() - tic
        print(json.dumps(rows[-1]), flush=True)

    graphed = "graphed" if cuda else "eager (no graphs off CUDA)"
    if cuda:
        measure("eager x1", 1, lambda: time_runs(make_runs(args.model, args.width, device, 1), x, y, batch, False))
    measure(f"{graphed} x1", 1, lambda: time_runs(make_runs(args.model, args.width, device, 1), x, y, batch))
    if cuda:
        measure(f"{graphed} x1, cudnn.benchmark", 1, lambda: _cudnn_benchmark(args, device, x, y, batch))
    else:
        skipped.append("cudnn.benchmark: needs CUDA")
    measure(f"{graphed} x1, channels_last", 1,
            lambda: time_runs(make_runs(args.model, args.width, device, 1, channels_last=True), x, y, batch))
    for k in args.streams:
        label = f"streams x{k}" if cuda else f"x{k} in turn (no streams off CUDA)"
        measure(label, k, lambda k=k: time_runs(make_runs(args.model, args.width, device, k), x, y, batch))
    for k in args.processes:
        measure(f"processes x{k}", k, lambda k=k: time_processes(args, k, max(10.0, end - time.monotonic())))
    base = next((r["epoch_s_per_model"] for r in rows if r["config"] == f"{graphed} x1" and "error" not in r), None)
    for row in rows:
        if base and "epoch_s_per_model" in row:
            row["speed_vs_one_graphed"] = base / row["epoch_s_per_model"]
    report = {"device": device_name(device), "torch": torch.__version__, "model": args.model, "width": args.width,
              "batches_timed": args.batches, "batch": batch, "scaled_to_images": EPOCH_IMAGES, "rows": rows,
              "skipped": skipped}
    if cuda:
        report["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    print(f"device: {report['device']}; {args.model} width {args.width}; s/epoch per model, scaled to {EPOCH_IMAGES:,}")
    for row in rows:
        value = f"{row['epoch_s_per_model']:8.2f} s  x{row.get('speed_vs_one_graphed', float('nan')):.2f}" \
            if "epoch_s_per_model" in row else row["error"]
        print(f"  {row['config']:<42} {value}")
    for line in skipped:
        print(f"  skipped: {line}")
    if args.out:
        write_json_atomic(args.out, report)
    return 0


def _cudnn_benchmark(args: argparse.Namespace, device: torch.device, x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        return time_runs(make_runs(args.model, args.width, device, 1), x, y, batch)
    finally:
        torch.backends.cudnn.benchmark = before


if __name__ == "__main__":
    sys.exit(main())
