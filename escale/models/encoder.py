"""Encoder: timm's EfficientNet builder driven by the spec, or any timm ``features_only`` backbone.

Returns a dict ``{level: feature}`` for the encoder levels P{min(min_level,5)}..P5; ESeg adds the
pooled levels above P5 itself.
"""

from __future__ import annotations

from functools import partial

import timm
import torch
from timm.models._efficientnet_builder import decode_arch_def, round_channels
from timm.models.efficientnet import EfficientNetFeatures
from torch import nn

from escale.errors import CheckpointError, SpecError
from escale.spec import EFFICIENTNET, EncoderSpec

# EfficientNet-B0 stages in timm's arch-def notation (Tan & Le 2019, Table 1; timm _gen_efficientnet):
# (block, repeats, kernel, stride, expansion, out channels). Stage outputs land at P1,P2,P3,P4,P4,P5,P5.
B0_STAGES: tuple[tuple[str, int, int, int, int, int], ...] = (
    ("ds", 1, 3, 1, 1, 16),
    ("ir", 2, 3, 2, 6, 24),
    ("ir", 2, 5, 2, 6, 40),
    ("ir", 3, 3, 2, 6, 80),
    ("ir", 3, 5, 1, 6, 112),
    ("ir", 4, 5, 2, 6, 192),
    ("ir", 1, 3, 1, 6, 320),
)
STEM_CHANNELS = 32
ACT_LAYERS = {"silu": nn.SiLU, "relu": nn.ReLU}


def efficientnet_arch_def(enc: EncoderSpec) -> list[list[str]]:
    """timm arch-def strings for the spec's block type and SE setting (before width/depth scaling).

    Fused stages follow EfficientNetV2: MBConv (``ir``) becomes Fused-MBConv (``er``, timm's
    EdgeResidual) with the same kernel/stride/expansion; the expansion-1 depthwise-separable first
    stage (``ds``) becomes a plain 3x3 conv block (``cn``), i.e. Fused-MBConv with expansion 1.
    """
    fused = enc.fused_stages or 0
    arch = []
    for i, (kind, r, k, s, e, c) in enumerate(B0_STAGES):
        if i < fused:
            kind = {"ds": "cn", "ir": "er"}[kind]
        se = "_se0.25" if enc.se and kind in ("ds", "ir", "er") else ""
        skip = "_skip" if kind == "cn" else ""
        arch.append([f"{kind}_r{r}_k{k}_s{s}_e{e}_c{c}{se}{skip}"])
    return arch


def _level_of_reduction(reduction: int) -> int | None:
    level = reduction.bit_length() - 1
    return level if 2 ** level == reduction else None


class Encoder(nn.Module):
    """Wraps a timm feature extractor and returns ``{level: (B, C_l, H/2^l, W/2^l)}``."""

    def __init__(self, enc: EncoderSpec, levels: tuple[int, ...]) -> None:
        super().__init__()
        act = ACT_LAYERS[enc.act]
        if enc.backbone == EFFICIENTNET:
            self.body = EfficientNetFeatures(
                block_args=decode_arch_def(efficientnet_arch_def(enc), enc.depth, depth_trunc="ceil"),
                stem_size=STEM_CHANNELS,
                round_chs_fn=partial(round_channels, multiplier=enc.width, divisor=8),
                act_layer=act,
            )
        else:
            if enc.backbone not in timm.list_models():
                raise SpecError(f"encoder.backbone: {enc.backbone!r} is not a timm model "
                                f"(allowed: '{EFFICIENTNET}' or a name from timm.list_models())")
            try:
                self.body = timm.create_model(enc.backbone, pretrained=False, features_only=True)
            except (RuntimeError, TypeError, ValueError) as exc:
                raise SpecError(f"encoder.backbone: {enc.backbone!r} has no features_only mode ({exc})") from None
        info = self.body.feature_info
        by_level = {_level_of_reduction(r): i for i, r in enumerate(info.reduction())}
        missing = [lv for lv in levels if lv not in by_level]
        if missing:
            raise SpecError(f"encoder.backbone: {enc.backbone!r} has no features at level(s) "
                            f"{missing} (it has P{sorted(k for k in by_level if k)})")
        self.levels = levels
        self._index = [by_level[lv] for lv in levels]
        self.channels = {lv: info.channels()[by_level[lv]] for lv in levels}
        if enc.checkpoint:
            load_encoder_checkpoint(self.body, enc.checkpoint)

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        feats = self.body(x)  # list over timm's feature levels
        return {lv: feats[i] for lv, i in zip(self.levels, self._index, strict=True)}


# Keys of a classification checkpoint that a features_only encoder does not have.
_HEAD_PREFIXES = ("conv_head.", "bn2.", "classifier.", "fc.", "head.", "global_pool.")


def load_encoder_checkpoint(body: nn.Module, path: str) -> None:
    """Load a timm/ImageNet classification checkpoint into a features-only encoder.

    Every encoder weight must be present; only the classifier head's keys may be left over.
    """
    from timm.models import load_state_dict

    try:
        state = load_state_dict(path)
    except FileNotFoundError:
        raise CheckpointError(f"encoder.checkpoint: {path!r} does not exist") from None
    except Exception as exc:  # torch.load raises many types for a corrupt file
        raise CheckpointError(f"encoder.checkpoint: {path!r} cannot be read ({type(exc).__name__}: {exc})") from None
    try:
        result = body.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatch: a checkpoint of another width
        first = str(exc).strip().splitlines()[-1].strip()
        raise CheckpointError(f"encoder.checkpoint: {path!r} does not match the encoder ({first}); "
                              "check encoder.width/depth/block/se") from None
    unexpected = [k for k in result.unexpected_keys if not k.startswith(_HEAD_PREFIXES)]
    if result.missing_keys or unexpected:
        raise CheckpointError(
            f"encoder.checkpoint: {path!r} does not match the encoder "
            f"({len(result.missing_keys)} missing keys, e.g. {result.missing_keys[:2]}; "
            f"{len(unexpected)} unexpected, e.g. {unexpected[:2]}); check encoder.width/depth/block/se")
