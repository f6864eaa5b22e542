"""The Markdown page of a benchmark record: a pure function of the saved JSON (no torch, pandas or matplotlib,
so it renders on a GPU machine that lacks escale's report dependencies)."""

from __future__ import annotations

import csv
from importlib import resources
from typing import Any

TARGETS_FPS = {"ESeg-Lite-S": 400.0}  # issue #13: one H200, the fastest path escale offers
PAPER_SETUP = "V100, TensorRT 7.2, fp16, batch 1, 1024x2048 (Table 6 / Figure 4)"


def paper_fps() -> dict[str, float]:
    """The paper's FPS for ESeg models measured on its own V100 (Table 6, 1024x2048), by model name."""
    csv_file = resources.files("escale").joinpath("report").joinpath("paper_points.csv")  # not escale.report: pandas
    with csv_file.open("r", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return {r["model"]: float(r["fps"]) for r in rows if r["table"] == "Table 6" and r["same_v100"] == "True"
            and r["input_size"] == "1024x2048" and r["model"].startswith("ESeg") and r["fps"]}


def _f(value: Any, spec: str = ".2f") -> str:
    return "-" if value is None else f"{value:{spec}}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    clean = [[str(c).replace("|", "/").replace("\n", " ") for c in r] for r in rows]
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|",
            *("| " + " | ".join(r) + " |" for r in clean), ""]


def environment_rows(env: dict[str, Any]) -> list[list[str]]:
    gpu, v = env.get("gpu", {}), env.get("versions", {})
    rows = [["device", env.get("device_name", "-")]]
    if gpu:
        rows += [["compute capability, memory", f"{gpu.get('compute_capability')}, {_f(gpu.get('memory_gib'), '.0f')} GiB, "
                                                f"{gpu.get('sm_count')} SMs"],
                 ["driver", str(gpu.get("driver_version", "-"))],
                 ["clocks SM / memory (now, max; MHz)", f"{gpu.get('clocks_sm', '-')}/{gpu.get('clocks_max_sm', '-')}, "
                                                         f"{gpu.get('clocks_mem', '-')}/{gpu.get('clocks_max_mem', '-')}"],
                 ["power limit (W), pstate, temperature (C)", f"{gpu.get('power_limit', '-')}, {gpu.get('pstate', '-')}, "
                                                              f"{gpu.get('temperature_gpu', '-')}"]]
        if "nvidia_smi" in gpu:
            rows.append(["nvidia-smi", gpu["nvidia_smi"]])
    rows += [["torch / CUDA / cuDNN", f"{v.get('torch')} / {env.get('torch_cuda')} / {env.get('cudnn', '-')}"],
             ["onnxruntime (providers)", f"{v.get('onnxruntime') or v.get('onnxruntime-gpu')} "
                                         f"({env.get('onnxruntime_providers')})"],
             ["TensorRT / triton / timm / onnx", f"{v.get('tensorrt')} / {v.get('triton')} / {v.get('timm')} / "
                                                 f"{v.get('onnx')}"],
             ["python, CPU", f"{env.get('python')}, {env.get('cpu')} ({env.get('cpu_count')} CPUs)"],
             ["escale (commit)", f"{env.get('escale')} ({env.get('escale_commit')})"]]
    return rows


def headline_rows(results: list[dict[str, Any]], device: str = "cuda") -> list[list[str]]:
    """Per model: the fastest path whose output is right, against the paper's V100 figure and the target
    (targets are for one H200: none on cpu)."""
    paper, rows = paper_fps(), []
    for model in dict.fromkeys(r["model"] for r in results):
        ok = [r for r in results if r["model"] == model and r["status"] == "ok" and r.get("fps")]
        best = max(ok, key=lambda r: r["fps"]) if ok else None
        ref, target = paper.get(model), TARGETS_FPS.get(model) if device == "cuda" else None
        verdict = "-" if target is None else ("not measured" if best is None else
                                              f"{'met' if best['fps'] >= target else 'missed'} (>= {target:g})")
        rows.append([model, best["path"] if best else "no right path", _f(best and best["fps"], ".0f"),
                     _f(best and best["latency_ms"]), _f(ref, ".0f"),
                     _f(best["fps"] / ref if best and ref else None, ".2f") + ("x" if best and ref else ""), verdict])
    return rows


