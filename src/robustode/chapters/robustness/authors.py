"""Yan et al.'s own trained MNIST models (ICLR 2020), loaded safely and evaluated with this project's protocols.

The authors published their trained models in ``github.com/HanshuYAN/TisODE`` under
``checkpoints/MNIST_{CNN,ODE,tisode}_gaus_1/model_best.pth``: whole ``nn.Module`` objects saved by
PyTorch 1.1 with ``torch.save`` in the legacy (pre-1.6, non-zip) format. That repository has no licence,
so nothing of it is copied here or redistributed: the user clones it and gives its path
(``ROBUSTODE_AUTHORS_CHECKPOINTS`` or ``--authors-checkpoints``).

**Loading without running the pickle.** ``torch.load`` would import the authors' ``networks`` module and
call whatever the pickle names. :func:`read_legacy` instead parses the legacy stream itself (see
``torch/serialization.py``, ``_legacy_save``): a pickled magic number, protocol version (1001) and system
info, the object pickle, the pickled list of storage keys, then each storage's raw bytes (an int64 element
count, then the data). The object pickle is read by :class:`_InertUnpickler`, whose ``find_class`` never
imports anything: every global (``networks.CNN_MNIST``, ``torch._utils._rebuild_tensor_v2``, even
``os.system``) becomes a fresh inert placeholder class that only records the arguments it is called with,
and whose ``persistent_load`` turns storage references into :class:`StorageRef` descriptors. Tensors are
then rebuilt from the recorded ``_rebuild_tensor(_v2)`` calls (storage, offset, size, stride) over the raw
bytes, and the module tree from the recorded ``_parameters`` / ``_buffers`` / ``_modules`` dictionaries.

**Mapping into our models.** :data:`KEY_MAP` maps the authors' module paths (``mnist/networks.py``:
``CNN_MNIST``, ``ODENet_MNIST``, ``ODENet_tisode``) onto :func:`robustode.models.robust.build`'s layout
(see that module's docstring); :func:`load_weights` requires every key mapped, every shape equal and the
layers' hyper-parameters (stride, padding, GroupNorm groups and eps) equal, and raises one
:class:`CheckpointMismatch` listing every difference.

**What the authors' log measured** (``attack_mnist/main_{cnn,ode,tisode}.py`` and ``run_test.sh``, read, not
copied): ``adversarial_attack(1000, model, test_loader, eps, lr=eps, maxiter=1)`` for eps 0.15 / 0.3 / 0.5, i.e.
:func:`robustode.core.attacks.fgsm` at that eps: the margin loss on log-softmax, two checked iterates (clean and one
step), the step ``lr * g / (|g| + 1e-8)`` (Adam with beta1 = beta2 = 0) projected onto the eps-ball and [0, 1],
on the 1,000 images of ``np.random.seed(1216)`` (:func:`robustode.core.evaluation.attack_indices`), pixels in [0, 1]
without normalisation, ODENet with Euler step 0.1 on [0, 1], TisODE with step 0.05 (prediction at t = 1). Their
PGD and TisODE FGSM-0.15 calls were switched off (``0 if True else ...``), which is why the log prints 0 there.
The exact sign step used here differs from theirs only for gradient entries below about 1e-6.

**Evaluation.** Each model is a run-plan unit (:func:`units`, experiment ``authors-MNIST``; the plan takes
them after chapters 2-3's own runs) evaluated by the chapter's own stages
(:func:`robustode.chapters.robustness.run.evaluate`) with the settings the profile's ``authors`` section
names (the faithful margin FGSM / PGD on Yan et al.'s 1,000 images, strong PGD, standard AutoAttack,
Gaussian noise, sanity checks); :func:`robustode.chapters.robustness.tables.authors_table` compares the
results with the printed Table I and with the authors' own log of these very models
(``sharing_MNIST_FGSM.txt``, first run of each model).
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustode.chapters.robustness.config import config as robustness_config
from robustode.chapters.robustness.config import missing_reason
from robustode.chapters.robustness.run import (
    evaluate,
    evaluate_randomised,
    evaluation_stages,
    merge_stages,
    pass_costs,
    same_attack_without_defence,
    stage_costs,
    stages_left,
)
from robustode.core.budget import Deadline
from robustode.data.images import load_tensors
from robustode.models import count_parameters
from robustode.models.robust import WIDTH, RobustNet, build
from robustode.profiles import Settings, check_choice, experiment_config, load_profile
from robustode.store import Store
from robustode.units import DONE, PARTIAL, PENDING, Context, Progress, Unit, stored_seconds

ENV = "ROBUSTODE_AUTHORS_CHECKPOINTS"
REPOSITORY = "github.com/HanshuYAN/TisODE"
EXPERIMENT = "authors-MNIST"
# The same checkpoints behind Xie et al.'s input randomisation (inference only, so nothing to train): one unit each.
RANDOMISED = "authors-MNIST-randomised"
# The checkpoints (``checkpoints/MNIST_*_gaus_1``) are the first of the three logged runs of each model.
RELEASED_RUN = "run 1"
NOT_GIVEN = f"authors' checkpoints not given: clone {REPOSITORY} and set {ENV} to it"

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
STORAGE_DTYPES = {
    "torch.FloatStorage": torch.float32, "torch.DoubleStorage": torch.float64, "torch.HalfStorage": torch.float16,
    "torch.LongStorage": torch.int64, "torch.IntStorage": torch.int32, "torch.ShortStorage": torch.int16,
    "torch.CharStorage": torch.int8, "torch.ByteStorage": torch.uint8, "torch.BoolStorage": torch.bool,
}
REBUILD_TENSOR = ("torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2")
REBUILD_PARAMETER = "torch._utils._rebuild_parameter"
DATA_PARALLEL = "torch.nn.parallel.data_parallel.DataParallel"


class CheckpointError(ValueError):
    """A checkpoint file that is not a legacy PyTorch pickle this reader understands."""


class CheckpointMismatch(ValueError):
    """The recovered weights do not fit the target model; the message lists every difference."""


# ------------------------------------------------------------------------------------ inert unpickling

class Inert:
    """What every global named in the pickle becomes: a record of how it was called, never the real thing.

    ``name`` is the global's dotted name; an instance keeps the call's ``args``, the ``state`` given by
    BUILD, and the items / elements that SETITEMS / APPENDS add (``OrderedDict`` contents)."""

    name = ""

    def __new__(cls, *args: Any) -> Inert:
        obj = object.__new__(cls)
        obj.args, obj.state, obj.items, obj.elements = args, None, {}, []
        return obj

    def __init__(self, *args: Any) -> None:  # REDUCE calls cls(*args); __new__ has kept them
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items[key] = value

    def append(self, value: Any) -> None:
        self.elements.append(value)

    def extend(self, values: Any) -> None:
        self.elements.extend(values)

    def __repr__(self) -> str:
        return f"<inert {self.name}>"


@dataclass(frozen=True)
class StorageRef:
    """A storage named by the pickle's persistent id: element type, key into the raw data, element count,
    and for a view ``(offset, size)`` inside the root storage."""

    dtype: torch.dtype
    key: str
    location: str
    numel: int
    view: tuple[int, int] | None = None


class _InertUnpickler(pickle.Unpickler):
    """An unpickler that imports nothing and calls nothing named in the stream (see :class:`Inert`)."""

    def __init__(self, file: io.BytesIO):
        super().__init__(file)
        self.classes: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> type:
        dotted = f"{module}.{name}"
        if dotted not in self.classes:
            self.classes[dotted] = type(f"Inert[{dotted}]", (Inert,), {"name": dotted})
        return self.classes[dotted]

    def persistent_load(self, pid: Any) -> StorageRef | type:
        if isinstance(pid, tuple) and len(pid) == 4 and pid[0] == "module" and isinstance(pid[1], type):
            return pid[1]  # ('module', class, source file, source text): torch.save's record of a module's source
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise CheckpointError(f"unexpected persistent id {repr(pid)[:200]} (expected a legacy storage reference)")
        _, kind, key, location, numel, view = pid
        dtype = STORAGE_DTYPES.get(getattr(kind, "name", ""))
        if dtype is None or not isinstance(key, str) or not isinstance(numel, int):
            raise CheckpointError(f"unsupported storage reference {repr(pid)[:200]}")
        if view is not None:
            if not (isinstance(view, tuple) and len(view) == 3 and all(isinstance(v, int) for v in view[1:])):
                raise CheckpointError(f"unsupported storage view {view!r}")
            view = (view[1], view[2])
        return StorageRef(dtype, key, str(location), numel, view)


def _load_one(stream: io.BytesIO, what: str) -> Any:
    try:
        return _InertUnpickler(stream).load()
    except CheckpointError:
        raise
    except Exception as err:  # a truncated or foreign stream: say where it broke
        raise CheckpointError(f"cannot read the {what} pickle at byte {stream.tell()}: {err}") from err


@dataclass
class LegacyFile:
    """What :func:`read_legacy` recovered: the inert object tree, the raw storages by key, the system info."""

    obj: Any
    storages: dict[str, torch.Tensor]
    sys_info: dict
    refs: dict[str, StorageRef] = field(default_factory=dict)


def _refs(obj: Any, found: dict[str, StorageRef], seen: set[int]) -> None:
    if isinstance(obj, StorageRef):
        if obj.key in found and found[obj.key].dtype != obj.dtype:
            raise CheckpointError(f"storage {obj.key} referenced with two element types")
        found.setdefault(obj.key, obj)
    elif isinstance(obj, Inert) and id(obj) not in seen:  # memoised objects can be shared: visit each once
        seen.add(id(obj))
        for part in (obj.args, obj.state, list(obj.items.items()), obj.elements):
            _refs(part, found, seen)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _refs(k, found, seen)
            _refs(v, found, seen)
    elif isinstance(obj, list | tuple | set):
        for v in obj:
            _refs(v, found, seen)


def read_legacy(data: bytes) -> LegacyFile:
    """Parse a legacy-format ``torch.save`` stream (PyTorch < 1.6, or ``_use_new_zipfile_serialization=False``)
    without importing or calling anything it names."""
    if data[:4] == b"PK\x03\x04":
        raise CheckpointError("this is a zip-format checkpoint (PyTorch >= 1.6), not the legacy format; "
                              "load it with torch.load(..., weights_only=True)")
    stream = io.BytesIO(data)
    magic = _load_one(stream, "magic number")
    if magic != LEGACY_MAGIC:
        raise CheckpointError(f"not a legacy PyTorch file: magic number {magic!r}")
    protocol = _load_one(stream, "protocol version")
    if protocol != LEGACY_PROTOCOL:
        raise CheckpointError(f"unsupported legacy protocol version {protocol!r} (expected {LEGACY_PROTOCOL})")
    sys_info = _load_one(stream, "system info")
    if not isinstance(sys_info, dict) or sys_info.get("little_endian") is not True:
        raise CheckpointError(f"only little-endian checkpoints are supported; system info: {sys_info!r}")
    obj = _load_one(stream, "object")
    keys = _load_one(stream, "storage keys")
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
        raise CheckpointError(f"the storage-key list is malformed: {keys!r}")
    refs: dict[str, StorageRef] = {}
    _refs(obj, refs, set())
    unknown = sorted(set(keys) - set(refs))
    absent = sorted(set(refs) - set(keys))
    if unknown or absent:
        raise CheckpointError(f"storage keys do not match the references: unreferenced {unknown}, missing {absent}")
    storages = {}
    for key in keys:
        ref = refs[key]
        header = stream.read(8)
        if len(header) != 8:
            raise CheckpointError(f"file ends before storage {key}")
        (numel,) = struct.unpack("<q", header)
        if numel != ref.numel:
            raise CheckpointError(f"storage {key}: {numel} elements on disk, {ref.numel} in the pickle")
        size = numel * torch.empty((), dtype=ref.dtype).element_size()
        raw = stream.read(size)
        if len(raw) != size:
            raise CheckpointError(f"file ends inside storage {key} ({len(raw)} of {size} bytes)")
        storages[key] = torch.frombuffer(bytearray(raw), dtype=ref.dtype) if size else torch.empty(0, dtype=ref.dtype)
    if stream.read(1):
        raise CheckpointError("unexpected bytes after the last storage")
    return LegacyFile(obj, storages, sys_info, refs)


# ------------------------------------------------------------------------------------ module tree

@dataclass
class ModuleRecord:
    """One recovered ``nn.Module``: its class's dotted name, tensors, children, and plain attributes."""

    type_name: str
    parameters: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]
    children: dict[str, ModuleRecord]
    attributes: dict[str, Any]

    def state(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """The flat ``state_dict``-style mapping of the subtree (``None`` parameters left out, as torch does)."""
        out = {f"{prefix}{k}": v for k, v in {**self.parameters, **self.buffers}.items() if v is not None}
        for name, child in self.children.items():
            out.update(child.state(f"{prefix}{name}."))
        return out

    def modules(self, prefix: str = "") -> dict[str, ModuleRecord]:
        out = {prefix.rstrip("."): self}
        for name, child in self.children.items():
            out.update(child.modules(f"{prefix}{name}."))
        return out


def _tensor(call: Inert, storages: dict[str, torch.Tensor]) -> torch.Tensor:
    if len(call.args) < 4 or not isinstance(call.args[0], StorageRef):
        raise CheckpointError(f"unexpected {call.name} arguments")
    ref, offset, size, stride = call.args[:4]
    flat = storages[ref.key]
    if ref.view is not None:
        flat = flat[ref.view[0] : ref.view[0] + ref.view[1]]
    size, stride = tuple(size), tuple(stride)
    if len(size) != len(stride) or offset < 0 or any(s < 0 for s in size) or any(s < 0 for s in stride):
        raise CheckpointError(f"bad tensor geometry: offset {offset}, size {size}, stride {stride}")
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) if all(size) else offset - 1
    if last >= len(flat):
        raise CheckpointError(f"tensor of size {size} at offset {offset} runs past its storage of {len(flat)}")
    return torch.as_strided(flat, size, stride, offset).clone()


