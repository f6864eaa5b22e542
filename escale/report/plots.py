"""Publication figures: pure functions over records / DataFrames that return a matplotlib Figure.

- :func:`plot_paper_figure1` — model size (params in M, FLOPs in B multiply-adds; log x) vs Cityscapes
  mIoU, the paper's Figure 1 from Table 4, with escale's own counts for the ESeg family beside it;
- :func:`plot_paper_figure4` — speed (FPS) vs mIoU, the paper's Figure 4 from Table 6;
- :func:`plot_family` — escale's family on a chosen x axis (flops, params, latency, fps) vs mIoU;
- :func:`plot_study_front` — a study's trials, dominated ones greyed, the Pareto front connected;
- :func:`plot_flops_breakdown` — share of MACs per part and per pyramid level.
Save with :func:`escale.report.style.save_figure` (PDF + PNG).
"""

from __future__ import annotations

import textwrap

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from escale.errors import EscaleError
from escale.report.labels import place_labels
from escale.report.reference import paper_points
from escale.report.style import (
    COLUMN_IN,
    DOMINATED,
    PAGE_IN,
    family_color,
    freeze_layout,
    new_figure,
    paper_style,
)

CITYSCAPES_MIOU = "Cityscapes val mIoU (%)"
# name -> (family-table column, axis label with unit, log scale)
AXES = {
    "flops": ("gmacs", "FLOPs (B multiply-adds, 1024×2048)", True),
    "params": ("params_m", "Params (M)", True),
    "latency": ("latency_ms", "Latency (ms, batch 1)", True),
    "fps": ("fps", "Speed (FPS, batch 1)", False),
    "miou": ("miou", CITYSCAPES_MIOU, False),
}
FIGURES = ("1", "4")
_PAPER_COLS = {"gmacs": "paper_gmacs", "params_m": "paper_params_m"}  # escale's column -> the paper's
ESCALE_MARK = {"marker": "s", "s": 46, "facecolors": "none", "edgecolors": family_color("escale"),
               "linewidths": 1.0, "zorder": 4}
_ABBREV = (("ResNet-", "R"), ("Xception-", "X"), ("ResNeXt-", "X"), ("ResNeSt-", "S"), ("X-71", "X71"))


def axis(name: str, flag: str = "--x") -> tuple[str, str, bool]:
    """(column, label, log) of an axis name; unknown names raise EscaleError listing the allowed ones."""
    if name not in AXES:
        raise EscaleError(f"{flag}: {name!r} is unknown (allowed: {', '.join(AXES)})")
    return AXES[name]


def short_name(model: str) -> str:
    """A compact label: backbone names abbreviated (ResNet-101 -> R101)."""
    for long, short in _ABBREV:
        model = model.replace(long, short)
    return model


