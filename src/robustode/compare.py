"""Comparing two models measured on the same images: differences with their uncertainty.

The survey's claims are differences (ODENet minus CNN, TisODE minus ODENet, ...). Two sources of noise
sit in such a difference: which images were attacked, and which seeds were trained. When per-image
results are stored (the attacks' robust flags, on the same seeded images for every model),
:func:`paired_bootstrap` resamples both at once: each replicate draws the images with replacement (the same
draw for both models: a paired comparison) and, independently for each model, its seeds with replacement.
Without per-image results, :func:`welch_interval` uses the seed spread alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from robustode.results import mean_sd


@dataclass(frozen=True)
class Difference:
    """``b - a`` in percentage points with a 95 % interval; ``method`` says how the interval was made."""

    value: float
    low: float | None
    high: float | None
    method: str

    @property
    def excludes_zero(self) -> bool:
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)

    def text(self, digits: int = 1) -> str:
        if self.low is None or self.high is None:
            return f"{self.value:+.{digits}f} (no interval: {self.method})"
        return f"{self.value:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


def paired_bootstrap(a: list[list[bool]], b: list[list[bool]], replicates: int = 2000, seed: int = 0,
                     confidence: float = 0.95) -> Difference:
    """Accuracy of ``b`` minus accuracy of ``a`` (points), each a list of per-seed per-image flags on the same images.

    Replicates resample the images (shared by both models) and each model's seeds; the interval is the
    percentile interval of the replicated differences.
    """
    fa, fb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if fa.ndim != 2 or fb.ndim != 2 or fa.shape[1] != fb.shape[1] or fa.shape[1] == 0:
        raise ValueError(f"need per-seed flags on the same images, got shapes {fa.shape} and {fb.shape}")
    rng = np.random.default_rng(seed)
    n_images = fa.shape[1]
    value = 100 * (fb.mean() - fa.mean())
    images = rng.integers(0, n_images, size=(replicates, n_images))
    seeds_a = rng.integers(0, len(fa), size=(replicates, len(fa)))
    seeds_b = rng.integers(0, len(fb), size=(replicates, len(fb)))
    # per replicate: mean over the drawn seeds of the accuracy on the drawn images
    acc_a = np.stack([fa[seeds_a[r]][:, images[r]].mean() for r in range(replicates)])
    acc_b = np.stack([fb[seeds_b[r]][:, images[r]].mean() for r in range(replicates)])
    diffs = 100 * (acc_b - acc_a)
    tail = (1 - confidence) / 2
    low, high = np.quantile(diffs, [tail, 1 - tail])
    # the counts in the difference's order (b's, then a's), as its label "b − a" reads
    seeds = f"{len(fb)} and {len(fa)} seeds" if (len(fa), len(fb)) != (1, 1) else "one seed each"
    method = f"paired bootstrap over {n_images} images and {seeds}"
    if not diffs.any():  # an interval [0, 0]: say why, as "unresolved" alone would hide it
        if not fa.any() and not fb.any():
            method += "; both models at 0 % on every image"
        elif fa.all() and fb.all():
            method += "; both models right on every image"
        else:
            method += "; no resample differs: the models are right on the same images"
    return Difference(float(value), float(low), float(high), method)


def welch_interval(a: list[float], b: list[float], confidence: float = 0.95) -> Difference:
    """mean(b) - mean(a) with Welch's interval from the seed spread (values already in points)."""
    ma, sa, na = mean_sd(a)
    mb, sb, nb = mean_sd(b)
    value = mb - ma
    if na < 2 or nb < 2:
        return Difference(value, None, None, f"{nb} and {na} runs: no seed spread")  # b's count first, as b − a
    va, vb = sa * sa / na, sb * sb / nb
    se = math.sqrt(va + vb)
    if se == 0:
        return Difference(value, value, value, "seed spread (all equal)")
    df = (va + vb) ** 2 / (va * va / (na - 1) + vb * vb / (nb - 1))
    half = stats.t.ppf(0.5 + confidence / 2, df) * se
    return Difference(value, value - half, value + half, f"Welch interval over {nb} and {na} seeds")
