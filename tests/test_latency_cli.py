"""``escale backends``, ``escale profile --latency``, ``escale export``: exit codes, JSON/CSV, one-line errors."""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch

from escale.cli.main import main

QUICK_ARGS = ["--input-size", "64x64", "--threads", "1", "--min-runs", "2", "--min-duration", "0",
              "--warmup-s", "0", "--no-isolate"]


@pytest.fixture
def tiny_yaml(tiny_spec, tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(tiny_spec.to_yaml())
    return str(path)


def test_backends_json(capsys):
    assert main(["backends", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by = {(r["backend"], r["device"]): r for r in rows}
    assert {("torch", "cpu"), ("onnxruntime", "cpu"), ("tensorrt", "cuda")} <= set(by)
    assert by[("onnxruntime", "cpu")]["available"] and by[("onnxruntime", "cpu")]["precisions"] == ["fp32"]
    if not torch.cuda.is_available():
        assert not by[("tensorrt", "cuda")]["available"] and by[("tensorrt", "cuda")]["reason"]


def test_profile_with_latency_json_and_csv(tiny_yaml, capsys):
    assert main(["profile", tiny_yaml, "--latency", "onnxruntime", "--format", "json", *QUICK_ARGS]) == 0
    rec = json.loads(capsys.readouterr().out)[0]
    x = rec["extra"]
    assert x["latency_ms"] > 0 and x["fps"] == pytest.approx(1000 / x["latency_ms"]) and x["peak_mem_mb"] > 0
    assert x["latency_backend"] == "onnxruntime" and x["latency_threads"] == 1 and x["env"]["threads"] == 1
    assert x["latency_details"]["max_abs_diff"] <= 1e-4 and rec["macs"] > 0
    assert main(["profile", tiny_yaml, "--latency", "torch", "--format", "csv", *QUICK_ARGS]) == 0
    row = next(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert float(row["latency_ms"]) > 0 and row["latency_backend"] == "torch" and row["latency_input_size"] == "64x64"


def test_profile_table_shows_latency_columns(tiny_yaml, capsys):
    assert main(["profile", tiny_yaml, "--latency", "torch", *QUICK_ARGS]) == 0
    out = capsys.readouterr().out
    assert "latency" in out and "FPS" in out and "peak mem" in out and "1 thread(s)" in out
    assert "Latency: torch on cpu" in " ".join(out.split())  # default options: nothing named
    assert main(["profile", tiny_yaml, "--latency", "torch", "--latency-opt", "channels_last=1", *QUICK_ARGS]) == 0
    assert "Latency: torch (channels_last) on cpu" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("args, message", [
    (["--latency", "tvm"], "backend 'tvm' is unknown (available: "),
    (["--latency", "onnxruntime", "--precision", "fp16"], "--precision: 'fp16' is not supported by backend"),
    (["--latency", "torch", "--latency-opt", "turbo=1"], "turbo unknown for backend 'torch'"),
])
def test_profile_latency_bad_input_is_one_line(tiny_yaml, capsys, args, message):
    assert main(["profile", tiny_yaml, *args, *QUICK_ARGS]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.err.count("\n") == 1 and captured.out == ""


def test_one_failing_model_keeps_the_others(tiny_yaml, tiny_spec, tmp_path, capsys, monkeypatch):
    import escale.profiler.latency as lat

    real = lat.measure_latency

    def flaky(spec, **kw):  # noqa: ANN001, ANN003
        if spec.name == "bad":
            raise lat.MeasurementError("latency: simulated failure")
        return real(spec, **kw)

    monkeypatch.setattr(lat, "measure_latency", flaky)
    bad = tmp_path / "bad.yaml"
    bad.write_text(tiny_spec.with_overrides({"name": "bad"}).to_yaml())
    assert main(["profile", str(bad), tiny_yaml, "--latency", "torch", "--format", "json", *QUICK_ARGS]) == 1
    captured = capsys.readouterr()
    recs = {r["name"]: r["extra"] for r in json.loads(captured.out)}
    assert recs["tiny"]["latency_ms"] > 0 and recs["bad"]["latency_error"] == "latency: simulated failure"
    assert "escale: error: bad: latency: simulated failure" in captured.err


def test_export_onnx_and_tensorrt(tiny_yaml, tmp_path, capsys):
    out = tmp_path / "t.onnx"
    assert main(["export", tiny_yaml, "--to", "onnx", "-o", str(out), "--input-size", "64x64", "--format",
                 "json"]) == 0
    info = json.loads(capsys.readouterr().out)[0]
    assert out.exists() and info["opset"] == 17 and info["max_abs_diff"] <= 1e-4
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert main(["export", tiny_yaml, "--to", "tensorrt", "-o", str(tmp_path / "t.engine"),
                     "--input-size", "64x64"]) == 2
        err = capsys.readouterr().err
        assert "tensorrt" in err and err.count("\n") == 1 and not (tmp_path / "t.engine").exists()
