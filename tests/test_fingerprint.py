"""Machine fingerprints: static fields, the matching rule (fake timings), the cached performance part."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import escale
from escale.profiler.latency import fingerprint as fpm

CPUINFO = """processor\t: 0
model name\t: AMD EPYC 9R14
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512bw avx512_vnni avx512_bf16 amx_tile foo
physical id\t: 0
core id\t\t: 0

processor\t: 1
model name\t: AMD EPYC 9R14
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512bw avx512_vnni avx512_bf16 amx_tile foo
physical id\t: 0
core id\t\t: 0

processor\t: 2
model name\t: AMD EPYC 9R14
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512bw avx512_vnni avx512_bf16 amx_tile foo
physical id\t: 0
core id\t\t: 1
"""
PERF = {"conv3x3": 1.0, "conv_dw3x3": 0.5, "conv1x1": 2.0, "resize_bilinear": 1.8, "wsum2": 0.7}


@pytest.fixture
def fake_perf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The performance part from a fake measurement (counted), cached under a temporary folder."""
    calls: list[int] = []
    monkeypatch.setenv("ESCALE_CACHE_DIR", str(tmp_path / "cache"))

    def measure() -> dict[str, float]:
        calls.append(1)
        return dict(PERF)

    monkeypatch.setattr(fpm, "measure_perf", measure)
    return calls


def test_cpu_info_reads_model_isa_flags_and_physical_cores() -> None:
    info = fpm.cpu_info(CPUINFO)
    assert info["cpu_model"] == "AMD EPYC 9R14"
    assert info["cpu_flags"] == sorted(["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni",
                                        "avx512_bf16", "amx_tile"])  # "fpu", "foo": not speed-relevant ISA flags
    assert info["physical_cores"] == 2 and info["logical_cpus"] >= 1 and info["affinity_cpus"] >= 1


def test_cpu_info_without_proc_cpuinfo_falls_back() -> None:
    info = fpm.cpu_info("")
    assert info["cpu_model"] and isinstance(info["cpu_flags"], list) and info["physical_cores"] >= 1


def test_static_fingerprint_fields_and_id(fake_perf: list[int]) -> None:
    fp = fpm.current_fingerprint("onnxruntime", "cpu", "fp32", 1, (64, 128))
    for key in ("cpu_model", "cpu_flags", "physical_cores", "logical_cpus", "affinity_cpus", "arch", "backend",
                "provider", "precision", "threads", "input_size", "perf_ms", "perf_measured_at", "id"):
        assert key in fp, key
    assert fp["versions"]["torch"] and fp["versions"]["onnxruntime"]
    assert fp["provider"] == "CPUExecutionProvider" and fp["input_size"] == [64, 128] and fp["perf_ms"] == PERF
    again = fpm.current_fingerprint("onnxruntime", "cpu", "fp32", 1, (64, 128))
    assert again["id"] == fp["id"] == fpm.fingerprint_id(fp) and len(fp["id"]) == 12
    assert fpm.current_fingerprint("onnxruntime", "cpu", "fp32", 2, (64, 128))["id"] != fp["id"]
    assert fpm.current_fingerprint("onnxruntime", "cpu", "fp32", 1, (64, 64))["id"] != fp["id"]


def test_matching_rule(fake_perf: list[int]) -> None:
    mine = fpm.current_fingerprint("onnxruntime", "cpu", "fp32", 1, (64, 128))
    assert fpm.mismatch(dict(mine), mine) is None
    assert fpm.mismatch(None, mine) == "the table records no machine fingerprint"
    flags = {**mine, "cpu_flags": [*mine["cpu_flags"], "avx512f"]} if "avx512f" not in mine["cpu_flags"] else {
        **mine, "cpu_flags": [f for f in mine["cpu_flags"] if f != "avx512f"]}
    assert fpm.mismatch(flags, mine).startswith("cpu_flags differs (the table: ")
    assert "versions differs" in fpm.mismatch({**mine, "versions": {"torch": "2.0", "onnxruntime": "1.0"}}, mine)
    assert "threads differs" in fpm.mismatch({**mine, "threads": 2}, mine)
    assert "perf_version 1" in fpm.mismatch({**mine, "perf_version": 1}, mine)  # other reference kernels

    def scaled(**factors: float) -> dict:
        return {**mine, "perf_ms": {k: v * factors.get(k, 1.0) for k, v in PERF.items()}}

    # same CPU name and flags, but the kernels take 2.2x as long there: a different machine
    why = fpm.mismatch(scaled(**dict.fromkeys(PERF, 2.2)), mine)
    assert why.startswith("reference kernels take 0.45x the table's time here") and "±10% on average" in why
    assert fpm.mismatch(scaled(conv3x3=1.05, conv1x1=0.96, wsum2=1.08), mine) is None   # noise: a match
    assert fpm.mismatch(scaled(conv3x3=1.35), mine) is not None                          # one kernel 35% off
    assert fpm.mismatch(scaled(**dict.fromkeys(PERF, 1.13)), mine) is not None           # all 13% off