def log_x(ax, which: str = "x") -> None:
    """Log axis (x or y) with plain tick labels at 1-2-5 steps (10, 20, 50, ...), no scientific notation."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis_ = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis_.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis_.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis_.set_minor_formatter(NullFormatter())


def _legend_below(fig: Figure, handles: list, ncol: int = 2) -> None:
    """Legend outside the axes, under them, so it never covers a point."""
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol, handletextpad=0.4, columnspacing=1.2)


def _handle(label: str, color: str, marker: str = "o", ls: str = "none", hollow: bool = False, **kw) -> Line2D:
    face = "none" if hollow else color
    return Line2D([], [], color=color, marker=marker, ls=ls, markerfacecolor=face, markersize=5, label=label, **kw)


def _eseg_rows(points, family: str = "ESeg"):
    return points[points["family"] == family]


def _size_panel(ax, x: str, measured) -> list[tuple[float, float, str, str]]:
    """Table 4 points on one axes; returns the (x, y, label, colour) to label."""
    col, label, _ = axis(x)
    t4 = paper_points("Table 4")
    peers = t4[(t4["family"] != "ESeg") & t4[col].notna()]
    for fam, grp in peers.groupby("family", sort=False):
        ax.scatter(grp[col], grp["miou"], s=16, color=family_color(fam), zorder=3)
    eseg = _eseg_rows(t4)
    ax.plot(eseg[col], eseg["miou"], "o-", color=family_color("ESeg"), ms=4.5, zorder=3)
    ax.plot(eseg[col], eseg["miou_extra_data"], "*--", color=family_color("ESeg"), ms=6, lw=0.9, zorder=3)
    if measured is not None and len(measured):
        mine = measured[measured["name"].isin(set(eseg["model"])) & (measured["input_size"] == "1024x2048")]
        ax.scatter(mine[col], mine["miou"], **ESCALE_MARK)
    log_x(ax)
    ax.margins(x=0.12, y=0.1)  # room for labels at the edges
    ax.set_xlabel(label)
    ax.set_ylabel(CITYSCAPES_MIOU)
    labels = [(r[col], r["miou"], short_name(r["model"]), family_color(r["family"])) for _, r in peers.iterrows()]
    labels += [(r[col], r["miou"], r["model"], family_color("ESeg")) for _, r in eseg.iterrows()]
    return labels


def plot_paper_figure1(measured=None, axes: tuple[str, ...] = ("params", "flops")) -> Figure:
    """The paper's Figure 1: model size vs Cityscapes val mIoU from Table 4 (single-scale points).

    ``measured`` is a family table (:func:`escale.report.family_table`); its ESeg rows are drawn as hollow
    squares at escale's counted params/FLOPs and the paper's mIoU. ``axes``: any of "params", "flops".
    """
    for a in axes:
        if a not in ("params", "flops"):
            raise EscaleError(f"--x: {a!r} is not a Figure 1 axis (allowed: params, flops)")
    with paper_style():
        fig, axs = new_figure(PAGE_IN if len(axes) > 1 else COLUMN_IN, 3.8, ncols=len(axes))
        todo = [(ax, _size_panel(ax, a, measured)) for ax, a in zip(axs, axes, strict=True)]
        fig.suptitle("Model size vs. Cityscapes val mIoU (paper Table 4; FLOPs at 1024×2048)")
        handles = [_handle("ESeg (paper)", family_color("ESeg"), ls="-"),
                   _handle("ESeg +data (paper)", family_color("ESeg"), marker="*", ls="--")]
        if measured is not None and len(measured):
            handles.append(_handle("ESeg, escale's counts", family_color("escale"), marker="s", hollow=True))
        handles.append(_handle("other models (paper Table 4)", "#606060"))
        _legend_below(fig, handles, ncol=len(handles))
        freeze_layout(fig)
        for ax, labels in todo:
            xs, ys, texts, colors = zip(*labels, strict=True)
            place_labels(ax, xs, ys, texts, colors)
    return fig


def _fps_points():
    """Table 6, one row per (model, input size): the authors' V100 measurement (†) where there is one."""
    t6 = paper_points("Table 6")
    t6 = t6.sort_values("same_v100", ascending=False, kind="stable")
    return t6.drop_duplicates(["model", "input_size", "miou"]).sort_index()


SIZE_MARKERS = {"1024x2048": "o", "768x1536": "s", "512x1024": "^"}


def plot_paper_figure4(measured=None) -> Figure:
    """The paper's Figure 4: speed (FPS, batch 1) vs Cityscapes val mIoU from Table 6.

    Marker shape is the input size; a black edge marks the paper's † (measured on the authors' V100 with
    TensorRT). ``measured`` rows with an ``fps`` column add escale's own speed for the same presets.
    """
    pts = _fps_points()
    with paper_style():
        fig, (ax,) = new_figure(COLUMN_IN + 0.4, 3.3)
        for _, r in pts.iterrows():
            ax.scatter(r["fps"], r["miou"], s=20, marker=SIZE_MARKERS.get(r["input_size"], "D"),
                       color=family_color(r["family"]), edgecolors="black" if r["same_v100"] else "none",
                       linewidths=0.7, zorder=3)
        lite = pts[(pts["family"] == "ESeg-Lite") & (pts["input_size"] == "1024x2048")].sort_values("fps")
        ax.plot(lite["fps"], lite["miou"], "-", color=family_color("ESeg-Lite"), zorder=2)
        handles = [_handle(f"{s.replace('x', '×')} input", "#606060", m) for s, m in SIZE_MARKERS.items()]
        handles.append(_handle("† same V100 (paper)", "white", "o", markeredgecolor="black"))
        labels = [(r["fps"], r["miou"], _fps_label(r), family_color(r["family"])) for _, r in pts.iterrows()]
        if measured is not None and "fps" in measured and measured["fps"].notna().any():
            mine = measured[measured["fps"].notna() & measured["miou"].notna()]
            ax.scatter(mine["fps"], mine["miou"], **ESCALE_MARK)
            handles.append(_handle(f"escale ({_device(mine)})", family_color("escale"), "s", hollow=True))
            labels += [(r["fps"], r["miou"], f"{r['name']} (escale, {_size_of(r)})", family_color("escale"))
                       for _, r in mine.iterrows()]
        ax.margins(x=0.1, y=0.08)
        ax.set_xlabel("Speed (FPS, batch 1)")
        ax.set_ylabel(CITYSCAPES_MIOU)
        fig.suptitle("Speed vs. Cityscapes val mIoU (paper Table 6)")
        _legend_below(fig, handles, ncol=2)
        freeze_layout(fig)
        xs, ys, texts, colors = zip(*labels, strict=True)
        place_labels(ax, xs, ys, texts, colors)
    return fig


