"""The paper's published configurations and their size figures, matched by configuration (not by name).

A model is compared with the paper only when it *is* one of the paper's models: its resolved spec
(``spec_id``, which covers every field but the name, ``num_classes`` included) equals a configuration
below, and it is profiled at the paper's input size, 1024x2048. An edited preset (``ESeg-S`` with
``decoder.repeats=3``) has no paper figures; ``ESeg-S`` with ``decoder.max_level=5`` is Table 1's P2-P5 row.

Figures: ``params_m`` in millions (BN included), ``gmacs`` in billions of multiply-adds at 1024x2048
(the paper calls them FLOPs); ``None`` where the paper gives none.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from escale.spec.core import ESegSpec
from escale.spec.presets import TABLE3, preset

PAPER_INPUT_SIZE = (1024, 2048)  # Cityscapes, where every published params/FLOPs figure is given


@dataclass(frozen=True)
class PaperConfig:
    """One published configuration: its spec, figures and the table (or section) that gives them."""

    label: str
    spec: ESegSpec
    params_m: float | None
    gmacs: float | None
    source: str
    also: str = ""  # other tables showing the same configuration

    @property
    def has_figures(self) -> bool:
        return self.params_m is not None or self.gmacs is not None


@lru_cache(maxsize=1)
def paper_configs() -> tuple[PaperConfig, ...]:
    """Every configuration the paper publishes params or FLOPs for, and the Table 3 models it gives none for."""
    s = preset("ESeg-S")
    return (
        # Table 4 (Table 3's text gives 342B for ESeg-L)
        PaperConfig("ESeg-S", s, 6.9, 34.5, "Table 4", also="Table 1 P2-P9, Table 8 EfficientNet-B1"),
        PaperConfig("ESeg-M", preset("ESeg-M"), 20.0, 112.0, "Table 4"),
        PaperConfig("ESeg-L", preset("ESeg-L"), 70.5, 343.0, "Table 4"),
        # Section 3.2: "ESeg-Lite-S ... 17B FLOPs"
        PaperConfig("ESeg-Lite-S", preset("ESeg-Lite-S"), None, 17.0, "Sec. 3.2"),
        PaperConfig("ESeg-Lite-M", preset("ESeg-Lite-M"), None, None, "Table 3"),
        PaperConfig("ESeg-Lite-L", preset("ESeg-Lite-L"), None, None, "Table 3"),
        # Table 1: ESeg-S over fewer feature levels (P2-P9 is ESeg-S itself)
        PaperConfig("ESeg-S P2-P5", s.with_overrides({"decoder.max_level": 5}), 6.4, 34.3, "Table 1 P2-P5",
                    also="Table 2 BiFPN"),
        PaperConfig("ESeg-S P2-P7", s.with_overrides({"decoder.max_level": 7}), 6.6, 34.5, "Table 1 P2-P7"),
        # Table 8: ResNet-50 encoder with ESeg-S's BiFPN (w/o atrous)
        PaperConfig("ResNet-50 + BiFPN", s.with_overrides({"encoder.backbone": "resnet50"}, notes=[]), None, 188.0,
                    "Table 8 ResNet-50"),
    )


def paper_config(spec: ESegSpec) -> PaperConfig | None:
    """The paper's configuration equal to ``spec`` (name ignored), at any input size; None if there is none."""
    by_id = {c.spec.spec_id: c for c in paper_configs()}
    return by_id.get(spec.spec_id)


def paper_reference(spec: ESegSpec, input_size: tuple[int, int]) -> PaperConfig | None:
    """The configuration whose published figures ``spec`` at ``input_size`` (H, W) is comparable with, or None.

    Comparable means: the same resolved spec (classes included) and the paper's 1024x2048 input.
    """
    if tuple(input_size) != PAPER_INPUT_SIZE:
        return None
    config = paper_config(spec)
    return config if config is not None and config.has_figures else None


def paper_model_name(spec: ESegSpec) -> str | None:
    """The Table 3 preset ``spec`` equals (name ignored), e.g. for looking up the paper's mIoU; else None."""
    config = paper_config(spec)
    return config.label if config is not None and config.label in TABLE3 else None
