"""Progress on stderr: a rich bar in a terminal, one plain line per item (or block) in logs, stdout untouched."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from search_common import SIZE, TINY

from escale.cli import progress
from escale.cli.main import main

LINE = re.compile(r"^[\w ]+: .* \[\d+/\d+( \w+)?, \d+:\d\d\]$")


def plain_console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=False), buf


def test_plain_mode_writes_one_flushed_line_per_item_and_no_carriage_returns() -> None:
    console, buf = plain_console()
    with progress.reporter(console=console) as rep:
        assert rep.mode == "plain"
        task = rep.task("propose", total=3, unit="complete")
        for i in range(3):
            task.status(f"trial {i}: measuring")  # plain: the status is not a line of its own
            task.advance(f"trial {i} done", completed=i + 1)
    lines = buf.getvalue().splitlines()
    assert lines == [ln for ln in lines if LINE.match(ln)] and len(lines) == 3, lines
    assert lines[0].startswith("propose: trial 0 done [1/3 complete, ")
    assert "\r" not in buf.getvalue() and "\x1b" not in buf.getvalue()


@pytest.mark.parametrize("total, expected", [(100, list(range(10, 101, 10))), (25, [3, 6, 9, 12, 15, 18, 21, 24, 25])])
def test_blocks_give_about_ten_lines_and_the_last_one(total: int, expected: list[int]) -> None:
    console, buf = plain_console()
    with progress.reporter(console=console) as rep:
        task = rep.task("train", total=total, unit="steps", every=None)
        for step in range(1, total + 1):
            task.advance(f"loss {1 / step:.3f}", completed=step)
    done = [int(re.search(r"\[(\d+)/", ln).group(1)) for ln in buf.getvalue().splitlines()]
    assert done == expected


def test_live_mode_shows_the_running_item_and_writes_no_plain_lines() -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120)
    with progress.reporter(console=console) as rep:
        assert rep.mode == "live"
        task = rep.task("propose", total=2)
        task.status("trial 7: measuring onnxruntime/cpu")
        (shown,) = [t.description for t in rep.bar.tasks]
        assert shown == "propose: trial 7: measuring onnxruntime/cpu"
        task.advance("trial 7 complete", completed=1)
        assert rep.bar.tasks[0].completed == 1
    assert not LINE.search(buf.getvalue())


def test_machine_output_gets_plain_lines_even_on_a_terminal_and_off_is_silent() -> None:
    tty = Console(file=io.StringIO(), force_terminal=True)
    assert progress.Reporter(live=False, console=tty).mode == "plain"  # no bar with --format json/csv
    console, buf = plain_console()
    with progress.reporter(enabled=False, console=console) as rep:
        rep.task("x", total=1).advance("done")
    assert rep.mode == "off" and buf.getvalue() == ""


# --- commands -----------------------------------------------------------------------------------
@pytest.fixture
def tiny_space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ESCALE_HOME", str(tmp_path / "home"))
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def test_propose_logs_a_line_per_trial_names_the_running_trial_and_keeps_json_clean(
        tiny_space: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    import escale.search.study as study_mod

    events: list[str] = []
    real_status, real_evaluate = progress.Task.status, study_mod.evaluate_candidate

    def status(self, text: str, log: bool = False) -> None:  # noqa: ANN001
        events.append(f"status {text}")
        real_status(self, text, log)

    def evaluate(spec, cfg):  # noqa: ANN001, ANN202 - what the status says while a trial is evaluated
        events.append(f"evaluate {spec.name}")
        return real_evaluate(spec, cfg)

    monkeypatch.setattr(progress.Task, "status", status)
    monkeypatch.setattr(study_mod, "evaluate_candidate", evaluate)
    argv = ["propose", "--space", str(tiny_space), "--input-size", "64x128", "--trials", "3", "--cost", "macs",
            "--no-measure", "--seed", "0", "--study-name", "progress", "--format", "json"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) and "\r" not in err
    lines = err.splitlines()
    assert lines[0].startswith("escale: no latency table onnxruntime-cpu-fp32-64x128-t1.json in ")
    trial_lines = [ln for ln in lines if ln.startswith("propose: trial ")]
    assert len(trial_lines) == 3 and all(LINE.match(ln) for ln in trial_lines), err
    assert trial_lines[-1].endswith("[3/3 evaluated, " + trial_lines[-1].rsplit(", ", 1)[1])
    evaluated = [i for i, e in enumerate(events) if e.startswith("evaluate trial-")]
    assert len(evaluated) == 3
    for i in evaluated:  # the status set just before each evaluation names that very trial
        number = events[i].removeprefix("evaluate trial-")
        assert events[i - 1].startswith(f"status trial {number}: profiling"), events


def _tracked_reports() -> str:
    """``git status --porcelain`` of the checkout's tracked reports/ files (changes only)."""
    import subprocess

    root = Path(__file__).parents[1]
    proc = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "reports"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip("not a git checkout")
    return proc.stdout


