"""Chapters 2-3 prose and comparisons computed from the results files: what a profile's runs are, and the
survey's model-against-model claims with their uncertainty."""

from __future__ import annotations

from robustode.chapters.robustness.config import TABLE_MODELS, table_one_rows
from robustode.chapters.robustness.tables import (
    _by_model,
    _flags,
    _runs,
    failed_checks,
    field_at,
    per_image_defence,
    table_value,
)
from robustode.compare import Difference, paired_bootstrap, welch_interval
from robustode.profiles import tier
from robustode.reference import reference_values
from robustode.results import mean_sd, unpack_flags
from robustode.store import Store
from robustode.wording import plural

PAIRS = (("CNN", "ODENet"), ("ODENet", "TisODE"), ("CNN", "TisODE"))


def profile_banner(cfg: dict, profile: str) -> str:
    """What this profile's runs are, in one paragraph built from its settings (shown at the top of a chapter)."""
    size = f"{cfg['image_size']}×{cfg['image_size']} (area-downsampled)" if cfg["image_size"] else "native-size"
    aa = cfg["autoattack"]
    aa_text = "standard AutoAttack" if aa["version"] == "standard" else (
        f"a reduced AutoAttack ({', '.join(aa['attacks'])}; " + ", ".join(f"{k} = {v}" for k, v in aa["overrides"].items()) + ")")
    strong = cfg["strong"]
    text = (
        f"width {cfg['width']}, {size} {cfg['dataset']} images, "
        f"{cfg['train_size'] or 'all'} training images less a {cfg['val_size']:,}-image validation split, "
        f"{plural(cfg['epochs'], 'epoch')} of batch {cfg['batch_size']}, Adam lr {cfg['lr']}, weight decay {cfg['weight_decay']}, "
        f"LR milestones {cfg['milestones'] or 'none'}, steady-state term from epoch {cfg['steady_start_epoch']} (0-based), "
        f"{plural(cfg['repetitions'], 'seed')}; faithful attacks on {cfg['attack_images']:,} of Yan et al.'s 1,000 images; strong PGD "
        f"on {strong['images'] or 'all test'} images ({plural(max(strong['steps']), 'step')} × "
        f"{plural(strong['restarts'], 'restart')}); {aa_text} on {aa['images'] or 'all test'} images"
    )
    return f"**Profile `{profile}` — {tier(profile).label}:** {text}."


def differences(store: Store, dataset: str, a: str, b: str) -> list[tuple[str, Difference, float | None]]:
    """``b`` minus ``a`` (accuracy points) at every Table I perturbation and, where stored, under the strong attacks
    (strong PGD and AutoAttack at Table I's PGD epsilons): ``(label, difference, printed difference or None)``.
    A paired bootstrap over the shared images and the seeds where per-image results are stored, else Welch over
    seeds; ``[]`` when either model has no runs. Runs still being evaluated count for what they have finished."""
    runs = _runs(store, dataset, in_progress=True)
    return metric_differences(_by_model(runs, a), _by_model(runs, b), dataset, a, b)


