"""Checked meta-device shortcuts: output tensors of common ops without torch's Python meta kernels.

On the meta device torch computes output shapes with Python reference kernels (``torch._refs``) that
cost 0.2-11 ms per call (batch-norm ~1.2 ms, a bilinear resize ~11 ms). The shortcuts below return
the same output (shape, dtype, a fresh contiguous storage) in a few microseconds, and first check
what the real CPU kernel checks, raising ``RuntimeError`` as torch does: convolution input channels
against weight x groups, dimensions, stride/padding/dilation, bias size and dtypes; batch-norm
channel counts of weight, bias and running statistics; broadcasting and dtype promotion of
elementwise ops; resize sizes; pooling windows, strides and padding; reduced dimensions. Tests
compare every shortcut with the CPU kernel (tests/test_trace.py) and whole models on both devices
(tests/test_trace_property.py). A shortcut returns ``None`` whenever it does not cover a call
(non-meta or non-contiguous tensors, integer dtypes, transposed convolutions, training-mode
batch-norm, keyword arguments): torch's own kernel then runs. Each shortcut has the signature
``shortcut(args, kwargs) -> output | None``; :mod:`escale.profiler.ops` names the ops they serve.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

_META = torch.device("meta")
Shortcut = Callable[[tuple, dict], Any]


def positional(fn: Callable[[tuple], Any]) -> Shortcut:
    """A shortcut for calls without keyword arguments (any keyword: torch's kernel runs)."""

    @functools.wraps(fn)
    def shortcut(args: tuple, kwargs: dict) -> Any:
        return None if kwargs else fn(args)

    return shortcut


def _empty(shape: Any, dtype: torch.dtype) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device=_META)


def _plain(t: object) -> bool:
    """A contiguous floating-point meta tensor: the domain every shortcut covers."""
    return isinstance(t, torch.Tensor) and t.is_meta and t.is_floating_point() and t.is_contiguous()


