"""ONNX export of any ``nn.Module`` and the ``onnxruntime`` backend.

Export path: torch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``) at a fixed,
stated opset (:data:`OPSET` = 17), static shapes, constant folding on. It exports ESeg in well under a
second at 64x64 and a few seconds at 1024x2048; the dynamo exporter (``exporter="dynamo"``) also works
but is ~20x slower here and moves the opset to 18. After export the file passes ``onnx.checker``;
the backend then compares ONNX Runtime's output with eager PyTorch on the same input (max abs
difference recorded; fp32 must agree within ``atol`` = 1e-4, else :class:`NumericsError`).

ONNX Runtime: ``CPUExecutionProvider`` (or ``CUDAExecutionProvider`` for ``--device cuda`` where the
installed build has it), graph optimisation level ``ORT_ENABLE_ALL``, sequential execution,
``intra_op_num_threads`` = the thread count, ``inter_op_num_threads`` = 1, and no spin-waiting in the
intra-op pool (``session.intra_op.allow_spinning=0``: on shared cores spinning workers take the CPU the
busy ones need; ``allow_spinning=1`` restores ORT's default); all are recorded.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from escale.errors import BackendUnavailableError, EscaleError, describe
from escale.profiler.latency.base import LatencyBackend, Measurement, register_backend
from escale.profiler.latency.timing import TimingConfig, time_callable

OPSET = 17
GRAPH_OPT = {"all": "ORT_ENABLE_ALL", "extended": "ORT_ENABLE_EXTENDED", "basic": "ORT_ENABLE_BASIC",
             "none": "ORT_DISABLE_ALL"}


class ExportError(EscaleError, RuntimeError):
    """Exporting a model (ONNX, TensorRT engine) failed."""


class NumericsError(EscaleError, ValueError):
    """An exported model's output differs from eager PyTorch beyond tolerance."""


def _as_tuple(inputs: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)


def onnx_opset(path: str | Path) -> int:
    """The default-domain opset an ONNX file declares."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def export_onnx(module: torch.nn.Module, inputs: torch.Tensor | Sequence[torch.Tensor], path: str | Path,
                opset: int = OPSET, input_names: Sequence[str] | None = None,
                output_names: Sequence[str] | None = None, exporter: str = "torchscript") -> Path:
    """Export ``module`` (eval mode, static shapes of ``inputs``) to ``path``; returns the path.

    Inputs are named ``input`` (``input0``, ``input1``, ... for several), outputs ``output``/``outputN``
    unless given. Any failure becomes one :class:`ExportError` line.
    """
    import onnx

    args = _as_tuple(inputs)
    names = list(input_names or (["input"] if len(args) == 1 else [f"input{i}" for i in range(len(args))]))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if exporter not in ("torchscript", "dynamo"):
        raise ExportError(f"export: exporter {exporter!r} is unknown (allowed: torchscript, dynamo)")
    module.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, str(path), dynamo=exporter == "dynamo", opset_version=opset,
                              input_names=names, output_names=list(output_names) if output_names else None,
                              do_constant_folding=True, **({"verbose": False} if exporter == "dynamo" else {}))
        onnx.checker.check_model(str(path))
    except Exception as exc:  # noqa: BLE001 - exporters raise many types; report one line
        raise ExportError(f"export: ONNX export of {type(module).__name__} failed ({describe(exc)})") from None
    return path


def _numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().contiguous().numpy()
    return np.ascontiguousarray(x)


class OrtRunner:
    """An ONNX Runtime session with stated threads; ``run`` returns numpy outputs, ``bind`` a timed call."""

    def __init__(self, path: str | Path, threads: int | None = None, device: str = "cpu",
                 graph_optimization: str = "all", inter_op_threads: int = 1, allow_spinning: bool = False) -> None:
        import onnxruntime as ort

        if graph_optimization not in GRAPH_OPT:
            raise EscaleError(f"graph_optimization: {graph_optimization!r} is unknown (allowed: {', '.join(GRAPH_OPT)})")
        so = ort.SessionOptions()
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_OPT[graph_optimization])
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        if threads:
            so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = int(inter_op_threads)
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(path), so, providers=providers)
        self.device, self.threads, self.inter_op_threads = device, threads, inter_op_threads
        self.graph_optimization, self.allow_spinning = graph_optimization, allow_spinning
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.providers = self.session.get_providers()

    def _feed(self, inputs: Sequence[Any]) -> dict[str, np.ndarray]:
        if len(inputs) != len(self.input_names):
            raise EscaleError(f"onnxruntime: {len(inputs)} input(s) given, the model takes {len(self.input_names)} "
                              f"({', '.join(self.input_names)})")
        return {n: _numpy(x) for n, x in zip(self.input_names, inputs, strict=True)}

    def run(self, *inputs: Any) -> list[np.ndarray]:
        """Outputs for ``inputs`` (torch tensors or numpy arrays), in the model's output order."""
        return self.session.run(None, self._feed(inputs))

    def bind(self, *inputs: Any) -> Callable[[], Any]:
        """A zero-argument call running the model on ``inputs`` (prepared once), for :func:`time_callable`.

        On CUDA the input lives on the GPU and the output stays there (I/O binding): no copies are timed.
        """
        feed = self._feed(inputs)
        if self.device != "cuda":
            return lambda: self.session.run(None, feed)
        import onnxruntime as ort

        binding = self.session.io_binding()
        for name, arr in feed.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(arr, "cuda", 0))
        for name in self.output_names:
            binding.bind_output(name, "cuda")
        return lambda: self.session.run_with_iobinding(binding)

    def info(self) -> dict[str, Any]:
        return {"providers": self.providers, "intra_op_num_threads": self.threads,
                "inter_op_num_threads": self.inter_op_threads, "graph_optimization": self.graph_optimization,
                "allow_spinning": self.allow_spinning}