def _value(obj: Any, storages: dict[str, torch.Tensor]) -> Any:
    """Tensors from recorded rebuild calls, dicts from recorded OrderedDicts, modules as :class:`ModuleRecord`."""
    if isinstance(obj, Inert):
        if obj.name in REBUILD_TENSOR:
            return _tensor(obj, storages)
        if obj.name == REBUILD_PARAMETER:
            return _value(obj.args[0], storages)
        if obj.name == "collections.OrderedDict":
            return {k: _value(v, storages) for k, v in obj.items.items()}
        if isinstance(obj.state, dict) and "_modules" in obj.state:
            return _module(obj, storages)
        return obj
    if isinstance(obj, list | tuple):
        return type(obj)(_value(v, storages) for v in obj)
    if isinstance(obj, dict):
        return {k: _value(v, storages) for k, v in obj.items()}
    return obj


def _module(obj: Inert, storages: dict[str, torch.Tensor]) -> ModuleRecord:
    state = {k: _value(v, storages) for k, v in obj.state.items()}
    children = state.pop("_modules") or {}
    bad = [k for k, v in children.items() if not isinstance(v, ModuleRecord)]
    if bad:
        raise CheckpointError(f"{obj.name}: children {bad} are not modules")
    return ModuleRecord(obj.name, state.pop("_parameters", None) or {}, state.pop("_buffers", None) or {}, children,
                        {k: v for k, v in state.items() if not k.startswith("_")})


