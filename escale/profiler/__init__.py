"""Profilers: parameter and MAC counts (this package), latency and memory backends (registries).

>>> import escale
>>> escale.profile("ESeg-S")                                   # a preset, a spec, or a YAML path
>>> escale.profile("timm:resnet50", input_size=(224, 224))     # any timm model, built without weights
>>> escale.profile(my_module, example_input=x)                 # any nn.Module (never modified)
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Any

import torch

from escale.errors import EscaleError, SpecError, describe
from escale.models import build_model
from escale.models.meta import gc_paused
from escale.profiler.counters import COUNTERS, CountResult, get_counter, part_of, register_counter
from escale.profiler.modules import ModuleTarget, module_id, params_by_module, resolve_target, truncate
from escale.profiler.record import ProfileRecord, make_record, records_to_frame
from escale.spec import ESegSpec

DEFAULT_INPUT_SIZE = (1024, 2048)  # the paper's Cityscapes resolution
MODULE_DEPTH = 3  # module paths in a record's macs_by_module / params_by_module are summed to this depth


def count_params(model: torch.nn.Module) -> tuple[int, dict[str, int]]:
    """Total parameters of an ESeg model (meta is fine) and the split encoder / decoder / head."""
    by_part: dict[str, int] = defaultdict(int)
    for name, p in model.named_parameters():
        by_part[part_of(name)] += p.numel()
    by_part = {k: by_part.get(k, 0) for k in ("encoder", "decoder", "head")}
    return sum(by_part.values()), by_part


def profile(target: Any, input_size: tuple[int, int] | None = None, counter: str = "dispatch", *,
            in_chans: int | None = None, example_input: Any = None, name: str | None = None,
            module_depth: int = MODULE_DEPTH) -> ProfileRecord:
    """Params and MACs (multiply-adds, batch 1) of ``target`` at ``input_size`` (H, W).

    ``target``: an ``ESegSpec``, a preset name, a YAML/JSON spec path, ``"timm:<model>"``,
    ``"module:<package.module>:<callable>"`` or any ``torch.nn.Module`` (profiled on a meta copy; the
    module itself is not touched). ``input_size`` defaults to 1024x2048 for ESeg, to the model's
    pretrained input size for timm; ``example_input`` (a tensor or tuple of tensors) replaces it.
    ``in_chans`` (default 3) is the channel count of the generated input. Breakdowns by module path are
    summed to ``module_depth`` levels.
    """
    with gc_paused():  # see escale.models.meta.gc_paused: ~0.2 s of collections that free nothing
        return _profile(target, input_size, counter, in_chans, example_input, name, module_depth)


def _profile(target: Any, input_size: tuple[int, int] | None, counter: str, in_chans: int | None,
             example_input: Any, name: str | None, module_depth: int) -> ProfileRecord:
    resolved = resolve_target(target, name)
    if example_input is not None:
        first = example_input[0] if isinstance(example_input, (tuple, list)) else example_input
        if not isinstance(first, torch.Tensor) or first.dim() < 2:
            raise EscaleError(f"example_input: {type(first).__name__} is not a tensor with H, W dimensions")
        input_size = tuple(first.shape[-2:])
    if isinstance(resolved, ESegSpec):
        if name is not None:
            resolved = replace(resolved, name=name)
        size = resolved.check_input_size(tuple(input_size or DEFAULT_INPUT_SIZE))
        return _profile_spec(resolved, size, counter, module_depth)
    return _profile_module(resolved, input_size, counter, in_chans, example_input, module_depth)


def _profile_spec(spec: ESegSpec, input_size: tuple[int, int], counter: str, depth: int) -> ProfileRecord:
    engine = get_counter(counter)
    meta_model = build_model(spec, device="meta")
    params, params_by_part = count_params(meta_model)
    try:
        counted = engine.count(spec, input_size, meta_model)
    except (RuntimeError, AssertionError, ValueError, IndexError) as exc:  # a timm backbone that cannot run here
        raise cannot_run(spec.name, input_size, exc) from None
    return make_record(spec, input_size, params, params_by_part, counted,
                       macs_by_module=by_depth(counted.macs_by_module, depth),
                       params_by_module=params_by_module(meta_model, depth), module_depth=depth)


def cannot_run(name: str, input_size: tuple[int, int], exc: BaseException) -> SpecError:
    """The one-line error for a model that raises at ``input_size``."""
    return SpecError(f"input_size: {name} cannot run at {input_size[0]}x{input_size[1]} ({describe(exc, 160)})")


def _profile_module(target: ModuleTarget, input_size: tuple[int, int] | None, counter: str,
                    in_chans: int | None, example_input: Any, depth: int) -> ProfileRecord:
    engine = get_counter(counter)
    size = tuple(input_size or target.default_input_size or DEFAULT_INPUT_SIZE)
    if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size):
        raise SpecError(f"input_size: {size!r} is not an (H, W) pair of positive integers")
    if example_input is not None:
        inputs = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
        inputs = tuple(torch.empty_like(t, device="meta") for t in inputs)
    else:
        inputs = (torch.empty(1, in_chans or target.in_chans or 3, *size, device="meta"),)
    try:
        counted = engine.count_module(target, inputs)
    except (RuntimeError, AssertionError, ValueError, IndexError, TypeError, NotImplementedError) as exc:
        raise cannot_run(target.name, size, exc) from None
    model = target.model
    return ProfileRecord(
        name=target.name, spec_id=module_id(model), input_size=size, batch=int(inputs[0].shape[0]),
        counter=counted.counter, convention=counted.convention, params=sum(p.numel() for p in model.parameters()),
        params_by_part={}, macs=counted.macs, macs_by_part={}, macs_by_level={},
        macs_by_operator=counted.macs_by_operator, other_ops=counted.other_ops,
        ops_not_counted=counted.ops_not_counted, spec={}, kind="module", source=target.source,
        macs_by_module=by_depth(counted.macs_by_module, depth), params_by_module=params_by_module(model, depth),
        module_depth=depth)


def by_depth(flat: dict[str, int], depth: int) -> dict[str, int]:
    """Per-module amounts with paths truncated to ``depth`` levels (amounts of merged paths summed)."""
    out: dict[str, int] = defaultdict(int)
    for path, amount in flat.items():
        out[truncate(path, depth)] += amount
    return dict(out)


__all__ = [
    "COUNTERS", "DEFAULT_INPUT_SIZE", "CountResult", "ModuleTarget", "ProfileRecord", "count_params",
    "get_counter", "profile", "records_to_frame", "register_counter", "resolve_target",
]