def broadcast_shape(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """NumPy-style broadcast of two shapes; raises ``RuntimeError`` worded as torch's."""
    if a == b:
        return tuple(a)
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + tuple(a), (1,) * (n - len(b)) + tuple(b)
    out = []
    for i, (p, q) in enumerate(zip(a, b, strict=True)):
        if p != q and p != 1 and q != 1:
            raise RuntimeError(f"The size of tensor a ({p}) must match the size of tensor b ({q}) "
                               f"at non-singleton dimension {i}")
        out.append(q if p == 1 else p)
    return tuple(out)


@positional
def unary(args: tuple) -> torch.Tensor | None:
    """Out-of-place activation (relu, silu, sigmoid, ...) of a floating tensor: same shape and dtype."""
    x = args[0]
    return _empty(x.shape, x.dtype) if len(args) == 1 and _plain(x) else None


@positional
def unary_(args: tuple) -> torch.Tensor | None:
    """In-place activation: the output is the input."""
    x = args[0]
    return x if len(args) == 1 and _plain(x) else None


def _binary_operands(args: tuple) -> tuple[torch.Tensor, Any] | None:
    if len(args) != 2 or not _plain(args[0]):
        return None
    other = args[1]
    if isinstance(other, torch.Tensor):
        return (args[0], other) if _plain(other) else None
    return (args[0], other) if isinstance(other, (int, float)) and not isinstance(other, bool) else None


@positional
def binary(args: tuple) -> torch.Tensor | None:
    """``a op b`` (add, sub, mul, div): broadcast shape, promoted dtype (``torch.result_type``)."""
    ops = _binary_operands(args)
    if ops is None:
        return None
    a, b = ops
    dtype = torch.result_type(a, b)
    shape = broadcast_shape(a.shape, b.shape) if isinstance(b, torch.Tensor) else a.shape
    return _empty(shape, dtype)


@positional
def binary_(args: tuple) -> torch.Tensor | None:
    """In-place ``a op= b``: ``b`` must broadcast to ``a``'s shape and the result cast to ``a``'s dtype."""
    ops = _binary_operands(args)
    if ops is None:
        return None
    a, b = ops
    if isinstance(b, torch.Tensor) and broadcast_shape(a.shape, b.shape) != tuple(a.shape):
        raise RuntimeError(f"output with shape {list(a.shape)} doesn't match the broadcast shape "
                           f"{list(broadcast_shape(a.shape, b.shape))}")
    dtype = torch.result_type(a, b)
    if not torch.can_cast(dtype, a.dtype):
        raise RuntimeError(f"result type {dtype} can't be cast to the desired output type {a.dtype}")
    return a


def _expand(name: str, value: Any, n: int) -> list[int]:
    value = list(value)
    if len(value) == 1:
        return value * n
    if len(value) != n:
        raise RuntimeError(f"expected {name} to be a single integer value or a list of {n} values to "
                           f"match the convolution dimensions, but got {name}={value}")
    return value


@positional
def convolution(args: tuple) -> torch.Tensor | None:
    """``aten.convolution`` (1-3 spatial dims, not transposed), with ATen's shape checks."""
    if len(args) != 9 or args[6] or not (_plain(args[0]) and _plain(args[1])):
        return None
    x, w, bias, stride, padding, dilation, _transposed, _out_pad, groups = args
    if bias is not None and not _plain(bias):
        return None
    k = w.dim()
    if k not in (3, 4, 5):
        return None
    if x.dim() != k:
        raise RuntimeError(f"Expected {k}-dimensional input for {k}-dimensional weight {list(w.shape)}, "
                           f"but got {x.dim()}-dimensional input of size {list(x.shape)} instead")
    stride, padding = _expand("stride", stride, k - 2), _expand("padding", padding, k - 2)
    dilation = _expand("dilation", dilation, k - 2)
    if groups <= 0:
        raise RuntimeError("non-positive groups is not supported")
    if min(stride) <= 0:
        raise RuntimeError("non-positive stride is not supported")
    if min(padding) < 0:
        raise RuntimeError("negative padding is not supported")
    if min(dilation) <= 0:
        raise RuntimeError("dilation should be greater than zero")
    cout, cin_group = w.shape[0], w.shape[1]
    if cout % groups:
        raise RuntimeError(f"Given groups={groups}, expected weight to be divisible by {groups} at dimension 0, "
                           f"but got weight of size {list(w.shape)} instead")
    if x.shape[1] != cin_group * groups:
        raise RuntimeError(f"Given groups={groups}, weight of size {list(w.shape)}, expected input{list(x.shape)} "
                           f"to have {cin_group * groups} channels, but got {x.shape[1]} channels instead")
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != cout):
        raise RuntimeError(f"Given weight of size {list(w.shape)}, expected bias to be 1-dimensional with "
                           f"{cout} elements, but got bias of size {list(bias.shape)} instead")
    if w.dtype != x.dtype or (bias is not None and bias.dtype != x.dtype):
        raise RuntimeError(f"Input type ({x.dtype}) and weight type ({w.dtype}) should be the same")
    padded = [x.shape[2 + i] + 2 * padding[i] for i in range(k - 2)]
    kernel = [dilation[i] * (w.shape[2 + i] - 1) + 1 for i in range(k - 2)]
    if any(p < q for p, q in zip(padded, kernel, strict=True)):
        raise RuntimeError(f"Calculated padded input size per channel: ({' x '.join(map(str, padded))}). "
                           f"Kernel size: ({' x '.join(map(str, kernel))}). "
                           "Kernel size can't be greater than actual input size")
    out = [(p - q) // s + 1 for p, q, s in zip(padded, kernel, stride, strict=True)]
    return _empty((x.shape[0], cout, *out), x.dtype)


def _check_bn(x: torch.Tensor, stats: tuple) -> bool:
    """Weight, bias, running mean and variance must each hold one value per channel of ``x``."""
    if x.dim() < 2 or not all(t is None or _plain(t) for t in stats):
        return False
    channels = x.shape[1]
    for name, t in zip(("weight", "bias", "running_mean", "running_var"), stats, strict=True):
        if t is not None and t.numel() != channels:
            raise RuntimeError(f"{name} should contain {channels} elements not {t.numel()}")
    return True


@positional
def batch_norm(args: tuple) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Inference batch-norm: ``native_batch_norm(..., training=False, ...)`` or its ``_no_training`` form.

    Returns (output, empty save_mean, empty save_invstd), as the CPU kernel does in eval mode.
    """
    if len(args) == 8:  # native_batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps)
        if args[5]:
            return None
    elif len(args) != 7 or args[3] is None or args[4] is None:  # _native_batch_norm_legit_no_training
        return None
    x = args[0]
    if not _plain(x) or not _check_bn(x, args[1:5]):
        return None
    return _empty(x.shape, x.dtype), _empty((0,), x.dtype), _empty((0,), x.dtype)


@positional
def reduce(args: tuple) -> torch.Tensor | None:
    """``sum``/``mean`` over all elements (``(x,)``) or over ``dims`` (``(x, dims[, keepdim])``)."""
    x = args[0]
    if not _plain(x):
        return None
    if len(args) == 1:
        return _empty((), x.dtype)
    if len(args) > 3 or not isinstance(args[1], (list, tuple)) or not args[1] or \
            not all(type(d) is int for d in args[1]):
        return None  # named dims, or an empty list (= all dims)
    n = max(x.dim(), 1)
    dims = []
    for d in args[1]:
        if not -n <= d < n:
            raise IndexError(f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], but got {d})")
        if d % n in dims:
            raise RuntimeError(f"dim {d % n} appears multiple times in the list of dims")
        dims.append(d % n)
    keep = len(args) == 3 and args[2]
    return _empty([1 if i in dims else s for i, s in enumerate(x.shape) if keep or i not in dims], x.dtype)


def _pool_size(size: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    """ATen's ``pooling_output_shape``: floor (or ceil, never starting in the padding) of the window count."""
    out = (size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil else 0)) // s + 1
    return out - 1 if ceil and (out - 1) * s >= size + p else out


