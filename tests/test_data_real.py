"""Cityscapes and ADE20K loaders on tiny fixtures written in exactly the official layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from escale.data import DatasetError, make_dataset
from escale.errors import RegistryError

# Cityscapes labelIds -> trainIds, by hand from cityscapesScripts' labels.py
CS_IDS = np.array([[7, 8, 11, 12, 13, 17, 19, 20],
                   [21, 22, 23, 24, 25, 26, 27, 28],
                   [31, 32, 33, 0, 1, 6, 9, 30]], dtype=np.uint8)
CS_TRAIN = np.array([[0, 1, 2, 3, 4, 5, 6, 7],
                     [8, 9, 10, 11, 12, 13, 14, 15],
                     [16, 17, 18, 255, 255, 255, 255, 255]])


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture()
def cityscapes(tmp_path: Path) -> Path:
    for split, city, frame in (("train", "aachen", "000000_000019"), ("train", "bochum", "000001_000019"),
                               ("val", "frankfurt", "000000_000294")):
        stem = f"{city}_{frame}"
        _png(tmp_path / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", _rgb(3, 8))
        _png(tmp_path / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", CS_IDS)
        _png(tmp_path / "gtFine" / split / city / f"{stem}_gtFine_color.png", _rgb(3, 8))  # must be ignored
    return tmp_path


def test_cityscapes_maps_label_ids_to_the_19_train_ids(cityscapes):
    ds = make_dataset("cityscapes", split="train", root=cityscapes)
    assert len(ds) == 2 and ds.num_classes == 19 and ds.class_names[13] == "car"
    image, label = ds[0]
    assert image.shape == (3, 3, 8) and image.dtype == torch.float32
    np.testing.assert_array_equal(label.numpy(), CS_TRAIN)
    assert ds.pairs[0][0].name == "aachen_000000_000019_leftImg8bit.png"
    assert len(make_dataset("cityscapes", split="val", root=cityscapes)) == 1


def test_cityscapes_resize_uses_nearest_labels(cityscapes):
    image, label = make_dataset("cityscapes", split="val", root=cityscapes, size=(6, 16))[0]
    assert image.shape == (3, 6, 16) and label.shape == (6, 16)
    np.testing.assert_array_equal(label.numpy()[::2, ::2], CS_TRAIN)  # 2x nearest repeats each pixel


def test_cityscapes_errors_name_the_problem(cityscapes, tmp_path):
    with pytest.raises(DatasetError, match="data-root"):
        make_dataset("cityscapes", root=None)
    with pytest.raises(DatasetError, match="does not exist"):
        make_dataset("cityscapes", root=tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="split 'test'"):
        make_dataset("cityscapes", split="test", root=cityscapes)
    with pytest.raises(DatasetError, match="split"):
        make_dataset("cityscapes", split="bogus", root=cityscapes)
    (cityscapes / "gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelIds.png").unlink()
    with pytest.raises(DatasetError, match="missing"):
        make_dataset("cityscapes", split="val", root=cityscapes)
    bad = CS_IDS.copy()
    bad[0, 0] = 34  # not a Cityscapes id (e.g. a labelTrainIds/colour file in the wrong place)
    _png(cityscapes / "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png", bad)
    with pytest.raises(DatasetError, match=r"unexpected label values \[34\]"):
        make_dataset("cityscapes", root=cityscapes)[0]


@pytest.fixture()
def ade(tmp_path: Path) -> Path:
    base = tmp_path / "ADEChallengeData2016"
    ann = np.array([[0, 1, 2, 150], [75, 0, 149, 3]], dtype=np.uint8)
    for sub, prefix, n in (("training", "ADE_train", 2), ("validation", "ADE_val", 1)):
        for i in range(1, n + 1):
            img_dir = base / "images" / sub
            img_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_rgb(2, 4, i)).save(img_dir / f"{prefix}_{i:08d}.jpg")
            _png(base / "annotations" / sub / f"{prefix}_{i:08d}.png", ann)
    return tmp_path


def test_ade20k_shifts_classes_and_ignores_zero(ade):
    ds = make_dataset("ade20k", split="train", root=ade)
    assert len(ds) == 2 and ds.num_classes == 150 and ds.class_names[0] == "wall" and ds.class_names[-1] == "flag"
    image, label = ds[1]
    assert image.shape == (3, 2, 4)
    np.testing.assert_array_equal(label.numpy(), [[255, 0, 1, 149], [74, 255, 148, 2]])
    # the ADEChallengeData2016 folder itself is accepted as the root, and "validation" as the split
    assert len(make_dataset("ade20k", split="validation", root=ade / "ADEChallengeData2016")) == 1


def test_ade20k_errors(ade):
    base = ade / "ADEChallengeData2016"
    _png(base / "annotations/training/ADE_train_00000001.png", np.array([[151, 0]], dtype=np.uint8))
    Image.fromarray(_rgb(1, 2)).save(base / "images/training/ADE_train_00000001.jpg")
    with pytest.raises(DatasetError, match=r"unexpected label values \[151\] \(allowed: 0..150\)"):
        make_dataset("ade20k", root=ade)[0]
    (base / "annotations/validation/ADE_val_00000001.png").unlink()
    with pytest.raises(DatasetError, match="missing"):
        make_dataset("ade20k", split="val", root=ade)
    with pytest.raises(DatasetError, match="data-root"):
        make_dataset("ade20k")


def test_unknown_dataset_lists_the_registered_names():
    with pytest.raises(RegistryError, match="synthetic, cityscapes, ade20k|ade20k, cityscapes, synthetic"):
        make_dataset("imagenet")
    with pytest.raises(DatasetError, match="size"):
        make_dataset("synthetic", size=(64, 0))


def test_cityscapes_label_table_equals_cityscapesscripts():
    """escale keeps its own 34-entry table (no runtime dependency); it must equal the official labels.py."""
    from cityscapesscripts.helpers.labels import labels  # installed by `make test` (--no-deps)

    from escale.data.cityscapes import CLASS_NAMES, LUT, NUM_IDS

    official = {lb.id: (255 if lb.trainId in (255, -1) else lb.trainId) for lb in labels if lb.id >= 0}
    assert {i: int(LUT[i]) for i in range(NUM_IDS)} == official and max(official) == NUM_IDS - 1
    assert (LUT[NUM_IDS:] == -1).all()  # any other value is an error, not silently ignored
    names = {lb.trainId: lb.name for lb in labels if lb.trainId not in (255, -1)}
    assert tuple(names[i] for i in range(len(CLASS_NAMES))) == CLASS_NAMES and len(names) == 19
