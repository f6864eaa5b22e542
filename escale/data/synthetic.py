"""``synthetic``: procedural scenes where two classes differ only by context far away.

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

Options (in the dataset name, ``synthetic:KEY=VALUE,...``; see :func:`dataset_name`):

* ``task=streets`` (default): the scenes above.
* ``task=cue``: the controlled context experiment. A noisy grey background; a full-width colour band
  (class ``cue``, red or blue, a fair coin per scene, 6-10% of H high); 1-3 rectangles of random
  colour and width (1/8-1/4 of W, 10-18% of H high, tops aligned, always in rows 0.72-0.98 H) whose
  class, ``object-red-cue`` or ``object-blue-cue``, is the band's colour. ``context_distance`` (fraction
  of H, 0-0.6, default 0.6) is the gap between the band's bottom edge and the objects' top edge:
  0.6 puts the band at the top of the image (far cue), 0 right on the objects (the local control).
  Only the band's row changes with the distance: the classes, the objects' rows and every appearance
  distribution are the same, so a level effect on the far task that is absent at 0 is due to reach.
  ``context_distance=LOW..HIGH`` (e.g. ``0..0.6``) draws each scene's distance uniformly from that range
  (its own random stream: the rest of the scene is the one a fixed distance would draw), a *graded* task
  in which each pyramid level that reaches further solves a further share of the scenes.
  ``band_label=colour`` labels the band by its colour (classes ``cue`` for a red band and ``cue-blue``, 5
  classes): the band's colour is then supervised where it is drawn, and only carrying it to the objects is
  left to learn (default ``shared``: one ``cue`` class for both colours, 4 classes).
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


# --- task=cue: one far (or, as the control, local) colour band decides the objects' class ----------------
CUE_CLASS_NAMES = ("background", "cue", "object-red-cue", "object-blue-cue")
BACKGROUND, CUE, OBJECT_RED, OBJECT_BLUE = range(len(CUE_CLASS_NAMES))
BAND_BLUE = 4  # band_label=colour: the blue band's class (``cue`` is then the red band's)
BAND_LABELS = ("shared", "colour")
CUE_CONTEXT_CLASSES = ("object-red-cue", "object-blue-cue")  # separable only through the band's colour
CUE_HEIGHT = (0.06, 0.10)  # band height (fraction of H)
OBJECT_HEIGHT = (0.10, 0.18)  # each object's height (fraction of H)
OBJECT_TOP = (0.72, 0.80)  # the objects' shared top row (fraction of H): objects lie in rows 0.72-0.98 H
MAX_CONTEXT_DISTANCE = 0.6  # OBJECT_TOP[0] - CUE_HEIGHT[1] - 0.02: the band never leaves the image
CUE_NOISE_SIGMA = np.array([18.0, 4.0, 4.0, 4.0, 4.0], dtype=np.float32)  # per class (BAND_BLUE last), 0-255
CUE_RED, CUE_BLUE = (220.0, 40.0, 30.0), (35.0, 70.0, 220.0)
TASKS = ("streets", "cue")


def render_cue_scene(size: tuple[int, int], seed_seq: np.random.SeedSequence,
                     context_distance: float | tuple[float, float],
                     red: bool | None = None, band_label: str = "shared") -> tuple[np.ndarray, np.ndarray, dict]:
    """Draw one ``task=cue`` scene: ``(image uint8 (H, W, 3), label uint8 (H, W), info)``.

    The band's bottom edge lies ``round(context_distance * H)`` rows above the objects' top edge; a
    ``(low, high)`` pair draws the distance uniformly from that range (fraction of H) from a fourth stream of
    ``seed_seq``. ``red`` forces the band's colour; by default it is a fair coin from its own stream, so
    forcing it leaves the rest of the scene unchanged. ``band_label="colour"`` labels a blue band
    ``BAND_BLUE`` instead of ``CUE`` (pixels unchanged). ``info``: ``cue_rows`` (first, end), ``object_top``,
    ``red``, ``distance`` (fraction of H).
    """
    h, w = size
    layout_ss, cue_ss, noise_ss, distance_ss = seed_seq.spawn(4)  # the first three as with spawn(3)
    if isinstance(context_distance, tuple):
        low, high = context_distance
        context_distance = low if low == high else float(np.random.default_rng(distance_ss).uniform(low, high))
    rng = np.random.default_rng(layout_ss)
    if red is None:
        red = bool(np.random.default_rng(cue_ss).random() < 0.5)
    img = np.empty((h, w, 3), dtype=np.float32)
    img[:] = rng.uniform(90, 160) + rng.uniform(-10, 10, 3)  # grey background, slightly tinted
    lbl = np.full((h, w), BACKGROUND, dtype=np.uint8)
    top = _px(rng.uniform(*OBJECT_TOP), h)
    band_end = top - _px(context_distance, h)
    band_start = max(0, band_end - max(1, _px(rng.uniform(*CUE_HEIGHT), h)))
    tint = rng.uniform(-15, 15, 3)
    for _ in range(rng.integers(1, 4)):
        ow = max(2, _px(rng.uniform(1 / 8, 1 / 4), w))
        oh = max(2, _px(rng.uniform(*OBJECT_HEIGHT), h))
        x0 = int(rng.integers(0, w - ow + 1))
        img[top:top + oh, x0:x0 + ow] = rng.uniform(40, 230, 3)  # any colour: identical for both classes
        lbl[top:top + oh, x0:x0 + ow] = OBJECT_RED if red else OBJECT_BLUE
    img[band_start:band_end] = np.asarray(CUE_RED if red else CUE_BLUE) + tint
    lbl[band_start:band_end] = BAND_BLUE if band_label == "colour" and not red else CUE
    noise = np.random.default_rng(noise_ss).standard_normal((h, w, 3), dtype=np.float32)
    img += noise * CUE_NOISE_SIGMA[lbl][..., None]
    img = img * rng.uniform(0.85, 1.15) + rng.uniform(-15, 15)  # global contrast / brightness
    info = {"cue_rows": (band_start, band_end), "object_top": top, "red": red, "distance": context_distance}
    return np.clip(img, 0, 255).astype(np.uint8), lbl, info


class SyntheticCue(SyntheticStreets):
    """``synthetic:task=cue``: the objects' class is the colour of a band ``context_distance`` H above them
    (a float, or a ``(low, high)`` range drawn per scene)."""

    class_names = CUE_CLASS_NAMES
    context_classes = CUE_CONTEXT_CLASSES

    def __init__(self, split: str = "train", size: tuple[int, int] = (128, 256), seed: int = 0,
                 length: int | None = None,
                 context_distance: float | tuple[float, float] = MAX_CONTEXT_DISTANCE,
                 band_label: str = "shared") -> None:
        if band_label not in BAND_LABELS:
            raise DatasetError(f"band_label: {band_label!r} is unknown (allowed: {', '.join(BAND_LABELS)})")
        super().__init__(split, size, seed, length)
        self.context_distance, self.band_label = context_distance, band_label
        if band_label == "colour":
            self.class_names = (*CUE_CLASS_NAMES, "cue-blue")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"synthetic index {index} out of range 0..{self.length - 1}")
        image, label, _ = render_cue_scene(self.size, self.seed_sequence(index), self.context_distance,
                                           band_label=self.band_label)
        pixels = torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0)  # (3, H, W)
        return pixels, torch.from_numpy(label.astype(np.int64))  # (H, W)


def dataset_name(task: str = "streets", context_distance: float | tuple[float, float] | None = None,
                 band_label: str | None = None) -> str:
    """The dataset name with options, e.g. ``dataset_name("cue", 0.0)`` -> ``"synthetic:task=cue,context_distance=0"``,
    ``dataset_name("cue", (0, 0.6), "colour")`` -> ``"synthetic:task=cue,context_distance=0..0.6,band_label=colour"``."""
    parts = [f"task={task}"] if task != "streets" else []
    if isinstance(context_distance, tuple):
        parts.append(f"context_distance={context_distance[0]:g}..{context_distance[1]:g}")
    elif context_distance is not None:
        parts.append(f"context_distance={context_distance:g}")
    if band_label is not None:
        parts.append(f"band_label={band_label}")
    return "synthetic" + (":" + ",".join(parts) if parts else "")


def parse_options(options: dict[str, object]) -> tuple[str, float | tuple[float, float] | None, str]:
    """``{"task": ..., "context_distance": ..., "band_label": ...}`` (values str or number) -> (task, distance,
    band label); the distance is a float, a ``(low, high)`` pair for ``LOW..HIGH`` or None; one-line errors."""
    unknown = sorted(set(options) - {"task", "context_distance", "band_label"})
    if unknown:
        raise DatasetError(f"synthetic: option {unknown[0]!r} is unknown (allowed: task, context_distance, band_label)")
    task = str(options.get("task", "streets"))
    if task not in TASKS:
        raise DatasetError(f"task: {task!r} is unknown (allowed: {', '.join(TASKS)})")
    band_label = str(options.get("band_label", "shared"))
    if "band_label" in options and task != "cue":
        raise DatasetError(f"band_label: only task=cue takes it (task is {task})")
    if band_label not in BAND_LABELS:
        raise DatasetError(f"band_label: {band_label!r} is unknown (allowed: {', '.join(BAND_LABELS)})")
    if "context_distance" not in options:
        return task, None, band_label
    if task != "cue":
        raise DatasetError(f"context_distance: only task=cue takes it (task is {task})")
    raw = options["context_distance"]
    ends = str(raw).split("..") if isinstance(raw, str) else [raw]
    values = []
    for end in ends:
        try:
            values.append(float(end))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            values.append(float("nan"))
    if len(values) > 2 or not all(0.0 <= v <= MAX_CONTEXT_DISTANCE for v in values) or values != sorted(values):
        raise DatasetError(f"context_distance: {raw!r} is not a number or a range LOW..HIGH in "
                           f"0..{MAX_CONTEXT_DISTANCE} (fraction of H between the cue band and the objects)")
    return task, values[0] if len(values) == 1 else (values[0], values[1]), band_label


def _factory(split: str, root: object, size: tuple[int, int] | None, seed: int,
             options: dict[str, str] | None = None) -> SyntheticStreets:
    task, distance, band_label = parse_options(options or {})
    if task == "cue":
        return SyntheticCue(split=split, size=size or (128, 256), seed=seed, band_label=band_label,
                            context_distance=MAX_CONTEXT_DISTANCE if distance is None else distance)
    return SyntheticStreets(split=split, size=size or (128, 256), seed=seed)


register_dataset("synthetic", _factory)
