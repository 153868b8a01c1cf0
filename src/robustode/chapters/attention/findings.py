"""Chapter 4 prose computed from the results files.
"""

from __future__ import annotations

from robustode.chapters.attention.config import MODELS
from robustode.chapters.attention.tables import _by, _not_run_text, attention_rows, timing_ratio_rows
from robustode.data.images import is_available
from robustode.models.attention import DATASETS
from robustode.results import mean_sd
from robustode.store import Store


def findings(store: Store) -> dict[str, list[str]]:
    """Plain-language statements computed from the results files, by topic (``timing``, ``start-up``,
    ``positions``, ``attention``), so that the chapter's prose cannot drift from its numbers."""
    out: dict[str, list[str]] = {"timing": [], "start-up": [], "positions": [], "attention": []}
    ratios = [float(r["Classic / ODE time, measured"]) for r in timing_ratio_rows(store)
              if not r["Classic / ODE time, measured"].startswith("not run")]
    if ratios:
        verdict = "slower" if all(r < 1 for r in ratios) else ("faster" if all(r > 1 for r in ratios) else "mixed")
        out["timing"].append(
            f"Measured Classic / ODE time ratios lie between {min(ratios):.3g} and {max(ratios):.3g} (printed: about 10); "
            + {"slower": f"the ODE model is slower in every measured configuration, by {1 / max(ratios):.0f}x to "
                         f"{1 / min(ratios):.0f}x.",
               "faster": "the ODE model is faster in every measured configuration.",
               "mixed": "which model is faster depends on the configuration."}[verdict])
    firsts = store.runs("attention-first-call")
    for run in firsts:
        first, second = run["metrics"]["calls"][:2]
        out["start-up"].append(
            f"Fresh process on {run['params']['device']}, {first['model']} timed first: first call "
            f"{1e3 * first['first_call_s']:.1f} ms, warm median {1e3 * first['warm_median_s']:.1f} ms; {second['model']} "
            f"second: {1e3 * second['first_call_s']:.1f} ms against {1e3 * second['warm_median_s']:.1f} ms.")
    if firsts:
        extra = max(c["first_call_s"] - c["warm_median_s"] for r in firsts for c in r["metrics"]["calls"])
        out["start-up"].append(
            f"The largest start-up surcharge measured is {1e3 * extra:.1f} ms: "
            + ("far too small to create the printed 0.9 s gap on this device." if extra < 0.1 else
               "large enough to matter at the printed scale."))
    runs = store.runs("attention-table3")
    acc = {(n, d): mean_sd([m["accuracy"] for m in _by(runs, n, d)]) for n in MODELS for d in DATASETS}
    for name in ("ClassicAttention", "ODEAttention"):
        (mn, _, n1), (fm, _, n2) = acc[(name, "MNIST")], acc[(name, "FashionMNIST")]
        if n1 and n2:
            out["positions"].append(f"{name}: MNIST accuracy {mn:.3f} against FashionMNIST {fm:.3f} "
                                    f"({'MNIST lower' if mn < fm else 'MNIST higher'}).")
        (pe, _, n3) = acc[(f"{name}-PE", "MNIST")]
        if n1 and n3:
            out["positions"].append(f"{name} on MNIST: {mn:.3f} without positions, {pe:.3f} with sinusoidal positions "
                                    f"({pe - mn:+.3f}, same parameter count).")
    att = {(r["model"], r["dataset"]): r for r in attention_rows(store)}
    for dataset in DATASETS:
        pair = [att.get((m, dataset)) for m in ("ClassicAttention", "ODEAttention")]
        if all(pair):
            out["attention"].append(
                f"{dataset}: largest weight Classic {pair[0]['largest weight']} vs ODE {pair[1]['largest weight']}; "
                f"effective rows Classic {pair[0]['effective rows exp(H)']} vs ODE {pair[1]['effective rows exp(H)']} "
                f"of {pair[0]['rows (L)']}; images with one row above 0.5: Classic {pair[0]['images with a weight > 0.5']}.")
    for topic, needs in (("positions", ("MNIST", "FashionMNIST")), ("attention", DATASETS)):
        if not out[topic] and any(not is_available(d) for d in needs):
            text = _not_run_text(needs)
            out[topic].append(text[0].upper() + text[1:] + ".")
    return out
