"""Weight initialisation of the decoder and head: torch's defaults, or EfficientDet's.

``efficientdet``: as effdet (Ross Wightman's port of the TF EfficientDet, ``_init_weight``): BiFPN
convolutions Glorot-uniform over the average fan (depthwise fans divided by the groups), head
convolutions variance-scaling normal (std = sqrt(1 / fan_in)), biases 0, BN weight 1 / bias 0,
and BN momentum 0.01 (torch convention; TF's 0.99) with eps 1e-3. effdet's class-head bias prior
(-log 99) belongs to its sigmoid focal loss and is not used for softmax segmentation. The encoder
keeps timm's EfficientNet initialisation either way.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from escale.errors import SpecError

INITS = ("default", "efficientdet")
BN_MOMENTUM, BN_EPS = 0.01, 1e-3


def _fans(w: torch.Tensor, groups: int) -> tuple[int, int]:
    receptive = w[0][0].numel() if w.dim() > 2 else 1
    return w.size(1) * receptive, w.size(0) * receptive // groups


def _glorot_uniform_(w: torch.Tensor, groups: int) -> None:
    fan_in, fan_out = _fans(w, groups)
    limit = math.sqrt(3.0 / max(1.0, (fan_in + fan_out) / 2.0))
    nn.init.uniform_(w, -limit, limit)


def _variance_scaling_(w: torch.Tensor, groups: int) -> None:
    fan_in, _ = _fans(w, groups)
    nn.init.normal_(w, std=math.sqrt(1.0 / max(1.0, fan_in)))


@torch.no_grad()
def init_decoder(model: nn.Module, scheme: str = "default") -> nn.Module:
    """Re-initialise ``model.decoder`` and ``model.head`` (an ESeg) by ``scheme``; returns the model."""
    if scheme not in INITS:
        raise SpecError(f"init: {scheme!r} is unknown (allowed: {', '.join(INITS)})")
    if scheme == "default":
        return model
    for part, conv_init in ((model.decoder, _glorot_uniform_), (model.head, _variance_scaling_)):
        for m in part.modules():
            if isinstance(m, nn.Conv2d):
                conv_init(m.weight, m.groups)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.fill_(1.0)
                m.bias.zero_()
                m.momentum, m.eps = BN_MOMENTUM, BN_EPS
    return model
