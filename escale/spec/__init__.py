"""Pure-data model specs: no torch import here."""

from escale.spec.core import (
    EFFICIENTNET,
    DecoderSpec,
    EncoderSpec,
    ESegSpec,
    field_paths,
    parse_input_size,
    parse_override,
)
from escale.spec.presets import FAMILIES, PAPER_FIGURES, TABLE3, family, load_spec, paper_figures, preset

__all__ = [
    "EFFICIENTNET", "DecoderSpec", "EncoderSpec", "ESegSpec", "FAMILIES", "PAPER_FIGURES", "TABLE3",
    "family", "field_paths", "load_spec", "paper_figures", "parse_input_size", "parse_override", "preset",
]
