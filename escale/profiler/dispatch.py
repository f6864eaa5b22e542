"""MAC and op counting: the counting consumer of the dispatch trace (:mod:`escale.profiler.trace`).

Convention: one fused multiply-add is one MAC (the paper's and EfficientNet/EfficientDet's "FLOPs").
Convolution and matmul MACs come from torch's own formulas (``torch.utils.flop_counter.flop_registry``,
which counts 2 FLOPs per multiply-add; we halve them). Cheaper work is counted separately, in
*operations*, never mixed into MACs (units in :mod:`escale.profiler.ops`): ``elementwise``, ``resize``
taps, ``pooling`` windows, ``reduction`` inputs. Ops that move data without arithmetic (views, copies,
cat) are listed as such; anything else is listed under ``not_counted`` with its call count instead of
being silently counted as zero.

Works for any ``nn.Module`` and inputs, on any device; on the meta device nothing is allocated. Each
amount is attributed to the innermost module path and to a pyramid level named by output resolution.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from escale.profiler.ops import CATEGORIES, NO_ARITHMETIC, NOT_COUNTED, REDUCTION, amount, first_tensor
from escale.profiler.trace import OpEvent, trace

__all__ = ["CATEGORIES", "OpCounts", "count_ops", "level_namer"]


@dataclass
class OpCounts:
    """Raw result of one counting pass: amounts keyed by (module, level, operator, category)."""

    rows: dict[tuple[str, str, str, str], int] = field(default_factory=lambda: defaultdict(int))
    no_arithmetic: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    not_counted: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class _Count:
    """Consumer: adds each op's amount to its (module, level, operator, category) row."""

    def __init__(self, counts: OpCounts, level_of: Callable[[torch.Tensor], str]) -> None:
        self.counts, self.level_of = counts, level_of

    def __call__(self, ev: OpEvent) -> None:
        op = ev.op
        cost = op.cost
        if cost == NO_ARITHMETIC:
            self.counts.no_arithmetic[ev.name] += 1
        elif cost == NOT_COUNTED:
            self.counts.not_counted[ev.name] += 1
        else:
            out = ev.first_out
            src = first_tensor(ev.args) if cost == REDUCTION else out
            level = self.level_of(src) if isinstance(src, torch.Tensor) else "-"
            self.counts.rows[(ev.module, level, ev.name, cost)] += int(amount(op, ev.func, ev.args, ev.kwargs, out))


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


def count_ops(model: torch.nn.Module, x: torch.Tensor | Sequence[torch.Tensor], max_level: int = 9,
              shortcuts: bool = True) -> OpCounts:
    """Run ``model(x)`` (or ``model(*x)``) once and count its ops by innermost module, level, operator.

    Levels are named from the first input's spatial size when it is 4-D (B, C, H, W); otherwise "-".
    ``shortcuts=False`` makes meta tensors go through torch's own meta kernels (slow).
    """
    first = x if isinstance(x, torch.Tensor) else x[0]
    counts = OpCounts()
    level_of = level_namer(tuple(first.shape[-2:]), max_level) if first.dim() == 4 else (lambda t: "-")
    trace(model, x, [_Count(counts, level_of)], shortcuts=shortcuts)
    return counts
