"""Result of one short-schedule training run, and the progress events sent while it runs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TrainProgress:
    """Sent to the ``progress`` callback after every training step and once before evaluation."""

    phase: str  # "train" or "eval"
    step: int  # steps done so far
    steps: int  # total steps of the run
    loss: float  # this step's training loss
    lr: float  # learning rate used for this step
    images_per_second: float  # training throughput of this session so far


@dataclass
class TrainRecord:
    """Accuracy and cost of a run. ``miou``/``pixel_acc`` are fractions in [0, 1] over ``eval_images``
    validation images, each resized as a whole to ``eval_size`` (single scale) and scored at its
    label's own resolution: ``eval_pixels`` labelled pixels (ignored ones excluded) were counted.
    ``crop_size`` (= ``input_size``) is the training crop. ``train_seconds`` is wall time over all
    sessions of the run (resumes add up); ``images_per_second`` is this session's end-to-end training
    throughput over all processes (data drawing and augmentation included, evaluation excluded).
    """

    name: str
    spec_id: str
    dataset: str
    input_size: list[int]
    steps: int
    batch_size: int
    lr: float
    weight_decay: float
    seed: int
    device: str
    amp: bool
    ema: bool
    ohem: bool
    miou: float
    pixel_acc: float
    eval_images: int
    final_loss: float
    train_seconds: float
    eval_seconds: float
    images_per_second: float
    num_classes: int
    iou_per_class: dict[str, float | None] = field(default_factory=dict)
    loss_history: list[float] = field(default_factory=list)
    confusion_matrix: list[list[int]] = field(default_factory=list)  # [true][predicted] pixel counts
    resumed_from_step: int = 0
    checkpoint: str | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # e.g. "P8-P9 are 1x1 at 128x256 (...)"
    crop_size: list[int] = field(default_factory=list)  # (H, W) training crop
    eval_size: list[int] | None = None  # (H, W) whole images were resized to; None: their own size
    eval_pixels: int = 0  # labelled pixels scored, at the labels' own resolution
    scale_range: list[float] = field(default_factory=list)  # training scale jitter (of the image's resolution)
    warmup_steps: int = 0  # warm-up steps before the decay
    schedule: str = "cosine"  # lr schedule: cosine (timm, linear warm-up) or onecycle (torch OneCycleLR)
    world_size: int = 1  # training processes (torchrun); batch_size is the global batch
    sync_bn: bool = False  # BatchNorm statistics over the global batch
    init: str = "default"  # decoder/head initialisation (see escale.train.init)
    skipped_steps: int = 0  # updates the AMP GradScaler skipped (inf/NaN gradients); EMA did not advance

    def to_dict(self) -> dict[str, Any]:
        """Every field plus the derived ``context_miou`` / ``context_accuracy`` (None outside synthetic)."""
        return {**dataclasses.asdict(self), "context_miou": self.context_miou,
                "context_accuracy": self.context_accuracy}

    @property
    def context_accuracy(self) -> float | None:
        """Synthetic only: of the car pixels predicted as some car class, the fraction given the right one
        (stopped vs moving; 0.5 is chance). It isolates the use of far-away context from car segmentation.
        """
        from escale.data.synthetic import CAR_MOVING, CAR_STOPPED

        if self.dataset != "synthetic" or not self.confusion_matrix:
            return None
        cm = self.confusion_matrix
        right = cm[CAR_STOPPED][CAR_STOPPED] + cm[CAR_MOVING][CAR_MOVING]
        total = right + cm[CAR_STOPPED][CAR_MOVING] + cm[CAR_MOVING][CAR_STOPPED]
        return right / total if total else None

    @property
    def context_miou(self) -> float | None:
        """Mean IoU over the synthetic dataset's context-only classes (None for other datasets)."""
        from escale.data.synthetic import CONTEXT_CLASSES

        vals = [self.iou_per_class.get(c) for c in CONTEXT_CLASSES]
        if self.dataset != "synthetic" or any(v is None for v in vals):
            return None
        return sum(vals) / len(vals)
