"""Benchmarks write to an ignored folder by default; the committed reports/NAME/ only with --update-reference.

Only the argument and path logic is tested here: the benchmarks themselves take minutes.
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHES = {"bench_profile": ("profile", "parse_args"), "bench_latency": ("latency", "parse_args"),
           "bench_context": ("context", "parse_args"), "bench_predictor": ("predictor", "parse")}


def load(name: str):  # noqa: ANN201 - the benchmark module
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tracked(path: Path) -> bool:
    """Whether git tracks any file under ``path`` (or ``path`` is not ignored, so a new file there would show)."""
    proc = subprocess.run(["git", "-C", str(ROOT), "ls-files", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip("not a git checkout")
    ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", str(path / "x.json")]).returncode == 0
    return bool(proc.stdout.strip()) or not ignored


@pytest.mark.parametrize("name", sorted(BENCHES))
def test_default_output_is_ignored_and_the_reference_only_on_request(name: str, monkeypatch, tmp_path) -> None:  # noqa: ANN001
    monkeypatch.delenv("ESCALE_HOME", raising=False)
    folder, parse = BENCHES[name]
    bench = load(name)
    default = bench.output_dir(getattr(bench, parse)([]))
    assert default == ROOT / "reports" / "bench" / folder and not tracked(default)
    reference = bench.output_dir(getattr(bench, parse)(["--update-reference"]))
    assert reference == ROOT / "reports" / folder and tracked(reference)
    assert bench.output_dir(getattr(bench, parse)(["--out", str(tmp_path)])) == tmp_path
    with pytest.raises(SystemExit):
        getattr(bench, parse)(["--out", str(tmp_path), "--update-reference"])
    monkeypatch.setenv("ESCALE_HOME", str(tmp_path / "h"))
    assert bench.output_dir(getattr(bench, parse)([])) == tmp_path / "h" / "bench" / folder