def test_lut_build_logs_kernel_blocks_and_touches_no_tracked_file(tiny_space: Path, capsys) -> None:  # noqa: ANN001
    import escale
    from escale.search import space_from_dict

    before = _tracked_reports()
    spec = space_from_dict(TINY).to_spec(space_from_dict(TINY).corners()[0], name="corner")
    spec_file = tiny_space.parent / "spec.yaml"
    spec_file.write_text(spec.to_yaml())
    assert main(["lut", "build", str(spec_file), "--input-size", "64x128", "--quick"]) == 0
    out, err = capsys.readouterr()
    table = tiny_space.parent / "home" / "lut-local" / "onnxruntime-cpu-fp32-64x128-t1.json"
    assert table.is_file() and "Kernel latency table" in out
    n = len(set(escale.search.kernels.model_kernels(spec, SIZE)))
    blocks = [ln for ln in err.splitlines() if ln.startswith("lut build [")]
    assert 1 <= len(blocks) <= 11 and blocks[-1].startswith(f"lut build [{n}/{n} kernels, ") and "\r" not in err
    assert f"escale: lut build: writing {table}" in err
    assert _tracked_reports() == before


def test_lut_build_says_when_new_kernels_drop_a_calibration(tiny_space: Path, capsys) -> None:  # noqa: ANN001
    from escale.search import space_from_dict
    from escale.search.lut import LatencyTable

    old = LatencyTable("onnxruntime", "cpu", "fp32", SIZE, 1, calibration={"mode": "ratio", "slope": 1.0, "models": []})
    path = old.save(tiny_space.parent / "old.json")
    spec_file = tiny_space.parent / "spec.yaml"
    spec_file.write_text(space_from_dict(TINY).to_spec(space_from_dict(TINY).corners()[0]).to_yaml())
    assert main(["lut", "build", str(spec_file), "--input-size", "64x128", "--quick", "--out", str(path)]) == 0
    err = capsys.readouterr().err
    assert f"escale: lut build: extending {path}" in err
    assert f"new kernels dropped the calibration of {path}; add --calibrate K" in err


def test_train_logs_blocks_of_steps_with_loss_and_throughput(capsys) -> None:  # noqa: ANN001
    tiny = ["ESeg-Lite-S", "--set", "encoder.width=0.25", "--set", "encoder.depth=0.3", "--set",
            "decoder.channels=16", "--set", "decoder.max_level=6", "--input-size", "64x128", "--batch-size", "2",
            "--eval-images", "2"]
    assert main(["train", *tiny, "--steps", "4", "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)[0]["steps"] == 4
    lines = err.splitlines()
    assert [ln.split(" [")[1].split(",")[0] for ln in lines] == ["1/4 steps", "2/4 steps", "3/4 steps", "4/4 steps",
                                                                 "4/4 steps"]
    assert all(re.match(r"train: loss \d+\.\d{3}, [\d.]+ img/s, lr ", ln) for ln in lines[:4]), err
    assert lines[4].startswith("train: evaluating 2 images [")


def test_plot_logs_one_line_per_profiled_model(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    assert main(["plot", "breakdown", "--family", "eseg-lite", "--out", str(tmp_path / "b")]) == 0
    out, err = capsys.readouterr()
    assert out.split() == [str(tmp_path / "b.pdf"), str(tmp_path / "b.png")]
    names = [ln.split(":")[1].strip() for ln in err.splitlines()]
    assert names == ["ESeg-Lite-S", "ESeg-Lite-M", "ESeg-Lite-L"] and err.count("models, ") == 3
