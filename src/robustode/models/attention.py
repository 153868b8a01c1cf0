"""The survey's Sec. 7 models: Classic Attention and Neural ODE Attention over the rows of an image.

Its code is not public, so the layout is rebuilt from the text and pinned down by Table IV's
parameter counts (see :mod:`robustode.chapters.attention.audit` for the audit):

* an image is a sequence of its rows: ``L`` positions of ``W`` values (MNIST 28 x 28; CIFAR read
  as single-channel 32 x 32 images, which the count differences imply);
* encoder ``Linear(W -> hidden)`` applied to every row;
* ODE Attention only: ``dh/dt = f(h)`` with ``f = Linear -> LayerNorm -> ReLU -> Linear`` (Sec. 7.2.2),
  solved with torchdiffeq from ``t = 0``, the states kept at several time points (Sec. 7.2.3-7.2.4);
* attention over the ``L`` positions at each kept time point, the per-time context vectors averaged
  (Sec. 7.2.6), dropout, decoder ``Linear(hidden -> classes)``.

Three attention blocks are offered. ``"score"`` is the one that reproduces every Table IV count
(hidden 128 for Classic, 32 for ODE): LayerNorm then a single scoring vector, ``3 * hidden + 1``
parameters, shared by all time points. ``"conv"`` is a second layout that fits the same eight counts:
a ``Conv1d(hidden -> 1, kernel 3, bias)`` score over neighbouring rows, also ``3 * hidden + 1``
parameters, but position-aware (a row's score depends on its neighbours, and the zero padding marks
the first and last rows). The counts cannot tell the two apart. ``"qkv"`` is the text's Eqs. (7)-(11)
taken literally: learnable ``W_q, W_k, W_v`` (hidden x hidden, no bias) at every time point, which the
printed counts have no room for.

Nothing in the ``score`` and ``qkv`` layouts depends on a row's index: the encoder, the field and the
attention treat every row alike, so the models see an unordered bag of rows. The counts forbid a learned position
embedding (it would add ``L * hidden`` parameters and change the CIFAR-minus-MNIST difference);
``positions="sinusoidal"`` adds the fixed encoding of Vaswani et al. (2017), which costs none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from robustode.core.odeblock import ODEBlock, ReportsNFE

ROW_WIDTH = {"MNIST": 28, "FashionMNIST": 28, "CIFAR10": 32, "CIFAR100": 32}
CLASSES = {"MNIST": 10, "FashionMNIST": 10, "CIFAR10": 10, "CIFAR100": 100}
DATASETS = tuple(ROW_WIDTH)
CLASSIC_HIDDEN = 128
ODE_HIDDEN = 32
ATTENTION_TIMES = (0.25, 0.5, 0.75, 1.0)
ATTENTIONS = ("score", "qkv", "conv")
POSITIONS = ("none", "sinusoidal")


def image_rows(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) or (B, H, W) images -> (B, H, W): a sequence of H rows of W values."""
    if x.dim() == 4:
        if x.shape[1] != 1:
            raise ValueError(f"attention models read single-channel images, got {x.shape[1]} channels")
        x = x[:, 0]
    if x.dim() != 3:
        raise ValueError(f"expected images of shape (B, 1, H, W) or (B, H, W), got {tuple(x.shape)}")
    return x


