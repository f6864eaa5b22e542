"""Dataset interface, the name registry and the file-backed base shared by the Cityscapes/ADE20K loaders.

A dataset is indexable: ``ds[i] -> (image, label)`` with ``image`` a float32 tensor (3, H, W) in [0, 1]
and ``label`` an int64 tensor (H, W) of train ids in ``0..num_classes-1`` or ``IGNORE_INDEX``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from escale.errors import EscaleError
from escale.registry import Registry

IGNORE_INDEX = 255
SPLITS = ("train", "val")


class DatasetError(EscaleError, ValueError):
    """A dataset root, split, file pairing or label map is missing or malformed."""


class SegDataset:
    """Base class: subclasses set the attributes below and implement ``__len__``/``__getitem__``."""

    name: str = ""
    split: str = "train"
    class_names: tuple[str, ...] = ()
    ignore_index: int = IGNORE_INDEX
    # Scale jitter used for training when the caller does not choose one (paper section 4.1: 0.5-2.0).
    default_scale_range: tuple[float, float] = (0.5, 2.0)
    # True when items come at the files' own resolution (training scales and crops them, evaluation
    # scores at it); False when they are drawn or resized to a requested size (``synthetic``).
    native_resolution: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


def canonical_split(split: str, aliases: dict[str, str] | None = None) -> str:
    """``train``/``val`` (also ``training``/``validation``) -> ``train``/``val``."""
    table = {"train": "train", "training": "train", "val": "val", "validation": "val"}
    table.update(aliases or {})
    if split not in table:
        raise DatasetError(f"split: {split!r} is unknown (allowed: {', '.join(sorted(table))})")
    return table[split]


# --- registry ----------------------------------------------------------------------------------------
Factory = Callable[..., SegDataset]
_REGISTRY: Registry[Factory] = Registry("dataset", "dataset: ")


def register_dataset(name: str, factory: Factory) -> None:
    """Register ``factory(split=, root=, size=, seed=) -> SegDataset`` under ``name``; a factory that also
    takes ``options=`` (a dict of str -> str) accepts ``NAME:KEY=VALUE,...`` names (:func:`split_options`)."""
    _REGISTRY.add(name, factory)


def split_options(name: str) -> tuple[str, dict[str, str]]:
    """``"synthetic:task=cue,context_distance=0.6"`` -> ``("synthetic", {"task": "cue", "context_distance": "0.6"})``.

    Options ride in the name so that every API taking a dataset name (``escale.train(dataset=...)``,
    checkpoints, records) carries them unchanged.
    """
    base, sep, rest = name.partition(":")
    options: dict[str, str] = {}
    for item in rest.split(",") if sep else []:
        key, eq, value = (part.strip() for part in item.partition("="))
        if not (eq and key and value) or key in options:
            raise DatasetError(f"dataset: {item!r} in {name!r} is not a new KEY=VALUE option "
                               "(allowed form: NAME:KEY=VALUE,KEY=VALUE)")
        options[key] = value
    return base, options


def dataset_names() -> list[str]:
    return list(_REGISTRY)


def make_dataset(name: str, split: str = "train", root: str | Path | None = None,
                 size: tuple[int, int] | None = None, seed: int = 0) -> SegDataset:
    """Build a dataset by name: ``synthetic`` (no files), ``cityscapes`` or ``ade20k`` (``root`` required).

    ``size`` is (H, W) in pixels: the synthetic scenes are drawn at that size, real images and labels
    are resized to it (bilinear / nearest); ``None`` keeps their native size. ``seed`` only affects
    the synthetic dataset. ``name`` may carry options, ``NAME:KEY=VALUE,...`` (e.g.
    ``synthetic:task=cue,context_distance=0.6``), for datasets whose factory takes ``options=``.
    """
    name, options = split_options(name)
    factory = _REGISTRY[name]  # unknown name: one line listing the available ones
    if size is not None:
        if (not isinstance(size, (tuple, list)) or len(size) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
            raise DatasetError(f"size: {size!r} is not an (H, W) pair of positive integers")
        size = (int(size[0]), int(size[1]))
    if not options:
        return factory(split=split, root=root, size=size, seed=seed)
    if "options" not in inspect.signature(factory).parameters:
        raise DatasetError(f"dataset: {name} takes no options (given: {', '.join(options)})")
    return factory(split=split, root=root, size=size, seed=seed, options=options)


# --- file-backed datasets ------------------------------------------------------------------------------
def build_lut(mapping: dict[int, int], valid: Sequence[int]) -> np.ndarray:
    """A 256-entry lookup table: raw label value -> train id; -1 marks a value that must not occur."""
    lut = np.full(256, -1, dtype=np.int16)
    for v in valid:
        lut[v] = IGNORE_INDEX
    for raw, train_id in mapping.items():
        lut[raw] = train_id
    return lut


def apply_lut(raw: np.ndarray, lut: np.ndarray, source: str) -> np.ndarray:
    """Map a raw label array through ``lut``; unexpected values raise :class:`DatasetError`."""
    if raw.ndim != 2:
        raise DatasetError(f"{source}: label map has shape {raw.shape} (allowed: a single-channel H x W image)")
    if raw.size and (raw.min() < 0 or raw.max() > 255):
        raise DatasetError(f"{source}: label values {int(raw.min())}..{int(raw.max())} are outside 0..255")
    mapped = lut[raw.astype(np.int64)]
    if (mapped < 0).any():
        bad = sorted(int(v) for v in np.unique(raw[mapped < 0]))[:8]
        allowed = np.flatnonzero(lut >= 0)
        raise DatasetError(f"{source}: unexpected label values {bad} "
                           f"(allowed: {int(allowed.min())}..{int(allowed.max())})")
    return mapped.astype(np.int64)


class FileSegDataset(SegDataset):
    """Pairs of (image file, label file) read with PIL; labels mapped through a lookup table."""

    def __init__(self, pairs: list[tuple[Path, Path]], lut: np.ndarray, size: tuple[int, int] | None) -> None:
        self.pairs = pairs
        self.lut = lut
        self.size = size
        self.native_resolution = size is None  # training and evaluation want the files' own pixels

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        from PIL import Image

        img_path, lbl_path = self.pairs[index]
        with Image.open(img_path) as im:
            image = im.convert("RGB")
        with Image.open(lbl_path) as lb:
            label = lb.copy()
        if label.mode not in ("L", "P", "I", "I;16"):
            raise DatasetError(f"{lbl_path}: label image mode {label.mode!r} (allowed: single-channel L/P/I)")
        if image.size != label.size:
            raise DatasetError(f"{lbl_path}: label size {label.size} differs from image size {image.size}")
        if self.size is not None:
            h, w = self.size
            image = image.resize((w, h), Image.BILINEAR)
            label = label.resize((w, h), Image.NEAREST)
        raw = np.asarray(label)  # palette ("P") images: the indices are the labels
        target = apply_lut(raw, self.lut, str(lbl_path))
        pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)
        return pixels.float().div_(255.0), torch.from_numpy(target)  # (3, H, W), (H, W)


def pair_images(dataset: str, images: list[Path], label_of: Callable[[Path], Path], role: str,
                none_found: str) -> list[tuple[Path, Path]]:
    """(image, label) pairs for sorted ``images``; a missing label file or no image at all is one error line."""
    pairs = []
    for img in sorted(images):
        lbl = label_of(img)
        if not lbl.is_file():
            raise DatasetError(f"{dataset}: {str(lbl)!r} is missing (the {role} of {img.name})")
        pairs.append((img, lbl))
    if not pairs:
        raise DatasetError(f"{dataset}: {none_found}")
    return pairs


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{what}: {str(path)!r} does not exist or is not a directory")
    return path
