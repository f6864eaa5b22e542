"""Small nn.Module factories for ``escale profile module:model_zoo:<name>`` in the tests."""

from __future__ import annotations

import torch
from torch import nn


def tiny_cnn() -> nn.Module:
    """conv 3->8 (3x3, bias) -> ReLU -> conv 8->4 (1x1, bias): 260 params; MACs in closed form."""
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 1))


class CumsumNet(nn.Module):
    """A 1x1 conv followed by a cumulative sum, an op escale has no formula for."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).cumsum(dim=-1)


def cumsum_net() -> nn.Module:
    return CumsumNet()


def not_a_module() -> str:
    return "nope"