# Allowed error of a GPU backend's output against eager PyTorch in fp32 with TF32 off, per precision the
# backend ran at, as max |out - ref| / max |ref| (the largest error over the output's scale; one number per
# run, so a broken engine -- wrong layout, NaN, a mis-parsed op: errors of order 1 -- fails whatever the
# logits' range). Unit roundoff u: fp32 2**-24 (6e-8), tf32 and fp16 2**-11 (4.9e-4).
# - fp32 1e-3: IEEE fp32 in both, but different summation orders and conv algorithms (Winograd, FFT,
#   fused kernels) over ~100 layers; such differences are 1e-6..1e-4 of the scale, so >= 10x headroom.
# - tf32 1e-2 (~20 u): products of inputs rounded to 10 mantissa bits, fp32 accumulation; PyTorch's CUDA
#   notes measure 2.2e-3 relative error for a single 10240-deep TF32 matmul; ~100 layers add up.
# - fp16 3e-2 (~60 u): tf32's rounding of products, plus every activation stored in fp16 and fp16
#   accumulation where TensorRT picks it.
# bf16 (u = 2**-8) is not in the table: no backend compares bf16 outputs.
NUMERICS_TOLERANCE = {"fp32": 1e-3, "tf32": 1e-2, "fp16": 3e-2}
NUMERICS_METRIC = "max |out - ref| / max |ref|, ref = eager PyTorch fp32 with TF32 off"


def compare_outputs(out: Any, ref: Any) -> dict[str, float]:
    """``max_abs_diff``, ``output_scale`` (max |ref|) and ``rel_diff`` (their ratio) of two outputs."""
    a, b = _numpy(out).astype(np.float32), _numpy(ref).astype(np.float32)
    if a.shape != b.shape:
        raise NumericsError(f"numerics: output shape {tuple(a.shape)} differs from eager PyTorch's {tuple(b.shape)}")
    diff = float(np.abs(a - b).max()) if a.size else 0.0
    scale = float(np.abs(b).max()) if b.size else 0.0
    return {"max_abs_diff": diff, "output_scale": scale, "rel_diff": diff / scale if scale > 0 else diff}


def check_against_eager(out: Any, ref: Any, precision: str, what: str) -> dict[str, Any]:
    """Compare ``out`` with the fp32 reference by :data:`NUMERICS_TOLERANCE`; :class:`NumericsError` past it.

    Returns what is recorded: the differences, the tolerance and the metric.
    """
    if precision not in NUMERICS_TOLERANCE:
        raise NumericsError(f"{what}: no numerics tolerance for {precision!r} "
                            f"(known: {', '.join(NUMERICS_TOLERANCE)})")
    tol = NUMERICS_TOLERANCE[precision]
    d = compare_outputs(out, ref)
    if not d["rel_diff"] <= tol:  # NaN fails too
        raise NumericsError(f"{what}: {precision} output differs from eager PyTorch (fp32, TF32 off) by "
                            f"{d['rel_diff']:.3g} of the output scale (max |diff| {d['max_abs_diff']:.3g}, "
                            f"max |ref| {d['output_scale']:.3g}; allowed <= {tol:g} for {precision})")
    return {**d, "tolerance": tol, "metric": NUMERICS_METRIC}


