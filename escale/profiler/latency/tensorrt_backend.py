"""``tensorrt`` backend: an engine built from the ONNX export with NVIDIA's Python API, timed like trtexec.

UNVERIFIED HERE: TensorRT cannot be installed on the project machines (no GPU, no driver). The code
follows NVIDIA's documented Python API (TensorRT 8.6-10.x, with the 11.x changes handled):

- build: ``trt.Builder(logger)`` -> ``create_network(flags)`` (``EXPLICIT_BATCH`` before 10.0, where it is
  the default) -> ``trt.OnnxParser(network, logger).parse(bytes)`` -> ``create_builder_config()`` with
  ``set_memory_pool_limit(MemoryPoolType.WORKSPACE, bytes)``; fp16 sets ``BuilderFlag.FP16`` (as
  ``trtexec --fp16``); fp32 clears ``BuilderFlag.TF32`` (on by default; as ``--noTF32``) so fp32 means
  fp32, and tf32 sets it. TensorRT 11 removed the precision flags but keeps TF32 (networks are strongly
  typed): there fp16 builds from an ONNX file exported from the fp16 model instead.
  ``build_serialized_network`` gives the plan.
- cache: plans live in ``$ESCALE_CACHE_DIR/tensorrt`` keyed by spec id + input size + batch +
  precision + TensorRT version + GPU name + SHA-256 of the ONNX file (+ opset and workspace), see
  :func:`engine_cache_key`: the ONNX file is exported every time, so a changed exporter, opset or
  folding builds a new engine.
- run: ``trt.Runtime(logger).deserialize_cuda_engine(plan)`` -> ``create_execution_context()``; every
  I/O tensor (``num_io_tensors``, ``get_tensor_name``, ``get_tensor_mode``) gets a torch CUDA buffer via
  ``set_tensor_address``; one inference is ``execute_async_v3(stream)``, whose False (not enqueued) is an
  error.
- numerics: before timing, the engine's output is compared with eager PyTorch in fp32 with TF32 off on
  the GPU, within the tolerance for the precision (``onnxrt.NUMERICS_TOLERANCE``; ``NumericsError`` past
  it, ``--latency-opt check_numerics=0`` skips it); the differences and the tolerance are recorded.
- timing: CUDA events around ``execute_async_v3`` on the stream, then a synchronisation: trtexec's "GPU
  compute time" (inputs are copied once before timing, as ``--noDataTransfers``).
- memory: the engine's ``device_memory_size_v2`` (``device_memory_size`` before 10.1): the activation
  and scratch memory an execution context needs.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from escale.errors import BackendUnavailableError
from escale.profiler.latency.base import LatencyBackend, Measurement, cache_dir, register_backend
from escale.profiler.latency.isolate import MeasurementError
from escale.profiler.latency.memory import MB
from escale.profiler.latency.onnxrt import OPSET, ExportError, check_against_eager, export_onnx
from escale.profiler.latency.timing import CudaEventTimer, TimingConfig, time_callable
from escale.profiler.latency.torch_backend import cuda_reason, tf32_mode

MIN_VERSION = (8, 6)  # execute_async_v3 / set_tensor_address / set_memory_pool_limit
DEFAULT_WORKSPACE_MB = 4096


def import_tensorrt() -> tuple[ModuleType | None, str]:
    """The ``tensorrt`` module and "ok", or None and why it cannot be used."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        return None, (f"the tensorrt Python package is not installed ({exc}); it needs an NVIDIA GPU and "
                      "driver: install it (the 'tensorrt' extra of escale) on such a machine")
    version = tuple(int(p) for p in re.findall(r"\d+", trt.__version__)[:2])
    if version < MIN_VERSION:
        return None, f"tensorrt {trt.__version__} is too old (need >= {'.'.join(map(str, MIN_VERSION))})"
    return trt, "ok"


