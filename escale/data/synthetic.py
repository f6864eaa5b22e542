"""``synthetic``: procedural street scenes where two classes differ only by context far away.

Every image is drawn from ``(seed, split, index)`` alone (numpy ``SeedSequence``), at any size, with
no files. A scene, top to bottom (fractions of the image height H):

* sky (0 .. horizon ~0.5), buildings with window grids (tops 0.24-0.40), trees around the horizon;
* a road (horizon .. 1) split into 2-3 lanes by dashed markings;
* above each lane, a traffic light hanging at 0.03-0.15 H on a pole down to the horizon, showing
  red or green (a fair coin per lane);
* 1-2 cars per lane at 0.63-0.98 H, 60-95% of the lane wide (about a fifth of all pixels). A car
  under a red light is ``car-stopped``, under a green one ``car-moving``.

Why: the two car classes are drawn from the *same* appearance distribution (colour, size, windows,
wheels, noise); the only evidence for their label is the lamp of their lane's light, about 0.48 H
(never less than 0.45 H after rounding to pixels) above any car pixel, so well over a quarter of the
image away, and up to a lane width sideways. The lights of a scene disagree in 50-75% of scenes, so a
global summary of the image (e.g. squeeze-excite's average pool) is not enough either: the model
must carry a *spatially placed* signal over half the image, which is what extra pyramid levels
(P6-P9, paper Insight 1) give cheaply. The other six classes are separable by local texture.
``render_scene(..., states=...)`` forces the lights; tests use it to check that flipping a light
changes only lamp pixels in the image and only the car labels of that lane. Training needs no scale
jitter or crop here (``default_scale_range`` is 1-1): every step sees fresh scenes, and a crop could
cut the lights off.
"""

from __future__ import annotations

import numpy as np
import torch

from escale.data.base import DatasetError, SegDataset, canonical_split, register_dataset

CLASS_NAMES = ("sky", "building", "vegetation", "road", "pole", "traffic-light", "car-stopped", "car-moving")
SKY, BUILDING, VEGETATION, ROAD, POLE, LIGHT, CAR_STOPPED, CAR_MOVING = range(len(CLASS_NAMES))
CONTEXT_CLASSES = ("car-stopped", "car-moving")  # separable only through the far-away light
SPLIT_CODES = {"train": 0, "val": 1}
LENGTHS = {"train": 100_000, "val": 1_000}  # virtual: any index is drawn on demand
LIGHT_BAND = (0.03, 0.15)  # rows of the light housings (fraction of H)
CAR_BAND = (0.63, 0.98)  # rows of the cars
MIN_CONTEXT_DISTANCE = CAR_BAND[0] - LIGHT_BAND[1]  # 0.48 H between a lamp and the nearest car pixel
NOISE_SIGMA = np.array([3.0, 6.0, 22.0, 7.0, 4.0, 3.0, 5.0, 5.0], dtype=np.float32)  # per class, 0-255 units
RED, GREEN = (230.0, 40.0, 30.0), (40.0, 210.0, 80.0)


def _px(frac: float, n: int) -> int:
    return int(round(frac * n))


