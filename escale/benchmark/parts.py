"""The parts of ``escale benchmark`` as they run, each in its own child process (torch is imported here).

- :func:`run_env`: GPU, driver, clocks, library versions, and the probe saying which backends can run.
- :func:`run_model`: one model's paths in order; each path's row is appended to a JSON-lines stream as
  soon as it is done (a crash or a time-out loses only the path in progress). Each path is timed by its
  latency backend (the shared methodology of :mod:`escale.profiler.latency.timing`), then its output on
  the same input is compared with CPU eager fp32 of the same weights (seed 0, folded).
- :func:`run_train`: AMP training steps of one model on one synthetic batch.

Tests inject faults with ``ESCALE_BENCH_FAULT=NAME=raise|hang|exit[,...]`` (NAME: a path or a part kind).
"""

from __future__ import annotations

import contextlib
import copy
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from escale.benchmark.env import environment, probe
from escale.errors import one_line

FAULT_ENV = "ESCALE_BENCH_FAULT"
MB = 2**20
GPU_TIMING = {"warmup_runs": 10, "warmup_s": 0.3, "min_runs": 50, "min_duration_s": 1.0, "max_runs": 10_000,
              "max_duration_s": 5.0}
QUICK_TIMING = {"warmup_runs": 1, "warmup_s": 0.0, "min_runs": 3, "min_duration_s": 0.0, "max_runs": 10_000,
                "max_duration_s": 5.0}
NUMERICS_METRIC = ("max |out - ref| / max |ref| over the logits, ref = CPU eager fp32 of the same folded "
                   "model on the same input; argmax agreement (share of pixels with the same class) is recorded")


def inject_fault(name: str) -> None:
    """Tests only: raise, hang or exit the process where ``$ESCALE_BENCH_FAULT`` names ``name``."""
    faults = dict(item.split("=", 1) for item in os.environ.get(FAULT_ENV, "").split(",") if "=" in item)
    kind = faults.get(name)
    if kind == "raise":
        raise RuntimeError(f"injected fault in {name}")
    if kind == "hang":
        time.sleep(3600)
    if kind == "exit":
        os._exit(3)


def run_env(device: str) -> dict[str, Any]:
    """The environment and the probe (see :mod:`escale.benchmark.env`)."""
    inject_fault("env")
    return {"environment": environment(device), "probe": probe(device)}


def numerics(out: Any, ref: torch.Tensor, precision: str) -> dict[str, Any]:
    """``out`` against the CPU fp32 reference: the differences, the tolerance for ``precision``, ``ok``."""
    from escale.profiler.latency.onnxrt import NUMERICS_TOLERANCE, compare_outputs

    out_t = torch.as_tensor(np.asarray(out)) if not isinstance(out, torch.Tensor) else out.detach().float().cpu()
    d = compare_outputs(out_t.float(), ref)
    agree = float((out_t.argmax(1) == ref.argmax(1)).float().mean()) if out_t.shape == ref.shape else 0.0
    tol = NUMERICS_TOLERANCE[precision]
    return {**d, "argmax_agreement": agree, "tolerance": tol, "ok": bool(d["rel_diff"] <= tol),
            "metric": NUMERICS_METRIC}


def reference(model: torch.nn.Module, example: torch.Tensor, spec_id: str, workdir: str) -> tuple[torch.Tensor, float]:
    """CPU eager fp32 logits of ``model`` on ``example``, computed once per run (cached in ``workdir``);
    the seconds it took here (0 when read from the cache)."""
    h, w = example.shape[-2:]
    path = Path(workdir) / f"reference-{spec_id}-{h}x{w}.pt"
    if path.exists():
        return torch.load(path, weights_only=True), 0.0
    t0 = time.perf_counter()
    with torch.inference_mode():
        ref = model(example).float()
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(ref, tmp)
    os.replace(tmp, path)
    return ref, time.perf_counter() - t0


def measure_path(model: torch.nn.Module, example: torch.Tensor, ref: torch.Tensor, spec: Any, path: dict[str, Any],
                 device: str, timing: dict[str, Any], threads: int) -> dict[str, Any]:
    """Time one path with its backend, then check its output; a wrong path keeps no latency figures."""
    from escale.profiler.latency import TimingConfig, get_backend

    b = get_backend(path["backend"])
    opts = b.check(device, path["precision"], path["options"])
    m = b.measure(copy.deepcopy(model), example, spec=spec, device=device, precision=path["precision"],
                  threads=threads, config=TimingConfig.from_dict(timing), options=opts)
    num = numerics(m.output_fn(), ref, path["precision"])
    s = m.stats
    row: dict[str, Any] = {"status": "ok" if num["ok"] else "wrong", "numerics": num,
                           "peak_mem_mb": m.peak_mem_mb, "peak_mem_method": m.peak_mem_method,
                           "details": {**m.details, "options": opts, "stopped_by": s.stopped_by}}
    if m.notes:  # e.g. inductor ran a CUDA-graphs path without them
        row["reason"] = "; ".join(m.notes)
    if num["ok"]:
        row.update(latency_ms=s.median_ms, latency_p90_ms=s.p90_ms, latency_p99_ms=s.p99_ms, iqr_ms=s.iqr_ms,
                   min_ms=s.min_ms, fps=1000.0 / s.median_ms, runs=s.runs)
    else:
        row["reason"] = (f"output differs from CPU eager fp32 by {num['rel_diff']:.3g} of the output scale "
                         f"(allowed <= {num['tolerance']:g} for {path['precision']}); its timing is not reported")
    return row