def onnx_digest(path: str | Path) -> str:
    """SHA-256 (hex) of an ONNX file's bytes, for the engine cache key."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def engine_cache_key(spec_id: str, input_size: tuple[int, int], batch: int, precision: str, trt_version: str,
                     gpu_name: str, onnx_sha256: str, opset: int = OPSET,
                     workspace_mb: int = DEFAULT_WORKSPACE_MB) -> str:
    """A file-name-safe key naming everything an engine depends on, plus a hash of all of it.

    ``onnx_sha256`` (:func:`onnx_digest`) covers what the names do not: exporter, opset and folding.
    """
    parts = {"spec_id": spec_id, "input_size": list(input_size), "batch": batch, "precision": precision,
             "tensorrt": trt_version, "gpu": gpu_name, "onnx_sha256": onnx_sha256, "opset": opset,
             "workspace_mb": workspace_mb}
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:10]
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", gpu_name).strip("-").lower()
    h, w = input_size
    return f"{spec_id}-{h}x{w}-b{batch}-{precision}-trt{trt_version}-{gpu}-{digest}"


def _major(trt: ModuleType) -> int:
    return int(re.findall(r"\d+", trt.__version__)[0])


def strongly_typed_only(trt: ModuleType) -> bool:
    """TensorRT >= 11 has no precision flags: every network is strongly typed."""
    return not hasattr(trt.BuilderFlag, "FP16")


def builder_flags(trt: ModuleType, precision: str) -> dict[str, list[str]]:
    """The builder flags set and cleared for ``precision`` (recorded with every engine)."""
    has_tf32 = hasattr(trt.BuilderFlag, "TF32")
    if precision in ("fp32", "tf32") and not has_tf32:
        raise ExportError(f"tensorrt {trt.__version__}: no BuilderFlag.TF32, so a {precision} engine's use of "
                          "TF32 cannot be set")
    if precision == "fp32":
        return {"set": [], "cleared": ["TF32"]}
    if precision == "tf32":
        return {"set": ["TF32"], "cleared": []}
    return {"set": [] if strongly_typed_only(trt) else ["FP16"], "cleared": []}  # fp16: TF32 as TensorRT's default


def build_engine(onnx_path: str | Path, precision: str, workspace_mb: int = DEFAULT_WORKSPACE_MB,
                 trt: ModuleType | None = None) -> bytes:
    """A serialized engine (plan) for the ONNX file; parser and builder failures raise ExportError."""
    if trt is None:
        trt, why = import_tensorrt()
        if trt is None:
            raise BackendUnavailableError(f"tensorrt: {why}")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if _major(trt) < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    elif strongly_typed_only(trt) and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)) or "no detail"
        raise ExportError(f"tensorrt: the ONNX parser rejected {Path(onnx_path).name} ({errors[:300]})")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) * MB)
    flags = builder_flags(trt, precision)
    for name in flags["set"]:
        config.set_flag(getattr(trt.BuilderFlag, name))
    for name in flags["cleared"]:
        config.clear_flag(getattr(trt.BuilderFlag, name))
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ExportError(f"tensorrt: build_serialized_network failed for {Path(onnx_path).name} "
                          f"({precision}, workspace {workspace_mb} MB); see the TensorRT log above")
    return bytes(plan)


def _torch_dtype(trt: ModuleType, dt: Any) -> torch.dtype:
    table = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT32": torch.int32,
             "INT64": torch.int64, "INT8": torch.int8, "BOOL": torch.bool}
    for name, dtype in table.items():
        if hasattr(trt.DataType, name) and dt == getattr(trt.DataType, name):
            return dtype
    raise ExportError(f"tensorrt: I/O tensor type {dt} is not supported")


def engine_plan(model: torch.nn.Module, example: torch.Tensor, spec: Any, precision: str, options: dict[str, Any],
                trt: ModuleType) -> tuple[bytes, dict[str, Any]]:
    """The cached plan for this ONNX export/input/precision/TensorRT/GPU, built (and cached) if missing.

    The ONNX file is exported every time (seconds) and its SHA-256 is part of the cache key.
    """
    gpu = torch.cuda.get_device_name()
    with tempfile.TemporaryDirectory(prefix="escale-trt-") as tmp:
        m, x = model, example
        if precision == "fp16" and strongly_typed_only(trt):  # 11.x: precision comes from the ONNX types
            m, x = copy.deepcopy(model).to("cuda").half(), example.to("cuda").half()
        onnx_path = export_onnx(m, x, Path(tmp) / "model.onnx", opset=options["opset"], output_names=["logits"])
        digest = onnx_digest(onnx_path)
        key = engine_cache_key(spec.spec_id, tuple(example.shape[-2:]), example.shape[0], precision,
                               trt.__version__, gpu, digest, options["opset"], options["workspace_mb"])
        path = cache_dir("tensorrt") / f"{key}.engine"
        info: dict[str, Any] = {"engine_path": str(path), "engine_cache_hit": path.exists(), "onnx_sha256": digest,
                                "builder_flags": builder_flags(trt, precision)}
        if path.exists():
            return path.read_bytes(), info
        plan = build_engine(onnx_path, precision, options["workspace_mb"], trt)
    tmp_path = path.with_suffix(f".tmp{os.getpid()}")
    tmp_path.write_bytes(plan)
    os.replace(tmp_path, path)  # atomic: a concurrent reader never sees half a plan
    return plan, info


def bind_io(trt: ModuleType, engine: Any, context: Any, example: torch.Tensor,
            device: str) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """A torch buffer on ``device`` per I/O tensor, its address given to ``context``; inputs hold ``example``.

    Returns all buffers by name and the output buffer.
    """
    buffers, output = {}, None
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        shape = tuple(engine.get_tensor_shape(name))
        buf = torch.empty(shape, dtype=_torch_dtype(trt, engine.get_tensor_dtype(name)), device=device)
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            buf.copy_(example.to(buf.dtype))
        else:
            output = buf
        buffers[name] = buf
        context.set_tensor_address(name, buf.data_ptr())
    if output is None:
        raise ExportError("tensorrt: the engine has no output tensor")
    return buffers, output


def enqueue(context: Any, stream_handle: int) -> None:
    """One inference: ``execute_async_v3``; its False (nothing enqueued) becomes one error line."""
    if not context.execute_async_v3(stream_handle):
        raise MeasurementError("tensorrt: execute_async_v3 returned False (the inference was not enqueued; "
                               "see the TensorRT log above)")


def check_engine_output(output: torch.Tensor, model: torch.nn.Module, example: torch.Tensor,
                        precision: str) -> dict[str, Any]:
    """The engine's ``output`` against eager ``model`` in fp32 with TF32 off, on the output's device."""
    with torch.inference_mode(), tf32_mode(False):
        ref = model.to(output.device)(example.to(output.device)).float()
    return check_against_eager(output.float(), ref, precision, "tensorrt")


@register_backend
class TensorRTBackend(LatencyBackend):
    """TensorRT engine from the ONNX export; GPU compute time with CUDA events (UNVERIFIED here)."""

    name = "tensorrt"
    precisions = {"cuda": ("fp32", "tf32", "fp16")}
    options = {"opset": OPSET, "workspace_mb": DEFAULT_WORKSPACE_MB, "check_numerics": True}

    def is_available(self, device: str | None = None) -> tuple[bool, str]:
        trt, why = import_tensorrt()
        if trt is None:
            return False, why
        if why := cuda_reason():
            return False, why
        return True, "ok"

    def versions(self) -> dict[str, str]:
        trt, _ = import_tensorrt()
        v = {"torch": torch.__version__, "cuda": str(torch.version.cuda)}
        if trt is not None:
            v["tensorrt"] = trt.__version__
        return v

    def measure(self, model: torch.nn.Module, example: torch.Tensor, *, spec: Any, device: str, precision: str,
                threads: int, config: TimingConfig, options: dict[str, Any]) -> Measurement:
        trt, why = import_tensorrt()
        if trt is None:
            raise BackendUnavailableError(f"tensorrt: {why}")
        plan, details = engine_plan(model, example, spec, precision, options, trt)
        logger = trt.Logger(trt.Logger.WARNING)
        engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
        if engine is None:
            Path(details["engine_path"]).unlink(missing_ok=True)  # stale or corrupt: rebuilt next time
            raise ExportError(f"tensorrt: cannot deserialize {details['engine_path']} (removed; run again)")
        context = engine.create_execution_context()
        buffers, output = bind_io(trt, engine, context, example, device)  # kept alive while timed
        stream = torch.cuda.Stream()
        torch.cuda.synchronize()

        def step() -> None:
            enqueue(context, stream.cuda_stream)

        step()
        stream.synchronize()
        if options["check_numerics"]:  # before timing: a wrong engine fails fast
            details["numerics"] = check_engine_output(output, model, example, precision)
            details["max_abs_diff"] = details["numerics"]["max_abs_diff"]
        stats = time_callable(step, config, timer=CudaEventTimer(stream))
        mem = getattr(engine, "device_memory_size_v2", None) or getattr(engine, "device_memory_size", 0)
        details.update(tensorrt=trt.__version__, gpu=torch.cuda.get_device_name())
        # the engine, context and I/O buffers (whose addresses the context holds) live as long as output_fn
        output_fn = functools.partial(_run_once, step, stream, output, (engine, context, buffers))
        return Measurement(stats=stats, peak_mem_mb=mem / MB, peak_mem_method="tensorrt engine device memory",
                           details=details, output_fn=output_fn)


def _run_once(step: Any, stream: Any, output: torch.Tensor, keep_alive: tuple) -> torch.Tensor:
    """One more inference; a copy of the output buffer."""
    step()
    stream.synchronize()
    return output.clone()


def export_spec_engine(spec: Any, path: str | Path, input_size: tuple[int, int], batch: int = 1,
                       precision: str = "fp16", workspace_mb: int = DEFAULT_WORKSPACE_MB,
                       opset: int = OPSET) -> dict[str, Any]:
    """Build a TensorRT plan for the folded model of ``spec`` and write it to ``path``."""
    from escale.profiler.latency.fold import build_folded

    backend = TensorRTBackend()
    options = backend.check("cuda", precision, {"opset": opset, "workspace_mb": workspace_mb})
    trt, _ = import_tensorrt()
    input_size = spec.check_input_size(tuple(input_size))
    model, fold = build_folded(spec)
    example = torch.randn(batch, 3, *input_size, generator=torch.Generator().manual_seed(0))
    plan, info = engine_plan(model, example, spec, precision, options, trt)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(plan)
    return {"name": spec.name, "spec_id": spec.spec_id, "to": "tensorrt", "path": str(path),
            "size_mb": len(plan) / MB, "precision": precision, "tensorrt": trt.__version__,
            "gpu": torch.cuda.get_device_name(), "input_size": list(input_size), "batch": batch,
            **info, **fold.to_dict()}
