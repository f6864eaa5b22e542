"""Figure style in one place: sizes for a two-column paper, colours per model family, saving, labels.

Figures are sized for print: ``COLUMN_IN`` (3.4 in) for one column, ``PAGE_IN`` (7.0 in) for two, with
8 pt text, so they stay readable when placed at 100% in a paper or a report page.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # never open a window; the report is files
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from escale.errors import EscaleError  # noqa: E402

COLUMN_IN = 3.4
PAGE_IN = 7.0
PNG_DPI = 200
RC = {
    "font.size": 8, "axes.titlesize": 8.5, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
    "legend.fontsize": 7, "legend.frameon": False, "axes.spines.top": False, "axes.spines.right": False,
    "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.5, "lines.linewidth": 1.2,
    "pdf.fonttype": 42, "ps.fonttype": 42, "savefig.dpi": PNG_DPI, "figure.dpi": 100,
}
LABEL_SIZE = 6.5

# One colour per model family, shared by every figure (ESeg warm, peers cool/neutral).
FAMILY_COLORS = {
    "ESeg": "#d62728", "ESeg-Lite": "#ff7f0e", "escale": "#7b1fa2",
    "Auto-DeepLab": "#1f77b4", "DeepLab": "#17becf", "HRNet": "#2ca02c", "PSPNet": "#8c564b",
    "OCR": "#9467bd", "OCNet": "#c5b0d5", "ACNet": "#bcbd22", "Naive-Student": "#e377c2",
    "SegFormer": "#7f7f7f", "SETR": "#aaaaaa", "Swin": "#555555",
    "FasterSeg": "#1f77b4", "DF1-Seg": "#2ca02c", "BiSeNet": "#9467bd", "DDRNet": "#8c564b",
    "FANet": "#17becf", "SwiftNet": "#bcbd22",
}
DOMINATED = "#b0b0b0"


def family_color(family: str) -> str:
    """The colour of a model family (unknown families get a neutral dark grey)."""
    return FAMILY_COLORS.get(family, "#404040")


@contextmanager
def paper_style():
    """Matplotlib rc settings for publication figures, restored on exit."""
    with plt.rc_context(RC):
        yield


def new_figure(width_in: float = COLUMN_IN, height_in: float = 2.6, ncols: int = 1) -> tuple[Figure, list]:
    """A Figure (not registered with pyplot) with ``ncols`` axes and constrained layout."""
    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)  # a renderer for measuring labels, without pyplot's global state
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def check_writable(path: str | Path) -> None:
    """Fail early, with one line, when figures cannot be written at ``path`` (before any long work)."""
    parent = Path(path).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = parent / f".escale-write-test-{id(path)}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise EscaleError(f"--out: cannot write to {parent} ({exc.strerror or exc})") from None


def save_figure(fig: Figure, path: str | Path) -> list[Path]:
    """Write ``fig`` as vector PDF and PNG next to each other; ``path`` may end in .pdf/.png or not."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix.lower() in (".pdf", ".png") else path
    outs = [stem.with_name(stem.name + ".pdf"), stem.with_name(stem.name + ".png")]
    try:
        stem.parent.mkdir(parents=True, exist_ok=True)
        for out in outs:
            fig.savefig(out, dpi=PNG_DPI, metadata={"CreationDate": None} if out.suffix == ".pdf" else None)
    except OSError as exc:
        raise EscaleError(f"--out: cannot write {stem}.pdf/.png ({exc.strerror or exc})") from None
    return outs


def freeze_layout(fig: Figure) -> None:
    """Run the layout once, then keep axes where they are (labels placed later must not move them)."""
    fig.canvas.draw()
    fig.set_layout_engine("none")


def _candidate_offsets() -> list[tuple[float, float, str, str]]:
    """Label offsets in points (dx, dy, ha, va): six snug ones, then rings of growing radius (12 angles)."""
    import math

    out = [(4, 3, "left", "bottom"), (4, -3, "left", "top"), (-4, 3, "right", "bottom"),
           (-4, -3, "right", "top"), (0, 6, "center", "bottom"), (0, -6, "center", "top")]
    for radius in (12, 20, 30, 42):
        for step in range(12):
            a = math.radians(15 + 30 * step)
            dx, dy = radius * math.cos(a), radius * math.sin(a)
            ha = "left" if dx > 3 else ("right" if dx < -3 else "center")
            va = "bottom" if dy > 3 else ("top" if dy < -3 else "center")
            out.append((dx, dy, ha, va))
    return out


_OFFSETS = _candidate_offsets()


def _overlap_area(box, boxes) -> float:
    """Total overlap area (px²) of ``box`` with an (N, 4) array of x0, y0, x1, y1 boxes."""
    import numpy as np

    if not len(boxes):
        return 0.0
    w = np.minimum(box.x1, boxes[:, 2]) - np.maximum(box.x0, boxes[:, 0])
    h = np.minimum(box.y1, boxes[:, 3]) - np.maximum(box.y0, boxes[:, 1])
    return float(np.sum(np.clip(w, 0, None) * np.clip(h, 0, None)))


