"""Does the decision settle? Reading an ODE model's state out later than the time it was trained for.

Chapter 3 measures whether the state comes to rest after the read-out time ``T`` (``field_profile``): it does not,
for any model here, the authors' TisODE included. What matters to a classifier is the decision, not the state. This
module reads the head at every time of a grid on ``[0, horizon * T]`` (the model's own solver, the field evaluated
beyond ``T`` as it stands):

* clean images: accuracy at each time, and agreement with the decision at ``T``;
* Yan et al.'s PGD (any checked iterate counts) crafted through the deployed model at ``T``: accuracy when the same
  iterates are read out at each time. If the attacks' images keep fooling the model at ``2T``, the decision has
  settled; if they stop fooling it, the adversarial images are tuned to the read-out time, and an evaluation whose
  read-out differs from the attacker's would report robustness that an attacker who knows it takes away (the same
  kind of masking as the sanity stage's solver transfer).

One run-plan unit per ODE model (seed 0 of every ODE model a profile's ``robustness`` section plans on MNIST,
controls included, once that model is trained; experiment ``readout-MNIST``) and one per ODE checkpoint of the profile's
``authors`` section (experiment :data:`AUTHORS`). The settings are the section's ``readout`` entry, outside the
evaluation settings that key the runs' results files, so adding it re-evaluates nothing.
"""

from __future__ import annotations

import time

import torch

from robustode.chapters.robustness import authors
from robustode.chapters.robustness.config import (
    base_model,
    config,
    eps_value,
    experiment_name,
    missing_reason,
    profile_name,
    training_params,
)
from robustode.chapters.robustness.run import attack_set, cached_data, make_model, pass_costs, planned_runs
from robustode.compare import Difference, paired_bootstrap
from robustode.core import attacks
from robustode.core.budget import Deadline
from robustode.core.regularisers import SteadyState
from robustode.models.robust import WIDTH, build
from robustode.profiles import experiment_config, load_profile, resolve_device
from robustode.results import nearest, pack_flags, unpack_flags
from robustode.store import Store
from robustode.units import DONE, PENDING, WAITING, Context, Progress, Unit, standing, stored_seconds
from robustode.units import ensure as ensure_unit

EXPERIMENT = "readout-MNIST"
AUTHORS = "authors-readout"
KEYS = ("images", "eps", "horizon", "points")
PGD_ITERATIONS = 10  # Yan et al.'s PGD: ten checked iterates x0 .. x9


def settings(profile: str | dict) -> dict | None:
    """The ``robustness`` section's ``readout`` entry (``{images, eps, horizon, points}``), checked; ``None`` when
    the profile has no robustness section or no entry. The grid ``linspace(0, horizon * T, points)`` must hold ``T``
    and ``2T`` (``points - 1`` a multiple of ``horizon``)."""
    prof = load_profile(profile) if isinstance(profile, str) else profile
    entry = prof.get("robustness", {}).get("readout")
    if not entry:
        return None
    if unknown := set(entry) - set(KEYS):
        raise ValueError(f"unknown key(s) in robustness.readout: {', '.join(sorted(unknown))}; expected {', '.join(KEYS)}")
    if missing := [k for k in KEYS if k not in entry]:
        raise ValueError(f"robustness.readout needs {', '.join(missing)}")
    images, horizon, points, eps = entry["images"], entry["horizon"], entry["points"], entry["eps"]
    if not isinstance(images, int) or isinstance(images, bool) or images < 1:
        raise ValueError(f"robustness.readout.images must be a positive whole number, got {images!r}")
    if not isinstance(horizon, int) or isinstance(horizon, bool) or horizon < 2:
        raise ValueError(f"robustness.readout.horizon must be a whole number >= 2 (multiples of T), got {horizon!r}")
    if not isinstance(points, int) or points < 3 or (points - 1) % horizon:
        raise ValueError(f"robustness.readout.points must be 1 + a multiple of horizon ({horizon}) so that the grid "
                         f"holds T and 2T, got {points!r}")
    if not eps or not all(isinstance(e, str) for e in eps):
        raise ValueError(f"robustness.readout.eps must list eps as strings (as Table I prints them), got {eps!r}")
    for e in eps:
        if not 0 < eps_value(e) <= 1:
            raise ValueError(f"robustness.readout.eps: {e} is not in (0, 1]")
    return {"images": images, "eps": list(eps), "horizon": horizon, "points": points}


