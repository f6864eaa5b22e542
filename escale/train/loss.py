"""Online hard example mining (OHEM) cross-entropy, as HRNet/OCRNet use it for Cityscapes.

Pixels whose predicted probability of the true class is below ``thresh`` are kept; when fewer than
``min_kept`` are, the ``min_kept`` hardest (highest-loss) valid pixels are kept instead. The loss is
the mean over kept pixels; ignored pixels never count.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from escale.data.base import IGNORE_INDEX


def ohem_cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX,
                       thresh: float = 0.7, min_kept_frac: float = 1 / 16) -> torch.Tensor:
    """OHEM loss for (B, K, H, W) logits and (B, H, W) targets; ``min_kept = min_kept_frac * valid``."""
    pixel_loss = F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="none").flatten()
    valid = target.flatten() != ignore_index
    losses = pixel_loss[valid]
    if losses.numel() == 0:
        return logits.sum() * 0.0  # keeps the graph; nothing to learn from this batch
    min_kept = max(1, min(losses.numel(), int(losses.numel() * min_kept_frac)))
    hard = losses[losses > -torch.log(torch.tensor(thresh, device=losses.device))]  # p_true < thresh
    if hard.numel() < min_kept:
        hard = torch.topk(losses, min_kept, sorted=False).values
    return hard.mean()


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Plain mean cross-entropy over valid pixels (OHEM off)."""
    return F.cross_entropy(logits.float(), target, ignore_index=ignore_index)
