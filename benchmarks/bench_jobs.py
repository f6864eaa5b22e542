"""Run a benchmark's independent training jobs one after another or in spawned worker processes."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any


def run_jobs(fn: Callable[..., dict], args: Any, plan: list[tuple], jobs: int,
             show: Callable[[dict], None]) -> list[dict]:
    """``[fn(args, *job) for job in plan]``, ``jobs`` at a time (each in its own spawned process: a fresh
    torch with its own thread setting); ``show(row)`` as each finishes. Rows come back in plan order."""
    if jobs <= 1:
        rows = []
        for job in plan:
            rows.append(fn(args, *job))
            show(rows[-1])
        return rows
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(fn, args, *job) for job in plan]
        for f in as_completed(futures):
            show(f.result())
        return [f.result() for f in futures]
