"""fp32 means fp32: TF32 and cudnn.benchmark around CUDA timing, the TensorRT cache key, TensorRT numerics.

No GPU here: torch's TF32 and cuDNN flags can be read and set without one (torch 2.14), the CUDA timing path is
driven with a CPU step, and TensorRT is a fake module whose engine writes its "output" to the address the
backend binds, as a real engine does. The ``gpu`` tests at the end run the real thing.
"""

from __future__ import annotations

import ctypes
import re
import sys
import types

import pytest
import torch
from test_latency_backends import fake_trt

from escale.cli.main import main
from escale.errors import BackendUnavailableError
from escale.profiler.latency import QUICK, backend_table, get_backend
from escale.profiler.latency import tensorrt_backend as trtb
from escale.profiler.latency import torch_backend as tb
from escale.profiler.latency.isolate import MeasurementError
from escale.profiler.latency.memory import MemoryEstimate
from escale.profiler.latency.onnxrt import NUMERICS_TOLERANCE, NumericsError, check_against_eager
from escale.profiler.latency.timing import wall_timer

NEW_API = tuple(int(p) for p in re.findall(r"\d+", torch.__version__)[:2]) >= (2, 9)
new_api_only = pytest.mark.skipif(not NEW_API, reason="checks torch >= 2.9's fp32_precision flags")


@pytest.fixture(autouse=True)
def caller_flags():
    """Each test starts from torch's defaults and leaves them as it found them, even when it fails."""
    saved, bench = tb._tf32_snapshot(), torch.backends.cudnn.benchmark
    yield
    tb._tf32_restore(saved)
    torch.backends.cudnn.benchmark = bench


def flags() -> dict:
    return tb.cuda_math_settings()


# --- TF32 and cudnn.benchmark (torch's real flags) ---------------------------------------------------------

@new_api_only
def test_fp32_turns_tf32_off_and_restores_the_callers_settings():
    assert tb.tf32_api() == "fp32_precision"
    torch.backends.cudnn.conv.fp32_precision = "tf32"  # torch 2.14's default for cuDNN convolutions
    torch.set_float32_matmul_precision("high")  # a caller that asked for TF32 matmuls
    with tb.tf32_mode(tb.TF32["fp32"]):
        assert torch.backends.cudnn.conv.fp32_precision == "ieee"
        assert torch.backends.cuda.matmul.fp32_precision == "ieee"
        assert torch.get_float32_matmul_precision() == "highest"  # legacy and new flags agree: no mix error
        assert flags()["tf32_conv"] is False and flags()["tf32_matmul"] is False
    assert torch.backends.cudnn.conv.fp32_precision == "tf32"
    assert torch.get_float32_matmul_precision() == "high" and torch.backends.cuda.matmul.fp32_precision == "tf32"


@new_api_only
def test_tf32_turns_it_on_and_restores():
    torch.backends.cudnn.conv.fp32_precision = "ieee"
    torch.set_float32_matmul_precision("highest")
    with tb.tf32_mode(tb.TF32["tf32"]):
        assert torch.backends.cudnn.conv.fp32_precision == "tf32"
        assert torch.backends.cuda.matmul.fp32_precision == "tf32"
        assert torch.get_float32_matmul_precision() == "high"
        assert flags()["tf32_conv"] is True and flags()["tf32_matmul"] is True
    assert torch.backends.cudnn.conv.fp32_precision == "ieee" and torch.get_float32_matmul_precision() == "highest"


@new_api_only
def test_settings_come_back_after_an_error_and_fp16_changes_nothing():
    before = tb._tf32_snapshot()
    with pytest.raises(RuntimeError, match="boom"), tb.tf32_mode(False):
        raise RuntimeError("boom")
    assert tb._tf32_snapshot() == before
    assert tb.TF32.get("fp16") is None and tb.TF32.get("bf16") is None
    with tb.tf32_mode(tb.TF32.get("fp16")):
        assert tb._tf32_snapshot() == before


