"""Chapter 4, Table IV audit: which layouts reproduce the survey's eight parameter counts (a small search over
building blocks), and whether the text's hidden x hidden W_q, W_k, W_v fit at all.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

from robustode.chapters.attention.config import _profile_name
from robustode.models import count_parameters
from robustode.models.attention import DATASETS, build
from robustode.reference import reference_values
from robustode.store import Store
from robustode.units import run_once


def _attention_menu(h: int) -> Iterator[tuple[str, int]]:
    """Attention blocks a reader of Sec. 7 might build, with their parameter counts at hidden size ``h``."""
    yield "score vector w . h_i + b", h + 1
    yield "score vector w . h_i (no bias)", h
    yield "learned query q . h_i", h
    for d in (1, 2, 4, 8, 16, 32, "h"):
        width = h if d == "h" else d
        for bias in (False, True):
            extra = " + bias" if bias else ""
            yield f"W_q, W_k, W_v: h x {d}{extra}", 3 * (h * width + bias * width)
            yield f"W_q, W_k: h x {d}{extra}, V = states", 2 * (h * width + bias * width)
    yield "nn.MultiheadAttention", 4 * h * h + 4 * h


def _field_menu(h: int) -> Iterator[tuple[str, int]]:
    """ODE fields Linear(h[+t] -> m) -> LayerNorm(m) -> ReLU -> Linear(m[+t] -> h), with or without time inputs."""
    for m in sorted({h // 2, h, 2 * h}):
        for t1, t2 in itertools.product((0, 1), repeat=2):
            for affine in (True, False):
                label = f"Linear({h}{'+t' * t1}->{m}), LayerNorm({m}{'' if affine else ', no affine'}), Linear({m}{'+t' * t2}->{h})"
                yield label, (h + t1) * m + m + 2 * m * affine + (m + t2) * h + h


TEXT_FIELD = "Linear({h}->{h}), LayerNorm({h}), Linear({h}->{h})"


def decompositions(counts: dict[str, int], ode: bool, menu_sizes=(1, 2, 3, 4, 5)) -> dict:
    """Solve Table IV for one model: hidden size and row width from count differences, then every
    combination of menu blocks that makes up the rest exactly.

    Differences between datasets cancel everything that does not depend on the data: CIFAR-100 minus
    CIFAR-10 is ``90 * (h + 1)`` for a decoder ``Linear(h -> classes)``, and CIFAR-10 minus MNIST is
    ``(W_cifar - W_mnist) * h`` for an encoder ``Linear(W -> h)`` reading rows of W values.
    """
    diff_classes = counts["CIFAR100"] - counts["CIFAR10"]
    h = diff_classes // 90 - 1
    exact = 90 * (h + 1) == diff_classes
    width_gain = (counts["CIFAR10"] - counts["MNIST"]) / h
    rest = counts["MNIST"] - 28 * h - (10 * h + 10)
    found = []
    fields = list(_field_menu(h)) if ode else [("none", 0)]
    for (field, nf), (att, na), k, enc_bias, norms, scalars in itertools.product(
        fields, list(_attention_menu(h)), menu_sizes, (True, False), (0, 1, 2), (0, 1)
    ):
        if enc_bias * h + nf + k * na + norms * 2 * h + scalars == rest:
            found.append({"encoder_bias": enc_bias, "field": field, "attention": att, "attention_blocks": k,
                          "extra_layernorms": norms, "extra_scalars": scalars})
    return {"hidden": h, "decoder_exact": exact, "row_width_gain": width_gain, "rest": rest, "candidates": found}


def architecture_audit(profile: str | dict, results_dir: Path | None = None) -> dict:
    """Table IV audit: the solved sizes, the candidate layouts per model, those both models share, and room for QKV."""
    printed = reference_values()["table_4_parameters"]
    classic = decompositions(printed["Classic Attention"], ode=False)
    ode = decompositions(printed["Neural ODE Attention"], ode=True)
    h_c, h_o = classic["hidden"], ode["hidden"]
    text_field = TEXT_FIELD.format(h=h_o)

    def head(c: dict) -> tuple:
        return c["encoder_bias"], c["attention"], c["attention_blocks"], c["extra_layernorms"], c["extra_scalars"]

    classic_heads = {head(c) for c in classic["candidates"]}
    shared = [c for c in ode["candidates"] if c["field"] == text_field and head(c) in classic_heads]

    def room(counts: dict, h: int, field: int) -> dict:
        free = counts["MNIST"] - (28 * h + h) - (10 * h + 10) - field
        return {"free_after_encoder_decoder_field": free, "one_hxh": h * h, "three_hxh": 3 * h * h}

    built = {name: {ds: count_parameters(build(name.split("-")[0], ds, attention="qkv" if "QKV" in name else "score"))
                    for ds in DATASETS}
             for name in ("ClassicAttention", "ODEAttention", "ClassicAttention-QKV", "ODEAttention-QKV")}
    metrics = {
        "classic": classic, "ode": ode, "text_field": text_field, "shared": shared,
        "room": {"ClassicAttention": room(printed["Classic Attention"], h_c, 0),
                 "ODEAttention": room(printed["Neural ODE Attention"], h_o, 2 * h_o * h_o + 4 * h_o)},
        "built": built,
    }
    cfg_params = {"menu": "encoder bias x field x attention x blocks 1-5 x LayerNorms 0-2 x scalars 0-1", "version": 1}
    return run_once(Store(_profile_name(profile), results_dir), "attention-audit", "table4", params=cfg_params, seed=None,
                    device="cpu", resume=False, compute=lambda: metrics)
