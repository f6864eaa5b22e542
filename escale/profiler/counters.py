"""Counter registry: params and MACs of a spec (or any model) at an input size, by interchangeable engines.

- ``dispatch`` (default): torch dispatch-level counting on the meta device (no activations allocated),
  with breakdowns by part, pyramid level, operator and category; see :mod:`escale.profiler.dispatch`.
- ``fvcore``: fvcore's ``FlopCountAnalysis`` (JIT trace on real CPU tensors). fvcore counts "one fused
  multiply-add as one flop" for conv/matmul, and also counts batch-norm, upsampling and pooling
  with its own per-op handles; ops it has no handle for are reported as not counted.
- ``thop``: thop's module hooks (real CPU tensors). It counts conv MACs plus one op per output element
  for biases, and adds BN/activation/pooling/upsample work into the same total (so its total is not
  pure MACs); the ESeg functional ops (resampling, pooling in ``F.*``) are invisible to it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch

from escale.errors import BackendUnavailableError
from escale.models import build_model
from escale.profiler.dispatch import CATEGORIES, OpCounts, count_ops
from escale.profiler.modules import ModuleTarget
from escale.registry import Registry
from escale.spec import ESegSpec

PARTS = {"encoder": "encoder", "extra": "encoder", "decoder": "decoder", "fusion": "head", "head": "head"}


def part_of(module_name: str) -> str:
    """Map a module path (``decoder.layers.0...``) to encoder / decoder / head."""
    return PARTS.get(module_name.split(".", 1)[0], "head")  # root-level ops: the final resize


@dataclass
class CountResult:
    """MACs (one multiply-add = 1) and other ops of one forward pass at batch 1."""

    counter: str
    macs: int
    macs_by_part: dict[str, int] = field(default_factory=dict)
    macs_by_level: dict[str, int] = field(default_factory=dict)
    macs_by_operator: dict[str, int] = field(default_factory=dict)
    macs_by_module: dict[str, int] = field(default_factory=dict)
    other_ops: dict[str, int] = field(default_factory=dict)
    other_ops_by_part: dict[str, dict[str, int]] = field(default_factory=dict)
    ops_not_counted: dict[str, int] = field(default_factory=dict)
    ops_no_arithmetic: dict[str, int] = field(default_factory=dict)
    convention: str = "MACs: one fused multiply-add counts as one"


class Counter:
    """A counting engine; subclasses set ``name`` and implement :meth:`count`."""

    name: str = ""

    def is_available(self) -> tuple[bool, str]:
        return True, "ok"

    def count(self, spec: ESegSpec, input_size: tuple[int, int], meta_model: torch.nn.Module | None = None,
              ) -> CountResult:
        """Count one forward pass at batch 1; ``meta_model`` is a prebuilt meta-device model, if any."""
        raise NotImplementedError

    def count_module(self, target: ModuleTarget, inputs: tuple[torch.Tensor, ...]) -> CountResult:
        """Count one forward pass of any model; ``inputs`` are meta tensors (shapes and dtypes)."""
        raise NotImplementedError


COUNTERS: Registry[type[Counter]] = Registry("counter", "--counter: ")
register_counter = COUNTERS.decorator()


def get_counter(name: str) -> Counter:
    """An instance of the named counter; unknown or unavailable names raise one-line errors."""
    counter = COUNTERS[name]()
    ok, why = counter.is_available()
    if not ok:
        raise BackendUnavailableError(f"--counter: {name!r} cannot run here: {why}")
    return counter


@register_counter
class DispatchCounter(Counter):
    """torch dispatch-level counting on the meta device (default)."""

    name = "dispatch"

    def count(self, spec: ESegSpec, input_size: tuple[int, int], meta_model: torch.nn.Module | None = None,
              ) -> CountResult:
        model = (meta_model or build_model(spec, device="meta")).eval()
        x = torch.empty(1, 3, *input_size, device="meta")
        return summarise(count_ops(model, x, spec.decoder.max_level), self.name, eseg=True)

    def count_module(self, target: ModuleTarget, inputs: tuple[torch.Tensor, ...]) -> CountResult:
        raw = count_ops(target.model.eval(), inputs if len(inputs) > 1 else inputs[0])
        return summarise(raw, self.name, eseg=False)


def summarise(raw: OpCounts, counter: str, eseg: bool) -> CountResult:
    """A CountResult from raw dispatch rows: MACs by operator and innermost module path, other ops; for an ESeg
    model also by part (encoder / decoder / head) and pyramid level."""
    res = CountResult(counter=counter, macs=0)
    by = {k: defaultdict(int) for k in ("part", "level", "op", "module")}
    other: dict[str, int] = dict.fromkeys(CATEGORIES[2:], 0)
    other_by_part: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(CATEGORIES[2:], 0))
    for (module, level, op, category), amount in raw.rows.items():
        part = part_of(module)
        if category.endswith("_macs"):
            res.macs += amount
            by["part"][part] += amount
            by["level"][level] += amount
            by["op"][op] += amount
            by["module"][module] += amount
        else:
            other[category] += amount
            other_by_part[part][category] += amount
    if eseg:
        res.macs_by_part = {p: by["part"].get(p, 0) for p in ("encoder", "decoder", "head")}
        res.macs_by_level = dict(sorted(by["level"].items(), key=lambda kv: _level_key(kv[0])))
        res.other_ops_by_part = {p: other_by_part[p] for p in ("encoder", "decoder", "head")}
    res.macs_by_operator = dict(by["op"])
    res.macs_by_module = dict(by["module"])
    res.other_ops = other
    res.ops_not_counted = dict(raw.not_counted)
    res.ops_no_arithmetic = dict(raw.no_arithmetic)
    return res


def _level_key(level: str) -> int:
    return int(level[1:]) if level.startswith("P") else 99


# fvcore's operator names whose counts are multiply-adds of products (the rest are its other handles)
MATMUL_LIKE = ("conv", "matmul", "linear", "einsum", "bmm", "addmm")


def _real_inputs(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> object:
    """Zero tensors shaped like the meta ``inputs``, on the model's device; one tensor or a tuple."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    real = tuple(torch.zeros(t.shape, dtype=t.dtype, device=device) for t in inputs)
    return real if len(real) > 1 else real[0]


