"""The ESeg spec: pure data (no torch import), validated on construction, serialisable, hashable.

A spec fixes the architecture of one ESeg model (paper sections 3.1-3.3): an encoder (EfficientNet
compound-scaled from the B0 table, or any timm ``features_only`` backbone), a BiFPN decoder over
pyramid levels ``min_level..max_level`` and a prediction head at ``min_level``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from escale.errors import SpecError, SpecNote

EFFICIENTNET = "efficientnet"
BLOCKS = ("mbconv", "fused")
ACTS = ("silu", "relu")
NUM_STAGES = 7  # EfficientNet-B0 has seven MBConv stages
# Encoder fields that only an EfficientNet backbone has, with the value every other backbone takes.
EFFICIENTNET_ONLY = {"width": 1.0, "depth": 1.0, "block": "mbconv", "fused_stages": None, "se": True}
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")


def _check_type(path: str, value: Any, kind: type, optional: bool = False) -> Any:
    """Return ``value`` checked against ``kind`` (ints are accepted for floats, bools never for ints)."""
    if value is None and optional:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        want = kind.__name__ + (" or null" if optional else "")
        raise SpecError(f"{path}: {value!r} is not a {want}")
    return value


def _check_range(path: str, value: float, lo: float, hi: float, lo_open: bool = False) -> None:
    if (value <= lo if lo_open else value < lo) or value > hi:
        lo_s = f"> {lo}" if lo_open else f">= {lo}"
        raise SpecError(f"{path}: {value!r} is out of range (allowed: {lo_s} and <= {hi})")


def _check_choice(path: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SpecError(f"{path}: {value!r} is not allowed (allowed: {', '.join(choices)})")


@dataclass(frozen=True)
class EncoderSpec:
    """Encoder: EfficientNet compound scaling of the B0 stage table, or a timm backbone by name.

    ``width``/``depth`` scale channels (rounded to multiples of 8) and repeats (rounded up) exactly as
    EfficientNet/timm do. ``block='fused'`` replaces MBConv with Fused-MBConv in the first
    ``fused_stages`` stages (all seven when null, as the Lite models do, paper section 3.3).
    ``act`` is the activation of the encoder, the BiFPN and the head.
    """

    backbone: str = EFFICIENTNET
    width: float = 1.0
    depth: float = 1.0
    block: str = "mbconv"
    fused_stages: int | None = None
    se: bool = True
    act: str = "silu"
    checkpoint: str | None = None

    def __post_init__(self) -> None:
        p = "encoder"
        _check_type(f"{p}.backbone", self.backbone, str)
        if not _NAME_RE.match(self.backbone):
            raise SpecError(f"{p}.backbone: {self.backbone!r} is not a model name "
                            f"(allowed: '{EFFICIENTNET}' or a timm model name such as 'resnet50')")
        object.__setattr__(self, "width", _check_type(f"{p}.width", self.width, float))
        object.__setattr__(self, "depth", _check_type(f"{p}.depth", self.depth, float))
        _check_range(f"{p}.width", self.width, 0.0, 8.0, lo_open=True)
        _check_range(f"{p}.depth", self.depth, 0.0, 8.0, lo_open=True)
        _check_type(f"{p}.block", self.block, str)
        _check_choice(f"{p}.block", self.block, BLOCKS)
        _check_type(f"{p}.fused_stages", self.fused_stages, int, optional=True)
        _check_type(f"{p}.se", self.se, bool)
        _check_type(f"{p}.act", self.act, str)
        _check_choice(f"{p}.act", self.act, ACTS)
        _check_type(f"{p}.checkpoint", self.checkpoint, str, optional=True)
        if self.block == "fused":
            if self.fused_stages is None:
                object.__setattr__(self, "fused_stages", NUM_STAGES)  # resolved: all stages
            _check_range(f"{p}.fused_stages", self.fused_stages, 1, NUM_STAGES)
        elif self.fused_stages not in (None, 0):
            raise SpecError(f"{p}.fused_stages: {self.fused_stages!r} needs encoder.block='fused' "
                            f"(allowed with block='mbconv': null)")
        else:
            object.__setattr__(self, "fused_stages", None)
        if self.backbone != EFFICIENTNET:
            for name, default in EFFICIENTNET_ONLY.items():
                if getattr(self, name) != default:
                    raise SpecError(f"{p}.{name}: {getattr(self, name)!r} applies only to "
                                    f"backbone='{EFFICIENTNET}' (allowed with {self.backbone!r}: {default!r})")

    @property
    def block_label(self) -> str:
        """Human-readable block type, e.g. 'MBConv', 'Fused-MBConv' or 'Fused-MBConv x3 + MBConv'."""
        if self.backbone != EFFICIENTNET:
            return self.backbone
        if self.block == "mbconv":
            return "MBConv"
        if self.fused_stages == NUM_STAGES:
            return "Fused-MBConv"
        return f"Fused-MBConv x{self.fused_stages} + MBConv"


@dataclass(frozen=True)
class DecoderSpec:
    """BiFPN decoder: ``channels`` wide, ``repeats`` layers deep, over levels ``min_level..max_level``.

    Levels above P5 are made from P5 by 3x3 stride-2 average pooling with P5's channel count
    (paper section 3.1).
    """

    channels: int = 96
    repeats: int = 4
    min_level: int = 2
    max_level: int = 9

    def __post_init__(self) -> None:
        p = "decoder"
        for name, lo, hi in (("channels", 1, 4096), ("repeats", 1, 32), ("min_level", 2, 8), ("max_level", 3, 9)):
            _check_type(f"{p}.{name}", getattr(self, name), int)
            _check_range(f"{p}.{name}", getattr(self, name), lo, hi)
        if self.min_level >= self.max_level:
            raise SpecError(f"decoder.min_level: {self.min_level} must be below decoder.max_level="
                            f"{self.max_level} (allowed: 2 <= min_level < max_level <= 9)")

    @property
    def levels(self) -> tuple[int, ...]:
        return tuple(range(self.min_level, self.max_level + 1))


@dataclass(frozen=True)
class ESegSpec:
    """One ESeg model. ``name`` is a label only: it does not enter ``spec_id``."""

    name: str = "custom"
    encoder: EncoderSpec = field(default_factory=EncoderSpec)
    decoder: DecoderSpec = field(default_factory=DecoderSpec)
    num_classes: int = 19

    def __post_init__(self) -> None:
        _check_type("name", self.name, str)
        if not isinstance(self.encoder, EncoderSpec):
            raise SpecError(f"encoder: {self.encoder!r} is not an EncoderSpec")
        if not isinstance(self.decoder, DecoderSpec):
            raise SpecError(f"decoder: {self.decoder!r} is not a DecoderSpec")
        _check_type("num_classes", self.num_classes, int)
        _check_range("num_classes", self.num_classes, 1, 100_000)

    # --- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ESegSpec:
        """Build from nested plain data; unknown keys are rejected with their dotted path."""
        if not isinstance(data, dict):
            raise SpecError(f"spec: expected a mapping, got {type(data).__name__}")
        _reject_unknown("", data, cls)
        kwargs = dict(data)
        for key, sub in (("encoder", EncoderSpec), ("decoder", DecoderSpec)):
            if key in kwargs:
                if not isinstance(kwargs[key], dict):
                    raise SpecError(f"{key}: expected a mapping, got {kwargs[key]!r}")
                _reject_unknown(key + ".", kwargs[key], sub)
                kwargs[key] = sub(**kwargs[key])
        return cls(**kwargs)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str, source: str = "<string>") -> ESegSpec:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            line = getattr(getattr(exc, "problem_mark", None), "line", None)
            where = f" line {line + 1}" if line is not None else ""
            raise SpecError(f"{source}:{where} malformed YAML ({getattr(exc, 'problem', exc)})") from None
        return cls.from_dict(data if data is not None else {})

    @classmethod
    def from_file(cls, path: str | Path) -> ESegSpec:
        path = Path(path)
        if not path.is_file():
            raise SpecError(f"spec file: {str(path)!r} does not exist (allowed: a preset name or a YAML/JSON file)")
        return cls.from_yaml(path.read_text(), source=str(path))  # JSON is a subset of YAML

    # --- identity and derivation ---------------------------------------------------------------
    @property
    def spec_id(self) -> str:
        """First 12 hex digits of SHA-256 over the canonical JSON of the resolved spec (name excluded)."""
        data = self.to_dict()
        data.pop("name")
        canon = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:12]

    def with_overrides(self, overrides: dict[str, Any] | list[str], notes: list[str] | None = None) -> ESegSpec:
        """A copy with dotted-path overrides, e.g. ``{"encoder.width": 1.2}`` or ``["decoder.repeats=3"]``.

        An edited preset is renamed to show the edit (``ESeg-S+repeats=3``) unless ``name`` is set. Switching
        ``encoder.backbone`` away from EfficientNet resets the EfficientNet-only fields the user did not set
        (width, depth, block, fused_stages, se); that is said in one line, appended to ``notes`` or, when
        ``notes`` is None, issued as a :class:`~escale.errors.SpecNote` warning.
        """
        if isinstance(overrides, list):
            overrides = dict(parse_override(o) for o in overrides)
        data = self.to_dict()
        for path, value in overrides.items():
            keys = path.split(".")
            node = data
            for k in keys[:-1]:
                if not isinstance(node.get(k), dict):
                    raise SpecError(f"{path}: unknown field (allowed: {', '.join(field_paths())})")
                node = node[k]
            if keys[-1] not in node or isinstance(node[keys[-1]], dict):
                raise SpecError(f"{path}: unknown field (allowed: {', '.join(field_paths())})")
            node[keys[-1]] = value
        note = _reset_efficientnet_fields(data["encoder"], overrides)
        spec = ESegSpec.from_dict(data)
        if "name" not in overrides:
            from escale.spec.presets import edited_name

            spec = dataclasses.replace(spec, name=edited_name(self.name, spec))
        if note and notes is not None:
            notes.append(note)
        elif note:
            warnings.warn(note, SpecNote, stacklevel=2)
        return spec

    def check_input_size(self, input_size: tuple[int, int]) -> tuple[int, int]:
        """Validate an (H, W) input size: two positive integers.

        An ESeg model runs at every such size: levels that would be smaller than one pixel are 1x1 (the
        stride-2 convolutions and poolings round up), see :meth:`level_sizes` and :meth:`input_size_note`.
        """
        if (not isinstance(input_size, (tuple, list)) or len(input_size) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in input_size)):
            raise SpecError(f"input_size: {input_size!r} is not an (H, W) pair of integers")
        h, w = input_size
        if h < 1 or w < 1:
            raise SpecError(f"input_size: {h}x{w} is not allowed (allowed: H and W >= 1)")
        return int(h), int(w)

    def level_sizes(self, input_size: tuple[int, int]) -> dict[int, tuple[int, int]]:
        """(H, W) of every decoder level at ``input_size``: ceil(H / 2^l), ceil(W / 2^l), at least 1x1."""
        h, w = self.check_input_size(tuple(input_size))
        return {lv: (math.ceil(h / 2**lv), math.ceil(w / 2**lv)) for lv in self.decoder.levels}

    def input_size_note(self, input_size: tuple[int, int]) -> str | None:
        """One line naming the levels that collapse at ``input_size`` (e.g. "P8-P9 are 1x1 at 128x256"), or None.

        A level collapses when 2^l exceeds H or W: it would be smaller than one pixel and is clamped to 1.
        """
        h, w = self.check_input_size(tuple(input_size))
        runs: list[list] = []  # [first level, last level, (h, w)]
        for lv, size in self.level_sizes((h, w)).items():
            if 2**lv <= min(h, w):
                continue
            if runs and runs[-1][2] == size and runs[-1][1] == lv - 1:
                runs[-1][1] = lv
            else:
                runs.append([lv, lv, size])
        if not runs:
            return None
        parts = [(f"P{a} is" if a == b else f"P{a}-P{b} are") + f" {s[0]}x{s[1]}" for a, b, s in runs]
        return f"{', '.join(parts)} at {h}x{w} (levels below one pixel are clamped to 1)"


def _reset_efficientnet_fields(encoder: dict[str, Any], overrides: dict[str, Any]) -> str | None:
    """For a non-EfficientNet backbone, reset the EfficientNet-only fields the overrides did not set; the note.

    ``encoder.block=mbconv`` alone also clears ``fused_stages`` (it follows from the block; no note).
    """
    if overrides.get("encoder.block") == "mbconv" and "encoder.fused_stages" not in overrides:
        encoder["fused_stages"] = None
    if encoder.get("backbone") == EFFICIENTNET or "encoder.backbone" not in overrides:
        return None
    reset = []
    for name, default in EFFICIENTNET_ONLY.items():
        if f"encoder.{name}" not in overrides and encoder.get(name) != default:
            reset.append(f"{name} {encoder[name]!r} -> {default!r}")
            encoder[name] = default
    if not reset:
        return None
    return (f"encoder.backbone={encoder['backbone']!r}: reset the EfficientNet-only fields the preset set "
            f"({', '.join(reset)})")


def _reject_unknown(prefix: str, data: dict[str, Any], cls: type) -> None:
    known = {f.name for f in fields(cls)}
    for key in data:
        if key not in known:
            raise SpecError(f"{prefix}{key}: unknown key (allowed: {', '.join(sorted(known))})")


def field_paths() -> list[str]:
    """Every overridable dotted field path, e.g. ``encoder.width``."""
    out = []
    for f in fields(ESegSpec):
        if f.name in ("encoder", "decoder"):
            sub = EncoderSpec if f.name == "encoder" else DecoderSpec
            out += [f"{f.name}.{g.name}" for g in fields(sub)]
        else:
            out.append(f.name)
    return out


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``key=value``; the value is read as a YAML scalar (``1.2``, ``true``, ``fused``, ``null``)."""
    if "=" not in text:
        raise SpecError(f"--set: {text!r} is not key=value (allowed keys: {', '.join(field_paths())})")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def parse_input_size(text: str) -> tuple[int, int]:
    """Parse ``HxW`` (e.g. ``1024x2048``) into (H, W)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m or int(m.group(1)) <= 0 or int(m.group(2)) <= 0:
        raise SpecError(f"--input-size: {text!r} is not HxW with positive integers (e.g. 1024x2048)")
    return int(m.group(1)), int(m.group(2))
