"""Study storage: many workers on a real PostgreSQL server (one SIGKILLed mid-trial), Optuna journal files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from pg_cluster import postgres_server, why_not
from search_common import SIZE, TINY
from test_search_study import fake_evaluate

from escale.search import StudyConfig, load_study, run_study, space_from_dict, trials_frame

WORKER = """
import json, sys, time
sys.path.insert(0, sys.argv[6])
from test_search_study import fake_evaluate
from escale.search import StudyConfig, run_study, space_from_dict
space, storage, n, marker, hang_nth = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
count = 0
def evaluate(spec, cfg):
    global count
    count += 1
    with open(marker, "a") as f:
        f.write(spec.name.split("-")[1] + "\\n")
    time.sleep(600 if count == hang_nth else 0.3)
    return fake_evaluate(spec, cfg)
cfg = StudyConfig(space_from_dict(space), input_size=(64, 128), cost="macs", measure=False, storage=storage,
                  study_name="pg", heartbeat_s=1, grace_s=2)
run_study(cfg, n, evaluate=evaluate)
"""


def start(tmp_path: Path, url: str, n: int, tag: str, hang_nth: int = -1) -> subprocess.Popen:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    args = [sys.executable, str(script), json.dumps(TINY), url, str(n), str(tmp_path / f"marker-{tag}"),
            str(hang_nth), str(Path(__file__).parent)]
    return subprocess.Popen(args, cwd=tmp_path, stderr=subprocess.PIPE)


def marked(tmp_path: Path, tag: str) -> list[int]:
    path = tmp_path / f"marker-{tag}"
    return [int(v) for v in path.read_text().split()] if path.is_file() else []


@pytest.mark.skipif(why_not() is not None, reason=f"no PostgreSQL test server: {why_not()}")
def test_workers_on_postgres_survive_a_sigkill_and_a_third_resumes(tmp_path: Path) -> None:
    with postgres_server() as url:
        a, b = start(tmp_path, url, 6, "a", hang_nth=2), start(tmp_path, url, 6, "b")
        deadline = time.time() + 120
        while len(marked(tmp_path, "a")) < 2:  # a is in its second trial, which hangs
            assert a.poll() is None, a.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "worker a never reached its second trial"
            time.sleep(0.1)
        killed = marked(tmp_path, "a")[1]
        before = {t.number: t for t in optuna.load_study(study_name="pg", storage=url).trials
                  if t.state == TrialState.COMPLETE}
        os.kill(a.pid, signal.SIGKILL)
        a.wait()
        assert b.wait(timeout=120) == 0, b.stderr.read().decode()[-2000:]
        c = start(tmp_path, url, 8, "c")  # a third worker resumes the same study to 8 trials
        assert c.wait(timeout=120) == 0, c.stderr.read().decode()[-2000:]
        trials = load_study("pg", url).trials
    states = {t.number: t.state for t in trials}
    assert sum(s == TrialState.COMPLETE for s in states.values()) == 8  # the requested trials complete
    assert states[killed] == TrialState.FAIL  # failed by its stale heartbeat ...
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE  # ... and run again once, elsewhere
    assert retried[0].params == next(t for t in trials if t.number == killed).params
    for number, old in before.items():  # nothing completed is lost or changed
        new = trials[number]
        assert (new.state, new.params, new.values, new.user_attrs) == (old.state, old.params, old.values, old.user_attrs)
    evaluated = marked(tmp_path, "a") + marked(tmp_path, "b") + marked(tmp_path, "c")
    assert len(evaluated) == len(set(evaluated))  # every trial was evaluated by one worker, once
    assert len({t.number for t in trials}) == len(trials) and marked(tmp_path, "c")  # c did resume


def test_journal_file_storage_runs_resumes_and_reads_back(tmp_path: Path) -> None:
    log = tmp_path / "studies" / "j.log"
    cfg = StudyConfig(space_from_dict(TINY), input_size=SIZE, cost="macs", measure=False, storage=str(log),
                      study_name="j", seed=0)
    assert len(run_study(cfg, 2, evaluate=fake_evaluate).trials) == 2 and log.is_file()
    again = StudyConfig(space_from_dict(TINY), input_size=SIZE, cost="macs", measure=False,
                        storage=f"journal:{log}", study_name="j", seed=0)
    run_study(again, 3, evaluate=fake_evaluate)
    frame = trials_frame(load_study("j", str(log)))
    assert list(frame["state"]) == ["COMPLETE"] * 3


def test_study_list_finds_journal_files_beside_sqlite(tmp_path: Path, monkeypatch, capsys) -> None:  # noqa: ANN001
    from escale.cli.main import main

    monkeypatch.setenv("ESCALE_HOME", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "400")  # long storage paths stay on one line
    for storage, name in ((tmp_path / "studies" / "j.log", "j"), (tmp_path / "studies" / "s.db", "s")):
        run_study(StudyConfig(space_from_dict(TINY), input_size=SIZE, cost="macs", measure=False,
                              storage=str(storage), study_name=name, seed=0), 1, evaluate=fake_evaluate)
    assert main(["study", "list"]) == 0
    out = capsys.readouterr().out
    assert "j.log" in out and "s.db" in out
