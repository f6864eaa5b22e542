"""Point labels that do not overlap each other, the points, the lines or the axes frame.

Each label has candidate positions (six snug offsets, then rings of growing radius with a leader line);
a position's cost is the pixel area it overlaps (labels weigh most), a penalty for leaving the axes, for
sitting nearer another point than its own, and for distance. Labels are chosen most-crowded first and
then revised for a few passes with all the others in place.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.transforms import Bbox

LABEL_SIZE = 6.5
W_LABEL, W_POINT, W_LINE, W_FRAME, W_LEADER = 10.0, 30.0, 8.0, 1000.0, 5.0


def _candidate_offsets() -> list[tuple[float, float, str, str]]:
    """Offsets in points (dx, dy, ha, va): six snug ones, then rings of growing radius (12 angles)."""
    out = [(4, 3, "left", "bottom"), (4, -3, "left", "top"), (-4, 3, "right", "bottom"),
           (-4, -3, "right", "top"), (0, 6, "center", "bottom"), (0, -6, "center", "top")]
    for radius in (12, 20, 30, 42, 56, 72):
        for step in range(12):
            a = math.radians(15 + 30 * step)
            dx, dy = radius * math.cos(a), radius * math.sin(a)
            ha = "left" if dx > 3 else ("right" if dx < -3 else "center")
            va = "bottom" if dy > 3 else ("top" if dy < -3 else "center")
            out.append((dx, dy, ha, va))
    return out


OFFSETS = _candidate_offsets()
SNUG = 6  # offsets from here on get a leader line


def overlap_area(boxes_a: np.ndarray, boxes_b: np.ndarray) -> float:
    """Total pairwise overlap area (px²) between two (N, 4) arrays of x0, y0, x1, y1 boxes."""
    a, b = np.asarray(boxes_a, float).reshape(-1, 4), np.asarray(boxes_b, float).reshape(-1, 4)
    if not len(a) or not len(b):
        return 0.0
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    return float(np.sum(np.clip(w, 0, None) * np.clip(h, 0, None)))


def segment_boxes(a, b, r: float) -> np.ndarray:
    """(x0, y0, x1, y1) boxes every ~2r pixels along the segment a-b."""
    n = max(2, int(np.hypot(*(np.asarray(b, float) - np.asarray(a, float))) / (2 * r)))
    centres = np.linspace(a, b, n)
    return np.column_stack([centres - r, centres + r])


def line_boxes(ax, r: float) -> np.ndarray:
    """Small boxes along the axes' lines (not grid lines), so labels do not sit on them."""
    boxes = [np.empty((0, 4))]
    for line in ax.get_lines():
        xy = np.column_stack(line.get_data()).astype(float)
        if line.get_drawstyle() == "steps-post" and len(xy) > 1:  # the drawn staircase, not the vertices
            corners = np.column_stack([xy[1:, 0], xy[:-1, 1]])
            xy = np.vstack([np.column_stack([xy[:-1], corners]).reshape(-1, 2), xy[-1:]])
        xy = ax.transData.transform(xy)
        for a, b in zip(xy[:-1], xy[1:], strict=True):
            if np.isfinite([*a, *b]).all():
                boxes.append(segment_boxes(a, b, r))
    return np.vstack(boxes)


def _box_distance(box: np.ndarray, points: np.ndarray) -> np.ndarray:
    dx = np.maximum.reduce([box[0] - points[:, 0], np.zeros(len(points)), points[:, 0] - box[2]])
    dy = np.maximum.reduce([box[1] - points[:, 1], np.zeros(len(points)), points[:, 1] - box[3]])
    return np.hypot(dx, dy)


def _anchor(box: np.ndarray, target) -> tuple[float, float]:
    """The point of a label box nearest its target: where a leader line starts."""
    return min(max(target[0], box[0]), box[2]), min(max(target[1], box[1]), box[3])


