"""BiFPN decoder over levels min_level..max_level, generated as EfficientDet generates it.

Each layer has a top-down path (P_max-1 .. P_min) then a bottom-up path (P_min+1 .. P_max). A node
resamples its inputs to its level (1x1 conv + BN where the channel count differs, then nearest
upsampling or 3x3 stride-2 max pooling), fuses them with fast-normalised weights
(``w_i / (eps + sum_j w_j)`` with ``w = relu(w)``), and applies act -> depthwise-separable 3x3
conv -> BN (the EfficientDet order).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from escale.models.encoder import ACT_LAYERS


class ConvBN(nn.Sequential):
    """1x1 conv (no bias) + BN: channel projection for a raw encoder feature."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))


class SeparableConvBN(nn.Sequential):
    """Depthwise 3x3 + pointwise 1x1 (no biases) + BN."""

    def __init__(self, channels: int) -> None:
        super().__init__(
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
        )


def resample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a feature to ``size`` (H, W): nearest upsampling or 3x3/2 max pooling, never by scale factor."""
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    if h > size[0]:  # one level finer -> coarser: ceil(h/2) matches the encoder's stride-2 sizes
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        return x if tuple(x.shape[-2:]) == tuple(size) else F.interpolate(x, size=size, mode="nearest")
    return F.interpolate(x, size=size, mode="nearest")


class FuseNode(nn.Module):
    """One BiFPN node: resample inputs, fast-normalised weighted sum, act -> separable conv -> BN."""

    def __init__(self, in_channels: list[int], channels: int, act: str, eps: float = 1e-4) -> None:
        super().__init__()
        self.proj = nn.ModuleList(nn.Identity() if c == channels else ConvBN(c, channels) for c in in_channels)
        self.weight = nn.Parameter(torch.ones(len(in_channels)))
        self.eps = eps
        self.act = ACT_LAYERS[act]()
        self.conv = SeparableConvBN(channels)

    def forward(self, inputs: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        xs = [resample(p(x), size) for p, x in zip(self.proj, inputs, strict=True)]  # each (B, C, *size)
        w = F.relu(self.weight)
        w = w / (w.sum() + self.eps)
        out = xs[0] * w[0]
        for i in range(1, len(xs)):
            out = out + xs[i] * w[i]
        return self.conv(self.act(out))


class BiFPNLayer(nn.Module):
    """One top-down + bottom-up pass over ``levels``; ``in_channels[l]`` is the input width at level l."""

    def __init__(self, levels: tuple[int, ...], in_channels: dict[int, int], channels: int, act: str) -> None:
        super().__init__()
        self.levels = levels
        lo, hi = levels[0], levels[-1]
        c_in, c = in_channels, channels
        # top-down: td_l = fuse(in_l, up(td_{l+1})), with td_hi = in_hi
        self.top_down = nn.ModuleDict()
        for lv in range(hi - 1, lo - 1, -1):
            above = c_in[hi] if lv + 1 == hi else c
            self.top_down[f"P{lv}"] = FuseNode([c_in[lv], above], c, act)
        # bottom-up: out_l = fuse(in_l, td_l, down(out_{l-1})); out_hi = fuse(in_hi, down(out_{hi-1}))
        self.bottom_up = nn.ModuleDict()
        for lv in range(lo + 1, hi + 1):
            ins = [c_in[lv], c] if lv == hi else [c_in[lv], c, c]
            self.bottom_up[f"P{lv}"] = FuseNode(ins, c, act)

    def forward(self, feats: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        lo, hi = self.levels[0], self.levels[-1]
        size = {lv: tuple(feats[lv].shape[-2:]) for lv in self.levels}
        td = {hi: feats[hi]}
        for lv in range(hi - 1, lo - 1, -1):
            td[lv] = self.top_down[f"P{lv}"]([feats[lv], td[lv + 1]], size[lv])  # (B, C, H/2^lv, W/2^lv)
        out = {lo: td[lo]}
        for lv in range(lo + 1, hi + 1):
            ins = [feats[lv], out[lv - 1]] if lv == hi else [feats[lv], td[lv], out[lv - 1]]
            out[lv] = self.bottom_up[f"P{lv}"](ins, size[lv])
        return out


class BiFPN(nn.Module):
    """Lateral 1x1 projections to ``channels``, then ``repeats`` BiFPN layers.

    Lateral projections: EfficientDet projects a raw feature separately for each first-layer node
    that reads it; here each level is projected once (1x1 conv + BN) and shared. The paper's Table 1
    decides it: this gives 6.41M / 6.64M / 6.86M params for ESeg-S over P2-P5 / P2-P7 / P2-P9 (paper:
    6.4M / 6.6M / 6.9M), per-node projections give 6.46M / 6.74M / 7.03M.
    """

    def __init__(self, levels: tuple[int, ...], in_channels: dict[int, int], channels: int, repeats: int,
                 act: str) -> None:
        super().__init__()
        self.lateral = nn.ModuleDict(
            {f"P{lv}": nn.Identity() if in_channels[lv] == channels else ConvBN(in_channels[lv], channels)
             for lv in levels})
        widths = dict.fromkeys(levels, channels)
        self.layers = nn.ModuleList(BiFPNLayer(levels, widths, channels, act) for _ in range(repeats))

    def forward(self, feats: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        feats = {lv: self.lateral[f"P{lv}"](x) for lv, x in feats.items()}  # each (B, C, H/2^lv, W/2^lv)
        for layer in self.layers:
            feats = layer(feats)
        return feats
