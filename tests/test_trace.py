"""The dispatch trace: op table, checked meta shortcuts (against the CPU kernels), attribution, consumers."""

from __future__ import annotations

import gc

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import flop_registry

from escale.models import build_model
from escale.profiler.dispatch import OpCounts, _Count, count_ops, level_namer
from escale.profiler.latency.memory import _LiveStorages, estimate_peak_memory
from escale.profiler.ops import CATEGORIES, CONV, MATMUL, OPS, op_of
from escale.profiler.trace import trace
from escale.search.kernels import _DataFlow, group_kernels, model_kernels

aten = torch.ops.aten


def _t(*shape: int, dtype: torch.dtype = torch.float32):
    """A tensor factory for one device: ``_t(1, 4, 3, 3)(device)``."""
    return lambda dev: torch.zeros(shape, dtype=dtype, device=dev)


def _outcome(fn):
    """(shape, dtype) of the (first) output, or the type of the error raised."""
    try:
        out = fn()
    except Exception as exc:  # noqa: BLE001 - the error type is the outcome
        return type(exc)
    if out is None:
        return "not covered by the shortcut"
    out = out[0] if isinstance(out, tuple) else out
    return tuple(out.shape), out.dtype


def _args(spec: tuple, dev: str) -> tuple:
    return tuple(a(dev) if callable(a) else a for a in spec)


X, W = _t(1, 8, 10, 10), _t(6, 4, 3, 3)
CONV_CASES = {  # aten.convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
    "grouped, strided": (X, W, _t(6), [2, 2], [1, 1], [1, 1], False, [0, 0], 2),
    "1d": (_t(2, 4, 9), _t(5, 4, 3), None, [1], [0], [2], False, [0], 1),
    "3d": (_t(1, 4, 5, 6, 7), _t(3, 2, 3, 3, 3), None, [1, 2, 1], [1, 0, 1], [1, 1, 1], False, [0, 0, 0], 2),
    "one stride for two dims": (X, W, None, [2], [1], [1], False, [0], 2),
    "wrong input channels": (X, W, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1),
    "wrong groups": (X, W, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 3),
    "weight not divisible by groups": (X, _t(5, 4, 3, 3), None, [1, 1], [0, 0], [1, 1], False, [0, 0], 2),
    "zero groups": (X, W, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 0),
    "3-d input, 4-d weight": (_t(8, 10, 10), W, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 2),
    "bias size": (X, W, _t(5), [1, 1], [0, 0], [1, 1], False, [0, 0], 2),
    "kernel larger than input": (_t(1, 8, 2, 9), W, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 2),
    "zero stride": (X, W, None, [0, 1], [0, 0], [1, 1], False, [0, 0], 2),
    "negative padding": (X, W, None, [1, 1], [-1, 0], [1, 1], False, [0, 0], 2),
    "zero dilation": (X, W, None, [1, 1], [0, 0], [0, 1], False, [0, 0], 2),
    "stride of three values": (X, W, None, [1, 1, 1], [0, 0], [1, 1], False, [0, 0], 2),
    "double input, float weight": (_t(1, 8, 10, 10, dtype=torch.float64), W, None, [1, 1], [0, 0], [1, 1], False,
                                   [0, 0], 2),
}
ELEMENTWISE_CASES = {
    "add: broadcast": ("add", _t(1, 4, 3, 3), _t(4, 1, 1)),
    "add: not broadcastable": ("add", _t(1, 4, 3, 3), _t(1, 5, 3, 3)),
    "add: half + float promotes": ("add", _t(2, 3, dtype=torch.float16), _t(2, 3)),
    "mul: 0-d double keeps float": ("mul", _t(2, 3), _t(dtype=torch.float64)),
    "mul: 0-d tensor times a map": ("mul", _t(), _t(1, 2, 5, 5)),
    "mul: python float": ("mul", _t(2, 3, dtype=torch.float16), 0.5),
    "div: python int": ("div", _t(2, 3), 3),
    "sub: broadcast both ways": ("sub", _t(3, 1), _t(1, 4)),
    "add_: into a smaller tensor": ("add_", _t(1, 4, 1, 1), _t(1, 4, 3, 3)),
    "add_: float into half": ("add_", _t(1, 4, dtype=torch.float16), _t(1, 4)),
    "mul_: broadcast in": ("mul_", _t(1, 4, 3, 3), _t(1, 4, 1, 1)),
    "relu": ("relu", _t(2, 3, dtype=torch.float64)),
    "silu_": ("silu_", _t(2, 3)),
    "sigmoid": ("sigmoid", _t(1, 2, 1, 1)),
}
REDUCTION_CASES = {
    "mean over H, W kept": ("mean.dim", _t(2, 3, 5, 7), [2, 3], True),
    "mean over negative dims": ("mean.dim", _t(2, 3, 5, 7), [-1, 1]),
    "mean over one dim": ("mean.dim", _t(2, 3, 5), [0]),
    "mean dim out of range": ("mean.dim", _t(2, 3, 5, 7), [4], True),
    "mean dim twice": ("mean.dim", _t(2, 3, 5, 7), [2, -2], True),
    "sum of everything": ("sum.default", _t(4, dtype=torch.float16)),
    "sum over dims": ("sum.dim_IntList", _t(2, 3, 5), [1, 2], False),
}
POOL_CASES = {  # max_pool2d_with_indices(x, kernel, stride, padding, dilation, ceil_mode); avg_pool2d(..., ceil_mode, ...)
    "max 3x3/2 pad 1, odd size": ("max_pool2d_with_indices", _t(1, 4, 9, 7), [3, 3], [2, 2], [1, 1]),
    "max default stride": ("max_pool2d_with_indices", _t(4, 9, 8), [2]),
    "max ceil mode": ("max_pool2d_with_indices", _t(1, 2, 10, 10), [3, 3], [2, 2], [0, 0], [1, 1], True),
    "max dilated": ("max_pool2d_with_indices", _t(1, 2, 10, 11), [3, 2], [1, 2], [2, 1], [2, 1]),
    "max pad over half the kernel": ("max_pool2d_with_indices", _t(1, 2, 8, 8), [3, 3], [2, 2], [2, 2]),
    "max window larger than input": ("max_pool2d_with_indices", _t(1, 2, 2, 2), [5, 5], [1, 1]),
    "max zero stride": ("max_pool2d_with_indices", _t(1, 2, 8, 8), [3, 3], [0, 2]),
    "avg 3x3/2 pad 1, no pad count": ("avg_pool2d", _t(1, 4, 9, 7), [3, 3], [2, 2], [1, 1], False, False),
    "avg ceil mode": ("avg_pool2d", _t(1, 2, 10, 10), [3, 3], [2, 2], [1, 1], True),
    "avg pad over half the kernel": ("avg_pool2d", _t(1, 2, 8, 8), [2, 2], [2, 2], [2, 2]),
}
RESIZE_CASES = {
    "nearest up": ("upsample_nearest2d", _t(1, 3, 5, 7), [10, 13]),
    "bilinear down": ("upsample_bilinear2d", _t(2, 3, 9, 9), [4, 5], False),
    "bilinear to zero": ("upsample_bilinear2d", _t(1, 3, 3, 3), [0, 5], False),
    "nearest of a 3-d tensor": ("upsample_nearest2d", _t(3, 5, 7), [10, 13]),
}