def recover_module(data: bytes) -> tuple[ModuleRecord, dict]:
    """The module tree pickled in a legacy ``torch.save(model)`` file (a ``DataParallel`` wrapper removed),
    and the file's system info."""
    legacy = read_legacy(data)
    root = _value(legacy.obj, legacy.storages)
    if not isinstance(root, ModuleRecord):
        raise CheckpointError(f"the file holds {type(root).__name__}, not a whole nn.Module")
    if root.type_name == DATA_PARALLEL and list(root.children) == ["module"]:
        root = root.children["module"]
    return root, legacy.sys_info


# ------------------------------------------------------------------------------------ mapping

# (authors' module path, ours); read from HanshuYAN/TisODE mnist/networks.py against models/robust.py.
_STEM = [("0", "stem.0"), ("1", "stem.1"), ("3", "stem.3"), ("4", "stem.4")]
KEY_MAP: dict[str, list[tuple[str, str]]] = {
    "CNN": [(f"net.{a}", b) for a, b in _STEM] + [
        ("net.6.conv1", "middle.branch.0"), ("net.6.norm1", "middle.branch.1"),
        ("net.6.conv2", "middle.branch.3"), ("net.6.norm2", "middle.branch.4"), ("net.9", "head.2")],
    "ODENet": [(f"net.{a}", b) for a, b in _STEM] + [
        ("net.6.odefunc.conv1._layer", "middle.func.field.conv1.conv"), ("net.6.odefunc.norm1", "middle.func.field.norm1"),
        ("net.6.odefunc.conv2._layer", "middle.func.field.conv2.conv"), ("net.6.odefunc.norm2", "middle.func.field.norm2"),
        ("net.9", "head.2")],
    "TisODE": [(f"downsampling_layers.{a}", b) for a, b in _STEM] + [
        ("feature_layers.conv1", "middle.block.func.field.conv1"), ("feature_layers.norm1", "middle.block.func.field.norm1"),
        ("feature_layers.conv2", "middle.block.func.field.conv2"), ("feature_layers.norm2", "middle.block.func.field.norm2"),
        ("fc_layers.2", "head.2")],
}
# layer hyper-parameters that must agree (they change the function, not the shapes)
_HYPER = {nn.Conv2d: ("stride", "padding", "dilation", "groups"), nn.GroupNorm: ("num_groups", "eps", "affine")}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float | int) and isinstance(b, float | int) and not isinstance(a, bool):
        return abs(a - b) <= 1e-12 * max(1.0, abs(b))
    return (tuple(a) if isinstance(a, list) else a) == (tuple(b) if isinstance(b, list) else b)


