"""Peer checks: fvcore's flop-count test cases with their closed-form answers, through escale's engine.

Adapted from facebookresearch/fvcore ``tests/test_flop_count.py`` (``TestFlopCountAnalysis.test_conv``,
``test_linear``, ``test_matmul``, ``test_matmul_broadcast``, ``test_bmm``, ``test_einsum``,
``test_batchnorm``, ``test_threeNet``, ``test_flop_counter_class``; ``TestFlopCountHandles.test_upsample``,
``test_complicated_einsum``, ``test_torch_mm``, ``test_batch_norm``). Each case runs on real CPU tensors
and on meta tensors, and both must give fvcore's figure.

Unit mapping: fvcore counts "one fused multiply-add as one flop" for conv, linear, matmul, bmm and
einsum; escale counts the same multiply-adds as MACs (``conv_macs``: convolutions, ``matmul_macs``:
linear/matmul/bmm/einsum, which reach the dispatcher as mm/addmm/bmm). fvcore's bilinear upsample
counts 4 per output element: escale's ``resize_ops`` (4 taps per output element). fvcore's adaptive
average pooling counts one per input element: escale's ``pooling_ops`` (output elements x window), or,
for pooling to 1x1 (which reaches the dispatcher as ``mean``), ``reduction_ops`` (one per input element).
fvcore's inference batch-norm counts 1 per element, 2 with an affine transform; escale counts one
``elementwise_ops`` per output element either way (after folding it is one multiply-add).
"""

from __future__ import annotations

from collections import defaultdict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from escale.profiler.dispatch import count_ops

DEVICES = ("cpu", "meta")


class Fn(nn.Module):
    """A module around a function of its inputs (fvcore's EinsumNet, MatmulNet, BMMNet)."""

    def __init__(self, fn) -> None:  # noqa: ANN001
        super().__init__()
        self.fn = fn

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.fn(*xs)


def _by_category(model: nn.Module, shapes: list[tuple[int, ...]], device: str) -> dict[str, int]:
    torch.manual_seed(0)
    xs = tuple(torch.randn(s).to(device) for s in shapes)
    counts = count_ops(model.to(device).eval(), xs)
    out: dict[str, int] = defaultdict(int)
    for (_module, _level, _op, category), amount in counts.rows.items():
        out[category] += amount
    assert not counts.not_counted
    return dict(out)


# fvcore test_conv: (conv_dim, batch, in, out, spatial, kernel, padding, stride, groups, transpose, output_padding)
CONV_CASES = [
    (2, 5, 10, 3, 15, 3, 1, 1, 1, False, 0),
    (2, 2, 10, 6, 20, 3, 1, 2, 1, False, 0),   # spatial change in the output
    (2, 5, 16, 8, 15, 5, 2, 1, 4, False, 0),   # group convolution
    (2, 5, 16, 8, 15, 3, 1, 1, 8, False, 0),   # groups = output channels ("depthwise")
    (1, 5, 10, 3, 15, 3, 1, 1, 1, False, 0),
    (3, 5, 10, 3, 15, 3, 1, 1, 1, False, 0),
    (2, 5, 10, 3, 15, 3, 1, 1, 1, True, 0),    # transposed
    (2, 5, 10, 3, 15, 3, 1, 2, 1, True, 0),    # strided transposed
    (2, 5, 10, 3, 15, 3, 1, 3, 1, True, 2),    # strided transposed with output_padding
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dim,batch,cin,cout,spatial,k,pad,stride,groups,transpose,out_pad", CONV_CASES)
def test_conv(device, dim, batch, cin, cout, spatial, k, pad, stride, groups, transpose, out_pad):
    layers = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d) if transpose else (nn.Conv1d, nn.Conv2d,
                                                                                              nn.Conv3d)
    extra = {"output_padding": out_pad} if transpose else {}
    conv = layers[dim - 1](cin, cout, k, stride, pad, groups=groups, **extra)
    # fvcore's closed form: a transposed conv does its work per *input* position.
    size = spatial if transpose else (spatial + 2 * pad - k) // stride + 1
    want = batch * cin * cout * k**dim * size**dim // groups
    assert _by_category(conv, [(batch, cin, *[spatial] * dim)], device) == {"conv_macs": want}


