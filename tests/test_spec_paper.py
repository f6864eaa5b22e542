"""Paper comparisons by configuration, edited-preset names, backbone switches, the input-size rule."""

from __future__ import annotations

import warnings

import pytest

import escale
from escale.spec import (
    ESegSpec,
    edited_name,
    load_spec,
    paper_config,
    paper_configs,
    paper_model_name,
    paper_reference,
    preset,
)

PAPER = (1024, 2048)


@pytest.mark.parametrize("overrides,source,params_m,gmacs", [
    ({}, "Table 4", 6.9, 34.5),
    ({"decoder.max_level": 5}, "Table 1 P2-P5", 6.4, 34.3),
    ({"decoder.max_level": 7}, "Table 1 P2-P7", 6.6, 34.5),
    ({"encoder.backbone": "resnet50"}, "Table 8 ResNet-50", None, 188.0),
])
def test_the_paper_configurations_are_found_by_configuration(overrides, source, params_m, gmacs):
    spec = preset("ESeg-S").with_overrides(overrides, notes=[])
    ref = paper_reference(spec, PAPER)
    assert (ref.source, ref.params_m, ref.gmacs) == (source, params_m, gmacs)
    renamed = spec.with_overrides({"name": "anything"})
    assert paper_reference(renamed, PAPER) == ref  # the name plays no part


@pytest.mark.parametrize("overrides", [
    {"decoder.repeats": 3}, {"encoder.width": 1.2}, {"num_classes": 150}, {"decoder.max_level": 6},
    {"encoder.backbone": "resnet50", "encoder.act": "relu"},
])
def test_edited_configurations_have_no_paper_figures(overrides):
    spec = preset("ESeg-S").with_overrides(overrides, notes=[])
    assert paper_reference(spec, PAPER) is None and paper_config(spec) is None


def test_paper_figures_only_at_the_papers_input_size_and_for_lite_s_flops_only():
    s = preset("ESeg-S")
    assert paper_reference(s, (512, 1024)) is None and paper_config(s).label == "ESeg-S"
    lite = paper_reference(preset("ESeg-Lite-S"), PAPER)
    assert (lite.source, lite.params_m, lite.gmacs) == ("Sec. 3.2", None, 17.0)
    assert paper_reference(preset("ESeg-Lite-M"), PAPER) is None  # the paper gives no size figures for it
    assert paper_model_name(preset("ESeg-Lite-M")) == "ESeg-Lite-M"
    assert paper_model_name(preset("ESeg-S").with_overrides({"decoder.max_level": 5})) is None  # not a Table 3 model
    assert len({c.spec.spec_id for c in paper_configs()}) == len(paper_configs())  # no two rows alike


def test_profile_records_carry_a_reference_iff_the_model_is_the_papers():
    s = preset("ESeg-S")
    assert escale.profile(s).paper_source == "Table 4"
    p5 = escale.profile(s.with_overrides({"decoder.max_level": 5}))
    assert (p5.name, p5.paper_source, p5.paper_params_m) == ("ESeg-S+max_level=5", "Table 1 P2-P5", 6.4)
    assert abs(p5.gmacs_dev_pct) < 2.0
    r3 = escale.profile(s.with_overrides({"decoder.repeats": 3}))
    assert (r3.name, r3.paper_source, r3.paper_gmacs, r3.gmacs_dev_pct) == ("ESeg-S+repeats=3", None, None, None)
    small = escale.profile(s, input_size=(512, 1024))
    assert small.paper_source is None and small.params_dev_pct is None


@pytest.mark.parametrize("overrides,name", [
    ({"decoder.repeats": 3}, "ESeg-S+repeats=3"),
    ({"encoder.width": 1.2, "decoder.repeats": 3}, "ESeg-S+width=1.2,repeats=3"),
    ({"decoder.repeats": 4}, "ESeg-S"),  # set to the preset's own value: not an edit
    ({"encoder.se": False}, "ESeg-S+se=false"),
    ({"encoder.width": 1.4, "encoder.depth": 1.8, "decoder.channels": 192, "decoder.repeats": 5}, "ESeg-M"),
    ({"decoder.repeats": 3, "name": "mine"}, "mine"),  # an explicit name wins
    ({"encoder.checkpoint": "/ckpt/dir/b1.pth"}, "ESeg-S+checkpoint=b1.pth"),
])
def test_edited_presets_are_named_by_their_edits(overrides, name):
    assert preset("ESeg-S").with_overrides(overrides).name == name


