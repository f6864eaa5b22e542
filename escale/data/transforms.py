"""Training augmentation (paper section 4.1): random horizontal flip, scale jitter, random crop.

The scale is relative to the image as the dataset gives it: file datasets give the files' own
resolution (the paper's "random scale 0.5-2.0 of the full image"), never an image resized first.

All functions take ``image`` (3, H, W) float and ``label`` (H, W) int64 tensors and a
``torch.Generator`` so a run is reproducible from its seed. Crops pad with 0 (image) and the ignore
index (label) when the scaled image is smaller than the crop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from escale.data.base import IGNORE_INDEX, DatasetError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def hflip(image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return image.flip(-1), label.flip(-1)


def rescale(image: torch.Tensor, label: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize by ``scale``: bilinear for the image, nearest for the label."""
    if scale == 1.0:
        return image, label
    h, w = label.shape
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
    label = F.interpolate(label[None, None].float(), size=size, mode="nearest")[0, 0].long()
    return image, label


def random_crop(image: torch.Tensor, label: torch.Tensor, size: tuple[int, int],
                gen: torch.Generator, ignore_index: int = IGNORE_INDEX) -> tuple[torch.Tensor, torch.Tensor]:
    """A random ``size`` (H, W) window; pads bottom/right first if the input is smaller."""
    ch, cw = size
    h, w = label.shape
    ph, pw = max(0, ch - h), max(0, cw - w)
    if ph or pw:
        image = F.pad(image, (0, pw, 0, ph), value=0.0)
        label = F.pad(label, (0, pw, 0, ph), value=ignore_index)
        h, w = label.shape
    y = int(torch.randint(0, h - ch + 1, (1,), generator=gen))
    x = int(torch.randint(0, w - cw + 1, (1,), generator=gen))
    return image[:, y:y + ch, x:x + cw], label[y:y + ch, x:x + cw]


@dataclass(frozen=True)
class TrainTransform:
    """Flip with probability 0.5, scale by U(scale_range), crop to ``crop_size`` (H, W) pixels."""

    crop_size: tuple[int, int]
    scale_range: tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    ignore_index: int = IGNORE_INDEX

    def __post_init__(self) -> None:
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise DatasetError(f"scale_range: {self.scale_range!r} is invalid (allowed: 0 < low <= high)")

    def __call__(self, image: torch.Tensor, label: torch.Tensor,
                 gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if self.flip and float(torch.rand((), generator=gen)) < 0.5:
            image, label = hflip(image, label)
        lo, hi = self.scale_range
        if hi > lo:
            image, label = rescale(image, label, lo + (hi - lo) * float(torch.rand((), generator=gen)))
        elif lo != 1.0:
            image, label = rescale(image, label, lo)
        if tuple(label.shape) != tuple(self.crop_size):
            image, label = random_crop(image, label, self.crop_size, gen, self.ignore_index)
        return image, label


def normalize(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> ImageNet-standardised input for the model."""
    mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images - mean) / std