def test_older_torch_falls_back_to_allow_tf32(monkeypatch):
    """torch < 2.9 (or no per-operator flags): cudnn.allow_tf32 and set_float32_matmul_precision."""
    monkeypatch.setattr(torch, "__version__", "2.8.0")
    assert tb.tf32_api() == "allow_tf32"
    matmul = types.SimpleNamespace(allow_tf32=False)
    cudnn = types.SimpleNamespace(allow_tf32=True, benchmark=False)  # no .conv: the legacy flags only
    monkeypatch.setattr(torch.backends, "cudnn", cudnn)
    monkeypatch.setattr(torch.backends.cuda, "matmul", matmul)
    precision = {"value": "highest"}

    def set_precision(p):  # noqa: ANN001 - as torch documents: "highest" == matmul.allow_tf32 False
        precision["value"], matmul.allow_tf32 = p, p != "highest"

    monkeypatch.setattr(torch, "set_float32_matmul_precision", set_precision)
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: precision["value"])
    with tb.tf32_mode(False):
        assert cudnn.allow_tf32 is False and matmul.allow_tf32 is False
        assert flags() == {"tf32_conv": False, "tf32_matmul": False, "tf32_api": "allow_tf32",
                           "cudnn_benchmark": False}
    assert cudnn.allow_tf32 is True and matmul.allow_tf32 is False and precision["value"] == "highest"
    with tb.tf32_mode(True):
        assert cudnn.allow_tf32 is True and matmul.allow_tf32 is True
    assert cudnn.allow_tf32 is True and matmul.allow_tf32 is False


def test_cudnn_benchmark_is_set_and_restored():
    torch.backends.cudnn.benchmark = False
    with tb.cudnn_benchmark(True):
        assert torch.backends.cudnn.benchmark is True
    assert torch.backends.cudnn.benchmark is False
    torch.backends.cudnn.benchmark = True
    with pytest.raises(ValueError), tb.cudnn_benchmark(False):
        assert torch.backends.cudnn.benchmark is False
        raise ValueError
    assert torch.backends.cudnn.benchmark is True


@pytest.mark.parametrize("precision, tf32", [("fp32", False), ("tf32", True), ("fp16", None)])
def test_cuda_output_fn_runs_once_more_under_the_precisions_settings(monkeypatch, precision, tf32):
    """``Measurement.output_fn`` (escale benchmark's numerics) runs the timed callable with the same TF32 setting
    and returns a copy of its output (a CUDA graph's static output is overwritten by the next replay)."""
    monkeypatch.setattr(tb, "cuda_peak_memory", lambda fn, dev: (fn(), MemoryEstimate(0, 0, "fake"))[1])
    monkeypatch.setattr(tb, "CudaEventTimer", lambda: wall_timer)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)
    static, seen = torch.zeros(3), []

    def step() -> torch.Tensor:
        seen.append(flags())
        return static.add_(1)

    m = tb._measure_cuda(step, torch.device("cpu"), precision, QUICK, {"cuda_graphs": False, "compile": False}, {})
    calls, caller = len(seen), flags()
    out = m.output_fn()
    assert len(seen) == calls + 1 and out.tolist() == [calls + 1.0] * 3
    static.add_(1)
    assert out.tolist() == [calls + 1.0] * 3  # a copy
    if tf32 is not None:
        assert seen[-1]["tf32_conv"] is tf32 and seen[-1]["cudnn_benchmark"] is True
    assert flags() == caller


@pytest.mark.parametrize("precision, tf32", [("fp32", False), ("tf32", True), ("fp16", None), ("bf16", None)])
def test_cuda_timing_runs_every_call_under_the_precisions_settings(monkeypatch, precision, tf32):
    """The torch backend's CUDA path (first call, peak memory, timed runs) with a CPU step and fake CUDA timer."""
    monkeypatch.setattr(tb, "cuda_peak_memory", lambda fn, dev: (fn(), MemoryEstimate(0, 0, "fake"))[1])
    monkeypatch.setattr(tb, "CudaEventTimer", lambda: wall_timer)
    torch.backends.cudnn.benchmark = False
    caller = flags()
    seen = []
    m = tb._measure_cuda(lambda: seen.append(flags()), torch.device("cpu"), precision, QUICK,
                         {"cuda_graphs": False, "compile": False}, {})
    assert len(seen) == 1 + 1 + QUICK.warmup_runs + QUICK.min_runs  # first call, memory, warm-up, timed
    expect = {**caller, "cudnn_benchmark": True}
    if tf32 is not None:
        expect.update(tf32_conv=tf32, tf32_matmul=tf32)
    assert all(s == expect for s in seen)
    assert {k: m.details[k] for k in expect} == expect  # stated in the record
    assert flags() == caller  # restored, cudnn.benchmark included


