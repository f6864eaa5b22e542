"""Profilers: parameter and MAC counts (this package), latency and memory backends (registries)."""

from __future__ import annotations

from collections import defaultdict

import torch

from escale.models import build_model
from escale.profiler.counters import COUNTERS, CountResult, get_counter, part_of, register_counter
from escale.profiler.record import ProfileRecord, records_to_frame
from escale.spec import ESegSpec

DEFAULT_INPUT_SIZE = (1024, 2048)  # the paper's Cityscapes resolution


def count_params(model: torch.nn.Module) -> tuple[int, dict[str, int]]:
    """Total parameters of an ESeg model (meta is fine) and the split encoder / decoder / head."""
    by_part: dict[str, int] = defaultdict(int)
    for name, p in model.named_parameters():
        by_part[part_of(name)] += p.numel()
    by_part = {k: by_part.get(k, 0) for k in ("encoder", "decoder", "head")}
    return sum(by_part.values()), by_part


def profile(spec: ESegSpec, input_size: tuple[int, int] = DEFAULT_INPUT_SIZE, counter: str = "dispatch") -> ProfileRecord:
    """Params and MACs (multiply-adds, batch 1) of ``spec`` at ``input_size`` (H, W)."""
    from escale.profiler.record import make_record

    input_size = spec.check_input_size(tuple(input_size))
    engine = get_counter(counter)
    meta_model = build_model(spec, device="meta")
    params, params_by_part = count_params(meta_model)
    return make_record(spec, input_size, params, params_by_part, engine.count(spec, input_size, meta_model))


__all__ = [
    "COUNTERS", "DEFAULT_INPUT_SIZE", "CountResult", "ProfileRecord", "count_params", "get_counter",
    "profile", "records_to_frame", "register_counter",
]
