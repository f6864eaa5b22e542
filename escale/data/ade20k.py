"""ADE20K (SceneParsing, 150 classes) in its official layout; label 0 ("other") is ignored.

    ROOT/ADEChallengeData2016/images/{training,validation}/ADE_{train,val}_XXXXXXXX.jpg
    ROOT/ADEChallengeData2016/annotations/{training,validation}/ADE_{train,val}_XXXXXXXX.png

``ROOT`` may also be the ``ADEChallengeData2016`` folder itself. Annotation value k in 1..150 becomes
train id k-1, 0 becomes 255 (ignore); a value above 150 is an error.
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

NUM_CLASSES = 150
FOLDER = "ADEChallengeData2016"
SPLIT_DIRS = {"train": "training", "val": "validation"}
IMAGE_EXTS = (".jpg", ".jpeg", ".png")
LUT = build_lut({k: k - 1 for k in range(1, NUM_CLASSES + 1)}, valid=[0])
# Class names follow objectInfo150.csv (first name of each entry).
CLASS_NAMES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand",
    "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
    "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle",
    "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven",
    "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake",
    "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray",
    "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator",
    "glass", "clock", "flag",
)
assert len(CLASS_NAMES) == NUM_CLASSES


class ADE20K(FileSegDataset):
    name = "ade20k"
    class_names = CLASS_NAMES

    def __init__(self, root: str | Path | None, split: str = "train", size: tuple[int, int] | None = None) -> None:
        self.split = canonical_split(split)
        super().__init__(find_pairs(root, self.split), LUT, size)


def find_pairs(root: str | Path | None, split: str) -> list[tuple[Path, Path]]:
    """Every (image, annotation) pair of ``split``, sorted; a missing annotation is an error."""
    if root is None:
        raise DatasetError(f"data_root: ade20k needs --data-root (the folder holding {FOLDER}/)")
    base = require_dir(Path(root), "data_root")
    if base.name != FOLDER and (base / FOLDER).is_dir():
        base = base / FOLDER
    sub = SPLIT_DIRS[split]
    img_dir = require_dir(base / "images" / sub, f"ade20k split {split!r}")
    ann_dir = require_dir(base / "annotations" / sub, f"ade20k split {split!r}")
    return pair_images(
        "ade20k", [p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_EXTS],
        lambda img: ann_dir / (img.stem + ".png"), "annotation",
        f"no images ({', '.join(IMAGE_EXTS)}) in {str(img_dir)!r}")


def _factory(split: str, root: str | Path | None, size: tuple[int, int] | None, seed: int) -> ADE20K:
    return ADE20K(root, split=split, size=size)


register_dataset("ade20k", _factory)