def test_tf32_is_cuda_only_and_listed(tiny_spec, tmp_path, capsys):
    with pytest.raises(BackendUnavailableError, match=r"^--precision: 'tf32' is not supported by backend 'torch' "
                                                      r"on cpu \(supported: fp32, bf16\)$"):
        get_backend("torch").check("cpu", "tf32")
    rows = {(r["backend"], r["device"]): r["precisions"] for r in backend_table()}
    assert rows[("torch", "cuda")] == ["fp32", "tf32", "fp16", "bf16"] and "tf32" not in rows[("torch", "cpu")]
    assert rows[("tensorrt", "cuda")] == ["fp32", "tf32", "fp16"]
    spec = tmp_path / "tiny.yaml"
    spec.write_text(tiny_spec.to_yaml())
    assert main(["profile", str(spec), "--latency", "torch", "--precision", "tf32", "--input-size", "64x64",
                 "--no-isolate"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'tf32' is not supported by backend 'torch' on cpu" in err


# --- TensorRT: cache key from the ONNX bytes -----------------------------------------------------------------

KEY = dict(spec_id="abc", input_size=(64, 64), batch=1, precision="fp32", trt_version="10.3.0", gpu_name="GPU")


def test_cache_key_follows_the_onnx_bytes(tmp_path):
    a, b, c = tmp_path / "a.onnx", tmp_path / "b.onnx", tmp_path / "c.onnx"
    a.write_bytes(b"onnx opset 17")
    b.write_bytes(b"onnx opset 18")
    c.write_bytes(b"onnx opset 17")  # another file, same bytes
    keys = {p.name: trtb.engine_cache_key(**KEY, onnx_sha256=trtb.onnx_digest(p)) for p in (a, b, c)}
    assert keys["a.onnx"] != keys["b.onnx"] and keys["a.onnx"] == keys["c.onnx"]


def conv_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 1)).eval()


@pytest.fixture
def fake_gpu(monkeypatch, tmp_path):
    monkeypatch.setenv("ESCALE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Fake GPU")


OPTIONS = {"opset": 17, "workspace_mb": 64, "check_numerics": True}


def test_engine_plan_rebuilds_when_the_export_changes(fake_gpu):
    """Real ONNX export of a small model, fake builder: same model -> cache hit; new weights -> new engine."""
    spec, x = types.SimpleNamespace(spec_id="abc"), torch.randn(1, 3, 16, 16)
    first = trtb.engine_plan(conv_model(0), x, spec, "fp32", OPTIONS, fake_trt())[1]
    again = trtb.engine_plan(conv_model(0), x, spec, "fp32", OPTIONS, fake_trt())[1]
    other = trtb.engine_plan(conv_model(1), x, spec, "fp32", OPTIONS, fake_trt())[1]
    assert not first["engine_cache_hit"] and again["engine_cache_hit"] and not other["engine_cache_hit"]
    assert first["onnx_sha256"] == again["onnx_sha256"] != other["onnx_sha256"]
    assert first["engine_path"] == again["engine_path"] != other["engine_path"]
    assert first["builder_flags"] == {"set": [], "cleared": ["TF32"]}


# --- TensorRT: numerics against eager, execute_async_v3's result ---------------------------------------------

