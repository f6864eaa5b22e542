"""The paper's ESeg family (Table 3) as presets; published figures live in :mod:`escale.spec.paper`."""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

from escale.errors import SpecError
from escale.spec.core import EFFICIENTNET, EFFICIENTNET_ONLY, DecoderSpec, EncoderSpec, ESegSpec

# name: (encoder width, encoder depth, BiFPN channels, BiFPN repeats)        -- paper Table 3
TABLE3: dict[str, tuple[float, float, int, int]] = {
    "ESeg-Lite-S": (0.4, 0.6, 64, 1),
    "ESeg-Lite-M": (0.6, 1.0, 80, 2),
    "ESeg-Lite-L": (1.0, 1.0, 96, 3),
    "ESeg-S": (1.0, 1.1, 96, 4),
    "ESeg-M": (1.4, 1.8, 192, 5),
    "ESeg-L": (2.0, 3.1, 288, 6),
}

FAMILIES: dict[str, tuple[str, ...]] = {
    "eseg": tuple(TABLE3),
    "eseg-lite": ("ESeg-Lite-S", "ESeg-Lite-M", "ESeg-Lite-L"),
    "eseg-full": ("ESeg-S", "ESeg-M", "ESeg-L"),
}


def preset(name: str) -> ESegSpec:
    """Return the spec of a paper model, e.g. ``preset("ESeg-S")`` (case-insensitive)."""
    by_lower = {k.lower(): k for k in TABLE3}
    key = by_lower.get(name.lower())
    if key is None:
        raise SpecError(f"preset: {name!r} is unknown (allowed: {', '.join(TABLE3)})")
    width, depth, channels, repeats = TABLE3[key]
    if key.startswith("ESeg-Lite"):
        # Section 3.3: all MBConv -> Fused-MBConv, no squeeze-excite, ReLU, base level P3.
        enc = EncoderSpec(width=width, depth=depth, block="fused", se=False, act="relu")
        dec = DecoderSpec(channels=channels, repeats=repeats, min_level=3, max_level=9)
    else:
        enc = EncoderSpec(width=width, depth=depth)
        dec = DecoderSpec(channels=channels, repeats=repeats, min_level=2, max_level=9)
    return ESegSpec(name=key, encoder=enc, decoder=dec, num_classes=19)


def family(name: str = "eseg") -> list[ESegSpec]:
    """Return a family of presets: ``eseg`` (all six), ``eseg-lite`` or ``eseg-full``."""
    if name.lower() not in FAMILIES:
        raise SpecError(f"family: {name!r} is unknown (allowed: {', '.join(FAMILIES)})")
    return [preset(n) for n in FAMILIES[name.lower()]]


def edited_name(name: str, spec: ESegSpec) -> str:
    """The name of ``spec`` derived from a preset named ``name``: the preset's own name when the spec equals a
    preset, else ``<preset>+<field>=<value>,...`` listing the fields that differ (``ESeg-S+repeats=3``).

    Names that do not start with a preset (``mine``, ``trial-3``) are kept as they are.
    """
    base = {k.lower(): k for k in TABLE3}.get(name.split("+", 1)[0].lower())
    if base is None:
        return name
    same = _preset_ids().get(spec.spec_id)
    if same is not None:
        return same
    edits = _differences(preset(base).to_dict(), spec.to_dict())
    return f"{base}+{','.join(edits)}" if edits else base


@lru_cache(maxsize=1)
def _preset_ids() -> dict[str, str]:
    return {preset(n).spec_id: n for n in TABLE3}


def _differences(before: dict, after: dict) -> list[str]:
    """``field=value`` for each field of ``after`` that differs from ``before`` (leaf names, spec order)."""
    out = []
    enc = after["encoder"]
    implied = set(EFFICIENTNET_ONLY) if enc["backbone"] != EFFICIENTNET else set()
    if enc["block"] != before["encoder"]["block"]:
        implied.add("fused_stages")  # follows from the block type
    for section in ("encoder", "decoder", None):
        old, new = (before[section], after[section]) if section else (before, after)
        for key, value in new.items():
            if key in ("name", "encoder", "decoder") or old.get(key) == value:
                continue
            if section == "encoder" and key in implied:
                continue
            out.append(f"{key}={_short(value)}")
    return out


def _short(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).replace("\\", "/").rsplit("/", 1)[-1]  # a checkpoint path: its file name


def load_spec(ref: str) -> ESegSpec:
    """Resolve a preset name or a YAML/JSON file path into a spec."""
    if ref.lower() in {k.lower() for k in TABLE3}:
        return preset(ref)
    if ref.endswith((".yaml", ".yml", ".json")) or "/" in ref:
        spec = ESegSpec.from_file(ref)  # a file that calls an edited preset by the preset's name is renamed
        return replace(spec, name=edited_name(spec.name, spec))
    raise SpecError(f"spec: {ref!r} is neither a preset ({', '.join(TABLE3)}) nor a .yaml/.json file")
