"""Any model as a profiling target: an ESeg spec, a preset or YAML path, ``timm:<model>``, a factory, a module.

``resolve_target`` turns what a user passes into either an :class:`~escale.spec.ESegSpec` or a
:class:`ModuleTarget` (a module on the meta device, its name and where it came from). Meta copies keep
the user's module untouched: the module tree is copied shallowly with meta tensors of the same shapes in
place of its parameters and buffers, so no weight is copied or allocated.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import torch

from escale.errors import EscaleError, SpecError
from escale.spec import ESegSpec, load_spec

ACCEPTED = ("an ESegSpec, a preset name (e.g. 'ESeg-S'), a YAML/JSON spec path, 'timm:<model>', "
            "'module:<package.module>:<callable>' or a torch.nn.Module")


@dataclass
class ModuleTarget:
    """A generic model to profile: ``model`` on the meta device; ``real()`` gives a model with real weights for
    the counters that run on real tensors (fvcore, thop), never the user's own instance."""

    model: torch.nn.Module
    name: str
    source: str
    real: Callable[[], torch.nn.Module]
    default_input_size: tuple[int, int] | None = None
    in_chans: int | None = None


def resolve_target(target: object, name: str | None = None) -> ESegSpec | ModuleTarget:
    """An ESeg spec or a :class:`ModuleTarget` for ``target``; anything else raises ``EscaleError``."""
    if isinstance(target, ESegSpec):
        return target
    if isinstance(target, torch.nn.Module):
        cls = type(target).__name__
        return ModuleTarget(meta_copy(target), name or cls, f"nn.Module {cls}", real=lambda: copy.deepcopy(target))
    if isinstance(target, str):
        if target.startswith("timm:"):
            return timm_target(target[5:], name)
        if target.startswith("module:"):
            return factory_target(target[7:], name)
        return load_spec(target)
    raise EscaleError(f"profile: {type(target).__name__} {str(target)[:60]!r} is not a model (allowed: {ACCEPTED})")


def meta_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose parameters and buffers are meta tensors; the original is untouched.

    Each module is copied shallowly (a new instance with a copy of its ``__dict__``) with its own parameter,
    buffer and child tables; other attributes are shared. That takes a few ms for a ResNet-50, where
    ``copy.deepcopy`` took ~20 ms.
    Shared parameters and modules stay shared.
    """
    memo: dict[int, object] = {}

    def tensor(t: torch.Tensor | None) -> torch.Tensor | None:
        if t is None:
            return None
        if id(t) not in memo:
            meta = torch.empty_like(t, device="meta")
            memo[id(t)] = torch.nn.Parameter(meta, t.requires_grad) if isinstance(t, torch.nn.Parameter) else meta
        return memo[id(t)]

    def module(m: torch.nn.Module | None) -> torch.nn.Module | None:
        if m is None:
            return None
        if id(m) not in memo:
            new = memo[id(m)] = type(m).__new__(type(m))  # copy.copy without its __reduce_ex__ round trip
            new.__dict__ = m.__dict__.copy()
            new._parameters = {k: tensor(p) for k, p in m._parameters.items()}
            new._buffers = {k: tensor(b) for k, b in m._buffers.items()}
            new._modules = {k: module(c) for k, c in m._modules.items()}
        return memo[id(m)]

    return module(model)


def timm_target(model_name: str, name: str | None = None) -> ModuleTarget:
    """``timm.create_model(model_name, pretrained=False)`` built on the meta device (no weights anywhere)."""
    import timm

    if not model_name or not timm.is_model(model_name):
        close = timm.list_models(f"*{model_name}*")[:5] if model_name else []
        hint = f"; close: {', '.join(close)}" if close else ""
        raise SpecError(f"timm: {model_name!r} is not a timm model (allowed: a name from timm.list_models(){hint})")
    from escale.models import meta_init

    with meta_init():
        model = timm.create_model(model_name, pretrained=False)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    size = cfg.get("input_size")
    return ModuleTarget(model, name or model_name, f"timm:{model_name}",
                        real=lambda: timm.create_model(model_name, pretrained=False), default_input_size=tuple(size[-2:]) if size else None,
                        in_chans=int(size[0]) if size else None)


def factory_target(ref: str, name: str | None = None) -> ModuleTarget:
    """``package.module:callable`` -> the module the callable returns (called with no arguments)."""
    mod_name, _, attr = ref.partition(":")
    if not mod_name or not attr:
        raise EscaleError(f"module: {ref!r} is not 'package.module:callable' (e.g. module:torchvision.models:resnet18)")
    try:
        factory = getattr(importlib.import_module(mod_name), attr)
    except ImportError as exc:
        raise EscaleError(f"module: cannot import {mod_name!r} ({exc})") from None
    except AttributeError:
        raise EscaleError(f"module: {mod_name!r} has no attribute {attr!r}") from None
    model = factory()
    if not isinstance(model, torch.nn.Module):
        raise EscaleError(f"module: {ref!r} returned a {type(model).__name__}, not a torch.nn.Module")
    return ModuleTarget(meta_copy(model), name or attr, f"module:{ref}", real=lambda: model)


def module_id(model: torch.nn.Module) -> str:
    """First 12 hex digits of SHA-256 over every module's path, class and settings (``extra_repr``) and the
    parameter shapes: stable across runs, equal for equal architectures (what ``repr`` shows, linearly)."""
    tree = "\n".join(f"{n}:{type(m).__qualname__}({m.extra_repr()})" for n, m in model.named_modules())
    shapes = ";".join(f"{n}:{tuple(p.shape)}" for n, p in model.named_parameters())
    return hashlib.sha256((tree + "|" + shapes).encode()).hexdigest()[:12]


def truncate(path: str, depth: int) -> str:
    """``a.b.c.d`` at depth 2 -> ``a.b``; ``""`` (the model itself) stays ``""``."""
    return ".".join(path.split(".")[:depth]) if path else ""


def params_by_module(model: torch.nn.Module, depth: int) -> dict[str, int]:
    """Parameter counts per module path, summed to ``depth`` levels (shared parameters counted once)."""
    out: dict[str, int] = defaultdict(int)
    for name, p in model.named_parameters():
        out[truncate(name.rpartition(".")[0], depth)] += p.numel()
    return dict(out)


def tree_rows(flat: dict[str, int], depth: int) -> dict[str, int]:
    """Totals for every module path prefix up to ``depth`` (``""`` = the whole model) from flat per-path counts."""
    out: dict[str, int] = defaultdict(int)
    for path, amount in flat.items():
        parts = path.split(".") if path else []
        out[""] += amount
        for d in range(1, min(depth, len(parts)) + 1):
            out[".".join(parts[:d])] += amount
    return dict(out)