def _check_shortcut(name: str, spec: tuple, cpu=None) -> None:
    """The shortcut on meta tensors gives the CPU kernel's output shape and dtype, or raises its error type."""
    packet, _, overload = name.partition(".")
    cpu = cpu or (getattr(getattr(aten, packet), overload) if overload else getattr(aten, packet))
    want = _outcome(lambda: cpu(*_args(spec, "cpu")))
    assert _outcome(lambda: OPS[packet].meta(_args(spec, "meta"), {})) == want


@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv_shortcut_matches_the_cpu_kernel(case):
    _check_shortcut("convolution", CONV_CASES[case])


@pytest.mark.parametrize("case", list(ELEMENTWISE_CASES))
def test_elementwise_shortcut_matches_the_cpu_kernel(case):
    name, *spec = ELEMENTWISE_CASES[case]
    _check_shortcut(name, tuple(spec))


@pytest.mark.parametrize("case", list(REDUCTION_CASES))
def test_reduction_shortcut_matches_the_cpu_kernel(case):
    name, *spec = REDUCTION_CASES[case]
    _check_shortcut(name, tuple(spec))


@pytest.mark.parametrize("case", list(POOL_CASES))
def test_pooling_shortcut_matches_the_cpu_kernel(case):
    name, *spec = POOL_CASES[case]
    _check_shortcut(name, tuple(spec))


@pytest.mark.parametrize("case", list(RESIZE_CASES))
def test_resize_shortcut_matches_the_cpu_kernel(case):
    name, *spec = RESIZE_CASES[case]
    _check_shortcut(name, tuple(spec))


@pytest.mark.parametrize("sizes", [(4, 4, 4, 4), (5, 4, 4, 4), (4, 5, 4, 4), (4, 4, 5, 4), (4, 4, 4, 5)])
def test_bn_shortcut_checks_every_channel_count(sizes):
    # The CPU aten kernel reads out of bounds silently; at::batch_norm (what nn.BatchNorm2d calls) checks the
    # sizes first. The shortcut must raise the same RuntimeError, and agree on shape where sizes are right.
    stats = tuple(_t(n) for n in sizes)
    spec = (_t(2, 4, 3, 3), *stats, False, 0.1, 1e-5)
    _check_shortcut("native_batch_norm", spec, cpu=lambda x, w, b, m, v, *rest: F.batch_norm(x, m, v, w, b))
    no_training = (_t(2, 4, 3, 3), *stats, 0.1, 1e-5)
    _check_shortcut("_native_batch_norm_legit_no_training", no_training,
                    cpu=lambda x, w, b, m, v, *rest: F.batch_norm(x, m, v, w, b))


