"""The one table of aten operators: what each costs, what kernel it belongs to, its meta shortcut.

Every consumer of the dispatch trace (:mod:`escale.profiler.trace`) reads an op's row here, so teaching
escale a new operator is one line in ``OPS``. Units of cost (one forward pass):

- ``conv_macs`` / ``matmul_macs``: multiply-adds, from torch's formulas
  (``torch.utils.flop_counter.flop_registry`` counts 2 FLOPs per multiply-add; we halve them);
- ``elementwise_ops``: one op per output element (add, mul, activations, batch-norm, ...);
- ``resize_ops``: per output element, the ``taps`` read (nearest 1, bilinear 4, bicubic 16);
- ``pooling_ops``: per output element, the window size (3x3 -> 9; adaptive: input / output elements);
- ``reduction_ops``: one op per input element (mean, sum, softmax);
- ``no_arithmetic``: views, copies and factories (listed by name, not counted);
anything absent from ``OPS`` is reported as *not counted*, never silently as zero.

``kernel`` is the op's role when kernels are enumerated (:mod:`escale.search.kernels`): ``conv``,
``bn``, ``act``, ``pool``, ``resize``, ``add``, ``mul``, ``mean``, or ``view`` (free: passes its input's
producer on); ``kind`` refines it (the activation, pooling or resize mode). ``meta`` is a checked
shortcut from :mod:`escale.profiler.meta` used on meta tensors instead of torch's slow meta kernels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import flop_registry

from escale.profiler import meta
from escale.profiler.meta import Shortcut

CONV, MATMUL = "conv_macs", "matmul_macs"
ELEMENTWISE, RESIZE, POOLING, REDUCTION = "elementwise_ops", "resize_ops", "pooling_ops", "reduction_ops"
NO_ARITHMETIC, NOT_COUNTED = "no_arithmetic", "not_counted"
CATEGORIES = (CONV, MATMUL, ELEMENTWISE, RESIZE, POOLING, REDUCTION)


@dataclass(frozen=True)
class Op:
    """How escale sees one aten operator (all overloads of one name)."""

    cost: str                     # a CATEGORIES entry, NO_ARITHMETIC or NOT_COUNTED
    kernel: str = ""              # role in kernel enumeration ("" = unknown kernel)
    kind: str = ""                # activation / pooling / resize mode
    taps: int = 1                 # resize: inputs read per output element
    meta: Shortcut | None = None  # checked meta-device shortcut: (args, kwargs) -> output or None


def _act(kind: str, shortcut: Shortcut = meta.unary) -> Op:
    return Op(ELEMENTWISE, "act", kind, meta=shortcut)


_VIEW = Op(NO_ARITHMETIC, "view")
_DATA = Op(NO_ARITHMETIC)
_BN = Op(ELEMENTWISE, "bn", meta=meta.batch_norm)
_EW = Op(ELEMENTWISE)

OPS: dict[str, Op] = {
    # multiply-adds (torch's flop formulas)
    "convolution": Op(CONV, "conv", meta=meta.convolution), "_convolution": Op(CONV, "conv"),
    "cudnn_convolution": Op(CONV), "_slow_conv2d_forward": Op(CONV), "convolution_overrideable": Op(CONV),
    "mm": Op(MATMUL), "addmm": Op(MATMUL), "bmm": Op(MATMUL), "baddbmm": Op(MATMUL), "_scaled_mm": Op(MATMUL),
    "_scaled_dot_product_efficient_attention": Op(MATMUL), "_scaled_dot_product_flash_attention": Op(MATMUL),
    "_scaled_dot_product_cudnn_attention": Op(MATMUL), "_flash_attention_forward": Op(MATMUL),
    "_efficient_attention_forward": Op(MATMUL),
    # activations: elementwise, fused into a preceding conv kernel
    "relu": _act("relu"), "relu_": _act("relu", meta.unary_), "silu": _act("silu"),
    "silu_": _act("silu", meta.unary_), "sigmoid": _act("sigmoid"), "sigmoid_": _act("sigmoid", meta.unary_),
    "hardswish": _act("hardswish"), "hardswish_": _act("hardswish", meta.unary_),
    "gelu": Op(ELEMENTWISE, meta=meta.unary), "tanh": Op(ELEMENTWISE, meta=meta.unary),
    "hardsigmoid": Op(ELEMENTWISE, meta=meta.unary), "hardtanh": _EW, "hardtanh_": _EW, "threshold": _EW,
    "leaky_relu": _EW, "clamp": _EW, "clamp_min": _EW,
    # batch-norm (folds into the preceding conv kernel) and other normalisations
    "native_batch_norm": _BN, "_native_batch_norm_legit_no_training": _BN,
    "_native_batch_norm_legit": Op(ELEMENTWISE, "bn"), "batch_norm": Op(ELEMENTWISE, "bn"),
    "native_layer_norm": _EW, "native_group_norm": _EW,
    # arithmetic
    "add": Op(ELEMENTWISE, "add", meta=meta.binary), "add_": Op(ELEMENTWISE, "add", meta=meta.binary_),
    "mul": Op(ELEMENTWISE, "mul", meta=meta.binary), "mul_": Op(ELEMENTWISE, "mul", meta=meta.binary_),
    "sub": Op(ELEMENTWISE, meta=meta.binary), "div": Op(ELEMENTWISE, meta=meta.binary),
    "div_": Op(ELEMENTWISE, meta=meta.binary_), "neg": _EW, "exp": _EW, "rsqrt": _EW, "sqrt": _EW, "pow": _EW,
    "where": _EW, "maximum": _EW, "minimum": _EW, "fill_": _EW,
    # resampling and pooling
    "upsample_nearest2d": Op(RESIZE, "resize", "nearest", taps=1, meta=meta.upsample2d),
    "upsample_bilinear2d": Op(RESIZE, "resize", "bilinear", taps=4, meta=meta.upsample2d),
    "_upsample_nearest_exact2d": Op(RESIZE, taps=1), "_upsample_bilinear2d_aa": Op(RESIZE, taps=4),
    "upsample_bicubic2d": Op(RESIZE, taps=16),
    "max_pool2d": Op(POOLING, "pool", "max"),
    "max_pool2d_with_indices": Op(POOLING, "pool", "max", meta=meta.max_pool2d_with_indices),
    "avg_pool2d": Op(POOLING, "pool", "avg", meta=meta.avg_pool2d), "_adaptive_avg_pool2d": Op(POOLING),
    "adaptive_max_pool2d": Op(POOLING),
    # reductions
    "mean": Op(REDUCTION, "mean", meta=meta.reduce), "sum": Op(REDUCTION, meta=meta.reduce),
    **dict.fromkeys(("_softmax", "softmax", "_log_softmax", "amax", "max", "var_mean", "var"), Op(REDUCTION)),
    # no arithmetic: views (free kernels) ...
    **dict.fromkeys(("view", "_unsafe_view", "reshape", "detach", "clone", "alias", "_to_copy", "contiguous",
                     "expand", "squeeze", "unsqueeze", "permute", "t", "lift_fresh", "as_strided", "slice",
                     "select", "flatten"), _VIEW),
    # ... and data movement or factories
    "empty": Op(NO_ARITHMETIC, meta=meta.empty),
    **dict.fromkeys(("transpose", "cat", "stack", "copy_", "empty_like", "zeros", "zeros_like", "ones",
                     "ones_like", "new_empty", "new_zeros", "split", "unbind", "_reshape_alias", "split_with_sizes",
                     "full", "arange", "fill", "scalar_tensor", "empty_strided", "new_empty_strided",
                     "_unsafe_index", "index", "zero_"), _DATA),
}
_UNKNOWN = Op(NOT_COUNTED)


def op_of(name: str) -> Op:
    """The row of an aten op (overload-packet name, e.g. ``"convolution"``); unknown ops are not counted."""
    return OPS.get(name, _UNKNOWN)


def _numel(t: object) -> int:
    return t.numel() if isinstance(t, torch.Tensor) else 0


def first_tensor(args: Any) -> torch.Tensor | None:
    """The first tensor in ``args``, looking one level into lists (``cat``'s operands)."""
    for a in args:
        if isinstance(a, torch.Tensor):
            return a
        if isinstance(a, (list, tuple)):
            t = first_tensor(a)
            if t is not None:
                return t
    return None


def _shape_of(a: Any) -> Any:
    """A tensor's shape (also inside a list of tensors); anything else as is, as torch's shape wrapper does."""
    if isinstance(a, torch.Tensor):
        return a.shape
    if isinstance(a, (list, tuple)) and a and isinstance(a[0], torch.Tensor):
        return [t.shape if isinstance(t, torch.Tensor) else t for t in a]
    return a


def macs(func: Any, args: tuple, kwargs: dict, out: Any) -> int:
    """Multiply-adds of a conv / matmul call: torch's FLOP formula, halved."""
    formula = flop_registry[func._overloadpacket]
    raw = getattr(formula, "__wrapped__", None)  # the shape formula, without its (slow) pytree wrapper
    if raw is None:  # a formula registered with get_raw=True takes the tensors
        return formula(*args, **kwargs, out_val=out) // 2
    kw = {k: _shape_of(v) for k, v in kwargs.items()} if kwargs else kwargs
    return raw(*map(_shape_of, args), **kw, out_shape=_shape_of(out)) // 2


def amount(op: Op, func: Any, args: tuple, kwargs: dict, out: torch.Tensor) -> int:
    """The cost of one call in the unit of ``op.cost`` (see the module docstring); ``out`` is the first output."""
    cost = op.cost
    if cost in (CONV, MATMUL):
        return macs(func, args, kwargs, out)
    if cost == ELEMENTWISE:
        return _numel(out)
    if cost == RESIZE:
        return _numel(out) * op.taps
    if cost == POOLING:
        if func._overloadpacket.__name__.startswith(("_adaptive", "adaptive")):
            return _numel(out) * max(1, _numel(args[0]) // max(1, _numel(out)))
        k = args[1] if len(args) > 1 else None  # 2-D pooling: one size means a square window
        k = [k, k] if isinstance(k, int) else (list(k) * 2 if isinstance(k, (list, tuple)) and len(k) == 1 else k)
        window = math.prod(k) if isinstance(k, (list, tuple)) else 1
        return _numel(out) * window
    if cost == REDUCTION:
        return _numel(first_tensor(args))
    raise ValueError(f"op cost {cost!r} has no amount")
