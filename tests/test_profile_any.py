"""Profiling any model: presets, YAML paths, timm models, factories and nn.Module instances."""

from __future__ import annotations

import io
import json

import pytest
import torch
from model_zoo import tiny_cnn
from rich.console import Console

import escale
from escale.cli import render
from escale.cli.main import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def tiny_cnn_macs(h: int, w: int, batch: int = 1) -> int:
    """Closed form: 3x3 conv 3->8 (valid padding), then 1x1 conv 8->4, multiply-adds."""
    ho, wo = h - 2, w - 2
    return batch * (8 * ho * wo * 3 * 9 + 4 * ho * wo * 8)


def test_an_nn_module_is_profiled_on_a_meta_copy_and_left_untouched():
    model = tiny_cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rec = escale.profile(model, input_size=(32, 32))
    assert (rec.kind, rec.source, rec.name) == ("module", "nn.Module Sequential", "Sequential")
    assert rec.macs == tiny_cnn_macs(32, 32) == 223_200 and rec.params == 8 * 27 + 8 + 4 * 8 + 4 == 260
    assert rec.macs_by_module == {"0": 194_400, "2": 28_800} and rec.params_by_module == {"0": 224, "2": 36}
    assert rec.macs_by_part == {} and rec.paper_source is None and rec.spec == {}
    assert all(p.device.type == "cpu" for p in model.parameters()) and model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    again = escale.profile(tiny_cnn(), input_size=(32, 32))
    assert again.spec_id == rec.spec_id and escale.profile(torch.nn.Conv2d(3, 8, 3)).spec_id != rec.spec_id


def test_example_input_sets_batch_channels_and_size():
    rec = escale.profile(tiny_cnn(), example_input=torch.zeros(2, 3, 20, 24))
    assert rec.batch == 2 and rec.input_size == (20, 24) and rec.macs == tiny_cnn_macs(20, 24, batch=2)
    with pytest.raises(escale.SpecError, match=r"Sequential cannot run at 20x20 \(RuntimeError: .*channels"):
        escale.profile(tiny_cnn(), input_size=(20, 20), in_chans=4)  # mis-wired: 4 channels into a 3-channel conv


@pytest.mark.parametrize("counter", ["fvcore", "thop"])
def test_cross_check_counters_count_any_module_on_a_copy(counter):
    model = tiny_cnn()
    rec = escale.profile(model, input_size=(32, 32), counter=counter)
    assert rec.counter == counter and rec.kind == "module" and model.training  # the user's module is untouched
    assert rec.macs == tiny_cnn_macs(32, 32)  # both count these convs' multiply-adds exactly (ReLU: 0 in thop)


def test_presets_spec_files_and_specs_give_the_same_record(tmp_path):
    spec = escale.preset("ESeg-Lite-S")
    path = tmp_path / "lite.yaml"
    path.write_text(spec.to_yaml())
    recs = [escale.profile(t, input_size=(256, 512)) for t in (spec, "ESeg-Lite-S", str(path))]
    assert len({(r.macs, r.params, r.spec_id, r.name) for r in recs}) == 1 and recs[0].kind == "eseg"


@pytest.mark.parametrize("model,size,params_m,gmacs", [
    ("efficientnet_b0", (224, 224), 5.3, 0.39),  # Tan & Le 2019, Table 2: 5.3M params, 0.39B FLOPs
    ("resnet50", (224, 224), 25.6, 4.1),  # He et al. 2016 (~4.1B multiply-adds per torchvision/fvcore), 25.6M
])
def test_published_figures_of_well_known_models(model, size, params_m, gmacs):
    rec = escale.profile(f"timm:{model}")  # the timm model's own input size by default
    assert rec.input_size == size and rec.source == f"timm:{model}"
    assert abs(rec.params / 1e6 / params_m - 1) < 0.02, rec.params
    assert abs(rec.macs / 1e9 / gmacs - 1) < 0.02, rec.macs
    assert rec.ops_not_counted == {}


