"""Shared fixtures: a tiny spec keeps model tests well under a second each."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import escale

# The benchmark scripts import their shared helpers (bench_jobs, bench_rank) from their own folder, as when run.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

# One intra-op thread: on small shared CPUs two spinning OpenMP threads made tiny models 20-100x slower.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_spec() -> escale.ESegSpec:
    """Lite-style ESeg over P3-P6, 16 BiFPN channels: valid for inputs >= 64x64."""
    return escale.preset("ESeg-Lite-S").with_overrides(
        {"name": "tiny", "encoder.width": 0.25, "encoder.depth": 0.3, "decoder.channels": 16, "decoder.max_level": 6})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``-m gpu`` on a machine without a visible CUDA GPU: skipped with the reason, not failed in CUDA init."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason=f"no CUDA GPU visible (torch {torch.__version__}, CUDA {torch.version.cuda})")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
