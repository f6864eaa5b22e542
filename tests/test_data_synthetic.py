"""The procedural dataset: deterministic, any size, and classes that only context (far, or local in the control)
separates; options in the dataset name."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from escale.data import DatasetError, make_dataset
from escale.data.synthetic import (
    BAND_BLUE,
    CAR_MOVING,
    CAR_STOPPED,
    CLASS_NAMES,
    CUE,
    LIGHT,
    MAX_CONTEXT_DISTANCE,
    MIN_CONTEXT_DISTANCE,
    OBJECT_BLUE,
    OBJECT_RED,
    OBJECT_TOP,
    SyntheticCue,
    SyntheticStreets,
    dataset_name,
    render_cue_scene,
    render_scene,
)
from escale.errors import RegistryError


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


# --- options in the name; task=cue (far cue and local control) ------------------------------------------
def _rows(label: np.ndarray, classes: tuple[int, ...]) -> np.ndarray:
    return np.flatnonzero(np.isin(label, classes).any(1))


def test_plain_name_keeps_the_street_scenes_and_options_select_the_cue_task():
    assert type(make_dataset("synthetic", size=(64, 64))) is SyntheticStreets
    assert type(make_dataset("synthetic:task=streets", size=(64, 64))) is SyntheticStreets
    ds = make_dataset("synthetic:task=cue", split="val", size=(64, 32))
    assert isinstance(ds, SyntheticCue) and ds.num_classes == 4 and ds.context_distance == MAX_CONTEXT_DISTANCE
    assert ds.context_classes == ("object-red-cue", "object-blue-cue")
    local = make_dataset(dataset_name("cue", 0.0), size=(64, 32))
    assert dataset_name("cue", 0.0) == "synthetic:task=cue,context_distance=0" and local.context_distance == 0.0
    assert dataset_name() == "synthetic"
    image, label = local[0]
    assert image.shape == (3, 64, 32) and label.shape == (64, 32) and int(label.max()) <= 3


@pytest.mark.parametrize(("name", "match"), [
    ("synthetic:task=cars", r"task: 'cars' is unknown \(allowed: streets, cue\)"),
    ("synthetic:task=cue,distance=0.3", r"option 'distance' is unknown \(allowed: task, context_distance, band_label\)"),
    ("synthetic:task=cue,context_distance=0.7", r"context_distance: '0.7' is not a number or a range LOW..HIGH in 0..0.6"),
    ("synthetic:task=cue,context_distance=0.5..0.1", r"context_distance: '0.5..0.1' is not a number or a range"),
    ("synthetic:task=cue,context_distance=0..0.7", "context_distance"),
    ("synthetic:task=cue,context_distance=0..0.3..0.6", "context_distance"),
    ("synthetic:task=cue,context_distance=..0.6", "context_distance"),
    ("synthetic:task=cue,context_distance=-0.1", "context_distance"),
    ("synthetic:task=cue,context_distance=nan", "context_distance"),
    ("synthetic:task=cue,context_distance=far", "context_distance"),
    ("synthetic:context_distance=0.3", "only task=cue takes it"),
    ("synthetic:band_label=colour", r"band_label: only task=cue takes it \(task is streets\)"),
    ("synthetic:task=cue,band_label=red", r"band_label: 'red' is unknown \(allowed: shared, colour\)"),
    ("synthetic:task", "not a new KEY=VALUE option"),
    ("synthetic:task=cue,task=streets", "not a new KEY=VALUE option"),
    ("synthetic:", "not a new KEY=VALUE option"),
    ("cityscapes:fine=1", "cityscapes takes no options"),
])
def test_bad_options_are_one_line_errors(name, match):
    with pytest.raises(DatasetError, match=match) as err:
        make_dataset(name, size=(64, 64))
    assert "\n" not in str(err.value)


def test_unknown_dataset_with_options_still_lists_the_names():
    with pytest.raises(RegistryError, match="synthetic"):
        make_dataset("synthetc:task=cue")


def test_cue_scenes_are_determined_by_seed_split_and_index():
    a = make_dataset("synthetic:task=cue", size=(64, 32), seed=3)
    b = make_dataset("synthetic:task=cue", size=(64, 32), seed=3)
    assert torch.equal(a[5][0], b[5][0]) and torch.equal(a[5][1], b[5][1])
    assert not torch.equal(a[5][0], a[6][0])
    assert not torch.equal(a[5][0], make_dataset("synthetic:task=cue", size=(64, 32), seed=4)[5][0])
    assert not torch.equal(a[5][0], make_dataset("synthetic:task=cue", split="val", size=(64, 32), seed=3)[5][0])


@pytest.mark.parametrize("distance", [0.6, 0.35, 0.0])
@pytest.mark.parametrize("h", [64, 200])
def test_the_cue_band_ends_exactly_the_stated_distance_above_the_objects(distance, h):
    for i in range(8):
        _, label, info = render_cue_scene((h, 48), np.random.SeedSequence([0, 0, i]), distance)
        cue_rows, obj_rows = _rows(label, (CUE,)), _rows(label, (OBJECT_RED, OBJECT_BLUE))
        assert (label[cue_rows] == CUE).all()  # a full-width band
        assert cue_rows.max() + 1 == info["cue_rows"][1] and obj_rows.min() == info["object_top"]
        assert obj_rows.min() - (cue_rows.max() + 1) == round(distance * h)  # rows strictly between them
        assert obj_rows.min() >= round(OBJECT_TOP[0] * h) and obj_rows.max() < round(0.98 * h) + 1


def test_local_control_puts_the_band_on_the_objects_and_only_the_band_moves_with_the_distance():
    for i in range(6):
        img_far, lbl_far, _ = render_cue_scene((96, 64), np.random.SeedSequence([1, 0, i]), 0.6)
        img_loc, lbl_loc, info = render_cue_scene((96, 64), np.random.SeedSequence([1, 0, i]), 0.0)
        objects = np.isin(lbl_loc, (OBJECT_RED, OBJECT_BLUE))
        assert (lbl_loc[info["object_top"] - 1] == CUE).all() and objects[info["object_top"]].any()
        moved = (lbl_far == CUE) | (lbl_loc == CUE)
        assert (lbl_far[~moved] == lbl_loc[~moved]).all() and (img_far[~moved] == img_loc[~moved]).all()


@pytest.mark.parametrize("distance", [0.6, 0.0])
def test_flipping_the_cue_changes_only_band_pixels_and_flips_every_object_label(distance):
    for i in range(6):
        ss = [2, 0, i]
        img_r, lbl_r, _ = render_cue_scene((80, 64), np.random.SeedSequence(ss), distance, red=True)
        img_b, lbl_b, _ = render_cue_scene((80, 64), np.random.SeedSequence(ss), distance, red=False)
        changed_px = (img_r != img_b).any(-1)
        assert changed_px.any() and (lbl_r[changed_px] == CUE).all()  # only the band looks different
        assert ((lbl_r == OBJECT_RED) == (lbl_b == OBJECT_BLUE)).all() and (lbl_r == OBJECT_RED).any()
        assert not (lbl_r == OBJECT_BLUE).any() and not (lbl_b == OBJECT_RED).any()
        others = ~np.isin(lbl_r, (OBJECT_RED, OBJECT_BLUE))
        assert (lbl_r[others] == lbl_b[others]).all()


def test_both_context_classes_occur_and_follow_the_band_colour():
    seen = set()
    for i in range(24):
        img, label, info = render_cue_scene((64, 32), np.random.SeedSequence([0, 1, i]), 0.6)
        objects = set(np.unique(label[np.isin(label, (OBJECT_RED, OBJECT_BLUE))]).tolist())
        assert objects == {OBJECT_RED if info["red"] else OBJECT_BLUE}
        band = img[label == CUE].astype(float).mean(0)  # (3,) mean RGB of the band
        assert (band[0] > band[2]) == info["red"]
        seen |= objects
    assert seen == {OBJECT_RED, OBJECT_BLUE}


def test_a_distance_range_draws_each_scene_its_own_distance_and_keeps_the_rest_of_the_scene():
    ds = make_dataset("synthetic:task=cue,context_distance=0.1..0.5", size=(100, 32))
    assert ds.context_distance == (0.1, 0.5) and dataset_name("cue", (0.1, 0.5)) == "synthetic:task=cue,context_distance=0.1..0.5"
    drawn = []
    for i in range(40):
        ss = [4, 0, i]
        _, label, info = render_cue_scene((100, 32), np.random.SeedSequence(ss), (0.1, 0.5))
        drawn.append(info["distance"])
        cue_rows, obj_rows = _rows(label, (CUE,)), _rows(label, (OBJECT_RED, OBJECT_BLUE))
        assert obj_rows.min() - (cue_rows.max() + 1) == round(info["distance"] * 100)
        _, fixed, _ = render_cue_scene((100, 32), np.random.SeedSequence(ss), info["distance"])
        assert (fixed == label).all()  # the same scene as the fixed distance the range drew
    assert 0.1 <= min(drawn) < 0.2 and 0.4 < max(drawn) <= 0.5 and len(set(drawn)) == 40
    _, a, info = render_cue_scene((100, 32), np.random.SeedSequence([4, 0, 0]), (0.3, 0.3))
    _, b, _ = render_cue_scene((100, 32), np.random.SeedSequence([4, 0, 0]), 0.3)
    assert info["distance"] == 0.3 and (a == b).all()


def test_colour_band_labels_name_the_band_colour_and_leave_the_pixels_alone():
    ds = make_dataset(dataset_name("cue", 0.3, "colour"), size=(80, 32))
    assert ds.num_classes == 5 and ds.class_names[BAND_BLUE] == "cue-blue" and ds.class_names[CUE] == "cue"
    assert make_dataset("synthetic:task=cue", size=(80, 32)).num_classes == 4  # shared: the class set before
    with pytest.raises(DatasetError, match=r"band_label: 'red' is unknown"):
        SyntheticCue(band_label="red")
    seen = set()
    for i in range(12):
        ss = [5, 0, i]
        img_c, lbl_c, info = render_cue_scene((80, 32), np.random.SeedSequence(ss), 0.3, band_label="colour")
        img_s, lbl_s, _ = render_cue_scene((80, 32), np.random.SeedSequence(ss), 0.3)
        assert (img_c == img_s).all()
        band = lbl_s == CUE
        assert (lbl_c[band] == (CUE if info["red"] else BAND_BLUE)).all() and (lbl_c[~band] == lbl_s[~band]).all()
        seen.add(info["red"])
    assert seen == {True, False}
    _, label = ds[0]
    assert int(label.max()) <= 4
