"""Counters: closed-form MACs, the paper's published params/FLOPs, breakdowns, cross-checks, registry."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import escale
from escale.profiler import COUNTERS, get_counter, register_counter
from escale.profiler.counters import Counter
from escale.profiler.dispatch import count_ops


def _macs(module: nn.Module, shape: tuple[int, ...]) -> dict[str, int]:
    counts = count_ops(module.to("meta").eval(), torch.empty(*shape, device="meta"))
    out: dict[str, int] = {}
    for (_mod, _lvl, _op, cat), v in counts.rows.items():
        out[cat] = out.get(cat, 0) + v
    return out


def test_conv_macs_closed_form():
    # 3x3 conv, 8 -> 16 channels, stride 2 on 32x64: 16 x 8 x 9 x 16 x 32 MACs.
    assert _macs(nn.Conv2d(8, 16, 3, stride=2, padding=1), (1, 8, 32, 64))["conv_macs"] == 16 * 8 * 9 * 16 * 32
    # depthwise 5x5 on 24 channels at 20x20: 24 x 25 x 400; batch 3 triples it.
    assert _macs(nn.Conv2d(24, 24, 5, padding=2, groups=24), (3, 24, 20, 20))["conv_macs"] == 3 * 24 * 25 * 400
    assert _macs(nn.Linear(10, 7), (4, 10))["matmul_macs"] == 4 * 10 * 7


def test_other_ops_are_counted_apart_from_macs():
    m = nn.Sequential(nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(3, 2, 1), nn.Upsample(size=(8, 8), mode="bilinear"))
    got = _macs(m, (1, 4, 8, 8))
    assert got == {"elementwise_ops": 2 * 4 * 64, "pooling_ops": 4 * 16 * 9, "resize_ops": 4 * 64 * 4}


def test_unknown_ops_are_listed_not_dropped():
    class Odd(nn.Module):
        def forward(self, x):
            return torch.cumsum(x, dim=1)

    counts = count_ops(Odd().eval(), torch.empty(1, 4, 8, 8, device="meta"))
    assert counts.not_counted == {"cumsum": 1}


@pytest.fixture(scope="module")
def family_records():
    return {r.name: r for r in (escale.profile(s) for s in escale.family("eseg"))}


@pytest.mark.parametrize("name,params_m,gmacs,tol", [
    ("ESeg-S", 6.9, 34.5, 0.03), ("ESeg-M", 20.0, 112.0, 0.03), ("ESeg-L", 70.5, 343.0, 0.03),
])
def test_paper_table4_params_and_flops(family_records, name, params_m, gmacs, tol):
    r = family_records[name]
    assert r.input_size == (1024, 2048)
    assert abs(r.params / 1e6 / params_m - 1) <= tol, r.params
    assert abs(r.macs / 1e9 / gmacs - 1) <= tol, r.macs


def test_paper_lite_s_flops(family_records):
    assert abs(family_records["ESeg-Lite-S"].macs / 17e9 - 1) <= 0.08


def test_paper_table1_feature_levels():
    # Table 1 (ESeg-S): P2-P5 6.4M / 34.3B, P2-P7 6.6M / 34.5B, P2-P9 6.9M / 34.5B.
    for max_level, params_m, gmacs in ((5, 6.4, 34.3), (7, 6.6, 34.5), (9, 6.9, 34.5)):
        r = escale.profile(escale.preset("ESeg-S").with_overrides({"decoder.max_level": max_level}))
        assert abs(r.params / 1e6 - params_m) <= 0.06 and abs(r.macs / 1e9 / gmacs - 1) <= 0.03


def test_paper_table8_resnet50_bifpn_flops():
    spec = escale.preset("ESeg-S").with_overrides({"encoder.backbone": "resnet50", "encoder.depth": 1.0})
    assert abs(escale.profile(spec).macs / 188.0e9 - 1) <= 0.03


def test_breakdowns_add_up_and_nothing_is_uncounted(family_records):
    for r in family_records.values():
        assert sum(r.macs_by_part.values()) == r.macs
        assert sum(r.macs_by_level.values()) == r.macs
        assert sum(r.macs_by_operator.values()) == r.macs
        assert sum(r.params_by_part.values()) == r.params
        assert r.ops_not_counted == {}
        assert set(r.other_ops) == {"elementwise_ops", "resize_ops", "pooling_ops", "reduction_ops"}
        assert all(v > 0 for v in r.other_ops.values() if v is not None)
    s = family_records["ESeg-S"]
    assert list(s.macs_by_level)[:2] == ["P1", "P2"] and "P9" in s.macs_by_level


def test_params_match_a_real_model(tiny_spec):
    r = escale.profile(tiny_spec, input_size=(64, 64))
    assert r.params == sum(p.numel() for p in escale.build_model(tiny_spec).parameters())


def test_fvcore_and_thop_cross_check(tiny_spec):
    ours = escale.profile(tiny_spec, input_size=(64, 128))
    fv = escale.profile(tiny_spec, input_size=(64, 128), counter="fvcore")
    assert abs(fv.macs / ours.macs - 1) < 0.01
    th = escale.profile(tiny_spec, input_size=(64, 128), counter="thop")
    assert ours.macs <= th.macs <= 1.05 * ours.macs  # thop adds bias/BN/activation work into its total


def test_counter_registry_errors():
    with pytest.raises(escale.RegistryError, match="available: dispatch, fvcore, thop"):
        get_counter("nope")

    class Dup(Counter):
        name = "dispatch"

    with pytest.raises(escale.RegistryError, match="already registered"):
        register_counter(Dup)
    assert list(COUNTERS)[:3] == ["dispatch", "fvcore", "thop"]


def test_profile_runs_below_the_top_level_and_says_which_levels_collapse(tiny_spec):
    rec = escale.profile(tiny_spec, input_size=(32, 64))  # P6 would be 0.5x1
    assert rec.notes == ["P6 is 1x1 at 32x64 (levels below one pixel are clamped to 1)"] and rec.macs > 0
    assert escale.profile(tiny_spec, input_size=(64, 64)).notes == []
    real = escale.build_model(tiny_spec).eval()
    with torch.no_grad():
        assert real(torch.zeros(1, 3, 32, 64)).shape == (1, 19, 32, 64)
    for bad in ((0, 64), (32,), (32.0, 64)):
        with pytest.raises(escale.SpecError, match="input_size"):
            escale.profile(tiny_spec, input_size=bad)


def test_record_dict_and_frame(family_records):
    d = family_records["ESeg-S"].to_dict()
    assert isinstance(d["params"], int) and isinstance(d["macs"], int) and d["input_size"] == [1024, 2048]
    assert "multiply-adds" in d["units"]["macs"]
    again = escale.profiler.ProfileRecord.from_dict(d)
    assert again.macs == d["macs"]
    frame = escale.records_to_frame(list(family_records.values()))
    assert list(frame["name"]) == list(escale.spec.TABLE3)
    assert {"width", "depth", "channels", "repeats", "params", "macs", "gmacs_dev_pct"} <= set(frame.columns)