def load_weights(model: nn.Module, record: ModuleRecord, arch: str) -> nn.Module:
    """Copy the recovered ``record`` into ``model`` (``robustode.models.robust.build(arch, "MNIST")``) strictly:
    every recovered tensor mapped, every model tensor filled, shapes and layer settings equal; otherwise one
    :class:`CheckpointMismatch` lists the unexpected, missing and mismatched entries."""
    if arch not in KEY_MAP:
        raise ValueError(f"unknown architecture {arch!r}; choose one of: {', '.join(KEY_MAP)}")
    source = record.state()
    target = model.state_dict()
    ours, unexpected, shapes, settings = {}, [], [], []
    for key, tensor in source.items():
        for theirs, mine in KEY_MAP[arch]:
            if key.startswith(theirs + "."):
                ours[mine + key[len(theirs):]] = (key, tensor)
                break
        else:
            unexpected.append(key)
    missing = sorted(set(target) - set(ours))
    unexpected += [f"{src} (-> {k}, not in the model)" for k, (src, _) in ours.items() if k not in target]
    for key, (src, tensor) in ours.items():
        if key in target and tuple(tensor.shape) != tuple(target[key].shape):
            shapes.append(f"{src} -> {key}: {tuple(tensor.shape)} vs {tuple(target[key].shape)}")
        elif key in target and tensor.dtype != target[key].dtype:
            shapes.append(f"{src} -> {key}: dtype {tensor.dtype} vs {target[key].dtype}")
    theirs_modules = record.modules()
    for theirs, mine in KEY_MAP[arch]:
        module = model.get_submodule(mine)
        rec = theirs_modules.get(theirs)
        for kind, names in _HYPER.items():
            if isinstance(module, kind) and rec is not None:
                for name in names:
                    if name in rec.attributes and not _same(rec.attributes[name], getattr(module, name)):
                        settings.append(f"{theirs} -> {mine}: {name} {rec.attributes[name]!r} vs {getattr(module, name)!r}")
    problems = [f"{label}: {', '.join(items)}" for label, items in
                (("unexpected keys", unexpected), ("missing keys", missing), ("shape mismatches", shapes),
                 ("layer settings differ", settings)) if items]
    if problems:
        raise CheckpointMismatch(f"the {arch} checkpoint does not fit our {arch}: " + "; ".join(problems))
    model.load_state_dict({k: t for k, (_, t) in ours.items()}, strict=True)
    return model