def _fps_label(row) -> str:
    name = row["model"]
    return f"{name} ({row['input_size'].replace('x', '×')})" if name.startswith("ESeg") and \
        row["input_size"] != "1024x2048" else name


def _size_of(row) -> str:
    size = row.get("latency_input_size")
    return str(size if isinstance(size, str) else row.get("input_size", "?")).replace("x", "×")


def _device(frame) -> str:
    for key in ("device", "backend"):
        if key in frame and frame[key].notna().any():
            return str(frame[key].dropna().iloc[0])
    return "measured"


def paper_figure(number: str | int, measured=None) -> Figure:
    """Figure 1 or 4 of the paper, redrawn from the reference data (see the two functions above)."""
    key = str(number)
    if key not in FIGURES:
        raise EscaleError(f"--figure: {number!r} is unknown (allowed: {', '.join(FIGURES)})")
    return plot_paper_figure1(measured) if key == "1" else plot_paper_figure4(measured)


def plot_family(table, x: str = "flops", y: str = "miou") -> Figure:
    """escale's family table on ``x`` vs ``y`` (axis names from :data:`AXES`), one line per family.

    mIoU is the paper's (Tables 4/6) unless the records carry escale-trained values; for flops/params
    the paper's published size is drawn as a small grey cross beside escale's count.
    """
    (xcol, xlabel, xlog), (ycol, ylabel, ylog) = axis(x, "--x"), axis(y, "--y")
    for col, flag in ((xcol, f"--x {x}"), (ycol, f"--y {y}")):
        if col not in table or table[col].isna().all():
            raise EscaleError(f"{flag}: no record carries {col} (measure it first, e.g. escale profile "
                              f"--family eseg --latency BACKEND --format json > recs.json; then --records recs.json)")
    rows = table[table[xcol].notna() & table[ycol].notna()]
    sizes = set(rows["input_size"]) if "input_size" in rows else {"1024x2048"}
    size = sizes.pop().replace("x", "×") if len(sizes) == 1 else "mixed sizes"
    xlabel, ylabel = xlabel.replace("1024×2048", size), ylabel.replace("1024×2048", size)
    paper_col = _PAPER_COLS.get(xcol)
    if "gmacs" in (xcol, ycol) and size != "1024×2048":
        paper_col = None  # the paper's FLOPs are at 1024x2048 only
    with paper_style():
        fig, (ax,) = new_figure(COLUMN_IN, 2.9)
        handles, labels = [], []
        kind = rows["name"].map(_preset_family)
        for fam in ("ESeg-Lite", "ESeg"):
            grp = rows[kind == fam].sort_values(xcol)
            if not len(grp):
                continue
            ax.plot(grp[xcol], grp[ycol], "o-", color=family_color(fam), ms=4.5, zorder=3)
            handles.append(_handle(fam, family_color(fam), ls="-"))
            labels += [(r[xcol], r[ycol], r["name"], family_color(fam)) for _, r in grp.iterrows()]
            if paper_col and paper_col in grp:  # the paper's own value on both axes where it gives one
                py = _PAPER_COLS.get(ycol, ycol)
                pts = grp[[paper_col, py]].dropna()
                ax.scatter(pts[paper_col], pts[py], marker="x", s=18, color="0.35", linewidths=0.8, zorder=4)
        variants = rows[kind == "variant"]
        if len(variants):  # specs that are not paper presets: single points
            ax.scatter(variants[xcol], variants[ycol], marker="D", s=22, color=family_color("escale"), zorder=4)
            handles.append(_handle("variant", family_color("escale"), "D"))
            labels += [(r[xcol], r[ycol], r["name"], family_color("escale")) for _, r in variants.iterrows()]
        if paper_col and rows[paper_col].notna().any():
            handles.append(_handle("paper's value", "0.35", "x"))
        if xlog:
            log_x(ax)
        ax.margins(x=0.1, y=0.1)
        if ylog:
            log_x(ax, "y")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel.replace("(%)", "(%, paper)") if ycol == "miou" and _paper_miou_only(rows) else ylabel)
        fig.suptitle(f"ESeg family: {xlabel.split(' (')[0]} vs. {ylabel.split(' (')[0]}")
        _legend_below(fig, handles, ncol=len(handles))
        freeze_layout(fig)
        xs, ys, texts, colors = zip(*labels, strict=True)
        place_labels(ax, xs, ys, texts, colors)
    return fig


