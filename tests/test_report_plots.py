"""Figures and tables over saved records: units on axes, labels that do not overlap, latency only when measured."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

import escale
from escale.errors import EscaleError
from escale.report import (
    family_table,
    load_records,
    markdown_table,
    paper_figure,
    plot_family,
    plot_flops_breakdown,
    plot_paper_figure1,
    plot_paper_figure4,
    save_figure,
)
from escale.report.markdown import FAMILY_MD, LATENCY_MD, environment_lines

RECORDS = Path(__file__).parents[1] / "reports" / "eseg-family" / "records.json"


@pytest.fixture(scope="module")
def records():
    return load_records(RECORDS)


@pytest.fixture(scope="module")
def table(records):
    return family_table(records)


def label_texts(ax) -> list:
    return [t for t in ax.texts if t.get_text()]


def assert_labels_clear(fig) -> None:
    """No two point labels overlap, and every label lies inside its axes."""
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        frame = ax.get_window_extent(renderer)
        boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in label_texts(ax)]
        for (na, a), (nb, b) in itertools.combinations(boxes, 2):
            assert not a.overlaps(b), f"labels {na!r} and {nb!r} overlap"
        for name, box in boxes:
            assert frame.x0 - 1 <= box.x0 and box.x1 <= frame.x1 + 1, f"{name!r} leaves the axes"
            assert frame.y0 - 1 <= box.y0 and box.y1 <= frame.y1 + 1, f"{name!r} leaves the axes"


def test_figure1_axes_units_labels_and_escale_points(table):
    fig = plot_paper_figure1(table)
    params_ax, flops_ax = fig.axes
    assert params_ax.get_xlabel() == "Params (M)" and params_ax.get_xscale() == "log"
    assert flops_ax.get_xlabel() == "FLOPs (B multiply-adds, 1024×2048)" and flops_ax.get_xscale() == "log"
    assert params_ax.get_ylabel() == "Cityscapes val mIoU (%)"
    # 11 peers with published sizes + ESeg-S/M/L, each labelled once per panel
    assert sorted(t.get_text() for t in label_texts(flops_ax))[:3] == ["Auto-DeepLab-L", "Auto-DeepLab-M",
                                                                      "Auto-DeepLab-S"]
    assert len(label_texts(flops_ax)) == 14
    escale_pts = flops_ax.collections[-1].get_offsets()  # hollow squares: escale's FLOPs, paper mIoU
    by_name = table.set_index("name")
    assert sorted(escale_pts[:, 0].tolist()) == sorted(by_name.loc[["ESeg-S", "ESeg-M", "ESeg-L"], "gmacs"])
    assert sorted(escale_pts[:, 1].tolist()) == [80.1, 81.6, 82.6]
    assert_labels_clear(fig)
    assert len(fig.legends) == 1 and fig.legends[0].get_bbox_to_anchor().y0 <= params_ax.get_position().y0 * 1e3


def test_figure4_fps_points_and_daggers():
    fig = plot_paper_figure4()
    (ax,) = fig.axes
    assert ax.get_xlabel() == "Speed (FPS, batch 1)"
    texts = [t.get_text() for t in label_texts(ax)]
    assert len(texts) == 16 and texts.count("FasterSeg") == 1  # 170† kept, 164 dropped
    assert "ESeg-Lite-M (512×1024)" in texts
    lite_line = ax.get_lines()[0]
    assert lite_line.get_xdata().tolist() == [79, 125, 189]
    assert_labels_clear(fig)


def test_family_plot_axes_and_errors(table):
    fig = plot_family(table, "params", "miou")
    (ax,) = fig.axes
    assert ax.get_xlabel() == "Params (M)" and ax.get_ylabel() == "Cityscapes val mIoU (%, paper)"
    assert sorted(t.get_text() for t in label_texts(ax)) == sorted(table["name"])
    assert_labels_clear(fig)
    with pytest.raises(EscaleError, match=r"--x: 'speed' is unknown \(allowed: flops, params, latency, fps, miou\)"):
        plot_family(table, "speed")
    with pytest.raises(EscaleError, match="--x latency: no record carries latency_ms"):
        plot_family(table, "latency")
    with pytest.raises(EscaleError, match=r"--figure: 3 is unknown \(allowed: 1, 4\)"):
        paper_figure(3)


def test_breakdown_shares_sum_to_100_and_totals_are_written(records):
    fig = plot_flops_breakdown(records)
    part_ax, level_ax = fig.axes
    for ax in (part_ax, level_ax):
        heights = [0.0] * len(records)
        for bar_container in ax.containers:
            for i, bar in enumerate(bar_container):
                heights[i] += bar.get_height()
        assert heights == pytest.approx([100.0] * len(records))
    assert [t.get_text() for t in part_ax.texts] == ["17B", "43B", "115B", "34B", "111B", "340B"]
    assert part_ax.get_ylabel() == "share of MACs (%)"


def test_save_figure_writes_pdf_and_png(tmp_path, table):
    fig = plot_family(table)
    paths = save_figure(fig, tmp_path / "sub" / "fam.png")
    assert [p.name for p in paths] == ["fam.pdf", "fam.png"]
    assert paths[0].read_bytes()[:4] == b"%PDF" and paths[1].read_bytes()[:4] == b"\x89PNG"
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(EscaleError, match=r"--out: cannot write .*file/x"):
        save_figure(fig, blocker / "x")


def test_family_table_latency_columns_only_when_measured(tiny_spec):
    rec = escale.profile(tiny_spec, input_size=(64, 128))
    plain = family_table([rec])
    assert "latency_ms" not in plain and plain.loc[0, "miou"] is None
    assert plain.loc[0, "params"] == rec.params and plain.loc[0, "levels"] == "P3-P6"
    # the keys escale.profiler.latency writes (LatencyResult.to_extra), and a trained mIoU
    rec.extra.update(latency_ms=12.5, fps=80.0, latency_backend="torch", latency_precision="fp32",
                     latency_threads=2, latency_input_size="64x128", device_name="AMD EPYC", miou=41.0,
                     env={"device": "cpu", "device_name": "AMD EPYC", "threads": 2, "load_avg_1m": 1.5})
    measured = family_table([rec])
    assert measured.loc[0, ["latency_ms", "fps", "backend", "device"]].tolist() == [12.5, 80.0, "torch", "AMD EPYC"]
    assert measured.loc[0, ["miou", "miou_source"]].tolist() == [41.0, "escale train"]
    md = markdown_table(measured, FAMILY_MD + LATENCY_MD)
    assert "| latency (ms) |" in md.splitlines()[0]
    assert md.splitlines()[-1].endswith("| 64x128 | 12.50 | 80.0 | torch | fp32 | 2 | AMD EPYC |")
    lines = environment_lines([rec])
    assert "- latency measured with: device=cpu, device_name=AMD EPYC, threads=2" in lines
    assert lines[-1] == "- machine load (1-min load average) during the measurements: 1.5–1.5"


def test_markdown_table_by_hand():
    import pandas as pd

    frame = pd.DataFrame([{"name": "a", "gmacs": 1.234, "gmacs_dev_pct": -0.02}, {"name": "b", "gmacs": None,
                                                                                   "gmacs_dev_pct": 2.0}])
    md = markdown_table(frame, [c for c in FAMILY_MD if c[0] in ("name", "gmacs", "gmacs_dev_pct")])
    assert md.splitlines() == ["| model | FLOPs (B) | Δ FLOPs |", "|:---|---:|---:|",
                               "| a | 1.2 | +0.0% |", "| b | – | +2.0% |"]
