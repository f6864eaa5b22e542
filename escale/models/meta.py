"""Building models on the meta device fast: shapes only, no memory, and no (meaningless) weight init."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.overrides import TorchFunctionMode

# In-place initialisers: on meta tensors they have nothing to write, but torch runs them through its
# Python reference kernels (~1 ms per call), which made building ESeg-L on meta take most of a second.
_INIT_METHODS = {torch.Tensor.normal_, torch.Tensor.uniform_, torch.Tensor.zero_, torch.Tensor.fill_,
                 torch.Tensor.random_, torch.Tensor.exponential_, torch.Tensor.bernoulli_}


class _SkipMetaInit(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        if func in _INIT_METHODS and args and isinstance(args[0], torch.Tensor) and args[0].is_meta:
            return args[0]
        return func(*args, **(kwargs or {}))


@contextmanager
def meta_init() -> Iterator[None]:
    """Create modules on the meta device inside this block, skipping in-place weight initialisation."""
    with torch.device("meta"), _SkipMetaInit():
        yield
