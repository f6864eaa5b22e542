"""Prediction (paper section 3.1): upsample every level to P_min, softmax-weighted sum, head, resize."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from escale.models.bifpn import SeparableConvBN
from escale.models.encoder import ACT_LAYERS


class LevelFusion(nn.Module):
    """O = sum_i softmax(w)_i * Upsample(P_i), with w initialised to 1.0.

    After training, :meth:`fold` replaces the softmax by its fixed values ("we can get rid of the
    softmax function"): the forward pass then is a plain weighted sum.
    """

    def __init__(self, num_levels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_levels))
        self.register_buffer("folded", None)

    @torch.no_grad()
    def fold(self) -> None:
        """Freeze softmax(w) into a buffer used for inference."""
        self.folded = torch.softmax(self.weight.detach(), dim=0).clone()

    def unfold(self) -> None:
        self.folded = None

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[-2:]
        w = self.folded if self.folded is not None else torch.softmax(self.weight, dim=0)
        out = feats[0] * w[0]  # (B, C, H/2^min, W/2^min)
        for i in range(1, len(feats)):
            up = F.interpolate(feats[i], size=size, mode="bilinear", align_corners=False)
            out = out + up * w[i]
        return out


class SegHead(nn.Module):
    """Class logits at P_min, bilinearly resized to the input size.

    The paper does not spell the head out; this is EfficientDet's class head with one repeat:
    separable 3x3 conv + BN + act, then a separable 3x3 predictor (with bias) to ``num_classes``.
    With it ESeg-S/M/L land within 2% of the paper's FLOPs (34.5B / 112B / 343B); a 1x1
    classifier alone falls ~5% short, three repeats (EfficientDet-D0) overshoot by ~8%.
    """

    def __init__(self, channels: int, num_classes: int, act: str) -> None:
        super().__init__()
        self.conv = SeparableConvBN(channels)
        self.act = ACT_LAYERS[act]()
        self.predict = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),
            nn.Conv2d(channels, num_classes, 1, bias=True),
        )

    def forward(self, x: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
        logits = self.predict(self.act(self.conv(x)))  # (B, K, H/2^min, W/2^min)
        return F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False)  # (B, K, H, W)