# ------------------------------------------------------------------------------------ the models

def checkpoint_root() -> Path | None:
    """The user's clone of the authors' repository (``$ROBUSTODE_AUTHORS_CHECKPOINTS``), or ``None``."""
    root = os.environ.get(ENV)
    return Path(root).expanduser() if root else None


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def zero_subnormals(model: nn.Module) -> int:
    """Set every nonzero floating-point parameter and buffer entry below the smallest normal float (2^-126 for float32,
    about 1.2e-38) to zero, and return how many there were.

    About a third of the authors' MNIST weights are subnormal (weight decay under a learning rate lowered 125-fold
    shrinks weights that no data gradient holds up geometrically, past the normal range). x86 CPUs compute with
    subnormal operands in microcode: an input gradient through those checkpoints took 5 to 30 times longer here than
    through the same weights with those entries at zero, while logits and gradients on real test images came out
    bit-identical (the terms are below float32's resolution of any sum they enter; checked for all three models)."""
    count = 0
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.is_floating_point():
                tiny = (tensor != 0) & (tensor.abs() < torch.finfo(tensor.dtype).tiny)
                count += int(tiny.sum())
                tensor[tiny] = 0.0
    return count


def load_model(arch: str, path: Path | str) -> tuple[RobustNet, dict]:
    """Our ``arch`` (width 64, MNIST) carrying the authors' weights from ``path``, in eval mode, and what was
    read: file size and SHA-256, the authors' class, the solver settings their module recorded and how many subnormal
    weights were set to zero (:func:`zero_subnormals`)."""
    path = Path(path)
    if arch not in KEY_MAP:
        raise ValueError(f"unknown architecture {arch!r}; choose one of: {', '.join(KEY_MAP)}")
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    data = path.read_bytes()
    record, _ = recover_module(data)
    model = load_weights(build(arch, "MNIST", width=WIDTH), record, arch).eval()
    subnormal = zero_subnormals(model)
    recorded = {f"{where or 'model'}.{k}": (v.tolist() if isinstance(v, torch.Tensor) else v)
                for where, m in record.modules().items() for k, v in m.attributes.items()
                if k in ("integration_time", "step_size", "method", "rtol", "atol")}
    blocks = model.ode_blocks()
    return model, {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "authors_class": record.type_name,
                   "recorded_in_checkpoint": recorded, "euler_step_here": blocks[0].step_size if blocks else None,
                   "subnormal_weights_zeroed": subnormal}


