"""Model builder: shapes at any input size, timm EfficientNet B0-B7 fidelity, checkpoints, inference folding."""

from __future__ import annotations

import pytest
import timm
import torch
from timm.models._efficientnet_blocks import (
    ConvBnAct,
    DepthwiseSeparableConv,
    EdgeResidual,
    InvertedResidual,
    SqueezeExcite,
)

import escale
from escale.models import build_model

# (width, depth) of EfficientNet-B0..B7 (Tan & Le 2019): the encoder must equal timm's features_only model.
B_SCALING = {"efficientnet_b0": (1.0, 1.0), "efficientnet_b1": (1.0, 1.1), "efficientnet_b2": (1.1, 1.2),
             "efficientnet_b3": (1.2, 1.4), "efficientnet_b4": (1.4, 1.8), "efficientnet_b5": (1.6, 2.2),
             "efficientnet_b6": (1.8, 2.6), "efficientnet_b7": (2.0, 3.1)}


@pytest.mark.parametrize("hw", [(64, 64), (64, 128), (67, 131), (97, 64)])
def test_logits_come_back_at_exactly_the_input_size(tiny_spec, hw):
    model = build_model(tiny_spec).eval()
    with torch.no_grad():
        y = model(torch.randn(2, 3, *hw))
    assert y.shape == (2, 19, *hw)
    assert torch.isfinite(y).all()


def test_pyramid_levels_and_channels(tiny_spec):
    model = build_model(tiny_spec).eval()
    feats = {}
    model.decoder.register_forward_hook(lambda m, a, out: feats.update(out))
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 128))
    assert sorted(feats) == [3, 4, 5, 6]
    for lv, f in feats.items():  # P_l has ceil(H / 2^l) x ceil(W / 2^l) pixels and the BiFPN width
        assert f.shape == (1, 16, -(-64 // 2 ** lv), -(-128 // 2 ** lv))


@pytest.mark.parametrize("variant", sorted(B_SCALING))
def test_encoder_equals_timm_efficientnet_b0_to_b7(variant):
    width, depth = B_SCALING[variant]
    spec = escale.ESegSpec(encoder=escale.EncoderSpec(width=width, depth=depth))
    ours = build_model(spec, device="meta").encoder.body.state_dict()
    with torch.device("meta"):
        ref = timm.create_model(variant, pretrained=False, features_only=True).state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in ref.items()}


def test_imagenet_style_checkpoint_loads_into_the_encoder(tmp_path):
    torch.manual_seed(0)
    classifier = timm.create_model("efficientnet_b0", pretrained=False, num_classes=10)
    path = tmp_path / "b0.pth"
    torch.save(classifier.state_dict(), path)
    spec = escale.ESegSpec(encoder=escale.EncoderSpec(checkpoint=str(path)),
                           decoder=escale.DecoderSpec(channels=16, repeats=1, max_level=6))
    model = build_model(spec)
    ref = classifier.state_dict()
    for key, value in model.encoder.body.state_dict().items():
        assert torch.equal(value, ref[key]), key


def test_checkpoint_errors_are_clear(tmp_path):
    with pytest.raises(escale.CheckpointError, match="does not exist"):
        build_model(escale.ESegSpec(encoder=escale.EncoderSpec(checkpoint=str(tmp_path / "none.pth"))))
    path = tmp_path / "b1.pth"
    torch.save(timm.create_model("efficientnet_b0", pretrained=False, num_classes=10).state_dict(), path)
    wrong = escale.ESegSpec(encoder=escale.EncoderSpec(width=0.5, checkpoint=str(path)))
    with pytest.raises(escale.CheckpointError, match="does not match the encoder"):
        build_model(wrong)


def _block_types(model):
    return [type(b) for stage in model.encoder.body.blocks for b in stage]


def test_block_types_se_and_activation():
    lite = build_model(escale.preset("ESeg-Lite-S"), device="meta")
    assert set(_block_types(lite)) == {ConvBnAct, EdgeResidual}
    assert not any(isinstance(m, (SqueezeExcite, torch.nn.SiLU)) for m in lite.modules())
    full = build_model(escale.preset("ESeg-S"), device="meta")
    assert set(_block_types(full)) == {DepthwiseSeparableConv, InvertedResidual}
    assert any(isinstance(m, SqueezeExcite) for m in full.modules())
    part = escale.preset("ESeg-S").with_overrides({"encoder.block": "fused", "encoder.fused_stages": 3})
    stages = build_model(part, device="meta").encoder.body.blocks
    assert [type(stage[0]) for stage in stages] == [ConvBnAct, EdgeResidual, EdgeResidual] + [InvertedResidual] * 4


def test_level_weights_start_at_one_and_fold_exactly(tiny_spec):
    torch.manual_seed(0)
    model = build_model(tiny_spec).eval()
    assert torch.equal(model.fusion.weight.detach(), torch.ones(4))
    with torch.no_grad():
        model.fusion.weight.copy_(torch.tensor([0.3, 1.7, -0.5, 2.0]))
        x = torch.randn(1, 3, 64, 96)
        before = model(x)
        model.fold_for_inference()
        after = model(x)
    assert torch.allclose(model.fusion.folded, torch.softmax(torch.tensor([0.3, 1.7, -0.5, 2.0]), 0))
    assert torch.allclose(before, after, atol=1e-6)


def test_timm_backbone_by_name_and_unknown_backbone():
    spec = escale.ESegSpec(encoder=escale.EncoderSpec(backbone="resnet18"),
                           decoder=escale.DecoderSpec(channels=16, repeats=1, max_level=6))
    model = build_model(spec).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 19, 64, 64)
    with pytest.raises(escale.SpecError, match="encoder.backbone: 'resnet999' is not a timm model"):
        build_model(spec.with_overrides({"encoder.backbone": "resnet999"}))


def test_gradients_reach_every_parameter(tiny_spec):
    model = build_model(tiny_spec).train()
    model(torch.randn(2, 3, 64, 64)).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []
