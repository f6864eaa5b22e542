"""Backend registry, bad input, TensorRT without TensorRT (mocks), measure_latency, process isolation."""

from __future__ import annotations

import os
import sys
import types

import pytest
import torch

from escale.errors import BackendUnavailableError, RegistryError, SpecError
from escale.profiler.latency import (
    BACKENDS,
    QUICK,
    LatencyBackend,
    LatencyResult,
    backend_table,
    get_backend,
    measure_latency,
    register_backend,
    run_in_child,
)
from escale.profiler.latency import tensorrt_backend as trtb
from escale.profiler.latency.isolate import MeasurementError
from escale.profiler.latency.memory import MB
from escale.profiler.latency.onnxrt import ExportError


def test_registry_lists_known_backends():
    assert {"torch", "onnxruntime", "tensorrt"} <= set(BACKENDS)
    with pytest.raises(RegistryError, match=r"--latency: backend 'nope' is unknown \(available: ") as err:
        get_backend("nope")
    assert all(name in str(err.value) for name in ("torch", "onnxruntime", "tensorrt"))

    class Again(LatencyBackend):
        name = "torch"

    with pytest.raises(RegistryError, match="already registered"):
        register_backend(Again)


def test_bad_precision_device_and_options_are_one_line():
    with pytest.raises(BackendUnavailableError, match=r"--precision: 'fp16' is not supported by backend "
                                                      r"'onnxruntime' on cpu \(supported: fp32\)"):
        get_backend("onnxruntime").check("cpu", "fp16")
    with pytest.raises(BackendUnavailableError, match=r"--device: 'cpu' is not supported by backend 'tensorrt'"):
        get_backend("tensorrt").check("cpu", "fp16")
    with pytest.raises(SpecError, match="unknown for backend 'torch'"):
        get_backend("torch").check("cpu", "fp32", {"fast": "1"})
    opts = get_backend("torch").check("cpu", "fp32", {"channels_last": "1", "compile": "off"})
    assert opts == {"channels_last": True, "compile": False, "cuda_graphs": False, "cast_model": False}
    with pytest.raises(SpecError, match="channels_last='maybe'"):
        get_backend("torch").check("cpu", "fp32", {"channels_last": "maybe"})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_unavailable_backends_say_why():
    rows = {(r["backend"], r["device"]): r for r in backend_table()}
    assert rows[("torch", "cpu")]["available"] and rows[("onnxruntime", "cpu")]["available"]
    assert not rows[("torch", "cuda")]["available"] and "no CUDA GPU" in rows[("torch", "cuda")]["reason"]
    assert not rows[("tensorrt", "cuda")]["available"]
    with pytest.raises(BackendUnavailableError, match="backend 'tensorrt' cannot run on cuda here: "):
        get_backend("tensorrt").check("cuda", "fp16")


# --- TensorRT, with a fake ``tensorrt`` module that records the documented API calls ---------------------

def fake_trt(version: str = "10.3.0", parse_ok: bool = True, plan: bytes | None = b"PLAN",
             weak_typing: bool = True) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    calls: list = []
    trt.calls = calls

    class Logger:
        WARNING = 2

        def __init__(self, severity):  # noqa: ANN001
            calls.append(("Logger", severity))

    flags = {"TF32": 1}
    if weak_typing:
        flags["FP16"] = 0
    trt.Logger = Logger
    trt.BuilderFlag = types.SimpleNamespace(**flags)
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=0, STRONGLY_TYPED=1)
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")

    class Config:
        def set_memory_pool_limit(self, pool, size):  # noqa: ANN001
            calls.append(("set_memory_pool_limit", pool, size))

        def set_flag(self, flag):  # noqa: ANN001
            calls.append(("set_flag", flag))

        def clear_flag(self, flag):  # noqa: ANN001
            calls.append(("clear_flag", flag))

    class Builder:
        def __init__(self, logger):  # noqa: ANN001
            pass

        def create_network(self, flags):  # noqa: ANN001
            calls.append(("create_network", flags))
            return "network"

        def create_builder_config(self):
            return Config()

        def build_serialized_network(self, network, config):  # noqa: ANN001
            calls.append(("build_serialized_network", network))
            return plan

    class OnnxParser:
        num_errors = 0 if parse_ok else 2

        def __init__(self, network, logger):  # noqa: ANN001
            pass

        def parse(self, data):  # noqa: ANN001
            return parse_ok

        def get_error(self, i):  # noqa: ANN001
            return f"node {i}: unsupported"

    trt.Builder, trt.OnnxParser = Builder, OnnxParser
    return trt


@pytest.fixture
def onnx_file(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"onnx")
    return path


def test_build_engine_follows_the_documented_calls(onnx_file):
    trt = fake_trt()
    assert trtb.build_engine(onnx_file, "fp16", workspace_mb=512, trt=trt) == b"PLAN"
    assert ("create_network", 0) in trt.calls  # TensorRT 10: explicit batch is the default
    assert ("set_memory_pool_limit", "workspace", 512 * MB) in trt.calls
    assert ("set_flag", 0) in trt.calls and not any(c[0] == "clear_flag" for c in trt.calls)
    trt = fake_trt(version="8.6.1")
    trtb.build_engine(onnx_file, "fp32", trt=trt)
    assert ("create_network", 1 << 0) in trt.calls and ("clear_flag", 1) in trt.calls  # EXPLICIT_BATCH, no TF32
    assert not any(c[0] == "set_flag" for c in trt.calls)
    trt = fake_trt()
    trtb.build_engine(onnx_file, "tf32", trt=trt)  # TF32 is TensorRT's default; tf32 asks for it explicitly
    assert ("set_flag", 1) in trt.calls and not any(c[0] == "clear_flag" for c in trt.calls)
    trt = fake_trt(version="11.0.0", weak_typing=False)
    trtb.build_engine(onnx_file, "fp16", trt=trt)
    assert ("create_network", 1 << 1) in trt.calls and not any(c[0] == "set_flag" for c in trt.calls)
    trt = fake_trt(version="11.0.0", weak_typing=False)
    trtb.build_engine(onnx_file, "fp32", trt=trt)  # strongly typed networks still have the TF32 flag
    assert ("clear_flag", 1) in trt.calls


def test_build_engine_errors(onnx_file):
    with pytest.raises(Exception, match=r"ONNX parser rejected m.onnx \(node 0: unsupported; node 1"):
        trtb.build_engine(onnx_file, "fp16", trt=fake_trt(parse_ok=False))
    with pytest.raises(Exception, match="build_serialized_network failed for m.onnx"):
        trtb.build_engine(onnx_file, "fp16", trt=fake_trt(plan=None))
    no_tf32 = fake_trt()
    no_tf32.BuilderFlag = types.SimpleNamespace(FP16=0)
    with pytest.raises(ExportError, match=r"no BuilderFlag.TF32, so a fp32 engine's use of TF32 cannot be set"):
        trtb.build_engine(onnx_file, "fp32", trt=no_tf32)


def test_tensorrt_availability_reasons(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt(version="8.5.3"))
    ok, why = trtb.TensorRTBackend().is_available("cuda")
    assert not ok and "8.5.3 is too old" in why
    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ok, why = trtb.TensorRTBackend().is_available("cuda")
    assert not ok and "no CUDA GPU visible" in why
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails
    ok, why = trtb.TensorRTBackend().is_available("cuda")
    assert not ok and "tensorrt Python package is not installed" in why


def test_engine_cache_key():
    base = dict(spec_id="abc123", input_size=(1024, 2048), batch=1, precision="fp16", trt_version="10.3.0",
                gpu_name="NVIDIA H100 80GB HBM3", onnx_sha256="0" * 64)
    key = trtb.engine_cache_key(**base)
    assert key.startswith("abc123-1024x2048-b1-fp16-trt10.3.0-nvidia-h100-80gb-hbm3-")
    assert key == trtb.engine_cache_key(**base) and "/" not in key and " " not in key
    changed = [{"spec_id": "abc124"}, {"input_size": (512, 1024)}, {"batch": 2}, {"precision": "fp32"},
               {"trt_version": "10.4.0"}, {"gpu_name": "Tesla V100"}, {"precision": "tf32"},
               {"onnx_sha256": "1" * 64}]
    keys = {trtb.engine_cache_key(**{**base, **c}) for c in changed}
    assert len(keys) == len(changed) and key not in keys
    assert trtb.engine_cache_key(**base, workspace_mb=1024) != key


# --- measure_latency ------------------------------------------------------------------------------------

