"""Datasets: the procedural ``synthetic`` default (no files) and Cityscapes / ADE20K in their official layouts.

>>> from escale.data import make_dataset
>>> ds = make_dataset("synthetic", split="val", size=(128, 256), seed=0)
>>> image, label = ds[0]        # (3, 128, 256) float in [0, 1], (128, 256) int64 train ids / 255
>>> far = make_dataset("synthetic:task=cue,context_distance=0.6", size=(512, 256))  # options ride in the name
"""

from escale.data import ade20k, cityscapes, synthetic  # noqa: F401 - registers the datasets
from escale.data.base import (
    IGNORE_INDEX,
    DatasetError,
    SegDataset,
    dataset_names,
    make_dataset,
    register_dataset,
)
from escale.data.loader import eval_batches, eval_items, rank_slice, train_batch
from escale.data.transforms import TrainTransform, normalize

__all__ = [
    "IGNORE_INDEX", "DatasetError", "SegDataset", "TrainTransform", "dataset_names", "eval_batches", "eval_items",
    "make_dataset", "normalize", "rank_slice", "register_dataset", "train_batch",
]
