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


def new_figure(width_in: float = COLUMN_IN, height_in: float = 2.6, ncols: int = 1, nrows: int = 1,
               ) -> tuple[Figure, list]:
    """A Figure (not registered with pyplot) with ``nrows`` x ``ncols`` axes (a flat list, row by row) and
    constrained layout."""
    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)  # a renderer for measuring labels, without pyplot's global state
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, list(axes.ravel())


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
            with paper_style():  # ticks are made lazily at draw time: same rc as at layout time
                fig.savefig(out, dpi=PNG_DPI, metadata={"CreationDate": None} if out.suffix == ".pdf" else None)
    except OSError as exc:
        raise EscaleError(f"--out: cannot write {stem}.pdf/.png ({exc.strerror or exc})") from None
    return outs


def freeze_layout(fig: Figure) -> None:
    """Run the layout once, then keep axes where they are (labels placed later must not move them)."""
    fig.canvas.draw()
    fig.set_layout_engine("none")