def _real_model_and_input(spec: ESegSpec, input_size: tuple[int, int]):
    torch.manual_seed(0)
    model = build_model(spec).eval()
    return model, torch.zeros(1, 3, *input_size)


@register_counter
class FvcoreCounter(Counter):
    """fvcore FlopCountAnalysis (cross-check; runs the model for real on the CPU)."""

    name = "fvcore"

    def is_available(self) -> tuple[bool, str]:
        try:
            import fvcore.nn  # noqa: F401
        except ImportError as exc:
            return False, f"fvcore is not installed ({exc})"
        return True, "ok"

    def count(self, spec: ESegSpec, input_size: tuple[int, int], meta_model: torch.nn.Module | None = None,
              ) -> CountResult:
        res, by_module = self._count(*_real_model_and_input(spec, input_size))
        res.macs_by_part = {p: by_module.get(p, 0) for p in ("encoder", "decoder", "head")}
        res.macs_by_part["head"] += by_module.get("fusion", 0)
        return res

    def count_module(self, target: ModuleTarget, inputs: tuple[torch.Tensor, ...]) -> CountResult:
        model = target.real().eval()
        return self._count(model, _real_inputs(model, inputs))[0]

    def _count(self, model: torch.nn.Module, x: object) -> tuple[CountResult, dict[str, int]]:
        import logging

        from fvcore.nn import FlopCountAnalysis

        logging.getLogger("fvcore").setLevel(logging.ERROR)
        with torch.no_grad():
            fca = FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            by_op = dict(fca.by_operator())
            by_module = dict(fca.by_module())
            total = fca.total()
        conv = {k: v for k, v in by_op.items() if k in MATMUL_LIKE}
        res = CountResult(counter=self.name, macs=sum(conv.values()))
        res.macs_by_operator = conv
        res.other_ops = {k: v for k, v in by_op.items() if k not in conv}
        res.ops_not_counted = dict(fca.unsupported_ops())
        res.convention = (f"fvcore: one fused multiply-add = one flop; macs = conv/matmul only; "
                          f"fvcore total incl. its other handles = {total}")
        return res, by_module


@register_counter
class ThopCounter(Counter):
    """thop.profile (cross-check; module hooks on a real CPU forward pass)."""

    name = "thop"

    def is_available(self) -> tuple[bool, str]:
        try:
            import thop  # noqa: F401
        except ImportError as exc:
            return False, f"thop is not installed ({exc})"
        return True, "ok"

    def count(self, spec: ESegSpec, input_size: tuple[int, int], meta_model: torch.nn.Module | None = None,
              ) -> CountResult:
        return self._count(*_real_model_and_input(spec, input_size))

    def count_module(self, target: ModuleTarget, inputs: tuple[torch.Tensor, ...]) -> CountResult:
        model = target.real().eval()
        return self._count(model, _real_inputs(model, inputs))

    def _count(self, model: torch.nn.Module, x: object) -> CountResult:
        import contextlib
        import io

        import thop

        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
            macs, _params = thop.profile(model, inputs=x if isinstance(x, tuple) else (x,), verbose=False)
        res = CountResult(counter=self.name, macs=int(macs))
        res.convention = ("thop: conv/linear multiply-adds plus bias adds, BN, activations and nn.* pooling/"
                          "upsampling in one total; functional (F.*) resampling is not seen")
        return res
