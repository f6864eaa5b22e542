"""CLI: exit codes, machine-readable output that parses, one-line errors without tracebacks."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import pytest
import yaml

import escale
from escale.cli.main import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_profile_json_has_the_documented_keys(capsys):
    code, out, err = run(capsys, "profile", "ESeg-Lite-S", "--format", "json")
    assert code == 0
    (rec,) = json.loads(out)
    assert {"name", "spec_id", "params", "macs", "input_size", "macs_by_part", "macs_by_level",
            "macs_by_operator", "other_ops", "ops_not_counted", "convention"} <= set(rec)
    assert rec["name"] == "ESeg-Lite-S" and rec["input_size"] == [1024, 2048]
    assert rec["spec_id"] == escale.preset("ESeg-Lite-S").spec_id
    assert err == ""  # no progress bar for machine-readable output


def test_profile_family_csv_and_table(capsys):
    code, out, _ = run(capsys, "profile", "--family", "eseg-lite", "--format", "csv", "--input-size", "512x1024")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and [r["name"] for r in rows] == ["ESeg-Lite-S", "ESeg-Lite-M", "ESeg-Lite-L"]
    assert all(r["input_size"] == "512x1024" for r in rows)
    code, out, _ = run(capsys, "profile", "ESeg-S", "--set", "decoder.max_level=7")
    assert code == 0 and "P2-P7" in out and "multiply-adds" in out and "1024x2048" in out


def test_profile_yaml_spec_file(tmp_path, capsys):
    path = tmp_path / "mine.yaml"
    path.write_text(escale.preset("ESeg-S").with_overrides({"name": "mine", "decoder.repeats": 2}).to_yaml())
    code, out, _ = run(capsys, "profile", str(path), "--format", "json")
    assert code == 0 and json.loads(out)[0]["spec"]["decoder"]["repeats"] == 2


def test_spec_show_round_trips(capsys):
    code, out, _ = run(capsys, "spec", "show", "ESeg-M")
    assert code == 0 and escale.ESegSpec.from_dict(yaml.safe_load(out)) == escale.preset("ESeg-M")


@pytest.mark.parametrize("argv,needle", [
    (["profile", "ESeg-XXL"], "neither a preset"),
    (["profile", "ESeg-S", "--set", "encoder.width=0"], "encoder.width: 0.0 is out of range"),
    (["profile", "ESeg-S", "--set", "decoder.min_level=9"], "decoder.min_level: 9"),
    (["profile", "ESeg-S", "--set", "decoder.max_level=10"], "decoder.max_level: 10"),
    (["profile", "ESeg-S", "--set", "encoder.block=ghost"], "encoder.block: 'ghost' is not allowed"),
    (["profile", "ESeg-S", "--set", "nonsense"], "--set: 'nonsense' is not key=value"),
    (["profile", "ESeg-S", "--input-size", "big"], "--input-size: 'big'"),
    (["profile", "ESeg-S", "--counter", "magic"], "--counter: 'magic' is unknown (available: dispatch"),
    (["profile"], "give MODEL(s) or --family"),
])
def test_bad_input_is_one_line_and_nonzero(capsys, argv, needle):
    code, out, err = run(capsys, *argv)
    assert code == 2 and needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_model_that_cannot_run_fails_alone_and_keeps_other_results(capsys, tmp_path):
    ok = tmp_path / "p8.yaml"
    ok.write_text(escale.preset("ESeg-Lite-S").with_overrides({"name": "lite-p8", "decoder.max_level": 8}).to_yaml())
    # a ViT asserts its input size; ESeg runs at any size (here P8 is 1x2: 2^8 > 256)
    code, out, err = run(capsys, "profile", "timm:vit_tiny_patch16_224", str(ok), "--input-size", "128x256",
                         "--format", "json")
    assert code == 1 and err.count("\n") == 1
    assert "vit_tiny_patch16_224 cannot run at 128x256 (AssertionError: Input height (128)" in err
    (rec,) = json.loads(out)  # the good spec's result is still reported, with the collapsed level named
    assert rec["name"] == "lite-p8" and rec["notes"] == ["P8 is 1x1 at 128x256 (levels below one pixel are clamped to 1)"]
    code, _, err = run(capsys, "profile", "timm:vit_tiny_patch16_224", "--input-size", "256x512")
    assert code == 2 and "cannot run at 256x512" in err  # the only model failed: an input error
    bad = tmp_path / "bad.yaml"
    bad.write_text("encoder: {width: 1.0\n")
    code, _, err = run(capsys, "profile", str(bad))
    assert code == 2 and "malformed YAML" in err


def test_entry_point_exit_code_and_debug_traceback():
    exe = os.path.join(os.path.dirname(sys.executable), "escale")
    proc = subprocess.run([exe, "profile", "ESeg-S", "--set", "decoder.channels=-4"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("escale: error: decoder.channels: -4")
    assert "Traceback" not in proc.stderr
    env = dict(os.environ, ESCALE_DEBUG="1")
    proc = subprocess.run([exe, "spec", "show", "nope"], capture_output=True, text=True, env=env)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_paper_columns_follow_the_configuration_and_notes_are_one_line(capsys, tmp_path):
    code, out, err = run(capsys, "profile", "ESeg-S", "--set", "encoder.backbone=resnet50", "--format", "json")
    (rec,) = json.loads(out)
    assert code == 0 and rec["name"] == "ESeg-S+backbone=resnet50" and rec["paper_source"] == "Table 8 ResNet-50"
    assert err == ("escale: note: encoder.backbone='resnet50': reset the EfficientNet-only fields the preset set "
                   "(depth 1.1 -> 1.0)\n")
    code, out, _ = run(capsys, "profile", "ESeg-S", "--set", "decoder.repeats=3", "--format", "json")
    (rec,) = json.loads(out)
    assert (rec["name"], rec["paper_source"], rec["paper_gmacs"], rec["gmacs_dev_pct"]) == (
        "ESeg-S+repeats=3", None, None, None)
    edited = tmp_path / "edited.yaml"  # a file calling an edited ESeg-S by the preset's name
    edited.write_text(escale.preset("ESeg-S").with_overrides({"decoder.repeats": 3, "name": "ESeg-S"}).to_yaml())
    code, out, _ = run(capsys, "profile", str(edited), "ESeg-M")
    assert "Table 4" in next(line for line in out.splitlines() if "ESeg-M" in line)
    row = next(line for line in out.splitlines() if "ESeg-S+repeats=3" in line)
    assert row.count("│") == 7 and row.rstrip("│ ").endswith("-")  # the edited row: "-" in the paper column
    code, _, err = run(capsys, "profile", "ESeg-S", "--set", "encoder.backbone=resnet50", "--set", "encoder.width=1.2")
    assert code == 2 and "encoder.width: 1.2 applies only to backbone='efficientnet'" in err
