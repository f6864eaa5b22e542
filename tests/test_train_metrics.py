"""Confusion matrix, IoU, mIoU and pixel accuracy against hand-computed values; OHEM against its definition."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from escale.train import (
    ConfusionMatrix,
    confusion_matrix,
    iou_per_class,
    mean_iou,
    ohem_cross_entropy,
    pixel_accuracy,
)

TARGET = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 1]])
PRED = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 0]])
# rows = truth, cols = prediction; the ignored pixel (255 -> predicted 2) is not counted
CM = np.array([[1, 1, 0],
               [1, 2, 0],
               [1, 0, 1]])


def test_confusion_matrix_by_hand():
    np.testing.assert_array_equal(confusion_matrix(PRED, TARGET, 3).numpy(), CM)


def test_iou_miou_and_pixel_accuracy_by_hand():
    # class 0: TP 1, FP 2 (col) , FN 1 (row) -> 1/4; class 1: 2/(2+1+1) = 1/2; class 2: 1/(1+0+1) = 1/2
    np.testing.assert_allclose(iou_per_class(CM), [0.25, 0.5, 0.5])
    assert mean_iou(CM) == pytest.approx((0.25 + 0.5 + 0.5) / 3)
    assert pixel_accuracy(CM) == pytest.approx(4 / 7)


def test_absent_and_never_predicted_class_is_left_out_of_the_mean():
    cm = np.zeros((4, 4), dtype=np.int64)
    cm[:3, :3] = CM
    ious = iou_per_class(cm)
    assert math.isnan(ious[3]) and mean_iou(cm) == pytest.approx(mean_iou(CM))
    cm[3, 0] = 2  # present but never right: IoU 0 counts
    assert mean_iou(cm) == pytest.approx((1 / 6 + 0.5 + 0.5 + 0.0) / 4)
    assert math.isnan(mean_iou(np.zeros((2, 2)))) and math.isnan(pixel_accuracy(np.zeros((2, 2))))


def test_accumulator_takes_logits_and_adds_batches():
    logits = F.one_hot(PRED, 3).permute(2, 0, 1)[None].float()  # (1, 3, 2, 4)
    acc = ConfusionMatrix(3)
    acc.update(logits, TARGET[None])
    acc.update(PRED[None], TARGET[None])
    np.testing.assert_array_equal(acc.counts.numpy(), 2 * CM)
    assert acc.miou == pytest.approx(mean_iou(CM)) and acc.pixel_acc == pytest.approx(4 / 7)
    with pytest.raises(ValueError, match="0..2"):
        confusion_matrix(torch.tensor([0]), torch.tensor([3]), 3)


def test_ohem_keeps_pixels_below_the_probability_threshold():
    # 4 pixels, 2 classes: p(true) = sigmoid(margin) for margins 3, 2, 0, -1 -> 0.95, 0.88, 0.5, 0.27
    margins = torch.tensor([3.0, 2.0, 0.0, -1.0])
    logits = torch.stack([margins, torch.zeros(4)], 0)[None, :, None, :]  # (1, 2, 1, 4)
    target = torch.zeros(1, 1, 4, dtype=torch.long)
    per_pixel = F.softplus(-margins)  # -log sigmoid(m)
    loss = ohem_cross_entropy(logits, target, thresh=0.7, min_kept_frac=0.25)
    assert float(loss) == pytest.approx(float(per_pixel[2:].mean()))  # the two hard pixels
    loss = ohem_cross_entropy(logits, target, thresh=0.7, min_kept_frac=0.75)  # 3 must be kept
    assert float(loss) == pytest.approx(float(per_pixel[1:].mean()))
    target[0, 0, 3] = 255  # ignored pixels never count
    loss = ohem_cross_entropy(logits, target, thresh=0.7, min_kept_frac=0.1)
    assert float(loss) == pytest.approx(float(per_pixel[2]))


def test_record_context_metrics_from_its_confusion_matrix():
    from escale.train import TrainRecord

    cm = [[0] * 8 for _ in range(8)]
    cm[6][6], cm[6][7], cm[7][7], cm[7][6], cm[7][3] = 30, 10, 20, 20, 50  # car rows; 50 missed as road
    fields = dict(name="x", spec_id="0", dataset="synthetic", input_size=[64, 64], steps=1, batch_size=1, lr=0.1,
                  weight_decay=0.0, seed=0, device="cpu", amp=False, ema=False, ohem=True, miou=0.0, pixel_acc=0.0,
                  eval_images=1, final_loss=1.0, train_seconds=1.0, eval_seconds=0.1, images_per_second=1.0,
                  num_classes=8, iou_per_class={"car-stopped": 0.5, "car-moving": 0.25}, confusion_matrix=cm)
    rec = TrainRecord(**fields)
    assert rec.context_accuracy == pytest.approx(50 / 80) and rec.context_miou == pytest.approx(0.375)
    assert rec.to_dict()["context_accuracy"] == pytest.approx(0.625)
    other = TrainRecord(**{**fields, "dataset": "cityscapes"})
    assert other.context_accuracy is None and other.context_miou is None