def test_measure_latency_in_process(tiny_spec):
    res = measure_latency(tiny_spec, backend="torch", input_size=(64, 64), batch=2, threads=1, isolate=False,
                          config=QUICK)
    assert res.runs == 3 and res.warmup_runs == 1 and res.batch == 2 and res.threads == 1
    assert res.fps == pytest.approx(2000.0 / res.latency_ms) and len(res.cpu_samples_ms) == 3
    assert 0 < res.cpu_time_ms
    assert res.latency_ms <= res.latency_p90_ms <= res.latency_p99_ms and res.iqr_ms >= 0
    assert res.peak_mem_mb >= 2 * 19 * 64 * 64 * 4 / MB and "meta" in res.peak_mem_method
    assert res.env["threads"] == 1 and res.env["versions"]["torch"] == torch.__version__
    assert res.env["isolated"] is False and res.details["bn_folded"] > 20
    assert LatencyResult.from_dict(res.to_dict()) == res
    extra = res.to_extra()
    assert {"latency_ms", "latency_p90_ms", "latency_p99_ms", "iqr_ms", "fps", "peak_mem_mb", "env"} <= set(extra)


def test_a_backend_note_reaches_the_result_and_the_profile_caption(tiny_spec, monkeypatch):
    import escale.profiler.latency as latency
    from escale.cli.cmd_profile import add_latency, caption
    from escale.profiler import profile
    from escale.profiler.latency import measure as measure_module
    from escale.profiler.latency.torch_backend import TorchBackend

    class Noted(TorchBackend):
        def measure(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            m = super().measure(*args, **kwargs)
            m.notes.append("timed without CUDA graphs")
            return m

    monkeypatch.setattr(measure_module, "get_backend", lambda name: Noted())
    res = measure_latency(tiny_spec, input_size=(64, 64), threads=1, isolate=False, config=QUICK)
    assert res.notes == ["timed without CUDA graphs"] and res.latency_ms > 0

    monkeypatch.setattr(latency, "measure_latency", lambda spec, **kw: res)
    rec, failures = profile(tiny_spec, input_size=(64, 64)), []
    add_latency(rec, tiny_spec, {}, failures)
    add_latency(rec, tiny_spec, {}, failures)  # a second measurement does not repeat the note
    assert failures == [] and rec.notes.count("timed without CUDA graphs") == 1
    assert f"{rec.name}: timed without CUDA graphs" in caption([rec], "64x64", "dispatch", [rec], False)


def test_measure_latency_bad_input(tiny_spec):
    with pytest.raises(SpecError, match="--batch"):
        measure_latency(tiny_spec, input_size=(64, 64), batch=0, isolate=False)
    with pytest.raises(SpecError, match="input_size: 0x32 is not allowed"):
        measure_latency(tiny_spec, input_size=(0, 32), isolate=False)
    with pytest.raises(RegistryError, match="unknown"):
        measure_latency(tiny_spec, backend="tvm", input_size=(64, 64), isolate=False)
    with pytest.raises(MeasurementError, match="cuda_graphs=1 needs --device cuda"):
        measure_latency(tiny_spec, input_size=(64, 64), isolate=False, config=QUICK, threads=1,
                        options={"cuda_graphs": True})


def test_child_process_has_fixed_allocator_and_threads():
    assert run_in_child("os:getenv", {"key": "MALLOC_MMAP_THRESHOLD_"}) == str(2**30)
    assert run_in_child("os:getenv", {"key": "OMP_NUM_THREADS"}, threads=3) == "3"
    assert run_in_child("os:getenv", {"key": "OMP_WAIT_POLICY"}) == os.environ.get("OMP_WAIT_POLICY", "PASSIVE")
    with pytest.raises(SpecError, match="'nope' is unknown"):
        run_in_child("escale.spec:preset", {"name": "nope"})
    with pytest.raises(MeasurementError, match="JSONDecodeError"):
        run_in_child("json:loads", {"s": "{"})


@pytest.mark.slow
def test_measure_latency_isolated(tiny_spec):
    res = measure_latency(tiny_spec, backend="onnxruntime", input_size=(64, 64), threads=1, config=QUICK)
    assert res.env["isolated"] and res.env["allocator"]["MALLOC_ARENA_MAX"] == "1"
    assert res.details["max_abs_diff"] <= 1e-4 and res.details["intra_op_num_threads"] == 1


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_output_fn_gives_the_paths_output(tiny_spec, backend):
    """``Measurement.output_fn`` runs the timed path once more: its output is the eager model's."""
    from escale.profiler.latency.fold import build_folded
    from escale.profiler.latency.onnxrt import compare_outputs

    model, _ = build_folded(tiny_spec)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref = model(x)
    b = get_backend(backend)
    m = b.measure(model, x, spec=tiny_spec, device="cpu", precision="fp32", threads=1, config=QUICK,
                  options=b.check("cpu", "fp32", {}))
    assert compare_outputs(m.output_fn(), ref)["rel_diff"] < 1e-4
