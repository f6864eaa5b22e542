"""Augmentation and batching: flip, scale, crop with ignore padding; batches reproducible from (seed, step)."""

from __future__ import annotations

import pytest
import torch

from escale.data import DatasetError, TrainTransform, make_dataset, normalize, train_batch
from escale.data.loader import eval_batches
from escale.data.transforms import hflip, random_crop, rescale


def _pair(h: int = 4, w: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    label = torch.arange(h * w).reshape(h, w) % 7
    return torch.stack([label.float() / 10] * 3), label


def test_hflip_mirrors_image_and_label_together():
    image, label = _pair()
    fi, fl = hflip(image, label)
    assert torch.equal(fl[:, 0], label[:, -1]) and torch.equal(fi[0], fl.float() / 10)


def test_rescale_resizes_labels_by_nearest():
    image, label = _pair(4, 6)
    si, sl = rescale(image, label, 2.0)
    assert si.shape == (3, 8, 12) and sl.shape == (8, 12) and sl.dtype == torch.int64
    assert torch.equal(sl[::2, ::2], label)


def test_random_crop_pads_with_ignore_when_too_small():
    image, label = _pair(4, 6)
    ci, cl = random_crop(image, label, (6, 6), torch.Generator().manual_seed(0))
    assert ci.shape == (3, 6, 6) and torch.equal(cl[:4], label) and (cl[4:] == 255).all() and (ci[:, 4:] == 0).all()
    ci, cl = random_crop(image, label, (2, 3), torch.Generator().manual_seed(0))
    assert cl.shape == (2, 3)


def test_train_transform_always_gives_the_crop_size_and_is_reproducible():
    image, label = _pair(16, 32)
    t = TrainTransform((12, 20), scale_range=(0.5, 2.0))
    outs = [t(image, label, torch.Generator().manual_seed(s)) for s in range(6)]
    assert all(o[0].shape == (3, 12, 20) and o[1].shape == (12, 20) for o in outs)
    again = t(image, label, torch.Generator().manual_seed(3))
    assert torch.equal(again[1], outs[3][1])
    with pytest.raises(DatasetError, match="scale_range"):
        TrainTransform((4, 4), scale_range=(2.0, 1.0))


def test_batches_are_a_function_of_seed_and_step():
    ds = make_dataset("synthetic", size=(32, 48))
    t = TrainTransform((32, 48), scale_range=(1.0, 1.0))
    a = train_batch(ds, 2, seed=1, step=5, transform=t)
    b = train_batch(ds, 2, seed=1, step=5, transform=t)
    c = train_batch(ds, 2, seed=1, step=6, transform=t)
    assert a[0].shape == (2, 3, 32, 48) and a[1].shape == (2, 32, 48)
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])
    sizes = [len(x) for x, _ in eval_batches(make_dataset("synthetic", "val", size=(32, 48)), 5, 2)]
    assert sizes == [2, 2, 1]


def test_normalize_uses_imagenet_statistics():
    x = torch.full((1, 3, 2, 2), 0.485)
    assert torch.allclose(normalize(x)[0, 0], torch.zeros(2, 2), atol=1e-6)
    assert torch.allclose(normalize(torch.ones(1, 3, 1, 1)).flatten(),
                          torch.tensor([(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225]))
