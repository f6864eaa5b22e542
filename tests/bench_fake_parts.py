"""A stand-in for ``escale.benchmark.parts`` in tests: no torch, instant, faults from ``$ESCALE_BENCH_FAULT``
(NAME=raise|hang|exit as in the real module, plus ``wrong``: the path's output is beyond tolerance)."""

from __future__ import annotations

import json
import os
import time


def _fault(name: str) -> str | None:
    faults = dict(item.split("=", 1) for item in os.environ.get("ESCALE_BENCH_FAULT", "").split(",") if "=" in item)
    kind = faults.get(name)
    if kind == "raise":
        raise RuntimeError(f"injected fault in {name}")
    if kind == "hang":
        time.sleep(3600)
    if kind == "exit":
        os._exit(3)
    return kind


def _event(stream: str, **data) -> None:
    with open(stream, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(data) + "\n")


def run_env(device: str) -> dict:
    _fault("env")
    return {"environment": {"device": device, "device_name": "Fake GPU 9000"},
            "probe": {"cuda": None, "backends": {"torch": None, "onnxruntime": None, "tensorrt": None},
                      "compile": None}}


def run_model(spec: dict, paths: list, device: str, input_size: list, stream: str, workdir: str,
              timing: dict) -> dict:
    restart = False
    for i, p in enumerate(paths):
        _event(stream, event="start", path=p["name"])
        try:
            kind = _fault(p["name"])
            num = {"rel_diff": 0.5 if kind == "wrong" else 1e-4, "tolerance": 3e-2, "argmax_agreement": 0.99,
                   "max_abs_diff": 1.0, "output_scale": 2.0}
            row = ({"status": "wrong", "numerics": num, "reason": "beyond tolerance"} if kind == "wrong" else
                   {"status": "ok", "numerics": num, "latency_ms": 2.0 + i, "latency_p90_ms": 2.1 + i,
                    "latency_p99_ms": 2.2 + i, "fps": 1000 / (2.0 + i), "peak_mem_mb": 100.0})
        except Exception as exc:  # noqa: BLE001
            row, restart = {"status": "failed", "reason": str(exc)}, device == "cuda"
        _event(stream, event="done", path=p["name"], seconds=0.01, **row)
        if restart:
            break
    return {"restart": restart}


def run_train(model: str, device: str, input_size: list, batch: int, steps: int, warmup_steps: int) -> dict:
    _fault("train")
    return {"model": model, "input_size": input_size, "batch": batch, "amp": True, "steps": steps,
            "warmup_steps": warmup_steps, "images_per_s": 50.0, "step_ms_median": 160.0, "step_ms_p90": 170.0,
            "peak_mem_mb": 4000.0, "recipe": "fake"}
