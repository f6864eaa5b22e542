"""Search spaces: ``spaces/*.yaml`` -> Optuna distributions over dotted spec fields -> specs.

A space file names a ``base`` preset, optional ``fixed`` overrides, and under ``params`` one
Optuna-style distribution per dotted spec field (``escale.spec.field_paths()``)::

    base: ESeg-Lite-S
    fixed: {encoder.act: relu}
    params:
      encoder.width: {type: float, low: 0.3, high: 1.0, step: 0.1}
      decoder.max_level: {type: int, low: 6, high: 9}
      encoder.fused_stages: {type: categorical, choices: [3, 5, 7]}

Everything is validated when the space is loaded (and against the input size before a study
starts), so a bad space fails with one :class:`SpaceError` line before any trial runs.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from escale.errors import SpecError
from escale.spec import FAMILIES, ESegSpec, family, field_paths, preset

TOP_KEYS = ("name", "description", "base", "family", "fixed", "params")
DIST_KEYS = {"int": {"type", "low", "high", "step", "log"}, "float": {"type", "low", "high", "step", "log"},
             "categorical": {"type", "choices"}}
MAX_CORNERS = 4096  # joint validity check over all range ends x choices, up to this many combinations


class SpaceError(SpecError):
    """A search-space file is malformed, names an unknown field, has an empty range or yields invalid specs."""


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space: a base spec plus one Optuna distribution per dotted field."""

    name: str
    base: ESegSpec
    distributions: dict[str, BaseDistribution]
    family: str | None = None
    description: str = ""
    source: str = "<dict>"
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    # --- specs from parameters ------------------------------------------------------------------
    def to_spec(self, params: dict[str, Any], name: str = "candidate") -> ESegSpec:
        """The spec for one assignment of the space's parameters (floats rounded to their grid)."""
        values = {k: _clean(self.distributions[k], v) for k, v in params.items() if k in self.distributions}
        missing = [k for k in self.distributions if k not in values]
        if missing:
            raise SpaceError(f"{self.source}: parameters {missing} are missing from {params!r}")
        return self.base.with_overrides({**values, "name": name})

    def sample(self, trial: Any) -> ESegSpec:
        """Suggest every parameter on an Optuna trial and return the spec (``trial.params`` holds them)."""
        params = {key: _suggest(trial, key, dist) for key, dist in self.distributions.items()}
        return self.to_spec(params, name=f"trial-{trial.number}")

    def random_specs(self, n: int, seed: int = 0, exclude: set[str] | None = None,
                     input_size: tuple[int, int] | None = None) -> list[ESegSpec]:
        """``n`` distinct random specs (uniform over each distribution; seeded), skipping spec ids in
        ``exclude``; ``input_size`` (H, W), if given, is checked (every ESeg model runs at any valid size)."""
        import random

        if input_size is not None:
            self.check_input_size(input_size)

        rng, seen, out = random.Random(seed), set(exclude or ()), []
        for _ in range(200 * n):
            if len(out) == n:
                break
            params = {k: _draw(d, rng) for k, d in self.distributions.items()}
            spec = self.to_spec(params, name=f"random-{seed}-{len(out)}")
            if spec.spec_id in seen:
                continue
            seen.add(spec.spec_id)
            out.append(spec)
        return out

    def params_of(self, spec: ESegSpec) -> dict[str, Any] | None:
        """The space parameters that reproduce ``spec``, or None when ``spec`` is outside the space."""
        data = spec.to_dict()
        params = {}
        for key, dist in self.distributions.items():
            sec, _, leaf = key.rpartition(".")
            value = data[sec][leaf] if sec else data[leaf]
            if not _contains(dist, value):
                return None
            params[key] = value
        try:
            same = self.to_spec(params).spec_id == spec.spec_id
        except SpecError:
            return None
        return params if same else None

    def presets_inside(self, input_size: tuple[int, int] | None = None) -> dict[str, dict[str, Any]]:
        """Paper presets (of ``family``, else all) that lie inside the space: name -> params. ``input_size``
        (H, W), if given, is checked (every preset runs at any valid size)."""
        if input_size is not None:
            self.check_input_size(input_size)
        out = {}
        for spec in family(self.family or "eseg"):
            params = self.params_of(spec)
            if params is not None:
                out[spec.name] = params
        return out

    # --- checks ---------------------------------------------------------------------------------
    def check_input_size(self, input_size: tuple[int, int]) -> None:
        """Reject an input size no candidate can run at: (H, W) must be positive integers. Every ESeg model
        runs at any such size (levels below one pixel are 1x1; see ``ESegSpec.input_size_note``)."""
        self.base.check_input_size(tuple(input_size))

    def corners(self) -> list[dict[str, Any]]:
        """Every combination of range ends and categorical choices (for the joint validity check)."""
        axes = [[(k, v) for v in _values_or_range(d, None)] for k, d in self.distributions.items()]
        return [dict(combo) for combo in itertools.product(*axes)]

    def summary(self) -> dict[str, str]:
        """Human-readable ``field -> range`` for tables and study attributes."""
        return {k: _describe(d) for k, d in self.distributions.items()}