def result_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for r in results:
        n = r.get("numerics") or {}
        num = "-" if not n else (f"{n['rel_diff']:.2g} (<= {n['tolerance']:g}), argmax {100 * n['argmax_agreement']:.2f}%")
        rows.append([r["model"], r["path"], r["status"], _f(r.get("latency_ms")), _f(r.get("latency_p90_ms")),
                     _f(r.get("latency_p99_ms")), _f(r.get("fps"), ".1f"), _f(r.get("peak_mem_mb"), ".0f"), num,
                     r.get("reason") or ""])
    return rows


def render(record: dict[str, Any]) -> str:
    """The whole page: status, environment, headline, every path, training, parts, numerics rule."""
    s, env = record["settings"], record.get("environment") or {}
    h, w = s["input_size"]
    lines = [f"# escale benchmark: {env.get('device_name', s['device'])}, {record['started'][:10]}", "",
             f"Status: **{record['status']}**" + ("" if record["status"] == "complete" else
                                                  " (the parts below are those finished so far)") +
             f"; {record.get('seconds', 0):.0f} s of a {s['time_limit_s']:g} s limit. "
             f"Command: `{' '.join(record.get('command') or ['escale', 'benchmark'])}`", "",
             "## Environment", "", *_table(["", ""], environment_rows(env)),
             f"## Fastest right path per model (batch 1, {h}x{w})", "",
             *_table(["model", "path", "FPS", "ms", "paper FPS (V100)", "vs paper", "target (H200)"],
                     headline_rows(record["results"], s["device"])),
             f"Paper: {PAPER_SETUP}; another GPU and TensorRT version, so the ratio compares machines as well "
             "as software. Target: issue #13, one H200, the fastest path escale offers.", "",
             f"## Every path (batch 1, {h}x{w}, {s['device']})", "",
             *_table(["model", "path", "status", "median ms", "p90 ms", "p99 ms", "FPS", "peak MB",
                      "numerics: rel. diff (tol.)", "note"], result_rows(record["results"])),
             "Status: ok (timed, output right), wrong (output beyond tolerance: not timed as right), failed, "
             "crashed, timeout, skipped (the note says why). Peak MB: activations measured by the backend "
             "(torch: CUDA max_memory_allocated above weights and input; TensorRT: engine device memory).", ""]
    lines += ["## Training throughput", ""] + _training(record.get("training"), s)
    lines += ["## Parts (each in its own process, time-boxed)", "",
              *_table(["part", "status", "seconds", "attempts", "reason"],
                      [[p["name"], p["status"], _f(p["seconds"], ".1f"), str(p["attempts"]), p.get("reason") or ""]
                       for p in record["parts"]])]
    tol = (record.get("probe") or {}).get("numerics_tolerance") or {}
    allowed = ", ".join(f"{k} {v:g}" for k, v in tol.items()) or "see each row"
    lines += ["## Numerics", "", "Each path's logits on the benchmark input (seed 0) are compared with CPU eager "
              f"fp32 of the same folded model (seed-0 weights): max |out - ref| / max |ref|. Allowed: {allowed} "
              "(`escale.profiler.latency.onnxrt.NUMERICS_TOLERANCE`, where the choice is explained). The share "
              "of pixels whose argmax class agrees is recorded beside it.", ""]
    return "\n".join(lines)


def _training(t: dict[str, Any] | None, s: dict[str, Any]) -> list[str]:
    if not t:
        return ["Not run yet.", ""]
    if t.get("status") != "ok":
        return [f"{s['train_model']}: {t.get('status')} ({t.get('reason')})", ""]
    h, w = t["input_size"]
    return [*_table(["model", "size", "batch", "AMP", "steps", "images/s", "step ms (median, p90)", "peak MB"],
                    [[t["model"], f"{h}x{w}", str(t["batch"]), "fp16" if t["amp"] else "off", str(t["steps"]),
                      _f(t["images_per_s"], ".1f"), f"{_f(t['step_ms_median'], '.1f')}, {_f(t['step_ms_p90'], '.1f')}",
                      _f(t.get("peak_mem_mb"), ".0f")]]), t["recipe"] + f"; {t['warmup_steps']} untimed warm-up steps.", ""]