def metric_differences(ma: list[dict], mb: list[dict], dataset: str, a: str,
                       b: str) -> list[tuple[str, Difference, float | None]]:
    """:func:`differences` between two lists of run metrics (one per seed or checkpoint). A quantity that some of
    the metrics lack (an evaluation stage not finished yet) is left out."""
    if not ma or not mb:
        return []
    out = []
    for key, kind, value in table_one_rows(dataset):
        needed = "noise" if kind == "gaussian" else "faithful"
        if not all(needed in m for m in ma + mb):
            continue
        fa = [_flags(m, kind, value) for m in ma] if kind != "gaussian" else []
        fb = [_flags(m, kind, value) for m in mb] if kind != "gaussian" else []
        if fa and fb and all(f is not None for f in fa + fb):
            diff = paired_bootstrap(fa, fb)
        else:
            diff = welch_interval([table_value(m, kind, value) for m in ma], [table_value(m, kind, value) for m in mb])
        printed = reference_values()["table_1_robustness"][dataset][key]
        label = f"σ = {value}" if kind == "gaussian" else f"{kind.upper()}-{value}"
        out.append((label, diff, printed[b][0] - printed[a][0] if a in printed and b in printed else None))
    for eps in [v for _, k, v in table_one_rows(dataset) if k == "pgd"]:
        for attack, get in (("strong PGD", lambda m, e=eps: m.get("strong", {}).get(e)),
                            ("AutoAttack", lambda m, e=eps: m.get("strong", {}).get(e, {}).get("autoattack"))):
            # runs still being evaluated may not have this stage yet: the others stand for it
            sa, sb = [x for x in map(get, ma) if x], [x for x in map(get, mb) if x]
            if not sa or not sb:
                continue
            if all("flags" in x for x in sa + sb) and len({x["images"] for x in sa + sb}) == 1:
                diff = paired_bootstrap([unpack_flags(x["flags"]) for x in sa], [unpack_flags(x["flags"]) for x in sb])
            else:
                diff = welch_interval([100 * x["accuracy"] for x in sa], [100 * x["accuracy"] for x in sb])
            out.append((f"{attack}-{eps}", diff, None))
    return out


def comparisons(store: Store, dataset: str = "MNIST", pairs: tuple[tuple[str, str], ...] = PAIRS) -> list[dict]:
    """The survey's comparisons (b − a, accuracy points) at every Table I perturbation and under the strong attacks,
    ours with a 95 % interval (:func:`differences`) beside the printed difference."""
    rows = []
    for a, b in pairs:
        for label, diff, printed in differences(store, dataset, a, b):
            rows.append({"comparison": f"{b} − {a}", "perturbation": label, "ours [95 % CI]": diff.text(),
                         "printed": "—" if printed is None else f"{printed:+.1f}",
                         "same sign as printed": "—" if printed is None else _agreement(diff, printed),
                         "interval from": diff.method})
    return rows


def authors_comparisons(store: Store, pairs: tuple[tuple[str, str], ...] = PAIRS) -> list[dict]:
    """:func:`comparisons` on Yan et al.'s released checkpoints evaluated in ``store`` (one model each, so the interval
    is a bootstrap over the shared images only; stages still running are left out); ``[]`` without them."""
    from robustode.chapters.robustness.authors import evaluations

    found = evaluations(store)
    rows = []
    for a, b in pairs:
        if a not in found or b not in found:
            continue
        for label, diff, printed in metric_differences([found[a]["metrics"]], [found[b]["metrics"]], "MNIST", a, b):
            rows.append({"comparison": f"{b} − {a}", "perturbation": label, "checkpoints [95 % CI]": diff.text(),
                         "printed": "—" if printed is None else f"{printed:+.1f}",
                         "same sign as printed": "—" if printed is None else _agreement(diff, printed),
                         "interval from": diff.method})
    return rows


IR = "input randomisation"


def _checkpoints_defended(store: Store) -> dict[str, tuple[dict, dict, dict]]:
    """Per released checkpoint evaluated with and without input randomisation: its main metrics, the randomisation
    unit's metrics and their per-image pairing (:func:`per_image_defence`), read once."""
    from robustode.chapters.robustness.authors import evaluations, randomised_evaluations

    plain, randomised = evaluations(store), randomised_evaluations(store)
    return {name: (plain[name]["metrics"], run["metrics"], per_image_defence(plain[name]["metrics"], run["metrics"]))
            for name, run in randomised.items() if name in plain}


def defence_differences(store: Store) -> list[tuple[str, str, Difference]]:
    """Input randomisation on Yan et al.'s released checkpoints (``(comparison, attack, difference)``, accuracy
    points, a paired bootstrap over the attacked images): what it adds to each model (model + IR − model, both under
    the same attack), and TisODE + IR against the other models + IR. ``[]`` without those evaluations."""
    flags = {name: pair for name, (_, _, pair) in _checkpoints_defended(store).items()}
    out = []
    for name, by_attack in flags.items():
        for attack, (without, with_ir) in by_attack.items():
            out.append((f"{name} + {IR} − {name}", attack, paired_bootstrap([without], [with_ir])))
    if "TisODE" in flags:
        for other in ("CNN", "ODENet"):
            for attack in [a for a in flags["TisODE"] if a in flags.get(other, {})]:
                out.append((f"TisODE + {IR} − {other} + {IR}", attack,
                            paired_bootstrap([flags[other][attack][1]], [flags["TisODE"][attack][1]])))
    return out


