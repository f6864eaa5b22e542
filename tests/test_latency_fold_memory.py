"""BN folding (closed form, timm's BatchNormAct2d, the guard) and peak activation memory (closed form)."""

from __future__ import annotations

import pytest
import torch
from timm.layers import BatchNormAct2d
from torch import nn

import escale
from escale.profiler.latency.fold import FoldError, build_folded, fold_batchnorm, prepare_for_inference
from escale.profiler.latency.memory import estimate_peak_memory, estimate_spec_memory


def test_fold_conv_bn_closed_form():
    conv, bn = nn.Conv2d(1, 1, 1, bias=False), nn.BatchNorm2d(1, eps=1.0)  # torch 2.11 rejects eps=0
    with torch.no_grad():
        conv.weight.fill_(2.0)
        bn.weight.fill_(3.0), bn.bias.fill_(1.0), bn.running_mean.fill_(0.5), bn.running_var.fill_(3.0)
    model = nn.Sequential(conv, bn).eval()
    report = fold_batchnorm(model, torch.zeros(1, 1, 2, 2))
    assert report.bn_folded == 1 and isinstance(model[1], nn.Identity)
    assert model[0].weight.item() == 3.0  # 2 * 3 / sqrt(3 + 1)
    assert model[0].bias.item() == 0.25  # (0 - 0.5) * 1.5 + 1
    assert model(torch.ones(1, 1, 1, 1)).item() == 3.25


def _random_bn_stats(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)


def test_fold_keeps_timm_bn_activation_and_output():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, groups=1, bias=False), BatchNormAct2d(8, act_layer=nn.ReLU),
                          nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=True), nn.BatchNorm2d(8)).eval()
    _random_bn_stats(model)
    x = torch.randn(2, 3, 8, 8)
    report = prepare_for_inference(model, x)
    assert report.bn_folded == 2 and report.bn_not_folded == [] and report.max_abs_diff < 1e-5
    assert isinstance(model[1].act, nn.ReLU) and isinstance(model[3], nn.Identity)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


class SharedConvOutput(nn.Module):
    """The conv output feeds the BN *and* a residual: folding the BN into the conv would be wrong."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


def test_fold_guard_catches_a_shared_conv_output():
    model = SharedConvOutput().eval()
    _random_bn_stats(model)
    with pytest.raises(FoldError, match="differs from the original"):
        prepare_for_inference(model, torch.randn(1, 2, 4, 4))


def test_eseg_fold_folds_every_bn(tiny_spec):
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in escale.build_model(tiny_spec).modules())
    model, report = build_folded(tiny_spec)
    assert report.bn_folded == n_bn > 20 and report.softmax_folded and report.bn_not_folded == []
    assert report.max_abs_diff <= 1e-5
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert model.fusion.folded is not None


class Skip(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)  # 8 x 4 x 4 fp32 = 512 bytes
        z = self.b(y)  # 512 bytes, y still alive
        return y + z  # 512 more: peak 1536


def test_memory_estimate_closed_form():
    chain = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 1)).to("meta")
    est = estimate_peak_memory(chain, torch.empty(1, 3, 4, 4, device="meta"))
    assert (est.peak_bytes, est.end_bytes) == (1024, 512)  # two 512-byte activations alive at once
    est = estimate_peak_memory(Skip().to("meta"), torch.empty(1, 3, 4, 4, device="meta"))
    assert (est.peak_bytes, est.end_bytes) == (1536, 512)


def test_meta_estimate_matches_real_tensors(tiny_spec):
    model, _ = build_folded(tiny_spec)
    real = estimate_peak_memory(model, torch.randn(1, 3, 64, 64))
    meta = estimate_spec_memory(tiny_spec, (64, 64))
    assert meta.peak_bytes == real.peak_bytes
    assert meta.end_bytes == 19 * 64 * 64 * 4  # the logits
    assert meta.peak_bytes > meta.end_bytes