# ------------------------------------------------------------------------------------ run plan

# the robustness settings the evaluation stages read (run._stage, run.stage_costs); training settings are irrelevant
EVAL_KEYS = ("dataset", "noise_images", "noise_sigmas", "attack_images", "fgsm_eps", "pgd_eps", "strong", "autoattack",
             "sanity", "solver_eps", "eval_batch", "conditional")


def config(profile: str | dict) -> Settings:
    """The profile's ``authors`` section, checked, with ``evaluation``: the robustness settings of its
    ``evaluation_profile`` for MNIST (plus ``extra_fgsm_eps``; no input-randomisation stage; the authors' width)."""
    section = experiment_config(profile, "authors")
    for name in section["models"]:
        check_choice("model in authors.models", name, tuple(KEY_MAP))
    if missing := [m for m in section["models"] if m not in section["checkpoints"]]:
        raise ValueError(f"authors.checkpoints names no file for {', '.join(missing)}")
    full = robustness_config(section["evaluation_profile"], "MNIST")
    cfg = {k: full[k] for k in EVAL_KEYS if k in full}
    cfg["fgsm_eps"] = [*cfg["fgsm_eps"], *section.get("extra_fgsm_eps", [])]
    cfg["defences"] = {"randomise": []}
    cfg["width"] = WIDTH  # the authors' models: stage costs are estimated on this width
    return Settings({**section, "evaluation": cfg})


def requires(path: Path | None) -> str:
    """Why a model cannot be evaluated here ("" when it can): no checkpoints given, file absent, no MNIST."""
    if path is None:
        return NOT_GIVEN
    if not path.is_file():
        return f"authors' checkpoint not found: {path} (is {ENV} the root of a clone of {REPOSITORY}?)"
    return missing_reason("MNIST")


def checkpoint_path(settings: Settings, name: str) -> Path | None:
    """Where ``name``'s checkpoint is in the user's clone; ``None`` when the clone is not given."""
    root = checkpoint_root()
    return root / settings["checkpoints"][name] if root is not None else None


def mnist_test_set(ctx: Context) -> dict:
    """The MNIST test set on the context's device (all the evaluation stages use), shared by the units of one call."""

    def load() -> dict:
        x, y = load_tensors("MNIST", train=False)
        return {"test": (x.to(ctx.device), y.to(ctx.device))}

    return ctx.shared(("authors", "MNIST test", str(ctx.device)), load)


def probe(name: str, cfg: dict, stages: list[str]) -> dict:
    """Seconds per stage estimated here from timed forward passes and input gradients of the architecture
    (random weights, same cost; :func:`robustode.chapters.robustness.run.pass_costs`) via the chapter's
    :func:`~robustode.chapters.robustness.run.stage_costs`; nothing to train."""
    torch.manual_seed(0)
    passes = pass_costs(build(name, "MNIST", width=WIDTH), (1, 28, 28))
    costs = stage_costs(name, cfg, passes["grad_s"], passes["forward_s"], passes["nfe_forward"])
    return {"epoch_s": 0.0, **passes, "stages_s": {s: costs[s] for s in stages}}


