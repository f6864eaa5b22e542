"""Spec: validation with one-line errors, round-trips, overrides, stable ids, paper Table 3 presets."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

import escale
from escale.spec import TABLE3, DecoderSpec, EncoderSpec, ESegSpec, field_paths, parse_input_size, preset


@pytest.mark.parametrize("name,width,depth,channels,repeats", [
    ("ESeg-Lite-S", 0.4, 0.6, 64, 1), ("ESeg-Lite-M", 0.6, 1.0, 80, 2), ("ESeg-Lite-L", 1.0, 1.0, 96, 3),
    ("ESeg-S", 1.0, 1.1, 96, 4), ("ESeg-M", 1.4, 1.8, 192, 5), ("ESeg-L", 2.0, 3.1, 288, 6),
])
def test_presets_match_paper_table3(name, width, depth, channels, repeats):
    s = preset(name)
    assert (s.encoder.width, s.encoder.depth, s.decoder.channels, s.decoder.repeats) == (width, depth, channels, repeats)
    assert s.decoder.max_level == 9 and s.num_classes == 19
    if "Lite" in name:  # section 3.3: Fused-MBConv everywhere, no SE, ReLU, base level P3
        assert (s.encoder.block, s.encoder.fused_stages, s.encoder.se, s.encoder.act, s.decoder.min_level) == (
            "fused", 7, False, "relu", 3)
    else:
        assert (s.encoder.block, s.encoder.se, s.encoder.act, s.decoder.min_level) == ("mbconv", True, "silu", 2)


def test_family_is_the_six_presets_in_order():
    assert [s.name for s in escale.family("eseg")] == list(TABLE3)
    assert len(TABLE3) == 6


@pytest.mark.parametrize("build,field,value", [
    (lambda: EncoderSpec(width=0.0), "encoder.width", "0.0"),
    (lambda: EncoderSpec(width=-1), "encoder.width", "-1"),
    (lambda: EncoderSpec(depth=9.0), "encoder.depth", "9.0"),
    (lambda: EncoderSpec(block="ghost"), "encoder.block", "'ghost'"),
    (lambda: EncoderSpec(act="gelu"), "encoder.act", "'gelu'"),
    (lambda: EncoderSpec(fused_stages=3), "encoder.fused_stages", "3"),
    (lambda: EncoderSpec(block="fused", fused_stages=8), "encoder.fused_stages", "8"),
    (lambda: EncoderSpec(backbone="resnet50", width=2.0), "encoder.width", "2.0"),
    (lambda: EncoderSpec(backbone="bad name!"), "encoder.backbone", "'bad name!'"),
    (lambda: DecoderSpec(channels=0), "decoder.channels", "0"),
    (lambda: DecoderSpec(channels=1.5), "decoder.channels", "1.5"),
    (lambda: DecoderSpec(repeats=True), "decoder.repeats", "True"),
    (lambda: DecoderSpec(min_level=5, max_level=5), "decoder.min_level", "5"),
    (lambda: DecoderSpec(max_level=10), "decoder.max_level", "10"),
    (lambda: DecoderSpec(min_level=1), "decoder.min_level", "1"),
    (lambda: ESegSpec(num_classes=0), "num_classes", "0"),
])
def test_invalid_fields_raise_one_line_naming_field_value_and_allowed(build, field, value):
    with pytest.raises(escale.SpecError) as info:
        build()
    msg = str(info.value)
    assert msg.startswith(field + ":") and value in msg and "\n" not in msg
    assert "allowed" in msg or "not a" in msg


def test_fused_stages_resolves_to_all_stages():
    assert EncoderSpec(block="fused").fused_stages == 7
    assert EncoderSpec(block="fused", fused_stages=3).block_label == "Fused-MBConv x3 + MBConv"
    assert EncoderSpec(block="mbconv", fused_stages=0).fused_stages is None


def test_dict_yaml_json_round_trips():
    for s in escale.family("eseg"):
        assert ESegSpec.from_dict(s.to_dict()) == s
        assert ESegSpec.from_yaml(s.to_yaml()) == s
        assert ESegSpec.from_yaml(json.dumps(s.to_dict())) == s


def test_from_file_and_load_spec(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: mine\nencoder: {width: 0.5}\ndecoder: {channels: 32, max_level: 7}\n")
    s = escale.load_spec(str(path))
    assert (s.name, s.encoder.width, s.decoder.channels, s.decoder.max_level) == ("mine", 0.5, 32, 7)
    assert s.decoder.min_level == 2  # defaults fill the rest


@pytest.mark.parametrize("text,expect", [
    ("encoder: {widht: 1.0}", "encoder.widht: unknown key"),
    ("foo: 1", "foo: unknown key"),
    ("encoder: [1, 2]", "encoder: expected a mapping"),
    ("encoder: {width: 1.0\n", "malformed YAML"),
    ("- 1\n- 2", "spec: expected a mapping"),
])
def test_bad_spec_text(text, expect):
    with pytest.raises(escale.SpecError, match=expect):
        ESegSpec.from_yaml(text)


def test_missing_file_and_unknown_preset():
    with pytest.raises(escale.SpecError, match="does not exist"):
        ESegSpec.from_file("/nonexistent/spec.yaml")
    with pytest.raises(escale.SpecError, match="allowed: ESeg-Lite-S"):
        escale.preset("ESeg-XL")


def test_overrides_dotted_paths_and_strings():
    s = preset("ESeg-S").with_overrides(["encoder.width=1.2", "decoder.repeats=3", "encoder.se=false"])
    assert (s.encoder.width, s.decoder.repeats, s.encoder.se) == (1.2, 3, False)
    s2 = preset("ESeg-S").with_overrides({"encoder.backbone": "resnet50", "encoder.depth": 1.0})
    assert s2.encoder.backbone == "resnet50"
    with pytest.raises(escale.SpecError, match="encoder.wdth: unknown field"):
        preset("ESeg-S").with_overrides({"encoder.wdth": 1})
    with pytest.raises(escale.SpecError, match="decoder.repeats: 'many' is not a int"):
        preset("ESeg-S").with_overrides(["decoder.repeats=many"])
    assert "decoder.max_level" in field_paths() and "encoder.backbone" in field_paths()


def test_spec_id_is_stable_across_processes_and_ignores_name():
    s = preset("ESeg-S")
    assert s.spec_id == s.with_overrides({"name": "renamed"}).spec_id
    assert s.spec_id != s.with_overrides({"decoder.repeats": 3}).spec_id
    code = "import escale; print(escale.preset('ESeg-S').spec_id)"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "123", "PATH": ""}).stdout.strip()
    assert other == s.spec_id and len(s.spec_id) == 12


def test_spec_module_does_not_import_torch():
    code = "import sys, escale.spec; escale.preset('ESeg-S').spec_id; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_input_size_checks():
    s = preset("ESeg-S")
    assert s.check_input_size((512, 1024)) == (512, 1024)
    assert s.check_input_size((1, 1)) == (1, 1)  # an ESeg model runs at any size; tiny levels are 1x1
    for bad, needle in (((0, 1024), "0x1024 is not allowed"), ((256,), "not an (H, W) pair"),
                        ((True, 3), "not an (H, W) pair")):
        with pytest.raises(escale.SpecError, match=re.escape(needle)):
            s.check_input_size(bad)
    assert parse_input_size("1024x2048") == (1024, 2048)
    for bad in ("1024", "0x10", "axb", "10x-3"):
        with pytest.raises(escale.SpecError, match="--input-size"):
            parse_input_size(bad)