@pytest.mark.parametrize("precision", sorted(NUMERICS_TOLERANCE))
def test_tolerance_table(precision):
    ref = torch.randn(1, 19, 8, 8) * 7
    scale, tol = float(ref.abs().max()), NUMERICS_TOLERANCE[precision]
    ok = check_against_eager(ref + 0.5 * tol * scale, ref, precision, "tensorrt")
    assert ok["rel_diff"] == pytest.approx(0.5 * tol, rel=1e-3) and ok["tolerance"] == tol and "max |ref|" in ok["metric"]
    with pytest.raises(NumericsError, match=rf"^tensorrt: {precision} output differs from eager PyTorch \(fp32, TF32 "
                                            rf"off\) by {2 * tol:.3g} of the output scale .* allowed <= {tol:g} "
                                            rf"for {precision}\)$"):
        check_against_eager(ref + 2 * tol * scale, ref, precision, "tensorrt")
    with pytest.raises(NumericsError):
        check_against_eager(torch.full_like(ref, float("nan")), ref, precision, "tensorrt")
    assert NUMERICS_TOLERANCE["fp32"] < NUMERICS_TOLERANCE["tf32"] < NUMERICS_TOLERANCE["fp16"]


def test_numerics_shape_and_unknown_precision():
    with pytest.raises(NumericsError, match=r"output shape \(1, 2\) differs from eager PyTorch's \(1, 3\)"):
        check_against_eager(torch.zeros(1, 2), torch.zeros(1, 3), "fp32", "tensorrt")
    with pytest.raises(NumericsError, match=r"no numerics tolerance for 'bf16' \(known: fp32, tf32, fp16\)"):
        check_against_eager(torch.zeros(1), torch.zeros(1), "bf16", "tensorrt")


def engine_trt(result: torch.Tensor, ok: bool = True) -> types.ModuleType:
    """fake_trt plus a runtime whose engine copies ``result`` to the bound output address on execute."""
    trt = fake_trt()
    trt.DataType = types.SimpleNamespace(FLOAT="float", HALF="half")
    trt.TensorIOMode = types.SimpleNamespace(INPUT="in", OUTPUT="out")
    shapes = {"input": None, "logits": tuple(result.shape)}

    class Context:
        def __init__(self):
            self.addresses, self.calls = {}, 0

        def set_tensor_address(self, name, ptr):  # noqa: ANN001
            self.addresses[name] = ptr

        def execute_async_v3(self, stream):  # noqa: ANN001
            self.calls += 1
            if ok:
                ctypes.memmove(self.addresses["logits"], result.data_ptr(), result.numel() * result.element_size())
            return ok

    class Engine:
        num_io_tensors = 2
        device_memory_size_v2 = 3 * 2**20

        def get_tensor_name(self, i):  # noqa: ANN001
            return ["input", "logits"][i]

        def get_tensor_shape(self, name):  # noqa: ANN001
            return shapes[name]

        def get_tensor_dtype(self, name):  # noqa: ANN001
            return trt.DataType.FLOAT

        def get_tensor_mode(self, name):  # noqa: ANN001
            return trt.TensorIOMode.INPUT if name == "input" else trt.TensorIOMode.OUTPUT

        def create_execution_context(self):
            trt.context = Context()
            return trt.context

    class Runtime:
        def __init__(self, logger):  # noqa: ANN001
            pass

        def deserialize_cuda_engine(self, plan):  # noqa: ANN001
            return Engine()

    trt.Runtime, trt.shapes = Runtime, shapes
    return trt


@pytest.fixture
def run_engine(fake_gpu, monkeypatch):
    """``run_engine(result, ...)``: TensorRTBackend.measure on CPU buffers with the fake engine."""
    class Stream:
        cuda_stream = 0

        def synchronize(self):
            pass

    monkeypatch.setattr(torch.cuda, "Stream", Stream)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)
    monkeypatch.setattr(trtb, "CudaEventTimer", lambda stream: wall_timer)
    model, x = conv_model(), torch.randn(1, 3, 16, 16)
    with torch.inference_mode():
        ref = model(x)

    def run(result, ok=True, precision="fp32", **options):  # noqa: ANN001
        trt = engine_trt(result, ok)
        trt.shapes["input"] = tuple(x.shape)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        m = trtb.TensorRTBackend().measure(model, x, spec=types.SimpleNamespace(spec_id="abc"), device="cpu",
                                           precision=precision, threads=1, config=QUICK,
                                           options={**OPTIONS, **options})
        return m, trt

    return run, ref


