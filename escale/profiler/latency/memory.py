"""Peak activation memory at inference, in MB (1 MB = 2**20 bytes, as ``torch.cuda.memory_summary``).

- CUDA, measured: ``torch.cuda.max_memory_allocated()`` during one forward pass, minus what was allocated
  before it (weights and input), so the figure is the activations' peak (output included).
- CPU, estimated on the meta device (no memory is touched): a consumer of the dispatch trace
  (:mod:`escale.profiler.trace`) tracks every tensor an aten op creates by its storage; a storage counts
  from its creation until the last tensor viewing it is freed (weak references, so Python's own
  lifetimes decide). The peak of the live total is the estimate. Weights, buffers and the input are not
  counted; kernels' private workspaces (oneDNN, ORT) are invisible to it.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import torch

from escale.profiler.trace import OpEvent, out_tensors, trace

MB = 2**20


@dataclass
class MemoryEstimate:
    """Peak and final live activation bytes of one forward pass; ``method`` says how they were obtained."""

    peak_bytes: int
    end_bytes: int
    method: str

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / MB


class _LiveStorages:
    """Consumer: tracks the bytes of storages created by aten ops while they are referenced."""

    def __init__(self, ignore: set[int]) -> None:
        self.ignore = ignore
        self.live: dict[int, list[int]] = {}  # storage key -> [nbytes, tensors referencing it]
        self.current = 0
        self.peak = 0

    def __call__(self, ev: OpEvent) -> None:
        for t in out_tensors(ev.out):
            self._track(t)

    def _track(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        key = storage._cdata
        if key in self.ignore:
            return
        entry = self.live.get(key)
        if entry is None:
            entry = self.live[key] = [storage.nbytes(), 0]
            self.current += entry[0]
            self.peak = max(self.peak, self.current)
        entry[1] += 1
        weakref.finalize(t, self._release, key)

    def _release(self, key: int) -> None:
        entry = self.live.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self.live[key]


def _storage_keys(tensors: Any) -> set[int]:
    return {t.untyped_storage()._cdata for t in tensors if isinstance(t, torch.Tensor)}


def estimate_peak_memory(model: torch.nn.Module, *inputs: torch.Tensor) -> MemoryEstimate:
    """Peak live activation bytes of ``model(*inputs)`` (any device; use meta for shapes only)."""
    ignore = _storage_keys(list(model.parameters()) + list(model.buffers()) + list(inputs))
    tracker = _LiveStorages(ignore)
    out = trace(model, inputs, [tracker])
    end = tracker.current
    del out
    return MemoryEstimate(peak_bytes=tracker.peak, end_bytes=end, method=f"estimate ({inputs[0].device.type})")


def estimate_spec_memory(spec: Any, input_size: tuple[int, int], batch: int = 1) -> MemoryEstimate:
    """Peak activation bytes of the folded ESeg model of ``spec`` at batch x 3 x H x W, on the meta device."""
    from escale.models import build_model
    from escale.profiler.latency.fold import prepare_for_inference

    model = build_model(spec, device="meta")
    trace = torch.empty(1, 3, 2**spec.decoder.max_level, 2**spec.decoder.max_level, device="meta")
    prepare_for_inference(model, trace, check=False)
    est = estimate_peak_memory(model, torch.empty(batch, 3, *input_size, device="meta"))
    est.method = "meta-device estimate (tensor sizes and lifetimes)"
    return est


def cuda_peak_memory(fn: Any, device: Any = None) -> MemoryEstimate:
    """Run ``fn`` once on CUDA; peak ``max_memory_allocated`` above what was allocated before it."""
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    out = fn()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - before
    end = torch.cuda.memory_allocated(device) - before
    del out
    return MemoryEstimate(peak_bytes=int(peak), end_bytes=int(end), method="cuda max_memory_allocated")
