"""The parent of ``escale benchmark``: each part in a child process with a time box; JSON and Markdown
written after every part, so a crash, a hang or an interrupt leaves every finished result on disk.

A child runs in its own process group and is killed with it (SIGKILL) when its time box is spent: a hung
CUDA call cannot be interrupted inside a process. A model part streams one row per finished path; when
its child dies, the path in progress is marked ``crashed`` and a fresh child runs the remaining paths.
The parent does no CUDA work itself.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from escale.benchmark.plan import MIN_PART_S, PART_CAP_S, BenchSettings, Part, build_plan
from escale.profiler.latency.isolate import child_command, child_env, write_request

SCHEMA = "escale-benchmark/1"
PARTS_MODULE = "escale.benchmark.parts"
TAIL_CHARS = 2000


@dataclass
class ChildOutcome:
    """How a child ended: ``ok`` (its result), ``error`` (an exception, one line), ``timeout`` or ``crashed``."""

    status: str
    result: Any = None
    reason: str = ""
    seconds: float = 0.0
    log_tail: str = ""


def run_child(function: str, payload: dict[str, Any], timeout_s: float, workdir: Path, label: str,
              module: str = PARTS_MODULE) -> ChildOutcome:
    """Call ``<module>.<function>(**payload)`` in a fresh process group; kill the group after ``timeout_s``."""
    stem = re.sub(r"[^A-Za-z0-9.-]+", "_", label)
    request, result, log = workdir / f"{stem}.request.json", workdir / f"{stem}.result.json", workdir / f"{stem}.log"
    result.unlink(missing_ok=True)
    write_request(request, f"{module}:{function}", payload)
    t0 = time.monotonic()
    with open(log, "w", encoding="utf-8") as fh:
        proc = subprocess.Popen(child_command(request, result), env=child_env(), stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=max(timeout_s, 0.1))
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return ChildOutcome("timeout", reason=f"ran past its time box ({timeout_s:.0f} s) and was killed",
                                seconds=time.monotonic() - t0, log_tail=_tail(log))
        except BaseException:  # Ctrl-C: the child goes too
            _kill_group(proc)
            raise
    seconds = time.monotonic() - t0
    if not result.exists():
        tail = _tail(log)
        last = (tail.strip().splitlines() or ["no output"])[-1]
        return ChildOutcome("crashed", reason=f"process exited with code {code} ({last[:200]})", seconds=seconds,
                            log_tail=tail)
    data = json.loads(result.read_text())
    if "error" in data:
        return ChildOutcome("error", reason=data["error"]["message"], seconds=seconds, log_tail=_tail(log))
    return ChildOutcome("ok", result=data["result"], seconds=seconds)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the child's own group (start_new_session): compile workers too
    except ProcessLookupError:
        pass
    proc.wait()


def _tail(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-TAIL_CHARS:]
    except OSError:
        return ""


def read_events(stream: Path) -> list[dict[str, Any]]:
    """The complete JSON lines of a part's stream (a line cut by a kill is dropped)."""
    if not stream.exists():
        return []
    events = []
    for line in stream.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def output_paths(out_dir: Path, device_name: str, date: str) -> tuple[Path, Path]:
    """``<out>/<device>-<date>.json`` and ``.md``; ``-2``, ``-3``, ... when that run exists already."""
    stem, n = f"{slug(device_name)}-{date}", 1
    while True:
        name = stem if n == 1 else f"{stem}-{n}"
        if not (out_dir / f"{name}.json").exists() and not (out_dir / f"{name}.md").exists():
            return out_dir / f"{name}.json", out_dir / f"{name}.md"
        n += 1


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class Benchmark:
    """One run: the record (a JSON-safe dict), its files, the deadline; :meth:`run` does the parts in order."""

    def __init__(self, settings: BenchSettings, timing: dict[str, Any], note: Callable[[str], None] | None = None,
                 command: list[str] | None = None, parts_module: str = PARTS_MODULE) -> None:
        self.settings, self.timing, self.parts_module = settings, timing, parts_module
        self.note = note or (lambda message: None)
        self.start = time.monotonic()
        self.deadline = self.start + settings.time_limit_s
        self.files: tuple[Path, Path] | None = None
        self.record: dict[str, Any] = {
            "schema": SCHEMA, "status": "running", "command": command,
            "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "finished": None,
            "settings": {**settings.to_dict(), "timing": timing}, "environment": {}, "probe": {}, "checks": [],
            "parts": [], "results": [], "training": None,
            "units": {"*_ms": "milliseconds per image (batch 1)", "fps": "images per second = 1000 / latency_ms",
                      "peak_mem_mb": "MB = 2**20 bytes", "images_per_s": "training images per second"}}

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def probe(self, workdir: Path) -> ChildOutcome:
        """The environment part: fills ``environment`` and ``probe`` (a failed probe skips every check)."""
        outcome = run_child("run_env", {"device": self.settings.device},
                            min(self.settings.part_timeout("env"), max(self.remaining(), 1.0)), workdir, "env",
                            self.parts_module)
        if outcome.status == "ok":
            self.record["environment"], self.record["probe"] = outcome.result["environment"], outcome.result["probe"]
        else:
            why = f"the environment probe failed ({outcome.status}: {outcome.reason})"
            self.record["probe"] = {"cuda": why, "backends": {}, "compile": why, "failed": True}
        self._part(Part("env", "env"), outcome.status, outcome.seconds, outcome.reason, 1, outcome.log_tail)
        return outcome

    def plan(self) -> list[Part]:
        parts, checks = build_plan(self.settings, self.record["probe"])
        if self.record["probe"].get("failed"):
            for row in checks:
                if row["part"] != "env" and row["status"] == "would run":
                    row.update(status="skipped", reason=self.record["probe"]["cuda"])
            parts = []
        self.record["checks"] = checks
        self.record["results"] = [{"model": c["model"], "path": c["path"], "status": "pending" if
                                   c["status"] == "would run" else "skipped", "reason": None if
                                   c["status"] == "would run" else c["reason"]} for c in checks if "path" in c]
        return [p for p in parts if p.kind != "env"]

    def run(self, out_dir: Path, render: Callable[[dict[str, Any]], str]) -> tuple[Path, Path]:
        """Every part in order; the files are rewritten after each. Returns the JSON and Markdown paths."""
        self.render = render
        with tempfile.TemporaryDirectory(prefix="escale-bench-") as tmp:
            workdir = Path(tmp)
            self.probe(workdir)
            name = self.record["environment"].get("device_name") or f"unknown-{self.settings.device}"
            out_dir.mkdir(parents=True, exist_ok=True)
            self.files = output_paths(out_dir, name, dt.date.today().isoformat())
            parts = self.plan()
            self.write()
            try:
                for part in parts:
                    self.run_part(part, workdir)
                    self.write()
                self.record["status"] = "complete"
            except KeyboardInterrupt:
                self.record["status"] = "interrupted"
                raise
            finally:
                self.record["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
                self.record["seconds"] = time.monotonic() - self.start
                self.write()
        return self.files

    def write(self) -> None:
        if self.files is None:
            return
        write_atomic(self.files[0], json.dumps(self.record, indent=1, default=str) + "\n")
        write_atomic(self.files[1], self.render(self.record))

    def _part(self, part: Part, status: str, seconds: float, reason: str, attempts: int, log_tail: str = "") -> None:
        entry = {"name": part.name, "kind": part.kind, "model": part.model, "status": status,
                 "seconds": round(seconds, 2), "attempts": attempts, "reason": reason or None}
        if log_tail and status not in ("ok", "skipped"):
            entry["log_tail"] = log_tail
        self.record["parts"].append(entry)
        self.note(f"{part.name}: {status}{f' ({reason})' if reason else ''} [{seconds:.0f} s]")

    def _row(self, model: str | None, path: str, **fields: Any) -> None:
        for row in self.record["results"]:
            if row["model"] == model and row["path"] == path:
                row.update(fields)
                return

    def run_part(self, part: Part, workdir: Path) -> None:
        left, need = self.remaining(), self.settings.part_minimum(part.kind)
        if left < need:
            why = f"--time-limit {self.settings.time_limit_s:g} s reached before this part"
            if need > MIN_PART_S and left >= MIN_PART_S:
                why = (f"{left:.0f} s left of --time-limit {self.settings.time_limit_s:g} s, under the {need:g} s "
                       f"a {part.kind} part needs at least")
            for path in part.paths:
                self._row(part.model, path.name, status="skipped", reason=why)
            if part.kind == "train":
                self.record["training"] = {"status": "skipped", "reason": why}
            self._part(part, "skipped", 0.0, why, 0)
            return
        box = min(self.settings.part_timeout(part.kind), left)
        if part.kind == "train":
            self.run_train(part, workdir, box)
        else:
            self.run_model(part, workdir, box)

    def run_train(self, part: Part, workdir: Path, box: float) -> None:
        s = self.settings
        outcome = run_child("run_train", {"model": part.model, "device": s.device, "input_size": list(s.train_size),
                                          "batch": s.train_batch, "steps": s.train_steps,
                                          "warmup_steps": s.train_warmup_steps}, box, workdir, part.name,
                            self.parts_module)
        if outcome.status == "ok":
            self.record["training"] = {"status": "ok", **outcome.result}
        else:
            self.record["training"] = {"status": outcome.status, "reason": outcome.reason}
        self._part(part, outcome.status, outcome.seconds, outcome.reason, 1, outcome.log_tail)

    def run_model(self, part: Part, workdir: Path, box: float) -> None:
        """A model part: one child for its paths; after a crash or a failed CUDA path, a fresh one for the rest."""
        from escale.spec import preset

        end, todo, attempts, seconds = time.monotonic() + box, list(part.paths), 0, 0.0
        status, reason, tail = "ok", "", ""
        while todo:
            left = end - time.monotonic()
            if left < 1.0:
                for path in todo:
                    self._row(part.model, path.name, status="skipped", reason="its part's time box was used up")
                status, reason = "timeout", reason or "time box used up"
                break
            attempts += 1
            stream = workdir / f"{re.sub(r'[^A-Za-z0-9.-]+', '_', part.name)}.{attempts}.jsonl"
            payload = {"spec": preset(part.model).to_dict(), "paths": [asdict(p) for p in todo],
                       "device": self.settings.device, "input_size": list(self.settings.input_size),
                       "stream": str(stream), "workdir": str(workdir), "timing": self.timing}
            outcome = run_child("run_model", payload, left, workdir, f"{part.name}.{attempts}", self.parts_module)
            seconds += outcome.seconds
            events = read_events(stream)
            done = {e["path"]: e for e in events if e.get("event") == "done"}
            for name, event in done.items():
                self._row(part.model, name, **{k: v for k, v in event.items() if k not in ("event", "path")})
            started = [e["path"] for e in events if e.get("event") == "start" and e["path"] not in done]
            todo = [p for p in todo if p.name not in done]
            if outcome.status == "ok":
                if any(e["status"] == "failed" for e in done.values()) and status == "ok":
                    status = "partial"  # a path failed; its row says why
                if done:
                    continue  # a fresh child for the rest after a failed CUDA path; nothing left: done
                for path in todo:
                    self._row(part.model, path.name, status="failed", reason="the part's child ran no path")
                break
            tail = outcome.log_tail
            status, reason = outcome.status, outcome.reason
            if not started:  # died before its first path (model build, reference): the rest cannot run either
                for path in todo:
                    self._row(part.model, path.name, status="failed" if outcome.status == "error" else outcome.status,
                              reason=f"part {outcome.status} before this path ({outcome.reason})")
                status = outcome.status
                break
            current = started[-1]
            self._row(part.model, current, status="timeout" if outcome.status == "timeout" else "crashed",
                      reason=outcome.reason)
            todo = [p for p in todo if p.name != current]
            if outcome.status == "timeout":
                for path in todo:
                    self._row(part.model, path.name, status="skipped", reason="its part's time box was used up")
                break
        self._part(part, status, seconds, reason, attempts, tail)


def dry_run(settings: BenchSettings, parts_module: str = PARTS_MODULE) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The environment and the plan's rows (would run / skipped and why), without measuring anything."""
    bench = Benchmark(settings, {}, parts_module=parts_module)
    with tempfile.TemporaryDirectory(prefix="escale-bench-") as tmp:
        bench.probe(Path(tmp))
    bench.plan()
    return bench.record, bench.record["checks"]


__all__ = ["PART_CAP_S", "Benchmark", "ChildOutcome", "dry_run", "output_paths", "read_events", "run_child"]
