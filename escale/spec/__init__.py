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
from escale.spec.paper import (
    PAPER_INPUT_SIZE,
    PaperConfig,
    paper_config,
    paper_configs,
    paper_model_name,
    paper_reference,
)
from escale.spec.presets import FAMILIES, TABLE3, edited_name, family, load_spec, preset

__all__ = [
    "EFFICIENTNET", "DecoderSpec", "EncoderSpec", "ESegSpec", "FAMILIES", "PAPER_INPUT_SIZE", "PaperConfig",
    "TABLE3", "edited_name", "family", "field_paths", "load_spec", "paper_config", "paper_configs",
    "paper_model_name", "paper_reference", "parse_input_size", "parse_override", "preset",
]