def test_shortcuts_step_aside_outside_their_domain():
    ints = torch.zeros(2, 3, dtype=torch.int64, device="meta")
    assert OPS["relu"].meta((ints,), {}) is None  # integer dtypes: torch's kernel decides
    assert OPS["add"].meta((ints, ints), {}) is None
    x = torch.zeros(2, 3, device="meta")
    assert OPS["add"].meta((x, x), {"alpha": 2}) is None  # keyword arguments
    assert OPS["add"].meta((torch.zeros(2), torch.zeros(2)), {}) is None  # CPU tensors run for real
    cl = torch.zeros(1, 8, 4, 4, device="meta").to(memory_format=torch.channels_last)
    assert OPS["convolution"].meta((cl, torch.zeros(8, 8, 1, 1, device="meta"), None, [1, 1], [0, 0], [1, 1],
                                    False, [0, 0], 1), {}) is None
    assert OPS["native_batch_norm"].meta((torch.zeros(1, 4, 2, 2, device="meta"), None, None, None, None,
                                          True, 0.1, 1e-5), {}) is None  # training mode
    assert OPS["sum"].meta((x, ["a"]), {}) is None  # named dims
    assert OPS["empty"].meta(([2, 3],), {"device": torch.device("cpu")}) is None
    made = OPS["empty"].meta(([2, 3],), {"dtype": torch.float16, "device": torch.device("meta")})
    assert made.shape == (2, 3) and made.dtype == torch.float16 and made.is_meta


@pytest.mark.parametrize("mis_wired,x_shape", [
    (nn.Conv2d(4, 6, 3), (1, 8, 16, 16)),                   # the example: 55,296 MACs counted before
    (nn.Conv2d(8, 6, 3, groups=2), (1, 6, 16, 16)),          # 6 channels for 2 groups of 4
    (nn.BatchNorm2d(5), (1, 4, 8, 8)),
    (nn.Sequential(nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 3, groups=4), nn.Conv2d(5, 4, 1)), (1, 4, 8, 8)),
])
def test_mis_wired_modules_raise_on_meta_as_on_cpu(mis_wired, x_shape):
    mis_wired = mis_wired.eval()
    with pytest.raises(RuntimeError):
        count_ops(mis_wired, torch.zeros(x_shape))
    with pytest.raises(RuntimeError):
        count_ops(mis_wired.to("meta"), torch.empty(x_shape, device="meta"))


class _BadAdd(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + x.mean(dim=(2, 3))  # (B, C, H, W) + (B, C): broadcasts only by accident of sizes


def test_non_broadcastable_add_raises_on_meta_as_on_cpu():
    for dev in ("cpu", "meta"):
        with pytest.raises(RuntimeError, match="must match the size"):
            count_ops(_BadAdd(), torch.zeros(1, 4, 5, 6, device=dev))
    assert count_ops(_BadAdd(), torch.zeros(1, 4, 5, 4, device="meta")).rows  # (1, 4) broadcasts against (5, 4)


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.conv(x))  # (B, 4, H/2, W/2)
        return F.interpolate(y, size=x.shape[-2:], mode="nearest") * 2.0  # (B, 4, H, W), at Block level


def test_rows_are_attributed_to_the_innermost_module_and_level():
    model = nn.Sequential(Block(), nn.Sequential(nn.Conv2d(4, 2, 1))).eval()
    for dev in ("cpu", "meta"):
        counts = count_ops(model.to(dev), torch.zeros(2, 3, 8, 12, device=dev))
        assert dict(counts.rows) == {
            ("0.conv", "P1", "convolution", "conv_macs"): 2 * 4 * 3 * 9 * 4 * 6,
            ("0.act", "P1", "relu", "elementwise_ops"): 2 * 4 * 4 * 6,
            ("0", "P0", "upsample_nearest2d", "resize_ops"): 2 * 4 * 8 * 12,
            ("0", "P0", "mul", "elementwise_ops"): 2 * 4 * 8 * 12,
            ("1.0", "P0", "convolution", "conv_macs"): 2 * 2 * 4 * 8 * 12,
        }


