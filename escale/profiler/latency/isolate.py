"""Run a measurement in a fresh child process with fixed allocator and thread settings.

Why: on these CPUs a model's eager latency swings 2-3x with glibc malloc's state. Tensors above
malloc's dynamic mmap threshold (128 KiB, growing up to 32 MiB) are mmap-ed and unmapped on every
allocation, so each forward pass page-faults (and zero-fills) all of its large activations again;
whether the threshold has grown depends on what the process did before. The child is started with:

- ``MALLOC_MMAP_THRESHOLD_=1073741824`` (1 GiB): activations come from the heap, not from fresh mmaps
  (measured here: a 64 MiB tensor fill 44 ms with 16,385 page faults -> 7 ms with none);
- ``MALLOC_TRIM_THRESHOLD_=4294967296`` and ``MALLOC_TOP_PAD_=268435456``: freed memory stays in the
  heap and the heap grows in 256 MiB steps, so steady state has no brk/trim churn;
- ``MALLOC_ARENA_MAX=1``: worker threads allocate from the main (brk) arena too, not from 64 MiB mmap-ed
  per-thread arenas that the threshold does not govern;
- ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` set to the thread count (torch and ORT set theirs explicitly);
- ``OMP_WAIT_POLICY=PASSIVE`` (unless already set): idle OpenMP workers sleep instead of spin-waiting.
  On cores shared with other work, spinning workers burn the CPU the busy ones need: ESeg-S in torch
  at 512x1024 with 2 threads took 10.6 s and 5.3 s of CPU per run spinning, 2.0 s and 1.0 s passive
  (load average ~6 on 2 cores). ONNX Runtime's pool gets the same treatment
  (``session.intra_op.allow_spinning=0``, see :mod:`~escale.profiler.latency.onnxrt`).

glibc reads these at process start, which is why a child process (not a thread or a fork of a warm
parent) is used. Every result records the settings. jemalloc/tcmalloc would also work but need
system packages; these variables need nothing.

The child runs this file's :func:`main` (loaded by path, so that a light target does not pay for
importing torch): it imports ``module:function`` from the request, calls it with the payload and
writes the JSON result (or the error's class and one-line message) to RESULT.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from escale.errors import BackendUnavailableError, EscaleError, RegistryError, SpecError, describe

ALLOCATOR_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(2**30),
    "MALLOC_TRIM_THRESHOLD_": str(2**32),
    "MALLOC_TOP_PAD_": str(2**28),
    "MALLOC_ARENA_MAX": "1",
}
THREAD_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}  # defaults: a value already in the environment wins


class MeasurementError(EscaleError, RuntimeError):
    """A latency measurement failed (in the child process or in a backend)."""


def error_classes() -> dict[str, type[EscaleError]]:
    """Error classes a child may report, by name (the parent re-raises the same class)."""
    from escale.profiler.latency.fold import FoldError
    from escale.profiler.latency.onnxrt import ExportError, NumericsError

    classes = [EscaleError, SpecError, RegistryError, BackendUnavailableError, MeasurementError, FoldError,
               ExportError, NumericsError]
    return {c.__name__: c for c in classes}


def child_env(threads: int | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The child's environment: ours, plus the allocator settings, thread counts and escale on the path."""
    env = dict(os.environ)
    env.update(ALLOCATOR_ENV)
    for key, value in THREAD_ENV.items():
        env.setdefault(key, value)
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    root = str(Path(__file__).resolve().parents[3])  # the folder holding the escale package
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.update(extra or {})
    return env


_BOOT = ("import importlib.util, sys; "
         "s = importlib.util.spec_from_file_location('escale_isolate_child', sys.argv[1]); "
         "m = importlib.util.module_from_spec(s); s.loader.exec_module(m); sys.exit(m.main(sys.argv[2:]))")


def child_command(request: Path, result: Path) -> list[str]:
    """The command line of a child that calls the request's target and writes RESULT (see :func:`main`)."""
    return [sys.executable, "-c", _BOOT, __file__, str(request), str(result)]


def write_request(path: Path, target: str, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps({"target": target, "payload": payload}))


def run_in_child(target: str, payload: dict[str, Any], *, threads: int | None = None,
                 timeout_s: float | None = None, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Call ``target`` (``"package.module:function"``) with ``**payload`` in a fresh child process.

    The function must return JSON-serialisable data. An EscaleError in the child is re-raised here with
    its class and message; anything else becomes :class:`MeasurementError` with the child's last line.
    """
    with tempfile.TemporaryDirectory(prefix="escale-child-") as tmp:
        request, result = Path(tmp) / "request.json", Path(tmp) / "result.json"
        write_request(request, target, payload)
        try:
            proc = subprocess.run(child_command(request, result),
                                  env=child_env(threads, env), capture_output=True, text=True,
                                  timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise MeasurementError(f"latency: the measurement of {target} ran past {timeout_s:g} s") from None
        if not result.exists():
            tail = (proc.stderr or proc.stdout or "").strip().splitlines()
            last = tail[-1] if tail else "no output"
            raise MeasurementError(f"latency: child process exited with code {proc.returncode} ({last})")
        data = json.loads(result.read_text())
    if "error" in data:
        err = data["error"]
        cls = error_classes().get(err["type"], MeasurementError)
        if os.environ.get("ESCALE_DEBUG") and err.get("traceback"):
            sys.stderr.write(err["traceback"])
        raise cls(err["message"])
    return data["result"]


def _call(target: str, payload: dict[str, Any]) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)(**payload)


def main(argv: list[str]) -> int:
    request, result = Path(argv[0]), Path(argv[1])
    spec = json.loads(request.read_text())
    try:
        out: dict[str, Any] = {"result": _call(spec["target"], spec["payload"])}
    except EscaleError as exc:
        out = {"error": {"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc()}}
    except Exception as exc:  # noqa: BLE001 - anything else is reported as one line to the parent
        out = {"error": {"type": "MeasurementError", "message": f"latency: {describe(exc)}",
                         "traceback": traceback.format_exc()}}
    result.write_text(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