class _Layout:
    """Pixel geometry of one axes: label candidates, static obstacles and their costs."""

    def __init__(self, ax, xs, ys, texts, obstacles, size: float):
        self.ax, self.renderer = ax, ax.figure.canvas.get_renderer()
        self.ppt = ax.figure.dpi / 72  # pixels per point
        self.own = ax.transData.transform(np.column_stack([xs, ys]).astype(float))
        extra = ax.transData.transform(np.asarray(obstacles, float)) if obstacles else np.empty((0, 2))
        self.every = np.vstack([self.own, extra])
        halo = 4.5 * self.ppt
        self.points = np.column_stack([self.every - halo, self.every + halo])
        self.lines = line_boxes(ax, 1.5 * self.ppt)
        self.frame = ax.get_window_extent(self.renderer)
        self.cands = [self._candidates(i, xs[i], ys[i], t, size) for i, t in enumerate(texts)]

    def _candidates(self, i: int, x: float, y: float, text: str, size: float) -> list[tuple[int, np.ndarray, np.ndarray, float]]:
        probe = self.ax.annotate(text, (x, y), fontsize=size)
        ext = probe.get_window_extent(self.renderer)
        probe.remove()
        w, h, pad = ext.width, ext.height, 0.15 * ext.height
        px, py = self.own[i]
        out = []
        for k, (dx, dy, ha, va) in enumerate(OFFSETS):
            x0 = px + dx * self.ppt - {"left": 0, "center": w / 2, "right": w}[ha]
            y0 = py + dy * self.ppt - {"bottom": 0, "center": h / 2, "top": h}[va]
            box = np.array([x0 - pad, y0 - pad, x0 + w + pad, y0 + h + pad])
            leader = segment_boxes(_anchor(box, (px, py)), (px, py), 1.5 * self.ppt)[2:-2] if k >= SNUG \
                else np.empty((0, 4))
            out.append((k, box, leader, self._static_cost(i, k, box, leader)))
        return out

    def _static_cost(self, i: int, k: int, box: np.ndarray, leader: np.ndarray) -> float:
        points = np.delete(self.points, i, axis=0)
        cost = W_POINT * overlap_area(box, points) + W_LINE * overlap_area(box, self.lines) + 0.01 * k
        inside = Bbox.intersection(Bbox(box.reshape(2, 2)), self.frame)
        area = (box[2] - box[0]) * (box[3] - box[1])
        cost += W_FRAME * (area - (inside.width * inside.height if inside else 0))
        dist = _box_distance(box, self.every)
        if np.any(np.delete(dist, i) < dist[i] - 1):  # nearer another point than its own: misleading,
            cost += (600 if k < SNUG else 400) * self.ppt ** 2  # less so with a leader line
        if k >= SNUG:
            reach = self.ppt * math.hypot(*OFFSETS[k][:2])  # px; long leaders are hard to follow
            cost += 2 * reach + 0.12 * reach ** 2 + 2 * overlap_area(leader, self.lines)
            cost += 2 * W_POINT * overlap_area(leader, points)  # a leader must not run through a point
        return cost

    def choose(self, passes: int = 3) -> list[int]:
        """Index of the chosen candidate per label: greedy, most crowded first, then revised."""
        n = len(self.cands)
        crowd = [int(np.sum(np.hypot(*(self.every - p).T) < 40 * self.ppt)) for p in self.own]
        order = sorted(range(n), key=lambda j: -crowd[j])
        choice: list[int | None] = [None] * n
        for _ in range(passes):
            for i in order:
                others = [self.cands[j][choice[j]] for j in range(n) if j != i and choice[j] is not None]
                boxes = np.array([c[1] for c in others]).reshape(-1, 4)
                leaders = np.vstack([c[2] for c in others] + [np.empty((0, 4))])
                costs = [c[3] + W_LABEL * overlap_area(c[1], boxes) + W_LEADER * overlap_area(c[2], boxes)
                         + W_LINE * overlap_area(c[1], leaders) for c in self.cands[i]]
                choice[i] = int(np.argmin(costs))
        return [int(c) for c in choice]


def place_labels(ax, xs, ys, texts, colors=None, obstacles=None, size: float = LABEL_SIZE) -> list:
    """Label points given in data coordinates; returns the label artists (in the order given).

    Call after the layout is final (:func:`escale.report.style.freeze_layout`). ``obstacles`` are extra
    (x, y) data points that labels keep clear of; far labels get a thin grey leader line.
    """
    if not len(xs):
        return []
    layout = _Layout(ax, list(xs), list(ys), list(texts), obstacles, size)
    placed = []
    for i, c in enumerate(layout.choose()):
        k, box, _, _ = layout.cands[i][c]
        dx, dy, ha, va = OFFSETS[k]
        ann = ax.annotate(texts[i], (xs[i], ys[i]), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                          fontsize=size, color=colors[i] if colors else "black", annotation_clip=False)
        ann.set_in_layout(False)
        if k >= SNUG:
            start = ax.transData.inverted().transform(_anchor(box, layout.own[i]))
            ax.annotate("", (xs[i], ys[i]), xytext=start, textcoords="data", annotation_clip=False,
                        arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.5", "shrinkA": 0, "shrinkB": 3})
        placed.append(ann)
    return placed
