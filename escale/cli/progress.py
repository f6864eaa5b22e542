"""Progress on stderr that works in terminals and in logs; stdout is never touched.

* **live** -- stderr is a terminal and the command prints a table: a rich progress bar whose status
  line names the item being worked on *now* (``Task.status``).
* **plain** -- anything else (a log file, a pipe, CI, ``--format json/csv``): one plain line per
  finished item, or per block of items (``every``), flushed at once; no carriage returns.
* **off** -- ``reporter(enabled=False)``.

Usage (the API ``escale profile`` and every other command share)::

    with progress.reporter(live=args.format == "table") as rep:
        task = rep.task("profile", total=len(specs))
        for spec in specs:
            task.status(f"profiling {spec.name}")        # live: the status line; plain: nothing
            rec = profile(spec)
            task.advance(f"{spec.name}: {rec.params_m:.2f} M params")   # live: bar +1; plain: one line

A plain line reads ``NAME: MESSAGE [DONE/TOTAL UNIT, ELAPSED]``, e.g.
``propose: trial 7 rejected: predicted latency 160.10 ms > budget 150 ms [3/20 complete, 0:42]``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

MODES = ("live", "plain", "off")


def elapsed_text(seconds: float) -> str:
    """``0:42``, ``12:05`` or ``1:02:03``."""
    s = int(seconds)
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


def note(message: str) -> None:
    """One plain line on stderr (``escale: MESSAGE``), flushed: information the user should see in any mode."""
    print(f"escale: {message}", file=sys.stderr, flush=True)


class Task:
    """One unit of work with a count. Create with :meth:`Reporter.task`."""

    def __init__(self, reporter: Reporter, name: str, total: int | None, unit: str, every: int | None) -> None:
        self.reporter, self.name, self.total, self.unit = reporter, name, total, unit
        self._every = every
        self.completed = 0
        self.last_status = ""
        self.lines = 0  # plain lines written (tests, summaries)
        self.t0 = time.monotonic()
        self._id = reporter.bar.add_task(name, total=total) if reporter.bar is not None else None

    @property
    def every(self) -> int:
        """Plain mode: a line every ``every`` items; ``None`` at creation means about ten lines per task."""
        if self._every is not None:
            return max(1, self._every)
        return max(1, -(-self.total // 10)) if self.total else 1

    def update(self, total: int | None = None) -> None:
        """Set the total once it is known (e.g. the number of kernels to measure)."""
        self.total = total
        if self._id is not None:
            self.reporter.bar.update(self._id, total=total)

    def status(self, text: str, log: bool = False) -> None:
        """What is being done now. Live: the status line. Plain: nothing, unless ``log`` (then one line)."""
        self.last_status = text
        if self._id is not None:
            self.reporter.bar.update(self._id, description=f"{self.name}: {text}")
        elif log and self.reporter.mode == "plain":
            self._line(text)

    def advance(self, message: str | None = None, n: int = 1, completed: int | None = None) -> None:
        """``n`` more items are done (or ``completed`` in all); ``message`` says what was done (None: the
        last status). Plain: one line when a block of ``every`` items is complete, at the end, and for
        every call when ``every`` is 1."""
        before = self.completed
        self.completed = completed if completed is not None else before + n
        message = self.last_status if message is None else message
        if self._id is not None:
            text = f"{self.name}: {message}" if message else self.name
            self.reporter.bar.update(self._id, completed=self.completed, description=text)
            return
        if self.reporter.mode != "plain":
            return
        every = self.every
        finished = self.total is not None and self.completed >= self.total > before
        if every == 1 or self.completed // every > before // every or finished:
            self._line(message)

    def _line(self, message: str) -> None:
        count = f"{self.completed}/{self.total}" if self.total is not None else f"{self.completed}"
        count = f"{count} {self.unit}".rstrip()
        text = f"{self.name}: {message} " if message else f"{self.name} "
        self.reporter.write(f"{text}[{count}, {elapsed_text(time.monotonic() - self.t0)}]")
        self.lines += 1


class Reporter:
    """Progress for one command run. ``live``: a bar is allowed (a table, not JSON/CSV, goes to stdout);
    it is shown only when ``console`` (default: stderr) is a terminal. ``enabled=False``: nothing at all."""

    def __init__(self, live: bool = True, enabled: bool = True, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        if not enabled:
            self.mode = "off"
        else:
            self.mode = "live" if live and self.console.is_terminal else "plain"
        self.bar: Progress | None = None
        if self.mode == "live":
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=self.console, transient=True)
        self.tasks: list[Task] = []

    def __enter__(self) -> Reporter:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def task(self, name: str, total: int | None = None, unit: str = "", every: int | None = 1) -> Task:
        """A counted task. ``every``: plain lines per this many items (``None``: about ten lines in all)."""
        t = Task(self, name, total, unit, every)
        self.tasks.append(t)
        return t

    def write(self, line: str) -> None:
        """One plain line on stderr, flushed (plain mode) or printed above the bar (live mode)."""
        if self.mode == "off":
            return
        if self.bar is not None:
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:  # console.file is looked up now: sys.stderr as it is at this moment unless a file was given
            print(line, file=self.console.file, flush=True)

    def note(self, message: str) -> None:
        """A line the user should see in any mode, also when progress is off (``escale: MESSAGE``)."""
        if self.bar is not None:
            self.write(f"escale: {message}")
        else:
            print(f"escale: {message}", file=self.console.file, flush=True)


@contextmanager
def reporter(live: bool = True, enabled: bool = True, console: Console | None = None) -> Iterator[Reporter]:
    """``with reporter(live=args.format == "table") as rep:`` -- see the module docstring."""
    rep = Reporter(live=live, enabled=enabled, console=console)
    with rep:
        yield rep