def check_numerics(model: torch.nn.Module, runner: OrtRunner, example: torch.Tensor, atol: float) -> float:
    """Max abs difference between eager PyTorch (fp32, CPU) and ONNX Runtime on ``example``."""
    with torch.inference_mode():
        ref = model(example).float()
    diff = compare_outputs(runner.run(example)[0], ref)["max_abs_diff"]
    if not diff <= atol:
        raise NumericsError(f"onnx: exported model differs from eager PyTorch by {diff:.3g} (allowed <= {atol:g})")
    return diff


@register_backend
class OnnxRuntimeBackend(LatencyBackend):
    """ONNX Runtime on an ONNX export (opset 17) of the folded model."""

    name = "onnxruntime"
    precisions = {"cpu": ("fp32",), "cuda": ("fp32",)}
    options = {"opset": OPSET, "exporter": "torchscript", "check_numerics": True, "atol": 1e-4,
               "graph_optimization": "all", "allow_spinning": False}

    def is_available(self, device: str | None = None) -> tuple[bool, str]:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            return False, f"onnxruntime is not installed ({exc})"
        if device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            return False, (f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (available: "
                           f"{', '.join(ort.get_available_providers())}; install onnxruntime-gpu)")
        return True, "ok"

    def versions(self) -> dict[str, str]:
        import onnx
        import onnxruntime as ort

        return {"torch": torch.__version__, "onnxruntime": ort.__version__, "onnx": onnx.__version__}

    def measure(self, model: torch.nn.Module, example: torch.Tensor, *, spec: Any, device: str, precision: str,
                threads: int, config: TimingConfig, options: dict[str, Any]) -> Measurement:
        with tempfile.TemporaryDirectory(prefix="escale-onnx-") as tmp:
            t0 = time.perf_counter()
            path = export_onnx(model, example, Path(tmp) / "model.onnx", opset=options["opset"],
                               output_names=["logits"], exporter=options["exporter"])
            details: dict[str, Any] = {"export_s": time.perf_counter() - t0, "opset": onnx_opset(path),
                                       "exporter": options["exporter"], "onnx_mb": path.stat().st_size / 2**20}
            runner = OrtRunner(path, threads=threads, device=device, graph_optimization=options["graph_optimization"],
                               allow_spinning=options["allow_spinning"])
        details.update(runner.info())
        if options["check_numerics"]:
            details["max_abs_diff"] = check_numerics(model, runner, example, options["atol"])
        if device == "cuda" and "CUDAExecutionProvider" not in runner.providers:
            raise BackendUnavailableError("onnxruntime: the CUDA provider did not load (session fell back to CPU)")
        return Measurement(stats=time_callable(runner.bind(example), config), details=details,
                           output_fn=lambda: runner.run(example)[0])


def export_spec_onnx(spec: Any, path: str | Path, input_size: tuple[int, int], batch: int = 1, opset: int = OPSET,
                     exporter: str = "torchscript", check: bool = True, atol: float = 1e-4,
                     threads: int | None = None) -> dict[str, Any]:
    """Export the folded model of ``spec`` (seed-0 weights) at ``batch x 3 x H x W``; returns what was done.

    With ``check`` the file is run by ONNX Runtime and compared with eager PyTorch (``max_abs_diff``).
    """
    from escale.profiler.latency.fold import build_folded

    input_size = spec.check_input_size(tuple(input_size))
    model, fold = build_folded(spec)
    example = torch.randn(batch, 3, *input_size, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    path = export_onnx(model, example, path, opset=opset, output_names=["logits"], exporter=exporter)
    info: dict[str, Any] = {"name": spec.name, "spec_id": spec.spec_id, "to": "onnx", "path": str(path),
                            "size_mb": path.stat().st_size / 2**20, "opset": onnx_opset(path), "exporter": exporter,
                            "input_size": list(input_size), "batch": batch, "export_s": time.perf_counter() - t0,
                            **fold.to_dict()}
    if check:
        info["max_abs_diff"] = check_numerics(model, OrtRunner(path, threads=threads), example, atol)
    return info