def _sky_buildings(rng: np.random.Generator, img: np.ndarray, lbl: np.ndarray, horizon: int) -> None:
    h, w = lbl.shape
    top = rng.uniform([50, 100, 170], [100, 150, 230])  # (3,) RGB at row 0
    ramp = (np.arange(h, dtype=np.float32) / h)[:, None, None]
    img[:] = top + ramp * 60.0  # brighter towards the horizon
    lbl[:horizon] = SKY
    edges = np.sort(rng.uniform(0, 1, rng.integers(2, 6)))
    xs = [0, *(_px(e, w) for e in edges), w]
    for x0, x1 in zip(xs[:-1], xs[1:], strict=True):
        if x1 - x0 < 2 or rng.random() < 0.2:
            continue  # a gap between buildings
        y0 = _px(rng.uniform(0.24, 0.40), h)
        colour = rng.uniform(90, 170) + rng.uniform(-20, 20, 3)
        img[y0:horizon, x0:x1] = colour
        lbl[y0:horizon, x0:x1] = BUILDING
        period_y, period_x = max(3, _px(0.05, h)), max(3, _px(0.04, w))
        yy, xx = np.ogrid[y0:horizon, x0:x1]
        windows = ((yy - y0) % period_y >= period_y // 2) & ((xx - x0) % period_x >= period_x // 2)
        img[y0:horizon, x0:x1][windows] *= 0.55


def _vegetation(rng: np.random.Generator, img: np.ndarray, lbl: np.ndarray) -> None:
    h, w = lbl.shape
    for _ in range(rng.integers(2, 6)):
        cy, cx = rng.uniform(0.40, 0.50) * h, rng.uniform(0, 1) * w
        ry, rx = max(1.0, rng.uniform(0.04, 0.09) * h), max(1.0, rng.uniform(0.03, 0.08) * w)
        y0, y1 = max(0, int(cy - ry)), min(h, int(cy + ry) + 1)
        x0, x1 = max(0, int(cx - rx)), min(w, int(cx + rx) + 1)
        yy, xx = np.ogrid[y0:y1, x0:x1]
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0  # (y1-y0, x1-x0) ellipse mask
        img[y0:y1, x0:x1][inside] = rng.uniform([30, 100, 20], [80, 160, 70])
        lbl[y0:y1, x0:x1][inside] = VEGETATION


def _road(rng: np.random.Generator, img: np.ndarray, lbl: np.ndarray, horizon: int,
          bounds: list[int]) -> None:
    h, w = lbl.shape
    img[horizon:] = rng.uniform(55, 90)
    lbl[horizon:] = ROAD
    half = max(1, _px(0.004, w))
    dash = max(2, _px(0.06, h))
    rows = np.arange(horizon, h)
    dashed = rows[(rows - horizon) % (2 * dash) < dash]
    for x in bounds[1:-1]:
        img[dashed, max(0, x - half):x + half] = 220.0  # lane markings count as road (as in Cityscapes)


def _lights(rng: np.random.Generator, img: np.ndarray, lbl: np.ndarray, horizon: int, bounds: list[int],
            states: np.ndarray) -> None:
    h, w = lbl.shape
    sw, sh = max(3, _px(0.07, w)), max(5, _px(LIGHT_BAND[1] - 0.05, h))
    pole = max(1, _px(0.008, w))
    for k, (x0, x1) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        left = int(rng.integers(x0, max(x0 + 1, x1 - sw)))
        top = _px(rng.uniform(LIGHT_BAND[0], 0.05), h)
        cx = left + sw // 2
        img[top + sh:horizon, max(0, cx - pole // 2):cx - pole // 2 + pole] = 105.0
        lbl[top + sh:horizon, max(0, cx - pole // 2):cx - pole // 2 + pole] = POLE
        img[top:top + sh, left:left + sw] = 25.0
        lbl[top:top + sh, left:left + sw] = LIGHT
        m = max(1, (sw * 3) // 10)
        cy = top + sh // 2
        img[cy - m:cy + m + 1, cx - m:cx + m + 1] = RED if states[k] else GREEN


def _cars(rng: np.random.Generator, img: np.ndarray, lbl: np.ndarray, bounds: list[int],
          states: np.ndarray) -> None:
    h, w = lbl.shape
    cars = []
    for k, (x0, x1) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        for _ in range(rng.integers(1, 3)):
            cw = max(3, _px(rng.uniform(0.6, 0.95) * (x1 - x0) / w, w))
            ch = max(3, _px(rng.uniform(0.14, 0.24), h))
            cy = _px(rng.uniform(CAR_BAND[0], CAR_BAND[1] - ch / h), h)
            cx = int(rng.integers(x0, max(x0 + 1, x1 - cw)))
            body = rng.uniform(40, 230, 3)  # any colour: identical for both car classes
            cars.append((cy, cx, ch, cw, body, k))
    for cy, cx, ch, cw, body, k in sorted(cars, key=lambda c: c[0]):  # farther (higher) cars first
        img[cy:cy + ch, cx:cx + cw] = body
        wy, wx = max(1, ch // 3), max(1, cw // 6)
        img[cy + 1:cy + wy + 1, cx + wx:cx + cw - wx] = (50.0, 60.0, 75.0)  # windows
        img[cy + ch - max(1, ch // 5):cy + ch, cx:cx + max(1, cw // 5)] = 15.0  # wheels
        img[cy + ch - max(1, ch // 5):cy + ch, cx + cw - max(1, cw // 5):cx + cw] = 15.0
        lbl[cy:cy + ch, cx:cx + cw] = CAR_STOPPED if states[k] else CAR_MOVING


def render_scene(size: tuple[int, int], seed_seq: np.random.SeedSequence,
                 states: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Draw one scene: ``(image uint8 (H, W, 3), label uint8 (H, W), info)``.

    ``states[k]`` is True for a red light over lane k; by default it is a fair coin per lane, drawn
    from its own stream so that forcing it leaves everything else unchanged.
    """
    h, w = size
    layout_ss, cue_ss, noise_ss = seed_seq.spawn(3)
    rng = np.random.default_rng(layout_ss)
    img = np.zeros((h, w, 3), dtype=np.float32)
    lbl = np.zeros((h, w), dtype=np.uint8)
    horizon = _px(rng.uniform(0.52, 0.56), h)
    lanes = int(rng.integers(2, 4))
    inner = [_px(k / lanes + rng.uniform(-0.05, 0.05), w) for k in range(1, lanes)]
    bounds = [0, *inner, w]
    if states is None:
        states = np.random.default_rng(cue_ss).random(lanes) < 0.5
    states = np.asarray(states, dtype=bool)
    if states.shape != (lanes,):
        raise DatasetError(f"states: {states.shape[0]} lights given for a scene with {lanes} lanes")
    _sky_buildings(rng, img, lbl, horizon)
    _vegetation(rng, img, lbl)
    _road(rng, img, lbl, horizon, bounds)
    _lights(rng, img, lbl, horizon, bounds, states)
    _cars(rng, img, lbl, bounds, states)
    noise = np.random.default_rng(noise_ss).standard_normal((h, w, 3), dtype=np.float32)
    img += noise * NOISE_SIGMA[lbl][..., None]
    img = img * rng.uniform(0.85, 1.15) + rng.uniform(-15, 15)  # global contrast / brightness
    return np.clip(img, 0, 255).astype(np.uint8), lbl, {"lanes": bounds, "red": states.tolist()}


class SyntheticStreets(SegDataset):
    """The embedded default dataset; ``ds[i]`` is drawn on demand from ``(seed, split, i)``."""

    name = "synthetic"
    class_names = CLASS_NAMES
    context_classes = CONTEXT_CLASSES
    # Every step sees fresh scenes, so no jitter/crop is needed (a crop could also cut the lights off).
    default_scale_range = (1.0, 1.0)

    def __init__(self, split: str = "train", size: tuple[int, int] = (128, 256), seed: int = 0,
                 length: int | None = None) -> None:
        self.split = canonical_split(split)
        if min(size) < 16:
            raise DatasetError(f"size: {size[0]}x{size[1]} is too small for a synthetic scene (allowed: H, W >= 16)")
        self.size = (int(size[0]), int(size[1]))
        self.seed = int(seed)
        self.length = LENGTHS[self.split] if length is None else int(length)

    def __len__(self) -> int:
        return self.length

    def seed_sequence(self, index: int) -> np.random.SeedSequence:
        return np.random.SeedSequence([self.seed, SPLIT_CODES[self.split], int(index)])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"synthetic index {index} out of range 0..{self.length - 1}")
        image, label, _ = render_scene(self.size, self.seed_sequence(index))
        pixels = torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0)  # (3, H, W)
        return pixels, torch.from_numpy(label.astype(np.int64))  # (H, W)


def _factory(split: str, root: object, size: tuple[int, int] | None, seed: int) -> SyntheticStreets:
    return SyntheticStreets(split=split, size=size or (128, 256), seed=seed)


register_dataset("synthetic", _factory)
