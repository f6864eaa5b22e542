"""Kernel enumeration: the inference kernels of a model with their shapes, from one meta-device pass.

As nn-Meter does, a model is cut into *kernels*: the units a backend runs as one operation after
its usual fusions. One forward pass on the meta device (no memory, no arithmetic) is traced by the
dispatch trace (:mod:`escale.profiler.trace`), whose data-flow consumer records each op's producers;
ops are then grouped by their kernel role in the op table (:mod:`escale.profiler.ops`):

- ``conv``: convolution [+ batch-norm] [+ activation] (BN folds into the conv; ReLU/SiLU fuse);
- ``act``: an activation that does not follow a conv (BiFPN nodes apply it before their conv);
- ``pool``: max / average pooling; ``resize``: nearest / bilinear upsampling;
- ``wsum``: a weighted sum ``sum_i w_i * x_i`` with constant weights (BiFPN fusion, level fusion);
- ``add``: a residual add; ``mul``: a broadcast product (squeeze-excite gate); ``mean``: a
  global average (squeeze-excite squeeze); ``scale``: a product by a constant outside a sum.

Ops that only read parameters (BiFPN weight normalisation, the folded softmax) are constant-folded
by inference backends and are dropped; views and copies cost nothing here. Anything else is kept as
``unknown:<op>`` so a predictor can say what it cannot price instead of pricing it at zero.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch

from escale.profiler.ops import Op
from escale.profiler.trace import OpEvent, out_tensors, tensors, trace
from escale.spec import ESegSpec


@dataclass(frozen=True)
class Kernel:
    """One backend kernel: an op kind and its shape attributes (all ints/strs), hashable and sortable."""

    op: str
    attrs: tuple[tuple[str, Any], ...]

    @property
    def key(self) -> str:
        """Canonical text key, e.g. ``conv:act=relu,bias=1,cin=32,...``; the LUT is keyed by it."""
        return self.op + ":" + ",".join(f"{k}={v}" for k, v in self.attrs)

    @classmethod
    def make(cls, op: str, **attrs: Any) -> Kernel:
        return cls(op, tuple(sorted(attrs.items())))

    @classmethod
    def from_key(cls, key: str) -> Kernel:
        op, _, rest = key.partition(":")
        attrs = {}
        for item in filter(None, rest.split(",")):
            k, _, v = item.partition("=")
            attrs[k] = int(v) if v.lstrip("-").isdigit() else v
        return cls.make(op, **attrs)

    def get(self, name: str, default: Any = None) -> Any:
        return dict(self.attrs).get(name, default)


@dataclass
class _Event:
    name: str
    op: Op                      # the op's row in escale.profiler.ops.OPS (kernel role and kind)
    args: tuple
    inputs: list[int]           # producer event index of each live input tensor
    consts: int                 # number of non-live tensor inputs (parameters, folded constants)
    in_shapes: list[tuple[int, ...]]
    out_shape: tuple[int, ...]
    module: str                 # path of the innermost module


@dataclass
class _Unit:
    op: str
    attrs: dict[str, Any]
    members: list[int] = field(default_factory=list)


class _DataFlow:
    """Consumer: records every op whose inputs derive from the model input, with its producers."""

    def __init__(self, x: torch.Tensor) -> None:
        self.events: list[_Event] = []
        self.producer: dict[int, int] = {}  # id(tensor) -> event index (-1: the model input)
        self.keep: list[torch.Tensor] = []  # keep tensors alive so ids are never reused
        self._mark(x, -1)

    def __call__(self, ev: OpEvent) -> None:
        flat_in = list(tensors(ev.args)) + list(tensors(tuple(ev.kwargs.values())))
        live = [t for t in flat_in if id(t) in self.producer]
        if not live:
            return  # parameter-only work: constant-folded by inference backends
        outs = out_tensors(ev.out)
        if ev.op.kernel == "view":
            for t in outs:  # a view: same producer as its input
                self._mark(t, self.producer[id(live[0])])
            return
        idx = len(self.events)
        self.events.append(_Event(
            name=ev.name, op=ev.op, args=tuple(ev.args), inputs=[self.producer[id(t)] for t in live],
            consts=len(flat_in) - len(live), in_shapes=[tuple(t.shape) for t in flat_in],
            out_shape=tuple(outs[0].shape) if outs else (), module=ev.module))
        if outs:
            self._mark(outs[0], idx)  # max_pool2d_with_indices: the indices are not used downstream

    def _mark(self, t: torch.Tensor, idx: int) -> None:
        self.producer[id(t)] = idx
        self.keep.append(t)


def trace_events(model: torch.nn.Module, x: torch.Tensor) -> list[_Event]:
    """Run ``model(x)`` once (meta is fine) and return the live op events in execution order."""
    flow = _DataFlow(x)
    trace(model, x, [flow])
    return flow.events


@dataclass(frozen=True)
class KernelSite:
    """Where a kernel runs: its module path (of its first op) and its output shape (of its last op)."""

    kernel: Kernel
    module: str
    out_shape: tuple[int, ...]


def group_kernels(events: list[_Event]) -> list[Kernel]:
    """Group traced ops into backend kernels (see the module docstring), in execution order."""
    return [site.kernel for site in group_sites(events)]


def group_sites(events: list[_Event]) -> list[KernelSite]:
    """:func:`group_kernels` with each kernel's module path and output shape (for breakdowns)."""
    consumers = Counter(i for e in events for i in e.inputs)
    unit_of: dict[int, _Unit] = {}
    units: list[_Unit] = []

    def new(op: str, idx: int, **attrs: Any) -> None:
        unit = _Unit(op, attrs, [idx])
        units.append(unit)
        unit_of[idx] = unit

    def join(idx: int, unit: _Unit) -> None:
        unit.members.append(idx)
        unit_of[idx] = unit

    for i, e in enumerate(events):
        prev = unit_of.get(e.inputs[0]) if e.inputs and e.inputs[0] >= 0 else None
        single = bool(e.inputs) and consumers[e.inputs[0]] == 1
        role, kind = e.op.kernel, e.op.kind
        fuses = prev is not None and prev.op == "conv" and single and "act" not in prev.attrs
        if role == "conv":
            new("conv", i, **_conv_attrs(e))
        elif role == "bn" and fuses:
            prev.attrs["bias"] = 1
            join(i, prev)
        elif role == "act" and fuses:
            prev.attrs["act"] = kind
            join(i, prev)
        elif role == "act":
            new("act", i, act=kind, **_chw(e.out_shape))
        elif role == "pool":
            new("pool", i, **_pool_attrs(e))
        elif role == "resize":
            new("resize", i, mode=kind, **_chw(e.in_shapes[0]), ho=e.out_shape[2], wo=e.out_shape[3])
        elif role == "mul" and len(e.inputs) == 1:
            new("scale", i, **_chw(e.out_shape))
        elif role == "add" and len(e.inputs) == 2:
            _add(i, e, unit_of, consumers, new, join)
        elif role == "mul":
            new("mul", i, **_chw(e.out_shape), hb=min(s[2] for s in e.in_shapes), wb=min(s[3] for s in e.in_shapes))
        elif role == "mean":
            new("mean", i, **_chw(e.in_shapes[0]))
        else:
            new("unknown:" + e.name, i, shape="x".join(map(str, e.out_shape)))
    for u in units:
        if u.op == "conv":
            u.attrs.setdefault("act", "none")
            u.attrs.setdefault("bias", 0)
    return [KernelSite(Kernel.make(u.op, **u.attrs), events[u.members[0]].module, events[max(u.members)].out_shape)
            for u in units if u.op != "merged"]


