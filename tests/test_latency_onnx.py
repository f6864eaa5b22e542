"""ONNX export of arbitrary modules and ESeg, ORT numerics against eager, threads, error paths."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from escale.errors import EscaleError
from escale.profiler.latency import QUICK, time_callable
from escale.profiler.latency.fold import build_folded
from escale.profiler.latency.onnxrt import (
    OPSET,
    ExportError,
    NumericsError,
    OrtRunner,
    check_numerics,
    export_onnx,
    export_spec_onnx,
    onnx_opset,
)


def test_eseg_export_matches_eager(tiny_spec, tmp_path):
    model, _ = build_folded(tiny_spec)
    x = torch.randn(1, 3, 64, 64)
    path = export_onnx(model, x, tmp_path / "tiny.onnx", output_names=["logits"])
    assert onnx_opset(path) == OPSET == 17
    runner = OrtRunner(path, threads=1)
    assert runner.input_names == ["input"] and runner.output_names == ["logits"]
    options = runner.session.get_session_options()
    assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert runner.info()["providers"] == ["CPUExecutionProvider"]
    out = runner.run(x)[0]
    assert out.shape == (1, 19, 64, 64)
    assert check_numerics(model, runner, x, atol=1e-4) <= 1e-4


def test_single_op_module_for_a_lookup_table(tmp_path):
    conv = nn.Conv2d(8, 16, 3, padding=1, groups=8)
    x = torch.randn(1, 8, 16, 16)
    runner = OrtRunner(export_onnx(conv, x, tmp_path / "conv.onnx"), threads=1)
    stats = time_callable(runner.bind(x), QUICK)
    assert stats.runs == 3 and stats.median_ms > 0
    with torch.no_grad():
        assert abs(runner.run(x)[0] - conv(x).numpy()).max() < 1e-5


class Add(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a * 2 + b


def test_several_inputs(tmp_path):
    a, b = torch.ones(2, 3), torch.full((2, 3), 0.5)
    runner = OrtRunner(export_onnx(Add(), (a, b), tmp_path / "add.onnx"))
    assert runner.input_names == ["input0", "input1"]
    assert runner.run(a, b)[0].tolist() == [[2.5] * 3] * 2
    with pytest.raises(EscaleError, match=r"1 input\(s\) given, the model takes 2"):
        runner.run(a)


class FFT(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.fft(x).real


def test_export_failure_is_one_line(tmp_path):
    with pytest.raises(ExportError, match=r"^export: ONNX export of FFT failed") as err:
        export_onnx(FFT(), torch.randn(4, 8), tmp_path / "fft.onnx")
    assert "\n" not in str(err.value)


def test_numerics_error_when_outputs_differ(tmp_path):
    torch.manual_seed(0)
    a, b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1)
    x = torch.randn(1, 3, 4, 4)
    runner = OrtRunner(export_onnx(a, x, tmp_path / "a.onnx"))
    with pytest.raises(NumericsError, match="differs from eager"):
        check_numerics(b, runner, x, atol=1e-4)


def test_export_spec_onnx(tiny_spec, tmp_path):
    info = export_spec_onnx(tiny_spec, tmp_path / "t.onnx", (64, 64), threads=1)
    assert info["opset"] == 17 and info["max_abs_diff"] <= 1e-4 and info["bn_folded"] > 20
    assert info["spec_id"] == tiny_spec.spec_id and (tmp_path / "t.onnx").stat().st_size > 100_000


def test_export_and_latency_below_the_top_level_size(tiny_spec, tmp_path):
    """At 32x48 tiny_spec's P6 would be 0.5x0.75: it is 1x1, the ONNX model still matches eager, and the
    latency record names the collapsed level."""
    from escale.profiler.latency import QUICK, measure_latency

    info = export_spec_onnx(tiny_spec, tmp_path / "small.onnx", (32, 48), threads=1)
    assert info["max_abs_diff"] <= 1e-4
    res = measure_latency(tiny_spec, backend="onnxruntime", input_size=(32, 48), threads=1, isolate=False,
                          config=QUICK)
    assert res.notes == ["P6 is 1x1 at 32x48 (levels below one pixel are clamped to 1)"] and res.latency_ms > 0
    assert res.to_extra()["latency_notes"] == res.notes