@pytest.mark.parametrize("target,needle", [
    (42, "profile: int '42' is not a model (allowed: an ESegSpec, a preset name"),
    ("timm:not_a_model_at_all", "timm: 'not_a_model_at_all' is not a timm model"),
    ("module:model_zoo", "module: 'model_zoo' is not 'package.module:callable'"),
    ("module:model_zoo:nothing_here", "module: 'model_zoo' has no attribute 'nothing_here'"),
    ("module:no_such_package_xyz:f", "module: cannot import 'no_such_package_xyz'"),
    ("module:model_zoo:not_a_module", "returned a str, not a torch.nn.Module"),
    ("ESeg-XL", "neither a preset"),
])
def test_anything_else_is_one_clear_error(target, needle):
    with pytest.raises(escale.EscaleError) as info:
        escale.profile(target)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_cli_profiles_timm_models_and_factories(capsys):
    code, out, _ = run(capsys, "profile", "timm:resnet18", "module:model_zoo:tiny_cnn", "--input-size", "32x32",
                       "--format", "json")
    resnet, cnn = json.loads(out)
    assert code == 0 and resnet["kind"] == "module" and resnet["source"] == "timm:resnet18"
    assert "layer1.0.conv1" in resnet["macs_by_module"] and resnet["input_size"] == [32, 32]
    assert cnn["macs"] == tiny_cnn_macs(32, 32) and cnn["name"] == "tiny_cnn"
    code, _, err = run(capsys, "profile", "timm:resnet18", "--set", "decoder.repeats=3")
    assert code == 2 and "--set: applies to ESeg specs only, not to 'timm:resnet18'" in err


def test_ops_not_counted_are_printed_under_the_table(capsys):
    code, out, _ = run(capsys, "profile", "module:model_zoo:cumsum_net", "--input-size", "16x16")
    assert code == 0 and "cumsum_net: ops not counted (no formula in escale): cumsum x1" in out
    code, out, _ = run(capsys, "profile", "module:model_zoo:tiny_cnn", "--input-size", "16x16")
    assert "not counted" not in out


@pytest.fixture
def terminal(monkeypatch):
    """stdout as an 80-column terminal."""
    buf = io.StringIO()
    monkeypatch.setattr(render, "stdout", Console(file=buf, width=80, soft_wrap=False))
    return buf


def test_the_family_table_fits_80_columns_without_cutting_a_digit(terminal, capsys):
    assert main(["profile", "--family", "eseg"]) == 0
    text = terminal.getvalue()
    table = [line for line in text.splitlines() if line.startswith(("┃", "│", "┏", "└"))]
    assert table and all(len(line) <= 80 for line in table), max(map(len, table))
    assert "…" not in text
    for cell in ("ESeg-Lite-S", "17.16", "ESeg-L", "70.50", "340.10", "-1.6%", "+0.9%", "Table 4", "Sec. 3.2"):
        assert cell in text


def test_wide_shows_every_column_and_still_cuts_nothing(terminal, capsys):
    assert main(["profile", "--family", "eseg-lite", "--wide", "--set", "decoder.max_level=8"]) == 0
    text = terminal.getvalue()
    assert "…" not in text and "Fused-MBConv" in text and "BiFPN ch" in text and "P3-P8" in text
    assert "ESeg-Lite-S+max_level=8" in text and "Table" not in text.split("FLOPs:")[0]  # edited: no paper column


def test_module_tree_view(capsys, terminal):
    assert main(["profile", "ESeg-S", "--input-size", "128x256", "--by", "module", "--depth", "2"]) == 0
    text = terminal.getvalue()
    rec = escale.profile("ESeg-S", input_size=(128, 256))
    rows = {line.split("│")[1].strip(): line.split("│")[3].strip() for line in text.splitlines()
            if line.startswith("│") and line.count("│") == 5}
    assert rows["(model)"] == f"{rec.macs / 1e6:.2f}M" and "decoder.layers" in rows and "encoder.body" in rows
    assert "encoder.body.blocks" not in rows  # depth 2
    assert "P8-P9 are 1x1 at 128x256" in text