def _preset_family(name: str) -> str:
    """"ESeg-Lite" / "ESeg" for the paper's presets, "variant" for any other spec name."""
    from escale.spec import FAMILIES

    if name in FAMILIES["eseg-lite"]:
        return "ESeg-Lite"
    return "ESeg" if name in FAMILIES["eseg-full"] else "variant"


def _paper_miou_only(rows) -> bool:
    return "miou_source" in rows and rows["miou_source"].fillna("").str.startswith("paper").all()


def plot_study_front(frame, cost_label: str = "Cost", title: str = "Study", budget: float | None = None,
                     log_scale: bool | None = None, budget_unit: str = "ms") -> Figure:
    """A study's trials (``trials_frame``): dominated in grey, infeasible as grey crosses, the Pareto front
    (max mIoU, min cost) as a connected staircase, trials that reproduce a paper preset as labelled stars.
    ``budget`` (same unit as the cost) draws a vertical dashed line.
    """
    if not len(frame):
        raise EscaleError(f"study: {title!r} has no complete trials to plot")
    costs = frame["cost"].astype(float)
    if log_scale is None:
        log_scale = bool(costs.min() > 0 and costs.max() / costs.min() > 8)
    front = frame[frame["on_front"]].sort_values("cost")
    with paper_style():
        fig, (ax,) = new_figure(COLUMN_IN, 2.9)
        rest = frame[~frame["on_front"] & frame["feasible"]]
        bad = frame[~frame["feasible"]]
        ax.scatter(rest["cost"], rest["miou"], s=12, color=DOMINATED, zorder=2)
        ax.scatter(bad["cost"], bad["miou"], s=14, marker="x", color=DOMINATED, linewidths=0.8, zorder=2)
        ax.plot(front["cost"], front["miou"], "o-", drawstyle="steps-post", color=family_color("escale"),
                ms=4, zorder=3)
        ax.scatter(front["cost"], front["miou"], s=18, color=family_color("escale"), zorder=4)
        presets = frame[frame["preset"].notna()]
        ax.scatter(presets["cost"], presets["miou"], s=60, marker="*", color=family_color("ESeg"),
                   edgecolors="white", linewidths=0.4, zorder=5)
        handles = [_handle("Pareto front", family_color("escale"), ls="-")]
        if len(rest):
            handles.append(_handle("dominated", DOMINATED))
        if len(bad):
            handles.append(_handle("over budget", DOMINATED, "x"))
        if len(presets):
            handles.append(_handle("paper preset", family_color("ESeg"), "*"))
        if budget is not None:
            ax.axvline(budget, ls="--", lw=0.8, color="0.3", zorder=1)
            handles.append(_handle(f"budget {budget:g} {budget_unit}", "0.3", "none", ls="--"))
        if log_scale:
            log_x(ax)
        ax.set_xlabel(cost_label)
        objectives = set(frame["accuracy"].dropna()) if "accuracy" in frame else set()
        ax.set_ylabel(f"mIoU (%, {objectives.pop()})" if len(objectives) == 1 else "mIoU (%)")
        heading = f"Study {title}: mIoU vs. {cost_label.split(' (')[0]}, {len(frame)} trials"
        fig.suptitle("\n".join(textwrap.wrap(heading, 60, break_long_words=True)))  # long names wrap, never clip
        _legend_below(fig, handles, ncol=min(len(handles), 3))
        freeze_layout(fig)
        labels = [(r["cost"], r["miou"], str(r["preset"]), family_color("ESeg")) for _, r in presets.iterrows()]
        labels += [(r["cost"], r["miou"], f"#{r['trial']}", family_color("escale"))
                   for _, r in front.iterrows() if r["preset"] is None or r["preset"] != r["preset"]]
        others = list(zip(rest["cost"], rest["miou"], strict=True)) + list(zip(bad["cost"], bad["miou"], strict=True))
        if labels:
            xs, ys, texts, colors = zip(*labels, strict=True)
            place_labels(ax, xs, ys, texts, colors, obstacles=others)
    return fig


PART_COLORS = {"encoder": "#4c72b0", "decoder": "#dd8452", "head": "#55a868"}
LEVEL_GROUPS = ("P0–P1", "P2", "P3", "P4", "P5", "P6–P9")


def _level_shares(by_level: dict[str, float]) -> dict[str, float]:
    """Shares (%) per level group; P0 (the input size: the final resize) joins P1, 1x1 maps join P6–P9."""
    grouped = dict.fromkeys(LEVEL_GROUPS, 0.0)
    for level, amount in by_level.items():
        n = int(level[1:]) if level.startswith("P") and level[1:].isdigit() else 99
        key = f"P{n}" if 2 <= n <= 5 else ("P0–P1" if n <= 1 else "P6–P9")
        grouped[key] += amount
    total = sum(grouped.values()) or 1
    return {k: 100.0 * v / total for k, v in grouped.items()}