def defence_comparison_rows(store: Store) -> list[dict]:
    """:func:`defence_differences` as table rows."""
    return [{"comparison": comparison, "attack": attack, "difference [95 % CI]": diff.text(),
             "interval from": diff.method} for comparison, attack, diff in defence_differences(store)]


def defence_findings(store: Store) -> list[str]:
    """What input randomisation does to each released checkpoint, read from :func:`defence_differences`: its effect
    under the faithful single-draw PGD and under the strong PGD with EOT at the same epsilon, and the obfuscation
    pattern (Athalye et al.) where the first is a gain and the second is not."""
    diffs = {(c, a): d for c, a, d in defence_differences(store)}
    out = []
    for comparison in dict.fromkeys(c for c, _ in diffs if c.endswith(f" + {IR} − {c.split(' + ')[0]}")):
        name = comparison.split(" + ")[0]
        for eps in [v for _, k, v in table_one_rows("MNIST") if k == "pgd"]:
            faithful, strong = diffs.get((comparison, f"PGD-{eps}")), diffs.get((comparison, f"strong PGD-{eps}"))
            if faithful is None or strong is None:
                continue
            line = (f"{name}, ε = {eps}: input randomisation changes the faithful PGD accuracy by {faithful.text()} "
                    f"points and the strong (EOT) PGD accuracy by {strong.text()}")
            if faithful.low is not None and faithful.low > 0 and not (strong.low is not None and strong.low > 0):
                line += ": a gain against the single-draw attack that the averaged gradient does not confirm"
            out.append(line + ".")
    return out


def defence_rows(store: Store) -> list[dict]:
    """Accuracy (%) of each released checkpoint without and with input randomisation on the same images and attacks
    (:func:`per_image_defence`), plus clean and Gaussian-noise accuracy on the whole test set; ``[]`` without them."""
    rows = []
    for name, (plain, defended, by_attack) in _checkpoints_defended(store).items():
        rand = defended["randomised"]
        for label, metrics, pick in ((name, plain, 0), (f"{name} + {IR}", rand, 1)):
            row = {"model": label, "clean": f"{100 * metrics['clean']:.1f}"}
            for _, kind, value in table_one_rows("MNIST"):
                if kind == "gaussian":
                    row[f"σ = {value}"] = f"{100 * metrics['noise'][str(float(value))]:.1f}"
            for attack, pair in by_attack.items():
                row[attack] = f"{100 * sum(pair[pick]) / len(pair[pick]):.1f}"
            row["images attacked"] = f"{rand['images']:,}"
            rows.append(row)
    return rows


def _agreement(diff, printed: float) -> str:
    if diff.low is None:
        return "unresolved (no interval)"
    if not diff.excludes_zero:
        return "unresolved (interval contains 0)"
    return "yes" if (diff.value > 0) == (printed > 0) else "no: opposite sign"


def findings(store: Store, dataset: str = "MNIST", models: tuple[str, ...] = TABLE_MODELS) -> list[str]:
    """Sentences on the gap between the faithful and the strong attacks, and the failed sanity checks."""
    runs = _runs(store, dataset)
    present = [m for m in models if _by_model(runs, m)]
    if not present:
        return []
    out = []
    mean = lambda vals: mean_sd(vals)[0]  # noqa: E731
    for name in present:
        mine = _by_model(runs, name)
        for eps in [v for _, k, v in table_one_rows(dataset) if k == "pgd"]:
            faithful = mean([100 * m["faithful"]["pgd"][eps] for m in mine])
            strong = mean([100 * m["strong"][eps]["accuracy"] for m in mine])
            out.append(f"{name}, PGD-{eps}: faithful {faithful:.1f} % ({mine[0]['attack_images']:,} images), strong "
                       f"{strong:.1f} % ({mine[0]['strong'][eps]['images']:,} images): the strong attack takes "
                       f"{faithful - strong:.1f} points more (mean over {plural(len(mine), 'seed')}).")
    failed = [f for f in failed_checks(store, dataset) if f.split(" seed")[0] in present]
    out.append("Failed sanity checks: " + ("; ".join(failed) if failed else "none."))
    return out


