"""Where the predicted time goes: kernel sites, the breakdown by part / level / kernel, its CLI and plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import escale
from escale.cli.main import main
from escale.search.kernels import model_kernel_sites, model_kernels
from escale.search.lut import build_table
from escale.search.predictor import CLASSES, LatencyPredictor, kernel_class, work

SIZE = (64, 128)


def tiny(**over: object) -> escale.ESegSpec:
    return escale.preset("ESeg-Lite-S").with_overrides({
        "encoder.width": 0.25, "encoder.depth": 0.3, "decoder.channels": 16, "decoder.max_level": 6, **over})


def fake_timer(k) -> dict:  # noqa: ANN001 - a Kernel
    return {"raw_ms": 0.01 + 1e-6 * work(k), "iqr_ms": 0.0, "runs": 1}


@pytest.fixture(scope="module")
def predictor() -> LatencyPredictor:
    return LatencyPredictor(build_table([tiny()], SIZE, timer=fake_timer))


def test_kernel_sites_name_the_module_and_output_of_each_kernel():
    sites = model_kernel_sites(tiny(), SIZE)
    assert [s.kernel for s in sites] == model_kernels(tiny(), SIZE)
    assert (sites[0].module, sites[0].out_shape) == ("encoder.body.conv_stem", (1, 8, 32, 64))
    assert (sites[-1].kernel.op, sites[-1].module, sites[-1].out_shape) == ("resize", "head", (1, 19, 64, 128))
    assert {s.module.split(".")[0] for s in sites} == {"encoder", "extra", "decoder", "fusion", "head"}


def test_breakdown_sums_to_the_prediction_and_follows_the_class_slopes(predictor):
    spec = tiny()
    slopes = dict(zip(CLASSES, (2.0, 0.5, 1.0, 3.0, 1.5), strict=True))
    predictor.table.calibration = {"mode": "classes", "slope": 1.0, "intercept_ms": 0.0, "slopes": slopes}
    b = predictor.breakdown(spec)
    total = predictor.predict(spec).latency_ms
    assert b.total_ms == pytest.approx(total) and b.fixed_ms == 0.0 and b.calibrated
    assert sum(b.by_part_ms.values()) == pytest.approx(total) == pytest.approx(sum(b.by_level_ms.values()))
    assert sum(k["ms"] for k in b.by_kernel) == pytest.approx(total)
    # closed form: the head's part is its kernels' table times, each scaled by its class slope
    head = sum(predictor.kernel_ms(s.kernel)[0] * slopes[kernel_class(s.kernel)]
               for s in model_kernel_sites(spec, SIZE) if s.module.split(".")[0] in ("fusion", "head"))
    assert b.by_part_ms["head"] == pytest.approx(head)
    assert [k["ms"] for k in b.by_kernel] == sorted((k["ms"] for k in b.by_kernel), reverse=True)
    assert set(b.by_level_ms) <= {"P0", "P1", "P2", "P3", "P4", "P5", "P6", "global"} and b.by_level_ms["P6"] > 0
    predictor.table.calibration = {"mode": "linear", "slope": 2.0, "intercept_ms": 5.0}  # intercept: fixed_ms
    b = predictor.breakdown(spec)
    assert b.fixed_ms == 5.0 and sum(b.by_part_ms.values()) + 5.0 == pytest.approx(predictor.predict(spec).latency_ms)
    predictor.table.calibration = None


def test_lut_predict_by_part_level_kernel(tmp_path: Path, capsys):
    table = build_table([tiny()], SIZE, timer=fake_timer).save(tmp_path / "t.json")
    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text(tiny().to_yaml())
    base = ["lut", "predict", str(spec_file), "--lut", str(table)]
    assert main([*base, "--by", "part", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["part"] for r in rows] == ["encoder", "decoder", "head"]
    assert sum(r["share_pct"] for r in rows) == pytest.approx(100.0)
    assert sum(r["macs_share_pct"] for r in rows) == pytest.approx(100.0)
    assert main([*base, "--by", "level"]) == 0
    out = capsys.readouterr().out
    assert "share of latency" in out and "share of MACs" in out and "P6" in out
    assert main([*base, "--by", "kernel", "--top", "3", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 3 and rows[0]["predicted_ms"] >= rows[1]["predicted_ms"] >= rows[2]["predicted_ms"]
    assert main([*base, "--by", "kernel", "--top", "0"]) == 2
    assert "--top: 0 is not allowed" in capsys.readouterr().err


def test_plot_breakdown_with_latency(tmp_path: Path, capsys):
    from escale.cli import cmd_plot
    from escale.report import plot_flops_breakdown

    table = build_table([tiny()], SIZE, timer=fake_timer).save(tmp_path / "t.json")
    recs = [escale.profile(tiny(), input_size=SIZE)]
    cmd_plot.add_latency_breakdown(recs, LatencyPredictor(escale.search.lut.load_table(table)))
    x = recs[0].extra
    assert sum(x["latency_by_part_ms"].values()) == pytest.approx(x["predicted_latency_ms"])
    assert len(plot_flops_breakdown(recs, latency=True).axes) == 4
    assert len(plot_flops_breakdown(recs).axes) == 2
    with pytest.raises(escale.EscaleError, match="no predicted latency breakdown"):
        plot_flops_breakdown([escale.profile(tiny(), input_size=SIZE)], latency=True)
    out = tmp_path / "lat"
    assert main(["plot", "breakdown", "--latency", "--lut", str(table), "--family", "eseg-lite", "--out", str(out)]) == 0
    assert (tmp_path / "lat.png").stat().st_size > 10_000 and (tmp_path / "lat.pdf").is_file()
