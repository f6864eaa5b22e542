"""``escale train``: JSON that parses, a table, one-line errors with exit code 2."""

from __future__ import annotations

import json

import torch

from escale.cli.main import main

TINY = ["ESeg-Lite-S", "--set", "encoder.width=0.25", "--set", "encoder.depth=0.3", "--set", "decoder.channels=16",
        "--set", "decoder.max_level=6", "--input-size", "64x128", "--batch-size", "2", "--eval-images", "2"]


def test_train_json(capsys):
    code = main(["train", *TINY, "--steps", "2", "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0 and err.startswith("train: loss ")  # progress: plain lines on stderr, stdout stays JSON
    (rec,) = json.loads(out)
    assert rec["steps"] == 2 and rec["dataset"] == "synthetic" and rec["input_size"] == [64, 128]
    assert 0.0 <= rec["miou"] <= 1.0 and rec["spec"]["decoder"]["max_level"] == 6 and rec["num_classes"] == 8


def test_train_table_and_threads(capsys):
    code = main(["train", *TINY, "--steps", "1", "--threads", "1"])
    out, _ = capsys.readouterr()
    assert code == 0 and "mIoU %" in out and "synthetic" in out and torch.get_num_threads() == 1


def test_train_errors_are_one_line(capsys, tmp_path):
    code = main(["train", *TINY, "--steps", "1", "--dataset", "cityscapes", "--data-root", str(tmp_path)])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and "leftImg8bit" in err and "Traceback" not in err
    code = main(["train", *TINY, "--steps", "1", "--input-size", "0x128"])
    _, err = capsys.readouterr()
    assert code == 2 and "--input-size: '0x128'" in err


def test_train_a_full_preset_with_the_default_input_size(capsys):
    code = main(["train", "ESeg-S", "--steps", "1", "--eval-images", "1", "--format", "json"])
    (rec,) = json.loads(capsys.readouterr().out)
    assert code == 0 and rec["input_size"] == [128, 256] and rec["name"] == "ESeg-S+num_classes=8"
    assert rec["notes"] == ["P8-P9 are 1x1 at 128x256 (levels below one pixel are clamped to 1)"]