def _event(stream: str, **data: Any) -> None:
    with open(stream, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(data, default=str) + "\n")
        fh.flush()


def run_model(spec: dict[str, Any], paths: list[dict[str, Any]], device: str, input_size: list[int], stream: str,
              workdir: str, timing: dict[str, Any]) -> dict[str, Any]:
    """Run ``paths`` for one model, appending ``start``/``done`` events to ``stream``.

    After a failed path on CUDA the process stops (``restart``: the parent starts a fresh one for the rest),
    since a CUDA error can leave the context unusable.
    """
    from escale.profiler.latency.fold import build_folded
    from escale.profiler.latency.measure import default_threads, set_threads
    from escale.spec import ESegSpec

    threads = default_threads()
    set_threads(threads)
    spec_obj = ESegSpec.from_dict(spec)
    model, fold = build_folded(spec_obj)
    example = torch.randn(1, 3, *input_size, generator=torch.Generator().manual_seed(0))
    ref, ref_s = reference(model, example, spec_obj.spec_id, workdir)
    info = {"fold": fold.to_dict(), "reference_s": ref_s, "threads": threads, "restart": False}
    for path in paths:
        _event(stream, event="start", path=path["name"])
        t0 = time.perf_counter()
        try:
            inject_fault(path["name"])
            row = measure_path(model, example, ref, spec_obj, path, device, timing, threads)
        except Exception as exc:  # noqa: BLE001 - one path's failure is its row; the others go on
            row = {"status": "failed", "reason": one_line(exc)}
            info["restart"] = device == "cuda"
        _event(stream, event="done", path=path["name"], seconds=time.perf_counter() - t0, **row)
        try:
            _release(device)
        except Exception:  # noqa: BLE001 - e.g. a CUDA error surfacing at the synchronisation
            info["restart"] = True
        if info["restart"]:
            break
    return info


def _release(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
    if "torch._dynamo" in sys.modules:  # a path compiled: its graphs are not reused by the next
        torch._dynamo.reset()


def run_train(model: str, device: str, input_size: list[int], batch: int, steps: int,
              warmup_steps: int) -> dict[str, Any]:
    """Training throughput: ``warmup_steps`` untimed steps (cuDNN autotuning), then ``steps`` timed SGD steps
    (AMP fp16 on CUDA), each synchronised; images/s over the timed steps and peak allocated memory."""
    from escale.data import TrainTransform, make_dataset, normalize, train_batch
    from escale.models import build_model
    from escale.profiler.latency.torch_backend import cuda_math_settings, cudnn_benchmark
    from escale.spec import preset
    from escale.train import Trainer
    from escale.train.loop import resolve_device

    inject_fault("train")
    dev, amp = resolve_device(device, None)
    size = (int(input_size[0]), int(input_size[1]))
    data = make_dataset("synthetic", "train", size=size, seed=0)
    spec = preset(model).with_overrides({"num_classes": data.num_classes})
    torch.manual_seed(0)
    trainer = Trainer(build_model(spec).to(dev), 5e-5, dev, amp=amp, ohem=True, ema_decay=None)
    images, labels = train_batch(data, batch, 0, 0, TrainTransform(size, (1.0, 1.0)))
    x, y = normalize(images.to(dev)), labels.to(dev)
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    times, losses = [], []
    with cudnn_benchmark(True) if cuda else contextlib.nullcontext():
        for _ in range(warmup_steps):
            trainer.step(x, y, lr=0.01)
        sync()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        for _ in range(steps):
            t0 = time.perf_counter()
            losses.append(trainer.step(x, y, lr=0.01))
            sync()
            times.append((time.perf_counter() - t0) * 1000)
        settings = cuda_math_settings() if cuda else {}
    return {"model": model, "spec_id": spec.spec_id, "device": device, "amp": amp, "input_size": list(size),
            "batch": batch, "steps": steps, "warmup_steps": warmup_steps,
            "images_per_s": steps * batch * 1000 / sum(times), "step_ms_median": float(np.median(times)),
            "step_ms_p90": float(np.percentile(times, 90)),
            "peak_mem_mb": torch.cuda.max_memory_allocated() / MB if cuda else None,
            "peak_mem_method": ("cuda max_memory_allocated: weights, gradients, optimizer state and activations"
                                if cuda else "not measured on cpu"),
            "final_loss": losses[-1], "skipped_steps": trainer.skipped_steps, "cuda_settings": settings,
            "recipe": "SGD momentum 0.9, lr 0.01, weight decay 5e-5, OHEM cross-entropy, no EMA; one synthetic "
                      "batch drawn once and reused (data loading and augmentation excluded)"}