def load_space(ref: str | Path | dict[str, Any]) -> SearchSpace:
    """Load and validate a space from a YAML file path, or from an already-parsed mapping."""
    if isinstance(ref, dict):
        return space_from_dict(ref, source="<dict>")
    path = Path(ref)
    if not path.is_file():
        raise SpaceError(f"--space: {str(path)!r} does not exist (allowed: a YAML file such as spaces/eseg-lite.yaml)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise SpaceError(f"{path}:{where} malformed YAML ({getattr(exc, 'problem', None) or exc})") from None
    return space_from_dict(data, source=str(path))


def space_from_dict(data: Any, source: str = "<dict>") -> SearchSpace:
    """Validate a parsed space mapping; every problem is one :class:`SpaceError` line naming the entry."""
    if not isinstance(data, dict):
        raise SpaceError(f"{source}: expected a mapping with keys {', '.join(TOP_KEYS)}, got {type(data).__name__}")
    unknown = [k for k in data if k not in TOP_KEYS]
    if unknown:
        raise SpaceError(f"{source}: unknown key {unknown[0]!r} (allowed: {', '.join(TOP_KEYS)})")
    base = _base_spec(data, source)
    fam = data.get("family")
    if fam is not None and fam not in FAMILIES:
        raise SpaceError(f"{source}: family: {fam!r} is unknown (allowed: {', '.join(FAMILIES)})")
    params = data.get("params")
    if not isinstance(params, dict) or not params:
        raise SpaceError(f"{source}: params: expected a non-empty mapping of dotted field -> distribution")
    known = field_paths()
    dists: dict[str, BaseDistribution] = {}
    for key, entry in params.items():
        if key not in known or key == "name":
            raise SpaceError(f"{source}: params.{key}: unknown field (allowed: {', '.join(p for p in known if p != 'name')})")
        if key in (data.get("fixed") or {}):
            raise SpaceError(f"{source}: params.{key}: also listed under fixed (allowed: one of the two)")
        dists[key] = _distribution(f"{source}: params.{key}", entry)
    space = SearchSpace(name=str(data.get("name") or Path(source).stem), base=base, distributions=dists,
                        family=fam, description=str(data.get("description") or ""), source=source, raw=data)
    _check_specs(space)
    return space


def _base_spec(data: dict[str, Any], source: str) -> ESegSpec:
    try:
        base = preset(str(data.get("base", "ESeg-S")))
        fixed = data.get("fixed") or {}
        if not isinstance(fixed, dict):
            raise SpaceError(f"{source}: fixed: expected a mapping of dotted field -> value, got {fixed!r}")
        return base.with_overrides({**fixed, "name": "base"})
    except SpaceError:
        raise
    except SpecError as exc:
        raise SpaceError(f"{source}: base/fixed: {exc}") from None


def _number(where: str, entry: dict[str, Any], key: str, kind: type) -> Any:
    value = entry.get(key)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind is int:
        ok = ok and float(value).is_integer()
    if not ok:
        raise SpaceError(f"{where}: {key}: {value!r} is not {'an integer' if kind is int else 'a finite number'}")
    return kind(value)


def _distribution(where: str, entry: Any) -> BaseDistribution:
    """One entry -> Optuna distribution; empty ranges, bad steps and log on <= 0 are rejected."""
    if not isinstance(entry, dict) or entry.get("type") not in DIST_KEYS:
        raise SpaceError(f"{where}: expected {{type: int|float|categorical, ...}}, got {entry!r}")
    kind = entry["type"]
    extra = sorted(set(entry) - DIST_KEYS[kind])
    if extra:
        raise SpaceError(f"{where}: unknown key {extra[0]!r} for type {kind} (allowed: {', '.join(sorted(DIST_KEYS[kind]))})")
    if kind == "categorical":
        choices = entry.get("choices")
        if not isinstance(choices, list) or not choices:
            raise SpaceError(f"{where}: choices: expected a non-empty list, got {choices!r}")
        if len(set(map(repr, choices))) != len(choices):
            raise SpaceError(f"{where}: choices: {choices!r} has duplicates")
        if any(c is not None and not isinstance(c, (bool, int, float, str)) for c in choices):
            raise SpaceError(f"{where}: choices: {choices!r} must be null, bool, int, float or str")
        return CategoricalDistribution(choices)
    num = int if kind == "int" else float
    low, high = _number(where, entry, "low", num), _number(where, entry, "high", num)
    if low > high:
        raise SpaceError(f"{where}: empty range low={low} > high={high} (allowed: low <= high)")
    log = entry.get("log", False)
    if not isinstance(log, bool):
        raise SpaceError(f"{where}: log: {log!r} is not true/false")
    step = _number(where, entry, "step", num) if entry.get("step") is not None else None
    if step is not None and step <= 0:
        raise SpaceError(f"{where}: step: {step} must be > 0")
    if log and step is not None and not (kind == "int" and step == 1):
        raise SpaceError(f"{where}: step and log: true cannot be combined (allowed: one of them)")
    if log and low <= 0:
        raise SpaceError(f"{where}: log: true needs low > 0 (got low={low})")
    if step is not None and not _on_grid(high - low, step):
        raise SpaceError(f"{where}: high - low = {high - low:g} is not a multiple of step={step:g}")
    if kind == "int":
        return IntDistribution(low, high, log=log, step=step or 1)
    return FloatDistribution(low, high, log=log, step=step)


def _check_specs(space: SearchSpace) -> None:
    """Every parameter value alone, then every corner combination, must give a valid spec."""
    for key, dist in space.distributions.items():
        for value in _values_or_range(dist, None):
            try:
                space.base.with_overrides({key: value})
            except SpecError as exc:
                raise SpaceError(f"{space.source}: params.{key}: value {value!r} gives an invalid spec ({exc})") from None
    corners = space.corners()
    if len(corners) > MAX_CORNERS:
        return
    for combo in corners:
        try:
            space.base.with_overrides(combo)
        except SpecError as exc:
            shown = ", ".join(f"{k}={v}" for k, v in combo.items())
            raise SpaceError(f"{space.source}: the combination {shown} gives an invalid spec ({exc})") from None


def _suggest(trial: Any, key: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(key, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(key, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_float(key, dist.low, dist.high, step=dist.step, log=dist.log)


def _draw(dist: BaseDistribution, rng: Any) -> Any:
    """One uniform draw (log-uniform for log distributions; on the step grid when there is one)."""
    if isinstance(dist, CategoricalDistribution):
        return rng.choice(dist.choices)
    step = getattr(dist, "step", None)
    if step is not None and not dist.log:
        n = int(round((dist.high - dist.low) / step))
        value = dist.low + step * rng.randint(0, n)
        return int(value) if isinstance(dist, IntDistribution) else round(value, 6)
    value = math.exp(rng.uniform(math.log(dist.low), math.log(dist.high))) if dist.log else rng.uniform(dist.low, dist.high)
    return int(round(value)) if isinstance(dist, IntDistribution) else value


def _on_grid(value: float, step: float) -> bool:
    q = value / step
    return abs(q - round(q)) < 1e-6


def _values_or_range(dist: BaseDistribution | None, default: Any) -> list[Any]:
    if dist is None:
        return [default]
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    return [dist.low, dist.high]


def _clean(dist: BaseDistribution, value: Any) -> Any:
    """Round a float sampled on a step grid (0.30000000000000004 -> 0.3) so spec ids are stable."""
    if isinstance(dist, FloatDistribution) and value is not None:
        return round(float(value), 6)
    return value


def _contains(dist: BaseDistribution, value: Any) -> bool:
    if isinstance(dist, CategoricalDistribution):
        return any(value == c and type(value) is type(c) for c in dist.choices)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if not dist.low - 1e-9 <= value <= dist.high + 1e-9:
        return False
    step = getattr(dist, "step", None)
    if isinstance(dist, IntDistribution) and not float(value).is_integer():
        return False
    return step is None or _on_grid(value - dist.low, step)


def _describe(dist: BaseDistribution) -> str:
    if isinstance(dist, CategoricalDistribution):
        return "{" + ", ".join(map(str, dist.choices)) + "}"
    step = f" step {dist.step:g}" if getattr(dist, "step", None) not in (None, 1) else ""
    log = " log" if dist.log else ""
    return f"[{dist.low:g}, {dist.high:g}]{step}{log}"
