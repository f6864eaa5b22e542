"""``escale train``: JSON that parses, a table, one-line errors with exit code 2."""

from __future__ import annotations

import json

import pytest
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


def test_train_json_states_crop_eval_size_and_pixels(capsys):
    code = main(["train", *TINY, "--steps", "1", "--eval-size", "32x64", "--no-ohem", "--ema", "--format", "json"])
    (rec,) = json.loads(capsys.readouterr().out)
    assert code == 0 and rec["crop_size"] == [64, 128] and rec["eval_size"] == [32, 64]
    assert rec["eval_pixels"] == 2 * 64 * 128 and rec["ohem"] is False and rec["ema"] is True  # labels' own size
    code = main(["train", *TINY, "--steps", "1", "--eval-size", "32"])
    assert code == 2 and "--eval-size: '32' is not HxW" in capsys.readouterr().err


def test_worker_command_line_repeats_every_option_but_nproc():
    from escale.cli.cmd_train import worker_argv
    from escale.cli.main import build_parser

    argv = ["train", *TINY, "--steps", "3", "--no-ema", "--sync-bn", "--lr", "0.01", "--checkpoint", "c.pt"]
    args = build_parser().parse_args([*argv, "--nproc", "2"])
    again = build_parser().parse_args(["train", *worker_argv(args)])
    skip = {"nproc": None, "func": None, "_forwarded": None}  # the parsers' own objects differ
    assert {**vars(again), **skip} == {**vars(args), **skip} and args.nproc == 2 and again.nproc is None
    assert worker_argv(args).count("--set") == 4 and "--nproc" not in worker_argv(args)


def test_python_dash_m_escale_runs_the_cli(capsys, monkeypatch):
    import runpy

    monkeypatch.setattr("sys.argv", ["escale", "train", *TINY, "--steps", "0"])
    with pytest.raises(SystemExit) as info:
        runpy.run_module("escale", run_name="__main__")
    assert info.value.code == 2 and "steps: 0 is not a positive integer" in capsys.readouterr().err


def test_nproc_under_torchrun_and_bad_counts_are_one_line_errors(capsys, monkeypatch):
    assert main(["train", *TINY, "--steps", "1", "--nproc", "0"]) == 2
    assert "--nproc: 0 is not a positive integer" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(["train", *TINY, "--steps", "1", "--nproc", "2"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["train", *TINY, "--steps", "0"]) == 2  # a process of a torchrun launch names itself
    assert capsys.readouterr().err == "escale: error: rank 1/2: steps: 0 is not a positive integer\n"