def place_labels(ax, xs, ys, texts, colors=None, obstacles=None, size: float = LABEL_SIZE) -> list:
    """Label points (data coordinates) without labels overlapping each other, the points, lines or frame.

    Greedy, most crowded point first: each label takes the cheapest candidate offset, where the cost is
    the area overlapping what is already placed, plus a penalty for leaving the axes and for sitting
    nearer another point than its own; far labels get a thin leader line. Call after
    :func:`freeze_layout`. ``obstacles`` are extra (x, y) data points to keep clear.
    """
    import numpy as np
    from matplotlib.transforms import Bbox

    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    px_per_pt = ax.figure.dpi / 72
    own = ax.transData.transform(np.column_stack([xs, ys]).astype(float))
    others = ax.transData.transform(np.asarray(obstacles, float)) if obstacles else np.empty((0, 2))
    every = np.vstack([own, others])
    halo = 4.5 * px_per_pt
    point_boxes = np.column_stack([every - halo, every + halo])
    lines = np.asarray(_line_boxes(ax, 1.5 * px_per_pt)).reshape(-1, 4)
    labels = np.empty((0, 4))
    crowd = [int(np.sum(np.hypot(*(every - p).T) < 40 * px_per_pt)) for p in own]
    placed: dict[int, object] = {}
    for i in sorted(range(len(own)), key=lambda j: -crowd[j]):
        points_i = np.delete(point_boxes, i, axis=0)
        best = None
        for k, (dx, dy, ha, va) in enumerate(_OFFSETS):
            ann = ax.annotate(texts[i], (xs[i], ys[i]), xytext=(dx, dy), textcoords="offset points", ha=ha,
                              va=va, fontsize=size, color=colors[i] if colors else "black", annotation_clip=False)
            ann.set_in_layout(False)
            box = ann.get_window_extent(renderer).expanded(1.04, 1.1)
            cost = (10 * _overlap_area(box, labels) + 3 * _overlap_area(box, points_i)
                    + 3 * _overlap_area(box, lines) + 0.01 * k)
            inside = Bbox.intersection(box, frame)
            cost += 10 * (box.width * box.height - (inside.width * inside.height if inside else 0))
            cost += 300 * px_per_pt ** 2 * _nearer_other(box, own[i], every, i)
            leader = []
            if k >= 6:
                leader = np.asarray(_segment_boxes(_anchor_px(box, own[i]), own[i], 1.5 * px_per_pt))
                cost += sum(5 * _overlap_area(Bbox(b.reshape(2, 2)), labels)
                            + 2 * _overlap_area(Bbox(b.reshape(2, 2)), lines) for b in leader[2:-2])
                cost += 2 * px_per_pt * np.hypot(dx, dy)
            if best is None or cost < best[3]:
                if best is not None:
                    best[0].remove()
                best = (ann, box, k, cost, leader)
            else:
                ann.remove()
            if cost < 1:
                break
        ann, box, k, _, leader = best
        if k >= 6:
            anchor = ax.transData.inverted().transform(_anchor_px(box, own[i]))
            ax.annotate("", (xs[i], ys[i]), xytext=anchor, textcoords="data", annotation_clip=False,
                        arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.5", "shrinkA": 0, "shrinkB": 3})
            lines = np.vstack([lines, leader])
        labels = np.vstack([labels, box.extents])
        placed[i] = ann
    return [placed[i] for i in range(len(own))]


def _nearer_other(box, mine, every, i: int) -> int:
    """1 when the label box is nearer another point than its own point (a misleading label)."""
    import numpy as np

    def dist(p) -> float:
        return float(np.hypot(max(box.x0 - p[0], 0, p[0] - box.x1), max(box.y0 - p[1], 0, p[1] - box.y1)))

    d_own = dist(mine)
    return int(any(dist(p) < d_own - 1 for j, p in enumerate(every) if j != i))


def _segment_boxes(a, b, r: float) -> list:
    """(x0, y0, x1, y1) boxes every ~2r pixels along a segment."""
    import numpy as np

    n = max(2, int(np.hypot(*(np.asarray(b) - np.asarray(a))) / (2 * r)))
    return [(x - r, y - r, x + r, y + r) for x, y in np.linspace(a, b, n)]


def _line_boxes(ax, r: float) -> list:
    """Small boxes along the axes' lines (not grid lines), so labels do not sit on them."""
    import numpy as np

    boxes = []
    for line in ax.get_lines():
        xy = ax.transData.transform(np.column_stack(line.get_data()).astype(float))
        for a, b in zip(xy[:-1], xy[1:], strict=True):
            if np.isfinite([*a, *b]).all():
                boxes += _segment_boxes(a, b, r)
    return boxes


def _anchor_px(box, target) -> tuple[float, float]:
    """The point of a label's box nearest its target (pixels), where a leader line starts."""
    return min(max(target[0], box.x0), box.x1), min(max(target[1], box.y0), box.y1)
