"""Building models on the meta device fast: shapes only, no memory, and no (meaningless) weight init.

Used by ``build_model(spec, device="meta")`` and by ``escale.profile("timm:<model>")``.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

# In-place initialisers: on meta tensors they only cost time (torch runs them through its Python refs,
# ~1.4 ms per normal_), since there are no values to fill. Shape-preserving by definition. The nn.init
# functions listed are those that dispatch to __torch_function__ themselves; the others end in a method.
_INIT_FUNCS = frozenset({
    torch.Tensor.normal_, torch.Tensor.uniform_, torch.Tensor.zero_, torch.Tensor.fill_, torch.Tensor.random_,
    nn.init.normal_, nn.init.uniform_, nn.init.constant_, nn.init.kaiming_uniform_,
})


class _SkipMetaInit(TorchFunctionMode):
    """Returns meta tensors unchanged from in-place initialisers (weights on meta have no values)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        if func in _INIT_FUNCS:
            t = args[0] if args else (kwargs or {}).get("tensor")
            if isinstance(t, torch.Tensor) and t.is_meta:
                return t
        return func(*args, **(kwargs or {}))


@contextmanager
def gc_paused() -> Iterator[None]:
    """No garbage collection inside the block; the caller's GC setting is restored afterwards.

    Meta builds and dispatch traces allocate tens of thousands of Python objects and no garbage cycles: a
    collection triggered midway would scan every object alive since import (~380k with torch and timm
    loaded, ~0.2 s) and free nothing.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextmanager
def meta_init() -> Iterator[None]:
    """Tensors on meta, in-place initialisers skipped, no garbage collection while a model is built."""
    with gc_paused(), torch.device("meta"), _SkipMetaInit():
        yield