def read_out(model, x: torch.Tensor, y: torch.Tensor, eps: list[str], horizon: int, points: int,
             batch_size: int = 250) -> dict:
    """The decision of ``model`` read out along ``linspace(0, horizon * T, points)``: per time, clean accuracy and
    agreement with the decision at ``T``; per eps, Yan et al.'s PGD crafted at ``T`` and judged at each time (an image
    is robust at ``t`` when every checked iterate is classified correctly there), with the per-image flags.

    ``model`` must be a :class:`~robustode.models.robust.RobustNet` whose middle is one ODE block ending at ``T``
    (or TisODE's :class:`~robustode.core.regularisers.SteadyState` around one, which in eval mode is the block)."""
    blocks = model.ode_blocks()
    middle = model.middle.block if isinstance(model.middle, SteadyState) else model.middle  # in eval: the block
    if len(blocks) != 1 or middle is not blocks[0]:
        raise ValueError("read_out needs a model whose middle is a single ODE block")
    block = blocks[0]
    end = block.time_points[-1]
    times = torch.linspace(0.0, horizon * end, points).tolist()
    at_t = (points - 1) // horizon

    def decisions(inputs: torch.Tensor) -> torch.Tensor:  # (times, images)
        with torch.no_grad():
            states = block.trajectory(model.middle_input(inputs), times)
            return torch.stack([model.head(z).argmax(1) for z in states])

    model.eval()
    tic = time.perf_counter()
    clean = torch.cat([decisions(x[i : i + batch_size]) for i in range(0, len(x), batch_size)], dim=1)
    out = {"times": times, "T": end, "images": len(x),
           "clean": {"accuracy": (clean == y).float().mean(1).tolist(),
                     "agreement": (clean == clean[at_t]).float().mean(1).tolist(),
                     "flags": [pack_flags(row.tolist()) for row in (clean == y)]},
           "pgd": {}, "seconds": {"clean": time.perf_counter() - tic}}
    for e in eps:
        tic = time.perf_counter()
        robust = []
        for i in range(0, len(x), batch_size):
            xb, yb = x[i : i + batch_size], y[i : i + batch_size]
            result = attacks.pgd(model, xb, yb, eps_value(e), PGD_ITERATIONS, keep_iterates=True)
            # x0 is the clean batch: its decisions are read above already (the same batch, the same solve)
            ok = clean[:, i : i + batch_size] == yb
            for iterate in result.iterates[1:]:
                ok &= decisions(iterate) == yb
            if not torch.equal(ok[at_t].cpu(), result.robust.cpu()):
                raise AssertionError(f"PGD-{e}: the read-out at T disagrees with the attack's own verdict")
            robust.append(ok)
        flags = torch.cat(robust, dim=1)
        out["pgd"][e] = {"accuracy": flags.float().mean(1).tolist(), "flags": [pack_flags(r.tolist()) for r in flags]}
        out["seconds"][f"pgd {e}"] = time.perf_counter() - tic
    return out


def price(cfg: dict, s: dict, grad_s: float, forward_s: float) -> float:
    """Seconds for one unit from per-image costs: the clean read-out, and per eps nine input gradients plus nine
    read-outs (x0 is the clean image, read out already), each ``horizon`` forward passes long (an upper bound: the
    grid's states come from one solve)."""
    n = min(s["images"], cfg["attack_images"])
    return n * (s["horizon"] * forward_s + len(s["eps"]) * (PGD_ITERATIONS - 1) * (grad_s + s["horizon"] * forward_s))


def _probe(model_factory, cfg: dict, s: dict) -> dict:
    torch.manual_seed(0)
    side = cfg.get("image_size") or 28
    passes = pass_costs(model_factory(), (1, side, side))
    return {"epoch_s": 0.0, **passes, "stages_s": {"readout": price(cfg, s, passes["grad_s"], passes["forward_s"])}}