def test_one_trace_feeds_every_consumer(tiny_spec):
    model = build_model(tiny_spec, device="meta").fold_for_inference()
    x = torch.empty(1, 3, 64, 64, device="meta")
    seen: list[str] = []
    counts, ignore = OpCounts(), {t.untyped_storage()._cdata for t in [*model.parameters(), *model.buffers(), x]}
    live = _LiveStorages(ignore)
    out = trace(model, x, [lambda ev: seen.append(ev.name), _Count(counts, level_namer((64, 64), 6)), live])
    assert out.shape == (1, 19, 64, 64)
    assert len(seen) > 100 and seen.count("convolution") == sum(isinstance(m, nn.Conv2d) for m in model.modules())
    assert dict(counts.rows) == dict(count_ops(model, x, 6).rows)
    assert live.peak == estimate_peak_memory(model, x).peak_bytes > 19 * 64 * 64 * 4
    flow = _DataFlow(x)  # keeps every tensor alive (ids stay unique): traced on its own
    trace(model, x, [flow])
    assert [k.key for k in group_kernels(flow.events)] == [k.key for k in model_kernels(tiny_spec, (64, 64))]


def test_shortcuts_give_the_rows_of_torchs_meta_kernels(tiny_spec):
    model = build_model(tiny_spec, device="meta").eval()
    x = torch.empty(1, 3, 64, 96, device="meta")
    fast, slow = count_ops(model, x, 6), count_ops(model, x, 6, shortcuts=False)
    assert dict(fast.rows) == dict(slow.rows) and dict(fast.no_arithmetic) == dict(slow.no_arithmetic)


def test_op_table_covers_torchs_flop_formulas():
    forward = {p.__name__ for p in flop_registry if isinstance(p, torch._ops.OpOverloadPacket)
               and "backward" not in p.__name__}
    ours = {n for n, op in OPS.items() if op.cost in (CONV, MATMUL)}
    assert forward <= ours  # every op this torch has a FLOP formula for is counted
    if tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 14):  # older torch knows fewer (2.4: 5 fewer)
        assert forward == ours  # and nothing beyond torch's own list is counted as conv/matmul
    assert {op.cost for op in OPS.values()} == {*CATEGORIES, "no_arithmetic"}
    assert op_of("cumsum").cost == "not_counted"
    assert {n for n, op in OPS.items() if op.meta} == {
        "convolution", "relu", "relu_", "silu", "silu_", "sigmoid", "sigmoid_", "hardswish", "hardswish_", "gelu",
        "tanh", "hardsigmoid", "native_batch_norm", "_native_batch_norm_legit_no_training", "add", "add_", "mul", "mul_", "sub", "div", "div_", "upsample_nearest2d", "upsample_bilinear2d", "mean", "sum",
        "max_pool2d_with_indices", "avg_pool2d", "empty"}


def test_meta_build_skips_init_and_keeps_state_dict_shapes(tiny_spec):
    real, meta = build_model(tiny_spec), build_model(tiny_spec, device="meta")
    assert {k: (v.shape, v.dtype) for k, v in meta.state_dict().items()} == \
        {k: (v.shape, v.dtype) for k, v in real.state_dict().items()}
    assert all(v.is_meta for v in meta.state_dict().values())
    assert torch.empty(2).device.type == "cpu" and torch.zeros(3).normal_().abs().sum() > 0  # no mode left behind
    assert real.head.predict[1].weight.std() > 0  # real builds are still initialised


def test_meta_build_restores_garbage_collection(tiny_spec):
    assert gc.isenabled()
    build_model(tiny_spec, device="meta")
    assert gc.isenabled()
    gc.disable()
    try:
        build_model(tiny_spec, device="meta")
        assert not gc.isenabled()  # a caller's choice is kept
    finally:
        gc.enable()


class _Pools(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(x, [3], 2, 1)  # one size: a 3x3 window
        return F.avg_pool2d(x, 2, ceil_mode=True)  # (1, 2, 4, 4) -> (1, 2, 2, 2), 2x2 windows


@pytest.mark.parametrize("dev", ["cpu", "meta"])
def test_pooling_counts_square_windows(dev):
    counts = count_ops(_Pools(), torch.zeros(1, 2, 7, 8, device=dev))
    assert dict(counts.rows) == {("", "P1", "max_pool2d_with_indices", "pooling_ops"): 2 * 4 * 4 * 9,
                                 ("", "P2", "avg_pool2d", "pooling_ops"): 2 * 2 * 2 * 4}


def test_events_tell_two_calls_of_one_module_apart():
    conv = nn.Conv2d(2, 2, 1)
    model = nn.Sequential(conv, nn.ReLU(), conv)  # the same conv twice
    seen = []
    trace(model, torch.zeros(1, 2, 3, 3, device="meta"),
          [lambda ev: seen.append((ev.name, ev.module, ev.call)) if ev.name != "empty" else None])
    convs = [s for s in seen if s[0] == "convolution"]
    assert [m for _, m, _ in convs] == ["0", "0"] and convs[0][2] < convs[1][2]
    assert ("relu", "1", convs[0][2] + 1) in seen
