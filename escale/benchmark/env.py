"""The machine a benchmark ran on (GPU, driver, clocks, library versions) and what can run on it.

Driver and clocks come from ``nvidia-smi`` (else the driver from ``/proc/driver/nvidia/version``); each
figure that cannot be read says why instead. Library versions come from package metadata, so reading
them imports nothing heavy.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import re
import shutil
import subprocess
from typing import Any

import torch

import escale
from escale import paths
from escale.errors import one_line

SMI_FIELDS = ("name", "uuid", "driver_version", "pstate", "clocks.sm", "clocks.max.sm", "clocks.mem",
              "clocks.max.mem", "power.limit", "temperature.gpu", "persistence_mode")
PACKAGES = ("torch", "timm", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "tensorrt", "triton", "optuna",
            "fvcore", "thop", "rich", "pandas", "matplotlib")


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def nvidia_smi(uuid: str | None = None) -> dict[str, Any]:
    """Driver, clocks (MHz), power limit (W), temperature (C) of the GPU with ``uuid`` (else the first)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {"nvidia_smi": "not found on PATH", "driver_version": _proc_driver()}
    try:
        out = subprocess.run([exe, f"--query-gpu={','.join(SMI_FIELDS)}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (subprocess.SubprocessError, OSError) as exc:
        return {"nvidia_smi": f"failed ({type(exc).__name__})", "driver_version": _proc_driver()}
    rows = [dict(zip(SMI_FIELDS, (v.strip() for v in line.split(",")), strict=False))
            for line in out.strip().splitlines() if line.strip()]
    if not rows:
        return {"nvidia_smi": "listed no GPU", "driver_version": _proc_driver()}
    match = [r for r in rows if uuid and uuid in r.get("uuid", "")] or rows[:1]
    return {k.replace(".", "_"): v for k, v in match[0].items()}


def _proc_driver() -> str:
    try:
        text = open("/proc/driver/nvidia/version", encoding="utf-8").read()
    except OSError:
        return "unknown (no nvidia-smi, no /proc/driver/nvidia/version)"
    m = re.search(r"Kernel Module\s+(\S+)", text)
    return m.group(1) if m else "unknown"


def _git_commit() -> str | None:
    root = paths.checkout()
    if root is None or not (root / ".git").exists() or shutil.which("git") is None:
        return None
    try:
        return subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip() or None
    except (subprocess.SubprocessError, OSError):
        return None


def environment(device: str) -> dict[str, Any]:
    """Everything a reader needs to compare runs: device, driver, clocks, versions, CPU, escale's commit."""
    from escale.profiler.latency.base import cpu_name

    env: dict[str, Any] = {
        "device": device, "python": platform.python_version(), "platform": platform.platform(),
        "cpu": cpu_name(), "cpu_count": os.cpu_count(), "escale": escale.__version__, "escale_commit": _git_commit(),
        "torch_cuda": torch.version.cuda, "versions": {p: _version(p) for p in PACKAGES},
    }
    if device == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        uuid = str(getattr(props, "uuid", "") or "") or None
        env["gpu"] = {"name": props.name, "compute_capability": f"{props.major}.{props.minor}",
                      "memory_gib": props.total_memory / 2**30, "sm_count": props.multi_processor_count,
                      **nvidia_smi(uuid)}
        env["cudnn"] = torch.backends.cudnn.version()
        env["device_name"] = props.name
    else:
        env["device_name"] = env["cpu"] if device == "cpu" else "no CUDA GPU"
    try:
        import onnxruntime as ort

        env["onnxruntime_providers"] = ort.get_available_providers()
    except ImportError as exc:
        env["onnxruntime_providers"] = f"onnxruntime not importable ({exc})"
    return env


# what inductor compiles its generated code with, per device: (environment variable, programs, what for)
COMPILERS = {"cuda": ("CC", ("gcc", "clang"), "a C compiler for triton's kernel launchers"),
             "cpu": ("CXX", ("g++", "c++", "clang++"), "a C++ compiler")}


def compile_reason(device: str) -> str | None:
    """Why ``torch.compile`` (inductor) cannot run on ``device`` here, or None."""
    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile"
    if device == "cuda" and importlib.util.find_spec("triton") is None:
        return "torch.compile on CUDA needs triton, which is not installed"
    var, programs, what = COMPILERS[device]
    if not (os.environ.get(var) or any(shutil.which(c) for c in programs)):
        return f"torch.compile on {device.upper()} needs {what} ({', '.join(programs)} or ${var}); none found"
    return None


def probe(device: str) -> dict[str, Any]:
    """What can run on ``device`` here: ``cuda``, ``models``, each backend and ``compile`` (None or why not), and
    the numerics tolerance per precision (max |out - ref| / max |ref|)."""
    from escale.profiler.latency import get_backend
    from escale.profiler.latency.torch_backend import cuda_reason

    backends: dict[str, str | None] = {}
    for name in ("torch", "onnxruntime", "tensorrt"):
        b = get_backend(name)
        if device not in b.devices:
            backends[name] = f"{name} does not run on {device}"
            continue
        ok, why = b.is_available(device)
        backends[name] = None if ok else why
    from escale.profiler.latency.onnxrt import NUMERICS_TOLERANCE

    return {"cuda": cuda_reason() if device == "cuda" else None, "models": models_reason(), "backends": backends,
            "compile": compile_reason(device), "numerics_tolerance": dict(NUMERICS_TOLERANCE)}


def models_reason() -> str | None:
    """Why escale cannot build its models here (they come from timm, which needs torchvision), or None."""
    try:
        import timm  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - ImportError, or a torchvision built for another torch
        return f"escale builds its models with timm, which cannot be imported here ({one_line(exc)})"
    return None