LATENCY_KEYS = ("latency_by_part_ms", "latency_by_level_ms", "predicted_latency_ms")  # in ProfileRecord.extra


def _share_bars(ax, shares: list[dict[str, float]], groups, colors, ylabel: str, totals: list[str], title: str,
                names: list[str]) -> None:
    """One stacked bar of ``shares`` per record, totals above the bars."""
    idx = np.arange(len(shares))
    bottom = np.zeros(len(shares))
    for group, color in zip(groups, colors, strict=True):
        share = np.array([s.get(group, 0.0) for s in shares])
        label = group if share.max() >= 1 else f"{group} (≤{share.max():.1g}%)"
        ax.bar(idx, share, 0.7, bottom=bottom, color=color, label=label)
        bottom += share
    ax.set_xticks(idx, [n.replace("ESeg-", "") for n in names], rotation=0)
    ax.set_ylim(0, 112)
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="x", visible=False)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), handlelength=1.0)
    for i, text in enumerate(totals):
        ax.text(i, 101, text, ha="center", va="bottom", fontsize=6.5)


def plot_flops_breakdown(records, latency: bool = False) -> Figure:
    """Share of MACs (%) per part (encoder / decoder / head) and per pyramid level, one bar per record.

    The total (B multiply-adds) is written above each bar; levels P6–P9 include the 1×1 squeeze-excite
    maps ("global"). ``records`` are saved ProfileRecords (``macs_by_part``, ``macs_by_level``). With
    ``latency``, a second row shows the shares of *predicted* latency the same way, from each record's
    ``extra["latency_by_part_ms"]`` / ``["latency_by_level_ms"]`` (``escale plot breakdown --latency``
    puts them there from a kernel latency table; ``extra["latency_note"]`` names the table and settings).
    """
    records = [r for r in records if r.kind == "eseg"]  # generic modules have no parts or levels
    if not records:
        raise EscaleError("breakdown: no ESeg records to plot (generic modules: escale profile --by module)")
    if latency and not all(r.extra.get(k) for r in records for k in LATENCY_KEYS):
        raise EscaleError("breakdown --latency: the records carry no predicted latency breakdown "
                          f"(extra: {', '.join(LATENCY_KEYS)})")
    names = [r.name for r in records]
    cmap = __import__("matplotlib").colormaps["viridis"]
    level_colors = [cmap(k / (len(LEVEL_GROUPS) - 1)) for k in range(len(LEVEL_GROUPS))]
    rows = [("MACs", [{p: 100.0 * r.macs_by_part.get(p, 0) / max(r.macs, 1) for p in PART_COLORS} for r in records],
             [_level_shares(r.macs_by_level) for r in records],
             [f"{r.gmacs:.0f}B" if r.gmacs >= 10 else f"{r.gmacs:.1f}B" for r in records])]
    if latency:
        rows.append(("predicted latency",
                     [{p: 100.0 * v / r.extra["predicted_latency_ms"] for p, v in r.extra["latency_by_part_ms"].items()}
                      for r in records],
                     [_level_shares(r.extra["latency_by_level_ms"]) for r in records],
                     [f"{r.extra['predicted_latency_ms']:.0f}" for r in records]))
    with paper_style():
        fig, axes = new_figure(PAGE_IN, 2.9 * len(rows), nrows=len(rows), ncols=2)
        axes = np.asarray(axes).reshape(len(rows), 2)
        for (what, parts, levels, totals), (ax_part, ax_level) in zip(rows, axes, strict=True):
            _share_bars(ax_part, parts, list(PART_COLORS), list(PART_COLORS.values()), f"share of {what} (%)",
                        totals, f"{what} by part" if latency else "by part", names)
            _share_bars(ax_level, levels, list(LEVEL_GROUPS), level_colors, f"share of {what} (%)", totals,
                        f"{what} by pyramid level" if latency else "by pyramid level", names)
        size = "×".join(str(s) for s in records[0].input_size)
        title = f"Where the MACs go: ESeg models at {size}, batch 1 (B = billions of multiply-adds)"
        if latency:
            title = (f"Where the MACs (top, at {size}, B = billions of multiply-adds) and the predicted latency "
                     f"go\n(bottom: total predicted ms above each bar; from a kernel latency table, {records[0].extra.get('latency_note', '')})")
        fig.suptitle(title)
    return fig
