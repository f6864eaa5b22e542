"""Batches without worker processes: a training batch is a pure function of (seed, step).

Deriving each step's sample indices and augmentation from ``(seed, step)`` makes a resumed run draw
exactly the batches an uninterrupted run would, with no generator state to checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from escale.data.base import SegDataset

Transform = Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


def step_generator(seed: int, step: int) -> torch.Generator:
    """A generator seeded from (seed, step) alone."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(step)) % (2**63 - 1))


def train_batch(dataset: SegDataset, batch_size: int, seed: int, step: int,
                transform: Transform) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images (B, 3, H, W) in [0, 1], labels (B, H, W) int64)`` for training step ``step``."""
    gen = step_generator(seed, step)
    indices = torch.randint(0, len(dataset), (batch_size,), generator=gen).tolist()
    pairs = [transform(*dataset[i], gen) for i in indices]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


def eval_batches(dataset: SegDataset, num_images: int,
                 batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``num_images`` items (all when fewer) in order, unaugmented, in batches."""
    n = min(num_images, len(dataset))
    for start in range(0, n, batch_size):
        pairs = [dataset[i] for i in range(start, min(n, start + batch_size))]
        yield torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
