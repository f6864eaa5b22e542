"""The paper's ESeg family (Table 3) as presets, with its published figures for comparison."""

from __future__ import annotations

from escale.errors import SpecError
from escale.spec.core import DecoderSpec, EncoderSpec, ESegSpec

# name: (encoder width, encoder depth, BiFPN channels, BiFPN repeats)        -- paper Table 3
TABLE3: dict[str, tuple[float, float, int, int]] = {
    "ESeg-Lite-S": (0.4, 0.6, 64, 1),
    "ESeg-Lite-M": (0.6, 1.0, 80, 2),
    "ESeg-Lite-L": (1.0, 1.0, 96, 3),
    "ESeg-S": (1.0, 1.1, 96, 4),
    "ESeg-M": (1.4, 1.8, 192, 5),
    "ESeg-L": (2.0, 3.1, 288, 6),
}

# Published size figures: params in millions, FLOPs in billions of multiply-adds at 1024x2048.
# ESeg-S/M/L: Table 4 (Table 3's text gives 342B for ESeg-L); ESeg-Lite-S: section 3.2 ("17B FLOPs").
PAPER_FIGURES: dict[str, dict[str, float | str | None]] = {
    "ESeg-Lite-S": {"params_m": None, "gmacs": 17.0, "source": "Sec. 3.2"},
    "ESeg-Lite-M": {"params_m": None, "gmacs": None, "source": "-"},
    "ESeg-Lite-L": {"params_m": None, "gmacs": None, "source": "-"},
    "ESeg-S": {"params_m": 6.9, "gmacs": 34.5, "source": "Table 4"},
    "ESeg-M": {"params_m": 20.0, "gmacs": 112.0, "source": "Table 4"},
    "ESeg-L": {"params_m": 70.5, "gmacs": 343.0, "source": "Table 4"},
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


def paper_figures(name: str) -> dict[str, float | str | None] | None:
    """Published params (M) and FLOPs (B multiply-adds at 1024x2048) for a preset name, if any."""
    return PAPER_FIGURES.get(name)


def load_spec(ref: str) -> ESegSpec:
    """Resolve a preset name or a YAML/JSON file path into a spec."""
    if ref.lower() in {k.lower() for k in TABLE3}:
        return preset(ref)
    if ref.endswith((".yaml", ".yml", ".json")) or "/" in ref:
        return ESegSpec.from_file(ref)
    raise SpecError(f"spec: {ref!r} is neither a preset ({', '.join(TABLE3)}) nor a .yaml/.json file")
