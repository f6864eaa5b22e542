"""Training and evaluation defaults per dataset (paper section 4.1), in one table.

Cityscapes and ADE20K follow the paper: SGD with momentum 0.9, lr 0.08, weight decay 5e-5, cosine
decay, OHEM, EMA of the weights; random scale 0.5-2.0 of the full-resolution image, a random crop
(512x1024 / 520x520) and flips; single-scale evaluation of the whole image at a stated size
(Cityscapes: its full 1024x2048; ADE20K: 520x520), logits resized to each label's own resolution.
The procedural ``synthetic`` dataset (and any other) keeps escale's earlier defaults: scenes drawn
at the input size, no jitter or crop, no EMA.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from escale.data.base import SegDataset


@dataclass(frozen=True)
class Protocol:
    """Defaults of one dataset; ``None`` sizes mean "the input size" (datasets drawn at a size)."""

    crop_size: tuple[int, int]  # (H, W) training crop (synthetic: the scene size)
    eval_size: tuple[int, int] | None  # (H, W) the whole image is resized to for evaluation
    lr: float = 0.08
    weight_decay: float = 5e-5
    ohem: bool = True
    ema: bool = False
    scale_range: tuple[float, float] | None = None  # None: the dataset's ``default_scale_range``
    schedule: str = "cosine"  # lr schedule (escale.train.trainer.SCHEDULES)
    note: str = ""


PAPER = Protocol(crop_size=(512, 1024), eval_size=(1024, 2048), ema=True, scale_range=(0.5, 2.0))
PROTOCOLS: dict[str, Protocol] = {
    "cityscapes": replace(PAPER, note="paper 4.1: crop 512x1024 of the 0.5-2.0x scaled full image; "
                                      "evaluation at the full 1024x2048"),
    "ade20k": replace(PAPER, crop_size=(520, 520), eval_size=(520, 520),
                      note="paper 4.1: 520x520 for training and inference"),
}
DEFAULT = Protocol(crop_size=(128, 256), eval_size=None)  # synthetic and unknown datasets


def protocol_for(dataset: SegDataset) -> Protocol:
    """The defaults for ``dataset`` (looked up by its class's ``name``, so ``synthetic:...`` options don't matter)."""
    return PROTOCOLS.get(dataset.name, DEFAULT)