def compute(name: str, path: Path, relative: str, cfg: dict, params: dict, store: Store, device: torch.device,
            data: Callable[[], dict], progress: bool = True, deadline: Deadline | None = None,
            estimate: Callable[[str], float] = lambda stage: 0.0, stop_after: tuple[str, ...] = ()) -> dict:
    """One model's metrics: load it (:func:`load_model`), then the chapter's
    :func:`~robustode.chapters.robustness.run.evaluate`, resumable per stage through the store's partial file."""
    tic = time.perf_counter()
    model, read = load_model(name, path)
    model.to(device)
    read = {"file": relative, **read, "load_seconds": time.perf_counter() - tic}
    done = store.load_partial(EXPERIMENT, name, params)
    return {"checkpoint": read, "parameters": count_parameters(model),
            **evaluate(model, data(), cfg, 0, progress, f"authors' {name}", name, done,
                       lambda d: store.save_partial(EXPERIMENT, name, params, d), deadline,
                       estimate, stop_after)}


def unit_params(settings: Settings, name: str) -> dict:
    """What identifies the evaluation of the authors' ``name`` (its results and partial files are keyed by it)."""
    return {"model": name, "checkpoint": settings["checkpoints"][name],
            "evaluation_profile": settings["evaluation_profile"], **settings["evaluation"]}


def evaluations(store: Store) -> dict[str, dict]:
    """Per model of the profile's ``authors`` section, what ``store`` holds: the results file's run, else the
    stages of an evaluation in progress as a run of the same shape with ``"partial": {"done": [...], "left":
    [...]}`` (its provenance has the device only, ``"not recorded"`` for partial files written before the device
    was kept). Models with neither are left out; ``{}`` for a profile without an ``authors`` section."""
    if "authors" not in load_profile(store.profile):
        return {}
    settings = config(store.profile)
    stages = evaluation_stages(EXPERIMENT, settings["evaluation"])
    runs = {r["run"]: r for r in store.runs(EXPERIMENT)}
    out = {}
    for name in settings["models"]:
        if name in runs:
            out[name] = runs[name]
            continue
        params = unit_params(settings, name)
        partial = store.load_partial(EXPERIMENT, name, params)
        left, _ = stages_left(partial, stages)
        done = [s for s in stages if s in partial]
        if done:
            out[name] = {"run": name, "params": params, "metrics": merge_stages(partial, stages),
                         "provenance": {"device": partial.get("device", "not recorded")},
                         "partial": {"done": done, "left": left}}
    return out


def randomised_config(profile: str | dict) -> Settings:
    """:func:`config` with the evaluation profile's ``defences`` (input randomisation's size, EOT draws, PGD steps,
    restarts and images) for every model of the section."""
    settings = config(profile)
    defences = robustness_config(settings["evaluation_profile"], "MNIST")["defences"]
    evaluation = {**settings["evaluation"], "defences": {**defences, "randomise": list(settings["models"])}}
    return Settings({**settings, "evaluation": evaluation})


def randomised_params(settings: Settings, name: str) -> dict:
    """What identifies the input-randomisation evaluation of the authors' ``name`` (the settings it reads)."""
    cfg = settings["evaluation"]
    d = cfg["defences"]
    return {"model": name, "checkpoint": settings["checkpoints"][name], "evaluation_profile": settings["evaluation_profile"],
            "dataset": cfg["dataset"], "noise_images": cfg["noise_images"], "attack_images": cfg["attack_images"],
            "eval_batch": cfg["eval_batch"], "images": d.get("images") or cfg["strong"]["images"],
            **{k: d[k] for k in ("resize_fraction", "eot", "steps", "restarts")}}


def compute_randomised(name: str, path: Path, relative: str, cfg: dict, device: torch.device,
                       data: Callable[[], dict]) -> dict:
    """The authors' ``name`` with input randomisation in front
    (:func:`~robustode.chapters.robustness.run.evaluate_randomised`: clean, Table I's noise, the faithful attacks
    with one draw per gradient, strong PGD with EOT; per-image flags kept) and, for a comparison at an equal attack,
    the same strong PGD on the model without it (:func:`~robustode.chapters.robustness.run.same_attack_without_defence`)."""
    tic = time.perf_counter()
    model, read = load_model(name, path)
    model.to(device).eval()
    read = {"file": relative, **read, "load_seconds": time.perf_counter() - tic}
    tic = time.perf_counter()
    randomised = evaluate_randomised(model, data(), cfg, 0)
    seconds = time.perf_counter() - tic
    tic = time.perf_counter()
    plain = same_attack_without_defence(model, data(), cfg, 0)
    return {"checkpoint": read, "parameters": count_parameters(model), "randomised": randomised,
            "without_defence": {"strong": plain},
            "seconds": {"randomised": seconds, "without defence": time.perf_counter() - tic}}


