"""The ``paper-trend`` accuracy objective: a Cityscapes-mIoU *estimate* from the paper's FLOPs trend.

(Called ``proxy`` before; ``--accuracy proxy`` still works and says so once.) For instant screening
(no training, microseconds per candidate) a candidate's accuracy is estimated from two published
trends, and every number it produces is labelled ``accuracy_objective="paper-trend"``:

1. **Size.** mIoU grows linearly in ln(FLOPs) within a family. Fitted by least squares to the six
   presets: Cityscapes val mIoU (single scale, no extra data) from the paper -- ESeg-S/M/L 80.1 /
   81.6 / 82.6 (Table 4), ESeg-Lite-S/M/L 76.0 / 78.6 / 80.1 (Figure 6 and the text, 1024x2048) --
   against their multiply-adds at 1024x2048 as escale counts them. Candidates with the prediction
   head at P2 use the ESeg fit, at P3 or above the ESeg-Lite fit (the Lite models' base level).
2. **Levels.** Capping the pyramid below P9 costs mIoU as in Table 1 (ESeg-S): P2-P5 -1.8,
   P2-P7 -0.6, P2-P9 0; levels in between are interpolated linearly.

Within a family it is a monotone function of MACs, so it cannot see what training would show (block
type, squeeze-excite, activation, depth vs width at equal FLOPs): it ranks candidates by "most compute
that fits the budget", the usual first screen of hardware-aware search. Use ``--accuracy short-train``
for measured mIoU (benchmarks/bench_search.py reports how the two rank the same candidates).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from escale.spec import ESegSpec

OBJECTIVE = "paper-trend"
# preset: (GMACs at 1024x2048 counted by escale.profile, paper Cityscapes val mIoU %)
PAPER_POINTS: dict[str, tuple[float, float]] = {
    "ESeg-S": (33.95, 80.1), "ESeg-M": (110.56, 81.6), "ESeg-L": (340.1, 82.6),          # Table 4
    "ESeg-Lite-S": (17.16, 76.0), "ESeg-Lite-M": (42.74, 78.6), "ESeg-Lite-L": (114.88, 80.1),  # Fig. 6, text
}
LEVEL_PENALTY = {5: -1.8, 7: -0.6, 9: 0.0}  # Table 1: P2-P5 78.3, P2-P7 79.5, P2-P9 80.1 mIoU
PAPER_PIXELS = 1024 * 2048


def _fit(names: tuple[str, ...]) -> tuple[float, float]:
    """Least-squares (intercept, slope) of mIoU on ln(GMACs) over the named presets."""
    xs = [math.log(PAPER_POINTS[n][0]) for n in names]
    ys = [PAPER_POINTS[n][1] for n in names]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return my - slope * mx, slope


FITS = {"eseg": _fit(("ESeg-S", "ESeg-M", "ESeg-L")),
        "eseg-lite": _fit(("ESeg-Lite-S", "ESeg-Lite-M", "ESeg-Lite-L"))}


@dataclass(frozen=True)
class ProxyResult:
    """A paper-trend mIoU estimate (%) and how it was obtained."""

    miou: float
    gmacs_at_1024x2048: float
    fit: str
    level_penalty: float
    accuracy_objective: str = OBJECTIVE


def level_penalty(max_level: int) -> float:
    """mIoU change (%) from capping the pyramid at ``max_level`` instead of P9 (Table 1, interpolated)."""
    lv = min(max(max_level, 5), 9)
    lo = max(k for k in LEVEL_PENALTY if k <= lv)
    hi = min(k for k in LEVEL_PENALTY if k >= lv)
    if lo == hi:
        return LEVEL_PENALTY[lo]
    t = (lv - lo) / (hi - lo)
    return LEVEL_PENALTY[lo] + t * (LEVEL_PENALTY[hi] - LEVEL_PENALTY[lo])


def proxy_miou(spec: ESegSpec, macs: int, input_size: tuple[int, int]) -> ProxyResult:
    """Paper-trend mIoU estimate of ``spec`` from its multiply-adds ``macs`` counted at ``input_size`` (H, W)."""
    h, w = input_size
    gmacs = macs / 1e9 * PAPER_PIXELS / (h * w)  # MACs scale with pixels (exact to <0.1% for ESeg)
    fit = "eseg" if spec.decoder.min_level <= 2 else "eseg-lite"
    a, b = FITS[fit]
    pen = level_penalty(spec.decoder.max_level)
    miou = a + b * math.log(max(gmacs, 1e-3)) + pen
    return ProxyResult(miou=round(min(max(miou, 0.0), 100.0), 3), gmacs_at_1024x2048=gmacs, fit=fit,
                       level_penalty=pen)


trend_miou = proxy_miou  # the objective's current name