def test_edit_names_are_computed_against_the_preset_and_other_names_are_kept():
    once = preset("ESeg-S").with_overrides({"decoder.repeats": 3})
    assert once.with_overrides({"decoder.repeats": 4}).name == "ESeg-S"  # back to the preset
    assert once.with_overrides({"encoder.width": 1.2}).name == "ESeg-S+width=1.2,repeats=3"
    lite = preset("ESeg-Lite-S").with_overrides({"encoder.block": "mbconv"})
    assert lite.name == "ESeg-Lite-S+block=mbconv"  # fused_stages follows from the block
    assert edited_name("tiny", once) == "tiny" and edited_name("trial-3", once) == "trial-3"


def test_a_spec_file_that_calls_an_edited_preset_by_its_name_is_renamed(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(preset("ESeg-S").with_overrides({"decoder.repeats": 3, "name": "ESeg-S"}).to_yaml())
    assert load_spec(str(path)).name == "ESeg-S+repeats=3"
    path.write_text(preset("ESeg-S").to_yaml())
    assert load_spec(str(path)).name == "ESeg-S"


def test_switching_the_backbone_resets_what_the_preset_set_and_says_so():
    notes: list[str] = []
    spec = preset("ESeg-Lite-S").with_overrides(["encoder.backbone=resnet18"], notes=notes)
    enc = spec.encoder
    assert (enc.backbone, enc.width, enc.depth, enc.block, enc.fused_stages, enc.se) == (
        "resnet18", 1.0, 1.0, "mbconv", None, True)
    assert enc.act == "relu" and spec.decoder.min_level == 3  # the decoder's settings stay
    assert notes == ["encoder.backbone='resnet18': reset the EfficientNet-only fields the preset set (width 0.4 "
                     "-> 1.0, depth 0.6 -> 1.0, block 'fused' -> 'mbconv', fused_stages 7 -> None, se False -> True)"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        preset("ESeg-S").with_overrides({"encoder.backbone": "resnet50"})
    assert [type(w.message) for w in caught] == [escale.SpecNote] and "depth 1.1 -> 1.0" in str(caught[0].message)


@pytest.mark.parametrize("field,value", [("encoder.width", 1.2), ("encoder.se", False), ("encoder.block", "fused")])
def test_an_explicit_efficientnet_field_with_another_backbone_is_still_an_error(field, value):
    with pytest.raises(escale.SpecError) as info:
        preset("ESeg-S").with_overrides({"encoder.backbone": "resnet50", field: value})
    assert str(info.value).startswith(f"{field}: {value!r} applies only to backbone='efficientnet'")


@pytest.mark.parametrize("size,note", [
    ((1024, 2048), None),
    ((512, 1024), None),  # P9 is 1x2: exactly one pixel high
    ((128, 256), "P8-P9 are 1x1 at 128x256 (levels below one pixel are clamped to 1)"),
    ((97, 131), "P7 is 1x2, P8-P9 are 1x1 at 97x131 (levels below one pixel are clamped to 1)"),
    ((1, 1), "P2-P9 are 1x1 at 1x1 (levels below one pixel are clamped to 1)"),
])
def test_input_size_note_names_the_collapsed_levels(size, note):
    assert preset("ESeg-S").input_size_note(size) == note


def test_level_sizes_round_up_like_the_model():
    sizes = preset("ESeg-Lite-S").level_sizes((97, 131))
    assert sizes == {3: (13, 17), 4: (7, 9), 5: (4, 5), 6: (2, 3), 7: (1, 2), 8: (1, 1), 9: (1, 1)}
    model = escale.build_model(preset("ESeg-Lite-S"), device="meta").eval()
    import torch

    feats = model.encoder(torch.empty(1, 3, 97, 131, device="meta"))
    feats.update(model.extra(feats[5]))
    assert {lv: tuple(f.shape[-2:]) for lv, f in feats.items() if lv >= 3} == sizes


def test_spec_paper_module_stays_pure_data():
    assert all(isinstance(c.spec, ESegSpec) for c in paper_configs())
