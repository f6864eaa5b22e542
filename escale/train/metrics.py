"""Single-scale segmentation metrics from a confusion matrix (rows: ground truth, columns: prediction).

IoU_c = TP / (TP + FP + FN); a class with TP + FP + FN = 0 (absent and never predicted) has no IoU
and is left out of the mean, as in the Cityscapes scripts. Pixel accuracy = trace / total.
Pixels labelled ``ignore_index`` are not counted.
"""

from __future__ import annotations

import numpy as np
import torch

from escale.data.base import IGNORE_INDEX


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """(K, K) int64 counts: ``cm[t, p]`` pixels of true class t predicted as p."""
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    keep = target != ignore_index
    t, p = target[keep].long(), pred[keep].long()
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
        raise ValueError(f"target values must be in 0..{num_classes - 1} or {ignore_index}")
    counts = torch.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).cpu()


def iou_per_class(cm: np.ndarray | torch.Tensor) -> np.ndarray:
    """IoU of each class in [0, 1]; NaN where the class is absent and never predicted."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(cm: np.ndarray | torch.Tensor) -> float:
    """Mean IoU in [0, 1] over the classes that have one (NaN when none do)."""
    ious = iou_per_class(cm)
    return float(np.nanmean(ious)) if np.isfinite(ious).any() else float("nan")


def pixel_accuracy(cm: np.ndarray | torch.Tensor) -> float:
    """Correct pixels / counted pixels, in [0, 1] (NaN when nothing was counted)."""
    cm = np.asarray(cm, dtype=np.float64)
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")


class ConfusionMatrix:
    """Accumulates a confusion matrix over batches of logits or predicted ids."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.counts = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """``pred``: (B, K, H, W) logits or (B, H, W) ids; ``target``: (B, H, W) ids."""
        if pred.dim() == target.dim() + 1:
            pred = pred.argmax(1)
        self.counts += confusion_matrix(pred, target, self.num_classes, self.ignore_index)

    @property
    def miou(self) -> float:
        return mean_iou(self.counts)

    @property
    def pixel_acc(self) -> float:
        return pixel_accuracy(self.counts)

    def ious(self) -> np.ndarray:
        return iou_per_class(self.counts)
