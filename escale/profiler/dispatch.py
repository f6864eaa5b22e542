"""MAC and op counting at the dispatch level (``TorchDispatchMode``) on the meta device.

Convention: one fused multiply-add is one MAC (the paper's and EfficientNet/EfficientDet's "FLOPs").
Convolution and matmul MACs come from torch's own formulas (``torch.utils.flop_counter.flop_registry``,
which counts 2 FLOPs per multiply-add; we halve them). Cheaper work is counted separately, in
*operations*, never mixed into MACs:

- ``elementwise``: one op per output element (add, mul, activations, batch-norm, ...);
- ``resize``: per output element, the taps read (nearest 1, bilinear 4);
- ``pooling``: per output element, the window size (3x3 -> 9);
- ``reduction``: one op per input element (mean, sum, softmax).
Ops that move data without arithmetic (views, copies, cat) are listed as such; anything else is
listed under ``not_counted`` with its call count instead of being silently counted as zero.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

aten = torch.ops.aten

ELEMENTWISE = {
    "add", "sub", "mul", "div", "neg", "relu", "relu_", "silu", "silu_", "sigmoid", "sigmoid_", "gelu",
    "hardswish", "hardsigmoid", "tanh", "clamp", "clamp_min", "exp", "rsqrt", "sqrt", "pow", "where",
    "_native_batch_norm_legit_no_training", "native_batch_norm", "_native_batch_norm_legit",
    "threshold", "leaky_relu", "add_", "mul_", "div_", "hardtanh", "hardtanh_", "maximum", "minimum",
    "native_layer_norm", "fill_",
}
REDUCTION = {"mean", "sum", "_softmax", "softmax", "amax", "max", "_log_softmax", "var_mean", "var"}
RESIZE_TAPS = {"upsample_nearest2d": 1, "upsample_bilinear2d": 4, "_upsample_bilinear2d_aa": 4,
               "upsample_bicubic2d": 16, "_upsample_nearest_exact2d": 1}
POOLING = {"avg_pool2d", "max_pool2d_with_indices", "max_pool2d", "_adaptive_avg_pool2d", "adaptive_max_pool2d"}
NO_ARITHMETIC = {
    "view", "_unsafe_view", "reshape", "permute", "expand", "t", "transpose", "select", "slice", "unsqueeze",
    "squeeze", "flatten", "cat", "stack", "clone", "copy_", "_to_copy", "detach", "alias", "empty",
    "empty_like", "zeros", "zeros_like", "ones", "ones_like", "new_empty", "new_zeros", "split", "unbind",
    "contiguous", "lift_fresh", "as_strided", "_reshape_alias", "split_with_sizes", "full", "arange",
    "fill", "scalar_tensor", "empty_strided", "new_empty_strided", "_unsafe_index", "index", "zero_",
}
CATEGORIES = ("conv_macs", "matmul_macs", "elementwise_ops", "resize_ops", "pooling_ops", "reduction_ops")


def _numel(t: object) -> int:
    return t.numel() if isinstance(t, torch.Tensor) else 0


def _first_tensor(args: tuple) -> torch.Tensor | None:
    for a in args:
        if isinstance(a, torch.Tensor):
            return a
        if isinstance(a, (list, tuple)):
            t = _first_tensor(tuple(a))
            if t is not None:
                return t
    return None


@dataclass
class OpCounts:
    """Raw result of one counting pass: amounts keyed by (module, level, operator, category)."""

    rows: dict[tuple[str, str, str, str], int] = field(default_factory=lambda: defaultdict(int))
    no_arithmetic: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    not_counted: dict[str, int] = field(default_factory=lambda: defaultdict(int))


_SHORTCUT_ELEMENTWISE = {"add", "sub", "mul", "div", "relu", "silu", "sigmoid", "hardswish", "gelu", "tanh",
                         "relu_", "silu_", "sigmoid_", "add_", "mul_", "div_", "hardswish_"}


def _meta_shortcut(func, args: tuple) -> object | None:
    """Output of a shape-preserving op on meta tensors without torch's (slow, Python) meta kernels.

    Only for eval batch-norm and plain elementwise ops whose output shape is the broadcast of the
    inputs; returns None to fall back to the real kernel.
    """
    x = args[0] if args else None
    if not isinstance(x, torch.Tensor) or not x.is_meta:
        return None
    if func in (aten._native_batch_norm_legit_no_training.default, aten.native_batch_norm.default):
        return torch.empty_like(x), x.new_empty((0,)), x.new_empty((0,))
    if func is aten.convolution.default and not args[6] and x.dim() == 4:
        w, stride, pad, dil = args[1], args[3], args[4], args[5]
        hw = [(x.shape[2 + i] + 2 * pad[i] - dil[i] * (w.shape[2 + i] - 1) - 1) // stride[i] + 1 for i in range(2)]
        return torch.empty((x.shape[0], w.shape[0], *hw), dtype=x.dtype, device="meta")
    name = func._overloadpacket.__name__
    if name in ("upsample_bilinear2d", "upsample_nearest2d") and isinstance(args[1], (list, tuple)) and args[1]:
        return torch.empty((*x.shape[:2], *args[1]), dtype=x.dtype, device="meta")  # resize to a given size
    if name not in _SHORTCUT_ELEMENTWISE:
        return None
    if name.endswith("_"):
        return x  # in-place: the output is the input
    shapes = [a.shape for a in args if isinstance(a, torch.Tensor)]
    if any(not isinstance(a, (torch.Tensor, int, float)) for a in args):
        return None
    return torch.empty(torch.broadcast_shapes(*shapes), dtype=x.dtype, device="meta")


class _CountingMode(TorchDispatchMode):
    def __init__(self, counts: OpCounts, module_of: Callable[[], str], level_of: Callable[[torch.Tensor], str]):
        super().__init__()
        self.counts, self.module_of, self.level_of = counts, module_of, level_of

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = _meta_shortcut(func, args) if not kwargs else None
        if out is None:
            out = func(*args, **kwargs)
        packet = func._overloadpacket
        name = packet.__name__
        first_out = out[0] if isinstance(out, (tuple, list)) else out
        if packet in flop_registry and name != "convolution_backward":
            category = "matmul_macs" if "mm" in name else "conv_macs"
            amount = flop_registry[packet](*args, **kwargs, out_val=out) // 2
            level_src = first_out
        elif name in ELEMENTWISE:
            category, amount, level_src = "elementwise_ops", _numel(first_out), first_out
        elif name in RESIZE_TAPS:
            category, amount, level_src = "resize_ops", _numel(first_out) * RESIZE_TAPS[name], first_out
        elif name in POOLING:
            k = args[1] if len(args) > 1 and name in ("avg_pool2d", "max_pool2d_with_indices", "max_pool2d") else None
            window = math.prod(k) if isinstance(k, (list, tuple)) else (k * k if isinstance(k, int) else 1)
            if name.startswith(("_adaptive", "adaptive")):
                window = max(1, _numel(args[0]) // max(1, _numel(first_out)))
            category, amount, level_src = "pooling_ops", _numel(first_out) * window, first_out
        elif name in REDUCTION:
            src = _first_tensor(args)
            category, amount, level_src = "reduction_ops", _numel(src), src
        elif name in NO_ARITHMETIC:
            self.counts.no_arithmetic[name] += 1
            return out
        else:
            self.counts.not_counted[name] += 1
            return out
        level = self.level_of(level_src) if isinstance(level_src, torch.Tensor) else "-"
        self.counts.rows[(self.module_of(), level, name, category)] += int(amount)
        return out


def level_namer(input_hw: tuple[int, int], max_level: int = 9) -> Callable[[torch.Tensor], str]:
    """Map a 4-D tensor to its pyramid level by spatial size: P0 is the input, P_l is ceil(H/2^l).

    Sizes beyond ``max_level`` (e.g. the 1x1 maps of squeeze-excite) are named ``global``.
    """
    sizes = {}
    h, w = input_hw
    for lv in range(max_level + 1):
        sizes.setdefault((h, w), f"P{lv}")
        h, w = -(-h // 2), -(-w // 2)

    def level_of(t: torch.Tensor) -> str:
        if t.dim() != 4:
            return "-"
        return sizes.get((t.shape[-2], t.shape[-1]), "global")

    return level_of


def count_ops(model: torch.nn.Module, x: torch.Tensor, max_level: int = 9) -> OpCounts:
    """Run ``model(x)`` once under the counting mode; attribute each op to its innermost module."""
    from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

    counts = OpCounts()
    names = {id(m): n for n, m in model.named_modules() if n}
    stack: list[str] = [""]

    def push(mod: torch.nn.Module, args: object) -> None:
        stack.append(names.get(id(mod), stack[-1]))

    def pop(mod: torch.nn.Module, args: object, out: object) -> None:
        stack.pop()

    # Global hooks: one registration instead of two per module (ESeg-L has ~1000 modules).
    handles = [register_module_forward_pre_hook(push), register_module_forward_hook(pop)]
    try:
        with torch.no_grad(), _CountingMode(counts, lambda: stack[-1], level_namer(tuple(x.shape[-2:]), max_level)):
            model(x)
    finally:
        for h in handles:
            h.remove()
    return counts