@pytest.mark.parametrize("device", DEVICES)
def test_linear(device):
    assert _by_category(nn.Linear(10, 20), [(5, 10)], device) == {"matmul_macs": 5 * 10 * 20}
    assert _by_category(nn.Linear(10, 20), [(5, 5, 10)], device) == {"matmul_macs": 5 * 10 * 5 * 20}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("a,b,batches", [
    ((20, 10), (10, 100), 1), ((1, 20, 10), (1, 10, 100), 1), ((2, 2, 20, 10), (2, 2, 10, 100), 4),
    ((1, 20, 10), (10, 100), 1), ((2, 20, 10), (10, 100), 2),
])
def test_matmul_and_broadcast(device, a, b, batches):
    assert _by_category(Fn(torch.matmul), [a, b], device) == {"matmul_macs": batches * 20 * 10 * 100}


@pytest.mark.parametrize("device", DEVICES)
def test_bmm_and_mm(device):
    n, c, t, p = 2, 5, 2, 12
    assert _by_category(Fn(torch.bmm), [(n, c, t), (n, t, p)], device) == {"matmul_macs": n * t * p * c}
    assert _by_category(Fn(torch.mm), [(3, 4), (4, 5)], device) == {"matmul_macs": 60}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("equation,a,b,want", [
    ("nct,ncp->ntp", (1, 5, 2), (1, 5, 12), 1 * 2 * 12 * 5),
    ("ntg,ncg->nct", (1, 2, 6), (1, 5, 6), 1 * 2 * 6 * 5),
    ("nc,nchw->hw", (3, 4), (3, 4, 2, 3), 72),   # TestFlopCountHandles.test_complicated_einsum
])
def test_einsum(device, equation, a, b, want):
    assert _by_category(Fn(lambda x, y: torch.einsum(equation, x, y)), [a, b], device) == {"matmul_macs": want}


@pytest.mark.parametrize("device", DEVICES)
def test_upsample_bilinear(device):
    up = Fn(lambda x: F.interpolate(x, None, 2, "bilinear", False))
    assert _by_category(up, [(2, 2, 2, 2)], device) == {"resize_ops": 2**4 * 4 * 4}  # fvcore: 256


@pytest.mark.parametrize("device", DEVICES)
def test_batchnorm_inference(device):
    # fvcore: BatchNorm1d(affine=False) in eval mode = batch x features; F.batch_norm with an affine
    # transform on (2, 2, 2, 2) = 32 (2 per element), without = 16. escale: one op per element.
    assert _by_category(nn.BatchNorm1d(10, affine=False), [(10, 10)], device) == {"elementwise_ops": 100}
    mean, var = torch.rand(2).to(device), (torch.rand(2) + 1).to(device)
    for weight in (mean, None):
        bn = Fn(lambda x, w=weight: F.batch_norm(x, mean, var, w, w))
        assert _by_category(bn, [(2, 2, 2, 2)], device) == {"elementwise_ops": 16}


class ThreeNet(nn.Module):
    """fvcore's ThreeNet: 1x1 conv -> adaptive average pool to 1x1 -> two linear layers."""

    def __init__(self, input_dim: int, conv_dim: int, linear_dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(input_dim, conv_dim, 1, 1)
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.linear1 = nn.Linear(conv_dim, linear_dim)
        self.linear2 = nn.Linear(linear_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.conv(x))
        return self.linear2(self.linear1(torch.flatten(x, 1)))


@pytest.mark.parametrize("device", DEVICES)
def test_three_net_totals_and_by_module(device):
    batch, input_dim, conv_dim, spatial, linear_dim = 4, 2, 5, 10, 3
    conv = batch * conv_dim * input_dim * spatial * spatial
    linear1, linear2 = batch * conv_dim * linear_dim, batch * linear_dim * 1
    net = ThreeNet(input_dim, conv_dim, linear_dim)
    shape = (batch, input_dim, spatial, spatial)
    assert _by_category(net, [shape], device) == {"conv_macs": conv, "matmul_macs": linear1 + linear2,
                                                  "reduction_ops": conv // input_dim}  # fvcore: 2e-6 GFLOP
    by_module: dict[str, int] = defaultdict(int)
    for (module, _level, _op, _category), amount in count_ops(net.to(device), torch.zeros(shape, device=device)
                                                               ).rows.items():
        by_module[module] += amount
    assert dict(by_module) == {"conv": conv, "linear1": linear1, "linear2": linear2, "pool": conv // input_dim}