AT_REST, SLOWING = 0.1, 0.5
"""Ratios of mean |f| at 2T to that at T read as "at rest" (below 0.1) and "slowing" (below 0.5); above, the state
still moves about as fast after the read-out as at it."""


def settling_ratio(profile: dict) -> float:
    """Mean |f(z(t))| at 2T = 2 over its value at T = 1, from a stored or computed field profile."""
    return field_at(profile, 2.0) / field_at(profile, 1.0)


def settling_findings(settled: dict[str, dict[str, dict]]) -> list[str]:
    """One line per profile of ``settled`` (profile -> label -> field profile, as chapter 3 builds it): the range of
    the 2T / T ratios over its models and how many came to rest or slowed (:data:`AT_REST`, :data:`SLOWING`)."""
    lines = []
    for profile, profiles in settled.items():
        if not profiles:
            continue
        ratios = {name: settling_ratio(p) for name, p in profiles.items()}
        rest = [n for n, r in ratios.items() if r < AT_REST]
        slowing = [n for n, r in ratios.items() if AT_REST <= r < SLOWING]
        parts = [f"{what} (under {bound}): {', '.join(names)}"
                 for what, bound, names in (("at rest", AT_REST, rest), ("slowing", SLOWING, slowing)) if names]
        verdict = "; ".join(parts) or f"none is at rest or slowing by 2T (ratios under {AT_REST} or {SLOWING} would say so)"
        lines.append(f"Profile `{profile}`: mean |f| at 2T over its value at T ranges from {min(ratios.values()):.2f} "
                     f"to {max(ratios.values()):.2f} over {plural(len(ratios), 'model')}; {verdict}.")
    return lines


def _span(values: list[float], form: str, dash: str) -> str:
    """``lo<dash>hi`` in ``form``, or one value when they print alike."""
    low, high = form.format(min(values)), form.format(max(values))
    return low if low == high else f"{low}{dash}{high}"


def readout_findings(readouts: dict[str, dict[str, dict]]) -> list[str]:
    """One line per profile of ``readouts`` (profile -> label -> read-out, as chapter 3 builds it): how many clean
    decisions survive to 2T, and per PGD eps how the accuracy on images crafted at T changes when they are read out
    at 2T (range over the models, and how many intervals exclude zero, each way)."""
    from robustode.chapters.robustness.readout import change, index_of

    lines = []
    for profile, read in readouts.items():
        if not read:
            continue
        kept = [100 * m["clean"]["agreement"][index_of(m, 2.0)] for m in read.values()]
        parts = [f"at 2T, {_span(kept, '{:.1f}', '-')} % of clean decisions equal those at T over "
                 f"{plural(len(read), 'model')}"]
        for eps in sorted({e for m in read.values() for e in m["pgd"]}, key=float):
            diffs = {name: change(m, eps) for name, m in read.items() if eps in m["pgd"]}
            up = sum(d.low is not None and d.low > 0 for d in diffs.values())
            down = sum(d.high is not None and d.high < 0 for d in diffs.values())
            values = [d.value for d in diffs.values()]
            parts.append(f"Yan et al.'s PGD-{eps} images crafted at T, read out at 2T: accuracy changes by "
                         f"{_span(values, '{:+.1f}', ' to ')} points (rises outside its 95 % interval for "
                         f"{up} of {len(diffs)}, falls for {down})")
        lines.append(f"Profile `{profile}`: " + "; ".join(parts) + ".")
    return lines
