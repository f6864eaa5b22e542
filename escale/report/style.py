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
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


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


# Candidate label offsets in points: (dx, dy, ha, va); tried in order, the first without overlap wins.
_OFFSETS = [(4, 3, "left", "bottom"), (4, -3, "left", "top"), (-4, 3, "right", "bottom"),
            (-4, -3, "right", "top"), (0, 6, "center", "bottom"), (0, -6, "center", "top"),
            (12, 10, "left", "bottom"), (12, -10, "left", "top"), (-12, 10, "right", "bottom"),
            (-12, -10, "right", "top"), (0, 16, "center", "bottom"), (0, -16, "center", "top"),
            (22, 2, "left", "center"), (-22, 2, "right", "center"), (20, 20, "left", "bottom"),
            (-20, -20, "right", "top"), (20, -20, "left", "top"), (-20, 20, "right", "bottom")]


def _overlap(a, b) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def place_labels(ax, xs, ys, texts, colors=None, obstacles=None, size: float = LABEL_SIZE) -> list:
    """Label points (data coordinates) without labels overlapping each other, the points or the frame.

    Greedy: each label takes the first candidate offset that overlaps nothing placed so far; failing that,
    the least-overlapping one, with a thin leader line when far from its point. Call after
    :func:`freeze_layout`. ``obstacles`` are extra (x, y) data points to keep clear.
    """
    from matplotlib.transforms import Bbox

    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    r = 3.0 * fig.dpi / 72  # marker radius in pixels
    pts = list(zip(xs, ys, strict=True)) + list(obstacles or [])
    taken = [Bbox.from_extents(px - r, py - r, px + r, py + r) for px, py in ax.transData.transform(pts)]
    taken += _line_boxes(ax, r / 2)
    placed = []
    for i, (x, y, text) in enumerate(zip(xs, ys, texts, strict=True)):
        best, best_cost = None, None
        for k, (dx, dy, ha, va) in enumerate(_OFFSETS):
            ann = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                              fontsize=size, color=colors[i] if colors else "black", annotation_clip=False)
            ann.set_in_layout(False)
            box = ann.get_window_extent(renderer).expanded(1.04, 1.08)
            cost = sum(_overlap(box, t) for t in taken)
            inside = Bbox.intersection(box, frame)
            cost += 4 * (box.width * box.height - (inside.width * inside.height if inside else 0))
            cost += 0.01 * k  # prefer near offsets on ties
            if best_cost is None or cost < best_cost:
                if best is not None:
                    best[0].remove()
                best, best_cost = (ann, box, k), cost
            else:
                ann.remove()
            if cost < 1:
                break
        ann, box, k = best
        if k >= 6:
            ax.annotate("", (x, y), xytext=_anchor(ann, box, ax), textcoords="data",
                        arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.5", "shrinkA": 0, "shrinkB": 3})
        taken.append(box)
        placed.append(ann)
    return placed


def _line_boxes(ax, r: float) -> list:
    """Small boxes every few pixels along the axes' lines, so labels do not sit on them."""
    import numpy as np
    from matplotlib.transforms import Bbox

    boxes = []
    for line in ax.get_lines():
        xy = ax.transData.transform(np.column_stack(line.get_data()).astype(float))
        for (x0, y0), (x1, y1) in zip(xy[:-1], xy[1:], strict=True):
            n = max(2, int(np.hypot(x1 - x0, y1 - y0) / (2 * r)))
            for t in np.linspace(0, 1, n):
                px, py = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
                boxes.append(Bbox.from_extents(px - r, py - r, px + r, py + r))
    return boxes


def _anchor(ann, box, ax):
    """The point of a label's box nearest its target, in data coordinates (for leader lines)."""
    tx, ty = ax.transData.transform(ann.xy)
    cx = min(max(tx, box.x0), box.x1)
    cy = min(max(ty, box.y0), box.y1)
    return tuple(ax.transData.inverted().transform((cx, cy)))
