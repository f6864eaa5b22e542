"""Batches without worker processes: a training batch is a pure function of (seed, step).

Deriving each step's sample indices from ``(seed, step)`` and each sample's augmentation from
``(seed, step, position in the batch)`` makes a resumed run draw exactly the batches an uninterrupted
run would, with no generator state to checkpoint, and lets process ``rank`` of ``world_size`` draw its
own contiguous slice of the global batch without drawing the others' (multi-process training).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

from escale.data.base import DatasetError, SegDataset

Transform = Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


def step_generator(seed: int, step: int) -> torch.Generator:
    """A generator seeded from (seed, step) alone: it draws the step's sample indices."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(step)) % (2**63 - 1))


def sample_generator(seed: int, step: int, position: int) -> torch.Generator:
    """A generator seeded from (seed, step, position in the global batch): it draws that sample's augmentation."""
    return torch.Generator().manual_seed(((int(seed) * 1_000_003 + int(step)) * 8_191 + 1 + int(position))
                                         % (2**63 - 1))


def rank_slice(batch_size: int, rank: int, world_size: int) -> range:
    """Positions of the global batch that process ``rank`` of ``world_size`` draws (a contiguous block)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise DatasetError(f"rank: {rank} is not a rank of a world of {world_size} processes")
    if batch_size % world_size:
        raise DatasetError(f"batch_size: {batch_size} is not divisible by the {world_size} processes "
                           "(allowed: a multiple of the process count)")
    per = batch_size // world_size
    return range(rank * per, (rank + 1) * per)


def train_batch(dataset: SegDataset, batch_size: int, seed: int, step: int, transform: Transform,
                rank: int = 0, world_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images (b, 3, H, W) in [0, 1], labels (b, H, W) int64)`` for training step ``step``.

    ``batch_size`` is the global batch; process ``rank`` of ``world_size`` gets its slice of
    ``b = batch_size / world_size`` samples (all of them in one process).
    """
    positions = rank_slice(batch_size, rank, world_size)
    indices = torch.randint(0, len(dataset), (batch_size,), generator=step_generator(seed, step)).tolist()
    pairs = [transform(*dataset[indices[i]], sample_generator(seed, step, i)) for i in positions]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


def eval_batches(dataset: SegDataset, num_images: int,
                 batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``num_images`` items (all when fewer) in order, unaugmented, in batches (equal sizes only)."""
    n = min(num_images, len(dataset))
    for start in range(0, n, batch_size):
        pairs = [dataset[i] for i in range(start, min(n, start + batch_size))]
        yield torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


def resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(3, H, W) -> (3, *size), bilinear as in training's scale jitter; unchanged when already that size."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image[None], size=tuple(size), mode="bilinear", align_corners=False)[0]


def eval_items(dataset: SegDataset, num_images: int, batch_size: int, eval_size: tuple[int, int] | None,
               rank: int = 0, world_size: int = 1) -> Iterator[tuple[torch.Tensor, list[torch.Tensor]]]:
    """Evaluation batches: ``(images (B, 3, *eval_size), labels at their own size)``, labels never resized.

    Of the first ``num_images`` items, process ``rank`` of ``world_size`` takes every ``world_size``-th
    (``rank``, ``rank + world_size``, ...), so the processes score disjoint images. Without ``eval_size``
    images keep their size and a batch only holds images of one size.
    """
    mine = range(rank, min(num_images, len(dataset)), world_size)
    images: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    for i in mine:
        image, label = dataset[i]
        image = resize_image(image, eval_size) if eval_size is not None else image
        if images and (len(images) == batch_size or image.shape != images[0].shape):
            yield torch.stack(images), labels
            images, labels = [], []
        images.append(image)
        labels.append(label)
    if images:
        yield torch.stack(images), labels