def test_tensorrt_output_within_tolerance_passes_and_is_recorded(run_engine):
    run, ref = run_engine
    scale = float(ref.abs().max())
    m, trt = run(ref + 0.5e-3 * scale)
    n = m.details["numerics"]
    assert n["rel_diff"] == pytest.approx(0.5e-3, rel=1e-2) and n["tolerance"] == NUMERICS_TOLERANCE["fp32"]
    assert m.details["max_abs_diff"] == n["max_abs_diff"] and m.stats.runs == QUICK.min_runs
    assert trt.context.calls == 1 + QUICK.warmup_runs + QUICK.min_runs and m.peak_mem_mb == 3
    m, _ = run(ref + 5e-3 * scale, precision="tf32")  # 10x fp32's tolerance, half tf32's
    assert m.details["numerics"]["tolerance"] == NUMERICS_TOLERANCE["tf32"]


def test_tensorrt_output_fn_runs_the_engine_once_more(run_engine):
    run, ref = run_engine
    m, trt = run(ref, check_numerics=False)
    calls = trt.context.calls
    out = m.output_fn()
    assert trt.context.calls == calls + 1 and torch.equal(out, ref)


def test_tensorrt_output_past_tolerance_raises_before_timing(run_engine):
    run, ref = run_engine
    scale = float(ref.abs().max())
    with pytest.raises(NumericsError, match=r"^tensorrt: fp32 output differs from eager PyTorch \(fp32, TF32 off\) "
                                            r"by 0\.002 of the output scale"):
        run(ref + 2e-3 * scale)
    m, _ = run(ref + 2e-3 * scale, check_numerics=False)  # asked not to check: timed, nothing recorded
    assert "numerics" not in m.details


def test_execute_async_v3_false_raises(run_engine):
    run, ref = run_engine
    with pytest.raises(MeasurementError, match=r"^tensorrt: execute_async_v3 returned False"):
        run(ref, ok=False)


# --- on a GPU (excluded by default: pytest -m gpu) -----------------------------------------------------------

@pytest.mark.gpu
def test_gpu_fp32_conv_is_ieee_and_tf32_is_not():
    """A 4096-deep conv (as a 1x1 over 4096 channels): fp32 with TF32 off is within fp32 rounding of a float64
    reference; with TF32 on (Ampere or newer) it is ~100x further off, so the flags reach cuDNN."""
    torch.manual_seed(0)
    x = torch.randn(1, 4096, 32, 32, device="cuda")
    w = torch.randn(64, 4096, 1, 1, device="cuda")
    exact = torch.nn.functional.conv2d(x.double(), w.double())
    err = {}
    for precision in ("fp32", "tf32"):
        with tb.tf32_mode(tb.TF32[precision]), tb.cudnn_benchmark(True):
            err[precision] = float((torch.nn.functional.conv2d(x, w) - exact).abs().max() / exact.abs().max())
    assert err["fp32"] < 1e-5, err
    if torch.cuda.get_device_capability() >= (8, 0):
        assert err["tf32"] > 10 * err["fp32"], err


@pytest.mark.gpu
def test_gpu_torch_cuda_fp32_record_states_tf32_off(tiny_spec):
    from escale.profiler.latency import measure_latency

    res = measure_latency(tiny_spec, backend="torch", device="cuda", precision="fp32", input_size=(64, 64),
                          isolate=False, config=QUICK)
    assert res.details["tf32_conv"] is False and res.details["tf32_matmul"] is False
    assert res.details["cudnn_benchmark"] is True and res.latency_ms > 0


@pytest.mark.gpu
def test_gpu_tensorrt_fp32_matches_eager(tiny_spec):
    pytest.importorskip("tensorrt")
    from escale.profiler.latency import measure_latency

    res = measure_latency(tiny_spec, backend="tensorrt", device="cuda", precision="fp32", input_size=(64, 64),
                          isolate=False, config=QUICK)
    assert res.details["numerics"]["rel_diff"] <= NUMERICS_TOLERANCE["fp32"]
    assert res.details["builder_flags"]["cleared"] == ["TF32"] and len(res.details["onnx_sha256"]) == 64
