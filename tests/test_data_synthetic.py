"""The procedural dataset: deterministic, any size, and car classes that only far-away context separates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from escale.data import DatasetError, make_dataset
from escale.data.synthetic import (
    CAR_MOVING,
    CAR_STOPPED,
    CLASS_NAMES,
    LIGHT,
    MIN_CONTEXT_DISTANCE,
    SyntheticStreets,
    render_scene,
)


def test_same_seed_and_index_give_identical_scenes_and_others_differ():
    a = make_dataset("synthetic", split="train", size=(64, 128), seed=3)
    b = make_dataset("synthetic", split="train", size=(64, 128), seed=3)
    assert torch.equal(a[5][0], b[5][0]) and torch.equal(a[5][1], b[5][1])
    assert not torch.equal(a[5][0], a[6][0])
    assert not torch.equal(a[5][0], make_dataset("synthetic", split="train", size=(64, 128), seed=4)[5][0])
    assert not torch.equal(a[5][0], make_dataset("synthetic", split="val", size=(64, 128), seed=3)[5][0])


@pytest.mark.parametrize("size", [(64, 128), (37, 53), (512, 512)])
def test_any_size_gives_image_and_label_of_that_size(size):
    image, label = SyntheticStreets("val", size=size)[0]
    assert image.shape == (3, *size) and image.dtype == torch.float32
    assert label.shape == size and label.dtype == torch.int64
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert set(label.unique().tolist()) <= set(range(len(CLASS_NAMES)))


def test_split_aliases_length_and_bad_arguments():
    ds = make_dataset("synthetic", split="validation", size=(64, 64))
    assert ds.split == "val" and len(ds) == 1000 and ds.num_classes == 8
    with pytest.raises(DatasetError, match="split"):
        make_dataset("synthetic", split="test")
    with pytest.raises(DatasetError, match="too small"):
        make_dataset("synthetic", size=(8, 64))
    with pytest.raises(IndexError):
        ds[1000]


def test_car_label_is_set_by_its_lanes_light_far_above():
    h, w = 96, 192
    seen = set()
    for i in range(12):
        _, label, info = render_scene((h, w), np.random.SeedSequence([0, 0, i]))
        bounds, red = info["lanes"], info["red"]
        for k, (x0, x1) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            lane = label[:, x0:x1]
            cars = np.isin(lane, (CAR_STOPPED, CAR_MOVING))
            assert set(np.unique(lane[cars]).tolist()) <= {CAR_STOPPED if red[k] else CAR_MOVING}
            seen |= set(np.unique(lane[cars]).tolist())
        light_rows = np.flatnonzero((label == LIGHT).any(1))
        car_rows = np.flatnonzero(np.isin(label, (CAR_STOPPED, CAR_MOVING)).any(1))
        gap = car_rows.min() - light_rows.max()
        assert gap >= h / 4 and gap >= round((MIN_CONTEXT_DISTANCE - 0.03) * h)  # "a quarter or more"
    assert seen == {CAR_STOPPED, CAR_MOVING}


def test_flipping_a_light_changes_only_lamp_pixels_and_that_lanes_car_labels():
    ss = np.random.SeedSequence([7, 0, 1])
    _, _, info = render_scene((64, 128), ss)
    red = np.array(info["red"])
    flipped = red.copy()
    flipped[0] = not flipped[0]
    img_a, lbl_a, _ = render_scene((64, 128), np.random.SeedSequence([7, 0, 1]), states=red)
    img_b, lbl_b, _ = render_scene((64, 128), np.random.SeedSequence([7, 0, 1]), states=flipped)
    changed_px = (img_a != img_b).any(-1)
    assert changed_px.any() and (lbl_a[changed_px] == LIGHT).all()  # only the lamp looks different
    changed_lbl = lbl_a != lbl_b
    assert changed_lbl.any()
    assert set(np.unique(lbl_a[changed_lbl]).tolist()) | set(np.unique(lbl_b[changed_lbl]).tolist()) == {
        CAR_STOPPED, CAR_MOVING}
    x0, x1 = info["lanes"][0], info["lanes"][1]
    assert not changed_lbl[:, x1:].any() and changed_lbl[:, x0:x1].any()


def test_wrong_number_of_forced_lights_is_an_error():
    _, _, info = render_scene((64, 128), np.random.SeedSequence([0, 0, 0]))
    with pytest.raises(DatasetError, match="lanes"):
        render_scene((64, 128), np.random.SeedSequence([0, 0, 0]), states=[True] * (len(info["red"]) + 1))
