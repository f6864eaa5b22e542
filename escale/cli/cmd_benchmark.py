"""``escale benchmark``: the family on a GPU across every backend (torch eager/fp16/channels_last/CUDA graphs/
torch.compile, ONNX Runtime CUDA, TensorRT fp16), numerics against CPU fp32, AMP training throughput, the
environment; written to ``<out>/<gpu>-<date>.json`` and ``.md`` after every part."""

from __future__ import annotations

import argparse
from pathlib import Path

from escale import paths
from escale.cli import progress, render
from escale.cli.helptext import with_example
from escale.spec import FAMILIES

EXAMPLES = ("escale benchmark                                   # the family on cuda, every backend, <= 8 min",
            "escale benchmark --dry-run                         # what would run here, and why not",
            "escale benchmark --out reports/gpu                 # the committed reports/gpu/ (make gpu-bench)",
            "escale benchmark --device cpu --models ESeg-Lite-S --input-size 64x128 --train-size 64x128")


def register(sub: argparse._SubParsersAction) -> None:
    from escale.benchmark.plan import BACKEND_NAMES, DEFAULT_TIME_LIMIT_S

    p = sub.add_parser("benchmark", help="measure the family on a GPU across every backend and write a report",
                       **with_example("Batch-1 latency (median, p90, p99), FPS and peak memory of each model on "
                                      "every path (torch fp32 with TF32 off, fp16 autocast and cast, channels_last, "
                                      "CUDA graphs, torch.compile, ONNX Runtime CUDA, TensorRT fp16); each path's "
                                      "output checked against CPU eager fp32 (a wrong path is reported, not timed "
                                      "as right); AMP training throughput of ESeg-S; GPU, driver, clocks and "
                                      "versions.\n\nEach part runs in its own process with a time box; the JSON "
                                      "and Markdown files are rewritten after every part.", *EXAMPLES))
    p.add_argument("--family", choices=sorted(FAMILIES), default="eseg", help="preset family (default: eseg, all six)")
    p.add_argument("--models", metavar="A,B", help="these presets instead of --family (e.g. ESeg-Lite-S)")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                   help="device (default: cuda; cpu runs the same machinery with CPU paths, for smoke tests)")
    p.add_argument("--input-size", default="1024x2048", metavar="HxW", help="inference input (default: 1024x2048)")
    p.add_argument("--backends", default=",".join(BACKEND_NAMES), metavar="A,B",
                   help=f"latency backends (default: {','.join(BACKEND_NAMES)})")
    p.add_argument("--paths", metavar="A,B", help="only these paths (names as in --dry-run)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: <home>/bench/gpu, ignored by git)")
    p.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT_S, metavar="S",
                   help=f"the whole run, seconds (default: {DEFAULT_TIME_LIMIT_S:g}: ends within 8 minutes); "
                        "parts that do not fit are reported as skipped")
    p.add_argument("--part-timeout", type=float, metavar="S",
                   help="each part's time box (default per kind: env 60, eager 120, train 120, onnxruntime 120, "
                        "tensorrt 240, compile 180)")
    p.add_argument("--train-size", default="512x1024", metavar="HxW", help="training crop (default: 512x1024)")
    p.add_argument("--train-batch", type=int, default=8, help="training batch (default: 8)")
    p.add_argument("--train-steps", type=int, default=20, help="timed training steps (default: 20)")
    p.add_argument("--train-warmup", type=int, default=5, help="untimed training steps first (default: 5)")
    p.add_argument("--no-train", action="store_true", help="skip the training part")
    p.add_argument("--dry-run", action="store_true", help="list every check and why it would be skipped here")
    p.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from escale.benchmark import Benchmark, dry_run, make_settings
    from escale.benchmark.markdown import render as render_md
    from escale.benchmark.parts import GPU_TIMING, QUICK_TIMING

    settings = make_settings(args.family, args.models, args.device, args.input_size, args.backends, args.paths,
                             args.time_limit, args.part_timeout, not args.no_train, args.train_size,
                             args.train_batch, args.train_steps, args.train_warmup)
    if args.dry_run:
        record, checks = dry_run(settings)
        if args.format == "json":
            render.emit_json([{"environment": record["environment"], "probe": record["probe"], "checks": checks}])
        else:
            _print_checks(checks, record["environment"].get("device_name", "?"))
        return 0
    out = Path(args.out) if args.out else paths.bench_dir("gpu")
    timing = GPU_TIMING if settings.device == "cuda" else QUICK_TIMING
    bench = Benchmark(settings, timing, note=lambda m: progress.note(f"benchmark: {m}"),
                      command=["escale", *args.argv])
    json_path, md_path = bench.run(out, render_md)
    if args.format == "json":
        render.emit_json([bench.record])
    else:
        _print_results(bench.record)
    progress.note(f"benchmark: wrote {json_path} and {md_path}")
    return 0


def _print_checks(checks: list[dict], device_name: str) -> None:
    rows = [[c["check"], c["part"], c["status"], c["reason"]] for c in checks]
    would = sum(c["status"] == "would run" for c in checks)
    render.table(f"escale benchmark --dry-run on {device_name}",
                 [("check", "left"), ("part", "left"), ("status", "left"), ("reason", "left")], rows,
                 f"{would} of {len(checks)} checks would run here.")


def _print_results(record: dict) -> None:
    from escale.benchmark.markdown import result_rows

    rows = [r[:4] + r[5:7] + [r[-1]] for r in result_rows(record["results"])]  # no p90, memory, numerics
    render.table(f"escale benchmark on {record['environment'].get('device_name', '?')} ({record['status']})",
                 [("model", "left"), ("path", "left"), ("status", "left"), ("median ms", "right"),
                  ("p99 ms", "right"), ("FPS", "right"), ("note", "left")], rows,
                 "Every figure, the numerics, training and the environment are in the JSON and Markdown files.")
