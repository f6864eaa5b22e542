"""One dispatch trace, many consumers (fvcore's engine-plus-handlers shape, at the torch dispatch level).

:func:`trace` runs ``model(*inputs)`` once under a ``TorchDispatchMode``. Every aten op is looked up
once in the op table (:data:`escale.profiler.ops.OPS`), attributed to the innermost module call
(global forward hooks, so any ``nn.Module`` works) and handed as an :class:`OpEvent` to each consumer:
the MAC/op counter (:mod:`escale.profiler.dispatch`), the live-storage memory estimate
(:mod:`escale.profiler.latency.memory`) and the kernel data flow (:mod:`escale.search.kernels`).

On meta tensors an op with a checked shortcut (:mod:`escale.profiler.meta`) gets its output from the
shortcut instead of torch's slow Python meta kernel; the shortcut checks what the CPU kernel checks
(channels, groups, broadcasting, dtype promotion) and raises ``RuntimeError`` as it does, so a
wiring error is never hidden. On CPU/CUDA tensors the real kernels run.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.utils._python_dispatch import TorchDispatchMode

from escale.profiler.ops import Op, op_of


@dataclass(slots=True)
class OpEvent:
    """One aten op call as the consumers see it."""

    func: Any       # the aten OpOverload (e.g. aten.convolution.default)
    name: str       # its overload-packet name ("convolution"), the key of its row in OPS
    op: Op          # that row: cost category, kernel role, ...
    args: tuple
    kwargs: dict
    out: Any        # the output: a tensor, or a tuple/list for multi-output ops
    module: str     # path of the innermost module running it ("" = the root, or no module)
    call: int       # index of that module call in this trace (0 = outside any module)

    @property
    def first_out(self) -> Any:
        """The first output (the result of a multi-output op such as batch-norm or max-pool with indices)."""
        out = self.out
        return out[0] if isinstance(out, (tuple, list)) else out


Consumer = Callable[[OpEvent], None]


def tensors(values: Sequence[Any]) -> Iterator[torch.Tensor]:
    """The tensors among op arguments or outputs, looking one level into lists (``cat``'s operands)."""
    for v in values:
        if isinstance(v, torch.Tensor):
            yield v
        elif isinstance(v, (list, tuple)):
            yield from (t for t in v if isinstance(t, torch.Tensor))


def out_tensors(out: Any) -> list[torch.Tensor]:
    """The output tensors of one op call."""
    if isinstance(out, torch.Tensor):
        return [out]
    return list(tensors(out)) if isinstance(out, (list, tuple)) else []


class _TraceMode(TorchDispatchMode):
    def __init__(self, consumers: Sequence[Consumer], where: list[tuple[str, int]], shortcuts: bool) -> None:
        super().__init__()
        self.consumers = tuple(consumers)
        self.where = where  # stack of (module path, call index); the last one is running
        self.shortcuts = shortcuts
        self.rows: dict[Any, tuple[str, Op]] = {}  # OpOverload -> (name, row): one table lookup per overload

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        row = self.rows.get(func)
        if row is None:
            name = func._overloadpacket.__name__
            row = self.rows[func] = (name, op_of(name))
        name, op = row
        kwargs = kwargs or {}
        out = op.meta(args, kwargs) if op.meta is not None and self.shortcuts else None
        if out is None:
            out = func(*args, **kwargs)
        event = OpEvent(func, name, op, args, kwargs, out, *self.where[-1])
        for consume in self.consumers:
            consume(event)
        return out


@contextmanager
def module_scope(model: torch.nn.Module) -> Iterator[list[tuple[str, int]]]:
    """A stack of (module path, call index) kept by global forward hooks while the context is open.

    Global hooks: one registration instead of two per module (ESeg-L has ~1000 modules). A module that
    is not a submodule of ``model`` keeps the path of the module calling it.
    """
    names = {id(m): n for n, m in model.named_modules() if n}
    stack: list[tuple[str, int]] = [("", 0)]
    calls = itertools.count(1)

    def push(mod: torch.nn.Module, args: object) -> None:
        stack.append((names.get(id(mod), stack[-1][0]), next(calls)))

    def pop(mod: torch.nn.Module, args: object, out: object) -> None:
        stack.pop()

    handles = [register_module_forward_pre_hook(push), register_module_forward_hook(pop)]
    try:
        yield stack
    finally:
        for h in handles:
            h.remove()


def trace(model: torch.nn.Module, inputs: torch.Tensor | Sequence[torch.Tensor], consumers: Sequence[Consumer],
          shortcuts: bool = True) -> Any:
    """Run ``model(*inputs)`` once without autograd, handing every aten op to each consumer; returns the output.

    ``shortcuts=False`` runs torch's own meta kernels too (slow; for checking the shortcuts).
    """
    inputs = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
    with torch.no_grad(), module_scope(model) as where, _TraceMode(consumers, where, shortcuts):
        return model(*inputs)
