"""Property: on random small ESeg specs, counting on the meta device equals counting on real CPU tensors,
row by row (module, level, operator, category), and a mis-wired model fails the same way on both.

The default run checks a few derandomised examples; ``-m slow`` checks 200 random ones. Input sizes stay
>= 2**max_level so the test does not depend on the spec's input-size rule.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import escale
from escale.models import build_model
from escale.profiler.dispatch import count_ops


@st.composite
def small_cases(draw: st.DrawFn) -> tuple[escale.ESegSpec, tuple[int, int]]:
    block = draw(st.sampled_from(["mbconv", "fused"]))
    min_level = draw(st.integers(2, 3))
    max_level = draw(st.integers(min_level + 1, 6))
    spec = escale.ESegSpec.from_dict({
        "name": "prop",
        "encoder": {"width": draw(st.floats(0.1, 0.5)), "depth": draw(st.floats(0.1, 0.6)), "block": block,
                    "fused_stages": draw(st.integers(1, 7)) if block == "fused" else None,
                    "se": draw(st.booleans()), "act": draw(st.sampled_from(["silu", "relu"]))},
        "decoder": {"channels": draw(st.integers(8, 32)), "repeats": draw(st.integers(1, 2)),
                    "min_level": min_level, "max_level": max_level},
        "num_classes": draw(st.integers(1, 19)),
    })
    side = st.integers(max(32, 2**max_level), 96)
    return spec, (draw(side), draw(side))


def _counts(model: nn.Module, size: tuple[int, int], device: str, max_level: int) -> tuple[dict, dict, dict]:
    x = torch.zeros(1, 3, *size, device=device)
    c = count_ops(model, x, max_level)
    return dict(c.rows), dict(c.no_arithmetic), dict(c.not_counted)


def _mis_wire(model: nn.Module, how: str, pick: int) -> None:
    """Break one layer of ``model`` in place (same choice on every device)."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    dev = next(model.parameters()).device
    if how == "input channels":
        conv = convs[pick % len(convs)]
        w = conv.weight
        conv.weight = nn.Parameter(torch.zeros(w.shape[0], w.shape[1] + 1, *w.shape[2:], device=dev))
    elif how == "groups":
        convs[pick % len(convs)].groups += 1
    elif how == "bn channels":
        bn = bns[pick % len(bns)]
        n = bn.num_features + 1
        bn.weight, bn.bias = nn.Parameter(torch.ones(n, device=dev)), nn.Parameter(torch.zeros(n, device=dev))
        bn.running_mean, bn.running_var = torch.zeros(n, device=dev), torch.ones(n, device=dev)
    else:  # "add": a residual of the wrong width added to one conv's output
        convs[pick % len(convs)].register_forward_hook(
            lambda mod, args, out: out + torch.zeros(1, out.shape[1] + 1, 1, 1, device=out.device))


def _error(fn) -> type[BaseException] | None:  # noqa: ANN001
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - the error type is the outcome
        return type(exc)
    return None


def check_meta_equals_cpu(case: tuple[escale.ESegSpec, tuple[int, int]], how: str, pick: int) -> None:
    spec, size = case
    level = spec.decoder.max_level
    torch.manual_seed(0)
    cpu, meta = build_model(spec).eval(), build_model(spec, device="meta").eval()
    rows, no_arith, not_counted = _counts(cpu, size, "cpu", level)
    assert _counts(meta, size, "meta", level) == (rows, no_arith, not_counted)
    assert not_counted == {} and sum(v for k, v in rows.items() if k[3] == "conv_macs") > 0
    for model in (cpu, meta):
        _mis_wire(model, how, pick)
    on_cpu = _error(lambda: _counts(cpu, size, "cpu", level))
    assert on_cpu is RuntimeError
    assert _error(lambda: _counts(meta, size, "meta", level)) is on_cpu


MIS_WIRINGS = st.sampled_from(["input channels", "groups", "bn channels", "add"])
PICKS = st.integers(0, 10_000)
_QUIET = {"deadline": None, "database": None, "suppress_health_check": [HealthCheck.too_slow]}


@settings(max_examples=25, derandomize=True, **_QUIET)
@given(small_cases(), MIS_WIRINGS, PICKS)
def test_meta_counts_equal_cpu_counts(case, how, pick):
    check_meta_equals_cpu(case, how, pick)


@pytest.mark.slow
@settings(max_examples=200, **_QUIET)
@given(small_cases(), MIS_WIRINGS, PICKS)
def test_meta_counts_equal_cpu_counts_200(case, how, pick):
    check_meta_equals_cpu(case, how, pick)