def _add(i: int, e: _Event, unit_of: dict[int, _Unit], consumers: Counter, new: Any, join: Any) -> None:
    """``a + b``: merge weighted terms (``scale``/``wsum`` with one consumer) into one ``wsum``."""
    parts = [unit_of.get(p) for p in e.inputs]
    weighted = [u for u, p in zip(parts, e.inputs, strict=True)
                if u is not None and u.op in ("scale", "wsum") and consumers[p] == 1]
    if len(weighted) == 2 and weighted[0] is not weighted[1]:
        keep, drop = weighted
        keep.op = "wsum"
        keep.attrs["n"] = keep.attrs.get("n", 1) + drop.attrs.get("n", 1)
        for m in drop.members:
            join(m, keep)
        drop.op = "merged"
        join(i, keep)
    elif len(weighted) == 1:  # w*x + y with an unweighted y: a weighted sum with one unit weight
        keep = weighted[0]
        keep.op = "wsum"
        keep.attrs["n"] = keep.attrs.get("n", 1) + 1
        join(i, keep)
    else:
        new("add", i, **_chw(e.out_shape))


def _chw(shape: tuple[int, ...]) -> dict[str, int]:
    return {"c": shape[1], "h": shape[2], "w": shape[3]} if len(shape) == 4 else {"n": int(torch.Size(shape).numel())}


def _conv_attrs(e: _Event) -> dict[str, Any]:
    _, w, bias, stride, pad, dil, transposed, _, groups = e.args[:9]
    n, cin, h, wd = e.in_shapes[0]
    return {"cin": cin, "cout": w.shape[0], "k": w.shape[2], "s": stride[0], "p": pad[0], "d": dil[0],
            "g": groups, "h": h, "w": wd, **({"bias": 1} if bias is not None else {})}


def _pool_attrs(e: _Event) -> dict[str, Any]:
    args = list(e.args) + [None] * 8
    kind = e.op.kind
    k, s, p = args[1], args[2] or args[1], args[3] or [0]
    attrs = {"kind": kind, "k": k[0], "s": s[0], "p": p[0], **_chw(e.in_shapes[0])}
    if kind == "avg":
        attrs["cip"] = int(args[5] if args[5] is not None else True)  # count_include_pad
    return attrs


def model_kernels(spec: ESegSpec, input_size: tuple[int, int], batch: int = 1) -> list[Kernel]:
    """The kernels of ``spec`` folded for inference at ``input_size`` (H, W), batch 1, in run order."""
    return [site.kernel for site in model_kernel_sites(spec, input_size, batch)]


def model_kernel_sites(spec: ESegSpec, input_size: tuple[int, int], batch: int = 1) -> list[KernelSite]:
    """:func:`model_kernels` with where each kernel runs (module path, output shape)."""
    from escale.models import build_model

    input_size = spec.check_input_size(tuple(input_size))
    model = build_model(spec, device="meta").fold_for_inference()
    x = torch.empty(batch, 3, *input_size, device="meta")
    return group_sites(trace_events(model, x))


def kernel_counts(kernels: list[Kernel]) -> Counter:
    """How many times each distinct kernel runs."""
    return Counter(kernels)
