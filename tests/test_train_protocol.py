"""Paper protocol on real layouts: jitter/crop at the images' own resolution, evaluation at the labels' resolution.

Fixture trees in the official layouts (leftImg8bit/gtFine, ADEChallengeData2016) hold odd image sizes
(37x61 and 50x75 in one split). Images encode their label in the red channel (R = 10 * train id + 5), so an
"oracle" model that reads it back must score 100% when logits are mapped to the labels' pixels correctly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import escale
import escale.train
from escale.data import TrainTransform, make_dataset, train_batch
from escale.data.loader import eval_items
from escale.train import PROTOCOLS, evaluate, protocol_for
from escale.train.evaluate import logits_at

SIZES = ((37, 61), (50, 75))
PIXELS = sum(h * w for h, w in SIZES)
POLE_ID, POLE = 17, 5  # Cityscapes labelId / trainId of "pole": the one-pixel stripe
ROAD_ID, CAR_ID, SKY_ID = 7, 26, 23  # train ids 0, 13, 10
TRAIN_ID = {ROAD_ID: 0, CAR_ID: 13, SKY_ID: 10, POLE_ID: POLE}


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _scene(h: int, w: int, stripe: bool) -> tuple[np.ndarray, np.ndarray]:
    """(labelIds (h, w), RGB image (h, w, 3) whose red channel encodes the train id)."""
    ids = np.full((h, w), ROAD_ID, dtype=np.uint8)
    ids[: h // 3] = SKY_ID
    ids[h // 2:, w // 4: w // 2] = CAR_ID
    if stripe:
        ids[:, w // 2 + 5] = POLE_ID  # one pixel wide, the full height
    rgb = np.random.default_rng(h).integers(0, 256, (h, w, 3), dtype=np.uint8)
    rgb[..., 0] = np.vectorize(lambda i: 10 * TRAIN_ID[i] + 5)(ids).astype(np.uint8)
    return ids, rgb


@pytest.fixture()
def cityscapes(tmp_path: Path) -> Path:
    for split, cities in (("train", ("aachen", "bochum")), ("val", ("frankfurt", "lindau"))):
        for (h, w), city in zip(SIZES, cities, strict=True):
            stem = f"{city}_000000_000019"
            ids, rgb = _scene(h, w, stripe=(h, w) == SIZES[0])
            _png(tmp_path / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", rgb)
            _png(tmp_path / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", ids)
    return tmp_path


@pytest.fixture()
def ade(tmp_path: Path) -> Path:
    base = tmp_path / "ADEChallengeData2016"
    for sub, prefix in (("training", "ADE_train"), ("validation", "ADE_val")):
        for i, (h, w) in enumerate(SIZES, start=1):
            ann = np.full((h, w), 3, dtype=np.uint8)  # class 3 ("sky", train id 2)
            ann[: h // 4] = 0  # "other": ignored
            ann[:, w // 3] = 94  # a one-pixel stripe of class 94 ("pole", train id 93)
            (base / "images" / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(_scene(h, w, False)[1]).save(base / "images" / sub / f"{prefix}_{i:08d}.jpg")
            _png(base / "annotations" / sub / f"{prefix}_{i:08d}.png", ann)
    return tmp_path


class Oracle(nn.Module):
    """Reads the train id back from the (normalised) red channel: logits (B, K, H, W) peaked at it."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.centres = torch.arange(num_classes, dtype=torch.float32) * 10 + 5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        red = (x[:, 0] * 0.229 + 0.485) * 255  # (B, H, W) back in 0-255
        return -((red[:, None] - self.centres.view(1, -1, 1, 1)) ** 2)


def test_files_are_read_at_their_own_resolution_and_cropped_with_ignore_padding(cityscapes):
    ds = make_dataset("cityscapes", "train", cityscapes)  # no size: the files' own pixels
    assert ds.native_resolution and [tuple(ds[i][1].shape) for i in range(2)] == list(SIZES)
    t = TrainTransform((64, 128), scale_range=(1.0, 1.0))
    for step in range(4):
        images, labels = train_batch(ds, 2, seed=0, step=step, transform=t)
        assert images.shape == (2, 3, 64, 128) and labels.shape == (2, 64, 128)
        for image, label in zip(images, labels, strict=True):
            h, w = next(s for s in SIZES if (label[: s[0], : s[1]] != 255).all() and (label[s[0]:] == 255).all())
            assert (label[:, w:] == 255).all() and (image[:, h:] == 0).all()  # not resized to 64x128 first
    t = TrainTransform((24, 24), scale_range=(0.5, 2.0))
    images, labels = train_batch(ds, 2, seed=0, step=0, transform=t)
    assert set(labels.unique().tolist()) <= {0, 2, 5, 10, 13, 255}  # nearest scaling keeps train ids


