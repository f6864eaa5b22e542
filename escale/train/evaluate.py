"""Single-scale evaluation scored at the labels' own resolution.

Each validation image is resized as a whole to ``eval_size`` (bilinear; unchanged when it already
has that size), the model's logits are resized bilinearly to the **label's** size and the arg-max
is compared with the label pixel for pixel: labels are never resized, so every labelled pixel is
counted once (Cityscapes' and ADE20K's official scripts score at this resolution). In a multi-process
run each process scores every ``world_size``-th image and the confusion matrices are summed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from escale.data import eval_items, normalize
from escale.data.base import SegDataset
from escale.train.distributed import LOCAL, DistContext
from escale.train.metrics import ConfusionMatrix


def logits_at(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(K, h, w) logits -> (K, *size), bilinear (align_corners=False, as the model's own upsampling)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits[None].float(), size=tuple(size), mode="bilinear", align_corners=False)[0]


@torch.no_grad()
def evaluate(model: nn.Module, dataset: SegDataset, num_images: int, batch_size: int, device: torch.device,
             amp: bool = False, eval_size: tuple[int, int] | None = None,
             dist: DistContext = LOCAL) -> ConfusionMatrix:
    """Confusion matrix of ``model`` over the first ``num_images`` of ``dataset`` at the labels' resolution.

    ``eval_size`` (H, W) is the size the whole image is resized to before the forward pass (None: its
    own size). The matrix holds the pixels of all processes.
    """
    model.eval()
    cm = ConfusionMatrix(dataset.num_classes, dataset.ignore_index)
    for images, labels in eval_items(dataset, num_images, batch_size, eval_size, dist.rank, dist.world_size):
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            logits = model(normalize(images.to(device)))  # (B, K, *eval_size)
        for one, label in zip(logits, labels, strict=True):
            cm.update(logits_at(one, tuple(label.shape)).argmax(0).cpu(), label)  # (h, w) at the label's size
    dist.sum_(cm.counts, device)
    return cm
