"""Every named model of the book, as one literal table (``python -m robustode params`` prints it).

A name maps to the data sets it has variants for, a builder ``dataset -> nn.Module`` and a description;
nothing registers itself on import.
"""

from __future__ import annotations

from functools import partial

from robustode.models import ModelSpec, attention, conv_anode, robust, toy

REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in (
    ModelSpec("toy-NODE", ("spheres2d",), toy.toy_node, "Dupont et al. NODE, hidden 32, time-dependent, dopri5 1e-3"),
    ModelSpec("toy-ANODE-p1", ("spheres2d",), toy.toy_anode1, "Dupont et al. ANODE, p = 1"),
    ModelSpec("toy-ANODE-p5", ("spheres2d",), toy.toy_anode5, "Dupont et al. ANODE, p = 5 (config.json)"),
    ModelSpec("toy-ResNet", ("spheres2d",), toy.toy_resnet, "Dupont et al. ResNet baseline, hidden 32, 5 layers"),
    ModelSpec("ConvNODE", ("MNIST", "CIFAR10"), conv_anode.conv_node,
              "Dupont et al. conv NODE: 92 filters (MNIST), 125 (CIFAR-10)"),
    ModelSpec("ConvANODE", ("MNIST", "CIFAR10"), conv_anode.conv_anode,
              "Dupont et al. conv ANODE: 64 filters, p=5 (MNIST), p=10 (CIFAR-10)"),
    ModelSpec("CNN", robust.DATASETS, partial(robust.build, "CNN"), "Yan et al. CNN: stem + one residual block + head"),
    ModelSpec("ODENet", robust.DATASETS, partial(robust.build, "ODENet"),
              "Yan et al. ODENet: time-dependent conv field, Euler step 0.1 on [0, 1]"),
    ModelSpec("TisODE", robust.DATASETS, partial(robust.build, "TisODE"),
              "Yan et al. TisODE: time-invariant conv field, Euler step 0.05, steady-state term", steady_state=True),
    ModelSpec("ResNet10-tied", robust.DATASETS, partial(robust.build, "ResNet10-tied"),
              "control: ODENet's Euler solve written out, 10 weight-tied residual steps h + 0.1 f(h, 0.1k)"),
    ModelSpec("ResNet10-untied", robust.DATASETS, partial(robust.build, "ResNet10-untied"),
              "control: the same 10 residual steps of scale 0.1 (t as an input), each with a field of its own (10x the middle)"),
    ModelSpec("TisODE-step0.1", robust.DATASETS, partial(robust.build, "TisODE-step0.1"),
              "control: TisODE at ODENet's Euler step 0.1 (steady-state term kept)", steady_state=True),
    ModelSpec("ODENet+steady", robust.DATASETS, partial(robust.build, "ODENet+steady"),
              "control: ODENet (time-dependent, step 0.1) trained with TisODE's steady-state term", steady_state=True),
    ModelSpec("TisODE-nosteady", robust.DATASETS, partial(robust.build, "TisODE-nosteady"),
              "control: TisODE (time-invariant, step 0.05) without the steady-state term"),
    ModelSpec("ODENet-dopri5", robust.DATASETS, partial(robust.build, "ODENet-dopri5"),
              "control: ODENet's field solved with dopri5, rtol = atol = 1e-3 (adaptive)"),
    ModelSpec(f"ODENet-aug{robust.AUGMENT}", robust.DATASETS, partial(robust.build, f"ODENet-aug{robust.AUGMENT}"),
              f"control: ODENet as an ANODE, {robust.AUGMENT} zero channels appended before the ODE block, kept "
              "into the head"),
    ModelSpec("ClassicAttention", attention.DATASETS, partial(attention.build, "ClassicAttention"),
              "Sec. 7 baseline as Table IV counts it: hidden 128, LayerNorm + score attention"),
    ModelSpec("ODEAttention", attention.DATASETS, partial(attention.build, "ODEAttention"),
              "Sec. 7 Neural ODE Attention as Table IV counts it: hidden 32, shared score attention"),
    ModelSpec("ClassicAttention-QKV", attention.DATASETS, partial(attention.build, "ClassicAttention", attention="qkv"),
              "text-faithful baseline: hidden 128, Wq, Wk, Wv (128 x 128)"),
    ModelSpec("ODEAttention-QKV", attention.DATASETS, partial(attention.build, "ODEAttention", attention="qkv"),
              "text-faithful: hidden 32, Wq, Wk, Wv (32 x 32) at each of 4 time points"),
    ModelSpec("ClassicAttention-PE", attention.DATASETS, partial(attention.build, "ClassicAttention", positions="sinusoidal"),
              "ClassicAttention + fixed sinusoidal row positions (no parameters)"),
    ModelSpec("ODEAttention-PE", attention.DATASETS, partial(attention.build, "ODEAttention", positions="sinusoidal"),
              "ODEAttention + fixed sinusoidal row positions (no parameters)"),
    ModelSpec("ClassicAttention-32", attention.DATASETS,
              partial(attention.build, "ClassicAttention", hidden=attention.ODE_HIDDEN),
              "control: ClassicAttention at ODEAttention's hidden size 32 (equal width)"),
    ModelSpec("ClassicAttention-conv", attention.DATASETS, partial(attention.build, "ClassicAttention", attention="conv"),
              "control: ClassicAttention with a Conv1d(h -> 1, kernel 3) score over neighbouring rows (Table IV counts)"),
    ModelSpec("ODEAttention-conv", attention.DATASETS, partial(attention.build, "ODEAttention", attention="conv"),
              "control: ODEAttention with a Conv1d(h -> 1, kernel 3) score over neighbouring rows (Table IV counts)"),
)}
