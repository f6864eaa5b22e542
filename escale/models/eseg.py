"""ESeg: encoder -> pooled extra levels -> BiFPN -> level fusion -> head (paper Figure 3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from escale.models.bifpn import BiFPN
from escale.models.encoder import Encoder
from escale.models.head import LevelFusion, SegHead
from escale.models.meta import meta_init
from escale.spec import ESegSpec

ENCODER_MAX_LEVEL = 5  # encoders give P1..P5; higher levels are pooled from P5


class ExtraLevels(nn.Module):
    """P6..P_max from P5 by 3x3 stride-2 average pooling, keeping P5's channels (section 3.1)."""

    def __init__(self, levels: tuple[int, ...]) -> None:
        super().__init__()
        self.levels = levels

    def forward(self, p5: torch.Tensor) -> dict[int, torch.Tensor]:
        out, x = {}, p5
        for lv in self.levels:
            x = F.avg_pool2d(x, kernel_size=3, stride=2, padding=1, count_include_pad=False)
            out[lv] = x  # (B, C5, ceil(H/2^lv), ceil(W/2^lv))
        return out


class ESeg(nn.Module):
    """An ESeg model; ``forward(x)`` returns logits ``(B, num_classes, H, W)`` for any input H, W."""

    def __init__(self, spec: ESegSpec) -> None:
        super().__init__()
        self.spec = spec
        dec = spec.decoder
        top = min(dec.max_level, ENCODER_MAX_LEVEL)
        enc_levels = tuple(range(min(dec.min_level, top), top + 1))
        self.encoder = Encoder(spec.encoder, enc_levels)
        self.extra = ExtraLevels(tuple(range(ENCODER_MAX_LEVEL + 1, dec.max_level + 1)))
        widths = {lv: self.encoder.channels[min(lv, ENCODER_MAX_LEVEL)] for lv in dec.levels}
        self.decoder = BiFPN(dec.levels, widths, dec.channels, dec.repeats, spec.encoder.act)
        self.fusion = LevelFusion(len(dec.levels))
        self.head = SegHead(dec.channels, spec.num_classes, spec.encoder.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels = self.spec.decoder.levels
        feats = self.encoder(x)  # {l: (B, C_l, H/2^l, W/2^l)} for encoder levels
        if self.extra.levels:
            feats.update(self.extra(feats[ENCODER_MAX_LEVEL]))
        feats = self.decoder({lv: feats[lv] for lv in levels})  # {l: (B, C, H/2^l, W/2^l)}
        fused = self.fusion([feats[lv] for lv in levels])  # (B, C, H/2^min, W/2^min)
        return self.head(fused, (x.shape[-2], x.shape[-1]))  # (B, K, H, W)

    def fold_for_inference(self) -> ESeg:
        """Fold the softmax level weights into constants (section 3.1); returns self in eval mode."""
        self.eval()
        self.fusion.fold()
        return self


def build_model(spec: ESegSpec, device: str | torch.device | None = None) -> ESeg:
    """Build an ESeg model from a spec. ``device='meta'`` builds shapes only (no memory, no weights).

    A meta build skips weight initialisation (see :func:`escale.models.meta.meta_init`); its state dict has the same keys,
    shapes and dtypes as a real build's.
    """
    if not isinstance(spec, ESegSpec):
        raise TypeError(f"build_model expects an ESegSpec, got {type(spec).__name__}")
    if device is not None and torch.device(device).type == "meta":
        if spec.encoder.checkpoint:  # weights are meaningless on meta; shapes are all we need
            from dataclasses import replace

            spec = replace(spec, encoder=replace(spec.encoder, checkpoint=None))
        with meta_init():
            return ESeg(spec)
    model = ESeg(spec)
    return model.to(device) if device is not None else model
