"""One wording for what the book says about counts, missing runs and the keys of reference-values.yaml.

* :func:`plural` — ``plural(1, "step")`` is "1 step", ``plural(3, "restart")`` "3 restarts";
* :func:`not_run` — the one phrase for a row or figure without results: "not run: <reason>";
* :func:`counted` — a number that may not have been measured: "—" (with the reason) instead of a
  misleading ``0.0 ± 0.0``;
* :func:`key_label` — ``gaussian_sigma_100`` as "Gaussian σ = 100", ``pgd_3/255`` as "PGD ε = 3/255".
"""

from __future__ import annotations

import math
import re

NOT_RUN = "not run"
NOT_MEASURED = "—"


def plural(count: float, word: str, many: str | None = None) -> str:
    """``count`` and ``word``, pluralised by adding "s" (or ``many``) unless ``count`` is exactly 1."""
    shown = f"{count:,}" if isinstance(count, int) else f"{count:g}"
    return f"{shown} {word if count == 1 else (many or word + 's')}"


def not_run(reason: str | None = None) -> str:
    """The one phrase for a row without results: "not run" or "not run: <reason>"."""
    reason = (reason or "").strip().removeprefix(f"{NOT_RUN}:").strip()
    return f"{NOT_RUN}: {reason}" if reason else NOT_RUN


def counted(values: list[float] | tuple[float, ...], digits: int = 1, measured: bool = True) -> str:
    """Mean ± sample sd of ``values``; "—" when nothing was measured (no values, or ``measured`` false)."""
    finite = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not measured or not finite:
        return NOT_MEASURED
    mean = sum(finite) / len(finite)
    if len(finite) == 1:
        return f"{mean:.{digits}f}"
    sd = math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def device_label(device: str) -> str:
    """A stored device description with its counts read right: "cpu (x86_64, 2 cores, 1 threads)" as "... 1 thread)".

    Results files written before :func:`robustode.results.device_name` counted with ``plural`` keep the old text.
    """
    return re.sub(r"\b1 (core|thread)s\b", r"1 \1", device)


_NAMES = {
    "fgsm": "FGSM", "pgd": "PGD", "test_loss": "test loss", "inference_time_s": "inference time (s)",
    "f1": "F1", "accuracy": "accuracy", "precision": "precision", "recall": "recall",
}


def key_label(key: str) -> str:
    """A key of reference-values.yaml as a reader would write it; unknown keys come back unchanged."""
    if key in _NAMES:
        return _NAMES[key]
    if m := re.fullmatch(r"gaussian_sigma_([\d.]+)", key):
        return f"Gaussian σ = {m[1]}"
    if m := re.fullmatch(r"(fgsm|pgd)_([\d./]+)", key):
        return f"{_NAMES[m[1]]} ε = {m[2]}"
    if m := re.fullmatch(r"(A?NODE)_(\d+)_filters(?:_p(\d+))?", key):
        return f"{m[1]}, {m[2]} filters" + (f", p = {m[3]}" if m[3] else "")
    return key


def fmt_seconds(seconds: float | None) -> str:
    """A duration for people: "42 s", "17 min", "2 h 05 min"; ``None`` (never timed) as "not measured"."""
    if seconds is None:
        return "not measured"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