class ScoreAttention(nn.Module):
    """Attention pooling that fits Table IV: ``a_i = softmax_i(w . LN(h_i) + b)``, ``c = sum_i a_i LN(h_i)``.

    LayerNorm(hidden) plus one scoring vector and bias: ``3 * hidden + 1`` parameters.
    """

    def __init__(self, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.score = nn.Linear(hidden, 1)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``h`` (B, L, hidden) -> context (B, hidden), weights (B, L)."""
        z = self.norm(h)
        weights = torch.softmax(self.score(z).squeeze(-1).float(), dim=-1)
        return torch.einsum("bl,blh->bh", weights.to(z.dtype), z), weights


class ConvScoreAttention(nn.Module):
    """Attention pooling with a local score: ``a = softmax_i(conv1d(h)_i)``, ``c = sum_i a_i h_i``.

    ``Conv1d(hidden -> 1, kernel 3, padding 1, bias)`` over the L positions: ``3 * hidden + 1`` parameters, as many
    as :class:`ScoreAttention`'s LayerNorm and scoring vector, so this layout also gives every Table IV count. A
    row's score reads the row above and below it (zeros beyond the ends), so the pooling is not permutation
    invariant: a position-aware model with the printed counts.
    """

    def __init__(self, hidden: int):
        super().__init__()
        self.score = nn.Conv1d(hidden, 1, kernel_size=3, padding=1)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``h`` (B, L, hidden) -> context (B, hidden), weights (B, L)."""
        weights = torch.softmax(self.score(h.transpose(1, 2)).squeeze(1).float(), dim=-1)
        return torch.einsum("bl,blh->bh", weights.to(h.dtype), h), weights


class QKVAttention(nn.Module):
    """Eqs. (7)-(11): ``Q = h W_q``, ``K = h W_k``, ``V = h W_v``, ``C = softmax(Q K^T / sqrt(d_k)) V``.

    Eq. (10) as printed multiplies by ``V`` inside the attention weights and Eq. (11) again; we apply
    ``V`` once (scaled dot-product attention). The per-position outputs are averaged into one context
    vector; the returned weights are the attention each position receives (mean over queries), a
    distribution over the ``L`` positions like :class:`ScoreAttention`'s.
    """

    def __init__(self, hidden: int):
        super().__init__()
        self.q = nn.Linear(hidden, hidden, bias=False)
        self.k = nn.Linear(hidden, hidden, bias=False)
        self.v = nn.Linear(hidden, hidden, bias=False)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q, k, v = self.q(h), self.k(h), self.v(h)
        a = torch.softmax((q @ k.transpose(1, 2)).float() / math.sqrt(k.shape[-1]), dim=-1)
        context = (a.to(v.dtype) @ v).mean(dim=1)
        return context, a.mean(dim=1)


def sinusoidal_positions(length: int, hidden: int) -> torch.Tensor:
    """Vaswani et al. (2017), Sec. 3.5: PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(...); no parameters."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    angle = position / 10000 ** (torch.arange(0, hidden, 2, dtype=torch.float32) / hidden)
    table = torch.zeros(length, hidden)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle[:, : hidden // 2])
    return table


def attention_block(kind: str, hidden: int) -> nn.Module:
    if kind not in ATTENTIONS:
        raise ValueError(f"unknown attention {kind!r}; choose one of: {', '.join(ATTENTIONS)}")
    return {"score": ScoreAttention, "qkv": QKVAttention, "conv": ConvScoreAttention}[kind](hidden)


class ODEFunc(nn.Module):
    """Sec. 7.2.2: ``f(h) = Linear(ReLU(LayerNorm(Linear(h))))``, time-invariant, applied to every position.

    The output is cast back to the state's dtype, so under autocast the solver's state and step-size
    control stay in float32 while the matrix products run in half precision.
    """

    def __init__(self, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.ReLU(), nn.Linear(hidden, hidden))

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.net(h).to(h.dtype)


class RowAttention(nn.Module):
    """Encoder over rows -> hidden-state sequences at T time points -> attention at each -> mean -> dropout -> decoder.

    Subclasses say where the T sequences come from (:meth:`states`).
    """

    def __init__(self, row_width: int, classes: int, hidden: int, attention: str, num_times: int, dropout: float,
                 positions: str = "none"):
        super().__init__()
        if min(row_width, classes, hidden, num_times) <= 0:
            raise ValueError(f"sizes must be positive: row_width={row_width}, classes={classes}, hidden={hidden}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if positions not in POSITIONS:
            raise ValueError(f"unknown positions {positions!r}; choose one of: {', '.join(POSITIONS)}")
        self.positions = positions
        self.hidden = hidden
        self.encoder = nn.Linear(row_width, hidden)
        # One scoring block shared by all time points (what Table IV leaves room for); the text's
        # Wq, Wk, Wv are independent per time point.
        count = num_times if attention == "qkv" else 1
        self.attention = nn.ModuleList(attention_block(attention, hidden) for _ in range(count))
        self.dropout = nn.Dropout(dropout)
        self.decoder = nn.Linear(hidden, classes)

    def states(self, h0: torch.Tensor) -> torch.Tensor:
        """(T, B, L, hidden) hidden-state sequences the attention reads."""
        raise NotImplementedError

    def attend(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, classes) and attention weights (B, T, L) over the L rows at each of the T time points."""
        h0 = self.encoder(image_rows(x))
        if self.positions == "sinusoidal":
            h0 = h0 + sinusoidal_positions(h0.shape[1], self.hidden).to(h0)
        states = self.states(h0)
        contexts, weights = zip(
            *(self.attention[i % len(self.attention)](s) for i, s in enumerate(states)), strict=True
        )
        context = torch.stack(contexts).mean(dim=0)
        return self.decoder(self.dropout(context)), torch.stack(weights, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attend(x)[0]


class ClassicAttention(RowAttention):
    """The baseline "without the ODE component": attention over the encoded rows, one time point."""

    def __init__(self, row_width: int, classes: int, hidden: int = CLASSIC_HIDDEN, attention: str = "score",
                 dropout: float = 0.1, positions: str = "none"):
        super().__init__(row_width, classes, hidden, attention, 1, dropout, positions)

    def states(self, h0: torch.Tensor) -> torch.Tensor:
        return h0.unsqueeze(0)


class ODEAttention(ReportsNFE, RowAttention):
    """Enhanced Neural ODE Attention (Sec. 7.2): the encoded rows evolve under :class:`ODEFunc` from t = 0,
    and attention reads the states at ``times`` (all > 0, increasing)."""

    def __init__(self, row_width: int, classes: int, hidden: int = ODE_HIDDEN, attention: str = "score",
                 dropout: float = 0.1, positions: str = "none", times: Sequence[float] = ATTENTION_TIMES,
                 method: str = "dopri5", rtol: float = 1e-3, atol: float = 1e-3, max_num_steps: int = 1000):
        if not times or times[0] <= 0:
            raise ValueError(f"attention times must be positive and increasing, got {list(times)}")
        super().__init__(row_width, classes, hidden, attention, len(times), dropout, positions)
        self.block = ODEBlock(ODEFunc(hidden), times=(0.0, *times), method=method, rtol=rtol, atol=atol,
                              max_num_steps=max_num_steps)

    def states(self, h0: torch.Tensor) -> torch.Tensor:
        # Under autocast the encoder returns half precision; the solver's state and step-size control stay
        # float32 (torchdiffeq's adaptive stepping is not written for half-precision states).
        return self.block.trajectory(h0.float())[1:]


def build(name: str, dataset: str, attention: str = "score", **options) -> RowAttention:
    """``"ClassicAttention"`` or ``"ODEAttention"`` for a dataset; ``options`` go to the model (hidden, dropout,
    positions, solver)."""
    if dataset not in ROW_WIDTH:
        raise ValueError(f"unknown dataset {dataset!r} for attention models; choose one of: {', '.join(DATASETS)}")
    models = {"ClassicAttention": ClassicAttention, "ODEAttention": ODEAttention}
    if name not in models:
        raise ValueError(f"unknown attention model {name!r}; choose one of: {', '.join(models)}")
    return models[name](ROW_WIDTH[dataset], CLASSES[dataset], attention=attention, **options)