def _pairs(kernel: Any, stride: Any, padding: Any, dilation: Any) -> list[tuple[int, int]] | None:
    """(kernel, stride, padding, dilation) as (h, w) pairs; an empty stride means the kernel size."""
    values = [kernel, stride or kernel, padding, dilation]
    for i, v in enumerate(values):
        v = [v] if type(v) is int else v
        if not isinstance(v, (list, tuple)) or len(v) not in (1, 2) or not all(type(e) is int for e in v):
            return None
        values[i] = (v[0], v[-1])
    return values


def _pool2d(x: torch.Tensor, kernel: Any, stride: Any, padding: Any, dilation: Any, ceil: bool) -> torch.Tensor | None:
    """Output of a 2-D max/average pooling, with ATen's ``pool2d_shape_check``."""
    pairs = _pairs(kernel, stride, padding, dilation)
    if pairs is None or not _plain(x) or x.dim() not in (3, 4) or x.numel() == 0:
        return None
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = pairs
    if min(kh, kw) <= 0 or min(sh, sw) <= 0 or min(dh, dw) <= 0:
        raise RuntimeError(f"kernel size, stride and dilation should be greater than zero, but got kernel "
                           f"{kh}x{kw}, stride {sh}x{sw}, dilation {dh}x{dw}")
    if min(ph, pw) < 0 or ph > kh // 2 or pw > kw // 2:
        raise RuntimeError(f"pad should be smaller than or equal to half of kernel size, but got padW = {pw}, "
                           f"padH = {ph}, kW = {kw}, kH = {kh}")
    h, w = x.shape[-2:]
    oh, ow = _pool_size(h, kh, sh, ph, dh, ceil), _pool_size(w, kw, sw, pw, dw, ceil)
    if oh < 1 or ow < 1:
        raise RuntimeError(f"Given input size: ({'x'.join(map(str, x.shape[-3:]))}). Calculated output size: "
                           f"({x.shape[-3]}x{oh}x{ow}). Output size is too small")
    return _empty((*x.shape[:-2], oh, ow), x.dtype)


@positional
def max_pool2d_with_indices(args: tuple) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``max_pool2d_with_indices(input, kernel, stride=[], padding=0, dilation=1, ceil_mode=False)``."""
    if not 2 <= len(args) <= 6:
        return None
    x, kernel, stride, padding, dilation, ceil = args + (None, None, [], 0, 1, False)[len(args):]
    out = _pool2d(x, kernel, stride, padding, dilation, ceil)
    return None if out is None else (out, _empty(out.shape, torch.int64))


@positional
def avg_pool2d(args: tuple) -> torch.Tensor | None:
    """``avg_pool2d(input, kernel, stride=[], padding=0, ceil_mode=False, count_include_pad=True, divisor=None)``."""
    if not 2 <= len(args) <= 7 or (len(args) == 7 and args[6] is not None):
        return None  # a divisor override: torch's kernel checks it
    x, kernel, stride, padding, ceil = (args + (None, None, [], 0, False, True, None)[len(args):])[:5]
    return _pool2d(x, kernel, stride, padding, 1, ceil)


def empty(args: tuple, kwargs: dict) -> torch.Tensor | None:
    """``empty.memory_format(size, dtype=, layout=, device=meta, ...)``: a plain meta allocation."""
    if len(args) != 1 or kwargs.get("device") != _META or kwargs.get("layout") not in (None, torch.strided) \
            or kwargs.get("pin_memory") or kwargs.get("memory_format") not in (None, torch.contiguous_format) \
            or set(kwargs) - {"dtype", "layout", "device", "pin_memory", "memory_format"}:
        return None
    return torch.empty(args[0], dtype=kwargs.get("dtype"), device=_META)


@positional
def upsample2d(args: tuple) -> torch.Tensor | None:
    """``upsample_{nearest,bilinear}2d(input, output_size, ...)`` to an explicit size."""
    x, size = args[0], (args[1] if len(args) > 1 else None)
    if not _plain(x) or not isinstance(size, (list, tuple)) or len(size) != 2 or x.numel() == 0:
        return None
    if x.dim() != 4:
        raise RuntimeError(f"Non-empty 4D data tensor expected but got a tensor with sizes {list(x.shape)}")
    (h, w), (oh, ow) = x.shape[2:], size
    if min(h, w, oh, ow) <= 0:
        raise RuntimeError(f"Input and output sizes should be greater than 0, but got input (H: {h}, W: {w}) "
                           f"output (H: {oh}, W: {ow})")
    return _empty((*x.shape[:2], oh, ow), x.dtype)
