"""``escale benchmark``: the family on one device across every latency backend, with numerics, training
throughput and the environment, written as JSON and Markdown after every part.

>>> from escale.benchmark import make_settings, dry_run
>>> record, checks = dry_run(make_settings(device="cuda"))     # what would run here, and why not
>>> [c["status"] for c in checks][:2]
['would run', 'skipped']

Modules: :mod:`~escale.benchmark.plan` (paths, parts, settings; no torch), :mod:`~escale.benchmark.runner`
(the parent: a child process per part, time boxes, incremental files; no CUDA work),
:mod:`~escale.benchmark.parts` and :mod:`~escale.benchmark.env` (what the children run),
:mod:`~escale.benchmark.markdown` (the page, from the saved record).
"""

from escale.benchmark.plan import (
    BACKEND_NAMES,
    CPU_PATHS,
    CUDA_PATHS,
    DEFAULT_TIME_LIMIT_S,
    BenchPath,
    BenchSettings,
    build_plan,
    make_settings,
)
from escale.benchmark.runner import Benchmark, dry_run

__all__ = ["BACKEND_NAMES", "CPU_PATHS", "CUDA_PATHS", "DEFAULT_TIME_LIMIT_S", "BenchPath", "BenchSettings",
           "Benchmark", "build_plan", "dry_run", "make_settings"]