def units(profile: str | dict, device: torch.device | None = None) -> list[Unit]:
    """One unit per ODE model the profile's ``robustness`` section plans on MNIST (chapter 3's data set), seed 0:
    its committed model read out (:func:`read_out`) on the first ``readout.images`` attack images. Waiting, with the
    unit it waits for, until that model is trained; ``[]`` without a ``readout`` entry."""
    s = settings(profile)
    if s is None:
        return []
    out = []
    for dataset, planned in planned_runs(profile).items():
        if dataset != "MNIST":
            continue
        for seed, name, cfg, priority in planned:
            # the architecture alone says whether there is an ODE block (a defence's settings are checked in its job)
            if seed != 0 or not build(base_model(name), dataset, width=cfg["width"]).ode_blocks():
                continue
            experiment, run, tparams = EXPERIMENT, f"{name}-seed0", training_params(name, cfg)
            params = {"model": name, "dataset": dataset, "training": tparams, "attack_images": cfg["attack_images"], **s}
            waits = f"waits for robustness/{dataset}/{name}/seed0 to be trained"

            def status(store: Store, experiment=experiment, run=run, params=params, tparams=tparams, dataset=dataset,
                       waits=waits) -> Progress:
                if store.run(experiment, run, params) is not None:
                    return Progress(DONE, "results file written")
                if not store.model_file(experiment_name(dataset), run, tparams).exists():
                    return Progress(WAITING, waits)
                return Progress(PENDING, "", 0, ["readout"])

            def compute(ctx: Context, name=name, cfg=cfg, run=run, tparams=tparams, dataset=dataset) -> dict:
                saved = ctx.store.load_model(experiment_name(dataset), run, tparams)
                if saved is None:
                    raise FileNotFoundError(f"no trained model for {name} seed 0 on {dataset}")
                ctx.deadline.check(ctx.stage_estimate("readout"), f"read-out of {name} seed 0")
                model = make_model(name, cfg)
                model.load_state_dict(saved["model"])
                model.to(ctx.device)
                xa, ya = attack_set(cached_data(ctx, cfg), cfg)
                n = min(s["images"], len(xa))
                return {"source": f"{name} seed 0, the committed model", **read_out(model, xa[:n], ya[:n], s["eps"],
                                                                                    s["horizon"], s["points"])}

            out.append(Unit(id=f"readout/{dataset}/{name}/seed0", experiment=experiment, run=run, params=params, seed=0,
                            epochs=0, stages=["readout"], kind=f"readout/{dataset}/{name}", compute=compute,
                            status=status, probe=lambda name=name, cfg=cfg: _probe(lambda: make_model(name, cfg), cfg, s),
                            requires=lambda dataset=dataset: missing_reason(dataset), priority=priority,
                            spent=lambda store, e=experiment, r=run, p=params: stored_seconds(store, e, r, p)))
    return out


def authors_units(profile: str | dict, device: torch.device | None = None) -> list[Unit]:
    """One unit per ODE checkpoint of the profile's ``authors`` section (ODENet, TisODE), read out with the
    ``readout`` settings of its ``evaluation_profile``; blocked as the authors' units are without the checkpoints."""
    settings_ = authors.config(profile)
    s = settings(settings_["evaluation_profile"])
    if s is None:
        return []
    cfg = settings_["evaluation"]
    out = []
    for index, name in enumerate(m for m in settings_["models"] if m != "CNN"):
        relative, path = settings_["checkpoints"][name], authors.checkpoint_path(settings_, name)
        params = {"model": name, "checkpoint": relative, "evaluation_profile": settings_["evaluation_profile"],
                  "attack_images": cfg["attack_images"], **s}

        def status(store: Store, name=name, params=params) -> Progress:
            if store.run(AUTHORS, name, params) is not None:
                return Progress(DONE, "results file written")
            return Progress(PENDING, "", 0, ["readout"])

        def compute(ctx: Context, name=name, path=path, relative=relative) -> dict:
            if why := authors.requires(path):
                raise FileNotFoundError(why)
            ctx.deadline.check(ctx.stage_estimate("readout"), f"read-out of the authors' {name}")
            model, _ = authors.load_model(name, path)
            model.to(ctx.device)
            xa, ya = attack_set(authors.mnist_test_set(ctx), cfg)
            n = min(s["images"], len(xa))
            return {"source": f"the authors' checkpoint {relative}",
                    **read_out(model, xa[:n], ya[:n], s["eps"], s["horizon"], s["points"])}

        out.append(Unit(id=f"authors-readout/MNIST/{name}", experiment=AUTHORS, run=name, params=params, seed=None,
                        epochs=0, stages=["readout"], kind=f"authors-readout/MNIST/{name}", compute=compute,
                        status=status,
                        probe=lambda name=name: _probe(lambda: build(name, "MNIST", width=WIDTH),
                                                       {**cfg, "dataset": "MNIST"}, s),
                        requires=lambda path=path: authors.requires(path), priority=index,
                        spent=lambda store, name=name, params=params: stored_seconds(store, AUTHORS, name, params)))
    return out