def randomised_evaluations(store: Store) -> dict[str, dict]:
    """Per model, the results file of its input-randomisation evaluation in ``store`` (``{}`` for a profile
    without an ``authors`` section)."""
    if "authors" not in load_profile(store.profile):
        return {}
    runs = {r["run"]: r for r in store.runs(RANDOMISED)}
    return {name: runs[name] for name in config(store.profile)["models"] if name in runs}


def units(profile: str | dict, device: torch.device | None = None) -> list[Unit]:
    """One run-plan unit per model of the profile's ``authors`` section (experiment ``authors-MNIST``, run
    ``CNN`` / ``ODENet`` / ``TisODE``); blocked with :data:`NOT_GIVEN` when the checkpoints are not given.
    :func:`robustode.plan.units` ranks them after chapters 2-3's own units."""
    settings = config(profile)
    cfg = settings["evaluation"]
    stages = evaluation_stages(EXPERIMENT, cfg)
    out = []
    for index, name in enumerate(settings["models"]):
        relative, path = settings["checkpoints"][name], checkpoint_path(settings, name)
        params = unit_params(settings, name)

        def status(store: Store, name: str = name, params: dict = params) -> Progress:
            if store.run(EXPERIMENT, name, params) is not None:
                return Progress(DONE, "results file written")
            partial = store.load_partial(EXPERIMENT, name, params)
            left, detail = stages_left(partial, stages)
            if partial:
                return Progress(PARTIAL, detail, 0, left)
            return Progress(PENDING, "", 0, list(stages))

        def run(ctx: Context, name: str = name, path: Path | None = path, relative: str = relative,
                params: dict = params) -> dict:
            if why := requires(path):
                raise FileNotFoundError(why)
            return compute(name, path, relative, cfg, params, ctx.store, ctx.device, lambda: mnist_test_set(ctx),
                           ctx.progress, ctx.deadline, ctx.stage_estimate, ctx.first_stages)

        out.append(Unit(id=f"authors/MNIST/{name}", experiment=EXPERIMENT, run=name, params=params, seed=None, epochs=0,
                        stages=stages, kind=f"authors/MNIST/{name}", compute=run, status=status,
                        probe=lambda name=name: probe(name, cfg, stages),
                        requires=lambda path=path: requires(path), priority=index))
    return out + randomised_units(profile, len(out))


def randomised_units(profile: str | dict, first_priority: int = 0) -> list[Unit]:
    """One unit per model of the ``authors`` section: its checkpoint behind input randomisation (experiment
    :data:`RANDOMISED`, run ``CNN`` / ``ODENet`` / ``TisODE``; minutes each, one stage, not resumable within)."""
    settings = randomised_config(profile)
    cfg = settings["evaluation"]
    out = []
    for index, name in enumerate(settings["models"]):
        relative, path = settings["checkpoints"][name], checkpoint_path(settings, name)
        params = randomised_params(settings, name)

        def status(store: Store, name: str = name, params: dict = params) -> Progress:
            if store.run(RANDOMISED, name, params) is not None:
                return Progress(DONE, "results file written")
            return Progress(PENDING, "", 0, ["randomised"])

        def run(ctx: Context, name: str = name, path: Path | None = path, relative: str = relative) -> dict:
            if why := requires(path):
                raise FileNotFoundError(why)
            ctx.deadline.check(ctx.stage_estimate("randomised"), f"authors' {name} with input randomisation")
            return compute_randomised(name, path, relative, cfg, ctx.device, lambda: mnist_test_set(ctx))

        def spent(store: Store, name: str = name, params: dict = params) -> float | None:
            return stored_seconds(store, RANDOMISED, name, params)

        out.append(Unit(id=f"authors-randomised/MNIST/{name}", experiment=RANDOMISED, run=name, params=params,
                        seed=None, epochs=0, stages=["randomised"], kind=f"authors-randomised/MNIST/{name}",
                        compute=run, status=status, probe=lambda name=name: probe(name, cfg, ["randomised"]),
                        requires=lambda path=path: requires(path), priority=first_priority + index, spent=spent))
    return out


def field_profiles(store: Store) -> dict[str, dict]:
    """The mean |f(z(t))| profiles that the evaluation of the authors' ODE checkpoints stored (their sanity stage),
    keyed "<model>, the authors' checkpoint"; ``{}`` where ``store`` holds none."""
    return {f"{name}, the authors' checkpoint": {**run["metrics"]["field_profile"], "source": "stored by the sanity stage"}
            for name, run in evaluations(store).items() if "field_profile" in run["metrics"]}
