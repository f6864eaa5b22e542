"""escale plot / escale report: files written, and bad input as one line on stderr with exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from escale.cli.main import main

RECORDS = str(Path(__file__).parents[1] / "reports" / "eseg-family" / "records.json")
NOPE_DB = Path(__file__).resolve().parents[1] / "reports" / "studies" / "nope.db"  # from any current directory


@pytest.mark.parametrize("argv, message", [
    (["plot", "paper", "--figure", "3"], "--figure: '3' is unknown (allowed: 1, 4)"),
    (["plot", "family", "--x", "speed"], "--x: 'speed' is unknown (allowed: flops, params, latency, fps, miou)"),
    (["plot", "family", "--y", "accuracy"], "--y: 'accuracy' is unknown"),
    (["plot", "family", "--x", "latency", "--records", RECORDS], "--x latency: no record carries latency_ms"),
    (["plot", "study", "nope"], f"study: 'nope' not found: no database at {NOPE_DB} "),
    (["report", "--study", "nope"], "study: 'nope' not found"),
    (["plot", "paper", "--figure", "1", "--records", "missing.json"], "--records: cannot read missing.json"),
])
def test_bad_input_is_one_line(argv, message, capsys, tmp_path, monkeypatch):
    from escale.paths import studies_dir

    monkeypatch.delenv("ESCALE_HOME", raising=False)  # the default studies folder, reports/studies/
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "reports").exists() and not (studies_dir() / "nope.db").exists()


def test_unwritable_out_is_one_line(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    for argv in (["plot", "paper", "--figure", "4", "--records", RECORDS, "--out", str(blocker / "fig")],
                 ["report", "--records", RECORDS, "--out", str(blocker / "rep")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--out: cannot write to" in err and str(blocker) in err


def test_plot_defaults_go_to_the_ignored_plots_folder_from_any_directory(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ESCALE_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert main(["plot", "paper", "--figure", "4", "--records", RECORDS]) == 0
    plots = tmp_path / "home" / "plots"
    assert capsys.readouterr().out.split() == [str(plots / "figure4.pdf"), str(plots / "figure4.png")]
    assert (plots / "figure4.png").stat().st_size > 10_000 and not (tmp_path / "reports").exists()


def test_plot_family_writes_pdf_and_png(capsys, tmp_path):
    argv = ["plot", "family", "--x", "params", "--records", RECORDS, "--out", str(tmp_path / "fam.pdf")]
    assert main(argv) == 0
    out = capsys.readouterr().out.split()
    assert out == [str(tmp_path / "fam.pdf"), str(tmp_path / "fam.png")]
    assert (tmp_path / "fam.png").stat().st_size > 10_000