def test_perf_part_is_cached_per_machine_and_boot_and_expires(fake_perf: list[int], monkeypatch) -> None:  # noqa: ANN001
    fpm.current_fingerprint(input_size=(64, 128))
    fpm.current_fingerprint(input_size=(128, 128), threads=1)
    assert len(fake_perf) == 1  # the second call (other settings, same machine) reads the cache
    (cache,) = fpm.perf_cache_dir().glob("*.json")
    entry = json.loads(cache.read_text())
    assert entry["perf_ms"] == PERF and entry["machine"]["cpu_model"]
    entry["measured_at_s"] = time.time() - fpm.PERF_MAX_AGE_S - 1
    cache.write_text(json.dumps(entry))
    fpm.current_fingerprint(input_size=(64, 128))
    assert len(fake_perf) == 2  # expired: measured again
    monkeypatch.setattr(fpm, "_boot_id", lambda: "another-boot")
    fpm.current_fingerprint(input_size=(64, 128))
    assert len(fake_perf) == 3  # rebooted (perhaps onto other hardware): measured again
    fpm.current_fingerprint(input_size=(64, 128), refresh=True)
    assert len(fake_perf) == 4
    cache.write_text("{truncated")
    assert fpm.current_fingerprint(input_size=(64, 128))["perf_ms"] == PERF and len(fake_perf) == 5


def test_a_refresh_keeps_the_lower_timing_and_a_timing_mismatch_is_measured_again(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("ESCALE_CACHE_DIR", str(tmp_path))
    timings = iter([dict(PERF), {**PERF, "resize_bilinear": 1.8 * 1.3}, dict(PERF)])
    monkeypatch.setattr(fpm, "measure_perf", lambda: next(timings))
    table_fp = fpm.current_fingerprint(input_size=(64, 128))  # the table's, measured here
    # a burst on the sibling vCPU slowed one kernel by 30% when the cache was refreshed: it keeps the lower one
    assert fpm.current_fingerprint(input_size=(64, 128), refresh=True)["perf_ms"] == PERF
    (cache,) = tmp_path.glob("fingerprint/*.json")
    entry = json.loads(cache.read_text())
    entry["perf_ms"]["resize_bilinear"] *= 1.3  # as if the cache itself had been measured during the burst
    cache.write_text(json.dumps(entry))
    why, mine = fpm.mismatch_here(table_fp, "onnxruntime", "cpu", "fp32", 1, (64, 128))
    assert why is None and mine["perf_ms"] == PERF  # measured once more (the third timing) before judging


def test_reference_kernels_are_timed_by_onnxruntime() -> None:
    module, inputs = fpm.reference_module("conv1x1")
    assert tuple(module(*inputs).shape) == (1, 128, 32, 32)
    with pytest.raises(KeyError):
        fpm.reference_module("conv7x7")
    perf = fpm.measure_perf()
    assert set(perf) == set(fpm.REFERENCE_KERNELS) and all(0 < v < 1000 for v in perf.values())


def test_latency_records_carry_the_fingerprint(fake_perf: list[int], tiny_spec: escale.ESegSpec) -> None:
    from escale.profiler.latency import QUICK, measure_latency

    res = measure_latency(tiny_spec, backend="onnxruntime", input_size=(64, 64), threads=1, isolate=False,
                          config=QUICK)
    fp = res.env["fingerprint"]
    assert fp["perf_ms"] == PERF and fp["backend"] == "onnxruntime" and fp["input_size"] == [64, 64]
    assert fp["threads"] == 1 and fp["precision"] == "fp32" and fp["id"] == fpm.fingerprint_id(fp)
    assert res.to_extra()["env"]["fingerprint"]["id"] == fp["id"]
