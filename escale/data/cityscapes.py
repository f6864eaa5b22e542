"""Cityscapes in its official layout, labelIds mapped to the 19 evaluation train ids (255 = ignore).

    ROOT/leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png
    ROOT/gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png

The id -> trainId table is cityscapesScripts' ``labels.py`` (a test compares it with the installed
``cityscapesscripts``, which escale does not need at run time); every other id in 0..33 is ignored and
a value above 33 is an error (e.g. a ``labelTrainIds`` or colour file put in the wrong place).
"""

from __future__ import annotations

from pathlib import Path

from escale.data.base import (
    DatasetError,
    FileSegDataset,
    build_lut,
    canonical_split,
    pair_images,
    register_dataset,
    require_dir,
)

CLASS_NAMES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
               "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
               "motorcycle", "bicycle")
# labelId -> trainId (cityscapesScripts/helpers/labels.py); ids 0..33 exist, the rest are ignored.
ID_TO_TRAIN_ID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
                  26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
NUM_IDS = 34
IMG_SUFFIX = "_leftImg8bit.png"
LBL_SUFFIX = "_gtFine_labelIds.png"
LUT = build_lut(ID_TO_TRAIN_ID, valid=range(NUM_IDS))


class Cityscapes(FileSegDataset):
    name = "cityscapes"
    class_names = CLASS_NAMES

    def __init__(self, root: str | Path | None, split: str = "train", size: tuple[int, int] | None = None) -> None:
        self.split = canonical_split(split, {"test": "test"})
        super().__init__(find_pairs(root, self.split), LUT, size)


def find_pairs(root: str | Path | None, split: str) -> list[tuple[Path, Path]]:
    """Every (image, labelIds) pair of ``split``, sorted; a missing label file is an error."""
    if root is None:
        raise DatasetError("data_root: cityscapes needs --data-root (the folder holding leftImg8bit/ and gtFine/)")
    root = require_dir(Path(root), "data_root")
    img_dir = require_dir(root / "leftImg8bit" / split, f"cityscapes split {split!r}")
    lbl_dir = require_dir(root / "gtFine" / split, f"cityscapes split {split!r}")
    return pair_images(
        "cityscapes", list(img_dir.glob(f"*/*{IMG_SUFFIX}")),
        lambda img: lbl_dir / img.parent.name / (img.name[: -len(IMG_SUFFIX)] + LBL_SUFFIX), "label",
        f"no '*{IMG_SUFFIX}' images under {str(img_dir)!r}/<city>/")


def _factory(split: str, root: str | Path | None, size: tuple[int, int] | None, seed: int) -> Cityscapes:
    return Cityscapes(root, split=split, size=size)


register_dataset("cityscapes", _factory)
