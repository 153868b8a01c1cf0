"""The survey's claims, tested: each claim with the evidence for and against it from committed runs.

A claim is a statement about a *difference* (ODENet more robust than CNN, ANODE better than NODE, ODE
attention faster than classic attention, ...). Its evidence is a list of measured effects, each with a 95 %
interval, read from the chapters' own table functions. One rule turns evidence into a verdict:

* an effect **supports** the claim when its whole interval lies on the claimed side of zero, **contradicts** it
  when its whole interval lies on the other side, and is **unresolved** otherwise;
* the claim is judged on its **primary** effects in the strongest profile that has them (``full``, then
  ``paper-short``; the ``quick`` pipeline check never decides, except for exact measurements that do not
  depend on scale): **supported** when every primary effect supports it, **contradicted** when every one
  contradicts it, **mixed** when some do each, **unresolved** otherwise, **not tested** without runs.

Every effect names its profile, its number of runs and how its interval was made.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

from robustode.compare import Difference, paired_bootstrap, welch_interval
from robustode.profiles import evidence_tiers
from robustode.results import mean_sd
from robustode.store import Store
from robustode.wording import plural


@dataclass(frozen=True)
class Effect:
    """One measured effect: what, the difference (in the claim's direction: positive supports), where it comes from."""

    quantity: str
    difference: Difference
    profile: str
    runs: str
    primary: bool = True

    @property
    def reading(self) -> str:
        d = self.difference
        if d.low is None or d.high is None:
            return "unresolved"
        if d.low > 0:
            return "supports"
        if d.high < 0:
            return "contradicts"
        return "unresolved"


@dataclass(frozen=True)
class Claim:
    """A claim of the survey (``where`` it is made), and how to measure it in one profile's store."""

    key: str
    statement: str
    where: str
    evidence: Callable[[Store], list[Effect]]
    exact: bool = False  # an exact measurement (bytes, counts): any profile may decide it
    note: str = ""
    kind: str = "claim"  # "claim": the survey's; "control": a hypothesis one of the controls tests (CONTROLS)
    qualifies: str = ""  # a control: the key of the claim it qualifies
    short: str = ""  # a control: its name in that claim's scorecard row
    needs: tuple[str, ...] | None = None  # chapters 2-3 models the evidence reads; None: what the evidence declares
    untested: str = ""  # why there are no runs, where ``needs`` cannot say it

    def __post_init__(self) -> None:
        if self.needs is None:  # the plan models an evidence function reads are declared where it is built
            object.__setattr__(self, "needs", getattr(self.evidence, "needs", ()))


def _seeds(b: str, nb: int, a: str, na: int) -> str:
    """The runs behind a difference ``b`` − ``a``, named: "2 ODENet + 3 CNN seeds"."""
    return f"{nb} {b} + {na} {a} seeds"


# ---------------------------------------------------------------------------------------- chapters 2-3

TABLE_ONE_PRIMARY = ("FGSM-0.3", "PGD-0.2", "strong PGD-0.2")
"""The effects that decide a Table I comparison: Yan et al.'s headline FGSM and PGD, and the strong PGD."""


def _reading(*models: str):
    """Mark an evidence function with the chapters 2-3 models whose runs it reads (a claim's ``needs``)."""
    def mark(evidence: Callable[[Store], list[Effect]]) -> Callable[[Store], list[Effect]]:
        evidence.needs = models
        return evidence
    return mark


def _robust_pair(a: str, b: str, primary: tuple[str, ...]) -> Callable[[Store], list[Effect]]:
    @_reading(a, b)
    def evidence(store: Store) -> list[Effect]:
        from robustode.chapters.robustness.findings import differences
        from robustode.chapters.robustness.tables import _by_model, _runs

        runs = _runs(store, "MNIST", in_progress=True)
        n = _seeds(b, len(_by_model(runs, b)), a, len(_by_model(runs, a)))
        return [Effect(f"{b} − {a}, {label} (MNIST, accuracy points)", diff, store.profile, n, label in primary)
                for label, diff, _ in differences(store, "MNIST", a, b)]
    return evidence


def _authors_pair(a: str, b: str, primary: tuple[str, ...]) -> Callable[[Store], list[Effect]]:
    """The same comparison on Yan et al.'s own released checkpoints (one model each, trained with the printed
    protocol), evaluated here: a paired bootstrap over the shared attack images, so its interval covers the images,
    not training seeds. Stages still running are left out (:func:`robustode.chapters.robustness.authors.evaluations`)."""
    def evidence(store: Store) -> list[Effect]:
        from robustode.chapters.robustness.authors import evaluations
        from robustode.chapters.robustness.findings import metric_differences

        found = evaluations(store)
        if a not in found or b not in found:
            return []
        runs = "the authors' checkpoints, 1 + 1 (interval over images only)"
        return [Effect(f"{b} − {a}, {label} (the authors' checkpoints, MNIST, accuracy points)", diff, store.profile,
                       runs, label in primary)
                for label, diff, _ in metric_differences([found[a]["metrics"]], [found[b]["metrics"]], "MNIST", a, b)]
    return evidence


def _both(*sources: Callable[[Store], list[Effect]]) -> Callable[[Store], list[Effect]]:
    @_reading(*dict.fromkeys(m for source in sources for m in getattr(source, "needs", ())))
    def evidence(store: Store) -> list[Effect]:
        return [e for source in sources for e in source(store)]
    return evidence


def _defence(base: str, defended: str) -> Callable[[Store], list[Effect]]:
    @_reading(*((base,) if defended == "randomised" else (base, defended)))
    def evidence(store: Store) -> list[Effect]:
        from robustode.chapters.robustness.findings import per_image_defence
        from robustode.chapters.robustness.tables import _by_model, _runs

        runs = _runs(store, "MNIST")
        plain = _by_model(runs, base)
        out = []
        if defended == "randomised":
            name, others = f"{base} + input randomisation", [m["randomised"] for m in plain if "randomised" in m]
            label = f"{name} − {base}"
            pairs = [per_image_defence(m, m) for m in plain if "randomised" in m]
            if pairs and all(pairs):  # every seed attacked with and without the defence alike: paired per image
                for attack in pairs[0]:
                    diff = paired_bootstrap([p[attack][0] for p in pairs], [p[attack][1] for p in pairs])
                    out.append(Effect(f"{label}, {attack}, same images and attack (points)", diff, store.profile,
                                      plural(len(pairs), "seed"), attack in TABLE_ONE_PRIMARY))
        else:
            name, others = defended, _by_model(runs, defended)
            label = f"{name} − {base}"
        if not plain or not others:
            return out
        n = _seeds(name, len(others), base, len(plain))
        # the randomised copy meets a cheaper strong attack than its model's main one: shown, never deciding
        unequal = " (the randomised model under the cheaper EOT attack)" if defended == "randomised" else ""
        for eps in sorted(set(plain[0]["strong"]) & set(others[0]["strong"])):
            diff = welch_interval([100 * m["strong"][eps]["accuracy"] for m in plain],
                                  [100 * m["strong"][eps]["accuracy"] for m in others])
            out.append(Effect(f"{label}, strong PGD-{eps}{unequal} (points)", diff, store.profile, n,
                              primary=defended != "randomised"))
        for eps in sorted(set(plain[0]["faithful"]["pgd"]) & set(others[0]["faithful"]["pgd"])):
            diff = welch_interval([100 * m["faithful"]["pgd"][eps] for m in plain],
                                  [100 * m["faithful"]["pgd"][eps] for m in others])
            out.append(Effect(f"{label}, faithful PGD-{eps} (points)", diff, store.profile, n, primary=False))
        return out
    return evidence


def _authors_randomisation(store: Store) -> list[Effect]:
    """Input randomisation on Yan et al.'s released checkpoints, every model under the same attacks on the same
    images: "combines with" is TisODE + IR against TisODE, "improves it" TisODE + IR against CNN + IR (both
    primary); against ODENet + IR is shown beside them. A paired bootstrap over the images: one checkpoint each."""
    from robustode.chapters.robustness.findings import IR, defence_differences

    primary = {f"TisODE + {IR} − TisODE", f"TisODE + {IR} − CNN + {IR}"}
    wanted = primary | {f"TisODE + {IR} − ODENet + {IR}"}
    return [Effect(f"{comparison}, {attack} (the authors' checkpoints, MNIST, accuracy points)", diff, store.profile,
                   "the authors' checkpoints, 1 + 1 (interval over images only)",
                   comparison in primary and attack in TABLE_ONE_PRIMARY)
            for comparison, attack, diff in defence_differences(store) if comparison in wanted]


# ---------------------------------------------------------------------------------------- chapters 1 and 5

def _anode_fits(store: Store) -> list[Effect]:
    runs = store.runs("topology-spheres")
    by = {}
    for r in runs:
        by.setdefault(r["params"]["model"], []).append(r["metrics"])
    if "NODE" not in by or "ANODE-p1" not in by:
        return []
    node, anode = by["NODE"], by["ANODE-p1"]
    n = f"{len(node)} + {len(anode)} repetitions"
    last = lambda ms, key: [m["history"]["epochs"][-1][key] for m in ms if m["history"]["epochs"]]  # noqa: E731
    return [
        Effect("ANODE p=1 − NODE, spheres test accuracy (points)",
               welch_interval([100 * m["test"]["accuracy"] for m in node], [100 * m["test"]["accuracy"] for m in anode]),
               store.profile, n),
        Effect("NODE − ANODE p=1, spheres final train loss", welch_interval([m["train"]["loss"] for m in anode],
                                                                            [m["train"]["loss"] for m in node]),
               store.profile, n),
        Effect("NODE − ANODE p=1, spheres forward NFE (last epoch)",
               welch_interval(last(anode, "nfe_forward"), last(node, "nfe_forward")), store.profile, n),
    ]


def _anode_images(store: Store) -> list[Effect]:
    runs = store.runs("anode-MNIST")
    acc = {}
    for r in runs:
        if not r["metrics"]["failure"] and r["metrics"]["test"]["accuracy"] is not None:
            acc.setdefault(r["params"]["model"], []).append(100 * r["metrics"]["test"]["accuracy"])
    if "NODE" not in acc or "ANODE-p5" not in acc:
        return []
    return [Effect("ANODE p=5 − NODE, MNIST test accuracy (points)", welch_interval(acc["NODE"], acc["ANODE-p5"]),
                   store.profile, f"{len(acc['NODE'])} + {len(acc['ANODE-p5'])} runs")]


def _memory(store: Store) -> list[Effect]:
    runs = store.runs("anode-memory")
    if not runs:
        return []
    from robustode.chapters.anode.memory import memory_series

    series = memory_series(runs)
    out = []
    for label, points in series.items():
        if not label.endswith("adjoint") or "steps" not in points[0]:
            continue
        common = ({p["steps"] for p in points} & {p["steps"] for p in series.get(label.replace("adjoint", "backprop"), [])})
        if len(common) < 2:  # a partial sweep: the claim needs two step counts measured with both gradients
            continue
        points = [p for p in points if p["steps"] in common]
        backprop = [p for p in series[label.replace("adjoint", "backprop")] if p["steps"] in common]
        ratio_adjoint = points[-1]["saved_bytes"] / points[0]["saved_bytes"]
        ratio_backprop = backprop[-1]["saved_bytes"] / backprop[0]["saved_bytes"]
        growth = ratio_backprop - ratio_adjoint  # exact byte counts: an interval of zero width
        out.append(Effect(f"{label.split(',')[0]}: growth of saved bytes from {points[0]['steps']} to {points[-1]['steps']} "
                          f"steps, backprop ({ratio_backprop:.1f}×) minus adjoint ({ratio_adjoint:.2f}×)",
                          Difference(growth, growth, growth, "exact byte counts"), store.profile, "1 measurement"))
    return out


# ---------------------------------------------------------------------------------------- chapter 4

def _attention_pair(a: str, b: str, b_shown: str = "", datasets: tuple[str, ...] = ("MNIST", "FashionMNIST", "CIFAR10",
                                                                                   "CIFAR100")
                    ) -> Callable[[Store], list[Effect]]:
    """``b`` − ``a`` (``b`` named ``b_shown`` where given), test accuracy in points per data set where both have runs:
    Welch over seeds."""
    shown = b_shown or b

    def evidence(store: Store) -> list[Effect]:
        runs = store.runs("attention-table3")
        out = []
        for dataset in datasets:
            acc = {name: [100 * r["metrics"]["accuracy"] for r in runs if r["params"]["model"] == name
                          and r["params"]["dataset"] == dataset] for name in (a, b)}
            if acc[a] and acc[b]:
                out.append(Effect(f"{shown} − {a}, {dataset} accuracy (points)", welch_interval(acc[a], acc[b]),
                                  store.profile, _seeds(shown, len(acc[b]), a, len(acc[a]))))
        return out
    return evidence


def _speed(store: Store) -> list[Effect]:
    from robustode.chapters.attention.tables import _timed

    timed = {(r["params"]["model"], r["params"]["dataset"]): r["metrics"]["timings"] for r in _timed(store)}
    out = []
    for (model, dataset), timings in sorted(timed.items()):
        if model != "ClassicAttention" or ("ODEAttention", dataset) not in timed:
            continue
        for c, o in zip(timings, timed[("ODEAttention", dataset)], strict=True):
            # log of the time ratio Classic / ODE, with the interval from the two inter-quartile ranges
            import math

            value = math.log10(c["median_s"] / o["median_s"])
            low = math.log10(c["q1_s"] / o["q3_s"])
            high = math.log10(c["q3_s"] / o["q1_s"])
            out.append(Effect(f"log10(Classic time / ODE time), {dataset}, {c['device_type']}, batch {c['batch']} "
                              f"(ratio {10 ** value:.3g}; printed ≈ 10)", Difference(value, low, high,
                                                                                 "quartiles of repeated timings"),
                              store.profile, "1 timed model each"))
    return out


def _collapse(store: Store) -> list[Effect]:
    runs = store.runs("attention-table3")
    out = []
    for dataset in ("MNIST", "FashionMNIST", "CIFAR10", "CIFAR100"):
        stats = [r["metrics"]["attention"] for r in runs if r["params"]["model"] == "ClassicAttention"
                 and r["params"]["dataset"] == dataset and "attention" in r["metrics"]]
        if not stats:
            continue
        # collapse onto one position means one row takes (almost) all the weight: largest weight near 1
        diff = welch_interval([0.9] * len(stats), [a["max_weight"] for a in stats]) if len(stats) > 1 else Difference(
            stats[0]["max_weight"] - 0.9, None, None, "one run")
        out.append(Effect(f"Classic attention, {dataset}: mean largest weight − 0.9 (collapse: ≥ 0.9); effective rows "
                          f"{mean_sd([a['effective_positions'] for a in stats])[0]:.1f} of {stats[0]['positions']}",
                          diff, store.profile, plural(len(stats), "seed")))
    return out


CLAIMS: tuple[Claim, ...] = (
    Claim("odenet-vs-cnn", "ODENets are more robust than CNNs (Gaussian noise, FGSM, PGD).", "Sec. 5, Table I",
          _both(_robust_pair("CNN", "ODENet", TABLE_ONE_PRIMARY),
                _authors_pair("CNN", "ODENet", TABLE_ONE_PRIMARY)),
          note="also measured on the authors' released checkpoints (one model each)"),
    Claim("tisode-vs-odenet", "TisODE is more robust than the vanilla ODENet.", "Sec. 6, Table I",
          _both(_robust_pair("ODENet", "TisODE", TABLE_ONE_PRIMARY),
                _authors_pair("ODENet", "TisODE", TABLE_ONE_PRIMARY)),
          note="also measured on the authors' released checkpoints (one model each)"),
    Claim("tisode-plugin-randomisation", "TisODE combines with input randomisation and improves it.", "Sec. 6.1.2",
          _both(_defence("TisODE", "randomised"), _authors_randomisation),
          note="also measured on the authors' released checkpoints, every model under the same attacks; the randomisation "
               "is applied at inference to models trained without it (Xie et al.'s use; Yan et al. released no code "
               "for it)"),
    Claim("tisode-plugin-denoising", "TisODE combines with feature denoising and improves it.", "Sec. 6.1.2",
          _defence("TisODE", "TisODE+denoise")),
    Claim("anode-fits", "ANODEs fit what NODEs cannot, with lower loss and fewer function evaluations.",
          "Sec. 3, Figs. 1-3", _anode_fits),
    Claim("anode-images", "ANODEs are more accurate than NODEs on images.", "Sec. 3; Dupont et al., Table 1",
          _anode_images,
          untested="no runs yet: Dupont et al.'s MNIST models (20 epochs of a dopri5 conv ODE trained through the "
                   "adjoint) are in the full profile's run plan only (`python -m robustode run --profile full --only "
                   "anode/MNIST`)"),
    Claim("anode-robustness", "ANODEs further enhance the robustness of ODENets.", "Sec. 5; untested in the survey",
          _robust_pair("ODENet", "ODENet-aug8", TABLE_ONE_PRIMARY),
          note="tested by the augmented-ODENet control of chapters 2-3"),
    Claim("attention-accuracy", "Neural ODE attention is more accurate than classic attention.", "Sec. 7, Table III",
          _attention_pair("ClassicAttention", "ODEAttention", "ODE")),
    Claim("attention-efficiency", "Neural ODE attention is as accurate with fewer parameters (at equal width).",
          "Sec. 7, Table IV", _attention_pair("ClassicAttention-32", "ODEAttention", "ODE"),
          note="against Classic attention at hidden size 32 (the control); Table IV's counts differ by width alone"),
    Claim("attention-speed", "Neural ODE attention is about ten times faster than classic attention.", "Sec. 7, Table III",
          _speed),
    Claim("attention-collapse", "Classic attention collapses onto a single position.", "Sec. 7, Fig. 5", _collapse),
    Claim("memory", "Neural ODEs are memory-efficient: the adjoint's memory does not grow with depth.", "Sec. 2",
          _memory, exact=True),
)


ROBUSTNESS_CONTROLS: tuple[Claim, ...] = (
    Claim("control-depth", "Ten weight-tied residual steps without an ODE solver are more robust than the CNN, as "
          "the ODENet is.", "qualifies Sec. 5: ODENet vs CNN",
          _robust_pair("CNN", "ResNet10-tied", TABLE_ONE_PRIMARY),
          kind="control", qualifies="odenet-vs-cnn", short="depth alone",
          note="ResNet10-tied is ODENet's middle with the Euler solver written out (the same function and parameters): "
               "if it beats the CNN, so does a plain ten-step residual network, and the ODENet's edge is depth, not "
               "continuity"),
    Claim("control-solver", "Solving an ODE makes the ten residual steps more robust than writing them out.",
          "qualifies Sec. 5: ODENet vs CNN", _robust_pair("ResNet10-tied", "ODENet", TABLE_ONE_PRIMARY),
          kind="control", qualifies="odenet-vs-cnn", short="the solver",
          note="the same function at Euler step 0.1, trained apart: any difference is training noise, so "
               "'unresolved' is the expected reading; a resolved one would point at the implementation"),
    Claim("control-tying", "Tying the ten steps' weights, as an ODE does, makes the network more robust.",
          "qualifies Sec. 5: ODENet vs CNN", _robust_pair("ResNet10-untied", "ResNet10-tied", TABLE_ONE_PRIMARY),
          kind="control", qualifies="odenet-vs-cnn", short="weight tying",
          note="ResNet10-untied: a field of its own per step, 5.8 times the parameters"),
    Claim("control-steady", "TisODE's steady-state term makes a model more robust.", "qualifies Sec. 6: TisODE vs ODENet",
          _both(_robust_pair("TisODE-nosteady", "TisODE", TABLE_ONE_PRIMARY),
                _robust_pair("ODENet", "ODENet+steady", TABLE_ONE_PRIMARY)),
          kind="control", qualifies="tisode-vs-odenet", short="the steady-state term",
          note="TisODE without the term, and ODENet with it"),
    Claim("control-step", "TisODE's halved Euler step (0.05) makes it more robust.", "qualifies Sec. 6: TisODE vs ODENet",
          _robust_pair("TisODE-step0.1", "TisODE", TABLE_ONE_PRIMARY),
          kind="control", qualifies="tisode-vs-odenet", short="the halved step",
          note="TisODE at ODENet's step 0.1"),
    Claim("control-time", "Dropping the time input makes a model more robust.", "qualifies Sec. 6: TisODE vs ODENet",
          _robust_pair("ODENet+steady", "TisODE-step0.1", TABLE_ONE_PRIMARY),
          kind="control", qualifies="tisode-vs-odenet", short="no time input",
          note="both with the steady-state term at step 0.1; they differ in the time channel alone"),
    Claim("control-adaptive", "An adaptive solver (dopri5) makes the ODENet more robust.",
          "qualifies Sec. 5: ODENet vs CNN", _robust_pair("ODENet", "ODENet-dopri5", TABLE_ONE_PRIMARY),
          kind="control", qualifies="odenet-vs-cnn", short="dopri5",
          note="attacked through the adaptive solver; chapter 3 also attacks it through fixed Euler steps, the "
               "solver-masking check"),
)

ATTENTION_CONTROLS: tuple[Claim, ...] = (
    Claim("control-score-layout", "The position-aware Conv1d score, which fits Table IV's counts as well, is more "
          "accurate than the LayerNorm score.", "qualifies Sec. 7: Tables III-IV",
          _both(_attention_pair("ODEAttention", "ODEAttention-conv"),
                _attention_pair("ClassicAttention", "ClassicAttention-conv")),
          kind="control", qualifies="attention-accuracy", short="the Conv1d score",
          note="Table IV's eight counts cannot tell the two layouts apart"),
    Claim("control-layout-claim", "Neural ODE attention is more accurate than classic attention with the Conv1d score "
          "too.", "qualifies Sec. 7: Table III", _attention_pair("ClassicAttention-conv", "ODEAttention-conv"),
          kind="control", qualifies="attention-accuracy", short="ODE > Classic, Conv1d score",
          note="the accuracy claim under the other layout the counts allow"),
)

CONTROLS = ROBUSTNESS_CONTROLS + ATTENTION_CONTROLS
"""Hypotheses the controls test (issue 13): each qualifies one of the survey's claims by changing one thing at a
time, and is judged by the same rule as the claims. Effects are signed so that a positive value supports the
hypothesis as stated."""


@dataclass(frozen=True)
class Judged:
    claim: Claim
    verdict: str
    decided_by: str  # the profile whose effects decided, or "" when none
    effects: list[Effect]


def judge(claim: Claim, stores: list[Store] | None = None, build: str | None = None) -> Judged:
    """The claim's evidence in every profile a build of ``build`` shows (strongest first; ``None``: all) and its
    verdict (see the module docstring)."""
    stores = stores if stores is not None else [Store(t.profile) for t in evidence_tiers(build)]
    effects = [e for store in stores for e in claim.evidence(store)]
    deciding = [s.profile for s in stores if s.profile != "quick" or claim.exact]
    for profile in deciding:
        primary = [e for e in effects if e.profile == profile and e.primary]
        if not primary:
            continue
        readings = {e.reading for e in primary}
        if readings == {"supports"}:
            verdict = "supported"
        elif readings == {"contradicts"}:
            verdict = "contradicted"
        elif {"supports", "contradicts"} <= readings:
            verdict = "mixed"
        else:
            verdict = "unresolved"
        return Judged(claim, verdict, profile, effects)
    return Judged(claim, "not tested" if not effects else "not tested (only the quick pipeline check has runs)", "", effects)


@functools.cache
def _planned_models(profile: str) -> frozenset[str]:
    """The chapters 2-3 models (main and controls) the run plan of ``profile`` trains."""
    from robustode.chapters.robustness.run import planned_runs

    return frozenset(name for runs in planned_runs(profile).values() for _, name, _, _ in runs)


def why_untested(claim: Claim) -> str:
    """Why ``claim`` has no runs to judge: its own ``untested`` text, else the profiles whose run plan has the
    chapters 2-3 models its evidence reads (``needs``), strongest-evidence first, with that profile's runs of them
    under way; "no runs yet" without either."""
    if claim.untested or not claim.needs:
        return claim.untested or "no runs yet"
    plans = [p for p in ("paper-short", "full") if set(claim.needs) <= _planned_models(p)]
    models = " and ".join([", ".join(claim.needs[:-1]), claim.needs[-1]] if len(claim.needs) > 1 else claim.needs)
    if not plans:
        return f"no runs: no profile's run plan has {models}"
    schedule = {"paper-short": "the paper's models for 5 of their 100 epochs",
                "full": "Yan et al.'s 100-epoch schedule, GPU-sized"}
    reads = (f"the evidence compares {models}, both" if len(claim.needs) == 2 else
             f"the evidence reads {models}'s runs," if len(claim.needs) == 1 else f"the evidence reads {models}, all")
    under_way = _under_way(plans[0], claim.needs)
    return (f"no runs yet: {reads} in the run plan of the {plans[0]} profile ({schedule[plans[0]]}; "
            f"`python -m robustode run --profile {plans[0]}`)"
            + (f"; under way: {'; '.join(under_way)}" if under_way else ""))


def _under_way(profile: str, models: tuple[str, ...]) -> list[str]:
    """The started, unfinished runs of ``models`` in ``profile``'s results, each with how far it has come
    (``ODENet-dopri5 seed 0 (epoch 2 of 5)``): what an untested claim is waiting for."""
    from robustode.chapters.robustness.run import units
    from robustode.units import PARTIAL

    store = Store(profile)
    return [f"{unit.params['model']} seed {unit.seed} ({progress.detail})" for unit in units(profile, models=models)
            if (progress := unit.status(store)).state == PARTIAL]


def untested_reason(judged: Judged) -> str | None:
    """:func:`why_untested` for a judged claim that is not tested; ``None`` for one with a verdict."""
    return why_untested(judged.claim) if judged.verdict.startswith("not tested") else None


def scorecard(stores: list[Store] | None = None, build: str | None = None,
              claims: tuple[Claim, ...] = CLAIMS) -> list[Judged]:
    """``claims`` (the survey's, or :data:`CONTROLS`) judged on the stores of a build."""
    return [judge(c, stores, build) for c in claims]


def forest(judged: list[Judged], title: str = ""):
    """The primary effects that decided each judged claim, with their 95 % intervals: one panel per claim (its own
    units), coloured by reading; claims without a verdict are left out (:func:`robustode.figures.forest`)."""
    from robustode.figures import forest as draw

    panels = [(f"{j.claim.short or j.claim.statement} — {j.verdict} ({j.decided_by})",
               [(re.sub(r" \([^()]*\)$", "", e.quantity), e.difference.value, e.difference.low, e.difference.high, e.reading)
                for e in j.effects if e.profile == j.decided_by and e.primary])
              for j in judged if j.decided_by]
    fig = draw(panels, "effect in the claim's direction: right of 0 supports it")
    if fig is not None and title:
        fig.suptitle(title, fontsize=10)
    return fig


def scorecard_rows(judged: list[Judged], controls: list[Judged] | None = None) -> list[dict]:
    """One row per claim: statement, where the survey makes it, verdict, the profile that decided, effects counted;
    with ``controls`` (judged :data:`CONTROLS`), what the controls that qualify each claim say, in a last column."""
    rows = []
    for j in judged:
        row = {"claim": j.claim.statement, "where": j.claim.where, "verdict": j.verdict,
               "decided by": j.decided_by or "—",
               "effects (supports / contradicts / unresolved)": "{} / {} / {}".format(
                   *(sum(e.reading == r for e in j.effects if e.profile == j.decided_by) for r in
                     ("supports", "contradicts", "unresolved"))) if j.decided_by else "—"}
        if controls is not None:
            mine = [c for c in controls if c.claim.qualifies == j.claim.key]
            row["controls"] = "; ".join(f"{c.claim.short}: {c.verdict}" for c in mine) or "—"
        rows.append(row)
    return rows


def evidence_rows(judged: Judged) -> list[dict]:
    """Every effect behind one claim: profile, quantity, effect [95 % CI], reading, runs, how the interval was made."""
    return [{"profile": e.profile, "effect": e.quantity, "value [95 % CI]": e.difference.text(2 if abs(e.difference.value) < 1
                                                                                              else 1),
             "reading": e.reading + ("" if e.primary else " (secondary)"), "runs": e.runs,
             "interval from": e.difference.method} for e in judged.effects]


def as_json(judged: list[Judged]) -> list[dict]:
    return [{"key": j.claim.key, "kind": j.claim.kind, "claim": j.claim.statement, "where": j.claim.where, "verdict": j.verdict,
             "decided_by": j.decided_by or None, "note": j.claim.note or None,
             "untested": untested_reason(j),
             "effects": [{"profile": e.profile, "quantity": e.quantity, "value": e.difference.value,
                          "low": e.difference.low, "high": e.difference.high, "interval": e.difference.method,
                          "reading": e.reading, "primary": e.primary, "runs": e.runs} for e in j.effects]}
            for j in judged]