def test_oracle_scores_100_percent_at_the_labels_resolution(cityscapes):
    val = make_dataset("cityscapes", "val", cityscapes)
    model = Oracle(19)
    for eval_size in (None, (74, 122)):  # own size; the whole image resized (logits resized back)
        cm = evaluate(model, val, 4, 2, torch.device("cpu"), eval_size=eval_size)
        assert int(cm.counts.sum()) == PIXELS and int(cm.counts[POLE].sum()) == SIZES[0][0]
        assert cm.pixel_acc == 1.0 if eval_size is None else cm.pixel_acc > 0.85  # resized: class borders blur
    assert evaluate(model, val, 4, 2, torch.device("cpu")).miou == 1.0
    small = evaluate(model, val, 4, 2, torch.device("cpu"), eval_size=(16, 32))
    assert int(small.counts.sum()) == PIXELS and int(small.counts[POLE].sum()) == SIZES[0][0]  # the stripe survives


def test_eval_items_keep_labels_and_shard_images(cityscapes):
    val = make_dataset("cityscapes", "val", cityscapes)
    batches = list(eval_items(val, 4, 4, None))  # no eval size: a batch only holds one image size
    assert [tuple(b[0].shape) for b in batches] == [(1, 3, 37, 61), (1, 3, 50, 75)]
    (images, labels), = eval_items(val, 4, 4, (32, 64))
    assert images.shape == (2, 3, 32, 64) and [tuple(lb.shape) for lb in labels] == list(SIZES)
    assert [tuple(lb.shape) for _, lbs in eval_items(val, 4, 4, (32, 64), rank=1, world_size=2) for lb in lbs] == [
        SIZES[1]]
    assert logits_at(torch.zeros(3, 4, 4), (4, 4)).shape == (3, 4, 4)
    assert logits_at(torch.zeros(3, 4, 4), (37, 61)).shape == (3, 37, 61)


def test_cityscapes_run_records_crop_eval_size_and_pixels_scored(tiny_spec, cityscapes):
    rec = escale.train.train(tiny_spec, dataset="cityscapes", data_root=cityscapes, steps=2, input_size=(64, 128),
                             eval_size=(32, 64), batch_size=2, eval_images=4)
    assert rec.crop_size == rec.input_size == [64, 128] and rec.eval_size == [32, 64] and rec.eval_pixels == PIXELS
    assert rec.num_classes == 19 and sum(map(sum, rec.confusion_matrix)) == PIXELS
    assert sum(rec.confusion_matrix[POLE]) == SIZES[0][0]
    assert (rec.ema, rec.ohem, rec.lr, rec.weight_decay, rec.scale_range) == (True, True, 0.08, 5e-5, [0.5, 2.0])
    assert rec.to_dict()["eval_pixels"] == PIXELS


def test_ade20k_evaluates_at_520_and_scores_at_the_annotations_resolution(tiny_spec, ade):
    rec = escale.train.train(tiny_spec, dataset="ade20k", data_root=ade, steps=1, input_size=(64, 64), batch_size=2,
                             eval_images=2)
    assert rec.crop_size == [64, 64] and rec.eval_size == [520, 520] and rec.ema and rec.num_classes == 150
    valid = sum(h * w - (h // 4) * (w - 1) for h, w in SIZES)  # annotation 0 is ignored (the stripe crosses it)
    assert rec.eval_pixels == valid and sum(rec.confusion_matrix[93]) == sum(h for h, _ in SIZES)


def test_protocol_table_follows_the_paper_and_keeps_synthetic_defaults(tiny_spec):
    cs, ade = PROTOCOLS["cityscapes"], PROTOCOLS["ade20k"]
    assert (cs.crop_size, cs.eval_size, ade.crop_size, ade.eval_size) == ((512, 1024), (1024, 2048), (520, 520),
                                                                          (520, 520))
    assert all((p.lr, p.weight_decay, p.ohem, p.ema, p.scale_range) == (0.08, 5e-5, True, True, (0.5, 2.0))
               for p in (cs, ade))
    synthetic = protocol_for(make_dataset("synthetic"))
    assert (synthetic.crop_size, synthetic.eval_size, synthetic.ema, synthetic.ohem) == ((128, 256), None, False, True)
    rec = escale.train.train(tiny_spec, steps=1, input_size=(64, 128), batch_size=2, eval_images=1)
    assert (rec.ema, rec.scale_range, rec.eval_size, rec.eval_pixels) == (False, [1.0, 1.0], [64, 128], 64 * 128)