def ensure(profile: str | dict, device: str = "auto", compute: bool = True, progress: bool = False) -> list[dict]:
    """Chapter 3's read-outs of the profile's own models, computed where the model is trained and the read-out is not
    stored (``compute=False``, or no ``readout`` entry, or no MNIST here: nothing is computed). The section's
    ``resume`` decides whether a stored read-out is reused (the quick profile retrains its models every build, so it
    reads them out again). The authors' checkpoints are read out by ``robustode run`` (they need the clone)."""
    if not compute or settings(profile) is None or missing_reason("MNIST"):
        return []
    dev = resolve_device(device)
    ctx = Context(Store(profile_name(profile)), dev, Deadline(), progress)
    resume = config(profile, "MNIST")["resume"]
    return [ensure_unit(unit, ctx, resume) for unit in units(profile, dev)
            if unit.status(ctx.store).state != WAITING]


def results(store: Store, dataset: str = "MNIST") -> dict[str, dict]:
    """The read-outs ``store`` holds, keyed as chapter 3's field profiles are: ``"<model>, the authors'
    checkpoint"`` first, then our models in the plan's order (``"<model> (seed 0)"``). ``{}`` when none."""
    prof = load_profile(store.profile)
    out = {}
    if "authors" in prof and dataset == "MNIST":
        for unit in authors_units(prof):
            if (run := store.run(AUTHORS, unit.run, unit.params)) is not None:
                out[f"{unit.run}, the authors' checkpoint"] = run["metrics"]
    if "robustness" in prof and dataset in experiment_config(prof, "robustness").get("datasets", {}):
        config(prof, dataset)  # a broken section stops here, before the units are listed
        for unit in units(prof):
            if unit.params["dataset"] == dataset and (run := store.run(unit.experiment, unit.run, unit.params)):
                out[f"{unit.params['model']} (seed 0)"] = run["metrics"]
    return out


def not_read(store: Store, dataset: str = "MNIST") -> list[str]:
    """Our models' read-outs that the profile of ``store`` plans and ``store`` does not hold yet, each with why
    (waiting for the model's training, or the data missing here): what the chapter's table leaves out."""
    prof = load_profile(store.profile)
    if "robustness" not in prof or settings(prof) is None:
        return []
    out = []
    for unit in units(prof):
        if unit.params["dataset"] != dataset or (progress := standing(unit, store)).state == DONE:
            continue
        out.append(f"{unit.params['model']} (seed 0): {progress.detail or 'not run yet'}")
    return out


def index_of(metrics: dict, multiple: float) -> int:
    """The grid index of ``multiple`` x T in a stored read-out."""
    return nearest(metrics["times"], multiple * metrics["T"])


def change(metrics: dict, what: str, multiple: float = 2.0) -> Difference:
    """Accuracy read out at ``multiple`` x T minus accuracy at T (points), ``what`` = ``"clean"`` or a PGD eps, with
    a paired bootstrap over the images (the same images, one model)."""
    entry = metrics["clean"] if what == "clean" else metrics["pgd"][what]
    flags = entry["flags"]
    return paired_bootstrap([unpack_flags(flags[index_of(metrics, 1.0)])],
                            [unpack_flags(flags[index_of(metrics, multiple)])])
